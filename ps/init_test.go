package ps

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func initSpec(shape []int64, in Initializer) *VariableSpec {
	return &VariableSpec{Name: "w", Shape: shape, Init: in, Optimizer: OptimizerSpec{LR: 1},
		MinPartitionBytes: 64, MaxPartitionBytes: 4096}
}

func initPart(t *testing.T, s *VariableSpec, part int) []float32 {
	t.Helper()
	r := s.Partitions()[part]
	dst := make([]float32, r.Len()*s.RowSize())
	for i := range dst {
		dst[i] = 42 // must be overwritten
	}
	if err := InitPartition(dst, s, part); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestInitDeterministicPerPartition(t *testing.T) {
	s := initSpec([]int64{100, 20}, Initializer{Kind: InitNormal, Stddev: 1, Seed: 7})
	if n := len(s.Partitions()); n < 2 {
		t.Fatalf("want several partitions, got %d", n)
	}
	a0, b0 := initPart(t, s, 0), initPart(t, s, 0)
	if !slices.Equal(a0, b0) {
		t.Fatal("same (seed, name, part) gave different values")
	}
	a1 := initPart(t, s, 1)
	if slices.Equal(a0[:10], a1[:10]) {
		t.Fatal("partitions 0 and 1 drew the same values")
	}
	s2 := *s
	s2.Init.Seed = 8
	if slices.Equal(a0, initPart(t, &s2, 0)) {
		t.Fatal("another seed drew the same values")
	}
	s3 := *s
	s3.Name = "v"
	if slices.Equal(a0, initPart(t, &s3, 0)) {
		t.Fatal("another name drew the same values")
	}
}

func TestInitKinds(t *testing.T) {
	moments := func(x []float32) (mean, sd float64) {
		for _, v := range x {
			mean += float64(v)
		}
		mean /= float64(len(x))
		for _, v := range x {
			sd += (float64(v) - mean) * (float64(v) - mean)
		}
		return mean, math.Sqrt(sd / float64(len(x)))
	}
	shape := []int64{1000, 10}
	one := func(in Initializer) []float32 {
		s := initSpec(shape, in)
		s.MaxPartitionBytes = 1 << 20 // one partition
		return initPart(t, s, 0)
	}
	if v := one(Initializer{}); slices.ContainsFunc(v, func(x float32) bool { return x != 0 }) {
		t.Error("zeros initializer left a non-zero")
	}
	if v := one(Initializer{Kind: InitConstant, Value: 2.5}); slices.ContainsFunc(v, func(x float32) bool { return x != 2.5 }) {
		t.Error("constant initializer left another value")
	}
	u := one(Initializer{Kind: InitUniform, Min: -2, Max: 3})
	if lo, hi := slices.Min(u), slices.Max(u); lo < -2 || hi >= 3 || lo > -1.9 || hi < 2.9 {
		t.Errorf("uniform[-2,3) drew range [%g, %g]", lo, hi)
	}
	if m, _ := moments(u); math.Abs(m-0.5) > 0.1 {
		t.Errorf("uniform mean %g, want 0.5", m)
	}
	n := one(Initializer{Kind: InitNormal, Mean: 1, Stddev: 2})
	if m, sd := moments(n); math.Abs(m-1) > 0.1 || math.Abs(sd-2) > 0.1 {
		t.Errorf("normal(1, 2) drew mean %g sd %g", m, sd)
	}
	// Glorot: fans of the whole variable, not of the partition.
	for _, tc := range []struct {
		shape []int64
		limit float64
	}{
		{[]int64{1000, 10}, math.Sqrt(6.0 / 1010)},
		{[]int64{600}, math.Sqrt(6.0 / 1200)},
		{[]int64{3, 3, 16, 32}, math.Sqrt(6.0 / (9*16 + 9*32))},
	} {
		s := initSpec(tc.shape, Initializer{Kind: InitGlorotUniform, Seed: 1})
		var all []float32
		for i := range s.Partitions() {
			all = append(all, initPart(t, s, i)...)
		}
		lo, hi := slices.Min(all), slices.Max(all)
		if float64(-lo) > tc.limit+1e-6 || float64(hi) > tc.limit+1e-6 || float64(hi) < 0.9*tc.limit || float64(-lo) < 0.9*tc.limit {
			t.Errorf("glorot %v drew [%g, %g], want about ±%g", tc.shape, lo, hi, tc.limit)
		}
	}
}

func TestInitRejects(t *testing.T) {
	s := initSpec([]int64{10, 2}, Initializer{Kind: InitUniform, Max: 1})
	if err := InitPartition(make([]float32, 3), s, 0); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("wrong length: %v", err)
	}
	if err := InitPartition(make([]float32, 20), s, 5); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no such partition: %v", err)
	}
	s.Init.Kind = "orthogonal"
	if err := InitPartition(make([]float32, 20), s, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown kind: %v", err)
	}
}
