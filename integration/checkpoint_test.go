package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flowps/flowps/checkpoint"
	"github.com/flowps/flowps/internal/clustertest"
	"github.com/flowps/flowps/ps"
)

// checkpointSpecs are variables covering the optimizers with slots, both
// consistency modes a checkpoint treats differently, and several
// partitions per variable.
func checkpointSpecs() []ps.VariableSpec {
	return []ps.VariableSpec{
		{Name: "emb", Shape: []int64{4000, 32}, Init: ps.Initializer{Kind: ps.InitNormal, Stddev: 0.1, Seed: 7},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptAdam, LR: 0.01}, Consistency: ps.Consistency{Mode: ps.Async},
			MinPartitionBytes: 32 << 10, MaxPartitionBytes: 64 << 10},
		{Name: "dense/kernel", Shape: []int64{256, 64}, Init: ps.Initializer{Kind: ps.InitGlorotUniform, Seed: 8},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptMomentum, LR: 0.1}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 1},
			MinPartitionBytes: 16 << 10, MaxPartitionBytes: 16 << 10},
		{Name: "bias", Shape: []int64{64}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 0.1},
			Optimizer: ps.OptimizerSpec{Kind: ps.OptFTRL, LR: 0.05}, Consistency: ps.Consistency{Mode: ps.Async}},
	}
}

// pullAll reads every variable, returning values and versions.
func pullAll(ctx context.Context, t *testing.T, cl *ps.Client, specs []ps.VariableSpec) (map[string][]float32, map[string]int64) {
	t.Helper()
	vals, vers := map[string][]float32{}, map[string]int64{}
	for _, s := range specs {
		dst := make([]float32, s.NumElements())
		v, err := cl.Pull(ctx, s.Name, dst, 0)
		if err != nil {
			t.Fatalf("pull %s: %v", s.Name, err)
		}
		vals[s.Name], vers[s.Name] = dst, v
	}
	return vals, vers
}

// sameBits reports the first element where a and b differ bit for bit.
func sameBits(a, b []float32) (int, bool) {
	if len(a) != len(b) {
		return -1, false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, true
}

// waitRestored waits until the running nodes together host every
// partition of specs.
func waitRestored(t *testing.T, c *clustertest.Cluster, specs []ps.VariableSpec) {
	t.Helper()
	want := 0
	for _, s := range specs {
		want += len(s.Partitions())
	}
	clustertest.WaitFor(t, 20*time.Second, "partitions restored", func() error {
		have := map[string]bool{}
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				return err
			}
			for _, p := range st.Partitions {
				have[fmt.Sprintf("%s/%d", p.Key.Var, p.Key.Index)] = true
			}
		}
		if len(have) < want {
			return fmt.Errorf("%d of %d partitions hosted", len(have), want)
		}
		return nil
	})
}

