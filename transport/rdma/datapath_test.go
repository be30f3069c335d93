//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowps/flowps/ps"
)

// TestPullIntoFrameAndDst pulls through a real ps.Server: the server has
// the partition copied straight into the response frame (PullRequest.Alloc,
// so nothing is sent from Go memory), and the client decodes it into the
// part's Dst, which comes back as the part's Values.
func TestPullIntoFrameAndDst(t *testing.T) {
	for _, prov := range providers {
		t.Run(prov, func(t *testing.T) {
			cfg := ps.DefaultServerConfig()
			cfg.ID = "ps-test"
			svc, err := ps.NewServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			s := testServer(t, prov, svc)
			if !s.alias {
				t.Fatalf("a *ps.Server's pushes are not aliased")
			}
			c := testDial(t, s.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const rows, cols = 1024, 1024 // 4 MiB, one partition of two
			spec := ps.VariableSpec{Name: "w", Shape: []int64{rows, cols}, MaxPartitionBytes: 2 << 20,
				Init: ps.Initializer{Kind: ps.InitConstant, Value: 0.5}, Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}}
			ranges := spec.Partitions()
			if len(ranges) != 2 {
				t.Fatalf("%d partitions, want 2", len(ranges))
			}
			if _, err := c.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0, 1}}); err != nil {
				t.Fatal(err)
			}
			grad := make([]float32, rows*cols/2)
			for i := range grad {
				grad[i] = float32(i%7) * 0.25
			}
			push := &ps.PushRequest{ClientID: "t", Seq: 1, Parts: []ps.PushPart{{Key: ps.PartKey{Var: "w"}, Grad: grad}}}
			if _, err := c.Push(ctx, push); err != nil {
				t.Fatal(err)
			}
			dst := make([]float32, rows*cols)
			half := len(dst) / 2
			req := &ps.PullRequest{Parts: []ps.PullPart{
				{Key: ps.PartKey{Var: "w"}, Dst: dst[:half:half]},
				{Key: ps.PartKey{Var: "w", Index: 1}},                                            // no Dst: a fresh slice
				{Key: ps.PartKey{Var: "w", Index: 1}, Rows: []int64{3}, Dst: make([]float32, 5)}, // wrong size: left alone
			}}
			for round := 0; round < 2; round++ { // the second reserves the learnt size
				resp, err := c.Pull(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if !ps.SameBuffer(resp.Parts[0].Values, req.Parts[0].Dst) {
					t.Fatalf("round %d: part 0 not returned in its Dst", round)
				}
				for i, v := range resp.Parts[0].Values {
					if want := 0.5 - grad[i]; v != want {
						t.Fatalf("round %d: value %d = %v, want %v", round, i, v, want)
					}
				}
				if got := resp.Parts[1].Values; len(got) != half || got[0] != 0.5 || got[half-1] != 0.5 {
					t.Fatalf("round %d: part 1 = %d values", round, len(got))
				}
				if got := resp.Parts[2].Values; len(got) != cols || ps.SameBuffer(got, req.Parts[2].Dst) {
					t.Fatalf("round %d: sparse part = %d values in the wrong-sized Dst %v", round, len(got), ps.SameBuffer(got, req.Parts[2].Dst))
				}
			}
			if n := s.fab.zeroCopyWrites.Load(); n != 0 {
				t.Errorf("server sent %d responses from Go memory; ps.Server should have written into the frame", n)
			}
		})
	}
}

// failingService fails every push with err.
type failingService struct {
	*fakeService
	err error
}

func (f *failingService) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	return nil, f.err
}

// TestFailedAliasedPushIsHeld checks that the answer to a push whose
// gradients were views of the mirror, and that failed where the service
// may have forwarded them, waits holdFailed before the client may reuse
// those pages; a validation failure is answered at once.
func TestFailedAliasedPushIsHeld(t *testing.T) {
	for _, c := range []struct {
		err  error
		held bool
	}{
		{ps.Errorf(ps.ErrUnavailable, "replica gone"), true},
		{ps.Errorf(ps.ErrShapeMismatch, "bad shape"), false},
	} {
		svc := &failingService{fakeService: newFakeService(), err: c.err}
		s := testServer(t, ProviderSHM, svc)
		if s.alias {
			t.Fatalf("a service that is not a *ps.Server gets aliased pushes")
		}
		s.alias, s.holdFailed = true, 300*time.Millisecond
		cl := testDial(t, s.Addr())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := cl.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: ps.PartKey{Var: "v"}, Grad: make([]float32, 1024)}}})
		took := time.Since(start)
		cancel()
		if ps.CodeOf(err) != ps.CodeOf(c.err) {
			t.Fatalf("push: %v, want %v", err, c.err)
		}
		if held := took >= s.holdFailed; held != c.held {
			t.Errorf("%v: answered after %v (held %v, want %v)", c.err, took, held, c.held)
		}
	}
}

// TestSharedAreaChecks: the server maps only the memfd of this very
// handshake, sealed against shrinking, of at least the granted size; any
// other descriptor of the client's process is refused.
func TestSharedAreaChecks(t *testing.T) {
	const size = 1 << 20
	buf, fd, err := newSharedArea(size, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	defer unix.Close(fd)
	pid := uint32(os.Getpid())
	m, err := openSharedArea(pid, uint32(fd), size, 7)
	if err != nil {
		t.Fatalf("mapping the handshake's memfd: %v", err)
	}
	m[123] = 42
	if buf[123] != 42 {
		t.Fatalf("the mapping does not share the client's memory")
	}
	unix.Munmap(m)
	if _, err := openSharedArea(pid, uint32(fd), size, 8); err == nil {
		t.Errorf("mapped a memfd named for another handshake")
	}
	if _, err := openSharedArea(pid, uint32(fd), 2*size, 7); err == nil {
		t.Errorf("mapped more than the memfd holds")
	}
	if err := unix.Ftruncate(fd, size/2); err == nil {
		t.Errorf("the shared area could be shrunk under the server's mapping")
	}
	// An unsealed memfd of the right name.
	ufd, err := unix.MemfdCreate(memfdName(9), unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ufd)
	unix.Ftruncate(ufd, size)
	if _, err := openSharedArea(pid, uint32(ufd), size, 9); err == nil {
		t.Errorf("mapped a memfd that may shrink")
	}
	// Some other file the process has open.
	f, err := os.CreateTemp(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	if _, err := openSharedArea(pid, uint32(f.Fd()), size, 7); err == nil {
		t.Errorf("mapped a file that is not the handshake's memfd")
	}
}

// unwrapper forwards to a Service and exposes it, as cmd/psd's metrics
// wrapper does.
type unwrapper struct{ ps.Service }

func (u unwrapper) Unwrap() ps.Service { return u.Service }

func TestAliasOnlyForPSServer(t *testing.T) {
	cfg := ps.DefaultServerConfig()
	cfg.ID = "ps-alias"
	srv, err := ps.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, c := range []struct {
		name string
		svc  ps.Service
		want bool
	}{
		{"ps.Server", srv, true},
		{"wrapped ps.Server", unwrapper{unwrapper{srv}}, true},
		{"other service", newFakeService(), false},
		{"wrapped other service", unwrapper{newFakeService()}, false},
		{"opaque wrapper of ps.Server", struct{ ps.Service }{srv}, false},
	} {
		if got := isPSServer(c.svc); got != c.want {
			t.Errorf("%s: pushes aliased %v, want %v", c.name, got, c.want)
		}
	}
}
