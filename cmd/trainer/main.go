package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, trains (or, for `trainer convert`, converts data), writes the final metrics as one JSON line to
// stdout and returns the exit code: 0 on success, 2 for bad flags, 1 for
// any other failure (missing or corrupt data, unreachable cluster, a
// variable that disagrees with the servers', ...).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "convert" {
		return runConvert(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "trainer: %v\n", err)
		return 2
	}
	if cfg.Threads > 0 {
		defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(cfg.Threads))
	}
	// Components (gossip, gRPC, the in-process server) log warnings only,
	// unless -v; progress has its own lines.
	level := slog.LevelWarn
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	res, err := train(ctx, cfg, stderr, logger)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "trainer: interrupted: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "trainer: %v\n", err)
		return 1
	}
	if err := writeJSONLine(stdout, res); err != nil {
		fmt.Fprintf(stderr, "trainer: writing metrics: %v\n", err)
		return 1
	}
	return 0
}
