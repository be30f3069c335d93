package grpctransport

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"github.com/flowps/flowps/transport/transporttest"
	"google.golang.org/grpc"
)

// serveData is serve that also returns the Server, to look at its data
// path.
func serveData(t *testing.T, svc ps.Service, cfg ServerConfig) (*Server, string) {
	t.Helper()
	return serveDataWith(t, svc, cfg, nil)
}

// serveDataWith is serveData that runs setup (when non-nil) on the Server
// before Serve, as RegisterReplication must be.
func serveDataWith(t *testing.T, svc ps.Service, cfg ServerConfig, setup func(*Server) error) (*Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(svc, cfg)
	if setup != nil {
		if err := setup(s); err != nil {
			lis.Close()
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, lis.Addr().String()
}

// Calls take the data path when both sides allow it, and gRPC when the
// server has none, the client turned it off, or the client compresses.
func TestDataPathChoice(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		scfg ServerConfig
		dcfg DialerConfig
		want bool
	}{
		{"default", ServerConfig{}, DialerConfig{}, true},
		{"client off", ServerConfig{}, DialerConfig{DataPath: DataPathOff}, false},
		{"client compresses", ServerConfig{}, DialerConfig{Compression: CompressionS2}, false},
		{"server off", ServerConfig{DataAddr: DataPathOff}, DialerConfig{}, false},
		{"server at an address", ServerConfig{DataAddr: "127.0.0.1:0"}, DialerConfig{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &transporttest.Fake{}
			s, addr := serveData(t, fake, tc.scfg)
			d := NewDialer(tc.dcfg)
			defer d.Close()
			svc, err := d.Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want {
				waitDataPath(t, svc)
			} else if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
				t.Fatal(err) // a first call, which would learn the data path
			}
			for range 3 {
				if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Push(ctx, &ps.PushRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			var calls uint64
			if s.data != nil {
				calls = s.data.calls.Load()
			}
			if got := calls == 6; got != tc.want || !tc.want && calls != 0 {
				t.Errorf("%d of 6 calls on the data path, want all: %v", calls, tc.want)
			}
			if (s.DataAddr() != "") != (tc.scfg.DataAddr != DataPathOff) {
				t.Errorf("DataAddr %q with DataAddr config %q", s.DataAddr(), tc.scfg.DataAddr)
			}
		})
	}
}

// On this host the data path goes over the server's abstract Unix socket
// by default, over TCP with DataPathTCP or NoLocalDataPath, and over TCP
// when the socket cannot be reached (as from another host or network
// namespace, where the name does not exist): every call still takes the
// data path.
func TestDataPathLocalSocket(t *testing.T) {
	if !localDataPath {
		t.Skip("no abstract Unix sockets on " + runtime.GOOS)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		scfg      ServerConfig
		dcfg      DialerConfig
		closeUnix bool // the announced socket is gone before the client dials
		wantLocal bool
	}{
		{"default", ServerConfig{}, DialerConfig{}, false, true},
		{"client tcp", ServerConfig{}, DialerConfig{DataPath: DataPathTCP}, false, false},
		{"server without socket", ServerConfig{NoLocalDataPath: true}, DialerConfig{}, false, false},
		{"socket unreachable", ServerConfig{}, DialerConfig{}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := serveData(t, &transporttest.Fake{}, tc.scfg)
			for deadline := time.Now().Add(5 * time.Second); s.DataAddr() == "" && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond) // Serve starts the data path
			}
			if got := s.LocalDataAddr(); (got != "") != !tc.scfg.NoLocalDataPath || got != "" && !strings.HasPrefix(got, "@flowps-data-") {
				t.Fatalf("LocalDataAddr %q with NoLocalDataPath %v", got, tc.scfg.NoLocalDataPath)
			}
			if tc.closeUnix {
				s.data.local.Close()
			}
			d := NewDialer(tc.dcfg)
			defer d.Close()
			svc, err := d.Dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			waitDataPath(t, svc)
			for range 3 {
				if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Push(ctx, &ps.PushRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			if n := s.data.calls.Load(); n != 6 {
				t.Errorf("%d of 6 calls on the data path", n)
			}
			if got := s.data.localConns.Load() > 0; got != tc.wantLocal {
				t.Errorf("%d connections over the Unix socket, want some: %v", s.data.localConns.Load(), tc.wantLocal)
			}
			dp := svc.(*client).p.data
			dp.mu.Lock()
			target := dp.target
			dp.mu.Unlock()
			if got := strings.HasPrefix(target, localPrefix); got != tc.wantLocal {
				t.Errorf("client's data path %q, want the Unix socket: %v", target, tc.wantLocal)
			}
			want := DataPath{Addr: addr, Via: ViaTCP, Target: s.DataAddr()}
			if tc.wantLocal {
				want = DataPath{Addr: addr, Via: ViaUnix, Target: s.LocalDataAddr()}
			}
			if got := d.DataPaths(); len(got) != 1 || got[0] != want {
				t.Errorf("DataPaths %+v, want [%+v]", got, want)
			}
		})
	}
}

// oldHandler is a server from before the data path: DataPath is
// Unimplemented.
type oldHandler struct {
	pb.UnimplementedParameterServerServer
	h *handler
}

func (o oldHandler) Create(ctx context.Context, r *pb.CreateRequest) (*pb.CreateResponse, error) {
	return o.h.Create(ctx, r)
}
func (o oldHandler) Pull(r *pb.PullRequest, s grpc.ServerStreamingServer[pb.PullFrame]) error {
	return o.h.Pull(r, s)
}
func (o oldHandler) Push(s grpc.ClientStreamingServer[pb.PushFrame, pb.PushResponse]) error {
	return o.h.Push(s)
}

// A client of a server without the DataPath method keeps using gRPC.
func TestDataPathOlderServer(t *testing.T) {
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		return &ps.PushResponse{Versions: []int64{int64(len(r.Parts[0].Grad))}}, nil
	}}
	s := NewServer(fake, ServerConfig{DataAddr: DataPathOff})
	gs := grpc.NewServer(grpc.ForceServerCodecV2(newCodec()))
	pb.RegisterParameterServerServer(gs, oldHandler{h: &handler{s: s}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	d := NewDialer(DialerConfig{})
	defer d.Close()
	ctx := context.Background()
	svc, err := d.Dial(ctx, lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Grad: make([]float32, 5)}}})
		if err != nil || resp.Versions[0] != 5 {
			t.Fatalf("push to an older server: %v, %v", resp, err)
		}
	}
	dp := svc.(*client).p.data
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if !dp.known || dp.target != "" {
		t.Errorf("data path known %v, target %q; want known, none", dp.known, dp.target)
	}
}

