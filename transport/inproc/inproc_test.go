package inproc

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

func TestConformance(t *testing.T) {
	net := NewNetwork()
	var n atomic.Int64
	transporttest.Run(t, transporttest.Harness{
		Name: "inproc",
		Serve: func(t *testing.T, svc ps.Service) (string, func()) {
			addr := "ps-" + string(rune('a'+n.Add(1)%26)) + time.Now().Format("150405.000000000")
			stop := net.Serve(addr, svc)
			t.Cleanup(stop)
			return addr, stop
		},
		Dialer: func(t *testing.T) ps.Dialer { return net.Dialer("trainer") },
	})
}

func dialT(t *testing.T, net *Network, from, to string) ps.Service {
	t.Helper()
	svc, err := net.Dialer(from).Dial(context.Background(), to)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestPartitionAndDisconnect(t *testing.T) {
	net := NewNetwork()
	for _, a := range []string{"a", "b", "c"} {
		defer net.Serve(a, &transporttest.Fake{})()
	}
	ctx := context.Background()
	reach := func(from, to string) bool {
		_, err := dialT(t, net, from, to).Pull(ctx, &ps.PullRequest{})
		if err != nil && !errors.Is(err, ps.ErrUnavailable) {
			t.Fatalf("%s->%s: unexpected error %v", from, to, err)
		}
		return err == nil
	}
	check := func(stage string, want map[[2]string]bool) {
		t.Helper()
		for p, w := range want {
			if got := reach(p[0], p[1]); got != w {
				t.Errorf("%s: %s->%s reachable = %v, want %v", stage, p[0], p[1], got, w)
			}
		}
	}
	check("start", map[[2]string]bool{{"a", "b"}: true, {"b", "c"}: true, {"t", "a"}: true})
	net.Disconnect("a", "b")
	check("disconnect", map[[2]string]bool{{"a", "b"}: false, {"b", "a"}: false, {"a", "c"}: true})
	net.Reconnect("b", "a")
	check("reconnect", map[[2]string]bool{{"a", "b"}: true, {"b", "a"}: true})
	net.Partition([]string{"a", "b"}, []string{"c", "t"})
	check("partition", map[[2]string]bool{{"a", "b"}: true, {"a", "c"}: false, {"t", "c"}: true, {"t", "a"}: false, {"x", "a"}: false, {"c", "c"}: true})
	net.Disconnect("a", "b")
	net.Heal()
	check("heal", map[[2]string]bool{{"a", "b"}: true, {"a", "c"}: true, {"x", "a"}: true})
}

func TestFaults(t *testing.T) {
	net := NewNetwork()
	fake := &transporttest.Fake{}
	defer net.Serve("s", fake)()
	svc := dialT(t, net, "c", "s")
	ctx := context.Background()
	pushes := func() int64 { _, _, p := fake.Calls(); return p }

	net.SetFault(func(from, to, method string) Fault {
		if from != "c" || to != "s" {
			t.Errorf("fault hook saw %s->%s", from, to)
		}
		if method == MethodPush {
			return Fault{Drop: true}
		}
		return Fault{}
	})
	if _, err := svc.Push(ctx, &ps.PushRequest{}); !errors.Is(err, ps.ErrUnavailable) || pushes() != 0 {
		t.Errorf("dropped push: err %v, server saw %d pushes", err, pushes())
	}
	if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
		t.Errorf("pull under a push-only fault: %v", err)
	}

	net.SetFault(func(string, string, string) Fault { return Fault{DropResponse: true} })
	if _, err := svc.Push(ctx, &ps.PushRequest{}); !errors.Is(err, ps.ErrUnavailable) || pushes() != 1 {
		t.Errorf("lost response: err %v, server saw %d pushes, want 1", err, pushes())
	}

	net.SetFault(func(string, string, string) Fault { return Fault{Duplicate: 2} })
	if _, err := svc.Push(ctx, &ps.PushRequest{}); err != nil || pushes() != 4 {
		t.Errorf("duplicated push: err %v, server saw %d pushes, want 4", err, pushes())
	}

	boom := errors.New("boom")
	net.SetFault(func(string, string, string) Fault { return Fault{Err: boom} })
	if _, err := svc.Create(ctx, &ps.CreateRequest{}); !errors.Is(err, boom) {
		t.Errorf("fault error: %v", err)
	}

	net.SetFault(func(string, string, string) Fault { return Fault{Delay: time.Hour} })
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := svc.Pull(dctx, &ps.PullRequest{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed pull past its deadline: %v", err)
	}
	net.SetFault(nil)
	if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
		t.Errorf("after SetFault(nil): %v", err)
	}
}

func TestNoAliasing(t *testing.T) {
	net := NewNetwork()
	stored := []float32{1, 2, 3}
	var seen []float32
	fake := &transporttest.Fake{
		PullFunc: func(context.Context, *ps.PullRequest) (*ps.PullResponse, error) {
			return &ps.PullResponse{Parts: []ps.PartValues{{Values: stored}}}, nil
		},
		PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
			seen = r.Parts[0].Grad
			return &ps.PushResponse{}, nil
		},
	}
	defer net.Serve("s", fake)()
	svc := dialT(t, net, "c", "s")
	ctx := context.Background()
	pr, err := svc.Pull(ctx, &ps.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pr.Parts[0].Values[0] = 99
	if stored[0] != 1 {
		t.Errorf("client write reached server memory")
	}
	g := []float32{5}
	if _, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Grad: g}}}); err != nil {
		t.Fatal(err)
	}
	g[0] = 6
	if seen[0] != 5 {
		t.Errorf("client write after Push reached the server's request")
	}
}

func TestStopCancelsInFlight(t *testing.T) {
	net := NewNetwork()
	entered := make(chan struct{})
	fake := &transporttest.Fake{PullFunc: func(ctx context.Context, _ *ps.PullRequest) (*ps.PullResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	stop := net.Serve("s", fake)
	svc := dialT(t, net, "c", "s")
	errc := make(chan error, 1)
	go func() { _, err := svc.Pull(context.Background(), &ps.PullRequest{}); errc <- err }()
	<-entered
	stop()
	if err := <-errc; !errors.Is(err, ps.ErrUnavailable) {
		t.Errorf("in-flight pull on stop: %v, want ps.ErrUnavailable", err)
	}
	// Serving again at the same address makes it reachable again.
	defer net.Serve("s", &transporttest.Fake{})()
	if _, err := svc.Pull(context.Background(), &ps.PullRequest{}); err != nil {
		t.Errorf("after re-serving: %v", err)
	}
}
