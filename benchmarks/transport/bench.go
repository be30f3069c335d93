package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/flowps/flowps/transport/inproc"
)

// The operations a cell can measure.
const (
	opPush     = "push"
	opPull     = "pull"
	opPushPull = "pushpull"
)

// backend is one transport under test: how to start its server and how to
// connect a client to it.
type backend struct {
	name string
	// child says the server can run in a child process (--child).
	child bool
	// serve starts a server in this process; stop stops it.
	serve func(ctx context.Context, e *env) (addr string, stop func() error, err error)
	// dial connects a client to a server at addr.
	dial func(ctx context.Context, e *env, addr string) (client, error)
}

// client is a connection to a backend's server.
type client interface {
	// prepare readies a payload of size bytes (and, for parameter servers,
	// a variable of that size) and returns the operations on it.
	prepare(ctx context.Context, size int) (cell, error)
	close() error
}

// cell performs one operation of a fixed size.
type cell interface {
	doPush(ctx context.Context) error
	doPull(ctx context.Context) error
}

// funcCell is a cell from two functions.
type funcCell struct {
	push, pull func(ctx context.Context) error
}

func (c *funcCell) doPush(ctx context.Context) error { return c.push(ctx) }
func (c *funcCell) doPull(ctx context.Context) error { return c.pull(ctx) }

// backends lists the transports this binary knows, in table order. The
// rdma build adds its own from an init function.
var backends = []backend{tcpBackend, unixBackend, echoBackend, grpcBackend, grpcTCPBackend, grpcH2Backend, grpcBF16Backend, inprocBackend}

func findBackend(name string) (backend, bool) {
	for _, b := range backends {
		if b.name == name {
			return b, true
		}
	}
	return backend{}, false
}

func backendNames() []string {
	out := make([]string, len(backends))
	for i, b := range backends {
		out[i] = b.name
	}
	return out
}

// env is what backends share within one run.
type env struct {
	compress string
	logger   *slog.Logger

	mu  sync.Mutex
	net *inproc.Network
}

func (e *env) inprocNet() *inproc.Network {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.net == nil {
		e.net = inproc.NewNetwork()
	}
	return e.net
}

// config is one benchmark run.
type config struct {
	Sizes      []int
	Transports []string
	Ops        []string
	// Warmup runs precede the timed ones in every cell.
	Warmup int
	// A cell repeats until it has MinRuns runs and MinTime has passed, or
	// MaxRuns runs.
	MinRuns, MaxRuns int
	MinTime          time.Duration
	// OpTimeout bounds one operation.
	OpTimeout time.Duration
	// Compress is the gRPC compressor of the grpc and grpc-echo clients.
	Compress string
	// Child runs servers in a child process (Self with env serveEnv).
	Child bool
	Self  string
	// ChildArgs are the arguments of the child process (the test binary
	// needs its own).
	ChildArgs []string
	Logger    *slog.Logger
}

