package blas

import (
	"testing"

	"github.com/flowps/flowps/runtime/blas/internal/native"
)

// sgemmShapes are the products of the runtime's two benchmark models.
//
// The MNIST MLP 784-256-128-10 at batch 128 (runtime.BenchmarkMLPStep):
// the forward products x·W (beta = 1: the plan fuses the bias into C),
// the weight gradients xᵀ·dy (transA) and the input gradients dy·Wᵀ
// (transB) of gradMatMul; the first layer has no input gradient.
//
// A LeNet-style CNN step at batch 32 (runtime.BenchmarkCNNStep; conv2:
// 5×5×32→64 on 14×14 as im2col products, whole or per chunk; fc1:
// 3136→512), including transposed variants.
var sgemmShapes = []struct {
	name    string
	ta, tb  bool
	m, n, k int
	beta    float32
}{
	{"mlp-fwd1-128x256x784", false, false, 128, 256, 784, 1},
	{"mlp-fwd2-128x128x256", false, false, 128, 128, 256, 1},
	{"mlp-fwd3-128x10x128", false, false, 128, 10, 128, 1},
	{"mlp-dw1-784x256x128-tA", true, false, 784, 256, 128, 0},
	{"mlp-dw2-256x128x128-tA", true, false, 256, 128, 128, 0},
	{"mlp-dw3-128x10x128-tA", true, false, 128, 10, 128, 0},
	{"mlp-dx2-128x256x128-tB", false, true, 128, 256, 128, 0},
	{"mlp-dx3-128x128x10-tB", false, true, 128, 128, 10, 0},
	{"conv2-fwd-6272x64x800", false, false, 6272, 64, 800, 0},
	{"conv2-fwdT-64x6272x800", false, false, 64, 6272, 800, 0},
	{"conv2-fwd-chunk1-196x64x800", false, false, 196, 64, 800, 0},
	{"conv2-fwd-chunk2-392x64x800", false, false, 392, 64, 800, 0},
	{"conv2-fwd-chunk4-784x64x800", false, false, 784, 64, 800, 0},
	{"conv2-fwd-chunk6-1176x64x800", false, false, 1176, 64, 800, 0},
	{"conv2-fwd-chunk16-3136x64x800", false, false, 3136, 64, 800, 0},
	{"conv2-fgrad-chunk4-800x64x784-tA", true, false, 800, 64, 784, 0},
	{"conv2-igrad-chunk4-784x800x64-tB", false, true, 784, 800, 64, 0},
	{"conv2-igrad-6272x800x64-tB", false, true, 6272, 800, 64, 0},
	{"conv2-fgrad-800x64x6272-tA", true, false, 800, 64, 6272, 0},
	{"conv2-fgradT-64x800x6272-tB", false, true, 64, 800, 6272, 0},
	{"fc1-fwd-32x512x3136", false, false, 32, 512, 3136, 0},
	{"fc1-dw-3136x512x32-tA", true, false, 3136, 512, 32, 0},
	{"fc1-dx-32x3136x512-tB", false, true, 32, 3136, 512, 0},
	{"fc1-fwdT-512x32x3136-tA-tB", true, true, 512, 32, 3136, 0},
	{"fc1-dxT-3136x32x512-tB", false, true, 3136, 32, 512, 0},
	{"fc1-dwT-512x3136x32-tA-tB", true, true, 512, 3136, 32, 0},
	{"square-1024", false, false, 1024, 1024, 1024, 0},
}

// BenchmarkSgemmShapes measures every shape on every backend this binary
// has, one after the other in the same run, in GFLOP per CPU-second (the
// process's user+system time, so other jobs on the machine do not count
// and a backend's extra threads do). Run with -cpu 1 for one thread, and
// -count 3 or more to interleave the backends:
//
//	go test -tags openblas -run XXX -bench SgemmShapes -cpu 1 -count 3 ./runtime/blas
func BenchmarkSgemmShapes(b *testing.B) {
	var backends []backendID
	backends = append(backends, useGonum)
	if haveOpenBLAS {
		backends = append(backends, useOpenBLAS)
	}
	if native.OK {
		backends = append(backends, useNative)
	}
	for _, s := range sgemmShapes {
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
		for _, be := range backends {
			b.Run(s.name+"/"+be.String(), func(b *testing.B) {
				cpu0 := cpuTime()
				for b.Loop() {
					run(be, s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, bb, bc, s.beta, c, s.n)
				}
				cpu := cpuTime() - cpu0
				flops := 2 * float64(s.m*s.n*s.k) * float64(b.N)
				b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}
