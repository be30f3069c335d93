//go:build rdma && cgo && linux

package main

import (
	"context"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/rdma"
)

// With -tags rdma the benchmark also measures flowps's libfabric transport
// over the tcp;ofi_rxm provider (rdma-tcp) and the shm provider (rdma-shm),
// against the same ps.Server as the grpc rows.
func init() {
	backends = append(backends, rdmaBackend("rdma-tcp", rdma.ProviderTCP), rdmaBackend("rdma-shm", rdma.ProviderSHM))
}

func rdmaBackend(name, provider string) backend {
	return backend{
		name:  name,
		child: true,
		serve: func(ctx context.Context, e *env) (string, func() error, error) {
			return servePS(func(svc *ps.Server) (string, func() error, error) {
				s, err := rdma.NewServer(svc, rdma.ServerConfig{Provider: provider, MaxAreaBytes: 512 << 20, Logger: e.logger})
				if err != nil {
					return "", nil, err
				}
				return s.Addr(), s.Close, nil
			})
		},
		dial: func(ctx context.Context, e *env, addr string) (client, error) {
			d := rdma.NewDialer(rdma.DialerConfig{Provider: provider, AreaBytes: 512 << 20, Logger: e.logger})
			svc, err := d.Dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return newPSClient(svc, nil), nil
		},
	}
}
