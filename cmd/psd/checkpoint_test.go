package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flowps/flowps/checkpoint"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// newCheckpointNode is one psd's server and gossip (alone in its cluster)
// with a checkpointer on root.
func newCheckpointNode(t *testing.T, root, restore string, interval time.Duration) (*ps.Server, *checkpointer) {
	t.Helper()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "psd-0"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sharding.NewMembership(sharding.MembershipConfig{Self: sharding.Member{ID: "psd-0", Role: sharding.RolePS, Addr: "127.0.0.1:1"},
		BindAddr: "127.0.0.1:0", Profile: sharding.ProfileLocal})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{ID: "psd-0", Replicas: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.CheckpointDir, cfg.Restore, cfg.CheckpointInterval, cfg.CheckpointKeep = root, restore, interval, 2
	ck, err := startCheckpoints(context.Background(), cfg, srv, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ck.stop()
		m.Shutdown()
		srv.Close()
	})
	return srv, ck
}

func TestCheckpointerTakeAndRestore(t *testing.T) {
	root := t.TempDir()
	srv, ck := newCheckpointNode(t, root, "latest", 0)
	ctx := context.Background()
	spec := ps.VariableSpec{Name: "w", Shape: []int64{64, 8}, Init: ps.Initializer{Kind: ps.InitUniform, Min: -1, Max: 1, Seed: 4},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptAdagrad, LR: 0.1}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1},
		MinPartitionBytes: 512, MaxPartitionBytes: 512}
	parts := []int{0, 1, 2, 3}
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: parts}); err != nil {
		t.Fatal(err)
	}
	for _, i := range parts {
		g := make([]float32, 128)
		g[i] = 1
		if _, err := srv.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: ps.PartKey{Var: "w", Index: i}, Grad: g}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Through the HTTP endpoint, as flowctl does.
	h := ck.routes(http.NotFoundHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/checkpoint", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /checkpoint: %d %s", rec.Code, rec.Body)
	}
	c, err := checkpoint.Latest(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Parts) != 4 || c.Steps["w"] != 1 {
		t.Fatalf("checkpoint: %d parts, steps %v", len(c.Parts), c.Steps)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("other paths go to the wrapped handler: %d", rec.Code)
	}
	want, _ := srv.SnapshotAll()

	// A new node on the same directory restores every partition.
	srv2, _ := newCheckpointNode(t, root, "latest", 0)
	got, _ := srv2.SnapshotAll()
	if !reflect.DeepEqual(got, want) {
		t.Fatal("restored partitions differ")
	}
	// --restore none restores nothing.
	srv3, _ := newCheckpointNode(t, root, "none", 0)
	if st := srv3.Status(); len(st) != 0 {
		t.Errorf("--restore none hosts %d partitions", len(st))
	}
}

func TestCheckpointerPeriodic(t *testing.T) {
	root := t.TempDir()
	srv, _ := newCheckpointNode(t, root, "none", 200*time.Millisecond)
	spec := ps.VariableSpec{Name: "b", Shape: []int64{3}, Init: ps.Initializer{Kind: ps.InitZeros}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}}
	if _, err := srv.Create(context.Background(), &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	// Poll until the first checkpoint seen has been pruned while two
	// complete ones remain: at least three periods passed, two are kept.
	deadline := time.Now().Add(10 * time.Second)
	first := ""
	for {
		ids, _ := checkpoint.List(root)
		var complete []string
		for _, id := range ids {
			if _, err := checkpoint.Open(root, id); err == nil {
				complete = append(complete, id)
			}
		}
		if first == "" && len(complete) > 0 {
			first = complete[0]
		}
		if first != "" && len(complete) == 2 && !slices.Contains(ids, first) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic checkpoints: %v complete of %v, first %s", complete, ids, first)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
