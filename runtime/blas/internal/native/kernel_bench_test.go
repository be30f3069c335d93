package native

import "testing"

// BenchmarkKernel is the micro-kernel alone on L1-resident panels: the
// ceiling the blocking and packing around it can reach.
func BenchmarkKernel(b *testing.B) {
	if !OK {
		b.Skip(Why)
	}
	for _, kc := range []int{64, 128, 196, 256} {
		b.Run("kc="+itoa(kc), func(b *testing.B) {
			a, bb, c := make([]float32, kc*mr), make([]float32, kc*nr), make([]float32, mr*nr)
			for b.Loop() {
				kernel6x16(kc, &a[0], mr, &bb[0], &c[0], nr, 1, 1)
			}
			b.ReportMetric(2*float64(mr*nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

func itoa(n int) string {
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

// BenchmarkPack measures the packing routines on the MLP's first-layer
// operands, in ns per packed element.
func BenchmarkPack(b *testing.B) {
	for _, s := range []struct {
		name       string
		isA, trans bool
		rows, cols int // of the stored matrix
		mc, kc     int // block packed (mc = rows of op(A) or cols of op(B))
	}{
		{"A-N-128x784", true, false, 128, 784, 132, 196},
		{"A-T-784x128(of 128x784)", true, true, 128, 784, 132, 128},
		{"B-N-784x256", false, false, 784, 256, 256, 196},
		{"B-T-256x128(of 256x128)", false, true, 256, 128, 256, 128},
	} {
		b.Run(s.name, func(b *testing.B) {
			src := make([]float32, s.rows*s.cols)
			dst := make([]float32, roundUp(s.mc, nr)*s.kc)
			for b.Loop() {
				if s.isA {
					packA(s.trans, src, s.cols, 0, s.mc-4, 0, s.kc, dst)
				} else {
					packB(s.trans, src, s.cols, 0, s.kc, 0, s.mc, dst)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(s.mc*s.kc), "ns/elem")
		})
	}
}
