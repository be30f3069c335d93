package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The PyTorch baseline runs where torch is installed and produces a result
// the table can use; elsewhere it is skipped with the reason.
func TestPyTorchBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("trains an epoch with PyTorch")
	}
	ctx := context.Background()
	cfg := &config{Model: "logreg", Data: "mnist", Mode: "sync", Batch: 128, Epochs: 1, Timeout: 5 * time.Minute}
	res, err := runPyTorch(ctx, cfg, t.TempDir())
	if errors.Is(err, errSkip) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Trainers[0]
	// PyTorch's logistic regression reaches 0.90 after one epoch (0.901
	// measured in the issue); a broken script or data would not.
	if tr.Steps != 468 || tr.TestAccuracy < 0.89 || tr.ExamplesPerSec <= 0 || res.CPUSeconds <= 0 {
		t.Errorf("pytorch result %+v, cpu %.2f s: want 468 steps, accuracy ≥ 0.89", tr, res.CPUSeconds)
	}
	cfg.Model = "cnn"
	if _, err := runPyTorch(ctx, cfg, t.TempDir()); !errors.Is(err, errSkip) {
		t.Errorf("cnn: err = %v, want a skip naming the model", err)
	}
}
