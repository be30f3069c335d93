package runtime

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by the runtime wrap one of them with
// context (the op, its name and the shapes involved); match with errors.Is.
// Errors from a VarStore are wrapped with the variable's name and keep their
// own sentinels (for example ps.ErrNotOwner) reachable through errors.Is.
var (
	// ErrShape: shapes do not fit an op (at build time or, for dimensions
	// unknown until then, at run time).
	ErrShape = errors.New("runtime: shape mismatch")
	// ErrDType: an op got a tensor of the wrong element type.
	ErrDType = errors.New("runtime: dtype mismatch")
	// ErrInvalidArgument: a bad attribute (axis, stride, padding, rate, ...)
	// or a nil input.
	ErrInvalidArgument = errors.New("runtime: invalid argument")
	// ErrForeignNode: a node of another graph, or one added after Build.
	ErrForeignNode = errors.New("runtime: node not in graph")
	// ErrMissingFeed: a placeholder the fetches need was not fed.
	ErrMissingFeed = errors.New("runtime: placeholder not fed")
	// ErrNoStore: the graph reads variables but the session has no VarStore.
	ErrNoStore = errors.New("runtime: no variable store")
	// ErrNotDifferentiable: Gradients met an op without a gradient (such as
	// ArgMax) on the path from a variable to the loss.
	ErrNotDifferentiable = errors.New("runtime: not differentiable")
	// ErrOutOfRange: an index (Gather ids, labels) outside its range.
	ErrOutOfRange = errors.New("runtime: index out of range")
)

func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)
}
