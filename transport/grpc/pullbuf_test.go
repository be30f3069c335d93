package grpctransport

import (
	"context"
	"io"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc"
)

// A pooled pull array must stay out of the pool until gRPC has written the
// last frame that holds it, which can be long after the handler's last
// SendMsg returned: here a reader that stops reading after the first frame
// leaves the tail of its response queued behind flow control while later
// pulls, after a push changed every value, take arrays from the pool and
// fill them. If the stalled response's array had gone back early, its tail
// would arrive with the new values (and -race reports the overwrite of
// memory gRPC has yet to write).
func TestPullBuffersOutliveSendMsg(t *testing.T) {
	ctx := context.Background()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const n = 25 << 10 // 100 KiB: pooled, and less than flow control + write quota, so the handler returns
	spec := ps.VariableSpec{Name: "w", Shape: []int64{n}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}}
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{}, 16)
	testHookPullSent = func() { sent <- struct{}{} }
	defer func() { testHookPullSent = nil }()
	addr, _ := serve(t, srv, ServerConfig{ChunkBytes: 16 << 10})

	// The stalled readers: a 64 KiB stream window that each never
	// replenishes beyond the first frame. Several, because under -race
	// sync.Pool drops a random quarter of what is put back.
	slow := NewDialer(DialerConfig{WindowBytes: 64 << 10, DataPath: DataPathOff})
	defer slow.Close()
	svc, err := slow.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	type stalled struct {
		stream grpc.ClientStream
		in     *frameIn
		got    []float32
	}
	var stalls []stalled
	for range 4 {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := svc.(*client).p.conn().NewStream(sctx, &pb.ParameterServer_ServiceDesc.Streams[0], pb.ParameterServer_Pull_FullMethodName)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(pullToPB(&ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "w"}}}})); err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, n)
		in := &frameIn{header: &pb.PullHeader{}}
		in.onHeader = func() ([][]float32, error) { return [][]float32{got}, nil }
		if err := stream.RecvMsg(in); err != nil || in.err != nil {
			t.Fatal(err, in.err)
		}
		<-sent // the handler is done; the tail waits for the reader
		stalls = append(stalls, stalled{stream, in, got})
	}

	// Every value becomes 0; pulls over a normal connection take pooled
	// arrays and fill them with it.
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = 1
	}
	fast := NewDialer(DialerConfig{DataPath: DataPathOff})
	defer fast.Close()
	fsvc, err := fast.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsvc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: ps.PartKey{Var: "w"}, Grad: grad}}}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		resp, err := fsvc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "w"}}}})
		if err != nil {
			t.Fatal(err)
		}
		<-sent
		if v := resp.Parts[0].Values; v[0] != 0 || v[n-1] != 0 {
			t.Fatalf("pull after the push: %v ... %v, want 0", v[0], v[n-1])
		}
	}

	// Now read the stalled responses to their end: every value is the 1 it
	// had when it was pulled.
	for k, st := range stalls {
		for {
			err := st.stream.RecvMsg(st.in)
			if st.in.err != nil {
				t.Fatal(st.in.err)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if st.in.next != n {
			t.Fatalf("stalled pull %d: %d of %d values", k, st.in.next, n)
		}
		for i, v := range st.got {
			if v != 1 {
				t.Fatalf("stalled pull %d: value %d is %v, want 1 (its array was reused before gRPC wrote it)", k, i, v)
			}
		}
	}
}

type unwrapper struct{ ps.Service }

func (u unwrapper) Unwrap() ps.Service { return u.Service }

// Pooled push and pull arrays are used for a ps.Server and for a wrapper
// of one that declares Unwrap (as psd's metrics wrapper does), not for
// other Services.
func TestServerRecyclesForPSServerAndItsWrappers(t *testing.T) {
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		svc  ps.Service
		want bool
	}{{srv, true}, {unwrapper{srv}, true}, {struct{ ps.Service }{srv}, false}} {
		if got := NewServer(tc.svc, ServerConfig{}).recycle; got != tc.want {
			t.Errorf("%T: recycle %v, want %v", tc.svc, got, tc.want)
		}
	}
}
