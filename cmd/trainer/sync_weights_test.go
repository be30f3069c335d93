package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// TestSyncWeightsMatchBigBatchAfter20Steps: sync training with 2 workers at
// batch B leaves, after 20 steps, the same weights (within 1e-5) as one
// worker at batch 2B — the trainer's own model, runner, store adapter and
// sampler against a real ps.Server.
func TestSyncWeightsMatchBigBatchAfter20Steps(t *testing.T) {
	train, _, err := data.Synthetic(data.SyntheticConfig{Train: 4000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	const steps = 20
	two := trainSteps(t, train, 2, 50, steps)
	one := trainSteps(t, train, 1, 100, steps)
	small := trainSteps(t, train, 1, 50, steps)
	var worst, control float64
	for name, w := range one {
		for i := range w {
			worst = math.Max(worst, math.Abs(float64(two[name][i]-w[i])))
			control = math.Max(control, math.Abs(float64(small[name][i]-w[i])))
		}
	}
	t.Logf("after %d steps: max |2×50 − 1×100| = %.3g; control max |1×50 − 1×100| = %.3g", steps, worst, control)
	if worst > 1e-5 {
		t.Errorf("2 workers × batch 50 differ from 1 × batch 100 by %.3g after %d steps, want ≤ 1e-5", worst, steps)
	}
	if control < 1e-3 {
		t.Errorf("1 × batch 50 is within %.3g of 1 × batch 100: the comparison cannot fail", control)
	}
}

// trainSteps runs workers sync workers at batch batch for steps steps on one
// in-process ps.Server and returns the variables' values.
func trainSteps(t *testing.T, train *data.Dataset, workers, batch, steps int) map[string][]float32 {
	t.Helper()
	ctx := context.Background()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := &config{Model: "mlp", Mode: "sync", Optimizer: "sgd", LR: 0.5, Workers: workers, Batch: batch, Seed: 3, Init: string(models.InitTorch)}
	newClient := func(rank int) *ps.Client {
		cc := ps.DefaultClientConfig()
		cc.ID, cc.Worker = fmt.Sprintf("w%d", rank), rank
		cc.Members = ps.StaticMembers{{ID: "s", Role: sharding.RolePS, Addr: "s"}}
		cc.Dialer = ps.DirectDialer{"s": srv}
		c, err := ps.NewClient(cc)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var (
		wg    sync.WaitGroup
		errs  = make([]error, workers)
		model *models.Model
		store *psStore
	)
	for r := 0; r < workers; r++ {
		m, err := models.Build(cfg.Model, models.Config{InputShape: train.Shape, Classes: train.Classes, Seed: cfg.Seed, Init: models.InitScheme(cfg.Init)})
		if err != nil {
			t.Fatal(err)
		}
		s := &psStore{client: newClient(r), opt: cfg.optimizerSpec(), cons: cfg.consistency()}
		runner, err := newSessionRunner(ctx, m, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.resume(ctx, m.Graph.Variables()); err != nil {
			t.Fatal(err)
		}
		sampler, err := data.NewSampler(train.N(), batch, r, workers, uint64(cfg.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if r == 0 {
			model, store = m, s
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var x []float32
			var y []int32
			for step, idx := range sampler.Epoch(0)[:steps] {
				x, y = train.Gather(idx, x, y)
				if _, _, err := runner.train(ctx, int64(step), x, y); err != nil {
					errs[r] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", r, err)
		}
	}
	out := map[string][]float32{}
	for _, d := range model.Graph.Variables() {
		buf := make([]float32, d.Shape.NumElements())
		if _, err := store.client.Pull(ctx, d.Name, buf, int64(steps)); err != nil {
			t.Fatal(err)
		}
		out[d.Name] = buf
	}
	return out
}
