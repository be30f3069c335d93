package transporttest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

// Harness is what a transport gives the conformance suite.
type Harness struct {
	// Name labels the subtests.
	Name string
	// Serve starts serving svc and returns the address a Dialer reaches it
	// at, and a stop function that stops the server: in-flight calls end,
	// later calls fail. The suite calls stop at most once; Serve should
	// register its own t.Cleanup for anything stop does not release.
	Serve func(t *testing.T, svc ps.Service) (addr string, stop func())
	// Dialer returns a dialer for the suite's calls. The suite closes every
	// Service it dials; Dialer should register a t.Cleanup that releases the
	// dialer itself.
	Dialer func(t *testing.T) ps.Dialer
	// LargeBytes is the payload of the large-message case; zero means
	// 64 MiB. Extra configurations of a transport that already ran the
	// suite at full size may lower it to keep tests fast.
	LargeBytes int
}

// bigEnv enables the ≥ 1 GiB tensor case.
const bigEnv = "FLOWPS_BIG"

// callTimeout bounds every call the suite makes, so that a transport that
// hangs fails the test instead of stalling it.
const callTimeout = 60 * time.Second

// Run runs the conformance suite against h. Every transport runs it in its
// tests, so all transports agree on what a ps.Service call means:
//
//   - every request and response field arrives exactly (see Diff: float bit
//     patterns, nil versus empty Rows, Values and Grad);
//   - a pull part's Dst never reaches the server; a transport that fills it
//     returns it as the part's Values, and one of the wrong length is left
//     alone;
//   - an error from the service comes back matching the same sentinel with
//     errors.Is and keeps its message;
//   - cancelling the caller's context or passing its deadline releases the
//     server's call and returns context.Canceled / DeadlineExceeded;
//   - concurrent calls do not mix up their requests and responses;
//   - a 64 MiB payload (Harness.LargeBytes) moves both ways (and a ≥ 1 GiB one with FLOWPS_BIG=1,
//     unless -short);
//   - calls to a stopped server fail with ps.ErrUnavailable promptly;
//   - Close on a dialed Service is idempotent, and calls after it fail with
//     ps.ErrClosed.
func Run(t *testing.T, h Harness) {
	t.Run(h.Name+"/RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run(h.Name+"/PullIntoDst", func(t *testing.T) { testPullIntoDst(t, h) })
	t.Run(h.Name+"/Errors", func(t *testing.T) { testErrors(t, h) })
	t.Run(h.Name+"/Cancel", func(t *testing.T) { testCancel(t, h) })
	t.Run(h.Name+"/Deadline", func(t *testing.T) { testDeadline(t, h) })
	t.Run(h.Name+"/Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	large := h.LargeBytes
	if large == 0 {
		large = 64 << 20
	}
	t.Run(fmt.Sprintf("%s/Large%dKiB", h.Name, large>>10), func(t *testing.T) { testLarge(t, h, large) })
	t.Run(h.Name+"/Huge1GiB", func(t *testing.T) {
		if testing.Short() || os.Getenv(bigEnv) != "1" {
			t.Skipf("set %s=1 (and drop -short) to move a 1 GiB tensor", bigEnv)
		}
		testLarge(t, h, 1<<30+4096)
	})
	t.Run(h.Name+"/StoppedServer", func(t *testing.T) { testStopped(t, h) })
	t.Run(h.Name+"/CloseIdempotent", func(t *testing.T) { testClose(t, h) })
}

// dial serves fake and returns a Service connected to it.
func dial(t *testing.T, h Harness, fake *Fake) (ps.Service, string, func()) {
	t.Helper()
	addr, stop := h.Serve(t, fake)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	svc, err := h.Dialer(t).Dial(ctx, addr)
	if err != nil {
		stop()
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, addr, stop
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// oddFloats are float32 bit patterns a transport must not change: quiet and
// signalling NaNs with payloads, both zeros, the infinities, the smallest
// subnormal, the extremes.
var oddFloats = []uint32{
	0x7fc00000, 0x7fc00001, 0xffc12345, 0x7f800001, 0xff800abc, // NaNs
	0x00000000, 0x80000000, // +0, -0
	0x7f800000, 0xff800000, // ±Inf
	0x00000001, 0x80000001, // ± smallest subnormal
	0x7f7fffff, 0xff7fffff, // ±MaxFloat32
	0x3f800000, 0x3eaaaaab, // 1, 1/3
}

func floatsFromBits(b []uint32) []float32 {
	out := make([]float32, len(b))
	for i, x := range b {
		out[i] = math.Float32frombits(x)
	}
	return out
}

func f32(x uint32) float32 { return math.Float32frombits(x) }

func sampleCreate() *ps.CreateRequest {
	return &ps.CreateRequest{
		Spec: ps.VariableSpec{
			Name:  "layer/0/kernel ✓",
			Shape: []int64{1 << 40, 3, 1},
			Init: ps.Initializer{Kind: ps.InitNormal, Value: f32(0x7fc00001), Min: f32(0x80000000),
				Max: f32(0x7f800000), Mean: f32(0x00000001), Stddev: f32(0x7f800001), Seed: math.MinInt64},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptFTRL, LR: 0.01, Momentum: f32(0xff800000), Nesterov: true,
				Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-7, InitialAccumulator: 0.1, L1: f32(0xffc12345), L2: -0.5, LRPower: -0.5},
			Consistency:       ps.Consistency{Mode: ps.SSP, Workers: math.MaxInt32, Backup: -1, Staleness: 7},
			AllowNonFinite:    true,
			MinPartitionBytes: 1,
			MaxPartitionBytes: math.MaxInt64,
		},
		Parts: []int{0, 5, math.MaxInt32, -1},
	}
}

func samplePull() *ps.PullRequest {
	return &ps.PullRequest{
		ClientID: "trainer-7",
		Worker:   -3,
		Clock:    math.MaxInt64,
		Parts: []ps.PullPart{
			{Key: ps.PartKey{Var: "w", Index: 0}},                  // dense, nil Rows
			{Key: ps.PartKey{Var: "w", Index: 1}, Rows: []int64{}}, // sparse, no rows
			{Key: ps.PartKey{Var: "emb", Index: 2}, Rows: []int64{0, 9, 1 << 50, -1}, MinVersion: 42},
			{Key: ps.PartKey{Var: "", Index: -1}, MinVersion: math.MinInt64},
		},
	}
}

func samplePullResponse() *ps.PullResponse {
	return &ps.PullResponse{Parts: []ps.PartValues{
		{Key: ps.PartKey{Var: "w", Index: 0}, Version: 3, Values: floatsFromBits(oddFloats)},
		{Key: ps.PartKey{Var: "w", Index: 1}, Version: 0, Values: []float32{}},
		{Key: ps.PartKey{Var: "emb", Index: 2}, Version: math.MaxInt64, Values: nil},
		{Key: ps.PartKey{Var: "x", Index: 9}, Version: -1, Values: []float32{f32(0x80000000)}},
	}, Waited: 3*time.Second + 7}
}

func samplePush() *ps.PushRequest {
	return &ps.PushRequest{
		ClientID: "trainer-ü",
		Seq:      math.MaxUint64,
		Worker:   2,
		Clock:    -9,
		Parts: []ps.PushPart{
			{Key: ps.PartKey{Var: "w", Index: 0}, Grad: floatsFromBits(oddFloats), Step: 12},
			{Key: ps.PartKey{Var: "emb", Index: 3}, Rows: []int64{5, 1, 5}, Grad: []float32{1, 2, 3, 4, 5, 6}, Step: -1},
			{Key: ps.PartKey{Var: "emb", Index: 4}, Rows: []int64{}, Grad: []float32{}},
			{Key: ps.PartKey{Var: "b", Index: 0}, Grad: nil},
			{Key: ps.PartKey{Var: "c", Index: 1}, Rows: []int64{math.MaxInt64}, Grad: []float32{f32(0x7f800001)}},
		},
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	var (
		mu                  sync.Mutex
		gotC                *ps.CreateRequest
		gotPull             *ps.PullRequest
		gotPush             *ps.PushRequest
		createResp, pushRes = &ps.CreateResponse{Versions: []int64{0, -1, math.MaxInt64}}, &ps.PushResponse{Versions: []int64{math.MinInt64, 1, 2, 3, 4}}
	)
	fake := &Fake{
		CreateFunc: func(_ context.Context, r *ps.CreateRequest) (*ps.CreateResponse, error) {
			mu.Lock()
			gotC = r
			mu.Unlock()
			return createResp, nil
		},
		PullFunc: func(_ context.Context, r *ps.PullRequest) (*ps.PullResponse, error) {
			mu.Lock()
			gotPull = r
			mu.Unlock()
			return samplePullResponse(), nil
		},
		PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
			mu.Lock()
			gotPush = r
			mu.Unlock()
			return pushRes, nil
		},
	}
	svc, _, stop := dial(t, h, fake)
	defer stop()
	ctx := callCtx(t)

	cr, err := svc.Create(ctx, sampleCreate())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	mu.Lock()
	if d := Diff(sampleCreate(), gotC); d != "" {
		t.Errorf("Create request differs at the server:\n%s", d)
	}
	mu.Unlock()
	if d := Diff(createResp, cr); d != "" {
		t.Errorf("Create response differs at the client:\n%s", d)
	}

	pr, err := svc.Pull(ctx, samplePull())
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	mu.Lock()
	if d := Diff(samplePull(), gotPull); d != "" {
		t.Errorf("Pull request differs at the server:\n%s", d)
	}
	mu.Unlock()
	if d := Diff(samplePullResponse(), pr); d != "" {
		t.Errorf("Pull response differs at the client:\n%s", d)
	}

	pu, err := svc.Push(ctx, samplePush())
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	mu.Lock()
	if d := Diff(samplePush(), gotPush); d != "" {
		t.Errorf("Push request differs at the server:\n%s", d)
	}
	mu.Unlock()
	if d := Diff(pushRes, pu); d != "" {
		t.Errorf("Push response differs at the client:\n%s", d)
	}

	// Empty requests and responses are legal too.
	fake.PullFunc = nil
	if r, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil || r == nil || len(r.Parts) != 0 {
		t.Errorf("empty Pull = %+v, %v; want empty response", r, err)
	}
}

// testPullIntoDst checks the contract of PullPart.Dst: it stays on the
// caller's side, a transport that decodes into it returns it as the part's
// Values (else leaves it untouched), a Dst of the wrong length is never
// written, and a part the server sent without values stays nil.
func testPullIntoDst(t *testing.T, h Harness) {
	var mu sync.Mutex
	var leaked []string
	fake := &Fake{PullFunc: func(_ context.Context, r *ps.PullRequest) (*ps.PullResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		if r.Alloc != nil {
			// A transport's server may offer an allocator of its own (the
			// documented use of Alloc); the caller's must not arrive.
			r.Alloc(1)
		}
		for i, p := range r.Parts {
			if p.Dst != nil {
				leaked = append(leaked, fmt.Sprintf("Parts[%d].Dst", i))
			}
		}
		return samplePullResponse(), nil
	}}
	svc, _, stop := dial(t, h, fake)
	defer stop()

	const mark = 0x7fbadbad // a NaN no response part contains
	marked := func(n int) []float32 {
		b := make([]float32, n)
		for i := range b {
			b[i] = f32(mark)
		}
		return b
	}
	untouched := func(b []float32) bool {
		for _, v := range b {
			if math.Float32bits(v) != mark {
				return false
			}
		}
		return true
	}
	want := samplePullResponse()
	req := samplePull()
	// Part 0: the right size. Part 1: the server sends none, Dst is one
	// too long. Part 2: no values at all (nil), an empty Dst. Part 3: one
	// value, no Dst.
	dst0 := marked(len(want.Parts[0].Values))
	dst1 := marked(1)
	req.Parts[0].Dst = dst0
	req.Parts[1].Dst = dst1
	req.Parts[2].Dst = []float32{}
	var callerAlloc atomic.Bool
	req.Alloc = func(n int) []float32 { callerAlloc.Store(true); return make([]float32, n) }
	got, err := svc.Pull(callCtx(t), req)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	mu.Lock()
	if callerAlloc.Load() {
		leaked = append(leaked, "Alloc")
	}
	if len(leaked) > 0 {
		t.Errorf("local fields reached the server: %v", leaked)
	}
	mu.Unlock()
	if d := Diff(want, got); d != "" {
		t.Fatalf("Pull response with destinations differs:\n%s", d)
	}
	if !ps.SameBuffer(got.Parts[0].Values, dst0) && !untouched(dst0) {
		t.Errorf("Parts[0].Dst was written but not returned as the part's Values")
	}
	if !untouched(dst1) {
		t.Errorf("a Dst of the wrong length was written: %v", dst1)
	}
}

// sentinels are the errors a service may return that must cross intact.
var sentinels = []error{
	ps.ErrNotOwner, ps.ErrUnknownVariable, ps.ErrSpecMismatch, ps.ErrShapeMismatch,
	ps.ErrNonFinite, ps.ErrStale, ps.ErrInvalidArgument, ps.ErrTooLarge,
	ps.ErrUnavailable, ps.ErrClosed,
}

func testErrors(t *testing.T, h Harness) {
	var (
		mu   sync.Mutex
		next error
	)
	fail := func() error { mu.Lock(); defer mu.Unlock(); return next }
	fake := &Fake{
		CreateFunc: func(context.Context, *ps.CreateRequest) (*ps.CreateResponse, error) { return nil, fail() },
		PullFunc:   func(context.Context, *ps.PullRequest) (*ps.PullResponse, error) { return nil, fail() },
		PushFunc:   func(context.Context, *ps.PushRequest) (*ps.PushResponse, error) { return nil, fail() },
	}
	svc, _, stop := dial(t, h, fake)
	defer stop()
	ctx := callCtx(t)
	calls := map[string]func() error{
		"Create": func() error { _, err := svc.Create(ctx, sampleCreate()); return err },
		"Pull":   func() error { _, err := svc.Pull(ctx, samplePull()); return err },
		"Push":   func() error { _, err := svc.Push(ctx, samplePush()); return err },
	}
	for name, call := range calls {
		for i, s := range sentinels {
			detail := fmt.Sprintf("detail-%s-%d part w/%d", name, i, i)
			mu.Lock()
			next = ps.Errorf(s, "%s", detail)
			mu.Unlock()
			err := call()
			if !errors.Is(err, s) {
				t.Errorf("%s returning %v: client got %v, which does not match the sentinel", name, s, err)
				continue
			}
			if !strings.Contains(err.Error(), detail) {
				t.Errorf("%s: error %q lost its message %q", name, err, detail)
			}
			if ps.Retryable(err) != ps.Retryable(s) {
				t.Errorf("%s: Retryable(%v) = %v, want %v", name, err, ps.Retryable(err), ps.Retryable(s))
			}
		}
		// An error that wraps no sentinel still crosses with its text.
		mu.Lock()
		next = errors.New("disk on fire 🔥")
		mu.Unlock()
		err := call()
		if err == nil || !strings.Contains(err.Error(), "disk on fire 🔥") {
			t.Errorf("%s: plain error came back as %v", name, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("%s: plain error %v matches sentinel %v", name, err, s)
			}
		}
	}
}

// blockingFake returns a fake whose Pull and Push block until their context
// is done, reporting entry on entered and the context's error on released.
func blockingFake() (*Fake, chan struct{}, chan error) {
	entered := make(chan struct{}, 16)
	released := make(chan error, 16)
	block := func(ctx context.Context) error {
		entered <- struct{}{}
		<-ctx.Done()
		released <- ctx.Err()
		return ctx.Err()
	}
	return &Fake{
		PullFunc: func(ctx context.Context, _ *ps.PullRequest) (*ps.PullResponse, error) {
			return nil, block(ctx)
		},
		PushFunc: func(ctx context.Context, _ *ps.PushRequest) (*ps.PushResponse, error) {
			return nil, block(ctx)
		},
	}, entered, released
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(callTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func testCancel(t *testing.T, h Harness) {
	fake, entered, released := blockingFake()
	svc, _, stop := dial(t, h, fake)
	defer stop()
	for _, method := range []string{"Pull", "Push"} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			var err error
			if method == "Pull" {
				_, err = svc.Pull(ctx, samplePull())
			} else {
				_, err = svc.Push(ctx, samplePush())
			}
			errc <- err
		}()
		waitFor(t, entered, method+" to reach the server")
		cancel()
		err := waitFor(t, errc, method+" to return after cancel")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s after cancel: %v, want context.Canceled", method, err)
		}
		if serr := waitFor(t, released, "the server's "+method+" to be released"); serr == nil {
			t.Errorf("server %s released with a nil context error", method)
		}
	}
	// The connection is still usable afterwards.
	fake.PullFunc = nil
	if _, err := svc.Pull(callCtx(t), &ps.PullRequest{}); err != nil {
		t.Errorf("Pull after cancelled calls: %v", err)
	}
}

func testDeadline(t *testing.T, h Harness) {
	fake, entered, released := blockingFake()
	svc, _, stop := dial(t, h, fake)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := svc.Pull(ctx, samplePull())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Pull past deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Pull past a 300ms deadline took %v", d)
	}
	waitFor(t, entered, "Pull to reach the server")
	if serr := waitFor(t, released, "the server's Pull to be released"); serr == nil {
		t.Errorf("server Pull released with a nil context error")
	}
	// An already expired context fails without reaching a blocked server.
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := svc.Push(expired, samplePush()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Push with expired context: %v, want context.DeadlineExceeded", err)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	fake := &Fake{
		PullFunc: func(_ context.Context, r *ps.PullRequest) (*ps.PullResponse, error) {
			// Echo the request's clock in the values so the caller can
			// tell its response from another's.
			n := int(r.Clock % 5000)
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(r.Clock) + float32(i)
			}
			return &ps.PullResponse{Parts: []ps.PartValues{{Key: r.Parts[0].Key, Version: r.Clock, Values: v}}}, nil
		},
		PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
			var sum float32
			for _, g := range r.Parts[0].Grad {
				sum += g
			}
			return &ps.PushResponse{Versions: []int64{int64(r.Seq), int64(sum)}}, nil
		},
	}
	svc, _, stop := dial(t, h, fake)
	defer stop()
	ctx := callCtx(t)
	const workers, calls = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; c < calls; c++ {
				id := int64(w*1000 + c*37)
				pr, err := svc.Pull(ctx, &ps.PullRequest{Clock: id, Parts: []ps.PullPart{{Key: ps.PartKey{Var: "v", Index: w}}}})
				if err != nil {
					errs <- err
					return
				}
				if len(pr.Parts) != 1 || pr.Parts[0].Version != id || pr.Parts[0].Key.Index != w || len(pr.Parts[0].Values) != int(id%5000) {
					errs <- fmt.Errorf("worker %d call %d: wrong pull response %+v", w, c, pr.Parts)
					return
				}
				for i, x := range pr.Parts[0].Values {
					if x != float32(id)+float32(i) {
						errs <- fmt.Errorf("worker %d call %d: value %d = %v", w, c, i, x)
						return
					}
				}
				g := make([]float32, 1+c)
				for i := range g {
					g[i] = float32(w)
				}
				pu, err := svc.Push(ctx, &ps.PushRequest{Seq: uint64(id), Parts: []ps.PushPart{{Grad: g}}})
				if err != nil {
					errs <- err
					return
				}
				if len(pu.Versions) != 2 || pu.Versions[0] != id || pu.Versions[1] != int64(w*(1+c)) {
					errs <- fmt.Errorf("worker %d call %d: wrong push response %v", w, c, pu.Versions)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// pattern fills v with values that depend on position and seed, so that a
// misplaced chunk is caught.
func pattern(v []float32, seed uint32) {
	for i := range v {
		v[i] = math.Float32frombits(uint32(i)*2654435761 ^ seed)
	}
}

// checkPattern reports the first element of v that pattern would not have
// written.
func checkPattern(v []float32, seed uint32) error {
	for i := range v {
		if math.Float32bits(v[i]) != uint32(i)*2654435761^seed {
			return fmt.Errorf("element %d of %d = %#x, want %#x", i, len(v), math.Float32bits(v[i]), uint32(i)*2654435761^seed)
		}
	}
	return nil
}

func testLarge(t *testing.T, h Harness, bytes int) {
	n := bytes / 4
	// Three parts of uneven sizes, so chunk and part boundaries disagree.
	sizes := []int{n / 2, 1, n - n/2 - 1}
	var (
		mu     sync.Mutex
		pushOK error
	)
	fake := &Fake{
		PullFunc: func(_ context.Context, r *ps.PullRequest) (*ps.PullResponse, error) {
			resp := &ps.PullResponse{}
			for i, s := range sizes {
				v := make([]float32, s)
				pattern(v, uint32(i))
				resp.Parts = append(resp.Parts, ps.PartValues{Key: ps.PartKey{Var: "big", Index: i}, Version: int64(i), Values: v})
			}
			return resp, nil
		},
		PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
			var err error
			if len(r.Parts) != len(sizes) {
				err = fmt.Errorf("push has %d parts", len(r.Parts))
			}
			for i := 0; err == nil && i < len(sizes); i++ {
				if len(r.Parts[i].Grad) != sizes[i] {
					err = fmt.Errorf("part %d has %d values, want %d", i, len(r.Parts[i].Grad), sizes[i])
				} else if e := checkPattern(r.Parts[i].Grad, uint32(100+i)); e != nil {
					err = fmt.Errorf("part %d: %v", i, e)
				}
			}
			mu.Lock()
			pushOK = err
			mu.Unlock()
			return &ps.PushResponse{Versions: []int64{1, 2, 3}}, nil
		},
	}
	svc, _, stop := dial(t, h, fake)
	defer stop()
	ctx := callCtx(t)

	req := &ps.PushRequest{ClientID: "big"}
	for i, s := range sizes {
		g := make([]float32, s)
		pattern(g, uint32(100+i))
		req.Parts = append(req.Parts, ps.PushPart{Key: ps.PartKey{Var: "big", Index: i}, Grad: g})
	}
	start := time.Now()
	if _, err := svc.Push(ctx, req); err != nil {
		t.Fatalf("Push of %d MiB: %v", bytes>>20, err)
	}
	t.Logf("push %d KiB in %v", bytes>>10, time.Since(start))
	mu.Lock()
	if pushOK != nil {
		t.Errorf("server saw a damaged push: %v", pushOK)
	}
	mu.Unlock()
	req = nil

	start = time.Now()
	pr, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "big"}}}})
	if err != nil {
		t.Fatalf("Pull of %d MiB: %v", bytes>>20, err)
	}
	t.Logf("pull %d KiB in %v", bytes>>10, time.Since(start))
	if len(pr.Parts) != len(sizes) {
		t.Fatalf("pull returned %d parts, want %d", len(pr.Parts), len(sizes))
	}
	for i, s := range sizes {
		if len(pr.Parts[i].Values) != s || pr.Parts[i].Version != int64(i) {
			t.Fatalf("pull part %d: %d values version %d, want %d values version %d", i, len(pr.Parts[i].Values), pr.Parts[i].Version, s, i)
		}
		if err := checkPattern(pr.Parts[i].Values, uint32(i)); err != nil {
			t.Errorf("pull part %d: %v", i, err)
		}
	}
}

