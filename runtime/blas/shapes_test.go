package blas

import (
	"fmt"
	"testing"
)

// BenchmarkSgemmShapes measures the products of a LeNet-style CNN step at
// batch 32 (conv2: 5×5×32→64 on 14×14; fc1: 3136→512), per CPU-second.
func BenchmarkSgemmShapes(b *testing.B) {
	for _, s := range []struct {
		name    string
		ta, tb  bool
		m, n, k int
	}{
		{"conv2-fwd-6272x64x800", false, false, 6272, 64, 800},
		{"conv2-fwdT-64x6272x800", false, false, 64, 6272, 800},
		{"conv2-fwd-chunk1-196x64x800", false, false, 196, 64, 800},
		{"conv2-fwd-chunk2-392x64x800", false, false, 392, 64, 800},
		{"conv2-fwd-chunk4-784x64x800", false, false, 784, 64, 800},
		{"conv2-fwd-chunk6-1176x64x800", false, false, 1176, 64, 800},
		{"conv2-fwd-chunk16-3136x64x800", false, false, 3136, 64, 800},
		{"conv2-fgrad-chunk4-800x64x784-tA", true, false, 800, 64, 784},
		{"conv2-igrad-chunk4-784x800x64-tB", false, true, 784, 800, 64},
		{"conv2-igrad-6272x800x64-tB", false, true, 6272, 800, 64},
		{"conv2-fgrad-800x64x6272-tA", true, false, 800, 64, 6272},
		{"conv2-fgradT-64x800x6272-tB", false, true, 64, 800, 6272},
		{"fc1-fwd-32x512x3136", false, false, 32, 512, 3136},
		{"fc1-dw-3136x512x32-tA", true, false, 3136, 512, 32},
		{"fc1-dx-32x3136x512-tB", false, true, 32, 3136, 512},
		{"fc1-fwdT-512x32x3136-tA-tB", true, true, 512, 32, 3136},
		{"fc1-dxT-3136x32x512-tB", false, true, 3136, 32, 512},
		{"fc1-dwT-512x3136x32-tA-tB", true, true, 512, 3136, 32},
	} {
		b.Run(s.name, func(b *testing.B) {
			ar, ac := s.m, s.k
			if s.ta {
				ar, ac = s.k, s.m
			}
			br, bc := s.k, s.n
			if s.tb {
				br, bc = s.n, s.k
			}
			a, bb, c := make([]float32, ar*ac), make([]float32, br*bc), make([]float32, s.m*s.n)
			for i := range a {
				a[i] = float32(i%7) * 0.1
			}
			for i := range bb {
				bb[i] = float32(i%5) * 0.1
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				Sgemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, bb, bc, 0, c, s.n)
			}
			cpu := cpuTime() - cpu0
			flops := 2 * float64(s.m*s.n*s.k) * float64(b.N)
			b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
			_ = fmt.Sprint()
		})
	}
}
