package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flowps/flowps/internal/freeport"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// The variables every client pushes and pulls.
const (
	denseRows, denseCols = 1024, 256   // 1 MiB, 4 partitions of 256 KiB
	embRows, embCols     = 100_000, 16 // 6.4 MB, 7 partitions of ≤ 1 MiB
)

func specs() []ps.VariableSpec {
	return []ps.VariableSpec{
		{Name: "dense", Shape: []int64{denseRows, denseCols}, Init: ps.Initializer{Kind: ps.InitZeros},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1e-3}, Consistency: ps.Consistency{Mode: ps.Async},
			MinPartitionBytes: 256 << 10, MaxPartitionBytes: 256 << 10},
		{Name: "emb", Shape: []int64{embRows, embCols}, Init: ps.Initializer{Kind: ps.InitUniform, Min: -0.05, Max: 0.05, Seed: 1},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1e-3}, Consistency: ps.Consistency{Mode: ps.Async},
			MinPartitionBytes: 256 << 10, MaxPartitionBytes: 1 << 20},
	}
}

// report is what a run measured.
type report struct {
	Mode     string   `json:"mode"`
	Clients  int      `json:"clients"`
	Servers  int      `json:"servers"`
	Replicas int      `json:"replicas,omitempty"`
	Seconds  float64  `json:"seconds"`
	Pushes   uint64   `json:"pushes"`
	Pulls    uint64   `json:"pulls"`
	OpsPerS  float64  `json:"ops_per_sec"`
	MBPerS   float64  `json:"mb_per_sec"`
	Errors   uint64   `json:"errors"`
	ErrorLog []string `json:"first_errors,omitempty"`
	// Latencies in milliseconds.
	PushP50 float64 `json:"push_p50_ms"`
	PushP99 float64 `json:"push_p99_ms"`
	PushMax float64 `json:"push_max_ms"`
	PullP50 float64 `json:"pull_p50_ms"`
	PullP99 float64 `json:"pull_p99_ms"`
	PullMax float64 `json:"pull_max_ms"`
	AllP50  float64 `json:"p50_ms"`
	AllP99  float64 `json:"p99_ms"`
	// ServerPeakRSS is each psd's peak resident memory (VmHWM), in MiB;
	// in inprocess mode, this process's.
	ServerPeakRSS []float64 `json:"server_peak_rss_mib"`
	// ServerPeakRSSNote says what ServerPeakRSS measures.
	ServerPeakRSSNote string `json:"server_peak_rss_note"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *report) print(w io.Writer) {
	repl := "psd default"
	if r.Replicas > 0 {
		repl = strconv.Itoa(r.Replicas)
	}
	fmt.Fprintf(w, "flowps load test: %d clients, %d servers (%s, replicas %s), %.1f s\n", r.Clients, r.Servers, r.Mode, repl, r.Seconds)
	fmt.Fprintf(w, "  operations   %d pushes, %d pulls: %.0f ops/s, %.1f MB/s of tensors\n", r.Pushes, r.Pulls, r.OpsPerS, r.MBPerS)
	fmt.Fprintf(w, "  latency      all  p50 %.2f ms  p99 %.2f ms\n", r.AllP50, r.AllP99)
	fmt.Fprintf(w, "               push p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.PushP50, r.PushP99, r.PushMax)
	fmt.Fprintf(w, "               pull p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.PullP50, r.PullP99, r.PullMax)
	fmt.Fprintf(w, "  errors       %d\n", r.Errors)
	for _, e := range r.ErrorLog {
		fmt.Fprintf(w, "               %s\n", e)
	}
	var parts []string
	for _, m := range r.ServerPeakRSS {
		parts = append(parts, fmt.Sprintf("%.1f MiB", m))
	}
	fmt.Fprintf(w, "  peak RSS     %s (%s)\n", strings.Join(parts, ", "), r.ServerPeakRSSNote)
}

// cluster is the servers under test and how clients reach them.
type cluster struct {
	members ps.MemberSource
	rss     func() ([]float64, error)
	note    string
	close   func()
}

func run(ctx context.Context, cfg config) (*report, error) {
	var cl *cluster
	var err error
	if cfg.Mode == "inprocess" {
		cl, err = startInProcess(cfg)
	} else {
		cl, err = startProcesses(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	defer cl.close()

	clients := make([]*ps.Client, cfg.Clients)
	dialers := make([]*grpctransport.Dialer, cfg.Clients)
	defer func() {
		for i := range clients {
			if clients[i] != nil {
				clients[i].Close()
			}
			if dialers[i] != nil {
				dialers[i].Close()
			}
		}
	}()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range clients {
		dialers[i] = grpctransport.NewDialer(grpctransport.DialerConfig{})
		ccfg := ps.DefaultClientConfig()
		ccfg.ID, ccfg.Worker, ccfg.Members, ccfg.Dialer = fmt.Sprintf("load-%d", i), i, cl.members, dialers[i]
		ccfg.RetryTimeout = 10 * time.Second
		if clients[i], err = ps.NewClient(ccfg); err != nil {
			return nil, err
		}
		for _, s := range specs() {
			if err := clients[i].CreateVariable(setupCtx, s); err != nil {
				return nil, fmt.Errorf("client %d: %w", i, err)
			}
		}
	}

	type result struct {
		push, pull *hist
		errs       uint64
		errLog     []string
		bytes      uint64
	}
	results := make([]result, cfg.Clients)
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := &results[i]
			r.push, r.pull = newHist(), newHist()
			c := clients[i]
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			dense := make([]float32, denseRows*denseCols)
			for j := range dense {
				dense[j] = 1e-3 * float32(j%7-3)
			}
			rows := make([]int64, cfg.SparseRows)
			sparse := make([]float32, cfg.SparseRows*embCols)
			for j := range sparse {
				sparse[j] = 1e-3
			}
			denseDst := make([]float32, len(dense))
			sparseDst := make([]float32, len(sparse))
			opBytes := uint64(4 * (len(dense) + len(sparse)))
			// Calls run under ctx, not runCtx: the last ones finish after
			// the deadline instead of failing with it.
			fail := func(what string, err error) {
				r.errs++
				if len(r.errLog) < 3 {
					r.errLog = append(r.errLog, fmt.Sprintf("client %d %s: %v", i, what, err))
				}
			}
			for runCtx.Err() == nil {
				for j := range rows {
					rows[j] = rng.Int64N(embRows)
				}
				t0 := time.Now()
				err := c.PushMany(ctx, []ps.PushOp{{Var: "dense", Grad: dense}, {Var: "emb", Rows: rows, Grad: sparse}}, ps.PushOptions{})
				if err != nil {
					fail("push", err)
					if ctx.Err() != nil {
						return
					}
					continue
				}
				r.push.add(time.Since(t0))
				t1 := time.Now()
				_, err = c.PullMany(ctx, []ps.PullOp{{Var: "dense", Dst: denseDst}, {Var: "emb", Rows: rows, Dst: sparseDst}}, ps.PullOptions{})
				if err != nil {
					fail("pull", err)
					if ctx.Err() != nil {
						return
					}
					continue
				}
				r.pull.add(time.Since(t1))
				r.bytes += 2 * opBytes
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	push, pull, all := newHist(), newHist(), newHist()
	rep := &report{Mode: cfg.Mode, Clients: cfg.Clients, Servers: cfg.Servers, Replicas: cfg.Replicas, Seconds: elapsed.Seconds(), ServerPeakRSSNote: cl.note}
	var bytes uint64
	for _, r := range results {
		push.merge(r.push)
		pull.merge(r.pull)
		rep.Errors += r.errs
		rep.ErrorLog = append(rep.ErrorLog, r.errLog...)
		bytes += r.bytes
	}
	if len(rep.ErrorLog) > 10 {
		rep.ErrorLog = rep.ErrorLog[:10]
	}
	all.merge(push)
	all.merge(pull)
	rep.Pushes, rep.Pulls = push.n, pull.n
	rep.OpsPerS = float64(all.n) / elapsed.Seconds()
	rep.MBPerS = float64(bytes) / 1e6 / elapsed.Seconds()
	rep.PushP50, rep.PushP99, rep.PushMax = ms(push.quantile(0.5)), ms(push.quantile(0.99)), ms(push.max)
	rep.PullP50, rep.PullP99, rep.PullMax = ms(pull.quantile(0.5)), ms(pull.quantile(0.99)), ms(pull.max)
	rep.AllP50, rep.AllP99 = ms(all.quantile(0.5)), ms(all.quantile(0.99))
	if rep.ServerPeakRSS, err = cl.rss(); err != nil {
		return nil, fmt.Errorf("peak memory: %w", err)
	}
	return rep, nil
}

// startInProcess starts cfg.Servers ps.Servers behind gRPC on 127.0.0.1,
// each owning the partitions placement gives it.
func startInProcess(cfg config) (*cluster, error) {
	var members ps.StaticMembers
	var lis []net.Listener
	for i := 0; i < cfg.Servers; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lis = append(lis, l)
		members = append(members, sharding.Member{ID: fmt.Sprintf("ps-%d", i), Role: sharding.RolePS, Addr: l.Addr().String()})
	}
	var servers []*ps.Server
	var fronts []*grpctransport.Server
	var wg sync.WaitGroup
	for i, l := range lis {
		self := members[i].ID
		srv, err := ps.NewServer(ps.ServerConfig{ID: self, Owns: func(k ps.PartKey) bool {
			o := sharding.Place(k.String(), members, 1)
			return len(o) > 0 && o[0].ID == self
		}})
		if err != nil {
			return nil, err
		}
		g := grpctransport.NewServer(srv, grpctransport.ServerConfig{})
		servers, fronts = append(servers, srv), append(fronts, g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Serve(l)
		}()
	}
	return &cluster{
		members: members,
		rss: func() ([]float64, error) {
			m, err := peakRSS("self")
			return []float64{m}, err
		},
		note: "VmHWM of this process: servers and clients together",
		close: func() {
			for i := range fronts {
				fronts[i].Stop()
				servers[i].Close()
			}
			wg.Wait()
		},
	}, nil
}

// peakRSS reads VmHWM (peak resident set) of a process, in MiB.
func peakRSS(pid string) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%s/status has no VmHWM", pid)
}

// startProcesses builds psd (unless cfg.PSD names one), starts cfg.Servers
// of them joined by gossip, and joins their gossip as a trainer.
func startProcesses(ctx context.Context, cfg config) (*cluster, error) {
	tmp, err := os.MkdirTemp("", "flowps-load-")
	if err != nil {
		return nil, err
	}
	bin := cfg.PSD
	if bin == "" {
		bin = filepath.Join(tmp, "psd")
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		mod := strings.TrimSpace(string(out))
		if err != nil || mod == "" || mod == os.DevNull {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("--mode process needs --psd or a run inside the flowps module (go env GOMOD: %q)", mod)
		}
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/psd")
		build.Dir = filepath.Dir(mod)
		if out, err := build.CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("go build ./cmd/psd: %v\n%s", err, out)
		}
	}
	type proc struct {
		cmd  *exec.Cmd
		log  *strings.Builder
		done chan struct{}
	}
	var procs []*proc
	stopAll := func() {
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		os.RemoveAll(tmp)
	}
	var first string
	for i := 0; i < cfg.Servers; i++ {
		gp, err := freeport.Get()
		if err != nil {
			stopAll()
			return nil, err
		}
		lp, err := freeport.Get()
		if err != nil {
			stopAll()
			return nil, err
		}
		gossip := "127.0.0.1:" + strconv.Itoa(gp)
		args := []string{"--id", fmt.Sprintf("psd-%d", i), "--listen", "127.0.0.1:" + strconv.Itoa(lp), "--gossip", gossip,
			"--http", "", "--profile", cfg.Profile, "--log-level", "warn"}
		if cfg.Replicas > 0 {
			args = append(args, "--replicas", strconv.Itoa(cfg.Replicas))
		}
		if i == 0 {
			first = gossip
		} else {
			args = append(args, "--join", first)
		}
		p := &proc{cmd: exec.Command(bin, args...), log: &strings.Builder{}, done: make(chan struct{})}
		p.cmd.Stdout, p.cmd.Stderr = &lockedBuilder{b: p.log}, &lockedBuilder{b: p.log}
		if err := p.cmd.Start(); err != nil {
			stopAll()
			return nil, err
		}
		go func() { p.cmd.Wait(); close(p.done) }()
		procs = append(procs, p)
	}
	m, err := sharding.NewMembership(sharding.MembershipConfig{
		Self: sharding.Member{ID: "load-trainer", Role: sharding.RoleTrainer}, BindAddr: "127.0.0.1:0", Profile: cfg.Profile,
	})
	if err != nil {
		stopAll()
		return nil, err
	}
	fail := func(err error) (*cluster, error) {
		m.Shutdown()
		logs := ""
		for i, p := range procs {
			logs += fmt.Sprintf("\n--- psd-%d ---\n%s", i, p.log.String())
		}
		stopAll()
		return nil, fmt.Errorf("%w%s", err, logs)
	}
	jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := m.Join(jctx, []string{first}); err != nil {
		return fail(fmt.Errorf("join the psd: %w", err))
	}
	for len(m.View().PS()) < cfg.Servers {
		for i, p := range procs {
			select {
			case <-p.done:
				return fail(fmt.Errorf("psd-%d exited", i))
			default:
			}
		}
		select {
		case <-jctx.Done():
			return fail(fmt.Errorf("waiting for %d psd in view: %w", cfg.Servers, jctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &cluster{
		members: m,
		rss: func() ([]float64, error) {
			var out []float64
			for _, p := range procs {
				v, err := peakRSS(strconv.Itoa(p.cmd.Process.Pid))
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		},
		note: "VmHWM of each psd process",
		close: func() {
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m.Leave(lctx)
			cancel()
			m.Shutdown()
			stopAll()
		},
	}, nil
}

// lockedBuilder is a strings.Builder safe for the two writers exec uses.
type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
