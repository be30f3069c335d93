package ps

import (
	"testing"
)

// BenchmarkApply measures dense optimizer applies on one 64 MiB partition
// beside a plain copy of 64 MiB, the memory-bandwidth baseline.
//
// MB/s counts every byte read or written once per element, so the numbers
// compare as memory traffic: copy reads src and writes dst (2 × 64 MiB);
// SGD reads param and grad and writes param (3 ×); momentum and adagrad
// also read and write their accumulator (5 ×); Adam reads param, grad, m, v
// and writes param, m, v (7 ×); FTRL reads param, grad, n, z and writes
// param, n, z (7 ×).
func BenchmarkApply(b *testing.B) {
	const n = 64 << 20 / 4
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = float32(i%97) * 1e-3
	}
	param := make([]float32, n)
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(2 * 4 * n)
		for b.Loop() {
			copy(param, grad)
		}
	})
	for _, tc := range []struct {
		spec    OptimizerSpec
		traffic int64
	}{
		{OptimizerSpec{Kind: OptSGD, LR: 1e-3}, 3},
		{OptimizerSpec{Kind: OptMomentum, LR: 1e-3}, 5},
		{OptimizerSpec{Kind: OptAdagrad, LR: 1e-3}, 5},
		{OptimizerSpec{Kind: OptAdam, LR: 1e-3}, 7},
		{OptimizerSpec{Kind: OptFTRL, LR: 1e-3}, 7},
	} {
		b.Run(string(tc.spec.Kind), func(b *testing.B) {
			o, err := NewOptimizer(tc.spec, n)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(tc.traffic * 4 * n)
			for b.Loop() {
				if err := o.ApplyDense(param, grad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplySparse measures a sparse SGD and Adam apply of 1024 random
// rows of 64 values (256 KiB of gradient) into a 64 MiB embedding
// partition. MB/s counts gradient bytes.
func BenchmarkApplySparse(b *testing.B) {
	const rowSize, rows, batch = 64, 64 << 20 / 4 / 64, 1024
	param := make([]float32, rows*rowSize)
	grad := make([]float32, batch*rowSize)
	ids := make([]int64, batch)
	for i := range ids {
		ids[i] = int64(mix64(uint64(i)) % rows)
		grad[i] = 1e-3
	}
	for _, spec := range []OptimizerSpec{{Kind: OptSGD, LR: 1e-3}, {Kind: OptAdam, LR: 1e-3}} {
		b.Run(string(spec.Kind), func(b *testing.B) {
			o, err := NewOptimizer(spec, len(param))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(4 * batch * rowSize)
			for b.Loop() {
				if err := o.ApplySparse(param, rowSize, ids, grad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
