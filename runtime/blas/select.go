package blas

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/runtime/blas/internal/native"
)

// backendID names one Sgemm implementation.
type backendID uint32

const (
	useGonum backendID = iota + 1
	useNative
	useOpenBLAS
)

func (b backendID) String() string {
	switch b {
	case useGonum:
		return "gonum"
	case useNative:
		return "native"
	case useOpenBLAS:
		return "openblas"
	}
	return "timing"
}

// trials is how many times each candidate computes a shape's first call
// in the auto mode before the faster (by its best time) takes the shape
// for good. The best of several interleaved runs discards the first run's
// one-time costs (OpenBLAS's buffers, the native pack buffers, cold
// caches) and runs that another process preempted.
const trials = 5

// tieMargin: a candidate listed later in candidates (OpenBLAS) must beat
// an earlier one (native) by this fraction of its time to take a shape.
// On a near-tie the choice hardly matters for speed; preferring one side
// makes repeated runs pick the same kernels more often.
const tieMargin = 0.02

// maxShapes bounds the per-shape table; shapes beyond it go to the
// candidate that won the most shapes so far.
const maxShapes = 4096

var (
	mu         sync.Mutex    // guards mode, candidates, forced, note
	mode       string        // "auto" or a backend name
	candidates []backendID   // what auto chooses among (1 or 2 entries)
	forced     atomic.Uint32 // the backend of every call; 0 while auto chooses per shape
	note       string        // why an override was not honoured, if it was not

	curThreads atomic.Int32 // OpenBLAS threads, part of the shape key

	shapes   sync.Map // shapeKey -> *shapeStat
	nShapes  atomic.Int32
	wins     [useOpenBLAS + 1]atomic.Int32
	fallback atomic.Uint32 // candidate for shapes beyond maxShapes
)

func init() {
	if msg := applyEnv(os.Getenv("FLOWPS_SGEMM")); msg != "" {
		fmt.Fprintln(os.Stderr, "flowps/runtime/blas:", msg)
	}
}

// applyEnv sets the backend from FLOWPS_SGEMM's value. A value that
// cannot be honoured leaves the auto mode, with a note in Backend(), and
// returns the message to report.
func applyEnv(v string) string {
	err := SetBackend(v)
	if err == nil {
		return ""
	}
	SetBackend("auto")
	mu.Lock()
	defer mu.Unlock()
	note = fmt.Sprintf("FLOWPS_SGEMM=%s ignored: %v", v, err)
	return fmt.Sprintf("%s; using %s", note, backendLocked())
}

// SetBackend selects the Sgemm backend: "auto" (or ""), "native",
// "openblas" or "gonum". It returns an error, and changes nothing, when
// the backend is unknown or not available in this binary on this CPU.
// Choosing "auto" again forgets the per-shape choices.
func SetBackend(name string) error {
	mu.Lock()
	defer mu.Unlock()
	switch name {
	case "", "auto":
		candidates = nil // a new slice: sgemmAuto may hold the old one
		if native.OK {
			candidates = append(candidates, useNative)
		}
		if haveOpenBLAS {
			candidates = append(candidates, useOpenBLAS)
		}
		if len(candidates) == 0 {
			candidates = append(candidates, useGonum)
		}
		mode = "auto"
		resetShapes()
		if len(candidates) == 1 {
			forced.Store(uint32(candidates[0]))
		} else {
			fallback.Store(uint32(candidates[0]))
			forced.Store(0)
		}
	case "native":
		if !native.OK {
			return fmt.Errorf("native kernel unavailable: %s", native.Why)
		}
		mode = name
		forced.Store(uint32(useNative))
	case "openblas":
		if !haveOpenBLAS {
			return fmt.Errorf("built without OpenBLAS (needs -tags openblas and cgo)")
		}
		mode = name
		forced.Store(uint32(useOpenBLAS))
	case "gonum":
		mode = name
		forced.Store(uint32(useGonum))
	default:
		return fmt.Errorf("unknown backend %q (want auto, native, openblas or gonum)", name)
	}
	note = ""
	return nil
}

// Backend names the Sgemm backend in use: "native", "openblas" or "gonum"
// when one is used for every call, or the candidates and "(auto)", such
// as "openblas+native(auto)", when each shape goes to the one measured
// faster. A FLOWPS_SGEMM value that could not be honoured is appended.
func Backend() string {
	mu.Lock()
	defer mu.Unlock()
	s := backendLocked()
	if note != "" {
		s += " [" + note + "]"
	}
	return s
}

