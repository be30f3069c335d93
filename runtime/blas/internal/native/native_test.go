package native

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// problem is one Sgemm call with its own storage: leading dimensions may
// exceed the matrix widths, and the padding and the tail of C hold NaN
// sentinels that must survive.
type problem struct {
	tA, tB        bool
	m, n, k       int
	alpha, beta   float32
	lda, ldb, ldc int
	a, b, c       []float32
}

var nan32 = float32(math.NaN())

func newProblem(r *rand.Rand, tA, tB bool, m, n, k, pad int, alpha, beta float32) *problem {
	p := &problem{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	p.lda, p.ldb, p.ldc = max(1, ac)+pad, max(1, bc)+pad, max(1, n)+pad
	fill := func(rows, cols, ld int) []float32 {
		x := make([]float32, rows*ld+pad) // pad floats past the end, too
		for i := range x {
			x[i] = nan32
		}
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				x[i*ld+j] = r.Float32()*2 - 1
			}
		}
		return x
	}
	p.a, p.b, p.c = fill(ar, ac, p.lda), fill(br, bc, p.ldb), fill(m, n, p.ldc)
	if beta == 0 {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				p.c[i*p.ldc+j] = nan32 // beta = 0 must not read C
			}
		}
	}
	return p
}

func (p *problem) elemA(i, l int) float32 {
	if p.tA {
		return p.a[l*p.lda+i]
	}
	return p.a[i*p.lda+l]
}

func (p *problem) elemB(l, j int) float32 {
	if p.tB {
		return p.b[j*p.ldb+l]
	}
	return p.b[l*p.ldb+j]
}

// check runs Sgemm and compares it with a float64 reference, element by
// element, against the float32 error bound of any summation order:
// |err| ≤ 2(k+2)·ε·(|alpha|·Σ|a||b| + |beta·c|). It also checks that no
// element outside C's m×n window changed.
func (p *problem) check(t *testing.T) {
	t.Helper()
	c0 := append([]float32(nil), p.c...)
	Sgemm(p.tA, p.tB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, p.c, p.ldc)
	const eps = 1.0 / (1 << 23)
	name := fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%v beta=%v", p.tA, p.tB, p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.alpha, p.beta)
	for i := 0; i < p.m; i++ {
		for j := 0; j < p.n; j++ {
			var s, abs float64
			if p.alpha != 0 {
				for l := 0; l < p.k; l++ {
					x := float64(p.elemA(i, l)) * float64(p.elemB(l, j))
					s += x
					abs += math.Abs(x)
				}
			}
			want := float64(p.alpha) * s
			bound := float64(abs) * math.Abs(float64(p.alpha))
			if p.beta != 0 {
				bc := float64(p.beta) * float64(c0[i*p.ldc+j])
				want += bc
				bound += math.Abs(bc)
			}
			bound = 2*float64(p.k+2)*eps*bound + 1e-30
			got := float64(p.c[i*p.ldc+j])
			if !(math.Abs(got-want) <= bound) {
				t.Fatalf("%s: c[%d,%d] = %v, want %v (bound %.3g)", name, i, j, got, want, bound)
			}
		}
	}
	for x := range p.c {
		if i, j := x/p.ldc, x%p.ldc; i < p.m && j < p.n {
			continue
		}
		if !math.IsNaN(float64(p.c[x])) {
			t.Fatalf("%s: wrote c[%d] outside the matrix", name, x)
		}
	}
}

func need(t *testing.T) {
	if !OK {
		t.Skip("native kernel unavailable:", Why)
	}
}

var transposes = [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}}

