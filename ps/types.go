package ps

import (
	"fmt"
	"github.com/flowps/flowps/sharding"
	"strconv"
	"time"
)

// InitKind names a variable initializer.
type InitKind string

// The initializers a variable may use.
const (
	InitZeros         InitKind = "zeros"
	InitConstant      InitKind = "constant"
	InitUniform       InitKind = "uniform"
	InitNormal        InitKind = "normal"
	InitGlorotUniform InitKind = "glorot_uniform"
)

// Initializer says how a variable's initial values are drawn. Values are
// generated per partition from (Seed, variable name, partition index), so a
// partition's initial values do not depend on which server creates it.
type Initializer struct {
	Kind   InitKind `json:"kind"`
	Value  float32  `json:"value,omitempty"`  // constant
	Min    float32  `json:"min,omitempty"`    // uniform
	Max    float32  `json:"max,omitempty"`    // uniform
	Mean   float32  `json:"mean,omitempty"`   // normal
	Stddev float32  `json:"stddev,omitempty"` // normal
	Seed   int64    `json:"seed,omitempty"`
}

// OptimizerKind names a server-side optimizer.
type OptimizerKind string

// The optimizers a server applies gradients with.
const (
	OptSGD      OptimizerKind = "sgd"
	OptMomentum OptimizerKind = "momentum"
	OptAdagrad  OptimizerKind = "adagrad"
	OptAdam     OptimizerKind = "adam"
	OptFTRL     OptimizerKind = "ftrl"
)

// OptimizerSpec holds an optimizer and its hyper-parameters. Fields that do
// not apply to Kind are ignored; zero values take the defaults documented on
// each field by (*OptimizerSpec).WithDefaults.
type OptimizerSpec struct {
	Kind OptimizerKind `json:"kind"`
	// LR is the learning rate; it must be > 0.
	LR float32 `json:"lr"`
	// Momentum is the momentum coefficient (momentum; default 0.9).
	Momentum float32 `json:"momentum,omitempty"`
	// Nesterov selects Nesterov momentum (momentum).
	Nesterov bool `json:"nesterov,omitempty"`
	// Beta1, Beta2 are Adam's moment decay rates (defaults 0.9, 0.999).
	Beta1 float32 `json:"beta1,omitempty"`
	Beta2 float32 `json:"beta2,omitempty"`
	// Epsilon guards divisions (adagrad, adam; default 1e-7 for adam, 1e-10 for adagrad).
	Epsilon float32 `json:"epsilon,omitempty"`
	// InitialAccumulator is the starting value of adagrad's and ftrl's
	// accumulators (default 0.1).
	InitialAccumulator float32 `json:"initial_accumulator,omitempty"`
	// L1, L2 are FTRL's regularisation strengths; LRPower is FTRL's
	// learning-rate power (default -0.5).
	L1      float32 `json:"l1,omitempty"`
	L2      float32 `json:"l2,omitempty"`
	LRPower float32 `json:"lr_power,omitempty"`
}

// WithDefaults returns the spec with zero hyper-parameters replaced by their
// defaults.
func (o OptimizerSpec) WithDefaults() OptimizerSpec {
	if o.Kind == "" {
		o.Kind = OptSGD
	}
	switch o.Kind {
	case OptMomentum:
		if o.Momentum == 0 {
			o.Momentum = 0.9
		}
	case OptAdam:
		if o.Beta1 == 0 {
			o.Beta1 = 0.9
		}
		if o.Beta2 == 0 {
			o.Beta2 = 0.999
		}
		if o.Epsilon == 0 {
			o.Epsilon = 1e-7
		}
	case OptAdagrad:
		if o.Epsilon == 0 {
			o.Epsilon = 1e-10
		}
		if o.InitialAccumulator == 0 {
			o.InitialAccumulator = 0.1
		}
	case OptFTRL:
		if o.InitialAccumulator == 0 {
			o.InitialAccumulator = 0.1
		}
		if o.LRPower == 0 {
			o.LRPower = -0.5
		}
	}
	return o
}

