package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config holds the flags.
type config struct {
	Model, Data, Mode string
	Batch, Epochs     int
	Replicas          int
	Threads           int    // trainer --threads of every trainer; 0: not given
	Bin               string // directory holding psd and trainer; empty: build
	JSON              bool
	Pprof             string // directory for psd CPU profiles; empty: none
	PprofSeconds      int
	Setups            []string
	SetupsGiven       bool // --setups was on the command line: a setup that cannot run is an error
	Timeout           time.Duration
	Logs              string // directory for child logs; empty: a temporary one, removed
	ProfileTrainer    string // directory for --profile-trainer; empty: the table
}

var allSetups = []string{"local", "1ps-1tr", "2ps-2tr", "pytorch"}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("training", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Model, "model", "mlp", "model every setup trains (trainer --model)")
	fs.StringVar(&c.Data, "data", "mnist", "data (trainer --data)")
	fs.StringVar(&c.Mode, "mode", "sync", "consistency mode of every setup (trainer --mode): sync, async or ssp")
	fs.IntVar(&c.Batch, "batch", 128, "examples per step per trainer (trainer --batch)")
	fs.IntVar(&c.Epochs, "epochs", 1, "epochs per trainer (a trainer's epoch is its share of the training set)")
	fs.IntVar(&c.Replicas, "replicas", 1, "psd --replicas (1: no replication, the parameter-server path alone)")
	fs.IntVar(&c.Threads, "threads", 0, "trainer --threads (GOMAXPROCS) of every trainer, local and distributed alike: 1 runs each trainer on one thread, as the pytorch row does; 0: not given (Go's default, one per CPU)")
	fs.StringVar(&c.Bin, "bin", "", "`DIR` holding psd and trainer binaries; empty: go build them into a temporary directory")
	fs.BoolVar(&c.JSON, "json", false, "print the rows as JSON instead of a table")
	fs.StringVar(&c.Pprof, "pprof", "", "`DIR` to save each psd's CPU profile of the distributed setups in")
	fs.IntVar(&c.PprofSeconds, "pprof-seconds", 5, "length of the --pprof profiles")
	setups := fs.String("setups", strings.Join(allSetups, ","), "comma-separated setups to run, from "+strings.Join(allSetups, ","))
	fs.DurationVar(&c.Timeout, "timeout", 15*time.Minute, "give up on a setup after this long")
	fs.StringVar(&c.Logs, "logs", "", "`DIR` to keep the children's logs in; empty: a temporary directory, removed at the end unless a setup fails")
	fs.StringVar(&c.ProfileTrainer, "profile-trainer", "", "instead of the table, run the trainer's step loop in this process against an in-process server and against 1 psd, and save CPU profiles of both and of the psd in `DIR`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { c.SetupsGiven = c.SetupsGiven || f.Name == "setups" })
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*setups, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSetups, s) {
			return nil, fmt.Errorf("--setups: unknown setup %q (want %s)", s, strings.Join(allSetups, ", "))
		}
		if !slices.Contains(c.Setups, s) {
			c.Setups = append(c.Setups, s)
		}
	}
	switch {
	case c.Batch < 1:
		return nil, fmt.Errorf("--batch %d: want ≥ 1", c.Batch)
	case c.Epochs < 1:
		return nil, fmt.Errorf("--epochs %d: want ≥ 1", c.Epochs)
	case c.Replicas < 1:
		return nil, fmt.Errorf("--replicas %d: want ≥ 1", c.Replicas)
	case c.Threads < 0:
		return nil, fmt.Errorf("--threads %d: want ≥ 0", c.Threads)
	case c.PprofSeconds < 1:
		return nil, fmt.Errorf("--pprof-seconds %d: want ≥ 1", c.PprofSeconds)
	case c.Timeout <= 0:
		return nil, fmt.Errorf("--timeout %v: want > 0", c.Timeout)
	}
	switch c.Mode {
	case "sync", "async", "ssp":
	default:
		return nil, fmt.Errorf("--mode %q: want sync, async or ssp", c.Mode)
	}
	return c, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "training:", err)
		return 2
	}
	if err := bench(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "training:", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, cfg *config, stdout, stderr io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "flowps-bench-training-")
	if err != nil {
		return err
	}
	logs := cfg.Logs
	if logs == "" {
		logs = filepath.Join(tmp, "logs")
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil && cfg.Logs == "" {
			// Keep the logs of a failed run where the error says.
			err = fmt.Errorf("%w (children's logs kept in %s)", err, logs)
			return
		}
		os.RemoveAll(tmp)
	}()
	bin := cfg.Bin
	tags := "(prebuilt)"
	if bin == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		bin = filepath.Join(tmp, "bin")
		if tags, err = buildBinaries(ctx, root, bin, stderr); err != nil {
			return err
		}
	}
	for _, name := range []string{"psd", "trainer"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return fmt.Errorf("--bin: %w", err)
		}
	}
	if cfg.Pprof != "" {
		if err := os.MkdirAll(cfg.Pprof, 0o755); err != nil {
			return err
		}
	}
	if cfg.ProfileTrainer != "" {
		if err := os.MkdirAll(cfg.ProfileTrainer, 0o755); err != nil {
			return err
		}
		return profileTrainer(ctx, cfg, bin, filepath.Join(logs, "profile"), cfg.ProfileTrainer, stdout)
	}
	var results []setupResult
	for _, name := range cfg.Setups {
		fmt.Fprintf(stderr, "setup %s: %s, batch %d per trainer, %d epoch(s), %s mode, %s\n",
			name, cfg.Model, cfg.Batch, cfg.Epochs, cfg.Mode, cfg.Data)
		var res setupResult
		if name == "pytorch" {
			res, err = runPyTorch(ctx, cfg, filepath.Join(logs, name))
		} else {
			res, err = runSetup(ctx, cfg, bin, filepath.Join(logs, name), name)
		}
		if errors.Is(err, errSkip) && !cfg.SetupsGiven {
			fmt.Fprintf(stderr, "setup %s: %v\n", name, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("setup %s: %w", name, err)
		}
		results = append(results, res)
	}
	rows, err := buildRows(results)
	if err != nil {
		return err
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"model": cfg.Model, "data": cfg.Data, "mode": cfg.Mode, "batch": cfg.Batch, "epochs": cfg.Epochs,
			"replicas": cfg.Replicas, "threads": cfg.Threads, "build_tags": tags, "rows": rows, "setups": results,
		})
	}
	fmt.Fprintf(stdout, "model %s, data %s, %s mode, batch %d per trainer, %d epoch(s) per trainer, psd --replicas %d, trainer --threads %d, build tags %q\n",
		cfg.Model, cfg.Data, cfg.Mode, cfg.Batch, cfg.Epochs, cfg.Replicas, cfg.Threads, tags)
	if err := writeTable(stdout, rows); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "pytorch: PyTorch (Debian's python3-torch) training the same model on one thread (torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1), steps timed like the trainer's.")
	fmt.Fprintln(stdout, "ratio: aggregate ex/s over local's; ex/CPU-s: examples over the CPU time of all the setup's processes (psd included), the figure to compare on a loaded machine; compute/pull/wait add up to train time; push is summed over concurrent pushes that overlap it.")
	return nil
}

