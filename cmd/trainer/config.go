package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/flowps/flowps/formats/example"
	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/tfconfig"
	"github.com/flowps/flowps/transport/rdma"
)

// config is everything a run needs, from the flags.
type config struct {
	Join     string // gossip HOST:PORT of cluster members, comma-separated
	Local    bool   // in-process parameter server
	Model    string // logreg | mlp | cnn
	Data     string // mnist | synthetic | DIR | tfrecord:PATTERN | libsvm:PATH | a detected file
	TestData string // test set in the same syntax; empty: the data's own or a held-out part
	// FeatureKey and LabelKey name the tf.train.Example features of
	// TFRecord data.
	FeatureKey, LabelKey string
	// DataShape is --data-shape as given; shape its parsed value.
	DataShape string
	shape     []int
	// Holdout is the fraction held out for testing when TFRecord or
	// LibSVM data comes without --test-data.
	Holdout   float64
	Epochs    int     // passes over this worker's share of the data
	Batch     int     // examples per step per worker
	Optimizer string  // sgd | momentum | adagrad | adam | ftrl
	LR        float64 // learning rate
	Mode      string  // async | sync | ssp
	Staleness int     // SSP bound in clocks
	Workers   int     // workers taking part
	Threads   int     // GOMAXPROCS for this run (--threads); 0: Go's default
	Rank      int     // this worker's rank
	Seed      int64   // initialisation and shuffling seed
	Logdir    string  // where to write per-epoch metrics (JSON lines); empty: none
	Gossip    string  // HOST:PORT this trainer's gossip binds to (cluster mode)
	Verbose   bool    // debug logs on stderr
	Init      string  // glorot | torch
	Transport string  // auto | grpc | rdma
	// RDMAProvider forces a libfabric provider (--rdma-provider); empty:
	// verbs;ofi_rxm after the device checks.
	RDMAProvider string
	Compress     string // none | s2 | zstd
	GradEncoding string // float32 | bf16 | fp16
	DataPath     string // auto | tcp | off
	// Security holds the mutual-TLS identity and gossip key (--join).
	Security *securityFlags
	// JoinTimeout bounds joining the cluster and waiting for a psd.
	JoinTimeout time.Duration
	// EvalBatch is the batch size used to evaluate on the test set.
	EvalBatch int
	// ProgressEvery is how often progress is printed, in seconds.
	ProgressEvery float64
	// TFConfig is $TF_CONFIG when set; TFApplied the flags it set.
	TFConfig  *tfconfig.Config
	TFApplied []string
}

