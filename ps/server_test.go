package ps

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestServer(t *testing.T, mod func(*ServerConfig)) *Server {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.ID = "ps-test"
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Server, spec VariableSpec) {
	t.Helper()
	parts := make([]int, len(spec.Partitions()))
	for i := range parts {
		parts[i] = i
	}
	if _, err := s.Create(context.Background(), &CreateRequest{Spec: spec, Parts: parts}); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func key(v string, i int) PartKey { return PartKey{Var: v, Index: i} }

func pullAll(t *testing.T, s *Server, keys ...PartKey) []PartValues {
	t.Helper()
	req := &PullRequest{}
	for _, k := range keys {
		req.Parts = append(req.Parts, PullPart{Key: k})
	}
	resp, err := s.Pull(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Parts
}

// The fixture for bad-input tests: "emb" (8×2, async, sgd lr 1, ones) and
// "syn" (4, sync over 2 workers, sgd lr 1, zeros).
func badInputServer(t *testing.T) *Server {
	s := newTestServer(t, func(c *ServerConfig) { c.MaxPartsPerRequest = 3 })
	mustCreate(t, s, VariableSpec{Name: "emb", Shape: []int64{8, 2}, Init: Initializer{Kind: InitConstant, Value: 1}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 1}})
	mustCreate(t, s, VariableSpec{Name: "syn", Shape: []int64{4}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 2}})
	return s
}