// waitDataPath makes svc's data path connect (its first calls go over gRPC
// while it learns and dials the data path in the background), and fails
// the test if it does not within 10 s.
func waitDataPath(t testing.TB, svc ps.Service) {
	t.Helper()
	c := svc.(*client)
	dp := c.p.data
	if dp == nil {
		t.Fatal("the dialer does not use data paths")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if dc := dp.get(context.Background(), c.p); dc != nil {
			dp.put(dc)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the data path did not connect within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A data path that does not answer (a firewall dropping its port, here a
// listener that accepts and stays mute) never stalls calls: they go over
// gRPC while the dial is tried in the background, and closing the dialer
// does not wait for that dial to time out.
func TestDataPathUnreachableDoesNotStallCalls(t *testing.T) {
	ctx := context.Background()
	s, addr := serveData(t, &transporttest.Fake{}, ServerConfig{})
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	d := NewDialer(DialerConfig{})
	svc, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	c := svc.(*client)
	c.p.data.learn(ctx, c.p)
	c.p.data.mu.Lock()
	c.p.data.target = mute.Addr().String()
	c.p.data.mu.Unlock()
	start := time.Now()
	for range 5 {
		if _, err := svc.Pull(ctx, &ps.PullRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("5 pulls took %v with an unanswering data path", d)
	}
	if n := s.data.calls.Load(); n != 0 {
		t.Errorf("%d calls reached the data path", n)
	}
	start = time.Now()
	d.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dialer.Close took %v while a data path dial hung", d)
	}
}
