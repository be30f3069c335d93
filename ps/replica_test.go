package ps_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/inproc"
)

// rcluster is a replicated cluster of ps.Servers on an inproc network, with
// membership views the test sets by hand (standing in for gossip).
type rcluster struct {
	t       *testing.T
	net     *inproc.Network
	r       int
	servers map[string]*ps.Server
	stops   map[string]func()
	members sharding.View
	clients *memberSource
}

// memberSource is a MemberSource the test changes.
type memberSource struct {
	mu sync.Mutex
	ms []sharding.Member
}

func (m *memberSource) Members() []sharding.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ms)
}

func (m *memberSource) set(ms []sharding.Member) {
	m.mu.Lock()
	m.ms = slices.Clone(ms)
	m.mu.Unlock()
}

func newRCluster(t *testing.T, n, r int) *rcluster {
	c := &rcluster{t: t, net: inproc.NewNetwork(), r: r, servers: map[string]*ps.Server{}, stops: map[string]func(){}, clients: &memberSource{}}
	for i := 0; i < n; i++ {
		c.start(fmt.Sprintf("ps-%d", i))
	}
	c.setViewAll()
	return c
}

func member(id string) sharding.Member {
	return sharding.Member{ID: id, Role: sharding.RolePS, Addr: id}
}

// start adds a server (not yet in anyone's view).
func (c *rcluster) start(id string) *ps.Server {
	cfg := ps.DefaultServerConfig()
	cfg.ID = id
	if testing.Verbose() && os.Getenv("PS_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Replication = &ps.ReplicationConfig{Replicas: c.r, Dialer: c.net.Dialer(id), Timeout: 2 * time.Second,
		GapWait: 500 * time.Millisecond, StableAfter: time.Hour}
	s, err := ps.NewServer(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.servers[id] = s
	c.stops[id] = c.net.Serve(id, s)
	c.t.Cleanup(func() { c.stops[id](); s.Close() })
	c.members.Members = append(c.members.Members, member(id))
	slices.SortFunc(c.members.Members, func(a, b sharding.Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return s
}

// kill stops a server abruptly and removes it from every view.
func (c *rcluster) kill(id string) {
	c.stops[id]()
	c.servers[id].Close()
	delete(c.servers, id)
	c.members.Members = slices.DeleteFunc(c.members.Members, func(m sharding.Member) bool { return m.ID == id })
	c.setViewAll()
}

// setViewAll gives every live server and the clients the full view.
func (c *rcluster) setViewAll() {
	c.members.Epoch++
	c.clients.set(c.members.Members)
	for _, s := range c.servers {
		s.SetView(sharding.View{Epoch: c.members.Epoch, Members: slices.Clone(c.members.Members)})
	}
}

func (c *rcluster) client(id string, worker int) *ps.Client {
	cfg := ps.DefaultClientConfig()
	cfg.ID, cfg.Worker, cfg.Members, cfg.Dialer = id, worker, c.clients, c.net.Dialer(id)
	cfg.RetryTimeout = 20 * time.Second
	cl, err := ps.NewClient(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *rcluster) owners(key ps.PartKey) []sharding.Member {
	return sharding.Place(key.String(), c.members.Members, c.r)
}

func counterSpec(name string) ps.VariableSpec {
	return ps.VariableSpec{Name: name, Shape: []int64{1},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
		Consistency: ps.Consistency{Mode: ps.Async}}
}

// waitFor polls cond until it holds or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReplicated waits until every owner of every key holds it at the
// primary's (term, LSN) and returns their snapshots by owner.
func (c *rcluster) waitReplicated(keys []ps.PartKey) map[ps.PartKey][]*ps.PartitionState {
	c.t.Helper()
	out := map[ps.PartKey][]*ps.PartitionState{}
	waitFor(c.t, 10*time.Second, "replicas in sync", func() error {
		for _, k := range keys {
			var sts []*ps.PartitionState
			for _, m := range c.owners(k) {
				st, err := c.servers[m.ID].Snapshot(k)
				if err != nil {
					return err
				}
				sts = append(sts, st)
			}
			for _, st := range sts[1:] {
				if st.LSN != sts[0].LSN || st.Term != sts[0].Term {
					return fmt.Errorf("%s: owner at %v/%d, primary at %v/%d", k, st.Term, st.LSN, sts[0].Term, sts[0].LSN)
				}
			}
			out[k] = sts
		}
		return nil
	})
	return out
}

// pushCounters runs clients that push +1 to random counters until stop is
// closed, counting acknowledged pushes per counter.
func pushCounters(ctx context.Context, t *testing.T, clients []*ps.Client, names []string, stop <-chan struct{}) (acked []atomic.Int64, wait func() error) {
	acked = make([]atomic.Int64, len(names))
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for ci, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := (ci + i) % len(names)
				if err := cl.Push(ctx, names[v], []float32{-1}, 0); err != nil {
					errs <- fmt.Errorf("client %d push %s: %w", ci, names[v], err)
					return
				}
				acked[v].Add(1)
			}
		}()
	}
	return acked, func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}
}