// TestSmall sweeps m and n over 1..40 for a few k, and k over 1..40 for a
// few m, n: every edge of the 6×16 tile, both transposes, tight leading
// dimensions and padded ones.
func TestSmall(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, tt := range transposes {
		ks := []int{1, 2, 5, 16, 17, 40}
		if testing.Short() {
			ks = []int{1, 17}
		}
		if raceOn {
			ks = []int{17}
		}
		for m := 1; m <= 40; m++ {
			for n := 1; n <= 40; n++ {
				for _, k := range ks {
					pad := (m + n + k) % 3 * 5
					newProblem(r, tt[0], tt[1], m, n, k, pad, 1.5, 0.5).check(t)
				}
			}
		}
		for k := 1; k <= 40; k++ {
			for _, mn := range [][2]int{{1, 1}, {6, 16}, {7, 17}, {13, 40}, {40, 3}} {
				newProblem(r, tt[0], tt[1], mn[0], mn[1], k, k%2*3, -1, 2).check(t)
			}
		}
	}
}

// TestAlphaBeta covers the scalar cases: beta = 0 (C holds NaN and must not
// be read, also for -0), beta = 1, alpha = 0 (only scales C), k = 0.
func TestAlphaBeta(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(3, 4))
	negZero := float32(math.Copysign(0, -1))
	for _, tt := range transposes {
		for _, ab := range [][2]float32{{1, 0}, {1, negZero}, {1, 1}, {0.5, 0.25}, {-1.5, -2}, {2, 0}, {0, 0.5}, {0, 0}, {0, 1}} {
			for _, s := range [][3]int{{13, 37, 29}, {6, 16, 300}, {1, 50, 3}} {
				newProblem(r, tt[0], tt[1], s[0], s[1], s[2], 2, ab[0], ab[1]).check(t)
			}
		}
		for _, beta := range []float32{0, 1, 0.5} {
			newProblem(r, tt[0], tt[1], 9, 21, 0, 1, 1, beta).check(t)
		}
	}
	// alpha = 0 must not read A or B either.
	p := newProblem(r, false, false, 7, 19, 5, 0, 0, 0.5)
	for i := range p.a {
		p.a[i] = nan32
	}
	p.check(t)
}

// TestBlocks crosses the cache-block boundaries: k > kcMax (several k
// blocks accumulate into C), m > mcMax, n > ncMax, and the MLP's and
// CNN's shapes.
func TestBlocks(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(5, 6))
	shapes := [][3]int{
		{7, 9, 257}, {13, 5, 513}, {145, 17, 3}, {5, 4097, 3}, {2, 8200, 2}, {128, 10, 128}, {128, 128, 10},
		{301, 33, 270}, {128, 128, 256}, {256, 128, 128}, {128, 256, 128}, {196, 64, 800}, // and the MLP's, CNN's
		{128, 256, 784}, {784, 256, 128}, {32, 512, 3136},
	}
	if testing.Short() || raceOn {
		shapes = shapes[:7]
	}
	for _, tt := range transposes {
		for i, s := range shapes {
			newProblem(r, tt[0], tt[1], s[0], s[1], s[2], i%2*7, 1, float32(i%3)*0.5).check(t)
		}
	}
}

// TestConcurrent runs products of different shapes from several
// goroutines at once (each with its own C), comparing each with the same
// product computed alone: pack buffers must not be shared.
func TestConcurrent(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(7, 8))
	type job struct {
		p    *problem
		want []float32
	}
	var jobs []job
	for i := 0; i < 8; i++ {
		tt := transposes[i%4]
		p := newProblem(r, tt[0], tt[1], 20+i*13, 30+i*7, 100+i*40, i%3, 1, 0.5)
		c := append([]float32(nil), p.c...)
		Sgemm(p.tA, p.tB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, c, p.ldc)
		jobs = append(jobs, job{p, c})
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 5; rep++ {
				for i := range jobs {
					j := jobs[(i+g)%len(jobs)]
					p := j.p
					c := make([]float32, len(p.c))
					copy(c, p.c)
					Sgemm(p.tA, p.tB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, c, p.ldc)
					for x := range c {
						if c[x] != j.want[x] && !(math.IsNaN(float64(c[x])) && math.IsNaN(float64(j.want[x]))) {
							errs <- fmt.Sprintf("goroutine %d job %d: c[%d] = %v, alone %v", g, i, x, c[x], j.want[x])
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
