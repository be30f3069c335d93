package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/pprof"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if name := os.Getenv(serveEnv); name != "" {
		if err := serveChild(ctx, name, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "benchmark server:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(mainArgs(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// mainArgs runs the program with args and returns its exit status: 0 on
// success, 2 for bad flags, 1 for anything else.
func mainArgs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("transport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sizes      = fs.String("sizes", "4KiB,256KiB,4MiB,64MiB", "payload sizes, a comma list (KiB, MiB, GiB or bytes; multiples of 4)")
		transports = fs.String("transports", strings.Join(backendNames(), ","), "transports, a comma list of: "+strings.Join(backendNames(), ", "))
		ops        = fs.String("ops", "push,pull,pushpull", "operations, a comma list of push, pull, pushpull")
		jsonPath   = fs.String("json", "", "write one JSON object per measured cell to `FILE`")
		plotPath   = fs.String("plot", "", "draw throughput against size per transport to `FILE.png`")
		compress   = fs.String("compress", "none", "gRPC compressor of the grpc and grpc-echo clients: none, s2 or zstd")
		child      = fs.Bool("child", false, "run each server (but inproc's) in a child process instead of this one")
		warmup     = fs.Int("warmup", 3, "untimed runs before each cell")
		minRuns    = fs.Int("min-runs", 5, "timed runs per cell, at least")
		maxRuns    = fs.Int("max-runs", 100000, "timed runs per cell, at most")
		minTime    = fs.Duration("min-time", time.Second, "time per cell, at least (after min-runs)")
		opTimeout  = fs.Duration("op-timeout", 2*time.Minute, "bound on one operation")
		quiet      = fs.Bool("quiet", false, "no progress lines on stderr")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile of the whole run (client and in-process servers) to `FILE`")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./benchmarks/transport [flags]\n\nMeasures push, pull and push+pull throughput and latency of flowps transports\nagainst their baselines on 127.0.0.1, and prints a table.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg := config{
		Transports: splitList(*transports), Ops: splitList(*ops),
		Warmup: *warmup, MinRuns: *minRuns, MaxRuns: *maxRuns, MinTime: *minTime, OpTimeout: *opTimeout,
		Compress: *compress, Child: *child,
	}
	for _, s := range splitList(*sizes) {
		n, err := parseSize(s)
		if err != nil {
			fmt.Fprintln(stderr, "--sizes:", err)
			return 2
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if cfg.Child {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "--child:", err)
			return 1
		}
		cfg.Self = self
	}
	where := "servers in this process"
	if cfg.Child {
		where = "servers in child processes (inproc in this process)"
	}
	header := fmt.Sprintf("flowps transport benchmark: %s, %s on %d CPUs (GOMAXPROCS %d), 127.0.0.1, %s, compress %s",
		time.Now().UTC().Format("2006-01-02 15:04"), goruntime.Version(), goruntime.NumCPU(), goruntime.GOMAXPROCS(0), where, cfg.Compress)
	fmt.Fprintln(stdout, header)
	fmt.Fprintf(stdout, "warm-up %d runs, then interleaved rounds until ≥ %d runs and ≥ %v per cell; GB/s = payload bytes / time / 1e9 (pushpull counts both payloads); × tcp = GB/s over the tcp row\n\n",
		cfg.Warmup, cfg.MinRuns, cfg.MinTime)
	var jsonOut io.Writer
	var jsonFile *os.File
	if *jsonPath != "" {
		f, err := os.Create(*jsonPath)
		if err != nil {
			fmt.Fprintln(stderr, "--json:", err)
			return 1
		}
		jsonFile, jsonOut = f, f
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "--cpuprofile:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			fmt.Fprintln(stderr, "--cpuprofile:", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	var progress io.Writer
	if !*quiet {
		progress = stderr
	}
	results, err := run(ctx, cfg, jsonOut, progress)
	if jsonFile != nil {
		if cerr := jsonFile.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("--json: %w", cerr)
		}
	}
	if len(results) > 0 {
		if perr := printTable(stdout, results); perr != nil && err == nil {
			err = perr
		}
	}
	if err == nil && *plotPath != "" {
		err = writePlot(*plotPath, results, cfg.Ops, cfg.Transports, header)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
