// Package integration holds tests that run real psd and trainer processes
// on 127.0.0.1.
package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/clustertest"
	"github.com/flowps/flowps/ps"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs real processes")
	}
}

// TestClusterFormsAndDropsKilledNode: three psd started with --join list
// each other within seconds; after one is SIGKILLed the others drop it
// within the local profile's failure-detection time (documented ~1 s,
// bound 4 s).
func TestClusterFormsAndDropsKilledNode(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	start := time.Now()
	c.Start(3)
	t.Logf("3-node cluster formed in %v (processes started and all list 3 ps members)", time.Since(start).Round(time.Millisecond))

	c.Nodes[1].Kill()
	killed := time.Now()
	c.WaitMembers(2, 5*time.Second)
	t.Logf("killed psd dropped by the others after %v", time.Since(killed).Round(time.Millisecond))
	for _, n := range []*clustertest.Node{c.Nodes[0], c.Nodes[2]} {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range st.PSMembers() {
			if id == c.Nodes[1].ID {
				t.Errorf("%s still lists killed %s", n.ID, id)
			}
		}
	}
}

// TestAsyncPushesFromFourClientsAreExact: a 10-million-parameter variable
// on three psd, four clients pushing known gradients concurrently in async
// mode with SGD lr 1; every final value is checked exactly.
func TestAsyncPushesFromFourClientsAreExact(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const rows, cols, clients, steps = 10000, 1000, 4, 3
	spec := ps.VariableSpec{
		Name:        "big",
		Shape:       []int64{rows, cols},
		Init:        ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency: ps.Consistency{Mode: ps.Async},
	}
	// grad(c, k)[i] is a small integer, so every partial sum is exact in
	// float32 whatever order the servers apply pushes in.
	grad := func(cl, k, i int) float32 { return float32((i%13)+cl+k) - 6 }
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for cl := 0; cl < clients; cl++ {
		client := c.Client(fmt.Sprintf("client-%d", cl), cl)
		if err := client.CreateVariable(ctx, spec); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := make([]float32, rows*cols)
			for k := 0; k < steps; k++ {
				for i := range g {
					g[i] = grad(cl, k, i)
				}
				if err := client.Push(ctx, "big", g, 0); err != nil {
					errs <- fmt.Errorf("client %d push %d: %w", cl, k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	reader := c.Client("reader", 0)
	if err := reader.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, rows*cols)
	if _, err := reader.Pull(ctx, "big", got, 0); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, v := range got {
		want := float32(1)
		for cl := 0; cl < clients; cl++ {
			for k := 0; k < steps; k++ {
				want -= grad(cl, k, i)
			}
		}
		if v != want {
			if bad < 5 {
				t.Errorf("value %d = %v, want %v", i, v, want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d values wrong", bad, len(got))
	}
	// The variable is spread over all three servers.
	owners := 0
	for _, n := range c.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Partitions) > 0 {
			owners++
		}
	}
	if owners != 3 {
		t.Errorf("partitions spread over %d servers, want 3", owners)
	}
}

// TestSyncModeAppliesExactMeans: 2 clients × 100 steps in sync mode; every
// applied update equals the mean of that step's two gradients exactly, and
// no client ever reads a version other than the one it waited for.
func TestSyncModeAppliesExactMeans(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	c.Start(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const n, workers, steps = 3000, 2, 100
	spec := ps.VariableSpec{
		Name:              "w",
		Shape:             []int64{n},
		Init:              ps.Initializer{Kind: ps.InitZeros},
		Optimizer:         ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency:       ps.Consistency{Mode: ps.Sync, Workers: workers},
		MinPartitionBytes: 1, MaxPartitionBytes: 4 * 1000, // 3 partitions
	}
	grad := func(w, step, i int) float32 { return float32((w + 1) * ((step+i)%5 + 1)) }
	// expected[t] is the value after t steps: v(t+1) = v(t) - mean.
	expected := make([][]float32, steps+1)
	expected[0] = make([]float32, n)
	for s := 0; s < steps; s++ {
		expected[s+1] = make([]float32, n)
		for i := 0; i < n; i++ {
			mean := (grad(0, s, i) + grad(1, s, i)) / 2
			expected[s+1][i] = expected[s][i] - mean
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		client := c.Client(fmt.Sprintf("worker-%d", w), w)
		if err := client.CreateVariable(ctx, spec); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float32, n)
			g := make([]float32, n)
			for s := 0; s < steps; s++ {
				v, err := client.Pull(ctx, "w", vals, int64(s))
				if err != nil {
					errs <- fmt.Errorf("worker %d step %d pull: %w", w, s, err)
					return
				}
				if v != int64(s) {
					errs <- fmt.Errorf("worker %d waited for version %d, read %d", w, s, v)
					return
				}
				for i := range vals {
					if vals[i] != expected[s][i] {
						errs <- fmt.Errorf("worker %d step %d: value %d = %v, want %v", w, s, i, vals[i], expected[s][i])
						return
					}
				}
				for i := range g {
					g[i] = grad(w, s, i)
				}
				if err := client.Push(ctx, "w", g, int64(s)); err != nil {
					errs <- fmt.Errorf("worker %d step %d push: %w", w, s, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	reader := c.Client("reader", 0)
	if err := reader.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	final := make([]float32, n)
	v, err := reader.Pull(ctx, "w", final, steps)
	if err != nil {
		t.Fatal(err)
	}
	if v != steps {
		t.Fatalf("final version %d, want %d", v, steps)
	}
	for i := range final {
		if final[i] != expected[steps][i] {
			t.Fatalf("final value %d = %v, want %v", i, final[i], expected[steps][i])
		}
	}
}

// TestBadInputGetsClearErrorsAndServerKeepsServing sends requests a client
// library would refuse straight to a psd over gRPC.
func TestBadInputGetsClearErrorsAndServerKeepsServing(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	c.Start(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := c.Client("good", 0)
	spec := ps.VariableSpec{Name: "w", Shape: []int64{4, 3}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Init: ps.Initializer{Kind: ps.InitConstant, Value: 2}}
	if err := client.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	svc := c.Nodes[0].Service(t)
	key := ps.PartKey{Var: "w", Index: 0}
	nan := float32(math.NaN())
	cases := []struct {
		name string
		call func() error
		want error
		text string
	}{
		{"unknown variable", func() error {
			_, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "nope"}}}})
			return err
		}, ps.ErrUnknownVariable, "nope"},
		{"wrong length", func() error {
			_, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: make([]float32, 11)}}})
			return err
		}, ps.ErrShapeMismatch, "11"},
		{"row out of range", func() error {
			_, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Rows: []int64{9}, Grad: make([]float32, 3)}}})
			return err
		}, ps.ErrInvalidArgument, "9"},
		{"NaN gradient", func() error {
			_, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: []float32{0, 0, 0, 0, nan, 0, 0, 0, 0, 0, 0, 0}}}})
			return err
		}, ps.ErrNonFinite, "NaN"},
		{"other shape on create", func() error {
			bad := spec
			bad.Shape = []int64{5, 3}
			_, err := svc.Create(ctx, &ps.CreateRequest{Spec: bad, Parts: []int{0}})
			return err
		}, ps.ErrSpecMismatch, "shape"},
	}
	for _, tc := range cases {
		err := tc.call()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.text)
		}
	}
	// Nothing changed, and the server still serves.
	got := make([]float32, 12)
	if _, err := client.Pull(ctx, "w", got, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 2 {
			t.Fatalf("value %d = %v after rejected requests, want 2", i, v)
		}
	}
	if err := client.Push(ctx, "w", []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Pull(ctx, "w", got, 0); err != nil || got[0] != 1 {
		t.Fatalf("after a good push: %v, value %v, want 1", err, got[0])
	}
}

