package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/clustertest"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
)

// counterLoad is a set of one-value counter variables that clients push +1
// to (SGD lr 1, gradient -1, async), counting acknowledged pushes.
type counterLoad struct {
	names  []string
	acked  []atomic.Int64
	errs   chan error
	stop   chan struct{}
	wg     sync.WaitGroup
	firstA atomic.Int64 // unix nanos of the first ack, after mark, of a push to names[0] started after mark
	mark   atomic.Int64
}

func counterNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("counter-%d", i)
	}
	return out
}

func counterVar(name string) ps.VariableSpec {
	return ps.VariableSpec{Name: name, Shape: []int64{1},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency: ps.Consistency{Mode: ps.Async}}
}

// startCounters creates the counters through every client and starts one
// pushing goroutine per client.
func startCounters(ctx context.Context, t *testing.T, clients []*ps.Client, names []string) *counterLoad {
	t.Helper()
	l := &counterLoad{names: names, acked: make([]atomic.Int64, len(names)), errs: make(chan error, len(clients)), stop: make(chan struct{})}
	for _, cl := range clients {
		for _, n := range names {
			if err := cl.CreateVariable(ctx, counterVar(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for ci, cl := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				v := (ci + i) % len(names)
				start := time.Now().UnixNano()
				if err := cl.Push(ctx, names[v], []float32{-1}, 0); err != nil {
					l.errs <- fmt.Errorf("client %d push %s: %w", ci, names[v], err)
					return
				}
				l.acked[v].Add(1)
				if m := l.mark.Load(); v == 0 && m != 0 && start > m {
					l.firstA.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	return l
}

// total is the number of acknowledged pushes so far.
func (l *counterLoad) total() int64 {
	n := int64(0)
	for i := range l.acked {
		n += l.acked[i].Load()
	}
	return n
}

// waitMore waits until n more pushes were acknowledged, failing on a push
// error.
func (l *counterLoad) waitMore(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	want := l.total() + n
	clustertest.WaitFor(t, timeout, fmt.Sprintf("%d more acknowledged pushes", n), func() error {
		select {
		case err := <-l.errs:
			t.Fatal(err)
		default:
		}
		if got := l.total(); got < want {
			return fmt.Errorf("%d of %d", got, want)
		}
		return nil
	})
}

// finish stops the pushers and checks every counter against its
// acknowledged pushes.
func (l *counterLoad) finish(ctx context.Context, t *testing.T, reader *ps.Client) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Fatal(err)
	}
	for i, n := range l.names {
		if err := reader.CreateVariable(ctx, counterVar(n)); err != nil {
			t.Fatal(err)
		}
		got := []float32{0}
		if _, err := reader.Pull(ctx, n, got, 0); err != nil {
			t.Fatal(err)
		}
		if want := l.acked[i].Load(); int64(got[0]) != want {
			t.Errorf("%s = %v, acknowledged pushes %d (lost or applied twice: %d)", n, got[0], want, want-int64(got[0]))
		}
	}
	t.Logf("%d acknowledged pushes over %d counters, all exact", l.total(), len(l.names))
}

// replicationLog prints, for a failed test, every node's replication and
// membership events (the cluster's own dump shows only the last lines).
func replicationLog(t *testing.T, c *clustertest.Cluster) {
	if !t.Failed() {
		return
	}
	for _, n := range c.Nodes {
		var b strings.Builder
		for _, line := range strings.Split(n.Log(), "\n") {
			for _, w := range []string{"primary", "fenced", "deposed", "adopted", "installed", "dropped", "member", "reconcile", "takeover"} {
				if strings.Contains(line, w) {
					b.WriteString(line + "\n")
					break
				}
			}
		}
		t.Logf("---- %s replication events ----\n%s", n.ID, b.String())
	}
}

// members is the placement view of the running nodes.
func members(c *clustertest.Cluster) []sharding.Member {
	var out []sharding.Member
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, sharding.Member{ID: n.ID, Role: sharding.RolePS, Addr: n.GRPC})
		}
	}
	return out
}

// waitCopies waits until every partition of the listed one-partition
// variables is hosted by at least r running nodes at the same version.
func waitCopies(t *testing.T, c *clustertest.Cluster, names []string, r int, timeout time.Duration) {
	t.Helper()
	clustertest.WaitFor(t, timeout, fmt.Sprintf("%d copies of every partition", r), func() error {
		versions := map[string][]int64{}
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				return err
			}
			for _, p := range st.Partitions {
				k := fmt.Sprintf("%s/%d", p.Key.Var, p.Key.Index)
				versions[k] = append(versions[k], p.Version)
			}
		}
		for _, name := range names {
			k := name + "/0"
			vs := versions[k]
			same := 0
			for _, v := range vs {
				if v == maxOf(vs) {
					same++
				}
			}
			if same < r {
				return fmt.Errorf("%s: versions %v on the running nodes", k, vs)
			}
		}
		return nil
	})
}

