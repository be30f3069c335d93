package wire

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/flowps/flowps/ps"
)

func TestTopKKnownValues(t *testing.T) {
	tk, err := NewTopK(0.4) // k = ceil(0.4*5) = 2
	if err != nil {
		t.Fatal(err)
	}
	idx, vals, err := tk.Compress([]float32{0.1, -3, 2, 0.5, -0.2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int32{1, 2}) || !slices.Equal(vals, []float32{-3, 2}) {
		t.Fatalf("step 1: %v %v, want [1 2] [-3 2]", idx, vals)
	}
	if r := tk.Residual(); !slices.Equal(r, []float32{0.1, 0, 0, 0.5, -0.2}) {
		t.Fatalf("residual %v", r)
	}
	// The residual is added to the next gradient: 0.5+0.5 = 1 and
	// -0.2-1 = -1.2 now lead.
	idx, vals, err = tk.Compress([]float32{0, 0.1, 0.1, 0.5, -1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int32{3, 4}) || !slices.Equal(vals, []float32{1, -1.2}) {
		t.Fatalf("step 2: %v %v, want [3 4] [1 -1.2]", idx, vals)
	}
	if r := tk.Residual(); !slices.Equal(r, []float32{0.1, 0.1, 0.1, 0, 0}) {
		t.Fatalf("residual %v", r)
	}
	// Ties at the threshold are taken in index order.
	idx, _, err = tk.Compress([]float32{0, 0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idx, []int32{0, 1}) {
		t.Fatalf("ties: %v, want [0 1]", idx)
	}
}

// Error feedback loses nothing: the sum of everything sent plus the
// residual equals the sum of every gradient.
func TestTopKConservesMass(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 1000
	for _, ratio := range []float64{0.001, 0.01, 0.1, 0.5, 1} {
		tk, err := NewTopK(ratio)
		if err != nil {
			t.Fatal(err)
		}
		sent := make([]float64, n)
		total := make([]float64, n)
		g := make([]float32, n)
		for range 50 {
			for i := range g {
				g[i] = float32(rng.NormFloat64())
				total[i] += float64(g[i])
			}
			idx, vals, err := tk.Compress(g)
			if err != nil {
				t.Fatal(err)
			}
			if len(idx) != tk.K(n) {
				t.Fatalf("ratio %v: %d entries, want %d", ratio, len(idx), tk.K(n))
			}
			if !slices.IsSorted(idx) {
				t.Fatalf("indices not ascending")
			}
			for j, i := range idx {
				sent[i] += float64(vals[j])
			}
		}
		for i := range total {
			if d := math.Abs(sent[i] + float64(tk.Residual()[i]) - total[i]); d > 1e-3 {
				t.Fatalf("ratio %v entry %d: sent+residual differs from total by %g", ratio, i, d)
			}
		}
	}
}

// Compress sends exactly the largest magnitudes: every sent |value| ≥
// every kept residual |value|.
func TestTopKSelectsLargest(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		n := 1 + rng.IntN(300)
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(rng.IntN(7) - 3) // many ties
			if trial%2 == 0 {
				g[i] = float32(rng.NormFloat64())
			}
		}
		tk, _ := NewTopK(rng.Float64()*0.99 + 0.01)
		idx, vals, err := tk.Compress(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(idx) != tk.K(n) {
			t.Fatalf("n %d: %d entries, want %d", n, len(idx), tk.K(n))
		}
		minSent := float32(math.Inf(1))
		for j, i := range idx {
			if vals[j] != g[i] {
				t.Fatalf("value at %d is %g, gradient has %g", i, vals[j], g[i])
			}
			minSent = min(minSent, magnitude(vals[j]))
		}
		for i, r := range tk.Residual() {
			if magnitude(r) > minSent {
				t.Fatalf("kept %g at %d larger than a sent %g", r, i, minSent)
			}
		}
	}
}

func TestKthLargest(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 500 {
		n := 1 + rng.IntN(100)
		m := make([]float32, n)
		for i := range m {
			m[i] = float32(rng.IntN(10))
		}
		sorted := slices.Clone(m)
		slices.Sort(sorted)
		slices.Reverse(sorted)
		k := 1 + rng.IntN(n)
		if got := kthLargest(slices.Clone(m), k); got != sorted[k-1] {
			t.Fatalf("kthLargest(%v, %d) = %g, want %g", m, k, got, sorted[k-1])
		}
	}
}

func TestTopKNaNAndErrors(t *testing.T) {
	tk, _ := NewTopK(0.1)
	idx, _, err := tk.Compress([]float32{1, 2, float32(math.NaN()), 3, 4, 5, 6, 7, 8, 9})
	if err != nil || !slices.Equal(idx, []int32{2}) {
		t.Fatalf("NaN not sent first: %v %v", idx, err)
	}
	if _, _, err := tk.Compress([]float32{1}); !errors.Is(err, ps.ErrShapeMismatch) {
		t.Fatalf("length change: %v, want ErrShapeMismatch", err)
	}
	tk.Reset()
	if _, _, err := tk.Compress([]float32{1}); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	for _, r := range []float64{0, -1, 1.5, math.NaN()} {
		if _, err := NewTopK(r); !errors.Is(err, ps.ErrInvalidArgument) {
			t.Errorf("NewTopK(%v): %v", r, err)
		}
	}
	if idx, vals, err := tk.Compress(nil); err == nil || len(idx)+len(vals) != 0 {
		t.Errorf("empty after a tensor of 1: %v %v %v", idx, vals, err)
	}
}

func TestSparseRoundTrip(t *testing.T) {
	idx := []int32{0, 1, 5, 300, 99999}
	vals := []float32{1, -2, 0.5, 3, float32(math.Inf(-1))}
	b, err := EncodeSparse(nil, idx, vals)
	if err != nil {
		t.Fatal(err)
	}
	// count 1 byte; gaps 0,0,3,294(2 bytes),99698(3 bytes); 5 floats.
	if want := 1 + 1 + 1 + 1 + 2 + 3 + 20; len(b) != want {
		t.Fatalf("encoded %d bytes, want %d", len(b), want)
	}
	gi, gv, err := DecodeSparse(b, 100000)
	if err != nil || !slices.Equal(gi, idx) || !slices.Equal(gv, vals) {
		t.Fatalf("decoded %v %v %v", gi, gv, err)
	}
	if _, _, err := DecodeSparse(b, 99999); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("index beyond n: %v", err)
	}
	if _, _, err := DecodeSparse(b[:len(b)-1], 100000); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("truncated: %v", err)
	}
	if _, _, err := DecodeSparse(append(b, 0), 100000); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("trailing: %v", err)
	}
	if _, err := EncodeSparse(nil, []int32{3, 3}, []float32{1, 2}); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("repeated index: %v", err)
	}
	if _, err := EncodeSparse(nil, []int32{1}, nil); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("length mismatch: %v", err)
	}
	dense := make([]float32, 4)
	if err := ScatterAdd(dense, []int32{1, 3}, []float32{2, 5}); err != nil || !slices.Equal(dense, []float32{0, 2, 0, 5}) {
		t.Fatalf("ScatterAdd: %v %v", dense, err)
	}
	if err := ScatterAdd(dense, []int32{1, 4}, []float32{2, 5}); !errors.Is(err, ps.ErrInvalidArgument) || dense[1] != 2 {
		t.Fatalf("ScatterAdd out of range: %v, dense %v", err, dense)
	}
}

