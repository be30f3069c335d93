package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

// A trainer's stdout: progress lines go to stderr, but anything printed
// before the final metrics line must be skipped.
const trainerOut = `joined the cluster at 127.0.0.1:1234: 1 parameter servers
{"not":"metrics"}
{"model":"mlp","mode":"sync","workers":2,"rank":1,"batch":128,"steps":234,"examples":29952,"test_accuracy":0.9,"examples_per_sec":6000,"train_seconds":4.992,"compute_seconds":2.5,"pull_seconds":1.5,"push_seconds":3,"wait_seconds":0.992,"total_seconds":7}
`

func TestParseResult(t *testing.T) {
	r, err := parseResult([]byte(trainerOut))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rank != 1 || r.Steps != 234 || r.Examples != 29952 || r.ExamplesPerSec != 6000 || r.PullSeconds != 1.5 || r.WaitSeconds != 0.992 {
		t.Fatalf("parsed %+v", r)
	}
	for _, bad := range []string{
		"",
		"trainer: cannot join\n",
		`{"examples_per_sec":100}` + "\n", // no steps or train time: not a final line
		`{"examples_per_sec":-1,"train_seconds":1,"steps":3}` + "\n",
	} {
		if _, err := parseResult([]byte(bad)); err == nil {
			t.Errorf("parseResult(%q) accepted", bad)
		} else if bad == "" && !errors.Is(err, errNoResult) {
			t.Errorf("parseResult(empty) = %v, want errNoResult", err)
		}
	}
}

func TestBuildRows(t *testing.T) {
	tr := func(rank int, eps, train, compute, pull, push, wait float64, examples int64) trainerResult {
		return trainerResult{Rank: rank, Batch: 128, Steps: examples / 128, Examples: examples, ExamplesPerSec: eps,
			TrainSeconds: train, ComputeSeconds: compute, PullSeconds: pull, PushSeconds: push, WaitSeconds: wait, TestAccuracy: 0.9}
	}
	setups := []setupResult{
		{Name: "local", Trainers: []trainerResult{tr(0, 40000, 1.5, 1.2, 0.3, 0.3, 0, 60000)}, CPUSeconds: 2},
		{Name: "1ps-1tr", PS: 1, Trainers: []trainerResult{tr(0, 20000, 3, 2, 0.6, 2, 0.4, 60000)}, CPUSeconds: 5},
		{Name: "2ps-2tr", PS: 2, Trainers: []trainerResult{
			tr(0, 10000, 3, 1.5, 0.9, 1, 0.6, 30000), tr(1, 14000, 1, 0.5, 0.3, 0.2, 0.2, 30000)}, CPUSeconds: 6},
	}
	rows, err := buildRows(setups)
	if err != nil {
		t.Fatal(err)
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	near("local ratio", rows[0].Ratio, 1)
	near("1ps ratio", rows[1].Ratio, 0.5)
	near("2ps aggregate", rows[2].Aggregate, 24000)
	near("2ps per trainer", rows[2].PerTrainer, 12000)
	near("2ps ratio", rows[2].Ratio, 0.6)
	near("local ex/CPU-s", rows[0].ExamplesPerCPU, 30000)
	near("2ps ex/CPU-s", rows[2].ExamplesPerCPU, 10000)
	near("2ps CPU ratio", rows[2].CPURatio, 1.0/3)
	// Percentages weigh each trainer by its train time: (1.5+0.5)/(3+1).
	near("2ps compute%", rows[2].ComputePct, 50)
	near("2ps pull%", rows[2].PullPct, 30)
	near("2ps wait%", rows[2].WaitPct, 20)
	near("2ps push%", rows[2].PushPct, 30)
	if rows[2].Trainers != 2 || rows[2].Steps != 234 || rows[2].TrainSecondsMax != 3 {
		t.Errorf("2ps row %+v", rows[2])
	}

	var buf bytes.Buffer
	if err := writeTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"setup", "local", "1ps-1tr", "2ps-2tr"} {
		if f := strings.Fields(lines[i]); len(f) == 0 || f[0] != want {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
	if f := strings.Fields(lines[3]); f[6] != "24000" || f[7] != "0.60" {
		t.Errorf("2ps-2tr line %q: want aggregate 24000 and ratio 0.60", lines[3])
	}

	// Without a local setup the ratios are 0, not a division by zero.
	rows, err = buildRows(setups[1:])
	if err != nil || rows[0].Ratio != 0 || rows[0].CPURatio != 0 {
		t.Fatalf("rows without local: %+v, %v", rows, err)
	}
	if _, err := buildRows([]setupResult{{Name: "local"}}); err == nil {
		t.Fatal("a setup without trainer results was accepted")
	}
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"--setups", "local,2ps-2tr,local", "--batch", "64"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Setups, ",") != "local,2ps-2tr" || c.Batch != 64 || c.Model != "mlp" || c.Mode != "sync" || c.Replicas != 1 {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range [][]string{{"--setups", "4ps"}, {"--batch", "0"}, {"--mode", "eventual"}, {"extra"}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("flags %q accepted", bad)
		}
	}
}

// TestLauncherStopsChildren: a child still running when the launcher
// closes is stopped, and its CPU time and log are readable.
func TestLauncherStopsChildren(t *testing.T) {
	l := &launcher{dir: t.TempDir()}
	p, err := l.start("sleeper", "/bin/sh", []string{"-c", "echo started; exec sleep 60"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(context.Background(), 5e9, func() error {
		if !strings.Contains(p.logTail(5), "started") {
			return errors.New("no output yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l.close()
	if p.running() {
		t.Fatal("child still running after close")
	}
	if p.cpuSeconds() < 0 {
		t.Fatal("negative CPU time")
	}
}
