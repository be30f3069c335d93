package grpctransport

import (
	"context"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

// The server's wait at the sync barrier (ps.PullResponse.Waited) crosses
// the wire, on the data path and over gRPC.
func TestPullCarriesServerWait(t *testing.T) {
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, _ := serve(t, srv, ServerConfig{})
	for _, path := range []string{"", DataPathOff} {
		t.Run("datapath="+path, func(t *testing.T) { testPullCarriesServerWait(t, srv, addr, path) })
	}
}

func testPullCarriesServerWait(t *testing.T, srv *ps.Server, addr, path string) {
	ctx := context.Background()
	key := ps.PartKey{Var: "w" + path}
	spec := ps.VariableSpec{Name: key.Var, Shape: []int64{4}, Optimizer: ps.OptimizerSpec{LR: 1},
		Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1}}
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	d := NewDialer(DialerConfig{DataPath: path})
	defer d.Close()
	svc, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if path == "" {
		waitDataPath(t, svc)
	}
	type result struct {
		resp *ps.PullResponse
		call time.Duration
		err  error
	}
	done := make(chan result, 1)
	waits := srv.Stats().StalenessWaits
	go func() {
		t0 := time.Now()
		resp, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key, MinVersion: 1}}})
		done <- result{resp, time.Since(t0), err}
	}()
	for srv.Stats().StalenessWaits == waits {
		time.Sleep(time.Millisecond)
	}
	if _, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: make([]float32, 4)}}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.Waited <= 0 || r.resp.Waited > r.call {
		t.Errorf("Waited %v, want in (0, %v]", r.resp.Waited, r.call)
	}
	resp, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key, MinVersion: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Waited != 0 {
		t.Errorf("pull of a ready version: Waited %v, want 0", resp.Waited)
	}
}
