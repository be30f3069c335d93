//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

// sinkService answers pushes without applying them and pulls from one
// prepared slice, so a benchmark measures the transport, not the service.
type sinkService struct{ values []float32 }

func (s *sinkService) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	return &ps.CreateResponse{Versions: make([]int64, len(req.Parts))}, nil
}

func (s *sinkService) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	resp := &ps.PullResponse{}
	for _, p := range req.Parts {
		resp.Parts = append(resp.Parts, ps.PartValues{Key: p.Key, Version: 1, Values: s.values})
	}
	return resp, nil
}

func (s *sinkService) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	for _, p := range req.Parts {
		if len(p.Grad) != len(s.values) {
			return nil, ps.Errorf(ps.ErrShapeMismatch, "push: %d values, want %d", len(p.Grad), len(s.values))
		}
	}
	return &ps.PushResponse{Versions: make([]int64, len(req.Parts))}, nil
}

func (s *sinkService) Close() error { return nil }

// cpuTime is the CPU time this process (client and server) has used: on a
// shared, loaded machine a steadier measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTransport pushes and pulls one tensor of each size over each
// provider; MB/s counts tensor bytes.
func BenchmarkTransport(b *testing.B) {
	for _, prov := range providers {
		for _, size := range []int{4 << 10, 4 << 20, 64 << 20} {
			svc := &sinkService{values: make([]float32, size/4)}
			cfg := DefaultServerConfig()
			cfg.Provider = prov
			s, err := NewServer(svc, cfg)
			if err != nil {
				b.Fatal(err)
			}
			dcfg := DefaultDialerConfig()
			dcfg.AreaBytes = 160 << 20
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			c, err := NewDialer(dcfg).Dial(ctx, s.Addr())
			if err != nil {
				b.Fatal(err)
			}
			key := ps.PartKey{Var: "v"}
			grad := make([]float32, size/4)
			name := fmt.Sprintf("%s/%dKiB", prov, size>>10)
			b.Run("push/"+name, func(b *testing.B) {
				b.SetBytes(int64(size))
				cpu := cpuTime()
				for i := 0; i < b.N; i++ {
					if _, err := c.Push(ctx, &ps.PushRequest{ClientID: "b", Seq: uint64(i), Parts: []ps.PushPart{{Key: key, Grad: grad}}}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
			b.Run("pull/"+name, func(b *testing.B) {
				b.SetBytes(int64(size))
				cpu := cpuTime()
				for i := 0; i < b.N; i++ {
					if _, err := c.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key}}}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
			c.Close()
			s.Close()
			cancel()
		}
	}
}
