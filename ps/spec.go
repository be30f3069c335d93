package ps

import (
	"fmt"
	"github.com/flowps/flowps/sharding"
	"math"
	"slices"
	"strings"
)

// maxElements bounds a variable's element count so that sizes fit an int
// and a row offset never overflows (2^40 float32 values is 4 TiB).
const maxElements = 1 << 40

// MaxPartitions bounds how many partitions one variable may be split into.
const MaxPartitions = 1 << 20

// Validate checks a variable spec as a server does before hosting it: a
// non-empty name, rank ≥ 1 with positive dimensions, a known initializer
// and optimizer with sane hyper-parameters (LR > 0), and a consistency
// contract that can make progress (sync and ssp need Workers ≥ 1; sync
// needs 0 ≤ Backup < Workers). Errors wrap ErrInvalidArgument.
func (s *VariableSpec) Validate() error {
	if s.Name == "" {
		return Errorf(ErrInvalidArgument, "variable has no name")
	}
	if len(s.Shape) == 0 {
		return Errorf(ErrInvalidArgument, "variable %s: rank 0, want rank ≥ 1", s.Name)
	}
	n := int64(1)
	for i, d := range s.Shape {
		if d <= 0 {
			return Errorf(ErrInvalidArgument, "variable %s: dimension %d is %d, want > 0", s.Name, i, d)
		}
		if n > maxElements/d {
			return Errorf(ErrInvalidArgument, "variable %s: shape %v has more than 2^40 elements", s.Name, s.Shape)
		}
		n *= d
	}
	if s.MinPartitionBytes < 0 || s.MaxPartitionBytes < 0 {
		return Errorf(ErrInvalidArgument, "variable %s: negative partition bounds %d, %d", s.Name, s.MinPartitionBytes, s.MaxPartitionBytes)
	}
	minB, maxB := s.partitionBounds()
	if n := sharding.CountPartitions(s.Rows(), 4*s.RowSize(), minB, maxB); n > MaxPartitions {
		return Errorf(ErrInvalidArgument, "variable %s: shape %v with partition bounds [%d, %d] bytes makes %d partitions, more than %d",
			s.Name, s.Shape, s.MinPartitionBytes, s.MaxPartitionBytes, n, MaxPartitions)
	}
	if err := validateInit(s.Init); err != nil {
		return fmt.Errorf("variable %s: %w", s.Name, err)
	}
	if err := validateOptimizer(s.Optimizer.WithDefaults()); err != nil {
		return fmt.Errorf("variable %s: %w", s.Name, err)
	}
	if err := validateConsistency(s.Consistency); err != nil {
		return fmt.Errorf("variable %s: %w", s.Name, err)
	}
	return nil
}