func TestServerBadInput(t *testing.T) {
	ctx := context.Background()
	emb, syn := key("emb", 0), key("syn", 0)
	good := PushPart{Key: emb, Rows: []int64{1}, Grad: []float32{1, 1}}
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	tests := []struct {
		name string
		call func(*Server) error
		want error
		says []string // substrings the message must hold
	}{
		{"push unknown variable", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: key("nope", 0), Grad: []float32{1}}}})
			return err
		}, ErrUnknownVariable, []string{"nope/0"}},
		{"push unknown partition", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{good, {Key: key("emb", 3), Grad: []float32{1}}}})
			return err
		}, ErrUnknownVariable, []string{"emb/3"}},
		{"dense gradient too short", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{good, {Key: syn, Grad: []float32{1, 2, 3}}}})
			return err
		}, ErrShapeMismatch, []string{"syn/0", "3 values", "want 4"}},
		{"sparse gradient wrong length", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: emb, Rows: []int64{0, 1}, Grad: []float32{1, 1, 1}}}})
			return err
		}, ErrShapeMismatch, []string{"emb/0", "3 values", "want 4"}},
		{"sparse row out of range", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: emb, Rows: []int64{0, 8}, Grad: []float32{1, 1, 1, 1}}}})
			return err
		}, ErrInvalidArgument, []string{"emb/0", "row 8", "[0, 8)"}},
		{"negative row", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: emb, Rows: []int64{-1}, Grad: []float32{1, 1}}}})
			return err
		}, ErrInvalidArgument, []string{"row -1"}},
		{"NaN in gradient, after a good part", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: syn, Grad: []float32{1, 1, 1, 1}}, {Key: emb, Rows: []int64{2}, Grad: []float32{0, nan}}}})
			return err
		}, ErrNonFinite, []string{"emb/0", "value 1", "NaN"}},
		{"Inf in gradient", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: syn, Grad: []float32{inf, 1, 1, 1}}}})
			return err
		}, ErrNonFinite, []string{"syn/0", "-Inf"}},
		{"sync future step, with a good part first", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{good, {Key: syn, Step: 1, Grad: []float32{1, 1, 1, 1}}}})
			return err
		}, ErrInvalidArgument, []string{"syn/0", "future step 1", "version is 0"}},
		{"sync worker out of range", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Worker: 2, Parts: []PushPart{{Key: syn, Grad: []float32{1, 1, 1, 1}}}})
			return err
		}, ErrInvalidArgument, []string{"worker 2"}},
		{"partition twice in one push", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{good, good}})
			return err
		}, ErrInvalidArgument, []string{"emb/0", "twice"}},
		{"too many parts", func(s *Server) error {
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{good, good, good, good}})
			return err
		}, ErrTooLarge, []string{"4 parts", "at most 3"}},
		{"nil push", func(s *Server) error { _, err := s.Push(ctx, nil); return err }, ErrInvalidArgument, nil},
		{"pull row out of range", func(s *Server) error {
			_, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: emb, Rows: []int64{9}}}})
			return err
		}, ErrInvalidArgument, []string{"emb/0", "row 9"}},
		{"pull unknown", func(s *Server) error {
			_, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: emb}, {Key: key("x", 0)}}})
			return err
		}, ErrUnknownVariable, []string{"x/0"}},
		{"create rank 0", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "r0", Optimizer: OptimizerSpec{LR: 1}}, Parts: []int{0}})
			return err
		}, ErrInvalidArgument, []string{"r0", "rank 0"}},
		{"create zero dimension", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "z", Shape: []int64{4, 0}, Optimizer: OptimizerSpec{LR: 1}}, Parts: []int{0}})
			return err
		}, ErrInvalidArgument, []string{"dimension 1 is 0"}},
		{"create unknown optimizer", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "o", Shape: []int64{4}, Optimizer: OptimizerSpec{Kind: "lamb", LR: 1}}, Parts: []int{0}})
			return err
		}, ErrInvalidArgument, []string{"lamb"}},
		{"create LR 0", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "o", Shape: []int64{4}}, Parts: []int{0}})
			return err
		}, ErrInvalidArgument, []string{"learning rate 0"}},
		{"create sync without workers", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "o", Shape: []int64{4}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: Sync}}, Parts: []int{0}})
			return err
		}, ErrInvalidArgument, []string{"0 workers"}},
		{"create partition out of range", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "o", Shape: []int64{4}, Optimizer: OptimizerSpec{LR: 1}}, Parts: []int{0, 1}})
			return err
		}, ErrInvalidArgument, []string{"partition 1", "has 1"}},
		{"create other shape", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "emb", Shape: []int64{8, 3}, Init: Initializer{Kind: InitConstant, Value: 1}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 1}}, Parts: []int{0}})
			return err
		}, ErrSpecMismatch, []string{"emb/0", "[8 2]", "[8 3]"}},
		{"create other optimizer", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "syn", Shape: []int64{4}, Optimizer: OptimizerSpec{Kind: OptAdam, LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 2}}, Parts: []int{0}})
			return err
		}, ErrSpecMismatch, []string{"syn/0", "sgd", "adam"}},
		{"create other mode", func(s *Server) error {
			_, err := s.Create(ctx, &CreateRequest{Spec: VariableSpec{Name: "syn", Shape: []int64{4}, Optimizer: OptimizerSpec{Kind: OptSGD, LR: 1}}, Parts: []int{0}})
			return err
		}, ErrSpecMismatch, []string{"consistency", "sync", "async"}},
		{"not owner", func(s *Server) error {
			s.SetOwns(func(k PartKey) bool { return k.Var != "emb" })
			defer s.SetOwns(nil)
			_, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: syn, Grad: []float32{1, 1, 1, 1}}, good}})
			return err
		}, ErrNotOwner, []string{"emb/0", "ps-test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := badInputServer(t)
			before := pullAll(t, s, emb, syn)
			statsBefore := s.Stats()
			err := tc.call(s)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, sub := range tc.says {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not mention %q", err, sub)
				}
			}
			after := pullAll(t, s, emb, syn)
			for i := range before {
				if before[i].Version != after[i].Version || !slices.Equal(before[i].Values, after[i].Values) {
					t.Fatalf("%s changed: %+v → %+v", before[i].Key, before[i], after[i])
				}
			}
			if s.Stats().Rejected != statsBefore.Rejected+1 {
				t.Errorf("rejected count %d, want %d", s.Stats().Rejected, statsBefore.Rejected+1)
			}
			// The next good request works, and a sync step still completes
			// with the exact mean (no partial sum leaked in).
			resp, err := s.Push(ctx, &PushRequest{Worker: 0, Parts: []PushPart{good, {Key: syn, Grad: []float32{1, 2, 3, 4}}}})
			if err != nil {
				t.Fatalf("good push after reject: %v", err)
			}
			if resp.Versions[0] != before[0].Version+1 {
				t.Errorf("emb version %d, want %d", resp.Versions[0], before[0].Version+1)
			}
			if _, err := s.Push(ctx, &PushRequest{Worker: 1, Parts: []PushPart{{Key: syn, Grad: []float32{3, 2, 1, 0}}}}); err != nil {
				t.Fatal(err)
			}
			got := pullAll(t, s, emb, syn)
			if !slices.Equal(got[0].Values[2:4], []float32{0, 0}) || !slices.Equal(got[0].Values[:2], []float32{1, 1}) {
				t.Errorf("emb after good push: %v", got[0].Values)
			}
			if !slices.Equal(got[1].Values, []float32{-2, -2, -2, -2}) || got[1].Version != 1 {
				t.Errorf("syn after one step: %v at %d, want [-2 -2 -2 -2] at 1", got[1].Values, got[1].Version)
			}
		})
	}
}