// Mode is a variable's consistency mode.
type Mode string

// The consistency modes.
const (
	// Async applies every push at once.
	Async Mode = "async"
	// Sync averages the gradients of step t from Workers workers and applies
	// the mean once; pulls may wait for a version.
	Sync Mode = "sync"
	// SSP is bounded staleness: a pull by a worker at clock c waits while the
	// slowest worker's clock is below c - Staleness.
	SSP Mode = "ssp"
)

// Consistency is a variable's consistency contract.
type Consistency struct {
	Mode Mode `json:"mode"`
	// Workers is the number of workers that push each step (sync) or whose
	// clocks are tracked (ssp). Must be ≥ 1 for sync and ssp.
	Workers int `json:"workers,omitempty"`
	// Backup is the number of backup workers in sync mode: a step is applied
	// after the first Workers-Backup gradients; later ones for that step are
	// answered ErrStale.
	Backup int `json:"backup,omitempty"`
	// Staleness is the SSP bound s in clocks.
	Staleness int `json:"staleness,omitempty"`
}

// VariableSpec describes a variable: a named float32 tensor of rank ≥ 1,
// split by rows (the first dimension) into partitions.
type VariableSpec struct {
	Name        string        `json:"name"`
	Shape       []int64       `json:"shape"`
	Init        Initializer   `json:"init"`
	Optimizer   OptimizerSpec `json:"optimizer"`
	Consistency Consistency   `json:"consistency"`
	// AllowNonFinite accepts NaN and Inf in gradients; by default a push
	// holding one is rejected with ErrNonFinite.
	AllowNonFinite bool `json:"allow_non_finite,omitempty"`
	// MinPartitionBytes and MaxPartitionBytes bound the size of one
	// partition, as TensorFlow's min/max-size partitioners do. Zero means
	// DefaultMinPartitionBytes and DefaultMaxPartitionBytes.
	MinPartitionBytes int64 `json:"min_partition_bytes,omitempty"`
	MaxPartitionBytes int64 `json:"max_partition_bytes,omitempty"`
}

// Default partition bounds.
const (
	DefaultMinPartitionBytes = 256 << 10
	DefaultMaxPartitionBytes = 16 << 20
)

// Rows is the size of the first dimension.
func (s VariableSpec) Rows() int64 {
	if len(s.Shape) == 0 {
		return 0
	}
	return s.Shape[0]
}

// RowSize is the number of elements in one row (the product of all
// dimensions but the first).
func (s VariableSpec) RowSize() int64 {
	n := int64(1)
	for _, d := range s.Shape[1:] {
		n *= d
	}
	return n
}

// NumElements is the number of elements of the whole variable.
func (s VariableSpec) NumElements() int64 { return s.Rows() * s.RowSize() }

// PartKey names one partition of one variable.
type PartKey struct {
	Var   string `json:"var"`
	Index int    `json:"index"`
}

// String renders the key as "var/index", the form placement hashes.
func (k PartKey) String() string { return k.Var + "/" + strconv.Itoa(k.Index) }

// CreateRequest asks a server to host partitions of a variable. Creation is
// idempotent: creating an existing partition with an equal spec succeeds;
// with another shape or optimizer it fails with ErrSpecMismatch.
type CreateRequest struct {
	Spec  VariableSpec `json:"spec"`
	Parts []int        `json:"parts"`
}

// CreateResponse reports the created (or existing) partitions' versions.
type CreateResponse struct {
	Versions []int64 `json:"versions"`
}

