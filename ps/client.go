package ps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/sharding"
)

// MemberSource gives the client its current view of the cluster.
// sharding.Membership satisfies it; StaticMembers serves fixed views.
// Members may be called from several goroutines at once.
type MemberSource interface {
	Members() []sharding.Member
}

// StaticMembers is a fixed membership view.
type StaticMembers []sharding.Member

// Members returns the fixed view.
func (s StaticMembers) Members() []sharding.Member { return s }

// DirectDialer "dials" services held in this process by address, with no
// transport in between. It serves --local training and tests.
type DirectDialer map[string]Service

// Dial returns the service registered under addr.
func (d DirectDialer) Dial(_ context.Context, addr string) (Service, error) {
	svc, ok := d[addr]
	if !ok {
		return nil, Errorf(ErrUnavailable, "no service at %q", addr)
	}
	return noClose{svc}, nil
}

// noClose keeps a client's Close from closing a shared in-process server.
type noClose struct{ Service }

func (noClose) Close() error { return nil }

// ClientConfig configures a Client.
type ClientConfig struct {
	// ID names the client in push requests, so a retried push is applied
	// once. Empty means a random id.
	ID string
	// Worker is this client's worker rank (0-based), used by sync and SSP
	// variables.
	Worker int
	// Members gives the view placement runs over. Required.
	Members MemberSource
	// Dialer connects to a server's Addr. Required.
	Dialer Dialer
	// Replicas is the placement's replica count r; requests go to the
	// primary (the first owner). Zero means 1.
	Replicas int
	// RetryTimeout bounds how long one call keeps retrying after NotOwner or
	// an unavailable server, waiting for the membership view to change.
	// Zero means 30 s: long enough for gossip to declare a crashed server
	// dead on a LAN profile.
	RetryTimeout time.Duration
	// Logger receives retry and redial events. Nil discards.
	Logger *slog.Logger
}

// DefaultClientConfig returns a config with defaults filled in; Members and
// Dialer must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{Replicas: 1, RetryTimeout: 30 * time.Second}
}

func (c *ClientConfig) validate() error {
	if c.Members == nil {
		return Errorf(ErrInvalidArgument, "client config: Members is nil")
	}
	if c.Dialer == nil {
		return Errorf(ErrInvalidArgument, "client config: Dialer is nil")
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = 30 * time.Second
	}
	if c.ID == "" {
		var b [8]byte
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			return fmt.Errorf("client id: %w", err)
		}
		c.ID = "c-" + hex.EncodeToString(b[:])
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Client creates, pulls and pushes variables across the cluster. It maps
// each partition to its owner by placement over the current view, groups the
// partitions of one call per server, sends the groups in parallel, and on
// NotOwner or an unavailable server waits for the view to change and retries
// the parts that failed. A Client is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	seq atomic.Uint64

	mu    sync.Mutex
	vars  map[string]*clientVar
	conns map[string]Service

	// pmu guards view and primary: the membership view placement last ran
	// over, and each partition's primary address in it, computed once per
	// view instead of on every call.
	pmu     sync.Mutex
	view    []sharding.Member
	primary map[PartKey]string
}

type clientVar struct {
	spec  VariableSpec
	parts []RowRange
}

// NewClient returns a client for the cluster cfg.Members describes.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, vars: map[string]*clientVar{}, conns: map[string]Service{}}, nil
}

// ID is the client's id as servers see it.
func (c *Client) ID() string { return c.cfg.ID }

// Close closes every connection the client opened.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for addr, s := range c.conns {
		errs = append(errs, s.Close())
		delete(c.conns, addr)
	}
	return errors.Join(errs...)
}

// CreateVariable creates the variable's partitions on their owners, or
// checks that an existing variable has the same spec (ErrSpecMismatch
// otherwise). It must be called before the variable is pulled or pushed by
// this client.
func (c *Client) CreateVariable(ctx context.Context, spec VariableSpec) error {
	if err := checkSpecShape(&spec); err != nil {
		return err
	}
	cv := &clientVar{spec: spec, parts: spec.Partitions()}
	all := make([]int, len(cv.parts))
	for i := range all {
		all[i] = i
	}
	err := c.retry(ctx, "create "+spec.Name, all, func(i int) PartKey { return PartKey{spec.Name, i} },
		func(ctx context.Context, svc Service, idx []int) ([]int, error) {
			_, err := svc.Create(ctx, &CreateRequest{Spec: spec, Parts: idx})
			return nil, err
		})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.vars[spec.Name] = cv
	c.mu.Unlock()
	return nil
}