func TestServerCreateIdempotent(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, nil)
	spec := VariableSpec{Name: "w", Shape: []int64{4}, Init: Initializer{Kind: InitUniform, Max: 1, Seed: 3}, Optimizer: OptimizerSpec{Kind: OptAdam, LR: 0.1}}
	mustCreate(t, s, spec)
	first := pullAll(t, s, key("w", 0))[0]
	if _, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: key("w", 0), Grad: []float32{1, 1, 1, 1}}}}); err != nil {
		t.Fatal(err)
	}
	// The same spec spelled with explicit defaults is the same spec.
	spec.Optimizer.Beta1, spec.Optimizer.Beta2, spec.Consistency.Mode = 0.9, 0.999, Async
	resp, err := s.Create(ctx, &CreateRequest{Spec: spec, Parts: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Versions, []int64{1}) {
		t.Errorf("versions %v, want [1]", resp.Versions)
	}
	if got := pullAll(t, s, key("w", 0))[0]; slices.Equal(got.Values, first.Values) {
		t.Error("re-create reset the values")
	}
	// Another server creates bit-identical initial values.
	s2 := newTestServer(t, nil)
	mustCreate(t, s2, spec)
	if got := pullAll(t, s2, key("w", 0))[0]; !slices.Equal(got.Values, first.Values) {
		t.Errorf("another server initialized %v, want %v", got.Values, first.Values)
	}
	if st := s.Status(); len(st) != 1 || st[0].Key != key("w", 0) || st[0].Version != 1 || st[0].Mode != Async || st[0].Rows.Len() != 4 {
		t.Errorf("status %+v", st)
	}
}

func TestServerSparsePullPush(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, nil)
	spec := VariableSpec{Name: "e", Shape: []int64{5, 3}, Init: Initializer{Kind: InitConstant, Value: 1}, Optimizer: OptimizerSpec{LR: 0.5}}
	mustCreate(t, s, spec)
	k := key("e", 0)
	if _, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: k, Rows: []int64{4, 1, 4}, Grad: []float32{1, 2, 3, 2, 2, 2, 1, 0, -1}}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: k, Rows: []int64{4, 0, 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	// row 4: 1 - 0.5·(2,2,2); row 1: 1 - 0.5·(2,2,2); row 0 untouched
	want := []float32{0, 0, 0, 1, 1, 1, 0, 0, 0}
	if got := resp.Parts[0]; !slices.Equal(got.Values, want) || got.Version != 1 {
		t.Errorf("sparse pull %v at %d, want %v at 1", got.Values, got.Version, want)
	}
	// Pulled data is a copy.
	resp.Parts[0].Values[0] = 99
	if v := pullAll(t, s, k)[0].Values[12]; v != 0 {
		t.Errorf("caller's write reached the server: %v", v)
	}
	// An empty sparse push is valid and counts as an update.
	if r, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: k, Rows: []int64{}, Grad: nil}}}); err != nil || r.Versions[0] != 2 {
		t.Errorf("empty sparse push: %v %v", r, err)
	}
}

