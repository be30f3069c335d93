package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/ps"
	fr "github.com/flowps/flowps/runtime"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// profileTrainer is --profile-trainer: the trainer's step loop (the same
// model, runtime session and ps.Client as cmd/trainer, which has no
// profiling flag) runs inside this process twice, against an in-process
// ps.Server (as trainer --local does) and against one psd over gRPC, each
// under a CPU profile written to dir, while the psd is profiled through
// its /debug/pprof/profile; then once more against a fresh psd with
// runtime.SessionConfig.SplitPulls. It prints the runtime's per-step
// statistics of each run.
func profileTrainer(ctx context.Context, cfg *config, bin, logs, dir string, stdout io.Writer) error {
	dataDir, err := data.ResolveDir(ctx, cfg.Data)
	if err != nil {
		return err
	}
	train, _, err := data.LoadMNIST(dataDir)
	if err != nil {
		return err
	}
	srv, err := ps.NewServer(ps.ServerConfig{ID: "local"})
	if err != nil {
		return err
	}
	defer srv.Close()
	local := ps.StaticMembers{{ID: "local", Role: sharding.RolePS, Addr: "local"}}
	st, err := profileLoop(ctx, cfg, train, local, ps.DirectDialer{"local": srv}, false, filepath.Join(dir, "trainer-local.pprof"))
	if err != nil {
		return fmt.Errorf("in-process server: %w", err)
	}
	printStats(stdout, "local (in-process ps.Server)", st)

	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	l := &launcher{dir: logs}
	defer l.close()
	n, err := l.startPSD(ctx, filepath.Join(bin, "psd"), 0, cfg.Replicas, nil)
	if err != nil {
		return err
	}
	if err := waitMembers(ctx, []*psdNode{n}, 1); err != nil {
		return err
	}
	d := grpctransport.NewDialer(grpctransport.DialerConfig{})
	defer d.Close()
	members := ps.StaticMembers{{ID: n.id, Role: sharding.RolePS, Addr: n.grpc}}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var profErr error
	wg.Add(1)
	go func() { // owner: this function, which waits for it
		defer wg.Done()
		profErr = fetchProfile(pctx, n, cfg.PprofSeconds, filepath.Join(dir, "psd-0.pprof"))
	}()
	st, err = profileLoop(ctx, cfg, train, members, d, false, filepath.Join(dir, "trainer-1ps.pprof"))
	wg.Wait()
	if err != nil {
		return fmt.Errorf("1 psd over gRPC: %w", err)
	}
	if profErr != nil {
		fmt.Fprintf(os.Stderr, "psd profile: %v\n", profErr)
	}
	printStats(stdout, "1 psd over gRPC", st)
	// The same with one pull per variable (runtime.SessionConfig.SplitPulls),
	// on a fresh psd (the variables' versions start at 0 again).
	n.stop(10 * time.Second)
	n2, err := l.startPSD(ctx, filepath.Join(bin, "psd"), 1, cfg.Replicas, nil)
	if err != nil {
		return err
	}
	if err := waitMembers(ctx, []*psdNode{n2}, 1); err != nil {
		return err
	}
	members = ps.StaticMembers{{ID: n2.id, Role: sharding.RolePS, Addr: n2.grpc}}
	st, err = profileLoop(ctx, cfg, train, members, d, true, filepath.Join(dir, "trainer-1ps-split.pprof"))
	if err != nil {
		return fmt.Errorf("1 psd over gRPC, split pulls: %w", err)
	}
	printStats(stdout, "1 psd over gRPC, split pulls", st)
	fmt.Fprintf(stdout, "profiles in %s: go tool pprof -top %s\n", dir, filepath.Join(dir, "trainer-1ps.pprof"))
	return nil
}

