package tfconfig

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strconv"
	"testing"
)

func TestApplyFlagsCommandLineWins(t *testing.T) {
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	workers := fs.Int("workers", 1, "")
	rank := fs.Int("rank", 0, "")
	join := fs.String("join", "", "")
	if err := fs.Parse([]string{"--rank", "3"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(tfjob("worker", 1)))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cfg.Rank()
	applied, err := ApplyFlags(fs, map[string]string{
		"workers": strconv.Itoa(cfg.Workers()),
		"rank":    strconv.Itoa(r),
		"join":    cfg.PSSeeds()[0],
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(applied, []string{"join", "workers"}) {
		t.Errorf("applied %v", applied)
	}
	if *workers != 4 || *rank != 3 || *join != "mnist-ps-0.kubeflow.svc:2222" {
		t.Errorf("workers %d rank %d join %q", *workers, *rank, *join)
	}
	if _, err := ApplyFlags(fs, map[string]string{"nope": "1"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown flag: %v", err)
	}
	// fs.Set marks a flag as set: a second ApplyFlags leaves it alone.
	if applied, err := ApplyFlags(fs, map[string]string{"workers": "9"}); err != nil || len(applied) != 0 || *workers != 4 {
		t.Errorf("second apply: %v %v %d", applied, err, *workers)
	}
	fresh := flag.NewFlagSet("x", flag.ContinueOnError)
	fresh.Int("workers", 1, "")
	if _, err := ApplyFlags(fresh, map[string]string{"workers": "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad value: %v", err)
	}
}