func testStopped(t *testing.T, h Harness) {
	svc, addr, stop := dial(t, h, &Fake{})
	ctx := callCtx(t)
	if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
		t.Fatalf("Pull before stop: %v", err)
	}
	stop()
	for name, call := range map[string]func() error{
		"Create": func() error { _, err := svc.Create(ctx, sampleCreate()); return err },
		"Pull":   func() error { _, err := svc.Pull(ctx, samplePull()); return err },
		"Push":   func() error { _, err := svc.Push(ctx, samplePush()); return err },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, ps.ErrUnavailable) || !ps.Retryable(err) {
			t.Errorf("%s on a stopped server: %v, want a retryable ps.ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s on a stopped server took %v", name, d)
		}
	}
	// A fresh dial of the stopped address fails at Dial or at the first call.
	svc2, err := h.Dialer(t).Dial(ctx, addr)
	if err == nil {
		defer svc2.Close()
		_, err = svc2.Pull(ctx, &ps.PullRequest{})
	}
	if !errors.Is(err, ps.ErrUnavailable) {
		t.Errorf("dialing a stopped server: %v, want ps.ErrUnavailable", err)
	}
}

func testClose(t *testing.T, h Harness) {
	svc, _, stop := dial(t, h, &Fake{})
	defer stop()
	if err := svc.Close(); err != nil {
		t.Errorf("first Close: %v", err)
	}
	if err := svc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := svc.Pull(callCtx(t), &ps.PullRequest{}); !errors.Is(err, ps.ErrClosed) {
		t.Errorf("Pull after Close: %v, want ps.ErrClosed", err)
	}
}
