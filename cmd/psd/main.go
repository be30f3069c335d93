// Command psd is the flowps parameter-server daemon: it hosts partitions of
// variables, serves them over gRPC, and finds the rest of the cluster by
// gossip.
//
//	psd --id ps-0 --listen 127.0.0.1:7000 --gossip 127.0.0.1:7946 --http 127.0.0.1:8000
//	psd --id ps-1 --listen 127.0.0.1:7001 --gossip 127.0.0.1:7947 --http 127.0.0.1:8001 --join 127.0.0.1:7946
//
// `psd doctor` prints the RDMA check instead of starting a server.
//
// Under Kubeflow's TFJob operator (or any launcher that sets TF_CONFIG), a
// ps task takes --id, --gossip, --listen and --join from $TF_CONFIG: its
// TF_CONFIG port is the gossip port, gRPC listens on port+1, and the other
// ps tasks are the join seeds (package tfconfig). Flags given on the
// command line win.
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
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "doctor" {
		os.Exit(doctor(os.Args[2:], os.Stdout, os.Stderr))
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "psd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "psd:", err)
		os.Exit(1)
	}
}

// config is psd's configuration, from flags.
type config struct {
	ID        string
	Listen    string
	DataAddr  string // --data-listen
	Gossip    string
	Advertise string
	Join      []string
	HTTP      string
	DataDir   string
	Profile   string
	Capacity  float64
	Replicas  int
	JoinWait  time.Duration
	LogLevel  slog.Level
	LogJSON   bool
	Logger    *slog.Logger

	securityConfig   // security.go: --tls-*, --http-tls, --gossip-key
	checkpointConfig // checkpoint.go: --checkpoint-*, --restore
	transportConfig  // rdma.go: --transport, --rdma-provider
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("psd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	fs.StringVar(&c.ID, "id", host, "unique id of this node in the cluster")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7000", "HOST:PORT the gRPC parameter service listens on (port 0 picks a free one)")
	fs.StringVar(&c.DataAddr, "data-listen", "", "HOST:PORT of the data path, a plain TCP (TLS with --tls-*) connection beside the gRPC one that carries pulls and pushes without HTTP/2 framing; empty: --listen's host at a free port, which clients learn over gRPC; off: pulls and pushes over gRPC only")
	fs.StringVar(&c.Gossip, "gossip", "127.0.0.1:7946", "HOST:PORT memberlist binds for gossip (TCP and UDP)")
	fs.StringVar(&c.Advertise, "advertise", "", "HOST to advertise to peers when --listen/--gossip bind a wildcard address (default: the bind host)")
	join := fs.String("join", "", "comma-separated gossip addresses HOST:PORT of existing members to join; empty starts a new cluster")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8000", "HOST:PORT serving /healthz, /status (JSON; HTML at /), /metrics (Prometheus); empty disables")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for this node's data (checkpoints); created if missing; empty keeps everything in memory")
	fs.StringVar(&c.Profile, "profile", "lan", "gossip timing profile: lan (failure detected in ~5 s) or local (~1 s, for one machine and tests)")
	fs.Float64Var(&c.Capacity, "capacity", 1, "relative capacity; placement gives this node a share of partitions proportional to it")
	fs.IntVar(&c.Replicas, "replicas", 2, "copies of each partition (placement's r; a cluster of fewer psd keeps one per psd)")
	fs.DurationVar(&c.JoinWait, "join-timeout", 30*time.Second, "how long to keep trying the --join addresses before giving up")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log as JSON lines instead of text")
	c.securityConfig.addFlags(fs)
	c.checkpointConfig.addFlags(fs)
	c.transportConfig.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `psd: the flowps parameter-server daemon.

Hosts partitions of model variables, applies gradients with server-side
optimizers, serves pulls and pushes over gRPC, and finds the other psd and
trainers by gossip. Subcommand: psd doctor (prints the RDMA transport check).

With $TF_CONFIG set (a ps task), --id, --gossip (the task's port),
--listen (port+1) and --join (the other ps tasks) default to it.

Usage: psd [flags]

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with --; see psd --help)", fs.Arg(0))
	}
	tc, tfApplied, err := applyTFConfig(fs)
	if err != nil {
		return c, err
	}
	if *join != "" {
		for _, s := range strings.Split(*join, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Join = append(c.Join, s)
			}
		}
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return c, fmt.Errorf("--log-level: %w", err)
	}
	if c.ID == "" {
		return c, errors.New("--id is empty")
	}
	if c.Replicas < 1 {
		return c, fmt.Errorf("--replicas %d: want ≥ 1", c.Replicas)
	}
	if c.Capacity <= 0 {
		return c, fmt.Errorf("--capacity %v: want > 0", c.Capacity)
	}
	if c.Profile != "lan" && c.Profile != "local" {
		return c, fmt.Errorf("--profile %q: want lan or local", c.Profile)
	}
	if err := c.securityConfig.resolve(c.HTTP); err != nil {
		return c, err
	}
	if err := c.checkpointConfig.resolve(c.DataDir); err != nil {
		return c, err
	}
	if err := c.transportConfig.resolve(); err != nil {
		return c, err
	}
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if c.LogJSON {
		h = slog.NewJSONHandler(stderr, opts)
	}
	c.Logger = slog.New(h).With("node", c.ID)
	if tc != nil {
		c.Logger.Info("cluster from $TF_CONFIG", "task", tc.ID(), "flags_set", tfApplied, "gossip", c.Gossip, "listen", c.Listen, "join", c.Join)
	}
	return c, nil
}
