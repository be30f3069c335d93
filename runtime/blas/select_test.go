package blas

import (
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/flowps/flowps/runtime/blas/internal/native"
)

// available lists the backends this binary can run on this CPU.
func available() []string {
	names := []string{"gonum"}
	if haveOpenBLAS {
		names = append(names, "openblas")
	}
	if native.OK {
		names = append(names, "native")
	}
	return append(names, "auto")
}

// withBackend runs f with the named backend and restores the mode the
// test started with.
func withBackend(t *testing.T, name string, f func()) {
	t.Helper()
	mu.Lock()
	prev := mode
	mu.Unlock()
	if err := SetBackend(name); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := SetBackend(prev); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

func rndMat(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	return x
}

// checkAgainstNaive runs one product through Sgemm and naive and fails if
// they differ by more than the float32 error bound.
func checkAgainstNaive(t testing.TB, r *rand.Rand, tA, tB bool, m, n, k int, alpha, beta float32) {
	ar, ac := m, k
	if tA {
		ar, ac = ac, ar
	}
	br, bc := k, n
	if tB {
		br, bc = bc, br
	}
	a, b := rndMat(r, ar*ac), rndMat(r, br*bc)
	c1 := rndMat(r, m*n)
	c2 := append([]float32(nil), c1...)
	if beta == 0 {
		for i := range c1 {
			c1[i] = float32(math.NaN())
		}
	}
	Sgemm(tA, tB, m, n, k, alpha, a, ac, b, bc, beta, c1, n)
	naive(tA, tB, m, n, k, alpha, a, ac, b, bc, beta, c2, n)
	tol := 4e-7 * float64(k+2) * (math.Abs(float64(alpha)) + math.Abs(float64(beta)))
	for i := range c1 {
		if !(math.Abs(float64(c1[i]-c2[i])) <= tol+1e-30) {
			t.Fatalf("%s tA=%v tB=%v %dx%dx%d alpha=%v beta=%v: c[%d] = %v, want %v", Backend(), tA, tB, m, n, k, alpha, beta, i, c1[i], c2[i])
		}
	}
}

// TestEveryBackend runs the same products through every backend and the
// auto mode (twice as many calls per shape as the timing takes, so both
// the timed calls and the chosen backend are checked).
func TestEveryBackend(t *testing.T) {
	for _, name := range available() {
		withBackend(t, name, func() {
			r := rand.New(rand.NewPCG(9, 10))
			reps := 2
			if name == "auto" {
				reps = 2*trials + 2
			}
			for rep := 0; rep < reps; rep++ {
				for _, s := range [][3]int{{3, 4, 5}, {17, 33, 65}, {128, 10, 128}, {130, 70, 300}} {
					for _, tt := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
						checkAgainstNaive(t, r, tt[0], tt[1], s[0], s[1], s[2], 0.5, float32(rep%2)*0.25)
					}
				}
			}
		})
	}
}

// TestAutoChooses checks that the auto mode decides every shape after
// the timing calls, records both candidates' times, and lists the shapes
// in Choices.
func TestAutoChooses(t *testing.T) {
	withBackend(t, "auto", func() {
		r := rand.New(rand.NewPCG(11, 12))
		a, b, c := rndMat(r, 64*96), rndMat(r, 96*48), make([]float32, 64*48)
		for i := 0; i < 2*trials; i++ {
			Sgemm(false, false, 64, 48, 96, 1, a, 96, b, 48, 0, c, 48)
			Sgemm(true, false, 96, 48, 64, 1, a, 96, c, 48, 0, b, 48)
		}
		ch := Choices()
		t.Logf("%s: %v", Backend(), ch)
		mu.Lock()
		n := len(candidates)
		mu.Unlock()
		if n == 1 {
			if len(ch) != 0 || strings.Contains(Backend(), "auto") {
				t.Fatalf("one candidate (%s) but choices %v", Backend(), ch)
			}
			return
		}
		if Backend() != "openblas+native(auto)" {
			t.Fatalf("Backend() = %q", Backend())
		}
		if len(ch) != 2 || ch[0].M != 64 || ch[1].M != 96 || !ch[1].TransA {
			t.Fatalf("choices %v, want the two shapes", ch)
		}
		for _, c := range ch {
			if c.Backend != "native" && c.Backend != "openblas" || len(c.Best) != 2 {
				t.Fatalf("shape %v not decided with two timings", c)
			}
			nat, ob := float64(c.Best["native"]), float64(c.Best["openblas"])
			if c.Backend == "native" && nat*(1-tieMargin) > ob || c.Backend == "openblas" && ob >= nat*(1-tieMargin) {
				t.Fatalf("shape %v: chose the slower", c)
			}
		}
	})
}