// checkSpecShape catches the mistakes a client can see before any request.
func checkSpecShape(s *VariableSpec) error {
	if s.Name == "" {
		return Errorf(ErrInvalidArgument, "variable has no name")
	}
	if len(s.Shape) == 0 {
		return Errorf(ErrInvalidArgument, "variable %s: rank 0; want rank ≥ 1", s.Name)
	}
	for _, d := range s.Shape {
		if d <= 0 {
			return Errorf(ErrInvalidArgument, "variable %s: shape %v has a non-positive dimension", s.Name, s.Shape)
		}
	}
	return nil
}

// Spec returns the spec of a variable this client created.
func (c *Client) Spec(name string) (VariableSpec, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vars[name]
	if !ok {
		return VariableSpec{}, false
	}
	return v.spec, true
}

func (c *Client) variable(name string) (*clientVar, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vars[name]
	if !ok {
		return nil, Errorf(ErrUnknownVariable, "%q was not created by this client", name)
	}
	return v, nil
}

// PullOp reads one variable into Dst: the whole variable when Rows is nil
// (len(Dst) = NumElements), or the given global rows (len(Dst) =
// len(Rows)×RowSize). MinVersion > 0 waits until every partition read has
// reached that version (sync mode).
type PullOp struct {
	Var        string
	Rows       []int64
	Dst        []float32
	MinVersion int64
}

// PullOptions apply to a whole pull.
type PullOptions struct {
	// Clock is the worker's SSP clock (SSP variables only).
	Clock int64
	// Stats, when non-nil, receives what the call measured.
	Stats *PullStats
}

// PullStats describes one PullMany call.
type PullStats struct {
	// Waited is the longest time one server held its share of the call
	// waiting for versions (the sync barrier) or the SSP bound, as the
	// servers report it (PullResponse.Waited); the servers wait in
	// parallel. The rest of the call's time is transfer and overhead.
	Waited time.Duration
}

// PushOp sends one gradient: for the whole variable when Rows is nil
// (len(Grad) = NumElements), or for the given global rows (len(Grad) =
// len(Rows)×RowSize). Step is the version the gradient was computed against
// (sync mode).
type PushOp struct {
	Var  string
	Rows []int64
	Grad []float32
	Step int64
}

// PushOptions apply to a whole push.
type PushOptions struct {
	// Clock is the worker's SSP clock after this push (SSP variables only).
	Clock int64
}

// Pull reads a whole variable into dst and returns the lowest partition
// version read.
func (c *Client) Pull(ctx context.Context, name string, dst []float32, minVersion int64) (int64, error) {
	vs, err := c.PullMany(ctx, []PullOp{{Var: name, Dst: dst, MinVersion: minVersion}}, PullOptions{})
	if err != nil {
		return 0, err
	}
	return vs[0], nil
}

// Push sends a dense gradient for a whole variable.
func (c *Client) Push(ctx context.Context, name string, grad []float32, step int64) error {
	return c.PushMany(ctx, []PushOp{{Var: name, Grad: grad, Step: step}}, PushOptions{})
}

// piece is one partition's share of an op.
type piece struct {
	op    int
	key   PartKey
	rows  []int64 // partition-local rows; nil = dense
	pos   []int   // for sparse ops: index into the op's Rows of each row
	start int64   // dense: first element of the partition in the op's buffer
	n     int64   // dense: element count of the partition
	min   int64
}

// opDesc is what split needs to know of a pull or push op.
type opDesc struct {
	name string
	rows []int64
	n    int
	min  int64
}

// split maps ops onto partitions.
func (c *Client) split(ops []opDesc) ([]piece, []*clientVar, error) {
	var out []piece
	vars := make([]*clientVar, len(ops))
	for i, op := range ops {
		v, err := c.variable(op.name)
		if err != nil {
			return nil, nil, err
		}
		vars[i] = v
		rs := v.spec.RowSize()
		if op.rows == nil {
			if int64(op.n) != v.spec.NumElements() {
				return nil, nil, Errorf(ErrShapeMismatch, "%s: buffer has %d values, variable %v has %d", op.name, op.n, v.spec.Shape, v.spec.NumElements())
			}
			for p, r := range v.parts {
				out = append(out, piece{op: i, key: PartKey{op.name, p}, start: r.Start * rs, n: r.Len() * rs, min: op.min})
			}
			continue
		}
		if int64(op.n) != int64(len(op.rows))*rs {
			return nil, nil, Errorf(ErrShapeMismatch, "%s: %d rows need %d values, buffer has %d", op.name, len(op.rows), int64(len(op.rows))*rs, op.n)
		}
		byPart := map[int]*piece{}
		var order []int
		for j, row := range op.rows {
			if row < 0 || row >= v.spec.Rows() {
				return nil, nil, Errorf(ErrInvalidArgument, "%s: row %d out of range [0, %d)", op.name, row, v.spec.Rows())
			}
			p := sort.Search(len(v.parts), func(k int) bool { return v.parts[k].End > row })
			pc := byPart[p]
			if pc == nil {
				pc = &piece{op: i, key: PartKey{op.name, p}, rows: []int64{}, min: op.min}
				byPart[p] = pc
				order = append(order, p)
			}
			pc.rows = append(pc.rows, row-v.parts[p].Start)
			pc.pos = append(pc.pos, j)
		}
		for _, p := range order {
			out = append(out, *byPart[p])
		}
	}
	return out, vars, nil
}

