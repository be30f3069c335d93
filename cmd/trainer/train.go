package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/formats/tfevents"
	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/runtime/blas"
)

// result is the final metrics line. Times are seconds of wall clock.
type result struct {
	Model     string  `json:"model"`
	Data      string  `json:"data"`
	Mode      string  `json:"mode"`
	Optimizer string  `json:"optimizer"`
	LR        float64 `json:"lr"`
	Workers   int     `json:"workers"`
	Rank      int     `json:"rank"`
	Batch     int     `json:"batch"`
	Params    int     `json:"params"`
	Epochs    int     `json:"epochs"`
	Steps     int64   `json:"steps"`
	Examples  int64   `json:"examples"`
	// TrainLoss is the mean training loss over the last epoch's steps.
	TrainLoss float64 `json:"train_loss"`
	// TestAccuracy and TestLoss are measured on the whole test set after
	// the last epoch; EpochTestAccuracy after each epoch.
	TestAccuracy      float64   `json:"test_accuracy"`
	TestLoss          float64   `json:"test_loss"`
	EpochTestAccuracy []float64 `json:"epoch_test_accuracy"`
	// ExamplesPerSec is this worker's training throughput: examples over
	// TrainSeconds (data loading and evaluation excluded).
	ExamplesPerSec float64 `json:"examples_per_sec"`
	// TotalExamplesPerSec sums every worker's throughput when --local runs
	// several workers in this process.
	TotalExamplesPerSec float64 `json:"total_examples_per_sec,omitempty"`
	// TrainSeconds = ComputeSeconds + PullSeconds + WaitSeconds: the time of
	// the training steps. Each step starts by pulling its weights;
	// WaitSeconds is the part of those pulls the parameter servers spent
	// holding them at the sync barrier or the SSP bound, as the servers
	// report it (ps.PullResponse.Waited, the longest of a step's servers;
	// a transport that does not carry it reports 0, and the wait then
	// counts as pull time); PullSeconds is the rest of the time inside the
	// steps' pulls (requests, copies, transfer); ComputeSeconds the rest
	// (forward, backward and the pushes that did not overlap them).
	// PushSeconds is the time inside push calls, which overlap backprop,
	// so it is not part of the sum.
	TrainSeconds   float64 `json:"train_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	PullSeconds    float64 `json:"pull_seconds"`
	PushSeconds    float64 `json:"push_seconds"`
	WaitSeconds    float64 `json:"wait_seconds"`
	DataSeconds    float64 `json:"data_seconds"`
	EvalSeconds    float64 `json:"eval_seconds"`
	LoadSeconds    float64 `json:"load_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	// TrainAccuracy is the mean batch accuracy over the last epoch's steps
	// (each measured before that step's update).
	TrainAccuracy float64 `json:"train_accuracy"`
	// BytesPushed and BytesPulled count this worker's payload bytes to and
	// from the parameter servers (float32 values and sparse row ids; no
	// framing), evaluation and sync waits included.
	BytesPushed int64 `json:"bytes_pushed"`
	BytesPulled int64 `json:"bytes_pulled"`
	// Kernels names the matrix-multiply backend (runtime/blas.Backend):
	// "openblas+native(auto)" when each product shape went to the kernel
	// measured faster on it; FLOWPS_SGEMM fixes one.
	Kernels string `json:"kernels"`
	// Threads is GOMAXPROCS during the run (--threads).
	Threads int `json:"threads"`
	// DataPaths says, per psd gRPC address (--join), how pulls and pushes
	// travelled at the end: "unix" or "tcp" (the psd's data path) or
	// "grpc"; when RDMA carried them it is the gRPC side's state.
	DataPaths map[string]string `json:"data_paths,omitempty"`
	// EventFile is the TensorBoard event file written with --logdir.
	EventFile string `json:"event_file,omitempty"`
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// train runs the job cfg describes: it loads the data, connects to the
// parameter servers (in-process with --local) and trains every worker this
// process runs, returning the metrics of rank cfg.Rank.
func train(ctx context.Context, cfg *config, progress io.Writer, logger *slog.Logger) (*result, error) {
	start := time.Now()
	trainSet, testSet, err := loadData(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("loading --data %s: %w", cfg.Data, err)
	}
	loadDur := time.Since(start)
	logger.Debug("data loaded", "train", trainSet.N(), "test", testSet.N(), "shape", trainSet.Shape, "seconds", loadDur.Seconds())
	if cfg.TFConfig != nil {
		fmt.Fprintf(progress, "TF_CONFIG: task %s is rank %d of %d workers; flags taken from it: %v\n",
			cfg.TFConfig.ID(), cfg.Rank, cfg.Workers, cfg.TFApplied)
	}

	ranks := []int{cfg.Rank}
	if cfg.Local {
		ranks = ranks[:0]
		for r := range cfg.Workers {
			ranks = append(ranks, r)
		}
	}
	conn, err := connect(ctx, cfg, progress, logger)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	var (
		logf   io.Writer
		events *tfevents.Writer
	)
	if cfg.Logdir != "" {
		if err := os.MkdirAll(cfg.Logdir, 0o755); err != nil {
			return nil, fmt.Errorf("--logdir: %w", err)
		}
		f, err := os.Create(filepath.Join(cfg.Logdir, fmt.Sprintf("trainer-%d.jsonl", cfg.Rank)))
		if err != nil {
			return nil, fmt.Errorf("--logdir: %w", err)
		}
		defer f.Close()
		logf = f
		events, err = tfevents.NewWriter(cfg.Logdir, tfevents.WriterOptions{
			Suffix: fmt.Sprintf(".rank-%d", cfg.Rank), Logger: logger.With("component", "tfevents"),
		})
		if err != nil {
			return nil, fmt.Errorf("--logdir: %w", err)
		}
		defer events.Close() // a no-op after the Close below
	}

	results := make([]*result, len(ranks))
	errs := make([]error, len(ranks))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := make([]*worker, len(ranks))
	for i, r := range ranks {
		w, err := newWorker(ctx, cfg, r, conn, trainSet, testSet, logger)
		if err != nil {
			return nil, err
		}
		w.lead = r == cfg.Rank
		if w.lead {
			w.progress, w.logf, w.events = progress, logf, events
		}
		workers[i] = w
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = w.run(ctx)
			if errs[i] != nil {
				cancel() // one failed worker stops the others' waits
			}
		}()
	}
	wg.Wait()
	if err := firstError(ranks, errs); err != nil {
		return nil, err
	}
	var res *result
	total := 0.0
	for i, r := range ranks {
		total += results[i].ExamplesPerSec
		if r == cfg.Rank {
			res = results[i]
		}
	}
	if len(ranks) > 1 {
		res.TotalExamplesPerSec = total
	}
	res.LoadSeconds = loadDur.Seconds()
	res.TotalSeconds = time.Since(start).Seconds()
	if conn.dataPaths != nil {
		res.DataPaths = map[string]string{}
		for _, dp := range conn.dataPaths() {
			res.DataPaths[dp.Addr] = dp.Via
			fmt.Fprintf(progress, "pulls and pushes to %s: %s %s\n", dp.Addr, dp.Via, dp.Target)
		}
	}
	if events != nil {
		res.EventFile = events.Path()
		if err := events.Close(); err != nil {
			return nil, fmt.Errorf("--logdir: event file: %w", err)
		}
	}
	if logf != nil {
		if err := writeJSONLine(logf, map[string]any{"final": res}); err != nil {
			return nil, fmt.Errorf("--logdir: %w", err)
		}
	}
	return res, nil
}

