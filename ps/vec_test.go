package ps

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// withKernels runs f with the assembly kernels (where this build has them)
// and with the Go loops.
func withKernels(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useAVX2
	defer func() { useAVX2 = saved }()
	for _, asm := range []bool{false, true} {
		if asm && !saved {
			continue
		}
		useAVX2 = asm
		name := "go"
		if asm {
			name = "avx2"
		}
		t.Run(name, f)
	}
}

// vecValues returns n values mixing magnitudes, signs, zeros and
// subnormals (all finite).
func vecValues(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		switch r.IntN(8) {
		case 0:
			v[i] = 0
		case 1:
			v[i] = math.Float32frombits(r.Uint32() & 0x807fffff) // subnormal or ±0
		case 2:
			v[i] = float32(r.NormFloat64() * 1e30)
		default:
			v[i] = float32(r.NormFloat64())
		}
	}
	return v
}

// The assembly kernels give the Go loops' results bit for bit, for every
// length up to a few blocks of 32 and at unaligned starts, and write no
// value past len(g).
func TestVecKernelsMatchGo(t *testing.T) {
	if !useAVX2 {
		t.Skip("no assembly kernels in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(1, 2))
	type kernel struct {
		name string
		run  func(dst, g []float32)
	}
	kernels := []kernel{
		{"sgd", func(d, g []float32) { sgdUpdate(d, g, 0.37) }},
		{"add", addTo},
		{"addDiv", func(d, g []float32) { addDiv(d, g, 3) }},
		{"div", func(d, g []float32) { divBy(d[:len(g)], 3) }},
	}
	for _, k := range kernels {
		for n := 0; n < 140; n++ {
			for off := 0; off < 3; off++ {
				g := vecValues(r, n+off)[off:]
				base := vecValues(r, n+off+5)
				want := slices.Clone(base)
				got := slices.Clone(base)
				useAVX2 = false
				k.run(want[off:off+n+5], g)
				useAVX2 = true
				k.run(got[off:off+n+5], g)
				for i := range want {
					if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
						t.Fatalf("%s, n %d, offset %d: value %d is %v (%#x), Go gives %v (%#x)",
							k.name, n, off, i-off, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
		}
	}
}

// firstNonFinite finds the first NaN or ±Inf at every position, with a
// later one present, in both implementations, across the assembly's
// block boundaries.
func TestFirstNonFiniteEveryPosition(t *testing.T) {
	bads := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7f800001), math.Float32frombits(0xffffffff)}
	withKernels(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{1, 7, 8, 9, 31, 32, 33, 100, 4095, 4096, 4097, 9000} {
			g := vecValues(r, n)
			if got := firstNonFinite(g); got != -1 {
				t.Fatalf("n %d, all finite: firstNonFinite = %d", n, got)
			}
			step := 1
			if n > 200 {
				step = 97
			}
			for pos := 0; pos < n; pos += step {
				bad := bads[pos%len(bads)]
				h := slices.Clone(g)
				h[pos] = bad
				h[n-1] = bads[0]
				if got := firstNonFinite(h); got != pos {
					t.Fatalf("n %d, %v at %d: firstNonFinite = %d", n, bad, pos, got)
				}
			}
		}
	})
}

// BenchmarkVec runs each kernel in both implementations over the first
// MLP layer's gradient (784×256, cache-resident) and over 4 MiB.
func BenchmarkVec(b *testing.B) {
	saved := useAVX2
	defer func() { useAVX2 = saved }()
	for _, n := range []int{784 * 256, 1 << 20} {
		g := vecValues(rand.New(rand.NewPCG(5, 6)), n)
		p := make([]float32, n)
		for _, impl := range []string{"go", "avx2"} {
			if impl == "avx2" && !saved {
				continue
			}
			useAVX2 = impl == "avx2"
			for _, k := range []struct {
				name string
				f    func()
			}{
				{"finite", func() { firstNonFinite(g) }},
				{"sgd", func() { sgdUpdate(p, g, 1e-9) }},
				{"add", func() { addTo(p, g) }},
				{"addDiv", func() { addDiv(p, g, 1) }},
			} {
				b.Run(fmt.Sprintf("%s/n=%d/%s", k.name, n, impl), func(b *testing.B) {
					b.SetBytes(int64(4 * n))
					for b.Loop() {
						k.f()
					}
				})
			}
		}
	}
}