func checkCounters(ctx context.Context, t *testing.T, cl *ps.Client, names []string, acked []atomic.Int64) {
	t.Helper()
	total := int64(0)
	for i, n := range names {
		got := []float32{0}
		if _, err := cl.Pull(ctx, n, got, 0); err != nil {
			t.Fatal(err)
		}
		if want := acked[i].Load(); int64(got[0]) != want {
			t.Errorf("%s = %v, acknowledged pushes %d", n, got[0], want)
		}
		total += acked[i].Load()
	}
	if total == 0 {
		t.Fatal("no push was acknowledged")
	}
	t.Logf("%d acknowledged pushes over %d counters", total, len(names))
}

// TestReplicationKeepsReplicasBitIdentical: concurrent dense and sparse
// pushes with Adam from three clients; afterwards every replica's state
// (values, slots, Adam step, version, dedup windows) equals its primary's.
func TestReplicationKeepsReplicasBitIdentical(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := ps.VariableSpec{Name: "emb", Shape: []int64{4096, 16},
		Init:              ps.Initializer{Kind: ps.InitUniform, Min: -1, Max: 1, Seed: 3},
		Optimizer:         ps.OptimizerSpec{Kind: ps.OptAdam, LR: 0.01},
		Consistency:       ps.Consistency{Mode: ps.Async},
		MaxPartitionBytes: 64 << 10,
		MinPartitionBytes: 16 << 10,
	}
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		cl := c.client(fmt.Sprintf("c%d", w), w)
		if err := cl.CreateVariable(ctx, spec); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if i%3 == 0 {
					g := make([]float32, spec.NumElements())
					for j := range g {
						g[j] = float32((j+i+w)%7) - 3
					}
					if err := cl.Push(ctx, "emb", g, 0); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				rows := []int64{int64((i * 131) % 4096), int64((i*7 + w*1000) % 4096), int64((i * 131) % 4096)}
				g := make([]float32, len(rows)*16)
				for j := range g {
					g[j] = float32(j%5) * 0.5
				}
				if err := cl.PushMany(ctx, []ps.PushOp{{Var: "emb", Rows: rows, Grad: g}}, ps.PushOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var keys []ps.PartKey
	for i := range spec.Partitions() {
		keys = append(keys, ps.PartKey{Var: "emb", Index: i})
	}
	if len(keys) < 3 {
		t.Fatalf("want several partitions, got %d", len(keys))
	}
	for k, sts := range c.waitReplicated(keys) {
		if len(sts) != 2 {
			t.Fatalf("%s: %d owners", k, len(sts))
		}
		if sts[0].LSN < 30 {
			t.Errorf("%s: primary LSN %d, want at least the 30 dense pushes", k, sts[0].LSN)
		}
		if !reflect.DeepEqual(sts[0], sts[1]) {
			t.Errorf("%s: replica differs from primary", k)
		}
	}
}

// TestFailoverLosesNoAcknowledgedUpdate: four clients push +1 to counters
// on three servers with r = 2; one server is killed mid-run; every counter
// ends equal to the number of acknowledged pushes, and the partitions are
// back to two copies.
func TestFailoverLosesNoAcknowledgedUpdate(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := []string{"a", "b", "c", "d", "e", "f"}
	var clients []*ps.Client
	for i := 0; i < 4; i++ {
		cl := c.client(fmt.Sprintf("c%d", i), i)
		for _, n := range names {
			if err := cl.CreateVariable(ctx, counterSpec(n)); err != nil {
				t.Fatal(err)
			}
		}
		clients = append(clients, cl)
	}
	stop := make(chan struct{})
	acked, wait := pushCounters(ctx, t, clients, names, stop)
	waitFor(t, 10*time.Second, "pushes before the kill", func() error {
		if acked[0].Load() < 20 {
			return errors.New("too few")
		}
		return nil
	})
	victim := c.owners(ps.PartKey{Var: "a"})[0].ID
	c.kill(victim)
	killed := time.Now()
	before := acked[0].Load()
	waitFor(t, 10*time.Second, "pushes after the kill", func() error {
		if acked[0].Load() < before+20 {
			return errors.New("too few")
		}
		return nil
	})
	t.Logf("killed %s; 20 more pushes to its partition acknowledged after %v", victim, time.Since(killed))
	close(stop)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	checkCounters(ctx, t, clients[0], names, acked)
	var keys []ps.PartKey
	for _, n := range names {
		keys = append(keys, ps.PartKey{Var: n})
	}
	for k, sts := range c.waitReplicated(keys) {
		if len(sts) != 2 || !reflect.DeepEqual(sts[0].Values, sts[1].Values) {
			t.Errorf("%s: not back to 2 identical copies", k)
		}
	}
}

// TestRetriedPushAfterFailoverIsAppliedOnce: a push reaches the primary,
// is replicated, and its response is lost; the primary dies; the client
// retries on the new primary, which recognises the retry.
func TestRetriedPushAfterFailoverIsAppliedOnce(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client("c0", 0)
	if err := cl.CreateVariable(ctx, counterSpec("x")); err != nil {
		t.Fatal(err)
	}
	owners := c.owners(ps.PartKey{Var: "x"})
	primary, replica := owners[0].ID, owners[1].ID
	var dropped atomic.Bool
	c.net.SetFault(func(from, to, method string) inproc.Fault {
		if from == "c0" && to == primary && method == inproc.MethodPush && dropped.CompareAndSwap(false, true) {
			go c.kill(primary) // the primary dies right after applying
			return inproc.Fault{DropResponse: true}
		}
		return inproc.Fault{}
	})
	if err := cl.Push(ctx, "x", []float32{-1}, 0); err != nil {
		t.Fatal(err)
	}
	if !dropped.Load() {
		t.Fatal("fault did not fire")
	}
	got := []float32{0}
	if _, err := cl.Pull(ctx, "x", got, 0); err != nil {
		t.Fatal(err)
	}
	if got[0] != 1 {
		t.Fatalf("x = %v after one acknowledged push, want 1", got[0])
	}
	// The replica that took over recognised the retry (unless the retry
	// raced ahead of the kill and hit the old primary).
	if d := c.servers[replica].Stats().Duplicates; d == 0 {
		t.Logf("note: retry was not seen by %s as a duplicate", replica)
	}
}

// TestMinorityPartitionRefusesWritesAndHealLosesNothing: a network
// partition isolates one server; its side refuses writes (no majority of
// the stable membership), the majority side takes over its partitions and
// serves; after healing, nothing acknowledged on either side is lost.
func TestMinorityPartitionRefusesWritesAndHealLosesNothing(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := []string{"a", "b", "c", "d", "e", "f"}
	cl := c.client("c0", 0)
	for _, n := range names {
		if err := cl.CreateVariable(ctx, counterSpec(n)); err != nil {
			t.Fatal(err)
		}
	}
	acked := make([]atomic.Int64, len(names))
	pushAll := func(rounds int) {
		for r := 0; r < rounds; r++ {
			for i, n := range names {
				if err := cl.Push(ctx, n, []float32{-1}, 0); err != nil {
					t.Fatalf("push %s: %v", n, err)
				}
				acked[i].Add(1)
			}
		}
	}
	pushAll(5)
	// Isolate the primary of "a".
	lone := c.owners(ps.PartKey{Var: "a"})[0].ID
	var rest []string
	var restMembers []sharding.Member
	for _, m := range c.members.Members {
		if m.ID != lone {
			rest = append(rest, m.ID)
			restMembers = append(restMembers, m)
		}
	}
	c.net.Partition([]string{lone, "lone-client"}, append(rest, "c0"))
	c.members.Epoch++
	c.servers[lone].SetView(sharding.View{Epoch: c.members.Epoch, Members: []sharding.Member{member(lone)}})
	for _, id := range rest {
		c.servers[id].SetView(sharding.View{Epoch: c.members.Epoch, Members: restMembers})
	}
	c.clients.set(restMembers)
	// The lone server refuses writes, even to partitions it led.
	svc, _ := c.net.Dialer("lone-client").Dial(ctx, lone)
	_, err := svc.Push(ctx, &ps.PushRequest{ClientID: "lone-client", Seq: 1, Parts: []ps.PushPart{{Key: ps.PartKey{Var: "a"}, Grad: []float32{-1}}}})
	if !errors.Is(err, ps.ErrUnavailable) {
		t.Fatalf("push on the minority side: %v, want ErrUnavailable", err)
	}
	pushAll(5) // the majority side serves everything
	c.net.Heal()
	c.setViewAll()
	pushAll(5)
	checkCounters(ctx, t, cl, names, acked)
}

// TestJoinMigratesPartitions: a fourth server joins a loaded cluster; the
// partitions placement gives it are copied to it before it serves them,
// and all values stay exact under continuous pushes.
func TestJoinMigratesPartitions(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := make([]string, 12)
	for i := range names {
		names[i] = fmt.Sprintf("v%d", i)
	}
	var clients []*ps.Client
	for i := 0; i < 2; i++ {
		cl := c.client(fmt.Sprintf("c%d", i), i)
		for _, n := range names {
			if err := cl.CreateVariable(ctx, counterSpec(n)); err != nil {
				t.Fatal(err)
			}
		}
		clients = append(clients, cl)
	}
	stop := make(chan struct{})
	acked, wait := pushCounters(ctx, t, clients, names, stop)
	waitFor(t, 10*time.Second, "pushes before the join", func() error {
		if acked[0].Load() < 10 {
			return errors.New("too few")
		}
		return nil
	})
	c.start("ps-3")
	c.setViewAll()
	var keys []ps.PartKey
	mine := 0
	for _, n := range names {
		k := ps.PartKey{Var: n}
		keys = append(keys, k)
		for _, m := range c.owners(k) {
			if m.ID == "ps-3" {
				mine++
			}
		}
	}
	if mine == 0 {
		t.Fatal("placement gives the new server nothing; pick other names")
	}
	base := acked[0].Load()
	waitFor(t, 10*time.Second, "pushes after the join", func() error {
		if acked[0].Load() < base+10 {
			return errors.New("too few")
		}
		return nil
	})
	close(stop)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	c.waitReplicated(keys)
	if hosted := len(c.servers["ps-3"].Status()); hosted != mine {
		t.Errorf("new server hosts %d partitions, placement gives it %d", hosted, mine)
	}
	// Copies placement moved away are dropped once their primary and its
	// replicas are in sync.
	waitFor(t, 10*time.Second, "moved copies dropped", func() error {
		for id, s := range c.servers {
			for _, st := range s.Status() {
				if !slices.ContainsFunc(c.owners(st.Key), func(m sharding.Member) bool { return m.ID == id }) {
					return fmt.Errorf("%s still hosts %s", id, st.Key)
				}
			}
		}
		return nil
	})
	checkCounters(ctx, t, clients[0], names, acked)
}

// TestDrainHandsOverWithOneCopy: with r = 1 a leaving server's partitions
// exist nowhere else; Drain hands them to their new owners first, so a
// graceful leave loses nothing.
func TestDrainHandsOverWithOneCopy(t *testing.T) {
	c := newRCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{"a", "b", "c", "d", "e", "f"}
	cl := c.client("c0", 0)
	for _, n := range names {
		if err := cl.CreateVariable(ctx, counterSpec(n)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := cl.Push(ctx, n, []float32{-1}, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	leaving := c.owners(ps.PartKey{Var: "a"})[0].ID
	if err := c.servers[leaving].Drain(ctx); err != nil {
		t.Fatal(err)
	}
	c.kill(leaving)
	for _, n := range names {
		got := []float32{0}
		if _, err := cl.Pull(ctx, n, got, 0); err != nil {
			t.Fatal(err)
		}
		if got[0] != 3 {
			t.Errorf("%s = %v after a graceful leave, want 3", n, got[0])
		}
	}
}

// TestNoFreshCopyWhileStableMembersAreMissing: while a member of the stable
// membership is missing from the view (crashed but not yet replaced as
// stable, or behind a partition), a Create that finds no copy of a
// partition refuses to make a fresh one, which could shadow the missing
// member's copy.
func TestNoFreshCopyWhileStableMembersAreMissing(t *testing.T) {
	c := newRCluster(t, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.kill("ps-2")
	spec := counterSpec("fresh")
	key := ps.PartKey{Var: "fresh"}
	primary := c.servers[c.owners(key)[0].ID]
	_, err := primary.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}})
	if !errors.Is(err, ps.ErrUnavailable) {
		t.Fatalf("create with a stable member missing: %v, want ErrUnavailable", err)
	}
}

// TestSyncStepSurvivesPrimaryChange: in sync mode with two workers,
// worker 0 pushes step 0 and waits in a pull for version 1; then the
// primary dies (kill) or placement hands the partition to a joining server
// (join, where the old primary stays up and must release the waiting
// pull). Worker 1's push for step 0 completes the step on the new primary,
// which holds worker 0's replicated gradient, and worker 0 reads the exact
// mean.
func TestSyncStepSurvivesPrimaryChange(t *testing.T) {
	for _, how := range []string{"kill", "join"} {
		t.Run(how, func(t *testing.T) {
			r := 2
			if how == "join" {
				r = 1
			}
			c := newRCluster(t, 3, r)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			name := "s"
			if how == "join" {
				// A variable whose primary will be the joining ps-3. With
				// r = 1 the old primary keeps no copy, so only its
				// demotion (not a replicated op) can release the pull.
				four := append(slices.Clone(c.members.Members), member("ps-3"))
				for i := 0; ; i++ {
					name = fmt.Sprintf("s%d", i)
					if sharding.Place(name+"/0", four, 1)[0].ID == "ps-3" {
						break
					}
				}
			}
			spec := ps.VariableSpec{Name: name, Shape: []int64{4},
				Init:        ps.Initializer{Kind: ps.InitConstant, Value: 10},
				Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
				Consistency: ps.Consistency{Mode: ps.Sync, Workers: 2}}
			w0, w1 := c.client("w0", 0), c.client("w1", 1)
			for _, w := range []*ps.Client{w0, w1} {
				if err := w.CreateVariable(ctx, spec); err != nil {
					t.Fatal(err)
				}
			}
			if err := w0.Push(ctx, name, []float32{1, 2, 3, 4}, 0); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, 4)
			done := make(chan error, 1)
			go func() {
				// Bounded well below ctx: the pull must be released
				// promptly, not when its context ends.
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := w0.Pull(pctx, name, got, 1)
				done <- err
			}()
			primary := c.owners(ps.PartKey{Var: name})[0].ID
			old := c.servers[primary]
			waitFor(t, 5*time.Second, "the pull to wait", func() error {
				if old.Stats().StalenessWaits == 0 {
					return errors.New("not waiting yet")
				}
				return nil
			})
			if how == "kill" {
				c.kill(primary)
			} else {
				c.start("ps-3")
				c.setViewAll()
			}
			if err := w1.Push(ctx, name, []float32{3, 2, 1, 0}, 0); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if want := []float32{8, 8, 8, 8}; !slices.Equal(got, want) {
				t.Fatalf("after the step: %v, want %v", got, want)
			}
		})
	}
}