func backendLocked() string {
	if mode != "auto" || len(candidates) == 1 {
		return backendID(forced.Load()).String()
	}
	names := make([]string, len(candidates))
	for i, c := range candidates {
		names[i] = c.String()
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	return strings.Join(names, "+") + "(auto)"
}

// shapeKey identifies a product for the auto choice. Leading dimensions
// are left out: they change where the data lies, rarely which kernel is
// faster.
type shapeKey struct {
	tA, tB  bool
	threads int32
	m, n, k int
}

// shapeStat is the timing record of one shape.
type shapeStat struct {
	decided atomic.Uint32 // backendID once chosen, 0 while timing
	mu      sync.Mutex    // held while timing
	runs    [2]int
	best    [2]time.Duration
}

func resetShapes() {
	shapes.Range(func(k, _ any) bool { shapes.Delete(k); return true })
	nShapes.Store(0)
	for i := range wins {
		wins[i].Store(0)
	}
}

// sgemmAuto runs one call in the auto mode, through the shape's chosen
// backend. The first call of a shape chooses it first: each candidate
// computes the same product trials times, interleaved and timed, into a
// scratch copy of C, and the one with the better best time takes the
// shape. So every result of a shape, the first one included, comes from
// the same kernel, and a process computes the same numbers whatever
// moment it first met a shape (calls of that shape wait for the choice).
func sgemmAuto(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	key := shapeKey{tA: tA, tB: tB, threads: curThreads.Load(), m: m, n: n, k: k}
	v, ok := shapes.Load(key)
	if !ok {
		if nShapes.Load() >= maxShapes {
			run(backendID(fallback.Load()), tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			return
		}
		var loaded bool
		if v, loaded = shapes.LoadOrStore(key, new(shapeStat)); !loaded {
			nShapes.Add(1)
		}
	}
	st := v.(*shapeStat)
	d := st.decided.Load()
	if d == 0 {
		mu.Lock()
		cands := candidates
		mu.Unlock()
		d = st.choose(cands, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
	run(backendID(d), tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// choose times every candidate on this call's operands, unless another
// goroutine chose while this one waited, and returns the choice.
func (st *shapeStat) choose(cands []backendID, tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if d := st.decided.Load(); d != 0 {
		return d
	}
	span := ldc*(m-1) + n // the part of c the product touches
	scratch := make([]float32, span)
	for r := 0; r < trials; r++ {
		for i, be := range cands {
			if beta != 0 {
				copy(scratch, c[:span])
			}
			t0 := time.Now()
			run(be, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, scratch, ldc)
			dt := time.Since(t0)
			if st.runs[i] == 0 || dt < st.best[i] {
				st.best[i] = dt
			}
			st.runs[i]++
		}
	}
	w := 0
	for j := range cands {
		if float64(st.best[j]) < float64(st.best[w])*(1-tieMargin) {
			w = j
		}
	}
	st.decided.Store(uint32(cands[w]))
	if n := wins[cands[w]].Add(1); n > wins[fallback.Load()].Load() {
		fallback.Store(uint32(cands[w]))
	}
	return uint32(cands[w])
}

// Choice is the auto mode's record of one shape.
type Choice struct {
	TransA, TransB bool
	M, N, K        int
	Threads        int    // OpenBLAS threads when timed (0 without OpenBLAS)
	Backend        string // the chosen backend, or "timing" while still timing
	// Best is the best time of each candidate so far, by backend name.
	Best map[string]time.Duration
}

func (c Choice) String() string {
	t := func(b bool) byte {
		if b {
			return 'T'
		}
		return 'N'
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%dx%dx%d %c%c", c.M, c.N, c.K, t(c.TransA), t(c.TransB))
	if c.Threads > 1 {
		fmt.Fprintf(&sb, " threads=%d", c.Threads)
	}
	fmt.Fprintf(&sb, ": %s (", c.Backend)
	names := make([]string, 0, len(c.Best))
	for k := range c.Best {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %v", k, c.Best[k].Round(100*time.Nanosecond))
	}
	sb.WriteString(")")
	return sb.String()
}

// Choices lists the auto mode's per-shape records (empty when one backend
// serves every call), ordered by M, N, K: a log line or a debug page can
// print them to show which kernel runs each product, and why.
func Choices() []Choice {
	mu.Lock()
	cands := candidates
	mu.Unlock()
	var out []Choice
	shapes.Range(func(kv, v any) bool {
		key, st := kv.(shapeKey), v.(*shapeStat)
		st.mu.Lock()
		c := Choice{TransA: key.tA, TransB: key.tB, M: key.m, N: key.n, K: key.k, Threads: int(key.threads),
			Backend: backendID(st.decided.Load()).String(), Best: map[string]time.Duration{}}
		for i, be := range cands {
			if i < len(st.runs) && st.runs[i] > 0 {
				c.Best[be.String()] = st.best[i]
			}
		}
		st.mu.Unlock()
		out = append(out, c)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.M != b.M {
			return a.M < b.M
		}
		if a.N != b.N {
			return a.N < b.N
		}
		if a.K != b.K {
			return a.K < b.K
		}
		if a.TransA != b.TransA {
			return !a.TransA
		}
		if a.TransB != b.TransB {
			return !a.TransB
		}
		return a.Threads < b.Threads
	})
	return out
}
