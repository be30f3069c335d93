// Command load is flowps's load test: N concurrent clients push gradients
// and pull weights as fast as they can for a fixed time against psd
// processes it starts (or in-process servers over real gRPC), then it
// prints throughput, latency percentiles, errors and the servers' peak
// memory.
//
//	go run ./benchmarks/load --clients 32 --duration 60s
//	go run ./benchmarks/load --clients 32 --duration 60s --mode inprocess --json
//
// Each client, in a loop: one push (a dense gradient for "dense", 1 MiB in
// 4 partitions, plus 128 random rows of the sparse "emb", 100000×16) and one
// pull of the same. Every server is on 127.0.0.1. In process mode (the
// default) it builds cmd/psd into a temporary directory, starts --servers
// psd joined by gossip, and reads each one's peak resident memory (VmHWM
// in /proc/PID/status) at the end; in inprocess mode the peak is the whole
// process's, clients included.
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
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if cfg.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(os.Stdout)
	}
	if rep.Errors > 0 {
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Clients, "clients", c.Clients, "concurrent clients")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long the clients run")
	fs.IntVar(&c.Servers, "servers", c.Servers, "parameter servers")
	fs.StringVar(&c.Mode, "mode", c.Mode, "process (start psd processes) or inprocess (servers in this process over gRPC)")
	fs.StringVar(&c.PSD, "psd", "", "psd binary for --mode process (default: go build ./cmd/psd into a temporary directory)")
	fs.StringVar(&c.Profile, "profile", c.Profile, "psd --profile: lan (psd's default) or local (short failure-detection timeouts: under full CPU load psd may be falsely declared dead)")
	fs.IntVar(&c.Replicas, "replicas", 0, "psd --replicas (--mode process; 0: psd's default)")
	fs.IntVar(&c.SparseRows, "sparse-rows", c.SparseRows, "rows of the sparse variable pushed and pulled per operation")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

// config is the load test's configuration.
type config struct {
	Clients    int
	Duration   time.Duration
	Servers    int
	Mode       string
	PSD        string
	Replicas   int
	Profile    string
	SparseRows int
	JSON       bool
	// Stderr receives the psd logs on failure (nil: discarded).
	Stderr io.Writer
}

func defaultConfig() config {
	return config{Clients: 32, Duration: 60 * time.Second, Servers: 2, Mode: "process", SparseRows: 128, Profile: "lan"}
}

func (c *config) validate() error {
	switch {
	case c.Clients < 1:
		return fmt.Errorf("--clients %d: want ≥ 1", c.Clients)
	case c.Duration <= 0:
		return fmt.Errorf("--duration %v: want > 0", c.Duration)
	case c.Servers < 1:
		return fmt.Errorf("--servers %d: want ≥ 1", c.Servers)
	case c.Mode != "process" && c.Mode != "inprocess":
		return fmt.Errorf("--mode %q: want process or inprocess", c.Mode)
	case c.Profile != "lan" && c.Profile != "local":
		return fmt.Errorf("--profile %q: want lan or local", c.Profile)
	case c.Replicas < 0:
		return fmt.Errorf("--replicas %d: want ≥ 0", c.Replicas)
	case c.SparseRows < 1 || c.SparseRows > embRows:
		return fmt.Errorf("--sparse-rows %d: want 1..%d", c.SparseRows, embRows)
	}
	return nil
}