// TestClusterRestartFromCheckpoint: three psd sharing a checkpoint
// directory hold variables trained a few steps (Adam, momentum in sync
// mode, FTRL); POST /checkpoint takes a cluster checkpoint; every psd is
// stopped and restarted from its data directory, and every variable pulls
// back bit-identical, at the same version. The same checkpoint then
// restores onto a new cluster of two psd, and its .npz export holds the
// same values.
func TestClusterRestartFromCheckpoint(t *testing.T) {
	skipShort(t)
	root := t.TempDir()
	c := clustertest.New(t, "--checkpoint-dir", root)
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	specs := checkpointSpecs()
	cl := c.Client("trainer-a", 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range specs {
		if err := cl.CreateVariable(ctx, s); err != nil {
			t.Fatal(err)
		}
		g := make([]float32, s.NumElements())
		for step := int64(0); step < 4; step++ {
			for i := range g {
				g[i] = float32(rng.NormFloat64())
			}
			if err := cl.Push(ctx, s.Name, g, step); err != nil {
				t.Fatalf("push %s step %d: %v", s.Name, step, err)
			}
		}
	}
	want, wantVer := pullAll(ctx, t, cl, specs)
	if wantVer["dense/kernel"] != 4 {
		t.Fatalf("sync variable at version %d after 4 steps", wantVer["dense/kernel"])
	}

	res := postCheckpoint(t, c.Nodes[1])
	parts := 0
	for _, s := range specs {
		parts += len(s.Partitions())
	}
	if res.Partitions != parts || len(res.Nodes) != 3 || res.Steps["dense/kernel"] != 4 {
		t.Fatalf("checkpoint %+v; want %d partitions from 3 nodes, dense/kernel at step 4", res, parts)
	}
	t.Logf("checkpoint %s: %d partitions, %d bytes, %.3f s", res.ID, res.Partitions, res.Bytes, res.Seconds)

	for _, n := range c.Nodes {
		n.Stop()
	}
	for _, n := range c.Nodes {
		c.Restart(n)
	}
	c.WaitMembers(3, 15*time.Second)
	waitRestored(t, c, specs)
	cl2 := c.Client("trainer-b", 0)
	for _, s := range specs {
		if err := cl2.CreateVariable(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, gotVer := pullAll(ctx, t, cl2, specs)
	for _, s := range specs {
		if i, ok := sameBits(got[s.Name], want[s.Name]); !ok {
			t.Errorf("%s after restart: element %d is %v, was %v", s.Name, i, got[s.Name][max(i, 0)], want[s.Name][max(i, 0)])
		}
		if gotVer[s.Name] != wantVer[s.Name] {
			t.Errorf("%s after restart: version %d, was %d", s.Name, gotVer[s.Name], wantVer[s.Name])
		}
	}
	// Training continues where it stopped: the sync variable takes step 4.
	if err := cl2.Push(ctx, "dense/kernel", make([]float32, specs[1].NumElements()), 4); err != nil {
		t.Errorf("sync push at step 4 after restart: %v", err)
	}

	// The same checkpoint onto a cluster of two.
	c2 := clustertest.New(t, "--checkpoint-dir", root)
	c2.Start(2)
	waitRestored(t, c2, specs)
	cl3 := c2.Client("trainer-c", 0)
	for _, s := range specs {
		if err := cl3.CreateVariable(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got2, _ := pullAll(ctx, t, cl3, specs)
	for _, s := range specs {
		if i, ok := sameBits(got2[s.Name], want[s.Name]); !ok {
			t.Errorf("%s on 2 psd: element %d differs", s.Name, i)
		}
	}

	// The .npz export has every variable with its full shape.
	resp, err := http.Get("http://" + c2.Nodes[0].HTTP + "/checkpoints/latest/npz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("npz export: %s: %s", resp.Status, body)
	}
	arrs, err := checkpoint.ReadNPZ(bytes.NewReader(body), int64(len(body)), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		a := arrs[s.Name]
		if a == nil {
			t.Fatalf("npz lacks %s (has %d arrays)", s.Name, len(arrs))
		}
		f, err := a.Float32()
		if err != nil || fmt.Sprint(a.Shape) != fmt.Sprint(s.Shape) {
			t.Fatalf("%s: shape %v, %v", s.Name, a.Shape, err)
		}
		if i, ok := sameBits(f, want[s.Name]); !ok {
			t.Errorf("npz %s: element %d differs", s.Name, i)
		}
	}
}

// checkpointResult is the part of POST /checkpoint's answer tests read.
type checkpointResult struct {
	ID         string           `json:"id"`
	Nodes      []string         `json:"nodes"`
	Partitions int              `json:"partitions"`
	Bytes      int64            `json:"bytes"`
	Steps      map[string]int64 `json:"steps"`
	Attempts   int              `json:"attempts"`
	Seconds    float64          `json:"seconds"`
}

func postCheckpoint(t *testing.T, n *clustertest.Node) checkpointResult {
	t.Helper()
	hc := http.Client{Timeout: time.Minute}
	resp, err := hc.Post("http://"+n.HTTP+"/checkpoint", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /checkpoint: %s: %s", resp.Status, body)
	}
	var res checkpointResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("POST /checkpoint: %v: %s", err, body)
	}
	return res
}

// TestCheckpointDuringSyncTraining: two workers train a sync-mode variable
// split over three psd as fast as they can while checkpoints are taken;
// each checkpoint is complete with the variable at one step, and restoring
// it onto a fresh cluster gives every element the value of that step
// (all partitions at one step, none mixed).
func TestCheckpointDuringSyncTraining(t *testing.T) {
	skipShort(t)
	root := t.TempDir()
	c := clustertest.New(t, "--checkpoint-dir", root)
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := ps.VariableSpec{Name: "k", Shape: []int64{256, 64}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.5}, Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2},
		MinPartitionBytes: 8 << 10, MaxPartitionBytes: 8 << 10}
	trainCtx, stopTraining := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		cl := c.Client(fmt.Sprintf("worker-%d", w), w)
		if err := cl.CreateVariable(ctx, spec); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]float32, spec.NumElements())
			// Every gradient is 1, so after step s every value is -0.5·s,
			// exactly (halves are exact in float32 for these magnitudes).
			g := make([]float32, spec.NumElements())
			for i := range g {
				g[i] = 1
			}
			var step int64
			for trainCtx.Err() == nil {
				v, err := cl.Pull(trainCtx, "k", dst, step)
				if err == nil {
					step = v
					err = cl.Push(trainCtx, "k", g, step)
					step++
				}
				if err != nil && trainCtx.Err() == nil {
					errs <- err
					return
				}
			}
		}()
	}
	var results []checkpointResult
	for i := 0; i < 3; i++ {
		res := postCheckpoint(t, c.Nodes[i%3])
		t.Logf("checkpoint %s during sync training: step %d, %d attempt(s), %.3f s", res.ID, res.Steps["k"], res.Attempts, res.Seconds)
		results = append(results, res)
	}
	stopTraining()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	last := results[len(results)-1]
	if last.Steps["k"] < 1 {
		t.Fatalf("training made no step before the last checkpoint: %+v", last)
	}
	// Restore the newest checkpoint onto two fresh psd.
	c2 := clustertest.New(t, "--checkpoint-dir", root)
	c2.Start(2)
	waitRestored(t, c2, []ps.VariableSpec{spec})
	cl := c2.Client("reader", 0)
	if err := cl.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, spec.NumElements())
	v, err := cl.Pull(ctx, "k", vals, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := -0.5 * float32(last.Steps["k"])
	if v != last.Steps["k"] {
		t.Errorf("restored version %d, checkpoint says step %d", v, last.Steps["k"])
	}
	for i, x := range vals {
		if x != want {
			t.Fatalf("element %d (row %d) is %v, want %v: partitions from different steps", i, i/64, x, want)
		}
	}
}
