package inproc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/ps"
)

// Method names passed to a fault hook.
const (
	MethodCreate = "Create"
	MethodPull   = "Pull"
	MethodPush   = "Push"
)

// Fault is what a fault hook decides for one call. The zero Fault delivers
// the call normally.
type Fault struct {
	// Err, when non-nil, fails the call with Err before it reaches the
	// server.
	Err error
	// Delay holds the request back this long before delivery (the caller's
	// context still cancels the wait).
	Delay time.Duration
	// Drop loses the request: the server never sees it and the caller gets
	// ps.ErrUnavailable.
	Drop bool
	// DropResponse delivers the request, lets the server apply it, and
	// loses the response: the caller gets ps.ErrUnavailable. This is how a
	// test provokes the retry of a push that was in fact applied.
	DropResponse bool
	// Duplicate delivers the request this many extra times after the first
	// delivery; the caller sees the first delivery's response.
	Duplicate int
}

// FaultFunc decides the fate of a call from address from to address to.
// method is one of MethodCreate, MethodPull, MethodPush. It is called on the
// caller's goroutine, concurrently for concurrent calls, without any lock of
// the Network held; it must be safe for concurrent use.
type FaultFunc func(from, to, method string) Fault

// Network is an in-process network of parameter servers. The zero value is
// not usable; call NewNetwork. All methods are safe for concurrent use.
type Network struct {
	mu      sync.Mutex
	nodes   map[string]*node
	blocked map[[2]string]bool // unordered pairs cut by Disconnect
	groups  map[string]int     // Partition's groups; nil when healed
	fault   atomic.Pointer[FaultFunc]
}

type node struct {
	svc  ps.Service
	ctx  context.Context // cancelled by stop
	stop context.CancelFunc
}

// NewNetwork returns an empty network with every pair connected.
func NewNetwork() *Network {
	return &Network{nodes: make(map[string]*node), blocked: make(map[[2]string]bool)}
}

// Serve makes svc reachable at addr until stop is called. Serving an address
// that is already served replaces (and stops) the previous server there.
// stop is idempotent: it makes addr unreachable and cancels the contexts of
// the calls svc is still running, whose callers get ps.ErrUnavailable. stop
// does not Close svc; its owner does.
func (n *Network) Serve(addr string, svc ps.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{svc: svc, ctx: ctx, stop: cancel}
	n.mu.Lock()
	if old := n.nodes[addr]; old != nil {
		old.stop()
	}
	n.nodes[addr] = nd
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		if n.nodes[addr] == nd {
			delete(n.nodes, addr)
		}
		n.mu.Unlock()
		cancel()
	}
}

// Dialer returns a dialer whose calls come from address from; connectivity
// hooks and faults see this name. from need not be served.
func (n *Network) Dialer(from string) *Dialer {
	return &Dialer{net: n, from: from}
}

func pairOf(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Disconnect cuts the link between a and b in both directions, until
// Reconnect(a, b) or Heal. Calls in flight over the link complete at the
// server, but their callers get ps.ErrUnavailable.
func (n *Network) Disconnect(a, b string) {
	n.mu.Lock()
	n.blocked[pairOf(a, b)] = true
	n.mu.Unlock()
}

// Reconnect undoes Disconnect(a, b). It does not undo a Partition.
func (n *Network) Reconnect(a, b string) {
	n.mu.Lock()
	delete(n.blocked, pairOf(a, b))
	n.mu.Unlock()
}

// Partition splits the network: afterwards two addresses reach each other
// only if they are named in the same group. An address named in no group
// reaches nothing but itself. A later Partition replaces this one; Heal
// undoes it.
func (n *Network) Partition(groups ...[]string) {
	g := make(map[string]int)
	for i, grp := range groups {
		for _, a := range grp {
			g[a] = i
		}
	}
	n.mu.Lock()
	n.groups = g
	n.mu.Unlock()
}

// Heal removes the partition and every Disconnect.
func (n *Network) Heal() {
	n.mu.Lock()
	n.groups = nil
	n.blocked = make(map[[2]string]bool)
	n.mu.Unlock()
}

// SetFault installs a hook that may fail, delay, drop or duplicate each
// call; nil removes it.
func (n *Network) SetFault(f FaultFunc) {
	if f == nil {
		n.fault.Store(nil)
		return
	}
	n.fault.Store(&f)
}

// route returns the node serving to as seen from from, or an error wrapping
// ps.ErrUnavailable.
func (n *Network) route(from, to string) (*node, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nd := n.nodes[to]
	if nd == nil {
		return nil, fmt.Errorf("inproc: nothing serves %q: %w", to, ps.ErrUnavailable)
	}
	if from != to {
		if n.blocked[pairOf(from, to)] {
			return nil, fmt.Errorf("inproc: %q is disconnected from %q: %w", from, to, ps.ErrUnavailable)
		}
		if n.groups != nil {
			gf, okf := n.groups[from]
			gt, okt := n.groups[to]
			if !okf || !okt || gf != gt {
				return nil, fmt.Errorf("inproc: %q is partitioned from %q: %w", from, to, ps.ErrUnavailable)
			}
		}
	}
	return nd, nil
}

// Dialer dials addresses on a Network. It implements ps.Dialer.
type Dialer struct {
	net  *Network
	from string
}

// Dial returns a Service that forwards to whatever serves addr at the time
// of each call. Like a gRPC client it connects lazily: Dial succeeds for an
// address nobody serves, and calls fail with ps.ErrUnavailable until
// somebody does.
func (d *Dialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inproc: dial %s: %w", addr, err)
	}
	return &client{net: d.net, from: d.from, to: addr}, nil
}

// client is a ps.Service forwarding to one address of a Network.
type client struct {
	net      *Network
	from, to string
	closed   atomic.Bool
}