func maxOf(vs []int64) int64 {
	m := int64(-1)
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// TestKillPrimaryLosesNoAcknowledgedUpdate: 3 psd with r = 2; 4 clients
// push +1 increments and count their acknowledged pushes; the primary of
// counter-0 is SIGKILLed mid-run; at the end every counter equals exactly
// its acknowledged pushes, and every partition is back to 2 copies.
func TestKillPrimaryLosesNoAcknowledgedUpdate(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, "--replicas", "2")
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := joinClients(c, 4)
	names := counterNames(8)
	load := startCounters(ctx, t, clients, names)
	load.waitMore(t, 400, 30*time.Second)

	victimID := sharding.Place(ps.PartKey{Var: names[0]}.String(), members(c), 2)[0].ID
	var victim *clustertest.Node
	for _, n := range c.Nodes {
		if n.ID == victimID {
			victim = n
		}
	}
	load.mark.Store(time.Now().UnixNano())
	killed := time.Now()
	victim.Kill()
	clustertest.WaitFor(t, 30*time.Second, "a push to the killed primary's partition", func() error {
		if load.firstA.Load() == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	t.Logf("failover: SIGKILL of %s to the first acknowledged push to its partition: %v",
		victimID, time.Unix(0, load.firstA.Load()).Sub(killed).Round(time.Millisecond))
	load.waitMore(t, 400, 30*time.Second)
	load.finish(ctx, t, c.Client("reader", 9))
	waitCopies(t, c, names, 2, 30*time.Second)
	t.Logf("every partition back to 2 identical copies (checked %v after the kill)", time.Since(killed).Round(time.Millisecond))
}

// TestJoinMigratesWithoutLoss: a fourth psd joins during continuous
// pushes; afterwards it hosts every partition placement gives it, at the
// primary's version, and all values are exact.
func TestJoinMigratesWithoutLoss(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, "--replicas", "2")
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := joinClients(c, 4)
	names := counterNames(12)
	load := startCounters(ctx, t, clients, names)
	load.waitMore(t, 300, 30*time.Second)
	t.Cleanup(func() { replicationLog(t, c) })

	joined := time.Now()
	newNode := c.Add()
	c.WaitMembers(4, 15*time.Second)
	seen := time.Now()
	load.waitMore(t, 600, 30*time.Second)
	t.Logf("join: psd-3 started and seen by every psd after %v; 600 more pushes acknowledged %v later",
		seen.Sub(joined).Round(time.Millisecond), time.Since(seen).Round(time.Millisecond))
	// Training goes on with the new node leading its partitions: their
	// versions on it keep growing.
	versions := func() map[string]int64 {
		st, err := newNode.Status()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, p := range st.Partitions {
			out[p.Key.Var] = p.Version
		}
		return out
	}
	led := 0
	clustertest.WaitFor(t, 20*time.Second, "pushes served by the new node", func() error {
		v0 := versions()
		load.waitMore(t, 200, 30*time.Second)
		v1 := versions()
		led = 0
		for _, n := range names {
			if sharding.Place(ps.PartKey{Var: n}.String(), members(c), 2)[0].ID != newNode.ID {
				continue
			}
			led++
			if v1[n] <= v0[n] {
				return fmt.Errorf("%s on %s: version %d, then %d", n, newNode.ID, v0[n], v1[n])
			}
		}
		return nil
	})
	t.Logf("%s leads %d counters and serves pushes to them", newNode.ID, led)
	fin := time.Now()
	load.finish(ctx, t, c.Client("reader", 9))
	t.Logf("load stopped and every counter read back in %v", time.Since(fin).Round(time.Millisecond))

	// The new node hosts its share at the primary's version.
	view := members(c)
	share := 0
	clustertest.WaitFor(t, 20*time.Second, "the new node to host its share", func() error {
		st, err := newNode.Status()
		if err != nil {
			return err
		}
		hosted := map[string]int64{}
		for _, p := range st.Partitions {
			hosted[p.Key.Var] = p.Version
		}
		share = 0
		for _, n := range names {
			owners := sharding.Place(ps.PartKey{Var: n}.String(), view, 2)
			for _, o := range owners {
				if o.ID != newNode.ID {
					continue
				}
				share++
				if _, ok := hosted[n]; !ok {
					return fmt.Errorf("%s: placement gives it to %s, which does not host it", n, newNode.ID)
				}
			}
		}
		return nil
	})
	if share == 0 {
		t.Fatalf("placement gives %s none of %d counters; use more counters", newNode.ID, len(names))
	}
	// Copies placement moved away from the old nodes are dropped.
	dropStart := time.Now()
	defer func() {
		t.Logf("moved copies dropped %v after the load stopped", time.Since(dropStart).Round(time.Millisecond))
	}()
	clustertest.WaitFor(t, 20*time.Second, "every node to host exactly its placement share", func() error {
		for _, n := range c.Nodes {
			st, err := n.Status()
			if err != nil {
				return err
			}
			for _, p := range st.Partitions {
				owners := sharding.Place(ps.PartKey{Var: p.Key.Var, Index: p.Key.Index}.String(), view, 2)
				if !slices.ContainsFunc(owners, func(m sharding.Member) bool { return m.ID == n.ID }) {
					return fmt.Errorf("%s still hosts %s/%d", n.ID, p.Key.Var, p.Key.Index)
				}
			}
		}
		return nil
	})
	waitCopies(t, c, names, 2, 20*time.Second)
	t.Logf("%s joined and hosts its %d partitions; %v from start to checked", newNode.ID, share, time.Since(joined).Round(time.Millisecond))
}

// TestReReplicationOf100MBShard measures how long the cluster takes to
// restore r = 2 for a 100 MB variable after one of its three psd is
// SIGKILLed.
func TestReReplicationOf100MBShard(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, "--replicas", "2")
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := c.Client("client-0", 0)
	const rows, cols = 25000, 1000 // 25M float32 = 100 MB
	spec := ps.VariableSpec{Name: "shard", Shape: []int64{rows, cols},
		Init:      ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}
	start := time.Now()
	if err := cl.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	g := make([]float32, rows*cols)
	for i := range g {
		g[i] = float32(i % 3)
	}
	if err := cl.Push(ctx, "shard", g, 0); err != nil {
		t.Fatal(err)
	}
	parts := len(spec.Partitions())
	t.Logf("100 MB variable (%d partitions) created and pushed with r = 2 in %v", parts, time.Since(start).Round(time.Millisecond))
	copies := func() (map[int]int, error) {
		out := map[int]int{}
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				return nil, err
			}
			for _, p := range st.Partitions {
				if p.Key.Var == "shard" && p.Version == 1 {
					out[p.Key.Index]++
				}
			}
		}
		return out, nil
	}
	before, err := c.Nodes[1].Status()
	if err != nil {
		t.Fatal(err)
	}
	lostBytes := int64(0)
	for _, p := range before.Partitions {
		if p.Key.Var == "shard" {
			r := spec.Partitions()[p.Key.Index]
			lostBytes += 4 * r.Len() * cols
		}
	}
	c.Nodes[1].Kill()
	killed := time.Now()
	c.WaitMembers(2, 10*time.Second)
	detected := time.Now()
	clustertest.WaitFor(t, 2*time.Minute, "2 copies of every partition", func() error {
		cp, err := copies()
		if err != nil {
			return err
		}
		for i := 0; i < parts; i++ {
			if cp[i] < 2 {
				return fmt.Errorf("partition %d has %d copies", i, cp[i])
			}
		}
		return nil
	})
	t.Logf("re-replication of a 100 MB shard: the killed psd held %d MB of it; r = 2 restored %v after SIGKILL (%v after the survivors dropped the node)",
		lostBytes>>20, time.Since(killed).Round(time.Millisecond), time.Since(detected).Round(time.Millisecond))
	got := make([]float32, rows*cols)
	if _, err := cl.Pull(ctx, "shard", got, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if want := 1 - float32(i%3); v != want {
			t.Fatalf("value %d = %v, want %v", i, v, want)
		}
	}
}

// TestLeaveHandsOverWithoutLoss: with r = 1 a psd's partitions exist
// nowhere else, so a SIGTERM'd psd must hand them over before it leaves;
// pushes continue throughout and every counter stays exact.
func TestLeaveHandsOverWithoutLoss(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, "--replicas", "1")
	c.Start(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := joinClients(c, 4)
	names := counterNames(8)
	load := startCounters(ctx, t, clients, names)
	load.waitMore(t, 300, 30*time.Second)
	leaverID := sharding.Place(ps.PartKey{Var: names[0]}.String(), members(c), 1)[0].ID
	for _, n := range c.Nodes {
		if n.ID == leaverID {
			start := time.Now()
			n.Stop()
			t.Logf("%s handed over and exited in %v", n.ID, time.Since(start).Round(time.Millisecond))
		}
	}
	load.waitMore(t, 300, 30*time.Second)
	load.finish(ctx, t, c.Client("reader", 9))
}

// joinClients joins n gossip clients, client-0 … client-(n-1), to c.
func joinClients(c *clustertest.Cluster, n int) []*ps.Client {
	clients := make([]*ps.Client, n)
	for i := range clients {
		clients[i] = c.Client(fmt.Sprintf("client-%d", i), i)
	}
	return clients
}
