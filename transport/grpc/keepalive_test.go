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
	entered := make(chan struct{}, 1)
	fake := &transporttest.Fake{PullFunc: func(ctx context.Context, _ *ps.PullRequest) (*ps.PullResponse, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	addr, _ := serve(t, fake, ServerConfig{StopTimeout: 100 * time.Millisecond})
	bh := newBlackhole(t, addr)
	d := NewDialer(DialerConfig{Keepalive: minKeepalive})
	defer d.Close()
	svc, _ := d.Dial(context.Background(), bh.lis.Addr().String())
	errc := make(chan error, 1)
	go func() { _, err := svc.Pull(context.Background(), &ps.PullRequest{}); errc <- err }()
	<-entered
	bh.frozen.Store(true)
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