// profileLoop trains cfg.Epochs epochs of cfg.Model on train in sync mode
// with one worker, under a CPU profile written to path.
func profileLoop(ctx context.Context, cfg *config, train *data.Dataset, members ps.MemberSource, dialer ps.Dialer, split bool, path string) (fr.Stats, error) {
	m, err := models.Build(cfg.Model, models.Config{InputShape: train.Shape, Classes: train.Classes, Seed: 1, Init: models.InitTorch})
	if err != nil {
		return fr.Stats{}, err
	}
	cc := ps.DefaultClientConfig()
	cc.Members, cc.Dialer = members, dialer
	client, err := ps.NewClient(cc)
	if err != nil {
		return fr.Stats{}, err
	}
	defer client.Close()
	store := &clientStore{client: client}
	sess, err := fr.NewSession(ctx, m.Graph, fr.SessionConfig{Store: store, SplitPulls: split})
	if err != nil {
		return fr.Stats{}, err
	}
	sampler, err := data.NewSampler(train.N(), cfg.Batch, 0, 1, 1)
	if err != nil {
		return fr.Stats{}, err
	}
	f, err := os.Create(path)
	if err != nil {
		return fr.Stats{}, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fr.Stats{}, err
	}
	defer pprof.StopCPUProfile()
	var (
		x    []float32
		y    []int32
		lab  []int64
		step int64
		dim  = m.Input.Shape()[1]
	)
	for e := range cfg.Epochs {
		for _, idx := range sampler.Epoch(e) {
			x, y = train.Gather(idx, x, y)
			lab = lab[:0]
			for _, v := range y {
				lab = append(lab, int64(v))
			}
			xt, err := fr.NewTensor(fr.Shape{len(idx), dim}, x)
			if err != nil {
				return fr.Stats{}, err
			}
			yt, err := fr.NewIntTensor(fr.Int32, fr.Shape{len(idx)}, lab)
			if err != nil {
				return fr.Stats{}, err
			}
			if _, err := sess.Run(ctx, fr.RunArgs{Step: step, Training: true,
				Feeds: fr.Feeds{m.Input: xt, m.Labels: yt}, Targets: []*fr.Node{m.Train}}); err != nil {
				return fr.Stats{}, fmt.Errorf("step %d: %w", step, err)
			}
			step++
		}
	}
	return sess.Stats(), nil
}

func printStats(w io.Writer, what string, s fr.Stats) {
	if s.Runs == 0 {
		return
	}
	per := func(d time.Duration) string { return (d / time.Duration(s.Runs)).Round(time.Microsecond).String() }
	fmt.Fprintf(w, "%-30s per step: wall %s, kernels %s, in Pull %s, in Push %s (overlapping), idle %s, push tail %s; %d steps\n",
		what, per(s.Wall), per(s.Compute), per(s.Pull), per(s.Push), per(s.Idle), per(s.PushTail), s.Runs)
}

// clientStore is the smallest VarStore over a ps.Client in sync mode with
// one worker and SGD: what cmd/trainer's store does for --mode sync.
type clientStore struct{ client *ps.Client }

func (s *clientStore) Create(ctx context.Context, defs []fr.VariableDef) error {
	for _, d := range defs {
		shape := make([]int64, len(d.Shape))
		for i, x := range d.Shape {
			shape[i] = int64(x)
		}
		spec := ps.VariableSpec{Name: d.Name, Shape: shape,
			Init: ps.Initializer{Kind: ps.InitKind(d.Init.Kind), Value: d.Init.Value, Min: d.Init.Min, Max: d.Init.Max,
				Mean: d.Init.Mean, Stddev: d.Init.Stddev, Seed: d.Init.Seed},
			Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.1}.WithDefaults(),
			Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1}}
		if err := s.client.CreateVariable(ctx, spec); err != nil {
			return fmt.Errorf("create %s: %w", d.Name, err)
		}
	}
	return nil
}

func (s *clientStore) Pull(ctx context.Context, step int64, reqs []fr.PullRequest) error {
	ops := make([]ps.PullOp, len(reqs))
	for i, r := range reqs {
		ops[i] = ps.PullOp{Var: r.Name, Rows: r.Rows, Dst: r.Dst, MinVersion: step}
	}
	_, err := s.client.PullMany(ctx, ops, ps.PullOptions{})
	return err
}

func (s *clientStore) Push(ctx context.Context, step int64, g fr.Gradient) error {
	return s.client.PushMany(ctx, []ps.PushOp{{Var: g.Name, Rows: g.Rows, Grad: g.Values, Step: step}}, ps.PushOptions{})
}
