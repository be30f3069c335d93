package sharding

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testLogger discards logs unless FLOWPS_TEST_LOG is set (memberlist's
// goroutines may log after a test ends, so t.Log is not safe here).
func testLogger() *slog.Logger {
	if os.Getenv("FLOWPS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// testProfile is the profile newNode uses; only TestMeasureMembership
// changes it (tests here do not run in parallel).
var testProfile = ProfileLocal

func newNode(t *testing.T, id string, key []byte) *Membership {
	t.Helper()
	m, err := NewMembership(MembershipConfig{
		Self:      Member{ID: id, Role: RolePS, Addr: "127.0.0.1:1", Host: "h"},
		BindAddr:  "127.0.0.1:0",
		SecretKey: key,
		Profile:   testProfile,
		Logger:    testLogger(),
	})
	if err != nil {
		t.Fatalf("NewMembership(%s): %v", id, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func memberIDs(m *Membership) []string { return ids(m.Members()) }

func sees(m *Membership, want ...string) bool {
	return slices.Equal(memberIDs(m), want)
}

// cluster starts n nodes and joins them through the first; it returns the
// nodes and the time from the first Join until every node sees all.
func cluster(t *testing.T, n int, key []byte) ([]*Membership, time.Duration) {
	t.Helper()
	nodes := make([]*Membership, n)
	var want []string
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("n%d", i+1), key)
		want = append(want, nodes[i].Self().ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	for _, m := range nodes[1:] {
		if k, err := m.Join(ctx, []string{nodes[0].Self().Gossip}); err != nil || k != 1 {
			t.Fatalf("%s join: %d, %v", m.Self().ID, k, err)
		}
	}
	waitFor(t, 5*time.Second, "convergence", func() bool {
		for _, m := range nodes {
			if !sees(m, want...) {
				return false
			}
		}
		return true
	})
	return nodes, time.Since(start)
}

func TestMembershipConverges(t *testing.T) {
	nodes, took := cluster(t, 3, nil)
	t.Logf("3 nodes (local profile) converged in %v", took)
	for _, m := range nodes {
		ms := m.Members()
		if !slices.IsSortedFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) }) {
			t.Errorf("%s: members not sorted: %v", m.Self().ID, ids(ms))
		}
		for _, other := range nodes {
			got, ok := m.View().Lookup(other.Self().ID)
			if !ok || got != other.Self() {
				t.Errorf("%s sees %s as %+v, it says %+v", m.Self().ID, other.Self().ID, got, other.Self())
			}
		}
		if e := m.Epoch(); e < 3 {
			t.Errorf("%s: epoch %d after 3 joins", m.Self().ID, e)
		}
		// Same view, same placement on every node.
		if a, b := ids(m.View().Owners("w/0", 2)), ids(nodes[0].View().Owners("w/0", 2)); !slices.Equal(a, b) {
			t.Errorf("owners differ: %v vs %v", a, b)
		}
	}
	if g := nodes[0].Self().Gossip; !strings.HasPrefix(g, "127.0.0.1:") || strings.HasSuffix(g, ":0") {
		t.Errorf("Self().Gossip = %q, want the bound 127.0.0.1 port", g)
	}
}

func TestMembershipLeaveIsSeen(t *testing.T) {
	nodes, _ := cluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sub, stop := nodes[0].Subscribe()
	defer stop()
	e0 := nodes[0].Epoch()
	start := time.Now()
	if err := nodes[2].Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	took := waitFor(t, time.Second, "others drop the leaver", func() bool {
		return sees(nodes[0], "n1", "n2") && sees(nodes[1], "n1", "n2")
	})
	t.Logf("leave seen by both others %v after Leave began (%v after it returned)", time.Since(start), took)
	if e := nodes[0].Epoch(); e != e0+1 {
		t.Errorf("epoch %d after one leave, was %d", e, e0)
	}
	// The subscriber's latest view is the post-leave one.
	waitFor(t, time.Second, "subscriber sees the leave", func() bool {
		select {
		case v := <-sub:
			return v.Epoch == e0+1 && len(v.Members) == 2
		default:
			return false
		}
	})
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// failureBound is the documented worst case for ProfileLocal in a 3-node
// cluster: probe round (2 × 200 ms) + maximum suspicion timeout (3.6 s).
const failureBound = 4 * time.Second

func detectFailure(t *testing.T) time.Duration {
	nodes, _ := cluster(t, 3, nil)
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil { // no Leave: a crash
		t.Fatal(err)
	}
	bound := failureBound + time.Second
	if testProfile == ProfileLAN {
		bound = time.Minute
	}
	waitFor(t, bound, "failure detected", func() bool {
		return sees(nodes[0], "n1", "n2") && sees(nodes[1], "n1", "n2")
	})
	return time.Since(start)
}

func TestMembershipDetectsFailure(t *testing.T) {
	took := detectFailure(t)
	t.Logf("crash of 1 of 3 nodes (local profile) detected by both others in %v", took)
	if took > failureBound {
		t.Errorf("failure detection took %v, documented bound %v", took, failureBound)
	}
}

// TestMeasureMembership repeats convergence and failure detection to report
// their spread; run with FLOWPS_MEASURE=1 (local profile, 10 rounds) or
// FLOWPS_MEASURE=lan (LAN profile, 3 rounds, no bound asserted).
func TestMeasureMembership(t *testing.T) {
	rounds := 10
	switch os.Getenv("FLOWPS_MEASURE") {
	case "":
		t.Skip("set FLOWPS_MEASURE=1 or =lan to measure")
	case "lan":
		testProfile, rounds = ProfileLAN, 3
		defer func() { testProfile = ProfileLocal }()
	}
	var conv, fail []time.Duration
	for range rounds {
		t.Run("round", func(t *testing.T) {
			_, c := cluster(t, 3, nil)
			conv = append(conv, c)
			fail = append(fail, detectFailure(t))
		})
	}
	slices.Sort(conv)
	slices.Sort(fail)
	t.Logf("convergence: min %v median %v max %v", conv[0], conv[len(conv)/2], conv[len(conv)-1])
	t.Logf("failure detection: min %v median %v max %v", fail[0], fail[len(fail)/2], fail[len(fail)-1])
}

func TestMembershipUpdateSelfPropagates(t *testing.T) {
	nodes, _ := cluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e0 := nodes[0].Epoch()
	up := nodes[1].Self()
	up.Fabric = "fi_addr_0a0b0c0d"
	up.FabricProvider = "tcp;ofi_rxm"
	up.Capacity = 2
	if err := nodes[1].UpdateSelf(ctx, up); err != nil {
		t.Fatalf("UpdateSelf: %v", err)
	}
	if got := nodes[1].Self(); got != up {
		t.Errorf("Self() = %+v, want %+v", got, up)
	}
	for _, m := range nodes {
		waitFor(t, 2*time.Second, m.Self().ID+" sees the update", func() bool {
			got, ok := m.View().Lookup("n2")
			return ok && got == up
		})
	}
	if e := nodes[0].Epoch(); e != e0+1 {
		t.Errorf("epoch %d after one update, was %d", e, e0)
	}

	other := up
	other.ID = "renamed"
	if err := nodes[1].UpdateSelf(ctx, other); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("renaming UpdateSelf: %v, want ErrInvalidConfig", err)
	}
	big := up
	big.Fabric = strings.Repeat("ab", MaxMetaSize)
	err := nodes[1].UpdateSelf(ctx, big)
	if !errors.Is(err, ErrMetaTooLarge) || !strings.Contains(err.Error(), "512") {
		t.Errorf("oversized UpdateSelf: %v, want ErrMetaTooLarge naming the limit", err)
	}
	if got := nodes[1].Self(); got != up {
		t.Errorf("a refused update changed Self() to %+v", got)
	}
}

func TestMembershipWrongKeyCannotJoin(t *testing.T) {
	keyA := bytes.Repeat([]byte{1}, 32)
	keyB := bytes.Repeat([]byte{2}, 32)
	nodes, _ := cluster(t, 2, keyA)
	for _, c := range []struct {
		name string
		key  []byte
	}{{"wrong-key", keyB}, {"no-key", nil}} {
		intruder := newNode(t, c.name, c.key)
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		n, err := intruder.Join(ctx, []string{nodes[0].Self().Gossip})
		cancel()
		// Asserted behaviour: Join keeps failing until ctx ends, then
		// reports ErrJoin naming the seed; the cluster never lists it.
		if err == nil || !errors.Is(err, ErrJoin) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), nodes[0].Self().Gossip) {
			t.Errorf("%s: Join = %d, %v; want ErrJoin naming the seed", c.name, n, err)
		}
		t.Logf("%s: %v", c.name, err)
		if !sees(nodes[0], "n1", "n2") || !sees(nodes[1], "n1", "n2") || !sees(intruder, c.name) {
			t.Errorf("%s: views %v %v %v", c.name, memberIDs(nodes[0]), memberIDs(nodes[1]), memberIDs(intruder))
		}
	}
}

func TestMembershipDeadSeed(t *testing.T) {
	m := newNode(t, "n1", nil)
	// A port nobody listens on: bind one, then close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := m.Join(ctx, []string{dead})
	if n != 0 || !errors.Is(err, ErrJoin) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("Join(dead seed) = %d, %v; want ErrJoin naming %s", n, err, dead)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Join overran its context by %v", el)
	}
	t.Logf("dead seed: %v", err)
	// No seeds at all: nothing to do.
	if n, err := m.Join(ctx, nil); n != 0 || err != nil {
		t.Errorf("Join(no seeds) = %d, %v", n, err)
	}
	if _, err := m.Join(ctx, []string{"no-port"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Join(malformed seed) = %v, want ErrInvalidConfig", err)
	}
}

// countHandler counts log records whose message has a prefix.
type countHandler struct {
	prefix string
	n      *atomic.Int64
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

func TestMembershipJoinRetriesUntilSeedAppears(t *testing.T) {
	var failed atomic.Int64
	m, err := NewMembership(MembershipConfig{
		Self:     Member{ID: "late", Role: RoleTrainer},
		BindAddr: "127.0.0.1:0",
		Profile:  ProfileLocal,
		Logger:   slog.New(countHandler{"join attempt failed", &failed}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	go func() {
		n, err := m.Join(ctx, []string{addr})
		done <- res{n, err}
	}()
	// Start the seed on that address once Join has failed twice.
	waitFor(t, 2*time.Second, "two failed attempts", func() bool { return failed.Load() >= 2 })
	var seed *Membership
	waitFor(t, 2*time.Second, "seed binds the freed port", func() bool {
		s, err := NewMembership(MembershipConfig{Self: Member{ID: "seed", Role: RolePS}, BindAddr: addr, Profile: ProfileLocal})
		if err != nil {
			return false
		}
		seed = s
		return true
	})
	t.Cleanup(func() { _ = seed.Shutdown() })
	r := <-done
	if r.err != nil || r.n != 1 {
		t.Fatalf("Join = %d, %v", r.n, r.err)
	}
	waitFor(t, 2*time.Second, "both see each other", func() bool { return sees(m, "late", "seed") && sees(seed, "late", "seed") })
}

func TestNewMembershipErrors(t *testing.T) {
	m := newNode(t, "n1", nil)
	used := m.Self().Gossip
	_, err := NewMembership(MembershipConfig{Self: Member{ID: "n2", Role: RolePS}, BindAddr: used, Profile: ProfileLocal})
	if !errors.Is(err, ErrBind) || !strings.Contains(err.Error(), used) {
		t.Errorf("port in use: %v, want ErrBind naming %s", err, used)
	}
	t.Logf("port in use: %v", err)
	ok := Member{ID: "x", Role: RolePS}
	for _, c := range []struct {
		name string
		cfg  MembershipConfig
		want error
	}{
		{"no id", MembershipConfig{Self: Member{Role: RolePS}}, ErrInvalidConfig},
		{"bad role", MembershipConfig{Self: Member{ID: "x", Role: "boss"}}, ErrInvalidConfig},
		{"negative capacity", MembershipConfig{Self: Member{ID: "x", Role: RolePS, Capacity: -1}}, ErrInvalidConfig},
		{"nan capacity", MembershipConfig{Self: Member{ID: "x", Role: RolePS, Capacity: math.NaN()}}, ErrInvalidConfig},
		{"bad endpoint", MembershipConfig{Self: Member{ID: "x", Role: RolePS, Addr: "nohostport"}}, ErrInvalidConfig},
		{"bad profile", MembershipConfig{Self: ok, Profile: "wan"}, ErrInvalidConfig},
		{"bad bind", MembershipConfig{Self: ok, BindAddr: "127.0.0.1"}, ErrInvalidConfig},
		{"bad port", MembershipConfig{Self: ok, BindAddr: "127.0.0.1:99999"}, ErrInvalidConfig},
		{"bad advertise", MembershipConfig{Self: ok, BindAddr: "127.0.0.1:0", AdvertiseAddr: "x"}, ErrInvalidConfig},
		{"bad seed", MembershipConfig{Self: ok, BindAddr: "127.0.0.1:0", Seeds: []string{"x"}}, ErrInvalidConfig},
		{"bad key", MembershipConfig{Self: ok, BindAddr: "127.0.0.1:0", SecretKey: []byte("short")}, ErrInvalidConfig},
		{"huge meta", MembershipConfig{Self: Member{ID: "x", Role: RolePS, Host: strings.Repeat("h", 600)}, BindAddr: "127.0.0.1:0"}, ErrMetaTooLarge},
	} {
		if m, err := NewMembership(c.cfg); !errors.Is(err, c.want) {
			if m != nil {
				m.Shutdown()
			}
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMembershipAfterShutdown(t *testing.T) {
	m := newNode(t, "n1", nil)
	sub, stop := m.Subscribe()
	if v := <-sub; v.Epoch != 1 || !slices.Equal(ids(v.Members), []string{"n1"}) {
		t.Errorf("first view %+v, want epoch 1 with n1", v)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub; ok {
		t.Error("subscription channel open after Shutdown")
	}
	stop() // after Shutdown: harmless
	stop()
	if err := m.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	ctx := context.Background()
	if _, err := m.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Shutdown: %v", err)
	}
	if err := m.Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := m.UpdateSelf(ctx, m.Self()); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateSelf after Shutdown: %v", err)
	}
	if ch, _ := m.Subscribe(); ch != nil {
		if _, ok := <-ch; ok {
			t.Error("Subscribe after Shutdown gave an open channel")
		}
	}
}

func TestSubscribeCancel(t *testing.T) {
	m := newNode(t, "n1", nil)
	sub, stop := m.Subscribe()
	<-sub
	stop()
	if _, ok := <-sub; ok {
		t.Error("channel open after cancel")
	}
	stop()
}

func TestSlogWriterLevels(t *testing.T) {
	var buf bytes.Buffer
	w := &slogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	fmt.Fprintf(w, "[DEBUG] memberlist: a\n[WARN] memberlist: b\n[ERR] memberlist: c\nplain\n")
	out := buf.String()
	for _, want := range []string{"level=DEBUG msg=a", "level=WARN msg=b", "level=ERROR msg=c", "level=INFO msg=plain"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// TestMembershipReconnectsFailedMember: a member that failed and comes back
// at the same address without joining anyone (as after a network partition
// heals, when each side believes the other dead) is merged back by the
// others' reconnect loop.
func TestMembershipReconnectsFailedMember(t *testing.T) {
	nodes, _ := cluster(t, 3, nil)
	gone := nodes[2]
	addr := gone.Self().Gossip
	if err := gone.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "failure seen", func() bool { return sees(nodes[0], "n1", "n2") && sees(nodes[1], "n1", "n2") })
	back, err := NewMembership(MembershipConfig{
		Self:     Member{ID: "n3", Role: RolePS, Addr: "127.0.0.1:1", Host: "h"},
		BindAddr: addr,
		Profile:  testProfile,
		Logger:   testLogger(),
	})
	if err != nil {
		t.Fatalf("restart n3 at %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = back.Shutdown() })
	// n3 calls no Join: only the others' reconnect loop can merge it. It
	// usually takes under a second; when memberlist first ignores the
	// comeback (a fresh incarnation below the dead one) it waits for the
	// next push-pull, 5 s in the local profile, hence the generous bound.
	took := waitFor(t, 30*time.Second, "reconnect", func() bool {
		return sees(nodes[0], "n1", "n2", "n3") && sees(back, "n1", "n2", "n3")
	})
	t.Logf("failed member merged back %v after it came back", took)
}

// lockedBuffer is a log destination the race detector may watch.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// Once Shutdown returns, memberlist's late goroutines (a probe timer that
// fires after its Shutdown) log nothing into the caller's logger, which the
// caller may then read or free: a trainer's stderr buffer raced with a
// probe's log line.
func TestNoGossipLogsAfterShutdown(t *testing.T) {
	var buf lockedBuffer
	m, err := NewMembership(MembershipConfig{
		Self:     Member{ID: "quiet", Role: RolePS, Addr: "127.0.0.1:1", Host: "h"},
		BindAddr: "127.0.0.1:0",
		Profile:  ProfileLocal,
		Logger:   slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	before := buf.Len()
	m.mlWriter.Write([]byte("[DEBUG] memberlist: a probe after shutdown\n"))
	if after := buf.Len(); after != before {
		t.Errorf("a memberlist line after Shutdown reached the logger (%d -> %d bytes)", before, after)
	}
}