// TestPsdStartupErrorsNameTheProblem: a port in use and a --join address
// that does not answer each end psd with a clear error.
func TestPsdStartupErrorsNameTheProblem(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	c.Start(1)
	bin := clustertest.Binaries(t) + "/psd"
	free := func() string { return fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t)) }
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"grpc port in use", []string{"--listen", c.Nodes[0].GRPC, "--gossip", free(), "--http", free()},
			[]string{"--listen", c.Nodes[0].GRPC, "address already in use"}},
		{"gossip port in use", []string{"--listen", free(), "--gossip", c.Nodes[0].Gossip, "--http", free()},
			[]string{"--gossip", c.Nodes[0].Gossip}},
		{"http port in use", []string{"--listen", free(), "--gossip", free(), "--http", c.Nodes[0].HTTP},
			[]string{"--http", c.Nodes[0].HTTP}},
		{"join does not answer", []string{"--listen", free(), "--gossip", free(), "--http", free(),
			"--join", "127.0.0.1:1", "--join-timeout", "1s", "--profile", "local"},
			[]string{"--join", "127.0.0.1:1"}},
		{"unknown flag", []string{"--bogus"}, []string{"bogus"}},
	}
	for _, tc := range cases {
		out, err := exec.Command(bin, append([]string{"--id", "x"}, tc.args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%s: err = %v, want a non-zero exit\n%s", tc.name, err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: output does not mention %q:\n%s", tc.name, w, out)
			}
		}
	}
	// The running node was not disturbed.
	if _, err := c.Nodes[0].Status(); err != nil {
		t.Fatal(err)
	}
}