// Pulls write into a part's Dst, or into buffers from the request's Alloc,
// and refuse a Dst of the wrong length without writing it.
func TestServerPullIntoDstAndAlloc(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "e", Shape: []int64{5, 3}, Init: Initializer{Kind: InitConstant, Value: 2}, Optimizer: OptimizerSpec{LR: 1}})
	k := key("e", 0)
	dense, sparse := make([]float32, 15), make([]float32, 6)
	resp, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: k, Dst: dense}, {Key: k, Rows: []int64{3, 0}, Dst: sparse}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, dst := range [][]float32{dense, sparse} {
		if got := resp.Parts[i].Values; !SameBuffer(got, dst) || slices.ContainsFunc(got, func(v float32) bool { return v != 2 }) {
			t.Errorf("part %d: values %v not written into Dst", i, got)
		}
	}
	var asked []int
	alloc := func(n int) []float32 { asked = append(asked, n); return make([]float32, n) }
	if _, err := s.Pull(ctx, &PullRequest{Alloc: alloc, Parts: []PullPart{{Key: k}, {Key: k, Rows: []int64{1}}, {Key: k, Dst: dense}}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []int{15, 3}) {
		t.Errorf("Alloc asked for %v, want [15 3] (the part with a Dst needs none)", asked)
	}
	short := []float32{-1, -1}
	_, err = s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: k, Dst: short}}})
	if !errors.Is(err, ErrShapeMismatch) || !strings.Contains(err.Error(), "destination holds 2 values, the part has 15") {
		t.Errorf("short Dst: err = %v, want ErrShapeMismatch naming both sizes", err)
	}
	if short[0] != -1 || short[1] != -1 {
		t.Errorf("short Dst was written: %v", short)
	}
	bad := func(n int) []float32 { return make([]float32, n-1) }
	if _, err := s.Pull(ctx, &PullRequest{Alloc: bad, Parts: []PullPart{{Key: k}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("allocator of the wrong size: err = %v, want ErrInvalidArgument", err)
	}
}

func TestServerAllowNonFinite(t *testing.T) {
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "n", Shape: []int64{2}, Optimizer: OptimizerSpec{LR: 1}, AllowNonFinite: true})
	if _, err := s.Push(context.Background(), &PushRequest{Parts: []PushPart{{Key: key("n", 0), Grad: []float32{float32(math.Inf(1)), 1}}}}); err != nil {
		t.Fatal(err)
	}
	if v := pullAll(t, s, key("n", 0))[0].Values; !math.IsInf(float64(v[0]), -1) || v[1] != -1 {
		t.Errorf("values %v", v)
	}
}

