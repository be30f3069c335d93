package ps

import "context"

// Service is what a parameter server offers, one method per RPC. ps.Server
// implements it; transports carry its calls between processes, and a
// transport's dialer returns a Service that forwards to a remote server.
//
// Every method may block (Pull waits for versions in sync and SSP modes), so
// each takes a context; implementations return ctx.Err() wrapped when it is
// done. Errors match the sentinels in errors.go with errors.Is.
type Service interface {
	// Create hosts partitions of a variable (idempotent).
	Create(ctx context.Context, req *CreateRequest) (*CreateResponse, error)
	// Pull reads partitions, waiting where the consistency mode says so.
	Pull(ctx context.Context, req *PullRequest) (*PullResponse, error)
	// Push applies (or, in sync mode, aggregates) gradients. The whole
	// request is validated before any part is applied.
	Push(ctx context.Context, req *PushRequest) (*PushResponse, error)
	// Close releases the connection or the server's resources.
	Close() error
}

// Dialer connects to a remote Service by its address (a transport endpoint
// such as a gRPC HOST:PORT). A ps.Client holds one Service per server.
type Dialer interface {
	Dial(ctx context.Context, addr string) (Service, error)
}

// ServerOf returns the *Server that svc is or wraps, and whether there is
// one. A Service that wraps another (for metrics, logging) reveals it with
// a method Unwrap() Service, and by that promises what Server promises:
// that it keeps no reference to a request's slices or to the values it
// returned once a call has returned. Transports' servers use ServerOf to
// learn whether they may recycle the buffers they hand the service.
func ServerOf(svc Service) (*Server, bool) {
	for range 16 { // wrappers of wrappers, but never a cycle
		switch s := svc.(type) {
		case *Server:
			return s, true
		case interface{ Unwrap() Service }:
			svc = s.Unwrap()
		default:
			return nil, false
		}
	}
	return nil, false
}
