package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a child benchmark server.
func TestMain(m *testing.M) {
	if name := os.Getenv(serveEnv); name != "" {
		if err := serveChild(context.Background(), name, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "benchmark server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var wantFields = []string{"transport", "op", "bytes", "gb_per_s", "p50_us", "p99_us", "runs"}

// checkLines parses JSON lines and checks that every (transport, op, size)
// cell appears once with the required fields (not their timings).
func checkLines(t *testing.T, data []byte, transports, ops []string, sizes []int, minRuns int) {
	t.Helper()
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		for _, f := range wantFields {
			if _, ok := raw[f]; !ok {
				t.Errorf("line %s lacks %q", sc.Text(), f)
			}
		}
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Runs < minRuns || r.GBPerS <= 0 || r.P50us <= 0 || r.P99us < r.P50us {
			t.Errorf("implausible line %s", sc.Text())
		}
		if r.Transport == "tcp" && r.RatioTCP != 1 {
			t.Errorf("tcp row ratio %v, want 1", r.RatioTCP)
		}
		k := fmt.Sprint(r.Transport, r.Op, r.Bytes)
		if seen[k] {
			t.Errorf("duplicate cell %s", k)
		}
		seen[k] = true
	}
	for _, tr := range transports {
		for _, op := range ops {
			for _, s := range sizes {
				if !seen[fmt.Sprint(tr, op, s)] {
					t.Errorf("no line for %s %s %d", tr, op, s)
				}
			}
		}
	}
	if len(seen) != len(transports)*len(ops)*len(sizes) {
		t.Errorf("%d lines, want %d", len(seen), len(transports)*len(ops)*len(sizes))
	}
}

func TestRunWritesJSONLines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "out.json")
	plotPath := filepath.Join(dir, "out.png")
	var stdout, stderr bytes.Buffer
	args := []string{"--sizes", "4KiB,16KiB", "--transports", "tcp,grpc-echo,grpc,inproc", "--warmup", "1",
		"--min-runs", "3", "--max-runs", "3", "--min-time", "0s", "--json", jsonPath, "--plot", plotPath, "--quiet"}
	if code := mainArgs(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, data, []string{"tcp", "grpc-echo", "grpc", "inproc"}, []string{"push", "pull", "pushpull"}, []int{4096, 16384}, 3)
	if !strings.Contains(stdout.String(), "× tcp") || !strings.Contains(stdout.String(), "grpc-echo") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
	if st, err := os.Stat(plotPath); err != nil || st.Size() == 0 {
		t.Errorf("plot not written: %v", err)
	}
}

func TestRunChildServersWithCompression(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	cfg := config{
		Sizes: []int{8192}, Transports: []string{"tcp", "grpc-echo", "grpc"}, Ops: []string{"push", "pull"},
		Warmup: 1, MinRuns: 2, MaxRuns: 2, OpTimeout: 30 * time.Second,
		Compress: "zstd", Child: true, Self: self,
	}
	rs, err := run(ctx, cfg, &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, buf.Bytes(), cfg.Transports, cfg.Ops, cfg.Sizes, 2)
	for _, r := range rs {
		if r.Server != "child" || r.Compress != "zstd" {
			t.Errorf("%s %s: server %q compress %q, want child and zstd", r.Transport, r.Op, r.Server, r.Compress)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--sizes", "3"},
		{"--sizes", "4Kx"},
		{"--transports", "carrier-pigeon"},
		{"--transports", "rdma-shm"}, // absent without -tags rdma; present with it, so only checked below
		{"--ops", "poke"},
		{"--compress", "lz4"},
		{"--min-runs", "0"},
		{"extra"},
	} {
		if len(args) > 1 && args[1] == "rdma-shm" {
			if _, ok := findBackend("rdma-shm"); ok {
				continue
			}
		}
		var out, errb bytes.Buffer
		if code := mainArgs(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4KiB": 4096, "256KiB": 256 << 10, "4MiB": 4 << 20, "64MiB": 64 << 20, "1GiB": 1 << 30, "100": 100, "8k": 8192} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-4", "2GiB", "1.5MiB", "4 KiB x"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