// TestAutoRepeatsItself checks that every call of a shape in the auto mode,
// from the first on, gives the same bits: the two kernels round
// differently, so a first call answered by the other kernel than the rest
// would make a training run depend on when it met each shape.
func TestAutoRepeatsItself(t *testing.T) {
	withBackend(t, "auto", func() {
		r := rand.New(rand.NewPCG(21, 22))
		const m, n, k = 130, 70, 300
		a, b := rndMat(r, m*k), rndMat(r, k*n)
		c0 := rndMat(r, m*n)
		var first []float32
		for i := 0; i < 2*trials+2; i++ {
			c := append([]float32(nil), c0...)
			Sgemm(false, true, m, n, k, 1, a, k, b, k, 0.5, c, n)
			if first == nil {
				first = c
				continue
			}
			for j := range c {
				if math.Float32bits(c[j]) != math.Float32bits(first[j]) {
					t.Fatalf("call %d: c[%d] = %v, first call gave %v (%v)", i, j, c[j], first[j], Choices())
				}
			}
		}
	})
}

// TestAutoConcurrent calls several shapes from several goroutines while
// they are being timed (run it with -race).
func TestAutoConcurrent(t *testing.T) {
	withBackend(t, "auto", func() {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(g), 13))
				for i := 0; i < 3*trials; i++ {
					for _, s := range [][3]int{{20, 30, 40}, {7, 50, 9}, {64, 64, 64}} {
						checkAgainstNaive(t, r, g%2 == 0, g/2 == 0, s[0], s[1], s[2], 1, 0.5)
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, c := range Choices() {
			if c.Backend == "timing" {
				t.Errorf("still timing after %d calls: %v", 3*trials*4, c)
			}
		}
	})
}

func TestEnvOverride(t *testing.T) {
	withBackend(t, "auto", func() {
		auto := Backend()
		msg := applyEnv("fastest")
		if !strings.Contains(msg, "fastest") || Backend() != auto+" [FLOWPS_SGEMM=fastest ignored: unknown backend \"fastest\" (want auto, native, openblas or gonum)]" {
			t.Fatalf("applyEnv(fastest) = %q, Backend() = %q", msg, Backend())
		}
		if msg := applyEnv("gonum"); msg != "" || Backend() != "gonum" {
			t.Fatalf("applyEnv(gonum) = %q, Backend() = %q", msg, Backend())
		}
	})
}

func TestSetBackend(t *testing.T) {
	if err := SetBackend("fast"); err == nil {
		t.Fatal("SetBackend(fast) succeeded")
	}
	if err := SetBackend("openblas"); (err == nil) != haveOpenBLAS {
		t.Fatalf("SetBackend(openblas) = %v with haveOpenBLAS %v", err, haveOpenBLAS)
	}
	if err := SetBackend("native"); (err == nil) != native.OK {
		t.Fatalf("SetBackend(native) = %v with native.OK %v", err, native.OK)
	}
	for _, name := range available() {
		withBackend(t, name, func() {
			got := Backend()
			if name != "auto" && got != name {
				t.Fatalf("SetBackend(%s): Backend() = %q", name, got)
			}
		})
	}
}

// TestBadDimensionsPanic checks that every backend refuses arguments that
// would read or write outside the slices.
func TestBadDimensionsPanic(t *testing.T) {
	a, b, c := make([]float32, 12), make([]float32, 12), make([]float32, 12)
	for _, name := range available() {
		withBackend(t, name, func() {
			for _, bad := range []func(){
				func() { Sgemm(false, false, 4, 3, 4, 1, a, 4, b, 3, 0, c, 3) },  // a too short (4×4)
				func() { Sgemm(false, false, 3, 4, 4, 1, a, 4, b, 4, 0, c, 4) },  // b too short (4×4)
				func() { Sgemm(false, false, 4, 4, 3, 1, a, 3, b, 4, 0, c, 4) },  // c too short (4×4)
				func() { Sgemm(false, false, 3, 3, 4, 1, a, 3, b, 3, 0, c, 3) },  // lda < k
				func() { Sgemm(true, false, 3, 3, 4, 1, a, 2, b, 3, 0, c, 3) },   // lda < m (transA)
				func() { Sgemm(false, true, 3, 3, 3, 1, a, 3, b, 2, 0, c, 3) },   // ldb < k (transB)
				func() { Sgemm(false, false, -1, 3, 3, 1, a, 3, b, 3, 0, c, 3) }, // negative m
			} {
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("%s: no panic", name)
						}
					}()
					bad()
				}()
			}
		})
	}
}

// TestNoAllocs checks that a call, once its shape is decided and the pack
// buffers are pooled, does not allocate (gonum's own Sgemm is not held to
// it).
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, name := range available() {
		if name == "gonum" {
			continue
		}
		withBackend(t, name, func() {
			a, b, c := make([]float32, 70*90), make([]float32, 90*50), make([]float32, 70*50)
			for i := 0; i < 4*trials; i++ {
				Sgemm(true, false, 70, 50, 90, 1, a, 70, b, 50, 0, c, 50)
			}
			if n := testing.AllocsPerRun(50, func() { Sgemm(true, false, 70, 50, 90, 1, a, 70, b, 50, 0, c, 50) }); n != 0 {
				t.Errorf("%s: %v allocations per call", name, n)
			}
		})
	}
}
