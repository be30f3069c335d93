package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/ps"
)

// config is everything a run needs, from the flags.
type config struct {
	Join      string  // gossip HOST:PORT of a cluster member
	Local     bool    // in-process parameter server
	Model     string  // logreg | mlp | cnn
	Data      string  // mnist | synthetic | DIR
	Epochs    int     // passes over this worker's share of the data
	Batch     int     // examples per step per worker
	Optimizer string  // sgd | momentum | adagrad | adam | ftrl
	LR        float64 // learning rate
	Mode      string  // async | sync | ssp
	Staleness int     // SSP bound in clocks
	Workers   int     // workers taking part
	Rank      int     // this worker's rank
	Seed      int64   // initialisation and shuffling seed
	Logdir    string  // where to write per-epoch metrics (JSON lines); empty: none
	Gossip    string  // HOST:PORT this trainer's gossip binds to (cluster mode)
	Verbose   bool    // debug logs on stderr
	Init      string  // glorot | torch
	Transport string  // grpc
	Compress  string  // none | s2 | zstd
	// Security holds the mutual-TLS identity and gossip key (--join).
	Security *securityFlags
	// JoinTimeout bounds joining the cluster and waiting for a psd.
	JoinTimeout time.Duration
	// EvalBatch is the batch size used to evaluate on the test set.
	EvalBatch int
	// ProgressEvery is how often progress is printed, in seconds.
	ProgressEvery float64
}

// errUsage marks errors in the flags; main exits 2 for them.
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Join, "join", "", "gossip `HOST:PORT` of any cluster member (psd) to join")
	fs.BoolVar(&c.Local, "local", false, "train against an in-process parameter server (no cluster)")
	fs.StringVar(&c.Model, "model", "mlp", "model: "+strings.Join(models.Names(), "|"))
	fs.StringVar(&c.Data, "data", "mnist", "data: mnist (module cache or $FLOWPS_MNIST_DIR), synthetic (Gaussian clusters), or a `DIR` holding the MNIST IDX files")
	fs.IntVar(&c.Epochs, "epochs", 3, "epochs (passes over this worker's share of the training set)")
	fs.IntVar(&c.Batch, "batch", 128, "examples per step per worker")
	fs.StringVar(&c.Optimizer, "optimizer", "sgd", "server-side optimizer: sgd|momentum|adagrad|adam|ftrl")
	fs.Float64Var(&c.LR, "lr", 0.1, "learning rate")
	fs.StringVar(&c.Mode, "mode", "async", "consistency: async|sync|ssp")
	fs.IntVar(&c.Staleness, "staleness", 2, "SSP staleness bound in steps (--mode ssp)")
	fs.IntVar(&c.Workers, "workers", 1, "number of workers in the job")
	fs.IntVar(&c.Rank, "rank", 0, "this worker's rank, 0 ≤ rank < workers")
	fs.Int64Var(&c.Seed, "seed", 1, "seed for initialisation and shuffling (same on every worker)")
	fs.StringVar(&c.Logdir, "logdir", "", "directory for per-epoch metrics as JSON lines (trainer-RANK.jsonl); empty: none")
	fs.StringVar(&c.Gossip, "gossip", "127.0.0.1:0", "gossip `HOST:PORT` this trainer listens on with --join (port 0: any free port)")
	fs.IntVar(&c.EvalBatch, "eval-batch", 1000, "batch size for test-set evaluation")
	fs.Float64Var(&c.ProgressEvery, "progress", 2, "seconds between progress lines on stderr")
	fs.StringVar(&c.Init, "init", "torch", "weight initialisation: torch (U(±1/√fan_in) weights and biases, PyTorch's default) or glorot (Glorot-uniform weights, zero biases)")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", 10*time.Second, "how long --join may take to reach the cluster and see a psd")
	fs.StringVar(&c.Transport, "transport", "grpc", "transport to the parameter servers with --join: grpc (the trainer does not select RDMA yet)")
	fs.StringVar(&c.Compress, "compress", "none", "wire compression with --join: none, s2 or zstd")
	fs.BoolVar(&c.Verbose, "v", false, "debug logs on stderr")
	c.Security = addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := c.Security.resolve(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.Local && (c.Security.TLS != nil || c.Security.GossipKey != nil) {
		return nil, fmt.Errorf("%w: --tls-* and --gossip-key apply to --join only: --local has no wire", errUsage)
	}
	return c, nil
}