var errStopped = errors.New("inproc: server stopped")

// call delivers one call. deliver runs the server's method with a deep copy
// of the request and returns a deep copy of its response.
func call[Resp any](ctx context.Context, c *client, method string, deliver func(ctx context.Context, svc ps.Service) (Resp, error)) (Resp, error) {
	var zero Resp
	fail := func(err error) (Resp, error) {
		return zero, fmt.Errorf("inproc %s %s->%s: %w", method, c.from, c.to, err)
	}
	if c.closed.Load() {
		return fail(ps.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	var f Fault
	if h := c.net.fault.Load(); h != nil {
		f = (*h)(c.from, c.to, method)
	}
	if f.Err != nil {
		return fail(f.Err)
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		}
	}
	if f.Drop {
		return fail(fmt.Errorf("request dropped by fault: %w", ps.ErrUnavailable))
	}
	nd, err := c.net.route(c.from, c.to)
	if err != nil {
		return fail(err)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	unhook := context.AfterFunc(nd.ctx, func() { cancel(errStopped) })
	defer unhook()

	resp, err := deliver(cctx, nd.svc)
	for i := 0; i < f.Duplicate && cctx.Err() == nil; i++ {
		deliver(cctx, nd.svc) // a duplicate's response is lost on the wire
	}
	switch {
	case nd.ctx.Err() != nil:
		return fail(fmt.Errorf("server stopped during the call: %w", ps.ErrUnavailable))
	case err != nil && ctx.Err() != nil:
		return fail(ctx.Err())
	}
	if _, rerr := c.net.route(c.from, c.to); rerr != nil {
		return fail(fmt.Errorf("response lost: %w", rerr))
	}
	if f.DropResponse {
		return fail(fmt.Errorf("response dropped by fault: %w", ps.ErrUnavailable))
	}
	if err != nil {
		// Rebuild the error as a wire transport would, so that code tested
		// over inproc relies only on what crosses a real wire: the
		// sentinel and the text.
		return zero, ps.ErrorFromCode(ps.CodeOf(err), err.Error())
	}
	return resp, nil
}

// Create implements ps.Service.
func (c *client) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	return call(ctx, c, MethodCreate, func(ctx context.Context, svc ps.Service) (*ps.CreateResponse, error) {
		resp, err := svc.Create(ctx, cloneCreateRequest(req))
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		return &ps.CreateResponse{Versions: slices.Clone(resp.Versions)}, nil
	})
}

// Pull implements ps.Service.
func (c *client) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	return call(ctx, c, MethodPull, func(ctx context.Context, svc ps.Service) (*ps.PullResponse, error) {
		resp, err := svc.Pull(ctx, clonePullRequest(req))
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		return clonePullResponse(resp, req), nil
	})
}

// Push implements ps.Service.
func (c *client) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	return call(ctx, c, MethodPush, func(ctx context.Context, svc ps.Service) (*ps.PushResponse, error) {
		resp, err := svc.Push(ctx, clonePushRequest(req))
		if err != nil || resp == nil {
			return nil, orNilResponse(err)
		}
		return &ps.PushResponse{Versions: slices.Clone(resp.Versions)}, nil
	})
}

// Close implements ps.Service. It is idempotent; later calls fail with
// ps.ErrClosed. It does not affect the server.
func (c *client) Close() error {
	c.closed.Store(true)
	return nil
}

// orNilResponse turns a service's (nil, nil) answer into an error, as a wire
// transport would have nothing to send.
func orNilResponse(err error) error {
	if err != nil {
		return err
	}
	return errors.New("inproc: service returned a nil response and no error")
}

// The clones below copy every slice and keep nil slices nil, so neither
// side can alias the other's memory and nil versus empty Rows survives.

func cloneCreateRequest(r *ps.CreateRequest) *ps.CreateRequest {
	if r == nil {
		return &ps.CreateRequest{}
	}
	out := *r
	out.Spec.Shape = slices.Clone(r.Spec.Shape)
	out.Parts = slices.Clone(r.Parts)
	return &out
}

func clonePullRequest(r *ps.PullRequest) *ps.PullRequest {
	if r == nil {
		return &ps.PullRequest{}
	}
	out := *r
	out.Alloc = nil // local to the caller's process, as on a wire
	out.Parts = slices.Clone(r.Parts)
	for i := range out.Parts {
		out.Parts[i].Rows = slices.Clone(r.Parts[i].Rows)
		out.Parts[i].Dst = nil
	}
	return &out
}

// clonePullResponse copies the server's values into each part's Dst when
// it fits, as a wire transport's client decodes into it, else into a new
// array.
func clonePullResponse(r *ps.PullResponse, req *ps.PullRequest) *ps.PullResponse {
	out := &ps.PullResponse{Parts: slices.Clone(r.Parts), Waited: r.Waited}
	for i := range out.Parts {
		v := r.Parts[i].Values
		if req != nil && i < len(req.Parts) && v != nil && req.Parts[i].Dst != nil && len(req.Parts[i].Dst) == len(v) {
			out.Parts[i].Values = req.Parts[i].Dst
			copy(out.Parts[i].Values, v)
			continue
		}
		out.Parts[i].Values = slices.Clone(v)
	}
	return out
}

func clonePushRequest(r *ps.PushRequest) *ps.PushRequest {
	if r == nil {
		return &ps.PushRequest{}
	}
	out := *r
	out.Parts = slices.Clone(r.Parts)
	for i := range out.Parts {
		out.Parts[i].Rows = slices.Clone(r.Parts[i].Rows)
		out.Parts[i].Grad = slices.Clone(r.Parts[i].Grad)
	}
	return &out
}

var _ ps.Dialer = (*Dialer)(nil)
