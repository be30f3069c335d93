package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/checkpoint"
	"github.com/flowps/flowps/internal/secure"
	"github.com/flowps/flowps/ps"
)

func flowctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeCheckpoint makes a complete one-node checkpoint of two variables.
func writeCheckpoint(t *testing.T, root string) string {
	t.Helper()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, s := range []ps.VariableSpec{
		{Name: "w", Shape: []int64{6, 4}, Init: ps.Initializer{Kind: ps.InitUniform, Min: -1, Max: 1, Seed: 1}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}},
		{Name: "b", Shape: []int64{4}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 2}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}},
	} {
		if _, err := srv.Create(context.Background(), &ps.CreateRequest{Spec: s, Parts: []int{0}}); err != nil {
			t.Fatal(err)
		}
	}
	id := checkpoint.NewID(time.Now())
	if err := checkpoint.WriteRequest(root, checkpoint.Request{ID: id, Nodes: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	all, _ := srv.SnapshotAll()
	if _, err := checkpoint.WriteNode(root, id, "n", nil, all); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Finalize(root, id, []string{"n"}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestOfflineCommands(t *testing.T) {
	root := t.TempDir()
	id := writeCheckpoint(t, root)
	code, out, errs := flowctl(t, "verify", "--dir", root)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "2 variables, 2 partitions") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	npz := filepath.Join(t.TempDir(), "m.npz")
	if code, out, errs := flowctl(t, "export", "--dir", root, "--id", id, "--out", npz); code != 0 {
		t.Fatalf("export: %d %q %q", code, out, errs)
	}
	b, _ := os.ReadFile(npz)
	arrs, err := checkpoint.ReadNPZ(bytes.NewReader(b), int64(len(b)), 0)
	if err != nil || len(arrs) != 2 || arrs["b"] == nil {
		t.Fatalf("exported npz: %v, %v", arrs, err)
	}
	if f, _ := arrs["b"].Float32(); len(f) != 4 || f[3] != 2 {
		t.Errorf("b = %v", f)
	}
	// A damaged partition file fails verify.
	ck, _ := checkpoint.Open(root, id)
	path := filepath.Join(checkpoint.Dir(root, id), ck.Parts[0].File)
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 1
	os.WriteFile(path, data, 0o644)
	if code, _, errs := flowctl(t, "verify", "--dir", root); code != 1 || !strings.Contains(errs, "SHA-256") {
		t.Errorf("verify of a damaged checkpoint: %d %q", code, errs)
	}

	dir := t.TempDir()
	code, out, _ = flowctl(t, "gen-certs", "--dir", dir, "--names", "psd,trainer")
	if code != 0 || !strings.Contains(out, "trainer: --tls-cert") {
		t.Fatalf("gen-certs: %d %q", code, out)
	}
	if _, err := secure.ServerTLS(secure.Files{Cert: filepath.Join(dir, "psd.pem"), Key: filepath.Join(dir, "psd-key.pem"), CA: filepath.Join(dir, "ca.pem")}); err != nil {
		t.Errorf("generated psd identity: %v", err)
	}
	code, out, _ = flowctl(t, "gossip-key")
	if k, err := secure.ParseGossipKey(strings.TrimSpace(out)); code != 0 || err != nil || len(k) != 32 {
		t.Errorf("gossip-key: %d %q %v", code, out, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"checkpoint"}, {"export", "--out", "x.npz"}, {"export", "--dir", "d"},
		{"verify"}, {"gen-certs"}, {"gossip-key", "--bytes", "7"}, {"checkpoint", "--psd", "h:1", "extra"},
		{"gen-certs", "--dir", "d", "--names", "../x"},
	} {
		if code, _, _ := flowctl(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := flowctl(t, "verify", "--dir", t.TempDir()); code != 1 {
		t.Errorf("verify of an empty directory: exit %d, want 1", code)
	}
}

// TestAgainstPSDEndpoints checks the HTTP side against a stand-in for
// psd's checkpoint endpoints (the real ones run in the integration tests).
func TestAgainstPSDEndpoints(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"id":"20260101T000000.000000000Z","nodes":["psd-0","psd-1"],"variables":2,"partitions":5,"bytes":2000000,"seconds":0.5}`))
	})
	mux.HandleFunc("GET /checkpoints", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"id":"20260101T000000.000000000Z","complete":true},{"id":"20260102T000000.000000000Z","complete":false}]`))
	})
	mux.HandleFunc("GET /checkpoints/{id}/npz", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "latest" {
			http.Error(w, "no such checkpoint", http.StatusNotFound)
			return
		}
		z := checkpoint.NewNPZWriter(w)
		z.Add("w", []int64{2}, []float32{1, 2})
		z.Close()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	code, out, errs := flowctl(t, "checkpoint", "--psd", addr)
	if code != 0 || !strings.Contains(out, "5 partitions, 2.0 MB from psd-0, psd-1") {
		t.Errorf("checkpoint: %d %q %q", code, out, errs)
	}
	code, out, _ = flowctl(t, "checkpoints", "--psd", addr)
	if code != 0 || !strings.Contains(out, "20260102T000000.000000000Z  incomplete") {
		t.Errorf("checkpoints: %d %q", code, out)
	}
	npz := filepath.Join(t.TempDir(), "m.npz")
	if code, _, errs := flowctl(t, "export", "--psd", addr, "--out", npz); code != 0 {
		t.Errorf("export --psd: %d %q", code, errs)
	}
	if code, _, errs := flowctl(t, "export", "--psd", addr, "--id", "x", "--out", npz); code != 1 || !strings.Contains(errs, "404") {
		t.Errorf("export of a missing id: %d %q", code, errs)
	}
}
