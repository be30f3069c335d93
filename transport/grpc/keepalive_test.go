package grpctransport

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

// blackhole is a TCP proxy that can silently stop forwarding in both
// directions without closing anything, as a network partition does.
type blackhole struct {
	lis    net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	n      int // connections accepted
}

func (b *blackhole) accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func newBlackhole(t *testing.T, target string) *blackhole {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{lis: lis}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			b.mu.Lock()
			b.conns = append(b.conns, c, s)
			b.n++
			b.mu.Unlock()
			b.wg.Add(2)
			go b.pipe(c, s)
			go b.pipe(s, c)
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) pipe(dst, src net.Conn) {
	defer b.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if b.frozen.Load() {
			continue // swallow
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestKeepaliveDetectsSilentPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("takes gRPC's minimum keepalive of 10s")
	}
	for _, path := range []string{DataPathOff, ""} {
		t.Run("datapath="+path, func(t *testing.T) {
			t.Parallel()
			testKeepaliveDetectsSilentPartition(t, path)
		})
	}
}

// testKeepaliveDetectsSilentPartition blocks a pull on the server, then
// silences the network between client and server (gRPC and, when used,
// the data path both go through black holes): the pull fails with
// ps.ErrUnavailable (gRPC's pings; the data path's heartbeats).
func testKeepaliveDetectsSilentPartition(t *testing.T, path string) {
	entered := make(chan struct{}, 1)
	fake := &transporttest.Fake{PullFunc: func(ctx context.Context, _ *ps.PullRequest) (*ps.PullResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	addr, _ := serve(t, fake, ServerConfig{StopTimeout: 100 * time.Millisecond})
	bh := newBlackhole(t, addr)
	d := NewDialer(DialerConfig{Keepalive: minKeepalive, DataPath: path})
	defer d.Close()
	svc, _ := d.Dial(context.Background(), bh.lis.Addr().String())
	var dataHole *blackhole
	if path == "" {
		// Learn the data path, and send it through a black hole of its
		// own.
		c := svc.(*client)
		p := c.p.data
		p.learn(context.Background(), c.p)
		p.mu.Lock()
		if p.target == "" {
			t.Fatal("the server offers no data path")
		}
		dataHole = newBlackhole(t, p.tcp) // its TCP port, not the Unix socket
		p.target, p.reachable = dataHole.lis.Addr().String(), false
		p.mu.Unlock()
		waitDataPath(t, svc)
	}
	errc := make(chan error, 1)
	go func() { _, err := svc.Pull(context.Background(), &ps.PullRequest{}); errc <- err }()
	<-entered
	if path == "" && dataHole.accepted() == 0 {
		t.Fatal("the pull did not take the data path")
	}
	bh.frozen.Store(true)
	if dataHole != nil {
		dataHole.frozen.Store(true)
	}
	start := time.Now()
	select {
	case err := <-errc:
		if !errors.Is(err, ps.ErrUnavailable) {
			t.Errorf("pull across a silent partition: %v, want ps.ErrUnavailable", err)
		}
		t.Logf("partition detected after %v", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Fatal("pull across a silent partition still blocked after 30s")
	}
}