// runSetup runs one setup with its own fresh psd processes.
func runSetup(ctx context.Context, cfg *config, bin, logs, name string) (setupResult, error) {
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return setupResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l := &launcher{dir: logs}
	defer l.close()

	nPS, nTr := 0, 1
	switch name {
	case "1ps-1tr":
		nPS = 1
	case "2ps-2tr":
		nPS, nTr = 2, 2
	}
	res := setupResult{Name: name, PS: nPS}
	var nodes []*psdNode
	var seeds []string
	for i := range nPS {
		n, err := l.startPSD(ctx, filepath.Join(bin, "psd"), i, cfg.Replicas, seeds)
		if err != nil {
			return res, err
		}
		nodes = append(nodes, n)
		seeds = append(seeds, n.gossip)
	}
	if nPS > 0 {
		if err := waitMembers(ctx, nodes, nPS); err != nil {
			return res, err
		}
	}

	common := []string{"--model", cfg.Model, "--data", cfg.Data, "--batch", strconv.Itoa(cfg.Batch),
		"--epochs", strconv.Itoa(cfg.Epochs), "--mode", cfg.Mode, "--progress", "10"}
	if cfg.Threads > 0 {
		common = append(common, "--threads", strconv.Itoa(cfg.Threads))
	}
	start := time.Now()
	trainers := make([]*proc, nTr)
	for r := range nTr {
		args := append([]string(nil), common...)
		if nPS == 0 {
			args = append(args, "--local")
		} else {
			args = append(args, "--join", seeds[r%len(seeds)], "--workers", strconv.Itoa(nTr), "--rank", strconv.Itoa(r))
		}
		p, err := l.start(fmt.Sprintf("trainer-%d", r), filepath.Join(bin, "trainer"), args, true)
		if err != nil {
			return res, err
		}
		trainers[r] = p
	}

	var profWG sync.WaitGroup
	profErrs := make([]error, len(nodes))
	if cfg.Pprof != "" {
		for i, n := range nodes {
			profWG.Add(1)
			go func() { // owner: runSetup, which waits for it below
				defer profWG.Done()
				path := filepath.Join(cfg.Pprof, fmt.Sprintf("%s-%s.pprof", name, n.id))
				profErrs[i] = fetchProfile(ctx, n, cfg.PprofSeconds, path)
			}()
		}
	}

	for _, p := range trainers {
		select {
		case <-p.done:
		case <-ctx.Done():
			return res, fmt.Errorf("%s: %w", p.name, ctx.Err())
		}
		if p.err != nil {
			return res, fmt.Errorf("%s failed (%v):\n%s", p.name, p.err, p.logTail(20))
		}
		tr, err := parseResult(p.stdout.Bytes())
		if err != nil {
			return res, fmt.Errorf("%s: %w; its log:\n%s", p.name, err, p.logTail(20))
		}
		res.Trainers = append(res.Trainers, tr)
		res.CPUSeconds += p.cpuSeconds()
	}
	res.WallSeconds = time.Since(start).Seconds()
	profWG.Wait()
	for i, err := range profErrs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "pprof of %s: %v\n", nodes[i].id, err)
		}
	}
	for _, n := range nodes {
		n.stop(10 * time.Second)
		res.CPUSeconds += n.cpuSeconds()
	}
	return res, nil
}