// Two workers × 100 sync steps: every applied update is the exact mean of
// both gradients, and every pull returns exactly the version it waited for.
func TestServerSyncTwoWorkers(t *testing.T) {
	const steps = 100
	s := newTestServer(t, nil)
	spec := VariableSpec{Name: "w", Shape: []int64{3}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 2}}
	mustCreate(t, s, spec)
	k := key("w", 0)
	grad := func(w, step int) []float32 {
		return []float32{float32(step*(w+1)) * 0.37, float32(w - step), float32((step*7+w*3)%11) / 3}
	}
	// expected[t] is the value at version t, computed independently.
	expected := make([][]float32, steps+1)
	expected[0] = []float32{0, 0, 0}
	for st := 0; st < steps; st++ {
		g0, g1 := grad(0, st), grad(1, st)
		next := slices.Clone(expected[st])
		for i := range next {
			next[i] -= (g0[i] + g1[i]) / 2
		}
		expected[st+1] = next
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				for st := 0; st < steps; st++ {
					resp, err := s.Pull(ctx, &PullRequest{ClientID: fmt.Sprint("w", w), Parts: []PullPart{{Key: k, MinVersion: int64(st)}}})
					if err != nil {
						return err
					}
					got := resp.Parts[0]
					if got.Version != int64(st) {
						return fmt.Errorf("worker %d step %d: pulled version %d", w, st, got.Version)
					}
					if !slices.Equal(got.Values, expected[st]) {
						return fmt.Errorf("worker %d step %d: values %v, want %v", w, st, got.Values, expected[st])
					}
					_, err = s.Push(ctx, &PushRequest{ClientID: fmt.Sprint("w", w), Seq: uint64(st), Worker: w, Parts: []PushPart{{Key: k, Step: int64(st), Grad: grad(w, st)}}})
					if err != nil {
						return fmt.Errorf("worker %d step %d: %w", w, st, err)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	final := pullAll(t, s, k)[0]
	if final.Version != steps || !slices.Equal(final.Values, expected[steps]) {
		t.Errorf("final %v at %d, want %v at %d", final.Values, final.Version, expected[steps], steps)
	}
	st := s.Stats()
	if st.Updates != steps || st.Pushes != 2*steps {
		t.Errorf("stats %+v: want %d updates from %d pushes", st, steps, 2*steps)
	}
}

func TestServerDedup(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, func(c *ServerConfig) { c.DedupWindow = 4 })
	mustCreate(t, s, VariableSpec{Name: "d", Shape: []int64{1}, Optimizer: OptimizerSpec{LR: 1}})
	k := key("d", 0)
	push := func(client string, seq uint64) error {
		_, err := s.Push(ctx, &PushRequest{ClientID: client, Seq: seq, Parts: []PushPart{{Key: k, Grad: []float32{1}}}})
		return err
	}
	value := func() float32 { return pullAll(t, s, k)[0].Values[0] }
	for _, st := range []struct {
		client string
		seq    uint64
		want   float32 // value after
		err    error
	}{
		{"a", 1, -1, nil},
		{"a", 1, -1, nil}, // retry: applied once
		{"a", 3, -2, nil},
		{"a", 2, -3, nil}, // out of order, new
		{"a", 3, -3, nil},
		{"b", 1, -4, nil}, // another client's seq space
		{"a", 10, -5, nil},
		{"a", 6, -5, ErrStale}, // 6 ≤ 10-4: beyond the window
		{"a", 7, -6, nil},
		{"a", 7, -6, nil},
		{"", 1, -7, nil}, // no client id: no dedup
		{"", 1, -8, nil},
	} {
		if err := push(st.client, st.seq); !errors.Is(err, st.err) || (st.err == nil && err != nil) {
			t.Fatalf("push %s/%d: %v, want %v", st.client, st.seq, err, st.err)
		}
		if v := value(); v != st.want {
			t.Fatalf("after push %s/%d value %v, want %v", st.client, st.seq, v, st.want)
		}
	}
	if d := s.Stats().Duplicates; d != 3 {
		t.Errorf("duplicates %d, want 3", d)
	}
}

func TestServerPullWaitCancelAndClose(t *testing.T) {
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "a", Shape: []int64{2}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 1}})
	mustCreate(t, s, VariableSpec{Name: "b", Shape: []int64{2}, Optimizer: OptimizerSpec{LR: 1}})
	ka, kb := key("a", 0), key("b", 0)
	p := func() *partition { s.mu.RLock(); defer s.mu.RUnlock(); return s.parts[ka] }()
	waiting := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.cm.Waiting() }

	// A deadline ends the wait and leaves nothing behind.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: ka, MinVersion: 1}}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "a/0") {
		t.Fatalf("pull past deadline: %v", err)
	}
	if n := waiting(); n != 0 || len(p.waiters) != 0 {
		t.Fatalf("%d waits left after cancel", n)
	}

	// A waiting pull of a/0 blocks neither b/0 nor pushes; a push to a/0
	// releases it with exactly the version it waited for.
	done := make(chan *PullResponse, 1)
	go func() {
		r, err := s.Pull(context.Background(), &PullRequest{Parts: []PullPart{{Key: kb}, {Key: ka, MinVersion: 1}}})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	waitFor(t, "pull to wait", func() bool { return waiting() == 1 })
	if _, err := s.Push(context.Background(), &PushRequest{Parts: []PushPart{{Key: kb, Grad: []float32{1, 1}}}}); err != nil {
		t.Fatal(err)
	}
	pullAll(t, s, kb)
	select {
	case <-done:
		t.Fatal("pull returned before its version existed")
	default:
	}
	if _, err := s.Push(context.Background(), &PushRequest{Parts: []PushPart{{Key: ka, Grad: []float32{1, 2}}}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r == nil || r.Parts[1].Version != 1 || !slices.Equal(r.Parts[1].Values, []float32{-1, -2}) {
		t.Fatalf("released pull got %+v", r)
	}
	if s.Stats().StalenessWaits != 2 {
		t.Errorf("staleness waits %d, want 2", s.Stats().StalenessWaits)
	}

	// Close releases a waiting pull with ErrClosed and fails later calls.
	errc := make(chan error, 1)
	go func() {
		_, err := s.Pull(context.Background(), &PullRequest{Parts: []PullPart{{Key: ka, MinVersion: 5}}})
		errc <- err
	}()
	waitFor(t, "pull to wait", func() bool { return waiting() == 1 })
	s.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting pull after Close: %v", err)
	}
	if _, err := s.Push(context.Background(), &PushRequest{Parts: []PushPart{{Key: kb, Grad: []float32{1, 1}}}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after Close: %v", err)
	}
}

func TestServerSSP(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "s", Shape: []int64{1}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: SSP, Workers: 2, Staleness: 1}})
	k := key("s", 0)
	pushAt := func(w int, clock int64) {
		t.Helper()
		if _, err := s.Push(ctx, &PushRequest{Worker: w, Clock: clock, Parts: []PushPart{{Key: k, Grad: []float32{1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	pushAt(0, 1)
	pushAt(0, 2)
	// Worker 0 at clock 2 may run ahead by one of worker 1 (clock 0): waits.
	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctx, &PullRequest{Worker: 0, Clock: 2, Parts: []PullPart{{Key: k}}})
		done <- err
	}()
	waitFor(t, "ssp pull to wait", func() bool { return s.Stats().StalenessWaits == 1 })
	// Worker 1 at clock 1 is within the bound of itself.
	if _, err := s.Pull(ctx, &PullRequest{Worker: 1, Clock: 1, Parts: []PullPart{{Key: k}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("pull ran ahead of the staleness bound: %v", err)
	default:
	}
	pushAt(1, 1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, &PullRequest{Worker: 5, Parts: []PullPart{{Key: k}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ssp pull by unknown worker: %v", err)
	}
}

// Concurrent async pushes and pulls over two partitions, for -race: every
// update lands exactly once.
func TestServerConcurrentAsync(t *testing.T) {
	s := newTestServer(t, nil)
	spec := VariableSpec{Name: "c", Shape: []int64{64, 4}, Optimizer: OptimizerSpec{LR: 1}, MinPartitionBytes: 64, MaxPartitionBytes: 512}
	mustCreate(t, s, spec)
	if n := len(spec.Partitions()); n != 2 {
		t.Fatalf("%d partitions, want 2", n)
	}
	const workers, rounds = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for r := 0; r < rounds; r++ {
				parts := []PushPart{
					{Key: key("c", 1), Rows: []int64{int64(r % 32)}, Grad: []float32{1, 1, 1, 1}},
					{Key: key("c", 0), Grad: slices.Repeat([]float32{1}, 128)},
				}
				if _, err := s.Push(ctx, &PushRequest{ClientID: fmt.Sprint(w), Seq: uint64(r), Parts: parts}); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: key("c", 1)}, {Key: key("c", 0), Rows: []int64{3}}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := pullAll(t, s, key("c", 0), key("c", 1))
	if got[0].Version != workers*rounds || got[0].Values[0] != -workers*rounds {
		t.Errorf("c/0 at %d value %v", got[0].Version, got[0].Values[0])
	}
	var sum float32
	for _, v := range got[1].Values {
		sum += v
	}
	if sum != -workers*rounds*4 {
		t.Errorf("c/1 sum %v, want %v", sum, -workers*rounds*4)
	}
}

func TestServerConfigValidate(t *testing.T) {
	if _, err := NewServer(ServerConfig{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty ID: %v", err)
	}
	if _, err := NewServer(ServerConfig{ID: "x", MaxPartsPerRequest: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("negative MaxPartsPerRequest: %v", err)
	}
	s, err := NewServer(ServerConfig{ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxPartsPerRequest != 4096 || s.cfg.DedupWindow != 1024 || s.cfg.Logger == nil {
		t.Errorf("defaults not filled: %+v", s.cfg)
	}
}

// A partition's lock held (as by a long apply) blocks neither pulls nor
// pushes of another partition.
func TestServerPartitionsLockIndependently(t *testing.T) {
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "a", Shape: []int64{2}, Optimizer: OptimizerSpec{LR: 1}})
	mustCreate(t, s, VariableSpec{Name: "b", Shape: []int64{2}, Optimizer: OptimizerSpec{LR: 1}})
	s.mu.RLock()
	pa := s.parts[key("a", 0)]
	s.mu.RUnlock()
	pa.mu.Lock()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.Push(ctx, &PushRequest{Parts: []PushPart{{Key: key("b", 0), Grad: []float32{1, 1}}}}); err != nil {
			done <- err
			return
		}
		_, err := s.Pull(ctx, &PullRequest{Parts: []PullPart{{Key: key("b", 0)}}})
		done <- err
	}()
	err := <-done
	pa.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

func TestServerConcurrentCreate(t *testing.T) {
	s := newTestServer(t, nil)
	spec := VariableSpec{Name: "w", Shape: []int64{16}, Init: Initializer{Kind: InitNormal, Stddev: 1}, Optimizer: OptimizerSpec{LR: 1}}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Create(context.Background(), &CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := s.Status(); len(st) != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestServerSyncBackupWorker(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, nil)
	mustCreate(t, s, VariableSpec{Name: "w", Shape: []int64{1}, Optimizer: OptimizerSpec{LR: 1}, Consistency: Consistency{Mode: Sync, Workers: 3, Backup: 1}})
	k := key("w", 0)
	for w, g := range []float32{2, 4} {
		if _, err := s.Push(ctx, &PushRequest{Worker: w, Parts: []PushPart{{Key: k, Grad: []float32{g}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Push(ctx, &PushRequest{Worker: 2, Parts: []PushPart{{Key: k, Grad: []float32{100}}}}); !errors.Is(err, ErrStale) {
		t.Fatalf("backup worker's late push: %v, want ErrStale", err)
	}
	if got := pullAll(t, s, k)[0]; got.Version != 1 || got.Values[0] != -3 {
		t.Errorf("after one step %v at %d, want -3 at 1", got.Values, got.Version)
	}
}

type wrapped struct{ Service }

func (w wrapped) Unwrap() Service { return w.Service }

// ServerOf finds a Server through wrappers that declare Unwrap, and only
// through those.
func TestServerOf(t *testing.T) {
	s := newTestServer(t, nil)
	for _, tc := range []struct {
		svc  Service
		want bool
	}{
		{s, true},
		{wrapped{s}, true},
		{wrapped{wrapped{s}}, true},
		{struct{ Service }{s}, false}, // embeds, but promises nothing
		{wrapped{struct{ Service }{s}}, false},
		{noClose{s}, false},
	} {
		got, ok := ServerOf(tc.svc)
		if ok != tc.want || ok && got != s {
			t.Errorf("ServerOf(%T) = %p, %v; want %v", tc.svc, got, ok, tc.want)
		}
	}
}
