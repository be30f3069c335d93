package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/transporttest"
	"google.golang.org/protobuf/proto"
)

// serveReplicating starts a replicating ps.Server behind a gRPC server with
// the replication service registered.
func serveReplicating(t *testing.T, id string, d *Dialer) (*ps.Server, string) {
	t.Helper()
	cfg := ps.DefaultServerConfig()
	cfg.ID = id
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Replication = &ps.ReplicationConfig{Replicas: 2, Dialer: d, Timeout: 20 * time.Second, StableAfter: -1}
	s, err := ps.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveDataWith(t, s, ServerConfig{}, (*Server).RegisterReplication)
	t.Cleanup(func() { s.Close() }) // runs before the gRPC server stops
	return s, addr
}

// TestReplicationOverGRPC: two replicating servers over the real
// transport, with Replicate on the data path and (data path off) on gRPC:
// a 4-million-value push is forwarded to the replica, the replica's state
// equals the primary's bit for bit, and Fetch returns it.
func TestReplicationOverGRPC(t *testing.T) {
	for _, dp := range []string{"", DataPathOff} {
		t.Run("datapath="+dp, func(t *testing.T) { testReplication(t, dp) })
	}
}

func testReplication(t *testing.T, dataPath string) {
	d := NewDialer(DialerConfig{DataPath: dataPath})
	t.Cleanup(func() { d.Close() })
	a, addrA := serveReplicating(t, "a", d)
	b, addrB := serveReplicating(t, "b", d)
	view := sharding.View{Epoch: 1, Members: []sharding.Member{
		{ID: "a", Role: sharding.RolePS, Addr: addrA}, {ID: "b", Role: sharding.RolePS, Addr: addrB}}}
	a.SetView(view)
	b.SetView(view)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := ps.VariableSpec{Name: "w", Shape: []int64{4, 1 << 18}, Optimizer: ps.OptimizerSpec{Kind: ps.OptMomentum, LR: 0.5},
		Init: ps.Initializer{Kind: ps.InitNormal, Stddev: 1, Seed: 1}, MaxPartitionBytes: 64 << 20}
	key := ps.PartKey{Var: "w", Index: 0}
	primary, replica := a, b
	if o := sharding.Place(key.String(), view.Members, 2); o[0].ID == "b" {
		primary, replica = b, a
	}
	if _, err := primary.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	g := make([]float32, spec.NumElements())
	for i := range g {
		g[i] = float32(i%11) - 5
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if _, err := primary.Push(ctx, &ps.PushRequest{ClientID: "c", Seq: seq, Parts: []ps.PushPart{{Key: key, Grad: g}}}); err != nil {
			t.Fatal(err)
		}
	}
	sp, _ := primary.Snapshot(key)
	sr, err := replica.Snapshot(key)
	if err != nil {
		t.Fatal(err)
	}
	if sp.LSN != 2 || !reflect.DeepEqual(sp, sr) {
		t.Fatalf("replica at lsn %d differs from primary at lsn %d", sr.LSN, sp.LSN)
	}
	svc, err := d.Dial(ctx, addrOf(replica, addrA, addrB, a))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	fr, err := svc.(ps.Replicator).Fetch(ctx, &ps.FetchRequest{From: "test", Key: key, WantState: true})
	if err != nil {
		t.Fatal(err)
	}
	if !fr.Hosted || fr.LSN != 2 || !reflect.DeepEqual(fr.State, sr) {
		t.Fatalf("fetch: hosted %v lsn %d, state equal %v", fr.Hosted, fr.LSN, reflect.DeepEqual(fr.State, sr))
	}
	// A bad install is refused with the sentinel intact.
	_, err = svc.(ps.Replicator).Install(ctx, &ps.InstallRequest{From: "test", Key: ps.PartKey{Var: "w", Index: 0},
		State: &ps.PartitionState{Spec: spec, Values: []float32{1}}})
	if !errors.Is(err, ps.ErrShapeMismatch) && !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("bad install: %v", err)
	}
}

func addrOf(s *ps.Server, addrA, addrB string, a *ps.Server) string {
	if s == a {
		return addrA
	}
	return addrB
}