// joinAddrs returns the --join addresses.
func (c *config) joinAddrs() []string {
	var out []string
	for _, s := range strings.Split(c.Join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// errUsage marks errors in the flags; main exits 2 for them.
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("trainer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Join, "join", "", "gossip `HOST:PORT` of cluster members (psd) to join, comma-separated (TF_CONFIG: its ps tasks)")
	fs.BoolVar(&c.Local, "local", false, "train against an in-process parameter server (no cluster)")
	fs.StringVar(&c.Model, "model", "mlp", "model: "+strings.Join(models.Names(), "|"))
	fs.StringVar(&c.Data, "data", "mnist", "training data: mnist (module cache or $FLOWPS_MNIST_DIR), synthetic (Gaussian clusters), a DIR of MNIST IDX files, "+
		"tfrecord:`PATTERN` (tf.train.Example records: a file, a directory of part-* files or a glob; plain or gzip), libsvm:PATH, or a path whose format is detected")
	fs.StringVar(&c.TestData, "test-data", "", "test data for TFRecord or LibSVM --data, same syntax; empty: MNIST's and synthetic's own test sets, else --holdout of --data")
	fs.StringVar(&c.FeatureKey, "feature-key", example.DefaultImageKey, "TFRecord: the feature holding the inputs (float_list, int64_list or one raw-bytes value)")
	fs.StringVar(&c.LabelKey, "label-key", example.DefaultLabelKey, "TFRecord: the int64 feature holding the class label")
	fs.StringVar(&c.DataShape, "data-shape", "", "shape of one example, comma-separated, e.g. 28,28,1 for --model cnn on TFRecord data; empty: MNIST's 28,28, else flat")
	fs.Float64Var(&c.Holdout, "holdout", 0.2, "fraction of TFRecord or LibSVM --data held out (seeded shuffle) as the test set when --test-data is empty")
	fs.IntVar(&c.Epochs, "epochs", 3, "epochs (passes over this worker's share of the training set)")
	fs.IntVar(&c.Batch, "batch", 128, "examples per step per worker")
	fs.StringVar(&c.Optimizer, "optimizer", "sgd", "server-side optimizer: sgd|momentum|adagrad|adam|ftrl")
	fs.Float64Var(&c.LR, "lr", 0.1, "learning rate")
	fs.StringVar(&c.Mode, "mode", "async", "consistency: async|sync|ssp")
	fs.IntVar(&c.Staleness, "staleness", 2, "SSP staleness bound in steps (--mode ssp)")
	fs.IntVar(&c.Workers, "workers", 1, "number of workers in the job")
	fs.IntVar(&c.Threads, "threads", 0, "OS threads running Go code (GOMAXPROCS): the step's kernels, pushes and pulls; 0: one per CPU (Go's default). 1 runs the trainer on one thread, as PyTorch's torch.set_num_threads(1)")
	fs.IntVar(&c.Rank, "rank", 0, "this worker's rank, 0 ≤ rank < workers")
	fs.Int64Var(&c.Seed, "seed", 1, "seed for initialisation and shuffling (same on every worker)")
	fs.StringVar(&c.Logdir, "logdir", "", "directory for per-epoch metrics as JSON lines (trainer-RANK.jsonl); empty: none")
	fs.StringVar(&c.Gossip, "gossip", "127.0.0.1:0", "gossip `HOST:PORT` this trainer listens on with --join (port 0: any free port)")
	fs.IntVar(&c.EvalBatch, "eval-batch", 1000, "batch size for test-set evaluation")
	fs.Float64Var(&c.ProgressEvery, "progress", 2, "seconds between progress lines on stderr")
	fs.StringVar(&c.Init, "init", "torch", "weight initialisation: torch (U(±1/√fan_in) weights and biases, PyTorch's default) or glorot (Glorot-uniform weights, zero biases)")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", 10*time.Second, "how long --join may take to reach the cluster and see a psd")
	fs.StringVar(&c.Transport, "transport", "auto", "transport to the parameter servers with --join: auto (per psd, RDMA when it advertises a fabric endpoint this machine can reach, else gRPC; logged), grpc, or rdma (RDMA or fail)")
	fs.StringVar(&c.RDMAProvider, "rdma-provider", "", "libfabric provider for RDMA, skipping the device checks: shm (psd on this host), tcp;ofi_rxm or verbs;ofi_rxm; empty: verbs;ofi_rxm after the checks")
	fs.StringVar(&c.Compress, "compress", "none", "wire compression with --join: none, s2 or zstd")
	fs.StringVar(&c.DataPath, "data-path", "auto", "with --join over gRPC: auto pulls and pushes over a psd's data path (a plain connection, TLS with --tls-*, beside gRPC, without HTTP/2 framing) when it offers one: over the psd's Unix socket when this trainer is in its network namespace, else TCP; tcp never uses the Unix socket; off keeps them on gRPC")
	fs.StringVar(&c.GradEncoding, "gradient-encoding", "float32", "how pushed gradients travel over gRPC: float32 (exact), bf16 or fp16 (half the bytes, rounded to nearest even)")
	fs.BoolVar(&c.Verbose, "v", false, "debug logs on stderr")
	c.Security = addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := c.applyTFConfig(fs); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	shape, err := parseShape(c.DataShape)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	c.shape = shape
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
	if c.Threads < 0 {
		return fmt.Errorf("--threads %d: want 0 (one per CPU) or more", c.Threads)
	}
	if c.Local == (c.Join != "") {
		return errors.New("give exactly one of --local and --join HOST:PORT")
	}
	if c.Join != "" {
		addrs := c.joinAddrs()
		if len(addrs) == 0 {
			return fmt.Errorf("--join %q names no address", c.Join)
		}
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("--join %q: %v", a, err)
			}
		}
	}
	if c.FeatureKey == "" || c.LabelKey == "" || c.FeatureKey == c.LabelKey {
		return fmt.Errorf("--feature-key %q and --label-key %q must be two different non-empty names", c.FeatureKey, c.LabelKey)
	}
	if !(c.Holdout > 0 && c.Holdout < 1) {
		return fmt.Errorf("--holdout %v: want a fraction in (0, 1)", c.Holdout)
	}
	switch c.Transport {
	case "auto", "grpc", "rdma":
	default:
		return fmt.Errorf("--transport %q: want auto, grpc or rdma", c.Transport)
	}
	if c.Transport == "rdma" && !rdma.Available() {
		return fmt.Errorf("--transport rdma: %w", rdma.ErrNoRDMA)
	}
	switch c.Compress {
	case "none", "s2", "zstd":
	default:
		return fmt.Errorf("unknown --compress %q (want none, s2 or zstd)", c.Compress)
	}
	switch c.DataPath {
	case "auto", "tcp", "off":
	default:
		return fmt.Errorf("unknown --data-path %q (want auto, tcp or off)", c.DataPath)
	}
	switch c.GradEncoding {
	case "float32", "bf16", "fp16":
	default:
		return fmt.Errorf("unknown --gradient-encoding %q (want float32, bf16 or fp16)", c.GradEncoding)
	}
	if c.Local && c.GradEncoding != "float32" {
		return errors.New("--gradient-encoding applies to --join only: --local has no wire")
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

// applyTFConfig takes the cluster from $TF_CONFIG, when set, for every
// flag the command line left unset: --rank (the chief is 0, worker i is
// i+1 with a chief), --workers (workers plus chief: the count sync mode
// aggregates), --join (the ps tasks, the gossip seeds) and --gossip (this
// task's own TF_CONFIG address). A ps or evaluator task is an error: those
// do not run the trainer. With --local only --workers is taken.
func (c *config) applyTFConfig(fs *flag.FlagSet) error {
	tc, err := tfconfig.FromEnv()
	if err != nil || tc == nil {
		return err
	}
	switch tc.Role() {
	case tfconfig.RolePS:
		return fmt.Errorf("$TF_CONFIG says this task is %s (a parameter server): ps tasks run psd, not the trainer", tc.ID())
	case tfconfig.RoleEvaluator:
		return fmt.Errorf("$TF_CONFIG says this task is %s: the trainer has no evaluator mode (chief and worker tasks train)", tc.ID())
	}
	rank, err := tc.Rank()
	if err != nil {
		return err
	}
	values := map[string]string{"workers": strconv.Itoa(tc.Workers())}
	local := false
	fs.Visit(func(f *flag.Flag) { local = local || f.Name == "local" })
	// --local runs every rank in this process: only the worker count
	// applies.
	if !local {
		values["rank"] = strconv.Itoa(rank)
		seeds := tc.PSSeeds()
		if len(seeds) == 0 {
			return fmt.Errorf("$TF_CONFIG (task %s) lists no ps tasks to join: add ps tasks, or give --join or --local", tc.ID())
		}
		ep, err := tc.Endpoints()
		if err != nil {
			return err
		}
		values["join"] = strings.Join(seeds, ",")
		values["gossip"] = bindAddr(ep.Host, ep.Gossip, ep.GossipBind)
	}
	applied, err := tfconfig.ApplyFlags(fs, values)
	if err != nil {
		return err
	}
	c.TFConfig, c.TFApplied = tc, applied
	return nil
}

// bindAddr returns addr itself when host is an IP literal (bindable as
// is, e.g. 127.0.0.1 in tests), else the wildcard form: a service DNS
// name resolves to the pod address and is not itself bindable.
func bindAddr(host, addr, wildcard string) string {
	if net.ParseIP(host) != nil {
		return addr
	}
	return wildcard
}
