package auto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/inproc"
	"github.com/flowps/flowps/transport/rdma"
)

// The in-process stand-ins: one ps.Server served on an inproc network at
// its "gRPC" address and at its "fabric" address. The Dialer's GRPC side
// dials from fromGRPC and its RDMA side from fromRDMA, so fault hooks can
// tell the two transports apart.
const (
	grpcAddr   = "127.0.0.1:7000"
	fabricName = "0a0b0c0d"
	fromGRPC   = "trainer-grpc"
	fromRDMA   = "trainer-rdma"
)

var fabricAddr = rdma.ProviderSHM + "|" + fabricName

type rig struct {
	t      *testing.T
	net    *inproc.Network
	srv    *ps.Server
	member sharding.Member
	mu     sync.Mutex
	view   []sharding.Member
	logs   *syncBuffer
	d      *Dialer
	// counts of calls by (from, method) that reached the fault hook.
	calls sync.Map
	// fabricFault decides the fate of fabric calls; nil delivers.
	fabricFault atomic.Pointer[func(method string) inproc.Fault]
	chooses     atomic.Int64
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// fakeChoose is rdma.Choose with the device checks of a machine that has
// RDMA: an advertised provider equal to the override (or verbs) wins.
func fakeChoose(r *rig) func(context.Context, string, string, string) rdma.Decision {
	return func(_ context.Context, host, prov, override string) rdma.Decision {
		r.chooses.Add(1)
		if override != "" && override == prov {
			return rdma.Decision{RDMA: true, Provider: prov, Reason: "provider override " + prov}
		}
		if override == "" && prov == rdma.ProviderVerbs {
			return rdma.Decision{RDMA: true, Provider: prov, Reason: "fake ACTIVE RoCE port"}
		}
		return rdma.Decision{Reason: fmt.Sprintf("fake: %s advertises %s, override %q", host, prov, override)}
	}
}

func newRig(t *testing.T, mode, provider string) *rig {
	t.Helper()
	r := &rig{t: t, net: inproc.NewNetwork(), logs: &syncBuffer{}}
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	t.Cleanup(func() { srv.Close() })
	stop1 := r.net.Serve(grpcAddr, srv)
	stop2 := r.net.Serve(fabricAddr, srv)
	t.Cleanup(func() { stop1(); stop2() })
	r.member = sharding.Member{ID: "ps-0", Role: sharding.RolePS, Addr: grpcAddr, Fabric: fabricName, FabricProvider: rdma.ProviderSHM, Host: "other-host"}
	r.view = []sharding.Member{r.member}
	r.net.SetFault(func(from, to, method string) inproc.Fault {
		v, _ := r.calls.LoadOrStore(from+" "+method, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		if from == fromRDMA {
			if f := r.fabricFault.Load(); f != nil {
				return (*f)(method)
			}
		}
		return inproc.Fault{}
	})
	d, err := newDialer(Config{
		Mode: mode, Provider: provider,
		GRPC: r.net.Dialer(fromGRPC), RDMA: r.net.Dialer(fromRDMA),
		Peer:   PeerFrom(r),
		Host:   "this-host",
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	}, fakeChoose(r), func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	return r
}

// Members implements ps.MemberSource for PeerFrom.
func (r *rig) Members() []sharding.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sharding.Member(nil), r.view...)
}

func (r *rig) setMember(m sharding.Member) {
	r.mu.Lock()
	r.view = []sharding.Member{m}
	r.mu.Unlock()
}

func (r *rig) count(from, method string) int64 {
	v, ok := r.calls.Load(from + " " + method)
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

func (r *rig) setFabricFault(f func(method string) inproc.Fault) { r.fabricFault.Store(&f) }

func (r *rig) choice() Choice {
	r.t.Helper()
	cs := r.d.Choices()
	if len(cs) != 1 {
		r.t.Fatalf("choices = %+v, want one", cs)
	}
	return cs[0]
}

var wSpec = ps.VariableSpec{
	Name:        "w",
	Shape:       []int64{8},
	Init:        ps.Initializer{Kind: ps.InitZeros},
	Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1},
	Consistency: ps.Consistency{Mode: ps.Async},
}

func (r *rig) client(id string) *ps.Client {
	r.t.Helper()
	cc := ps.DefaultClientConfig()
	cc.ID, cc.Members, cc.Dialer = id, r, r.d
	cc.RetryTimeout = 5 * time.Second
	cl, err := ps.NewClient(cc)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cl.Close() })
	return cl
}