func finite32(x float32) bool {
	f := float64(x)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

func validateInit(in Initializer) error {
	for _, v := range []float32{in.Value, in.Min, in.Max, in.Mean, in.Stddev} {
		if !finite32(v) {
			return Errorf(ErrInvalidArgument, "initializer %q has a non-finite parameter", in.Kind)
		}
	}
	switch in.Kind {
	case "", InitZeros, InitConstant, InitGlorotUniform:
	case InitUniform:
		if in.Max < in.Min {
			return Errorf(ErrInvalidArgument, "uniform initializer: max %g < min %g", in.Max, in.Min)
		}
	case InitNormal:
		if in.Stddev < 0 {
			return Errorf(ErrInvalidArgument, "normal initializer: stddev %g < 0", in.Stddev)
		}
	default:
		return Errorf(ErrInvalidArgument, "unknown initializer %q", in.Kind)
	}
	return nil
}

func validateOptimizer(o OptimizerSpec) error {
	for _, v := range []float32{o.LR, o.Momentum, o.Beta1, o.Beta2, o.Epsilon, o.InitialAccumulator, o.L1, o.L2, o.LRPower} {
		if !finite32(v) {
			return Errorf(ErrInvalidArgument, "optimizer %q has a non-finite hyper-parameter", o.Kind)
		}
	}
	if !(o.LR > 0) {
		return Errorf(ErrInvalidArgument, "optimizer %q: learning rate %g, want > 0", o.Kind, o.LR)
	}
	switch o.Kind {
	case OptSGD:
	case OptMomentum:
		if o.Momentum < 0 {
			return Errorf(ErrInvalidArgument, "momentum %g < 0", o.Momentum)
		}
	case OptAdagrad:
		if o.InitialAccumulator < 0 || o.Epsilon < 0 {
			return Errorf(ErrInvalidArgument, "adagrad: initial accumulator %g and epsilon %g must be ≥ 0", o.InitialAccumulator, o.Epsilon)
		}
	case OptAdam:
		if o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1 {
			return Errorf(ErrInvalidArgument, "adam: beta1 %g and beta2 %g must be in [0, 1)", o.Beta1, o.Beta2)
		}
		if o.Epsilon <= 0 {
			return Errorf(ErrInvalidArgument, "adam: epsilon %g, want > 0", o.Epsilon)
		}
	case OptFTRL:
		if o.InitialAccumulator <= 0 {
			return Errorf(ErrInvalidArgument, "ftrl: initial accumulator %g, want > 0", o.InitialAccumulator)
		}
		if o.L1 < 0 || o.L2 < 0 {
			return Errorf(ErrInvalidArgument, "ftrl: l1 %g and l2 %g must be ≥ 0", o.L1, o.L2)
		}
		if o.LRPower > 0 {
			return Errorf(ErrInvalidArgument, "ftrl: lr_power %g, want ≤ 0", o.LRPower)
		}
	default:
		return Errorf(ErrInvalidArgument, "unknown optimizer %q", o.Kind)
	}
	return nil
}

func validateConsistency(c Consistency) error {
	switch c.Mode {
	case "", Async:
	case Sync:
		if c.Workers < 1 {
			return Errorf(ErrInvalidArgument, "sync mode with %d workers, want ≥ 1", c.Workers)
		}
		if c.Backup < 0 || c.Backup >= c.Workers {
			return Errorf(ErrInvalidArgument, "sync mode: %d backup workers of %d, want 0 ≤ backup < workers", c.Backup, c.Workers)
		}
	case SSP:
		if c.Workers < 1 {
			return Errorf(ErrInvalidArgument, "ssp mode with %d workers, want ≥ 1", c.Workers)
		}
		if c.Staleness < 0 {
			return Errorf(ErrInvalidArgument, "ssp mode: staleness %d, want ≥ 0", c.Staleness)
		}
	default:
		return Errorf(ErrInvalidArgument, "unknown consistency mode %q", c.Mode)
	}
	return nil
}

// normalized returns a deep copy of the spec with defaults filled in
// (optimizer hyper-parameters, async mode, zeros initializer, partition
// bounds), the form a server stores and compares.
func (s *VariableSpec) normalized() VariableSpec {
	n := *s
	n.Shape = slices.Clone(s.Shape)
	n.Optimizer = s.Optimizer.WithDefaults()
	if n.Consistency.Mode == "" {
		n.Consistency.Mode = Async
	}
	if n.Consistency.Mode == Async {
		n.Consistency = Consistency{Mode: Async}
	}
	if n.Init.Kind == "" {
		n.Init.Kind = InitZeros
	}
	if n.MinPartitionBytes == 0 {
		n.MinPartitionBytes = DefaultMinPartitionBytes
	}
	if n.MaxPartitionBytes == 0 {
		n.MaxPartitionBytes = DefaultMaxPartitionBytes
	}
	return n
}

// specDiff describes how two normalized specs differ ("" when they are
// equal), naming both values of every differing field.
func specDiff(have, want *VariableSpec) string {
	var d []string
	add := func(field string, a, b any) {
		d = append(d, fmt.Sprintf("%s %v (hosted) vs %v (requested)", field, a, b))
	}
	if !slices.Equal(have.Shape, want.Shape) {
		add("shape", have.Shape, want.Shape)
	}
	if have.Optimizer != want.Optimizer {
		add("optimizer", fmt.Sprintf("%+v", have.Optimizer), fmt.Sprintf("%+v", want.Optimizer))
	}
	if have.Consistency != want.Consistency {
		add("consistency", fmt.Sprintf("%+v", have.Consistency), fmt.Sprintf("%+v", want.Consistency))
	}
	if have.Init != want.Init {
		add("init", fmt.Sprintf("%+v", have.Init), fmt.Sprintf("%+v", want.Init))
	}
	if have.AllowNonFinite != want.AllowNonFinite {
		add("allow_non_finite", have.AllowNonFinite, want.AllowNonFinite)
	}
	if have.MinPartitionBytes != want.MinPartitionBytes || have.MaxPartitionBytes != want.MaxPartitionBytes {
		add("partition bounds", [2]int64{have.MinPartitionBytes, have.MaxPartitionBytes}, [2]int64{want.MinPartitionBytes, want.MaxPartitionBytes})
	}
	return strings.Join(d, "; ")
}
