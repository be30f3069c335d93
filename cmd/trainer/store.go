package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/runtime"
)

// psStore adapts a ps.Client to the runtime's VarStore: variables the graph
// declares become parameter-server variables with this run's optimizer and
// consistency mode, and the session's step becomes the sync version a pull
// waits for and a push is computed against, or the SSP clock.
type psStore struct {
	client *ps.Client
	opt    ps.OptimizerSpec
	cons   ps.Consistency

	// base is added to the session's steps: the variables' version when
	// this job started (sync mode), so a job resumes on servers that
	// already hold its variables.
	base int64

	pullNanos atomic.Int64 // wall time inside Pull (includes sync/SSP waits)
	waitNanos atomic.Int64 // of which the servers held the pulls waiting
	pushNanos atomic.Int64 // wall time inside Push (overlaps backprop)
	pulls     atomic.Int64
	pushes    atomic.Int64
	// pulledBytes counts the value bytes successful pulls received (4 per
	// float32, waits and resume included); pushedBytes the payload bytes
	// successful pushes sent (4 per gradient value, 8 per sparse row id).
	// Message framing is not counted.
	pulledBytes atomic.Int64
	pushedBytes atomic.Int64
}

// pullOps pulls ops and counts the bytes received and the time the
// servers held the pull waiting.
func (s *psStore) pullOps(ctx context.Context, ops []ps.PullOp, opt ps.PullOptions) ([]int64, error) {
	var st ps.PullStats
	opt.Stats = &st
	vs, err := s.client.PullMany(ctx, ops, opt)
	s.waitNanos.Add(int64(st.Waited))
	if err != nil {
		return nil, err
	}
	n := 0
	for _, op := range ops {
		n += 4 * len(op.Dst)
	}
	s.pulledBytes.Add(int64(n))
	return vs, nil
}

var _ runtime.VarStore = (*psStore)(nil)

// specFor turns a runtime variable definition into a ps spec.
func (s *psStore) specFor(d runtime.VariableDef) ps.VariableSpec {
	shape := make([]int64, len(d.Shape))
	for i, x := range d.Shape {
		shape[i] = int64(x)
	}
	return ps.VariableSpec{
		Name:  d.Name,
		Shape: shape,
		Init: ps.Initializer{
			Kind: ps.InitKind(d.Init.Kind), Value: d.Init.Value, Min: d.Init.Min, Max: d.Init.Max,
			Mean: d.Init.Mean, Stddev: d.Init.Stddev, Seed: d.Init.Seed,
		},
		Optimizer:   s.opt,
		Consistency: s.cons,
	}
}

// Create implements runtime.VarStore. A variable that exists on the servers
// with another shape, optimizer or mode is an error naming both.
func (s *psStore) Create(ctx context.Context, defs []runtime.VariableDef) error {
	for _, d := range defs {
		spec := s.specFor(d)
		if err := s.client.CreateVariable(ctx, spec); err != nil {
			if errors.Is(err, ps.ErrSpecMismatch) || errors.Is(err, ps.ErrShapeMismatch) {
				return fmt.Errorf("variable %s (shape %v, %s, %s mode) disagrees with the parameter servers' copy; was the cluster started for another model or run? %w",
					d.Name, d.Shape, s.opt.Kind, s.cons.Mode, err)
			}
			return fmt.Errorf("create variable %s: %w", d.Name, err)
		}
	}
	return nil
}

// Pull implements runtime.VarStore. In sync mode it waits until the
// variables reach version step (every worker's gradient of step-1 applied);
// in SSP mode step is this worker's clock.
func (s *psStore) Pull(ctx context.Context, step int64, reqs []runtime.PullRequest) error {
	t0 := time.Now()
	defer func() { s.pullNanos.Add(int64(time.Since(t0))); s.pulls.Add(1) }()
	step += s.base
	ops := make([]ps.PullOp, len(reqs))
	for i, r := range reqs {
		ops[i] = ps.PullOp{Var: r.Name, Rows: r.Rows, Dst: r.Dst}
		if s.cons.Mode == ps.Sync {
			ops[i].MinVersion = step
		}
	}
	var opt ps.PullOptions
	if s.cons.Mode == ps.SSP {
		opt.Clock = step
	}
	if _, err := s.pullOps(ctx, ops, opt); err != nil {
		return fmt.Errorf("pull at step %d: %w", step, err)
	}
	return nil
}

// Push implements runtime.VarStore.
func (s *psStore) Push(ctx context.Context, step int64, g runtime.Gradient) error {
	t0 := time.Now()
	defer func() { s.pushNanos.Add(int64(time.Since(t0))); s.pushes.Add(1) }()
	step += s.base
	op := ps.PushOp{Var: g.Name, Rows: g.Rows, Grad: g.Values}
	if s.cons.Mode == ps.Sync {
		op.Step = step
	}
	var opt ps.PushOptions
	if s.cons.Mode == ps.SSP {
		opt.Clock = step + 1
	}
	if err := s.client.PushMany(ctx, []ps.PushOp{op}, opt); err != nil {
		return fmt.Errorf("push %s at step %d: %w", g.Name, step, err)
	}
	s.pushedBytes.Add(int64(4*len(g.Values) + 8*len(g.Rows)))
	return nil
}

// resume sets base, in sync mode, to the version the servers' copy of the
// variables has reached (0 for new variables), so that a job started on a
// cluster that already trained them continues from there instead of
// failing with stale steps. Every worker of a sync job reads the same
// version: no step completes before all of them push it.
func (s *psStore) resume(ctx context.Context, defs []runtime.VariableDef) (int64, error) {
	if s.cons.Mode != ps.Sync {
		return 0, nil
	}
	ops := make([]ps.PullOp, len(defs))
	for i, d := range defs {
		ops[i] = ps.PullOp{Var: d.Name, Dst: make([]float32, d.Shape.NumElements())}
	}
	vs, err := s.pullOps(ctx, ops, ps.PullOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the variables' versions: %w", err)
	}
	base := vs[0]
	for i, v := range vs {
		if v != base {
			return 0, fmt.Errorf("variables are at different versions (%s at %d, %s at %d): another job is training them", defs[0].Name, base, defs[i].Name, v)
		}
	}
	s.base = base
	return base, nil
}