func ones(n int) []float32 {
	g := make([]float32, n)
	for i := range g {
		g[i] = 1
	}
	return g
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFallbackAppliesResentPushOnce: a trainer's ps.Client pushes over the
// fake fabric; the third push is applied but its response is lost (the
// fabric dies). The auto service re-sends it over gRPC with the same
// (ClientID, Seq), the server ignores it as a duplicate, and every later
// push goes over gRPC: the weights show each of the ten pushes exactly once.
func TestFallbackAppliesResentPushOnce(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	var pushes atomic.Int64
	r.setFabricFault(func(method string) inproc.Fault {
		if method == inproc.MethodPush && pushes.Add(1) >= 3 {
			return inproc.Fault{DropResponse: true}
		}
		return inproc.Fault{}
	})
	cl := r.client("trainer-0")
	if err := cl.CreateVariable(ctx, wSpec); err != nil {
		t.Fatal(err)
	}
	if c := r.choice(); c.Transport != TransportRDMA || c.Provider != rdma.ProviderSHM || c.Peer != "ps-0" {
		t.Fatalf("first choice %+v, want rdma over shm to ps-0", c)
	}
	const n = 10
	for i := 0; i < n; i++ {
		if err := cl.Push(ctx, "w", ones(8), 0); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	got := make([]float32, 8)
	if _, err := cl.Pull(ctx, "w", got, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != -n {
			t.Fatalf("w[%d] = %v, want %v: a re-sent push was applied twice or lost", i, v, float32(-n))
		}
	}
	if d := r.srv.Stats().Duplicates; d != 1 {
		t.Errorf("server saw %d duplicate push parts, want exactly the one re-sent push", d)
	}
	if p := r.count(fromRDMA, inproc.MethodPush); p != 3 {
		t.Errorf("%d pushes went over the fabric, want 3 (none after the fallback)", p)
	}
	if p := r.count(fromGRPC, inproc.MethodPush); p != n-2 {
		t.Errorf("%d pushes went over gRPC, want %d (the re-sent one and the rest)", p, n-2)
	}
	c := r.choice()
	if c.Transport != TransportGRPC || c.Fallbacks != 1 || !strings.Contains(c.Reason, "fell back from shm") {
		t.Errorf("choice after the fabric error %+v, want grpc with one fallback and its reason", c)
	}
	if k := r.logs.count("transport chosen"); k != 1 {
		t.Errorf("%d 'transport chosen' log lines, want 1:\n%s", k, r.logs.b.String())
	}
	if k := r.logs.count("transport fallback"); k != 1 {
		t.Errorf("%d 'transport fallback' log lines, want 1", k)
	}
}

// TestConcurrentFallbackExactlyOnce: eight goroutines push concurrently
// through one dialed service while the fabric starts losing every response
// mid-way; every push is applied exactly once.
func TestConcurrentFallbackExactlyOnce(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	var pushes atomic.Int64
	r.setFabricFault(func(method string) inproc.Fault {
		if method == inproc.MethodPush && pushes.Add(1) > 20 {
			return inproc.Fault{DropResponse: true, Delay: time.Millisecond}
		}
		return inproc.Fault{}
	})
	const workers, each = 8, 25
	var seq atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req := &ps.PushRequest{ClientID: "c", Seq: seq.Add(1), Parts: []ps.PushPart{{Key: ps.PartKey{Var: "w"}, Grad: ones(8)}}}
				if _, err := svc.Push(ctx, req); err != nil {
					errs <- err
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
	resp, err := svc.Pull(ctx, &ps.PullRequest{ClientID: "c", Parts: []ps.PullPart{{Key: ps.PartKey{Var: "w"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range resp.Parts[0].Values {
		if v != -workers*each {
			t.Fatalf("w[%d] = %v, want %v", i, v, -workers*each)
		}
	}
	if c := r.choice(); c.Transport != TransportGRPC || c.Fallbacks != 1 {
		t.Errorf("choice %+v, want grpc after exactly one fallback", c)
	}
	if r.count(fromRDMA, inproc.MethodPush) < 21 {
		t.Errorf("the fabric carried only %d pushes: the fault never struck", r.count(fromRDMA, inproc.MethodPush))
	}
}

// TestNoFallbackWhenPeerIsDown: when the gRPC side fails too, the peer is
// down, not the fabric: the error comes back (retryable) and the choice
// stays RDMA.
func TestNoFallbackWhenPeerIsDown(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	r.setFabricFault(func(string) inproc.Fault { return inproc.Fault{Drop: true} })
	r.net.Disconnect(fromGRPC, grpcAddr)
	_, err = svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}})
	if !errors.Is(err, ps.ErrUnavailable) || !ps.Retryable(err) {
		t.Fatalf("err = %v, want retryable ps.ErrUnavailable", err)
	}
	if c := r.choice(); c.Transport != TransportRDMA || c.Fallbacks != 0 {
		t.Errorf("choice %+v, want still rdma", c)
	}
	// The peer comes back: the fabric works again and is still used.
	r.net.Reconnect(fromGRPC, grpcAddr)
	r.setFabricFault(func(string) inproc.Fault { return inproc.Fault{} })
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	if n := r.count(fromRDMA, inproc.MethodCreate); n != 2 {
		t.Errorf("%d creates over the fabric, want 2", n)
	}
}

// TestServiceErrorsDoNotFallBack: an error the server answered with
// (NotOwner, unknown variable) is the peer's answer, not a fabric failure.
func TestServiceErrorsDoNotFallBack(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	_, err = svc.Pull(ctx, &ps.PullRequest{ClientID: "c", Parts: []ps.PullPart{{Key: ps.PartKey{Var: "nope"}}}})
	if !errors.Is(err, ps.ErrUnknownVariable) {
		t.Fatalf("err = %v, want ps.ErrUnknownVariable", err)
	}
	if r.count(fromGRPC, inproc.MethodPull) != 0 {
		t.Error("a service error was re-sent over gRPC")
	}
	if c := r.choice(); c.Transport != TransportRDMA {
		t.Errorf("choice %+v, want rdma", c)
	}
}

// TestFallbackIsStickyUntilNewEndpoint: a redial after a fallback stays on
// gRPC, saying why; once the peer advertises another fabric endpoint (it
// restarted), RDMA is tried again.
func TestFallbackIsStickyUntilNewEndpoint(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	r.setFabricFault(func(string) inproc.Fault { return inproc.Fault{Err: fmt.Errorf("fabric gone: %w", ps.ErrUnavailable)} })
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
		t.Fatalf("create should have been re-sent over gRPC: %v", err)
	}
	svc.Close()
	svc, err = r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	c := r.choice()
	if c.Transport != TransportGRPC || !strings.Contains(c.Reason, "failed at run time") {
		t.Fatalf("choice after redial %+v, want grpc because the fabric failed", c)
	}
	before := r.count(fromRDMA, inproc.MethodCreate)
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	if r.count(fromRDMA, inproc.MethodCreate) != before {
		t.Error("redialed service used the broken fabric")
	}

	// The peer restarts with a new fabric endpoint.
	r.setFabricFault(func(string) inproc.Fault { return inproc.Fault{} })
	const newName = "0e0f"
	stop := r.net.Serve(rdma.ProviderSHM+"|"+newName, r.srv)
	defer stop()
	m := r.member
	m.Fabric = newName
	r.setMember(m)
	svc2, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	if c := r.choice(); c.Transport != TransportRDMA || c.Fallbacks != 1 {
		t.Errorf("choice after a new endpoint %+v, want rdma again (one fallback in the past)", c)
	}
}

// TestModeRDMANeverFallsBack: with --transport rdma a fabric failure is an
// error, and a peer without a fabric endpoint cannot be dialed.
func TestModeRDMANeverFallsBack(t *testing.T) {
	r := newRig(t, ModeRDMA, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	r.setFabricFault(func(string) inproc.Fault { return inproc.Fault{Drop: true} })
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); !errors.Is(err, ps.ErrUnavailable) {
		t.Fatalf("err = %v, want the fabric's ps.ErrUnavailable", err)
	}
	if n := r.count(fromGRPC, inproc.MethodCreate); n != 0 {
		t.Errorf("%d creates re-sent over gRPC in rdma mode", n)
	}
	m := r.member
	m.Fabric, m.FabricProvider = "", ""
	r.setMember(m)
	_, err = r.d.Dial(ctx, grpcAddr)
	if !errors.Is(err, ps.ErrUnavailable) || !strings.Contains(err.Error(), "advertises no fabric endpoint") {
		t.Errorf("dial a peer without fabric in rdma mode: %v, want a clear retryable error", err)
	}
	if c := r.choice(); c.Transport != TransportNone || !strings.Contains(c.Reason, "required") {
		t.Errorf("choice %+v, want none: rdma required", c)
	}
}

// failingDialer is an RDMA dialer whose Dial fails (verbs did not open,
// the probe write failed).
type failingDialer struct{ n atomic.Int64 }

func (f *failingDialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	f.n.Add(1)
	return nil, fmt.Errorf("rdma: probe write to %s: %w", addr, ps.ErrUnavailable)
}

// TestSelection covers the decisions that do not involve a fabric failure.
func TestSelection(t *testing.T) {
	ctx := ctxT(t)
	t.Run("auto, dial fails: grpc with the reason", func(t *testing.T) {
		r := newRig(t, ModeAuto, rdma.ProviderSHM)
		fd := &failingDialer{}
		r.d.cfg.RDMA = fd
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
			t.Fatal(err)
		}
		c := r.choice()
		if c.Transport != TransportGRPC || !strings.Contains(c.Reason, "probe write") || fd.n.Load() != 1 {
			t.Errorf("choice %+v, want grpc naming the failed probe", c)
		}
	})
	t.Run("grpc mode", func(t *testing.T) {
		r := newRig(t, ModeGRPC, "")
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
			t.Fatal(err)
		}
		if c := r.choice(); c.Transport != TransportGRPC || c.Reason != "transport grpc requested" {
			t.Errorf("choice %+v", c)
		}
		if r.count(fromRDMA, inproc.MethodCreate) != 0 || r.chooses.Load() != 0 {
			t.Error("grpc mode touched the fabric or ran the selection")
		}
	})
	t.Run("auto without override: shm between hosts is refused", func(t *testing.T) {
		r := newRig(t, ModeAuto, "")
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		svc.Close()
		if c := r.choice(); c.Transport != TransportGRPC || !strings.Contains(c.Reason, "advertises shm") {
			t.Errorf("choice %+v, want grpc with the selection's reason", c)
		}
	})
	t.Run("auto: same-host peer advertising shm, not enabled", func(t *testing.T) {
		r := newRig(t, ModeAuto, "")
		m := r.member
		m.Host = "this-host"
		r.setMember(m)
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		svc.Close()
		if c := r.choice(); c.Transport != TransportGRPC {
			t.Errorf("choice %+v, want grpc: SameHostSHM is off", c)
		}
	})
	t.Run("auto: same-host peer advertising shm", func(t *testing.T) {
		r := newRig(t, ModeAuto, "")
		r.d.cfg.SameHostSHM = true
		m := r.member
		m.Host = "this-host"
		r.setMember(m)
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: wSpec, Parts: []int{0}}); err != nil {
			t.Fatal(err)
		}
		if c := r.choice(); c.Transport != TransportRDMA || c.Provider != rdma.ProviderSHM || !strings.Contains(c.Reason, "same host") {
			t.Errorf("choice %+v, want shm for a same-host peer", c)
		}
		if r.count(fromRDMA, inproc.MethodCreate) != 1 {
			t.Error("create did not go over the fabric")
		}
	})
	t.Run("auto with TLS: grpc", func(t *testing.T) {
		r := newRig(t, ModeAuto, rdma.ProviderSHM)
		r.d.cfg.Secure = true
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		svc.Close()
		if c := r.choice(); c.Transport != TransportGRPC || !strings.Contains(c.Reason, "TLS") {
			t.Errorf("choice %+v, want grpc because of TLS", c)
		}
	})
	t.Run("unknown peer", func(t *testing.T) {
		r := newRig(t, ModeAuto, rdma.ProviderSHM)
		r.setMember(sharding.Member{ID: "ps-9", Role: sharding.RolePS, Addr: "127.0.0.1:9"})
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		svc.Close()
		if c := r.choice(); c.Transport != TransportGRPC || !strings.Contains(c.Reason, "not in the membership view") {
			t.Errorf("choice %+v", c)
		}
	})
	t.Run("malformed fabric endpoint", func(t *testing.T) {
		r := newRig(t, ModeAuto, rdma.ProviderSHM)
		m := r.member
		m.Fabric = "xyz"
		r.setMember(m)
		svc, err := r.d.Dial(ctx, grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		svc.Close()
		if c := r.choice(); c.Transport != TransportGRPC || !strings.Contains(c.Reason, "malformed") {
			t.Errorf("choice %+v", c)
		}
	})
	t.Run("redials log once", func(t *testing.T) {
		r := newRig(t, ModeAuto, rdma.ProviderSHM)
		for i := 0; i < 3; i++ {
			svc, err := r.d.Dial(ctx, grpcAddr)
			if err != nil {
				t.Fatal(err)
			}
			svc.Close()
		}
		if k := r.logs.count("transport chosen"); k != 1 {
			t.Errorf("%d log lines for three dials of one peer, want 1", k)
		}
	})
}

// TestReplicationGoesOverGRPC: the dialed service is a ps.Replicator
// whose calls take the gRPC side, which is what psd's replication needs.
func TestReplicationGoesOverGRPC(t *testing.T) {
	r := newRig(t, ModeAuto, rdma.ProviderSHM)
	ctx := ctxT(t)
	svc, err := r.d.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	rep, ok := svc.(ps.Replicator)
	if !ok {
		t.Fatalf("%T does not implement ps.Replicator", svc)
	}
	// The server has replication off, so it answers with an error; what
	// matters is which transport carried the call.
	rep.Fetch(ctx, &ps.FetchRequest{})
	if r.count(fromGRPC, inproc.MethodFetch) != 1 || r.count(fromRDMA, inproc.MethodFetch) != 0 {
		t.Errorf("fetch went grpc %d, fabric %d times; want once over gRPC", r.count(fromGRPC, inproc.MethodFetch), r.count(fromRDMA, inproc.MethodFetch))
	}
	svc.Close()
	if _, err := rep.Fetch(ctx, &ps.FetchRequest{}); !errors.Is(err, ps.ErrClosed) {
		t.Errorf("fetch after close: %v, want ps.ErrClosed", err)
	}
	if _, err := svc.Pull(ctx, &ps.PullRequest{}); !errors.Is(err, ps.ErrClosed) {
		t.Errorf("pull after close: %v, want ps.ErrClosed", err)
	}
}

// TestConfigErrors: bad configs fail at construction, with the field named.
func TestConfigErrors(t *testing.T) {
	g := inproc.NewNetwork().Dialer("x")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Mode: "fast", GRPC: g}, `transport "fast"`},
		{Config{}, "GRPC dialer is nil"},
		{Config{GRPC: g, Provider: "udp"}, `rdma provider "udp"`},
		{Config{Mode: ModeRDMA, GRPC: g}, "no RDMA dialer"},
		{Config{Mode: ModeRDMA, GRPC: g, RDMA: g}, "no membership lookup"},
		{Config{Mode: ModeRDMA, GRPC: g, RDMA: g, Secure: true}, "neither encrypts"},
	} {
		_, err := newDialer(tc.cfg, rdma.Choose, func() bool { return true })
		if !errors.Is(err, ps.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want ErrInvalidArgument mentioning %q", tc.cfg, err, tc.want)
		}
	}
	_, err := newDialer(Config{Mode: ModeRDMA, GRPC: g, RDMA: g, Peer: PeerFrom(ps.StaticMembers{})}, rdma.Choose, func() bool { return false })
	if !errors.Is(err, rdma.ErrNoRDMA) {
		t.Errorf("rdma mode without libfabric: %v, want rdma.ErrNoRDMA", err)
	}
	if _, err := NewDialer(Config{GRPC: g}); err != nil {
		t.Errorf("default config: %v", err)
	}
}
