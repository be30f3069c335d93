package blas

import (
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// naive is the reference C = alpha·op(A)·op(B) + beta·C.
func naive(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if tB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * float32(s)
			} else {
				c[i*ldc+j] = alpha*float32(s) + beta*c[i*ldc+j]
			}
		}
	}
}

func TestSgemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		return x
	}
	t.Logf("backend %s", Backend())
	for _, tc := range []struct {
		m, n, k int
		tA, tB  bool
	}{{3, 4, 5, false, false}, {7, 2, 9, true, false}, {5, 6, 3, false, true}, {8, 8, 8, true, true}, {1, 1, 1, false, false}, {33, 17, 65, false, false}} {
		ar, ac := tc.m, tc.k
		if tc.tA {
			ar, ac = ac, ar
		}
		br, bc := tc.k, tc.n
		if tc.tB {
			br, bc = bc, br
		}
		a, b := rnd(ar*ac), rnd(br*bc)
		c1 := rnd(tc.m * tc.n)
		c2 := append([]float32(nil), c1...)
		Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 0.5, a, ac, b, bc, 0.25, c1, tc.n)
		naive(tc.tA, tc.tB, tc.m, tc.n, tc.k, 0.5, a, ac, b, bc, 0.25, c2, tc.n)
		for i := range c1 {
			if math.Abs(float64(c1[i]-c2[i])) > 1e-4 {
				t.Fatalf("%+v: c[%d] = %v, want %v", tc, i, c1[i], c2[i])
			}
		}
	}
}

// BenchmarkSgemm128x784x256 is one MLP layer at batch 128: [128×784]·[784×256].
func BenchmarkSgemm128x784x256(b *testing.B) {
	for _, th := range []int{1, 2} {
		b.Run("threads="+string(rune('0'+th)), func(b *testing.B) {
			if Backend() != "openblas" && th > 1 {
				b.Skip("gonum backend has no thread setting")
			}
			SetThreads(th)
			defer SetThreads(1)
			m, n, k := 128, 256, 784
			a, bb, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
			for i := range a {
				a[i] = float32(i%7) * 0.1
			}
			for i := range bb {
				bb[i] = float32(i%5) * 0.1
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				Sgemm(false, false, m, n, k, 1, a, k, bb, n, 0, c, n)
			}
			cpu := cpuTime() - cpu0
			flops := 2 * float64(m*n*k) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOPS")
			// Per CPU-second: on a machine shared with other jobs the wall
			// figure understates the kernel (for 1 thread the two agree on
			// a quiet machine).
			b.ReportMetric(flops/cpu.Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