func TestReplicateEnvelopeRoundTrip(t *testing.T) {
	req := &ps.ReplicateRequest{From: "p", Ops: []ps.ReplicateOp{
		{Key: ps.PartKey{Var: "v", Index: 2}, Term: ps.Term{N: 3, ID: "p"}, LSN: 9, ClientID: "c", Seq: 4, Rows: []int64{}, Grad: []float32{}},
		{Key: ps.PartKey{Var: "v"}, LSN: 10, Barrier: true},
		{Key: ps.PartKey{Var: "v"}, LSN: 11, Rows: []int64{1, 1}, Grad: []float32{1.5, -2, 3, 4}, Worker: 1, Clock: 2, Step: 5},
	}}
	env, err := encodeReplicateRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	// Through the chunked framing with 3-byte chunks.
	var msgs []any
	if err := env.send(3, func(m any) error { msgs = append(msgs, m); return nil }); err != nil {
		t.Fatal(err)
	}
	recv := func(msgs []any) func(any) error {
		return func(m any) error {
			if len(msgs) == 0 {
				return io.EOF
			}
			proto.Merge(m.(proto.Message), msgs[0].(proto.Message))
			msgs = msgs[1:]
			return nil
		}
	}
	h, payload, err := recvEnvelope(recv(msgs), 1<<20, allocFloats)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReplicateRequest(h, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("round trip:\n%+v\n%+v", got, req)
	}
	if _, _, err := recvEnvelope(recv(msgs[:len(msgs)-1]), 1<<20, nil); err == nil {
		t.Fatal("truncated envelope accepted")
	}
	if _, _, err := recvEnvelope(recv(msgs), 4, nil); err == nil {
		t.Fatal("envelope over the limit accepted")
	}
	if _, err := decodeReplicateRequest(h, payload[:len(payload)-4]); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("short payload: %v", err)
	}
}

