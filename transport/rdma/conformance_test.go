//go:build rdma && cgo && linux

package rdma

import (
	"os"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

// areaBytes sizes staging areas for the suite: 128 MiB holds its 64 MiB
// case; its 1 GiB case (FLOWPS_BIG=1) needs a larger area (mmap'd lazily).
func areaBytes() int64 {
	if os.Getenv("FLOWPS_BIG") == "1" {
		return 2560 << 20
	}
	return 128 << 20
}

func TestConformance(t *testing.T) {
	for _, prov := range providers {
		large := 0 // 64 MiB
		if testing.Short() {
			large = 4 << 20
		}
		transporttest.Run(t, transporttest.Harness{
			Name:       prov,
			LargeBytes: large,
			Serve: func(t *testing.T, svc ps.Service) (string, func()) {
				cfg := DefaultServerConfig()
				cfg.Provider = prov
				cfg.MaxAreaBytes = areaBytes()
				s, err := NewServer(svc, cfg)
				if err != nil {
					t.Fatalf("NewServer: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s.Addr(), func() { s.Close() }
			},
			Dialer: func(t *testing.T) ps.Dialer {
				cfg := DefaultDialerConfig()
				cfg.HandshakeTimeout = time.Second
				cfg.AreaBytes = areaBytes()
				return NewDialer(cfg)
			},
		})
	}
}