// PullMany reads several variables in one round: partitions are grouped per
// server and fetched in parallel. It returns, per op, the lowest version
// read.
func (c *Client) PullMany(ctx context.Context, ops []PullOp, opt PullOptions) ([]int64, error) {
	desc := make([]opDesc, len(ops))
	for i, op := range ops {
		desc[i].name, desc[i].rows, desc[i].n, desc[i].min = op.Var, op.Rows, len(op.Dst), op.MinVersion
	}
	pieces, vars, err := c.split(desc)
	if err != nil {
		return nil, err
	}
	versions := make([]int64, len(ops))
	for i := range versions {
		versions[i] = -1
	}
	var vmu sync.Mutex // guards versions and opt.Stats
	if opt.Stats != nil {
		*opt.Stats = PullStats{}
	}
	idx := make([]int, len(pieces))
	for i := range idx {
		idx[i] = i
	}
	err = c.retry(ctx, "pull", idx, func(i int) PartKey { return pieces[i].key },
		func(ctx context.Context, svc Service, group []int) ([]int, error) {
			req := &PullRequest{ClientID: c.cfg.ID, Worker: c.cfg.Worker, Clock: opt.Clock, Parts: make([]PullPart, len(group))}
			for j, pi := range group {
				p := &pieces[pi]
				req.Parts[j] = PullPart{Key: p.key, Rows: p.rows, MinVersion: p.min}
				if p.rows == nil {
					// Dense: the partition's values land straight in
					// the caller's buffer where the service allows.
					req.Parts[j].Dst = ops[p.op].Dst[p.start : p.start+p.n : p.start+p.n]
				}
			}
			resp, err := svc.Pull(ctx, req)
			if err != nil {
				return nil, err
			}
			if opt.Stats != nil {
				vmu.Lock()
				opt.Stats.Waited = max(opt.Stats.Waited, resp.Waited)
				vmu.Unlock()
			}
			if len(resp.Parts) != len(group) {
				return nil, Errorf(ErrInvalidArgument, "pull: server answered %d parts, asked %d", len(resp.Parts), len(group))
			}
			for j, pi := range group {
				p := &pieces[pi]
				got := resp.Parts[j]
				rs := vars[p.op].spec.RowSize()
				dst := ops[p.op].Dst
				if p.rows == nil {
					if int64(len(got.Values)) != p.n {
						return nil, Errorf(ErrShapeMismatch, "pull %s: server sent %d values, want %d", p.key, len(got.Values), p.n)
					}
					if to := dst[p.start : p.start+p.n]; !SameBuffer(to, got.Values) {
						copy(to, got.Values)
					}
				} else {
					if int64(len(got.Values)) != int64(len(p.rows))*rs {
						return nil, Errorf(ErrShapeMismatch, "pull %s: server sent %d values, want %d", p.key, len(got.Values), int64(len(p.rows))*rs)
					}
					for k, pos := range p.pos {
						copy(dst[int64(pos)*rs:int64(pos+1)*rs], got.Values[int64(k)*rs:int64(k+1)*rs])
					}
				}
				vmu.Lock()
				if versions[p.op] < 0 || got.Version < versions[p.op] {
					versions[p.op] = got.Version
				}
				vmu.Unlock()
			}
			return nil, nil
		})
	if err != nil {
		return nil, err
	}
	return versions, nil
}

