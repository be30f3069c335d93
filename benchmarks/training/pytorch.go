package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flowps/flowps/data"
)

// torchScript trains the same model with PyTorch; see its docstring.
//
//go:embed torch_baseline.py
var torchScript []byte

// pythonEnv names the interpreter the pytorch setup uses; by default
// /usr/bin/python3 (Debian's python3-torch installs there), else python3
// on $PATH.
const pythonEnv = "FLOWPS_PYTHON"

// errNoTorch means no Python with torch was found; the setup is skipped
// unless it was asked for by name.
var errNoTorch = errors.New("no python3 with torch (Debian: apt-get install python3-torch; or set " + pythonEnv + ")")

// findTorch returns a Python interpreter that can import torch.
func findTorch(ctx context.Context) (string, error) {
	var candidates []string
	if p := os.Getenv(pythonEnv); p != "" {
		candidates = []string{p}
	} else {
		candidates = []string{"/usr/bin/python3"}
		if p, err := exec.LookPath("python3"); err == nil {
			candidates = append(candidates, p)
		}
	}
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := exec.CommandContext(ctx, py, "-c", "import torch").Run()
		cancel()
		if err == nil {
			return py, nil
		}
	}
	return "", errNoTorch
}

// runPyTorch is the pytorch setup: the same model, batch, epochs and
// learning rate as trainer --local, trained by PyTorch on one thread
// (torch.set_num_threads(1) and OPENBLAS_NUM_THREADS=1: with only the
// former, Debian's OpenBLAS still runs two threads per product).
func runPyTorch(ctx context.Context, cfg *config, logs string) (setupResult, error) {
	res := setupResult{Name: "pytorch"}
	if cfg.Model != "mlp" && cfg.Model != "logreg" {
		return res, fmt.Errorf("%w: the PyTorch baseline has the mlp and logreg models only, not %q", errSkip, cfg.Model)
	}
	if cfg.Mode != "sync" && cfg.Mode != "async" {
		return res, fmt.Errorf("%w: --mode %s has no PyTorch equivalent", errSkip, cfg.Mode)
	}
	py, err := findTorch(ctx)
	if err != nil {
		return res, fmt.Errorf("%w: %w", errSkip, err)
	}
	dir, err := data.ResolveDir(ctx, cfg.Data)
	if err != nil {
		return res, fmt.Errorf("%w: the PyTorch baseline reads MNIST IDX files: %w", errSkip, err)
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return res, err
	}
	script := filepath.Join(logs, "torch_baseline.py")
	if err := os.WriteFile(script, torchScript, 0o644); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l := &launcher{dir: logs}
	defer l.close()
	args := []string{script, "--data", dir, "--model", cfg.Model, "--batch", strconv.Itoa(cfg.Batch),
		"--epochs", strconv.Itoa(cfg.Epochs), "--lr", "0.1", "--threads", "1"}
	env := []string{"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1"}
	start := time.Now()
	p, err := l.startEnv("pytorch", py, args, env, true)
	if err != nil {
		return res, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return res, fmt.Errorf("pytorch: %w", ctx.Err())
	}
	if p.err != nil {
		return res, fmt.Errorf("pytorch failed (%v):\n%s", p.err, p.logTail(20))
	}
	tr, err := parseResult(p.stdout.Bytes())
	if err != nil {
		return res, fmt.Errorf("pytorch: %w; its log:\n%s", err, p.logTail(20))
	}
	res.Trainers = []trainerResult{tr}
	res.CPUSeconds = p.cpuSeconds()
	res.WallSeconds = time.Since(start).Seconds()
	return res, nil
}

// errSkip marks a setup that cannot run here; the benchmark says why and
// goes on unless the setup was asked for by name.
var errSkip = errors.New("skipped")