// result is one JSON line and one table row.
type result struct {
	Transport string  `json:"transport"`
	Op        string  `json:"op"`
	Bytes     int     `json:"bytes"`
	GBPerS    float64 `json:"gb_per_s"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	MeanUs    float64 `json:"mean_us"`
	MinUs     float64 `json:"min_us"`
	Runs      int     `json:"runs"`
	// RatioTCP is GBPerS over the tcp row of the same op and size (0: no
	// tcp row).
	RatioTCP float64 `json:"ratio_tcp,omitempty"`
	Compress string  `json:"compress"`
	Server   string  `json:"server"`
}

func (c *config) validate() error {
	if len(c.Sizes) == 0 || len(c.Transports) == 0 || len(c.Ops) == 0 {
		return errors.New("need at least one size, transport and op")
	}
	for _, s := range c.Sizes {
		if s < 4 || s%4 != 0 || s > 1<<30 {
			return fmt.Errorf("size %d: want a multiple of 4 bytes in [4, 1GiB]", s)
		}
	}
	for _, t := range c.Transports {
		if _, ok := findBackend(t); !ok {
			hint := ""
			if strings.HasPrefix(t, "rdma") {
				hint = " (rdma transports need a binary built with -tags rdma)"
			}
			return fmt.Errorf("unknown transport %q: this binary has %s%s", t, strings.Join(backendNames(), ", "), hint)
		}
	}
	for _, o := range c.Ops {
		if o != opPush && o != opPull && o != opPushPull {
			return fmt.Errorf("unknown op %q: want push, pull or pushpull", o)
		}
	}
	switch c.Compress {
	case "", "none", "s2", "zstd":
	default:
		return fmt.Errorf("unknown --compress %q: want none, s2 or zstd", c.Compress)
	}
	if c.MinRuns < 1 || c.MaxRuns < c.MinRuns || c.Warmup < 0 || c.MinTime < 0 || c.OpTimeout <= 0 {
		return fmt.Errorf("bad repetition settings: min runs %d, max runs %d, warmup %d, min time %v, op timeout %v",
			c.MinRuns, c.MaxRuns, c.Warmup, c.MinTime, c.OpTimeout)
	}
	return nil
}

// run measures every (transport, size, op) cell, reporting each on
// progress as it finishes, and at the end writes one JSON line per cell
// (with its ratio to the tcp row) to jsonOut if non-nil.
//
// Every transport's server is up for the whole run, and the transports of
// one (size, op) are measured interleaved: in rounds, each round giving
// every transport a slice of about MinTime/10 in turn, until each has
// MinRuns runs and MinTime of runs. Load from elsewhere on the machine
// then falls on every row alike, so the ratios of one run mean something
// even when the absolute figures move.
func run(ctx context.Context, cfg config, jsonOut io.Writer, progress io.Writer) (_ []result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Compress == "" {
		cfg.Compress = "none"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &env{compress: cfg.Compress, logger: cfg.Logger}
	type conn struct {
		b     backend
		where string
		c     client
	}
	var conns []conn
	var stops []func() error
	defer func() {
		for _, c := range conns {
			if cerr := c.c.close(); cerr != nil && err == nil {
				err = fmt.Errorf("%s: close client: %w", c.b.name, cerr)
			}
		}
		for _, stop := range stops {
			if serr := stop(); serr != nil && err == nil {
				err = fmt.Errorf("stop server: %w", serr)
			}
		}
	}()
	for _, name := range cfg.Transports {
		b, _ := findBackend(name)
		where := "in-process"
		var addr string
		var stop func() error
		var err error
		if cfg.Child && b.child {
			where = "child"
			addr, stop, err = startChild(ctx, cfg, b.name)
		} else {
			addr, stop, err = b.serve(ctx, e)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: start server: %w", name, err)
		}
		stops = append(stops, stop)
		c, err := b.dial(ctx, e, addr)
		if err != nil {
			return nil, fmt.Errorf("%s: dial %s: %w", name, addr, err)
		}
		conns = append(conns, conn{b: b, where: where, c: c})
	}
	var results []result
	for _, size := range cfg.Sizes {
		cells := make([]cell, len(conns))
		for i, c := range conns {
			cl, err := c.c.prepare(ctx, size)
			if err != nil {
				return results, fmt.Errorf("%s: prepare %d bytes: %w", c.b.name, size, err)
			}
			cells[i] = cl
		}
		for _, op := range cfg.Ops {
			rs, err := measure(ctx, cfg, cells, op, size)
			if err != nil {
				return results, err
			}
			for i := range rs {
				rs[i].Transport, rs[i].Compress, rs[i].Server = conns[i].b.name, cfg.Compress, conns[i].where
				if progress != nil {
					r := rs[i]
					fmt.Fprintf(progress, "%-10s %-8s %8s  %7.3f GB/s  p50 %9.1f µs  (%d runs)\n", r.Transport, op, fmtSize(size), r.GBPerS, r.P50us, r.Runs)
				}
			}
			results = append(results, rs...)
		}
	}
	addRatios(results)
	if jsonOut != nil {
		enc := json.NewEncoder(jsonOut)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return results, fmt.Errorf("--json: %w", err)
			}
		}
	}
	return results, nil
}

// measure runs one operation of one size on every cell: Warmup untimed
// runs each, then interleaved rounds of timed runs (see run).
func measure(ctx context.Context, cfg config, cells []cell, op string, size int) ([]result, error) {
	once := func(c cell) error {
		octx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		defer cancel()
		switch op {
		case opPush:
			return c.doPush(octx)
		case opPull:
			return c.doPull(octx)
		default:
			if err := c.doPush(octx); err != nil {
				return err
			}
			return c.doPull(octx)
		}
	}
	for i, c := range cells {
		for range cfg.Warmup {
			if err := once(c); err != nil {
				return nil, fmt.Errorf("cell %d %s %s warm-up: %w", i, op, fmtSize(size), err)
			}
		}
	}
	lat := make([][]time.Duration, len(cells))
	spent := make([]time.Duration, len(cells))
	slice := cfg.MinTime / 10
	done := func(i int) bool {
		n := len(lat[i])
		return n >= cfg.MaxRuns || (n >= cfg.MinRuns && spent[i] >= cfg.MinTime)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		active := 0
		for i, c := range cells {
			if done(i) {
				continue
			}
			active++
			began := time.Now()
			for first := true; first || (time.Since(began) < slice && len(lat[i]) < cfg.MaxRuns); first = false {
				t0 := time.Now()
				if err := once(c); err != nil {
					return nil, fmt.Errorf("cell %d %s %s run %d: %w", i, op, fmtSize(size), len(lat[i])+1, err)
				}
				d := time.Since(t0)
				lat[i] = append(lat[i], d)
				spent[i] += d
			}
		}
		if active == 0 {
			break
		}
	}
	out := make([]result, len(cells))
	for i, l := range lat {
		out[i] = summarize(l, op, size)
	}
	return out, nil
}

// summarize turns latencies into a result.
func summarize(lat []time.Duration, op string, size int) result {
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	moved := float64(size) * float64(len(lat))
	if op == opPushPull {
		moved *= 2 // the pushed and the pulled payload
	}
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return result{
		Op: op, Bytes: size, Runs: len(lat),
		GBPerS: moved / total.Seconds() / 1e9,
		P50us:  us(percentile(lat, 0.50)),
		P99us:  us(percentile(lat, 0.99)),
		MeanUs: us(total) / float64(len(lat)),
		MinUs:  us(lat[0]),
	}
}

// percentile is the nearest-rank percentile of sorted d (with fewer than
// 100 runs, p99 is the maximum).
func percentile(d []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func addRatios(rs []result) {
	type key struct {
		op   string
		size int
	}
	base := map[key]float64{}
	for _, r := range rs {
		if r.Transport == "tcp" {
			base[key{r.Op, r.Bytes}] = r.GBPerS
		}
	}
	for i := range rs {
		if b := base[key{rs[i].Op, rs[i].Bytes}]; b > 0 {
			rs[i].RatioTCP = rs[i].GBPerS / b
		}
	}
}

// printTable writes the results grouped by op and size, one row per
// transport.
func printTable(w io.Writer, rs []result) error {
	sorted := slices.Clone(rs)
	opOrder := map[string]int{opPush: 0, opPull: 1, opPushPull: 2}
	tOrder := map[string]int{}
	for i, n := range backendNames() {
		tOrder[n] = i
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Op != b.Op {
			return opOrder[a.Op] < opOrder[b.Op]
		}
		if a.Bytes != b.Bytes {
			return a.Bytes < b.Bytes
		}
		return tOrder[a.Transport] < tOrder[b.Transport]
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tsize\ttransport\tGB/s\tp50 µs\tp99 µs\truns\t× tcp\t")
	prev := ""
	for _, r := range sorted {
		k := r.Op + fmtSize(r.Bytes)
		if prev != "" && k != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t")
		}
		prev = k
		ratio := "-"
		if r.RatioTCP > 0 {
			ratio = fmt.Sprintf("%.2f", r.RatioTCP)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.1f\t%.1f\t%d\t%s\t\n", r.Op, fmtSize(r.Bytes), r.Transport, r.GBPerS, r.P50us, r.P99us, r.Runs, ratio)
	}
	return tw.Flush()
}

// parseSize reads "4KiB", "256KiB", "4MiB", "64MiB", "1GiB", "100" (bytes),
// also "4K", "4M", "4KB" (as binary units).
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		m      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = t[:len(t)-len(u.suffix)], u.m
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || fmt.Sprint(n) != t || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	if n > (1<<30)/mult {
		return 0, fmt.Errorf("size %q above 1GiB", s)
	}
	return n * mult, nil
}

func fmtSize(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// fillPayload fills b with little-endian float32s drawn like gradients
// (normal, σ 0.01), so compressors see realistic entropy and a parameter
// server accepts them as finite.
func fillPayload(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := 0; i+4 <= len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(rng.NormFloat64()*0.01)))
	}
}

func fillFloats(f []float32, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range f {
		f[i] = float32(rng.NormFloat64() * 0.01)
	}
}
