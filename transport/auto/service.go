package auto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flowps/flowps/ps"
)

// service is the ps.Service Dial returns: calls go over the fabric while
// onFabric holds, else over gRPC.
type service struct {
	d          *Dialer
	addr, peer string
	fabricAddr string
	provider   string
	noFallback bool // ModeRDMA: report fabric errors, never fall back

	grpc   ps.Service
	fabric ps.Service // nil when dialed over gRPC

	onFabric     atomic.Bool
	fallbackOnce sync.Once
	closed       atomic.Bool
	closeOnce    sync.Once
	closeErr     error
}

// call runs one request, over the fabric while that is the choice. A
// fabric failure (ps.ErrUnavailable not caused by ctx) is answered by
// re-sending the same request over gRPC: Create is idempotent, a Pull
// reads, and a Push keeps its (ClientID, Seq), which the server applies
// once. When gRPC answers — a response or a service error — the peer is
// alive and only the fabric is broken: the service stays on gRPC from then
// on. When gRPC fails too, the peer is unreachable; the error is returned
// (ps.ErrUnavailable, so a ps.Client drops and redials the connection) and
// nothing changes.
func call[Resp any](ctx context.Context, s *service, what string, f func(ps.Service) (*Resp, error)) (*Resp, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%s %s: %w", what, s.addr, ps.ErrClosed)
	}
	if !s.onFabric.Load() {
		return f(s.grpc)
	}
	resp, err := f(s.fabric)
	if err == nil || s.noFallback || !s.fabricFailed(ctx, err) {
		return resp, err
	}
	resp, gerr := f(s.grpc)
	if gerr != nil && !answered(ctx, gerr) {
		return nil, fmt.Errorf("%s %s over %s: %w (re-sent over grpc: %v)", what, s.addr, s.provider, err, gerr)
	}
	s.fallback(err)
	return resp, gerr
}

// fabricFailed reports whether err from the fabric side is a transport
// failure worth re-sending over gRPC.
func (s *service) fabricFailed(ctx context.Context, err error) bool {
	if ctx.Err() != nil || s.closed.Load() {
		return false
	}
	if errors.Is(err, ps.ErrUnavailable) {
		return true
	}
	// A call in flight when another one switched this service to gRPC
	// sees the fabric connection closed under it.
	return errors.Is(err, ps.ErrClosed) && !s.onFabric.Load()
}

// answered reports whether err came from a live server (a service error)
// rather than from failing to reach it.
func answered(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return !errors.Is(err, ps.ErrUnavailable) && !errors.Is(err, ps.ErrClosed)
}

// fallback switches the service to gRPC once: later calls go there, the
// Dialer records and logs it, and the fabric connection is closed (which
// may take up to its goodbye timeout).
func (s *service) fallback(cause error) {
	s.fallbackOnce.Do(func() {
		s.onFabric.Store(false)
		s.d.fellBack(s, cause)
		s.fabric.Close()
	})
}

// Create implements ps.Service.
func (s *service) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	return call(ctx, s, "create", func(svc ps.Service) (*ps.CreateResponse, error) { return svc.Create(ctx, req) })
}

// Pull implements ps.Service.
func (s *service) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	return call(ctx, s, "pull", func(svc ps.Service) (*ps.PullResponse, error) { return svc.Pull(ctx, req) })
}

// Push implements ps.Service.
func (s *service) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	return call(ctx, s, "push", func(svc ps.Service) (*ps.PushResponse, error) { return svc.Push(ctx, req) })
}

// Close closes both connections; later calls fail with ps.ErrClosed.
// It is idempotent.
func (s *service) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		var errs []error
		if s.fabric != nil {
			s.fallbackOnce.Do(func() {}) // no fallback after Close
			errs = append(errs, s.fabric.Close())
		}
		errs = append(errs, s.grpc.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Transport reports what the service uses now: TransportRDMA with its
// provider, or TransportGRPC.
func (s *service) Transport() (transport, provider string) {
	if s.onFabric.Load() {
		return TransportRDMA, s.provider
	}
	return TransportGRPC, ""
}

// replicatingService adds ps.Replicator, always over gRPC: the RDMA
// transport carries only the parameter service.
type replicatingService struct {
	*service
	rep ps.Replicator
}

// Replicate implements ps.Replicator over gRPC.
func (r *replicatingService) Replicate(ctx context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	if r.closed.Load() {
		return nil, fmt.Errorf("replicate %s: %w", r.addr, ps.ErrClosed)
	}
	return r.rep.Replicate(ctx, req)
}

// Fetch implements ps.Replicator over gRPC.
func (r *replicatingService) Fetch(ctx context.Context, req *ps.FetchRequest) (*ps.FetchResponse, error) {
	if r.closed.Load() {
		return nil, fmt.Errorf("fetch %s: %w", r.addr, ps.ErrClosed)
	}
	return r.rep.Fetch(ctx, req)
}

// Install implements ps.Replicator over gRPC.
func (r *replicatingService) Install(ctx context.Context, req *ps.InstallRequest) (*ps.InstallResponse, error) {
	if r.closed.Load() {
		return nil, fmt.Errorf("install %s: %w", r.addr, ps.ErrClosed)
	}
	return r.rep.Install(ctx, req)
}

var (
	_ ps.Service    = (*service)(nil)
	_ ps.Replicator = (*replicatingService)(nil)
)