// firstError returns the first worker error that is not merely the
// cancellation another worker's failure caused.
func firstError(ranks []int, errs []error) error {
	var first error
	for i, err := range errs {
		if err == nil {
			continue
		}
		err = fmt.Errorf("worker %d: %w", ranks[i], err)
		if !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// worker trains one rank.
type worker struct {
	cfg         *config
	rank        int
	model       *models.Model
	store       *psStore
	runner      stepRunner
	train, test *data.Dataset
	sampler     *data.Sampler
	logger      *slog.Logger

	evalPull int64            // pull nanoseconds spent in evaluation
	evalWait int64            // of which the servers held them waiting
	lead     bool             // reports progress and evaluates
	progress io.Writer        // progress lines; nil: none
	logf     io.Writer        // per-epoch JSON lines; nil: none
	events   *tfevents.Writer // TensorBoard scalars; nil: none
}

func newWorker(ctx context.Context, cfg *config, rank int, conn *cluster, train, test *data.Dataset, logger *slog.Logger) (*worker, error) {
	m, err := models.Build(cfg.Model, models.Config{
		InputShape: train.Shape, Classes: train.Classes, Seed: cfg.Seed, Init: models.InitScheme(cfg.Init),
	})
	if err != nil {
		return nil, err
	}
	client, err := conn.client(rank)
	if err != nil {
		return nil, err
	}
	store := &psStore{client: client, opt: cfg.optimizerSpec(), cons: cfg.consistency()}
	sampler, err := data.NewSampler(train.N(), cfg.Batch, rank, cfg.Workers, uint64(cfg.Seed))
	if err != nil {
		return nil, err
	}
	runner, err := newSessionRunner(ctx, m, store)
	if err != nil {
		return nil, err
	}
	if base, err := store.resume(ctx, m.Graph.Variables()); err != nil {
		return nil, err
	} else if base > 0 {
		logger.Warn("the servers already hold this model's variables: resuming from their version", "version", base, "rank", rank)
	}
	return &worker{cfg: cfg, rank: rank, model: m, store: store, runner: runner, train: train, test: test,
		sampler: sampler, logger: logger.With("rank", rank)}, nil
}

func (w *worker) run(ctx context.Context) (*result, error) {
	cfg := w.cfg
	res := &result{
		Model: cfg.Model, Data: cfg.Data, Mode: cfg.Mode, Optimizer: cfg.Optimizer, LR: cfg.LR,
		Workers: cfg.Workers, Rank: w.rank, Batch: cfg.Batch, Params: w.model.NumParams(), Epochs: cfg.Epochs,
	}
	steps := w.sampler.StepsPerEpoch()
	totalSteps := int64(steps * cfg.Epochs)
	var (
		x                 []float32
		y                 []int32
		step              int64
		trainDur, dataDur time.Duration
		evalDur           time.Duration
		pull0             = w.store.pullNanos.Load()
		wait0             = w.store.waitNanos.Load()
		lastPrint         = time.Now()
		every             = time.Duration(cfg.ProgressEvery * float64(time.Second))
		began             = time.Now()
	)
	var tickLoss float64 // loss summed since the last progress tick
	var tickSteps int
	for epoch := range cfg.Epochs {
		var lossSum, accSum float64
		for t, idx := range w.sampler.Epoch(epoch) {
			t0 := time.Now()
			x, y = w.train.Gather(idx, x, y)
			t1 := time.Now()
			dataDur += t1.Sub(t0)
			loss, acc, err := w.runner.train(ctx, step, x, y)
			if err != nil {
				return nil, fmt.Errorf("epoch %d step %d: %w", epoch+1, step, err)
			}
			trainDur += time.Since(t1)
			if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
				return nil, fmt.Errorf("epoch %d step %d: training diverged (loss %v); lower --lr", epoch+1, step, loss)
			}
			lossSum += float64(loss)
			accSum += float64(acc)
			tickLoss += float64(loss)
			tickSteps++
			step++
			res.Examples += int64(len(idx))
			if w.lead && (time.Since(lastPrint) >= every || t == steps-1) {
				lastPrint = time.Now()
				rate := float64(res.Examples) / trainDur.Seconds()
				eta := time.Duration(float64(time.Since(began)) / float64(step) * float64(totalSteps-step))
				if w.progress != nil {
					fmt.Fprintf(w.progress, "epoch %d/%d step %d/%d (total %d/%d) loss %.4f (epoch mean %.4f) %.0f examples/s ETA %s\n",
						epoch+1, cfg.Epochs, t+1, steps, step, totalSteps, loss, lossSum/float64(t+1), rate, eta.Round(time.Second))
				}
				if w.events != nil {
					// loss/train is the mean over the steps since the last
					// tick; the bytes are cumulative.
					if err := w.events.Scalars(step, map[string]float32{
						"loss/train":       float32(tickLoss / float64(tickSteps)),
						"examples_per_sec": float32(rate),
						"learning_rate":    float32(cfg.LR),
						"bytes/pushed_mib": float32(float64(w.store.pushedBytes.Load()) / (1 << 20)),
						"bytes/pulled_mib": float32(float64(w.store.pulledBytes.Load()) / (1 << 20)),
					}); err != nil {
						return nil, fmt.Errorf("--logdir: event file: %w", err)
					}
				}
				tickLoss, tickSteps = 0, 0
			}
		}
		res.TrainLoss = lossSum / float64(steps)
		res.TrainAccuracy = accSum / float64(steps)
		if !w.lead {
			continue
		}
		t0 := time.Now()
		acc, tl, err := w.evaluate(ctx, step)
		if err != nil {
			return nil, fmt.Errorf("evaluating after epoch %d: %w", epoch+1, err)
		}
		evalDur += time.Since(t0)
		res.TestAccuracy, res.TestLoss = acc, tl
		res.EpochTestAccuracy = append(res.EpochTestAccuracy, acc)
		if w.progress != nil {
			fmt.Fprintf(w.progress, "epoch %d/%d done: train loss %.4f, test accuracy %.4f, test loss %.4f (%d test examples, %.1fs)\n",
				epoch+1, cfg.Epochs, res.TrainLoss, acc, tl, w.test.N(), time.Since(t0).Seconds())
		}
		if w.logf != nil {
			if err := writeJSONLine(w.logf, map[string]any{
				"epoch": epoch + 1, "step": step, "train_loss": res.TrainLoss, "train_accuracy": res.TrainAccuracy,
				"test_accuracy": acc, "test_loss": tl,
				"examples_per_sec": float64(res.Examples) / trainDur.Seconds(),
				"bytes_pushed":     w.store.pushedBytes.Load(), "bytes_pulled": w.store.pulledBytes.Load(),
			}); err != nil {
				return nil, fmt.Errorf("--logdir: %w", err)
			}
		}
		if w.events != nil {
			if err := w.events.Scalars(step, map[string]float32{
				"accuracy/train": float32(res.TrainAccuracy),
				"loss/test":      float32(tl),
				"accuracy/test":  float32(acc),
			}); err != nil {
				return nil, fmt.Errorf("--logdir: event file: %w", err)
			}
			if err := w.events.Flush(); err != nil {
				return nil, fmt.Errorf("--logdir: event file: %w", err)
			}
		}
	}
	res.Steps = step
	res.TrainSeconds = trainDur.Seconds()
	// Pulls inside training steps only: evaluation's pulls are subtracted.
	wait := time.Duration(w.store.waitNanos.Load() - wait0 - w.evalWait)
	res.WaitSeconds = wait.Seconds()
	res.PullSeconds = (time.Duration(w.store.pullNanos.Load()-pull0-w.evalPull) - wait).Seconds()
	res.PushSeconds = time.Duration(w.store.pushNanos.Load()).Seconds()
	res.ComputeSeconds = max(0, res.TrainSeconds-res.WaitSeconds-res.PullSeconds)
	res.DataSeconds = dataDur.Seconds()
	res.EvalSeconds = evalDur.Seconds()
	res.ExamplesPerSec = float64(res.Examples) / trainDur.Seconds()
	res.BytesPushed = w.store.pushedBytes.Load()
	res.BytesPulled = w.store.pulledBytes.Load()
	res.Kernels = blas.Backend()
	res.Threads = goruntime.GOMAXPROCS(0)
	if w.lead {
		for _, c := range blas.Choices() {
			w.logger.Debug("sgemm shape", "choice", c.String())
		}
	}
	return res, nil
}

// evaluate runs the model over the whole test set in batches of
// --eval-batch and returns accuracy and mean loss.
func (w *worker) evaluate(ctx context.Context, step int64) (acc, loss float64, err error) {
	p0, w0 := w.store.pullNanos.Load(), w.store.waitNanos.Load()
	defer func() {
		w.evalPull += w.store.pullNanos.Load() - p0
		w.evalWait += w.store.waitNanos.Load() - w0
	}()
	var (
		x       []float32
		y       []int32
		correct float64
		lossSum float64
	)
	n := w.test.N()
	idx := make([]int, 0, w.cfg.EvalBatch)
	for lo := 0; lo < n; lo += w.cfg.EvalBatch {
		idx = idx[:0]
		for i := lo; i < min(n, lo+w.cfg.EvalBatch); i++ {
			idx = append(idx, i)
		}
		x, y = w.test.Gather(idx, x, y)
		a, l, err := w.runner.eval(ctx, step, x, y)
		if err != nil {
			return 0, 0, err
		}
		correct += math.Round(float64(a) * float64(len(idx))) // a is a float32 mean of 0/1
		lossSum += float64(l) * float64(len(idx))
	}
	return correct / float64(n), lossSum / float64(n), nil
}
