package grpctransport

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

func TestTensorPoolClasses(t *testing.T) {
	for _, n := range []int{0, 1, 4095, 4096, 16384, 16385, 1 << 20, 3<<20 + 1} {
		b, pooled := gradPool.get(n)
		if len(b) != n {
			t.Fatalf("get(%d) has %d elements", n, len(b))
		}
		if pooled != (n >= 4096) {
			t.Errorf("get(%d): pooled %v", n, pooled)
		}
		if pooled && (cap(b)&(cap(b)-1) != 0 || cap(b) < n || cap(b) > max(2*n, 1<<minTensorClass)) {
			t.Errorf("get(%d): capacity %d is not the power of two that fits", n, cap(b))
		}
		if pooled {
			gradPool.put(b)
		}
	}
	gradPool.put(make([]float32, 5000)) // not a class: dropped, no panic
}

// TestPushRecyclingKeepsSyncSums pushes, in sync mode, gradients of two
// workers through the transport into a ps.Server, whose pushed arrays the
// transport recycles: the first worker's array comes back for the second's
// push while the server still owes the step's mean. The mean must be of the
// gradients sent, so the server cannot have kept the recycled array.
func TestPushRecyclingKeepsSyncSums(t *testing.T) {
	cfg := ps.DefaultServerConfig()
	cfg.ID = "recycle"
	srv, err := ps.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, _ := serve(t, srv, ServerConfig{})
	d := NewDialer(DialerConfig{ChunkBytes: 64 << 10})
	defer d.Close()
	ctx := context.Background()
	svc, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 16 // pooled, several frames
	spec := ps.VariableSpec{Name: "w", Shape: []int64{n}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2}, MaxPartitionBytes: 4 * n}
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	key := ps.PartKey{Var: "w"}
	want := make([]float32, n)
	for step := int64(0); step < 6; step++ {
		grads := [2][]float32{make([]float32, n), make([]float32, n)}
		for w := range grads {
			for i := range grads[w] {
				grads[w][i] = float32((int(step)*7+w*3+i)%17) - 8
			}
		}
		for w := range grads {
			_, err := svc.Push(ctx, &ps.PushRequest{ClientID: fmt.Sprint("w", w), Seq: uint64(step + 1), Worker: w,
				Parts: []ps.PushPart{{Key: key, Grad: grads[w], Step: step}}})
			if err != nil {
				t.Fatalf("step %d worker %d: %v", step, w, err)
			}
		}
		for i := range want {
			want[i] -= (grads[0][i] + grads[1][i]) / 2
		}
		resp, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key, MinVersion: step + 1}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Parts[0].Values; !slices.Equal(got, want) {
			i := 0
			for i < n && got[i] == want[i] {
				i++
			}
			t.Fatalf("step %d: value %d is %v, want %v", step, i, got[i], want[i])
		}
	}
}

// TestNoRecyclingForOtherServices: a Service other than ps.Server may keep
// the pushed slices, so they must never be reused under it.
func TestNoRecyclingForOtherServices(t *testing.T) {
	var mu sync.Mutex
	var kept [][]float32
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		mu.Lock()
		kept = append(kept, r.Parts[0].Grad)
		mu.Unlock()
		return &ps.PushResponse{Versions: []int64{1}}, nil
	}}
	addr, _ := serve(t, fake, ServerConfig{})
	d := NewDialer(DialerConfig{})
	defer d.Close()
	svc, _ := d.Dial(context.Background(), addr)
	g := make([]float32, 1<<15)
	for i := 0; i < 20; i++ {
		for j := range g {
			g[j] = float32(i)
		}
		if _, err := svc.Push(context.Background(), &ps.PushRequest{Parts: []ps.PushPart{{Grad: g}}}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, k := range kept {
		if k[0] != float32(i) || k[len(k)-1] != float32(i) {
			t.Fatalf("kept gradient %d now holds %v", i, k[0])
		}
	}
}