// BenchmarkReplicatedPush measures a 4 MiB dense push acknowledged by the
// primary alone (r=1) and after its replica applied it (r=2), both servers
// behind real gRPC on loopback.
func BenchmarkReplicatedPush(b *testing.B) {
	for _, r := range []int{1, 2} {
		b.Run(fmt.Sprintf("r=%d", r), func(b *testing.B) {
			d := NewDialer(DialerConfig{})
			b.Cleanup(func() { d.Close() })
			var servers []*ps.Server
			var view sharding.View
			for _, id := range []string{"a", "b"} {
				cfg := ps.DefaultServerConfig()
				cfg.ID = id
				cfg.Replication = &ps.ReplicationConfig{Replicas: r, Dialer: d, StableAfter: -1}
				s, err := ps.NewServer(cfg)
				if err != nil {
					b.Fatal(err)
				}
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				gs := NewServer(s, ServerConfig{})
				if err := gs.RegisterReplication(); err != nil {
					b.Fatal(err)
				}
				go gs.Serve(lis)
				b.Cleanup(func() { s.Close(); gs.Stop() })
				servers = append(servers, s)
				view.Members = append(view.Members, sharding.Member{ID: id, Role: sharding.RolePS, Addr: lis.Addr().String()})
			}
			for _, s := range servers {
				s.SetView(view)
			}
			cfg := ps.DefaultClientConfig()
			cfg.ID, cfg.Members, cfg.Dialer = "bench", ps.StaticMembers(view.Members), d
			cl, err := ps.NewClient(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			spec := ps.VariableSpec{Name: "w", Shape: []int64{1 << 20}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.1},
				MaxPartitionBytes: 8 << 20}
			if err := cl.CreateVariable(ctx, spec); err != nil {
				b.Fatal(err)
			}
			g := make([]float32, 1<<20)
			b.SetBytes(4 << 20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := cl.Push(ctx, "w", g, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fakeReplicator is a transporttest.Fake that also answers Replicate with
// replicate, counting the calls.
type fakeReplicator struct {
	transporttest.Fake
	replicate func(*ps.ReplicateRequest) (*ps.ReplicateResponse, error)
	calls     atomic.Int64
}

func (f *fakeReplicator) Replicate(_ context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	f.calls.Add(1)
	return f.replicate(req)
}

func (f *fakeReplicator) Fetch(context.Context, *ps.FetchRequest) (*ps.FetchResponse, error) {
	return &ps.FetchResponse{}, nil
}

func (f *fakeReplicator) Install(context.Context, *ps.InstallRequest) (*ps.InstallResponse, error) {
	return &ps.InstallResponse{}, nil
}

// Replicate takes the data path when the server carries replication there
// (DataPath "", over its Unix socket or TCP) and gRPC when the client
// turned the data path off: either way the replica receives the request
// exactly as sent (terms, LSNs, rows, gradients), its answer comes back
// whole, and a service error keeps its sentinel.
func TestReplicateOverDataPath(t *testing.T) {
	ctx := context.Background()
	req := &ps.ReplicateRequest{From: "p", Ops: []ps.ReplicateOp{
		{Key: ps.PartKey{Var: "v", Index: 2}, Term: ps.Term{N: 3, ID: "p"}, LSN: 9, ClientID: "c", Seq: 4, Grad: []float32{1, 2, 3}},
		{Key: ps.PartKey{Var: "v"}, LSN: 10, Barrier: true},
		{Key: ps.PartKey{Var: "v"}, LSN: 11, Rows: []int64{1, 1}, Grad: []float32{1.5, -2, 3, 4}, Worker: 1, Clock: 2, Step: 5},
	}}
	want := &ps.ReplicateResponse{Status: []ps.OpStatus{ps.OpApplied, ps.OpNeedState, ps.OpDeposed},
		Promised: []ps.Term{{N: 1, ID: "a"}, {}, {N: 7, ID: "q"}}}
	for _, tc := range []struct {
		name     string
		dataPath string
		wantData bool
	}{
		{"data path", "", true},
		{"data path over tcp", DataPathTCP, true},
		{"grpc", DataPathOff, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fail atomic.Bool
			fake := &fakeReplicator{replicate: func(got *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
				if fail.Load() {
					return nil, ps.Errorf(ps.ErrNotOwner, "not mine")
				}
				if !reflect.DeepEqual(got, req) {
					return nil, fmt.Errorf("replica received %+v, sent %+v", got, req)
				}
				return want, nil
			}}
			gs, addr := serveDataWith(t, fake, ServerConfig{}, (*Server).RegisterReplication)
			d := NewDialer(DialerConfig{DataPath: tc.dataPath})
			defer d.Close()
			svc, err := d.Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantData {
				waitDataPath(t, svc)
			}
			rep := svc.(ps.Replicator)
			for range 3 {
				got, err := rep.Replicate(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("response %+v, want %+v", got, want)
				}
			}
			fail.Store(true)
			if _, err := rep.Replicate(ctx, req); !errors.Is(err, ps.ErrNotOwner) {
				t.Fatalf("service error came back as %v, want ps.ErrNotOwner", err)
			}
			var onData uint64
			if gs.data != nil {
				onData = gs.data.calls.Load()
			}
			if n := fake.calls.Load(); n != 4 {
				t.Fatalf("replica saw %d calls, want 4", n)
			}
			if got := onData == 4; got != tc.wantData || !tc.wantData && onData != 0 {
				t.Errorf("%d of 4 replicate calls on the data path, want all: %v", onData, tc.wantData)
			}
		})
	}
}

// A server without replication registered says so in DataPathInfo, and a
// client's Replicate stays on gRPC (which answers Unimplemented) instead of
// sending the data path an operation it would refuse.
func TestReplicateWithoutReplicationStaysOnGRPC(t *testing.T) {
	ctx := context.Background()
	s, addr := serveData(t, &transporttest.Fake{}, ServerConfig{})
	d := NewDialer(DialerConfig{})
	defer d.Close()
	svc, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	waitDataPath(t, svc)
	_, err = svc.(ps.Replicator).Replicate(ctx, &ps.ReplicateRequest{From: "p"})
	if err == nil || errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("Replicate to a server without replication: %v, want gRPC's unimplemented", err)
	}
	if n := s.data.calls.Load(); n != 0 {
		t.Errorf("%d calls reached the data path", n)
	}
}
