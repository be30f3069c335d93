package runtime

import (
	"context"
	"testing"
	"time"
)

// notifyStore closes a channel when a push for one variable starts.
type notifyStore struct {
	*MemStore
	name   string
	pushed chan struct{}
}

func (s *notifyStore) Push(ctx context.Context, step int64, g Gradient) error {
	if g.Name == s.name {
		close(s.pushed)
	}
	return s.MemStore.Push(ctx, step, g)
}

// TestPushOverlapsBackprop holds back the kernel computing the first
// layer's weight gradient (the last one backprop produces) until the
// output layer's gradient push has started. If pushes waited for backprop
// to finish, the kernel would wait forever; the guard below fails instead.
func TestPushOverlapsBackprop(t *testing.T) {
	ctx := context.Background()
	m := buildMLP(t, 6, 5, 4, 3)
	store := &notifyStore{MemStore: NewMemStore(0.1), name: "dense3/w", pushed: make(chan struct{})}
	s, err := NewSession(ctx, m.g, SessionConfig{Store: store, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	waited := false
	testHookBeforeKernel = func(n *pnode) {
		// dW1 = xᵀ·dh1: a MatMul with transA whose first input is x.
		if n.op == opMatMul && n.a.transA && n.src != nil && n.src.inputs[0] == m.x {
			select {
			case <-store.pushed:
				waited = true
			case <-time.After(5 * time.Second):
			}
		}
	}
	defer func() { testHookBeforeKernel = nil }()
	x := randTensor(newRandSource(3).r, Shape{4, 6}, -1, 1)
	res, err := s.Run(ctx, RunArgs{Feeds: Feeds{m.x: x, m.y: ints(Shape{4}, 0, 1, 2, 0)}, Targets: []*Node{m.train}})
	if err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Fatal("the output layer's push had not started before the first layer's gradient was computed")
	}
	if res.Stats.Pushes != 6 {
		t.Fatalf("pushes %d, want 6", res.Stats.Pushes)
	}
}

// gateStore holds back the pull of one variable until released.
type gateStore struct {
	*MemStore
	name string
	gate chan struct{}
}

func (s *gateStore) Pull(ctx context.Context, step int64, reqs []PullRequest) error {
	for _, r := range reqs {
		if r.Name == s.name {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return s.MemStore.Pull(ctx, step, reqs)
}

// TestSplitPullsOverlapCompute: with SplitPulls the first layer's forward
// kernel runs while the last layer's weights are still being pulled (the
// pull is released only from inside that kernel); the results equal those
// of one batched pull.
func TestSplitPullsOverlapCompute(t *testing.T) {
	ctx := context.Background()
	m := buildMLP(t, 6, 5, 4, 3)
	x := randTensor(newRandSource(4).r, Shape{4, 6}, -1, 1)
	args := RunArgs{Feeds: Feeds{m.x: x, m.y: ints(Shape{4}, 0, 1, 2, 0)}, Fetches: []*Node{m.loss}}

	one, err := NewSession(ctx, m.g, SessionConfig{Store: NewMemStore(0.1)})
	if err != nil {
		t.Fatal(err)
	}
	want, err := one.Run(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if want.Stats.Pulls != 1 {
		t.Fatalf("batched pulls %d, want 1", want.Stats.Pulls)
	}

	store := &gateStore{MemStore: NewMemStore(0.1), name: "dense3/w", gate: make(chan struct{})}
	s, err := NewSession(ctx, m.g, SessionConfig{Store: store, SplitPulls: true})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	testHookBeforeKernel = func(n *pnode) {
		// The first product to run is the first layer's: the others
		// depend on it.
		if !released && (n.op == opFusedMatMul || n.op == opMatMul) {
			released = true
			close(store.gate)
		}
	}
	defer func() { testHookBeforeKernel = nil }()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := s.Run(rctx, args)
	if err != nil {
		t.Fatalf("a kernel waited for every pull: %v", err)
	}
	if !released {
		t.Fatal("the first layer's kernel never ran")
	}
	if got.Stats.Pulls != 6 {
		t.Fatalf("split pulls %d, want 6 (one per variable)", got.Stats.Pulls)
	}
	a, _ := got.Values[0].Float()
	b, _ := want.Values[0].Float()
	if a != b {
		t.Fatalf("loss %v with split pulls, %v batched", a, b)
	}
}
