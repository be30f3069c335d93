package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestLoadBrief runs the load test for two seconds with 8 clients against
// in-process servers over gRPC on 127.0.0.1 and asserts zero errors, that
// both operations ran, and that the report is filled in.
func TestLoadBrief(t *testing.T) {
	cfg := defaultConfig()
	cfg.Clients, cfg.Duration, cfg.Mode = 8, 2*time.Second, "inprocess"
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.print(&b)
	t.Log(b.String())
	if rep.Errors != 0 {
		t.Fatalf("%d errors: %v", rep.Errors, rep.ErrorLog)
	}
	if rep.Pushes == 0 || rep.Pulls == 0 || rep.OpsPerS <= 0 {
		t.Fatalf("no operations: %+v", rep)
	}
	if rep.PushP99 < rep.PushP50 || rep.PullP99 < rep.PullP50 || rep.AllP99 <= 0 {
		t.Errorf("latencies out of order: %+v", rep)
	}
	if len(rep.ServerPeakRSS) != 1 || rep.ServerPeakRSS[0] < 10 {
		t.Errorf("peak RSS %v MiB", rep.ServerPeakRSS)
	}
}

// TestLoadProcesses runs it briefly against real psd processes (built from
// this module), as `go run ./benchmarks/load` does.
func TestLoadProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts psd processes")
	}
	cfg := defaultConfig()
	cfg.Clients, cfg.Duration = 4, 2*time.Second
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Pushes == 0 {
		t.Fatalf("%d errors, %d pushes: %v", rep.Errors, rep.Pushes, rep.ErrorLog)
	}
	if len(rep.ServerPeakRSS) != cfg.Servers {
		t.Errorf("peak RSS of %d servers, want %d", len(rep.ServerPeakRSS), cfg.Servers)
	}
}

func TestHistQuantiles(t *testing.T) {
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.011 || d > 0.011 {
			t.Errorf("q%v = %v, want %v ±1%%", tc.q, got, tc.want)
		}
	}
	if newHist().quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"--clients", "0"}, {"--duration", "0s"}, {"--mode", "x"}, {"--sparse-rows", "0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	c, err := parseFlags([]string{"--clients", "32", "--duration", "60s"}, io.Discard)
	if err != nil || c.Clients != 32 || c.Duration != time.Minute {
		t.Errorf("%+v, %v", c, err)
	}
}