// PushMany sends several gradients in one round, grouped per server and in
// parallel. All parts of the call share one sequence number, so parts
// retried after a failover are applied once.
func (c *Client) PushMany(ctx context.Context, ops []PushOp, opt PushOptions) error {
	desc := make([]opDesc, len(ops))
	for i, op := range ops {
		desc[i].name, desc[i].rows, desc[i].n = op.Var, op.Rows, len(op.Grad)
	}
	pieces, vars, err := c.split(desc)
	if err != nil {
		return err
	}
	seq := c.seq.Add(1)
	idx := make([]int, len(pieces))
	for i := range idx {
		idx[i] = i
	}
	return c.retry(ctx, "push", idx, func(i int) PartKey { return pieces[i].key },
		func(ctx context.Context, svc Service, group []int) ([]int, error) {
			req := &PushRequest{ClientID: c.cfg.ID, Seq: seq, Worker: c.cfg.Worker, Clock: opt.Clock, Parts: make([]PushPart, len(group))}
			for j, pi := range group {
				p := &pieces[pi]
				op := &ops[p.op]
				part := PushPart{Key: p.key, Rows: p.rows, Step: op.Step}
				if p.rows == nil {
					part.Grad = op.Grad[p.start : p.start+p.n]
				} else {
					rs := vars[p.op].spec.RowSize()
					part.Grad = make([]float32, int64(len(p.rows))*rs)
					for k, pos := range p.pos {
						copy(part.Grad[int64(k)*rs:int64(k+1)*rs], op.Grad[int64(pos)*rs:int64(pos+1)*rs])
					}
				}
				req.Parts[j] = part
			}
			_, err := svc.Push(ctx, req)
			return nil, err
		})
}

// retry runs send over the items grouped by their primary owner, in
// parallel, and retries the groups that fail with a retryable error after
// the view changes, until RetryTimeout.
func (c *Client) retry(ctx context.Context, what string, items []int, key func(int) PartKey,
	send func(ctx context.Context, svc Service, items []int) ([]int, error)) error {
	deadline := time.Now().Add(c.cfg.RetryTimeout)
	backoff := 20 * time.Millisecond
	pending := items
	var lastErr error
	for attempt := 0; ; attempt++ {
		groups := c.group(c.cfg.Members.Members(), pending, key)
		if groups == nil {
			lastErr = Errorf(ErrUnavailable, "%s: no parameter servers in view", what)
		}
		var failed []int
		if groups != nil {
			type result struct {
				items []int
				err   error
				addr  string
			}
			results := make(chan result, len(groups))
			run := func(addr string, g []int) {
				svc, err := c.conn(ctx, addr)
				if err == nil {
					_, err = send(ctx, svc, g)
				}
				results <- result{g, err, addr}
			}
			for addr, g := range groups {
				if len(groups) == 1 {
					run(addr, g) // one server: no goroutine to start
					break
				}
				go run(addr, g)
			}
			for range groups {
				r := <-results
				if r.err == nil {
					continue
				}
				if !Retryable(r.err) {
					return fmt.Errorf("%s on %s: %w", what, r.addr, r.err)
				}
				if errors.Is(r.err, ErrUnavailable) {
					c.dropConn(r.addr)
				}
				lastErr = fmt.Errorf("%s on %s: %w", what, r.addr, r.err)
				failed = append(failed, r.items...)
			}
			if len(failed) == 0 {
				return nil
			}
		} else {
			failed = pending
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), lastErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: gave up after %v: %w", what, c.cfg.RetryTimeout, lastErr)
		}
		c.cfg.Logger.Debug("retrying", "op", what, "attempt", attempt+1, "parts", len(failed), "err", lastErr)
		pending = failed
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), lastErr)
		case <-t.C:
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

// group maps items to their partitions' primaries in the view members
// and groups them by the primary's address; nil when some partition has
// no primary (no parameter server in view). Placements are remembered
// until the view changes.
func (c *Client) group(members []sharding.Member, items []int, key func(int) PartKey) map[string][]int {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.primary == nil || !slices.Equal(c.view, members) {
		c.view = slices.Clone(members)
		c.primary = map[PartKey]string{}
	}
	groups := map[string][]int{}
	for _, it := range items {
		k := key(it)
		addr, ok := c.primary[k]
		if !ok {
			owners := sharding.Place(k.String(), members, c.cfg.Replicas)
			if len(owners) == 0 {
				return nil
			}
			addr = owners[0].Addr
			c.primary[k] = addr
		}
		groups[addr] = append(groups[addr], it)
	}
	return groups
}

func (c *Client) conn(ctx context.Context, addr string) (Service, error) {
	c.mu.Lock()
	svc, ok := c.conns[addr]
	c.mu.Unlock()
	if ok {
		return svc, nil
	}
	svc, err := c.cfg.Dialer.Dial(ctx, addr)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: dial %s: %w", ErrUnavailable, addr, err)
		}
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.conns[addr]; ok {
		svc.Close()
		return old, nil
	}
	c.conns[addr] = svc
	return svc, nil
}

func (c *Client) dropConn(addr string) {
	c.mu.Lock()
	svc, ok := c.conns[addr]
	delete(c.conns, addr)
	c.mu.Unlock()
	if ok {
		svc.Close()
	}
}