// PullPart asks for one partition's values. Rows, when non-nil, are
// partition-local row indices (sparse pull); nil means the whole partition.
// MinVersion > 0 makes the pull wait until the partition reaches that
// version (sync mode).
//
// Dst, when non-nil, is the caller's buffer for this part's values and must
// hold exactly their count (the partition's elements, or len(Rows)×row
// size). Whoever produces the values writes them there and returns Dst
// itself as PartValues.Values: ps.Server copies the partition into it, a
// transport's client decodes the wire straight into it. A producer that
// cannot use it returns values of its own, so callers compare before
// copying (SameBuffer). Dst never crosses a wire, and a server writes it
// only during the call.
type PullPart struct {
	Key        PartKey
	Rows       []int64
	MinVersion int64
	Dst        []float32
}

// PullRequest reads partitions from one server.
type PullRequest struct {
	// ClientID names the caller.
	ClientID string
	// Worker is the worker's rank (0-based); Clock is its SSP clock. Both are
	// used only by variables in SSP mode.
	Worker int
	Clock  int64
	Parts  []PullPart
	// Alloc, when set, gives ps.Server the buffer of every part that has no
	// Dst: it is called with the part's value count, under the partition's
	// lock, and must return a slice of exactly that length (contents are
	// overwritten). Transports' servers use it to have values copied once,
	// into memory they send from (a pooled array, a registered region).
	// Local to the process, never sent.
	Alloc func(n int) []float32
}

// PartValues holds one partition's values as of Version.
type PartValues struct {
	Key     PartKey
	Version int64
	Values  []float32
}

// SameBuffer reports whether a and b start at the same element and have the
// same length: a pull answered into its part's Dst needs no further copy.
func SameBuffer(a, b []float32) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// PullResponse holds the partitions a PullRequest asked for, in its order.
type PullResponse struct {
	Parts []PartValues
	// Waited is how long the server held the request before reading it:
	// waiting for parts to reach MinVersion (the sync barrier) or for the
	// SSP bound, summed over the parts (a server waits for them one after
	// another). Transports carry it; zero means no wait, or a transport
	// that does not report it.
	Waited time.Duration
}

// PushPart carries a gradient for one partition. Rows, when non-nil, are
// partition-local row indices and Grad holds len(Rows)×rowSize values
// (sparse push); nil means Grad covers the whole partition.
type PushPart struct {
	Key  PartKey
	Rows []int64
	Grad []float32
	// Step is the version the gradient was computed against (sync mode; it
	// must equal the partition's current version, else ErrStale).
	Step int64
}

// PushRequest sends gradients to one server. (ClientID, Seq) identifies the
// request so that a retried push is applied once per partition.
type PushRequest struct {
	ClientID string
	Seq      uint64
	Worker   int
	// Clock is the worker's SSP clock after this push.
	Clock int64
	Parts []PushPart
}

// PushResponse reports, per part in request order, the partition version
// after the push was accepted.
type PushResponse struct {
	Versions []int64
}

// PartStatus describes one hosted partition.
type PartStatus struct {
	Key     PartKey  `json:"key"`
	Rows    RowRange `json:"rows"`
	Version int64    `json:"version"`
	Mode    Mode     `json:"mode"`
}

// Errorf builds an error that wraps a sentinel with context, such as
// Errorf(ErrShapeMismatch, "push %s: %d values, want %d", key, n, want).
func Errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// RowRange is a half-open range [Start, End) of rows.
type RowRange = sharding.RowRange

// Partitions splits the variable by rows within its partition size bounds.
// Every client and server computes the same split from the same spec.
func (s VariableSpec) Partitions() []RowRange {
	minB, maxB := s.partitionBounds()
	return sharding.SplitRows(s.Rows(), 4*s.RowSize(), minB, maxB)
}

// partitionBounds returns the min and max partition bytes with defaults.
func (s VariableSpec) partitionBounds() (minBytes, maxBytes int64) {
	minBytes, maxBytes = s.MinPartitionBytes, s.MaxPartitionBytes
	if minBytes == 0 {
		minBytes = DefaultMinPartitionBytes
	}
	if maxBytes == 0 {
		maxBytes = DefaultMaxPartitionBytes
	}
	return minBytes, maxBytes
}
