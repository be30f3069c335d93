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
