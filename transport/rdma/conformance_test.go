//go:build rdma && cgo && linux

package rdma

import (
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

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
				s, err := NewServer(svc, cfg)
				if err != nil {
					t.Fatalf("NewServer: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s.Addr(), func() { s.Close() }
			},
			Dialer: func(t *testing.T) ps.Dialer {
				cfg := DefaultDialerConfig()
				cfg.HandshakeTimeout = 2e9
				return NewDialer(cfg)
			},
		})
	}
}