func FuzzDecodeSparse(f *testing.F) {
	b, _ := EncodeSparse(nil, []int32{2, 7}, []float32{1, 2})
	f.Add(b, 10)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 5)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 1<<20 {
			return
		}
		idx, vals, err := DecodeSparse(b, n)
		if err != nil {
			return
		}
		if len(idx) != len(vals) {
			t.Fatalf("%d indices, %d values", len(idx), len(vals))
		}
		prev := int32(-1)
		for _, i := range idx {
			if i <= prev || int(i) >= n {
				t.Fatalf("index %d after %d, n %d", i, prev, n)
			}
			prev = i
		}
		re, err := EncodeSparse(nil, idx, vals)
		if err != nil || string(re) != string(b) {
			t.Fatalf("re-encoding differs: % x vs % x (%v)", re, b, err)
		}
	})
}

func BenchmarkTopK1Percent(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	g := make([]float32, 784*256)
	for i := range g {
		g[i] = float32(rng.NormFloat64())
	}
	tk, _ := NewTopK(0.01)
	b.SetBytes(4 * int64(len(g)))
	for b.Loop() {
		if _, _, err := tk.Compress(g); err != nil {
			b.Fatal(err)
		}
	}
}

// On large tensors Compress takes the sampled path; it must select exactly
// what a full sort selects, for smooth, heavy-tailed, tied and
// adversarially ordered data.
func TestTopKLargeMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const n = 100000
	gens := map[string]func(i int) float32{
		"normal":  func(int) float32 { return float32(rng.NormFloat64()) },
		"cauchy":  func(int) float32 { return float32(rng.NormFloat64() / rng.NormFloat64()) },
		"ties":    func(int) float32 { return float32(rng.IntN(5)) },
		"sorted":  func(i int) float32 { return float32(i) },
		"strided": func(i int) float32 { return float32(i % 48) }, // the sample sees one value class
		"zeros":   func(i int) float32 { return 0 },
	}
	for name, gen := range gens {
		for _, ratio := range []float64{0.001, 0.01, 0.1} {
			g := make([]float32, n)
			for i := range g {
				g[i] = gen(i)
			}
			tk, _ := NewTopK(ratio)
			idx, vals, err := tk.Compress(g)
			if err != nil {
				t.Fatal(err)
			}
			k := tk.K(n)
			order := make([]int, n)
			for i := range order {
				order[i] = i
			}
			// Reference: by magnitude descending, ties by index ascending.
			slices.SortStableFunc(order, func(a, b int) int {
				ma, mb := magnitude(g[a]), magnitude(g[b])
				switch {
				case ma > mb:
					return -1
				case ma < mb:
					return 1
				}
				return 0
			})
			want := make([]int32, k)
			for i := range want {
				want[i] = int32(order[i])
			}
			slices.Sort(want)
			if !slices.Equal(idx, want) {
				t.Fatalf("%s ratio %v: selection differs from sort (%d vs %d entries)", name, ratio, len(idx), len(want))
			}
			for j, i := range idx {
				if vals[j] != g[i] {
					t.Fatalf("%s: value mismatch at %d", name, i)
				}
			}
		}
	}
}