func (c *config) validate() error {
	if c.Local == (c.Join != "") {
		return errors.New("give exactly one of --local and --join HOST:PORT")
	}
	if c.Join != "" {
		if _, _, err := net.SplitHostPort(c.Join); err != nil {
			return fmt.Errorf("--join %q: %v", c.Join, err)
		}
	}
	if c.Transport != "grpc" {
		return fmt.Errorf("--transport %q: this trainer supports only grpc (RDMA selection is not wired into the trainer yet)", c.Transport)
	}
	switch c.Compress {
	case "none", "s2", "zstd":
	default:
		return fmt.Errorf("unknown --compress %q (want none, s2 or zstd)", c.Compress)
	}
	if c.Local && c.Compress != "none" {
		return errors.New("--compress applies to --join only: --local has no wire")
	}
	if c.Init != string(models.InitTorch) && c.Init != string(models.InitGlorot) {
		return fmt.Errorf("unknown --init %q (want torch or glorot)", c.Init)
	}
	if !models.Known(c.Model) {
		return fmt.Errorf("unknown --model %q (want %s)", c.Model, strings.Join(models.Names(), ", "))
	}
	switch ps.OptimizerKind(c.Optimizer) {
	case ps.OptSGD, ps.OptMomentum, ps.OptAdagrad, ps.OptAdam, ps.OptFTRL:
	default:
		return fmt.Errorf("unknown --optimizer %q (want sgd, momentum, adagrad, adam or ftrl)", c.Optimizer)
	}
	switch ps.Mode(c.Mode) {
	case ps.Async, ps.Sync, ps.SSP:
	default:
		return fmt.Errorf("unknown --mode %q (want async, sync or ssp)", c.Mode)
	}
	switch {
	case c.Epochs < 1:
		return fmt.Errorf("--epochs %d: want ≥ 1", c.Epochs)
	case c.Batch < 1:
		return fmt.Errorf("--batch %d: want ≥ 1", c.Batch)
	case !(c.LR > 0) || c.LR > 1e6:
		return fmt.Errorf("--lr %v: want a positive number", c.LR)
	case c.Workers < 1:
		return fmt.Errorf("--workers %d: want ≥ 1", c.Workers)
	case c.Rank < 0 || c.Rank >= c.Workers:
		return fmt.Errorf("--rank %d: want 0 ≤ rank < --workers %d", c.Rank, c.Workers)
	case c.Staleness < 0:
		return fmt.Errorf("--staleness %d: want ≥ 0", c.Staleness)
	case c.JoinTimeout <= 0:
		return fmt.Errorf("--join-timeout %v: want > 0", c.JoinTimeout)
	case c.EvalBatch < 1:
		return fmt.Errorf("--eval-batch %d: want ≥ 1", c.EvalBatch)
	case !(c.ProgressEvery > 0):
		return fmt.Errorf("--progress %v: want > 0 seconds", c.ProgressEvery)
	}
	if c.Local && c.Workers > 1 && c.Rank != 0 {
		return errors.New("--local runs every worker in this process; leave --rank at 0")
	}
	return nil
}

// optimizerSpec and consistency build the ps variables' contract.
func (c *config) optimizerSpec() ps.OptimizerSpec {
	return ps.OptimizerSpec{Kind: ps.OptimizerKind(c.Optimizer), LR: float32(c.LR)}.WithDefaults()
}

func (c *config) consistency() ps.Consistency {
	cons := ps.Consistency{Mode: ps.Mode(c.Mode)}
	if cons.Mode != ps.Async {
		cons.Workers = c.Workers
	}
	if cons.Mode == ps.SSP {
		cons.Staleness = c.Staleness
	}
	return cons
}
