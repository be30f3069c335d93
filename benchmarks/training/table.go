package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// trainerResult is the part of cmd/trainer's final JSON line (its type
// result) that the benchmark reads. Times are seconds of wall clock.
type trainerResult struct {
	Model          string  `json:"model"`
	Mode           string  `json:"mode"`
	Workers        int     `json:"workers"`
	Rank           int     `json:"rank"`
	Batch          int     `json:"batch"`
	Steps          int64   `json:"steps"`
	Examples       int64   `json:"examples"`
	TestAccuracy   float64 `json:"test_accuracy"`
	ExamplesPerSec float64 `json:"examples_per_sec"`
	TrainSeconds   float64 `json:"train_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	PullSeconds    float64 `json:"pull_seconds"`
	PushSeconds    float64 `json:"push_seconds"`
	WaitSeconds    float64 `json:"wait_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
}

// errNoResult means a trainer's stdout held no final metrics line.
var errNoResult = errors.New("no metrics line")

// parseResult returns the last line of out that decodes as a trainer
// result with examples_per_sec and train_seconds set. The trainer prints
// exactly one such line on stdout; anything else there is skipped.
func parseResult(out []byte) (trainerResult, error) {
	var last trainerResult
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r trainerResult
		if err := json.Unmarshal(line, &r); err != nil {
			continue
		}
		if r.TrainSeconds > 0 && r.Steps > 0 {
			last, found = r, true
		}
	}
	if err := sc.Err(); err != nil {
		return trainerResult{}, err
	}
	if !found {
		return trainerResult{}, errNoResult
	}
	if r := last; r.ExamplesPerSec <= 0 || r.ComputeSeconds < 0 || r.PullSeconds < 0 || r.WaitSeconds < 0 || r.PushSeconds < 0 {
		return trainerResult{}, fmt.Errorf("metrics line with impossible values: %+v", r)
	}
	return last, nil
}

// setupResult is what one setup measured.
type setupResult struct {
	Name     string          `json:"name"`
	PS       int             `json:"ps"`
	Trainers []trainerResult `json:"trainers"`
	// CPUSeconds is the user+system CPU time of every process of the setup.
	CPUSeconds float64 `json:"cpu_seconds"`
	// WallSeconds is the wall time from the first trainer's start to the
	// last one's end.
	WallSeconds float64 `json:"wall_seconds"`
}

// row is one line of the table, derived from a setupResult.
type row struct {
	Setup           string  `json:"setup"`
	PS              int     `json:"ps"`
	Trainers        int     `json:"trainers"`
	Batch           int     `json:"batch_per_trainer"`
	Steps           int64   `json:"steps_per_trainer"`
	PerTrainer      float64 `json:"examples_per_sec_per_trainer"`
	Aggregate       float64 `json:"examples_per_sec_aggregate"`
	Ratio           float64 `json:"ratio_to_local"`
	ExamplesPerCPU  float64 `json:"examples_per_cpu_second"`
	CPURatio        float64 `json:"cpu_ratio_to_local"`
	ComputePct      float64 `json:"compute_pct"`
	PullPct         float64 `json:"pull_pct"`
	PushPct         float64 `json:"push_pct"`
	WaitPct         float64 `json:"wait_pct"`
	TestAccuracy    float64 `json:"test_accuracy"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	WallSeconds     float64 `json:"wall_seconds"`
	TrainSecondsMax float64 `json:"train_seconds_max"`
}

// buildRows turns setup results into table rows. The first setup named
// "local" is the baseline of the ratio columns (0 when there is none).
func buildRows(setups []setupResult) ([]row, error) {
	rows := make([]row, 0, len(setups))
	for _, s := range setups {
		if len(s.Trainers) == 0 {
			return nil, fmt.Errorf("setup %s: no trainer results", s.Name)
		}
		r := row{Setup: s.Name, PS: s.PS, Trainers: len(s.Trainers), CPUSeconds: s.CPUSeconds, WallSeconds: s.WallSeconds}
		var train, compute, pull, push, wait float64
		var examples int64
		for _, t := range s.Trainers {
			r.Aggregate += t.ExamplesPerSec
			train += t.TrainSeconds
			compute += t.ComputeSeconds
			pull += t.PullSeconds
			push += t.PushSeconds
			wait += t.WaitSeconds
			examples += t.Examples
			r.Steps = max(r.Steps, t.Steps)
			r.Batch = max(r.Batch, t.Batch)
			r.TrainSecondsMax = max(r.TrainSecondsMax, t.TrainSeconds)
			if t.Rank == 0 {
				r.TestAccuracy = t.TestAccuracy
			}
		}
		r.PerTrainer = r.Aggregate / float64(len(s.Trainers))
		if train > 0 {
			r.ComputePct = 100 * compute / train
			r.PullPct = 100 * pull / train
			r.PushPct = 100 * push / train
			r.WaitPct = 100 * wait / train
		}
		if s.CPUSeconds > 0 {
			r.ExamplesPerCPU = float64(examples) / s.CPUSeconds
		}
		rows = append(rows, r)
	}
	for _, base := range rows {
		if base.Setup != "local" {
			continue
		}
		for i := range rows {
			if base.Aggregate > 0 {
				rows[i].Ratio = rows[i].Aggregate / base.Aggregate
			}
			if base.ExamplesPerCPU > 0 {
				rows[i].CPURatio = rows[i].ExamplesPerCPU / base.ExamplesPerCPU
			}
		}
		break
	}
	return rows, nil
}

// writeTable prints rows as an aligned text table.
func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join([]string{"setup", "psd", "trainers", "batch", "steps", "ex/s per trainer",
		"aggregate ex/s", "ratio", "ex/CPU-s", "CPU ratio", "compute%", "pull%", "push%", "wait%", "test acc", ""}, "\t"))
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.2f\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.4f\t\n",
			r.Setup, r.PS, r.Trainers, r.Batch, r.Steps, r.PerTrainer, r.Aggregate, r.Ratio,
			r.ExamplesPerCPU, r.CPURatio, r.ComputePct, r.PullPct, r.PushPct, r.WaitPct, r.TestAccuracy)
	}
	return tw.Flush()
}
