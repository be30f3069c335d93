package transporttest

import (
	"context"
	"sync/atomic"

	"github.com/flowps/flowps/ps"
)

// Fake is a recording ps.Service whose behaviour each test sets through its
// function fields. A nil field answers with an empty response. Fake counts
// calls and Close calls; it is safe for concurrent use as long as the
// function fields are not changed while calls are in flight.
//
// Fake lets transport tests and benchmarks run without ps.Server: what the
// transport delivers is exactly what the functions see.
type Fake struct {
	CreateFunc func(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error)
	PullFunc   func(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error)
	PushFunc   func(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error)

	creates, pulls, pushes, closes atomic.Int64
}

// Create implements ps.Service.
func (f *Fake) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	f.creates.Add(1)
	if f.CreateFunc == nil {
		return &ps.CreateResponse{}, nil
	}
	return f.CreateFunc(ctx, req)
}

// Pull implements ps.Service.
func (f *Fake) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	f.pulls.Add(1)
	if f.PullFunc == nil {
		return &ps.PullResponse{}, nil
	}
	return f.PullFunc(ctx, req)
}

// Push implements ps.Service.
func (f *Fake) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	f.pushes.Add(1)
	if f.PushFunc == nil {
		return &ps.PushResponse{}, nil
	}
	return f.PushFunc(ctx, req)
}

// Close implements ps.Service; it only counts.
func (f *Fake) Close() error {
	f.closes.Add(1)
	return nil
}

// Calls returns how many Create, Pull and Push calls reached the fake.
func (f *Fake) Calls() (creates, pulls, pushes int64) {
	return f.creates.Load(), f.pulls.Load(), f.pushes.Load()
}
