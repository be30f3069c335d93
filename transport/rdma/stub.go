//go:build !(rdma && cgo && linux)

package rdma

import (
	"context"
	"fmt"

	"github.com/flowps/flowps/ps"
)

// Server is unavailable in this build; NewServer returns ErrNoRDMA.
type Server struct{}

// NewServer returns ErrNoRDMA: this binary was built without the rdma tag.
func NewServer(svc ps.Service, cfg ServerConfig) (*Server, error) {
	return nil, fmt.Errorf("rdma: new server: %w", ErrNoRDMA)
}

// Endpoint returns nothing in this build.
func (s *Server) Endpoint() (name []byte, provider string) { return nil, "" }

// Addr returns "" in this build.
func (s *Server) Addr() string { return "" }

// Clients returns 0 in this build.
func (s *Server) Clients() int { return 0 }

// Close does nothing in this build.
func (s *Server) Close() error { return nil }

// Dialer is the client side; in this build Dial returns ErrNoRDMA.
type Dialer struct{ cfg DialerConfig }

// NewDialer returns a Dialer whose Dial fails with ErrNoRDMA.
func NewDialer(cfg DialerConfig) ps.Dialer { return &Dialer{cfg: cfg} }

// Dial returns ErrNoRDMA: this binary was built without the rdma tag.
func (d *Dialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	return nil, fmt.Errorf("rdma: dial %s: %w", addr, ErrNoRDMA)
}

// Available reports whether this binary can use libfabric: false here.
func Available() bool { return false }

func libfabricInfo() (version string, providers []string, err error) {
	return "", nil, ErrNoRDMA
}
