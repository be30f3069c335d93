package ps

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// ID names the server in errors and logs (e.g. "ps-2"). Required.
	ID string
	// Owns reports whether this server may serve a partition; requests for
	// a partition it does not own fail with ErrNotOwner. nil means the
	// server owns everything (a single server, or tests). SetOwns (or, for
	// a non-replicating server, SetView) replaces it when membership
	// changes. Ignored when Replication is set.
	Owns func(PartKey) bool
	// MaxPartsPerRequest bounds the parts of one Create, Pull or Push
	// request; more fail with ErrTooLarge. Zero means the default, 4096:
	// enough for one request per server per step of a model with thousands
	// of partitions, small enough that one request cannot hold every
	// partition lock of a large server for long.
	MaxPartsPerRequest int
	// DedupWindow is how many recent push sequence numbers per client per
	// partition are remembered to apply a retried push once. Pushes from
	// one client may arrive out of order within the window; a push whose
	// seq is more than DedupWindow below the client's highest seen seq is
	// rejected with ErrStale. Zero means the default, 1024.
	DedupWindow int
	// Replication, when non-nil, turns on replication, failover and
	// migration (see ReplicationConfig and SetView); Owns is then ignored.
	// nil keeps one copy of each partition on the server Owns names.
	Replication *ReplicationConfig
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultServerConfig returns a config with every default filled in; set
// ID before use.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		MaxPartsPerRequest: 4096,
		DedupWindow:        1024,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Validate fills zero fields with defaults and checks the rest.
func (c *ServerConfig) Validate() error {
	d := DefaultServerConfig()
	if c.ID == "" {
		return Errorf(ErrInvalidArgument, "server config: empty ID")
	}
	if c.MaxPartsPerRequest == 0 {
		c.MaxPartsPerRequest = d.MaxPartsPerRequest
	}
	if c.MaxPartsPerRequest < 0 {
		return Errorf(ErrInvalidArgument, "server config: MaxPartsPerRequest %d < 0", c.MaxPartsPerRequest)
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = d.DedupWindow
	}
	if c.DedupWindow < 0 {
		return Errorf(ErrInvalidArgument, "server config: DedupWindow %d < 0", c.DedupWindow)
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Replication != nil {
		rc := *c.Replication
		if err := rc.validate(); err != nil {
			return err
		}
		c.Replication = &rc
	}
	return nil
}

// ServerStats are a server's cumulative counters.
type ServerStats struct {
	Creates uint64 // Create calls that succeeded
	Pulls   uint64 // Pull calls that succeeded
	Pushes  uint64 // Push calls that succeeded
	// Rejected counts calls that failed (bad input, not owner, stale,
	// canceled, closed).
	Rejected uint64
	// BytesIn counts gradient bytes accepted by pushes; BytesOut value bytes
	// returned by pulls.
	BytesIn  uint64
	BytesOut uint64
	// Updates counts optimizer applications; ApplyNanos their total time.
	Updates    uint64
	ApplyNanos uint64
	// StalenessWaits counts pull parts that had to wait (sync version or
	// SSP clock); WaitNanos their total waiting time.
	StalenessWaits uint64
	WaitNanos      uint64
	// Duplicates counts push parts ignored as retries (same ClientID and
	// Seq) or as a worker's second gradient for a sync step.
	Duplicates uint64
}

type serverCounters struct {
	creates, pulls, pushes, rejected    atomic.Uint64
	bytesIn, bytesOut                   atomic.Uint64
	updates, applyNanos                 atomic.Uint64
	stalenessWaits, waitNanos, dupParts atomic.Uint64
}

// Server hosts variable partitions and implements Service: it creates
// partitions, serves pulls (waiting as the consistency mode says) and
// applies pushed gradients with each variable's optimizer.
//
// Locking: s.mu guards the partition map, ownership and closing; each
// partition has its own mutex, so work on one partition never blocks
// another. A push locks all of its partitions in key order (so concurrent
// pushes cannot deadlock), validates every part, then applies them.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	mu     sync.RWMutex
	parts  map[PartKey]*partition
	owns   func(PartKey) bool
	closed bool
	done   chan struct{}
	waitID atomic.Uint64
	st     serverCounters
	repl   *replication // nil without replication
}

// partition is one hosted partition. mu guards everything below it.
type partition struct {
	key     PartKey
	spec    *VariableSpec // normalized, shared by the variable's partitions
	rows    RowRange
	rowSize int

	mu      sync.Mutex
	values  []float32
	opt     Optimizer
	cm      *Machine
	waiters map[WaitID]chan struct{}
	dedup   map[string]*seqWindow

	// Replication (see replica.go). lsn counts the accepted pushes
	// applied; term is the term of the primary that issued the last of
	// them; promised is the highest term this host has promised to follow
	// (fenced by); active is set while this server is the partition's
	// primary for term promised and may accept writes.
	lsn      uint64
	term     Term
	promised Term
	active   bool
	// baseTerm/baseLSN: the copy's (term, lsn) when this server took it
	// over, so replicas holding exactly that copy are relabelled instead
	// of copied. pending holds replicated ops that arrived ahead of a
	// missing one; wake is closed when lsn or term changes.
	baseTerm Term
	baseLSN  uint64
	pending  map[uint64]*ReplicateOp
	wake     chan struct{}
	// synced records, per replica address, the last term for which the
	// replica confirmed every op sent to it (primary side).
	synced map[string]Term
	// demoted is closed when the partition stops being active, so pulls
	// waiting on it give up with ErrNotOwner and retry on the new primary.
	demoted chan struct{}
}

// setActiveLocked marks the partition (in)active; p.mu must be held.
func (p *partition) setActiveLocked(active bool) {
	if active == p.active {
		return
	}
	p.active = active
	if active {
		p.demoted = make(chan struct{})
	} else if p.demoted != nil {
		close(p.demoted)
		p.demoted = nil
	}
}

var _ Service = (*Server)(nil)

// NewServer returns a server with no partitions.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger.With("node", cfg.ID),
		parts: map[PartKey]*partition{},
		owns:  cfg.Owns,
		done:  make(chan struct{}),
	}
	if cfg.Replication != nil {
		s.owns = nil
		s.repl = newReplication(s, *cfg.Replication)
	}
	return s, nil
}

// SetOwns replaces the ownership function (nil: own everything). Requests
// that already passed the ownership check finish; later ones see the new
// function.
func (s *Server) SetOwns(owns func(PartKey) bool) {
	if s.repl != nil {
		return // placement over SetView's view decides
	}
	s.mu.Lock()
	s.owns = owns
	s.mu.Unlock()
}

// Close fails waiting and later calls with ErrClosed and stops the
// replication work. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.done)
		s.log.Info("server closed")
	}
	s.mu.Unlock()
	if first && s.repl != nil {
		s.repl.close()
	}
	return nil
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Creates:        s.st.creates.Load(),
		Pulls:          s.st.pulls.Load(),
		Pushes:         s.st.pushes.Load(),
		Rejected:       s.st.rejected.Load(),
		BytesIn:        s.st.bytesIn.Load(),
		BytesOut:       s.st.bytesOut.Load(),
		Updates:        s.st.updates.Load(),
		ApplyNanos:     s.st.applyNanos.Load(),
		StalenessWaits: s.st.stalenessWaits.Load(),
		WaitNanos:      s.st.waitNanos.Load(),
		Duplicates:     s.st.dupParts.Load(),
	}
}

// Status lists the hosted partitions in key order.
func (s *Server) Status() []PartStatus {
	s.mu.RLock()
	ps := make([]*partition, 0, len(s.parts))
	for _, p := range s.parts {
		ps = append(ps, p)
	}
	s.mu.RUnlock()
	slices.SortFunc(ps, func(a, b *partition) int { return compareKeys(a.key, b.key) })
	out := make([]PartStatus, len(ps))
	for i, p := range ps {
		p.mu.Lock()
		v := p.cm.Version()
		p.mu.Unlock()
		out[i] = PartStatus{Key: p.key, Rows: p.rows, Version: v, Mode: p.spec.Consistency.Mode}
	}
	return out
}

func compareKeys(a, b PartKey) int {
	if c := cmp.Compare(a.Var, b.Var); c != 0 {
		return c
	}
	return cmp.Compare(a.Index, b.Index)
}

func (s *Server) reject(err error) error {
	s.st.rejected.Add(1)
	s.log.Debug("request rejected", "err", err)
	return err
}

// lookup resolves keys to hosted partitions, checking ownership.
func (s *Server) lookup(op string, keys []PartKey) ([]*partition, error) {
	if len(keys) > s.cfg.MaxPartsPerRequest {
		return nil, Errorf(ErrTooLarge, "%s on %s: %d parts, at most %d", op, s.cfg.ID, len(keys), s.cfg.MaxPartsPerRequest)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("%s on %s: %w", op, s.cfg.ID, ErrClosed)
	}
	out := make([]*partition, len(keys))
	for i, k := range keys {
		if s.owns != nil && !s.owns(k) {
			return nil, Errorf(ErrNotOwner, "%s %s on %s", op, k, s.cfg.ID)
		}
		p, ok := s.parts[k]
		if !ok {
			return nil, Errorf(ErrUnknownVariable, "%s %s on %s: partition not hosted", op, k, s.cfg.ID)
		}
		out[i] = p
	}
	return out, nil
}

// Create hosts the requested partitions of a variable, initialized from the
// spec's initializer. It is idempotent: partitions that exist with an equal
// spec are left alone and reported with their current versions; one that
// exists with another spec fails the whole request with ErrSpecMismatch,
// and then nothing is created.
func (s *Server) Create(ctx context.Context, req *CreateRequest) (*CreateResponse, error) {
	resp, err := s.create(ctx, req)
	if err != nil {
		return nil, s.reject(err)
	}
	s.st.creates.Add(1)
	return resp, nil
}

func (s *Server) create(ctx context.Context, req *CreateRequest) (*CreateResponse, error) {
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "create on %s: nil request", s.cfg.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create on %s: %w", s.cfg.ID, err)
	}
	if err := req.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("create on %s: %w", s.cfg.ID, err)
	}
	spec := req.Spec.normalized()
	ranges := spec.Partitions()
	if len(req.Parts) > s.cfg.MaxPartsPerRequest {
		return nil, Errorf(ErrTooLarge, "create %s on %s: %d parts, at most %d", spec.Name, s.cfg.ID, len(req.Parts), s.cfg.MaxPartsPerRequest)
	}
	seen := map[int]bool{}
	for _, i := range req.Parts {
		if i < 0 || i >= len(ranges) {
			return nil, Errorf(ErrInvalidArgument, "create %s on %s: partition %d, the variable has %d", spec.Name, s.cfg.ID, i, len(ranges))
		}
		if seen[i] {
			return nil, Errorf(ErrInvalidArgument, "create %s on %s: partition %d listed twice", spec.Name, s.cfg.ID, i)
		}
		seen[i] = true
	}
	if s.repl != nil {
		return s.repl.create(ctx, &spec, req.Parts)
	}
	// Check ownership and existing specs, then build the new partitions
	// outside the server lock (initializing can take a while).
	var shared *VariableSpec
	var todo []int
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("create on %s: %w", s.cfg.ID, ErrClosed)
	}
	for _, i := range req.Parts {
		k := PartKey{spec.Name, i}
		if s.owns != nil && !s.owns(k) {
			s.mu.RUnlock()
			return nil, Errorf(ErrNotOwner, "create %s on %s", k, s.cfg.ID)
		}
		if p, ok := s.parts[k]; ok {
			if d := specDiff(p.spec, &spec); d != "" {
				s.mu.RUnlock()
				return nil, Errorf(ErrSpecMismatch, "create %s on %s: %s", k, s.cfg.ID, d)
			}
			shared = p.spec
			continue
		}
		todo = append(todo, i)
	}
	s.mu.RUnlock()
	if shared == nil {
		shared = &spec
	}
	built := make(map[int]*partition, len(todo))
	for _, i := range todo {
		p, err := newPartition(shared, i, ranges[i])
		if err != nil {
			return nil, fmt.Errorf("create %s/%d on %s: %w", spec.Name, i, s.cfg.ID, err)
		}
		built[i] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("create on %s: %w", s.cfg.ID, ErrClosed)
	}
	// Re-check: another Create may have raced us.
	for _, i := range todo {
		k := PartKey{spec.Name, i}
		if p, ok := s.parts[k]; ok {
			if d := specDiff(p.spec, &spec); d != "" {
				return nil, Errorf(ErrSpecMismatch, "create %s on %s: %s", k, s.cfg.ID, d)
			}
			delete(built, i)
		}
	}
	resp := &CreateResponse{Versions: make([]int64, len(req.Parts))}
	for j, i := range req.Parts {
		k := PartKey{spec.Name, i}
		if p, ok := built[i]; ok {
			s.parts[k] = p
			s.log.Debug("created partition", "key", k.String(), "rows", p.rows.Len(), "mode", spec.Consistency.Mode)
			continue
		}
		p := s.parts[k]
		p.mu.Lock()
		resp.Versions[j] = p.cm.Version()
		p.mu.Unlock()
	}
	return resp, nil
}

func newPartition(spec *VariableSpec, index int, rows RowRange) (*partition, error) {
	return buildPartition(spec, index, rows, true)
}

// buildPartition is newPartition; init false leaves the values zero for a
// caller that overwrites them (restoring a state).
func buildPartition(spec *VariableSpec, index int, rows RowRange, init bool) (*partition, error) {
	rowSize := int(spec.RowSize())
	size := int(rows.Len()) * rowSize
	values := make([]float32, size)
	if init {
		if err := InitPartition(values, spec, index); err != nil {
			return nil, err
		}
	}
	opt, err := NewOptimizer(spec.Optimizer, size)
	if err != nil {
		return nil, err
	}
	cm, err := NewMachine(spec.Consistency, size, rowSize)
	if err != nil {
		return nil, err
	}
	return &partition{
		key:     PartKey{spec.Name, index},
		spec:    spec,
		rows:    rows,
		rowSize: rowSize,
		values:  values,
		opt:     opt,
		cm:      cm,
		waiters: map[WaitID]chan struct{}{},
		dedup:   map[string]*seqWindow{},
	}, nil
}

// Pull returns copies of the requested partitions' values (whole, or the
// listed rows), each waiting first until its version reaches MinVersion
// and, in SSP mode, until the slowest worker is within the staleness bound
// of req.Clock. Every part is validated before any wait.
func (s *Server) Pull(ctx context.Context, req *PullRequest) (*PullResponse, error) {
	resp, err := s.pull(ctx, req)
	if err != nil {
		return nil, s.reject(err)
	}
	s.st.pulls.Add(1)
	return resp, nil
}

func (s *Server) pull(ctx context.Context, req *PullRequest) (*PullResponse, error) {
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "pull on %s: nil request", s.cfg.ID)
	}
	keys := make([]PartKey, len(req.Parts))
	for i, pp := range req.Parts {
		keys[i] = pp.Key
	}
	var parts []*partition
	var err error
	if s.repl != nil {
		parts, err = s.repl.lookupActive(ctx, "pull", keys)
	} else {
		parts, err = s.lookup("pull", keys)
	}
	if err != nil {
		return nil, err
	}
	for i, pp := range req.Parts {
		p := parts[i]
		nrows := p.rows.Len()
		for _, r := range pp.Rows {
			if r < 0 || r >= nrows {
				return nil, Errorf(ErrInvalidArgument, "pull %s on %s: row %d out of range [0, %d)", p.key, s.cfg.ID, r, nrows)
			}
		}
		if p.spec.Consistency.Mode == SSP {
			if req.Worker < 0 || req.Worker >= p.spec.Consistency.Workers {
				return nil, Errorf(ErrInvalidArgument, "pull %s on %s: worker %d out of range [0, %d)", p.key, s.cfg.ID, req.Worker, p.spec.Consistency.Workers)
			}
			if req.Clock < 0 {
				return nil, Errorf(ErrInvalidArgument, "pull %s on %s: negative clock %d", p.key, s.cfg.ID, req.Clock)
			}
		}
	}
	resp := &PullResponse{Parts: make([]PartValues, len(req.Parts))}
	var bytes uint64
	for i, pp := range req.Parts {
		pv, waited, err := s.pullPart(ctx, parts[i], req, pp)
		if err != nil {
			return nil, err
		}
		resp.Parts[i] = pv
		resp.Waited += waited
		bytes += 4 * uint64(len(pv.Values))
	}
	s.st.bytesOut.Add(bytes)
	return resp, nil
}

// pullPart reads one part, after waiting as its consistency mode says;
// it returns how long it waited.
func (s *Server) pullPart(ctx context.Context, p *partition, req *PullRequest, pp PullPart) (PartValues, time.Duration, error) {
	id := WaitID(s.waitID.Add(1))
	p.mu.Lock()
	if s.repl != nil && !p.active {
		p.mu.Unlock()
		return PartValues{}, 0, Errorf(ErrNotOwner, "pull %s on %s: no longer the primary", p.key, s.cfg.ID)
	}
	var waited time.Duration
	ready, err := p.cm.Pull(id, req.Worker, req.Clock, pp.MinVersion)
	if err != nil {
		p.mu.Unlock()
		return PartValues{}, 0, fmt.Errorf("pull %s on %s: %w", p.key, s.cfg.ID, err)
	}
	if !ready {
		ch := make(chan struct{})
		p.waiters[id] = ch
		demoted := p.demoted // nil (never ready) without replication
		p.mu.Unlock()
		s.st.stalenessWaits.Add(1)
		start := time.Now()
		var werr error
		select {
		case <-ch:
		case <-ctx.Done():
			werr = ctx.Err()
		case <-s.done:
			werr = ErrClosed
		case <-demoted:
			werr = Errorf(ErrNotOwner, "no longer the primary")
		}
		waited = time.Since(start)
		s.st.waitNanos.Add(uint64(waited))
		p.mu.Lock()
		if werr != nil {
			select {
			case <-ch: // released just as we gave up: proceed after all
				werr = nil
			default:
				p.cm.Cancel(id)
				delete(p.waiters, id)
			}
		}
		if werr != nil {
			v := p.cm.Version()
			p.mu.Unlock()
			return PartValues{}, 0, fmt.Errorf("pull %s on %s waiting for version %d (at %d), clock %d: %w", p.key, s.cfg.ID, pp.MinVersion, v, req.Clock, werr)
		}
	}
	pv := PartValues{Key: p.key, Version: p.cm.Version()}
	rs := p.rowSize
	n := len(p.values)
	if pp.Rows != nil {
		n = len(pp.Rows) * rs
	}
	out, err := pullBuffer(pp, req.Alloc, n)
	if err != nil {
		p.mu.Unlock()
		return PartValues{}, 0, fmt.Errorf("pull %s on %s: %w", p.key, s.cfg.ID, err)
	}
	if pp.Rows == nil {
		copy(out, p.values)
	} else {
		for i, r := range pp.Rows {
			copy(out[i*rs:(i+1)*rs], p.values[int(r)*rs:int(r)*rs+rs])
		}
	}
	pv.Values = out
	p.mu.Unlock()
	return pv, waited, nil
}

// pullBuffer returns where a part's n values go: the part's Dst, else a
// buffer from alloc, else a new array. A Dst or an allocation of the wrong
// length is the caller's bug, reported rather than written past.
func pullBuffer(pp PullPart, alloc func(int) []float32, n int) ([]float32, error) {
	switch {
	case pp.Dst != nil:
		if len(pp.Dst) != n {
			return nil, Errorf(ErrShapeMismatch, "destination holds %d values, the part has %d", len(pp.Dst), n)
		}
		return pp.Dst, nil
	case alloc != nil:
		out := alloc(n)
		if len(out) != n {
			return nil, Errorf(ErrInvalidArgument, "pull buffer allocator returned %d values for %d", len(out), n)
		}
		return out, nil
	}
	return make([]float32, n), nil
}

// Push validates every part (ownership, shape, row ids, finiteness, the
// consistency mode's step and worker rules, the dedup window) and only then
// applies them: a rejected request changes nothing. A part whose
// (ClientID, Seq) was already accepted for its partition is ignored, so a
// retried request is applied once. An empty ClientID disables dedup.
func (s *Server) Push(ctx context.Context, req *PushRequest) (*PushResponse, error) {
	resp, err := s.push(ctx, req)
	if err != nil {
		return nil, s.reject(err)
	}
	s.st.pushes.Add(1)
	return resp, nil
}

func (s *Server) push(ctx context.Context, req *PushRequest) (*PushResponse, error) {
	if req == nil {
		return nil, Errorf(ErrInvalidArgument, "push on %s: nil request", s.cfg.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("push on %s: %w", s.cfg.ID, err)
	}
	keys := make([]PartKey, len(req.Parts))
	for i, pp := range req.Parts {
		keys[i] = pp.Key
	}
	var parts []*partition
	var err error
	if s.repl != nil {
		parts, err = s.repl.lookupActive(ctx, "push", keys)
	} else {
		parts, err = s.lookup("push", keys)
	}
	if err != nil {
		return nil, err
	}
	// Stateless checks, outside the partition locks.
	order := make([]int, len(parts))
	for i, pp := range req.Parts {
		order[i] = i
		p := parts[i]
		if err := checkGrad(p, pp); err != nil {
			return nil, fmt.Errorf("push %s on %s: %w", p.key, s.cfg.ID, err)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return compareKeys(keys[a], keys[b]) })
	for j := 1; j < len(order); j++ {
		if keys[order[j]] == keys[order[j-1]] {
			return nil, Errorf(ErrInvalidArgument, "push on %s: partition %s listed twice", s.cfg.ID, keys[order[j]])
		}
	}
	resp, ops, err := s.pushLocked(req, parts, order)
	if err != nil {
		return nil, err
	}
	if s.repl != nil && len(ops) > 0 {
		// Acknowledge only after every replica in view applied the ops.
		// The partition locks are released: later pushes proceed, and
		// replicas apply ops in LSN order whatever order they arrive in.
		if err := s.repl.replicate(ctx, ops); err != nil {
			return nil, fmt.Errorf("push on %s: %w", s.cfg.ID, err)
		}
	}
	return resp, nil
}

// pushLocked validates and applies a push under its partitions' locks (in
// key order) and returns the replication ops to forward: one per applied
// part, and a barrier per part ignored as a retry (so that a retried push
// is acknowledged only once its first delivery is on every replica).
func (s *Server) pushLocked(req *PushRequest, parts []*partition, order []int) (*PushResponse, []ReplicateOp, error) {
	for _, i := range order {
		parts[i].mu.Lock()
	}
	defer func() {
		for _, i := range order {
			parts[i].mu.Unlock()
		}
	}()
	if s.repl != nil {
		for _, p := range parts {
			if !p.active {
				return nil, nil, Errorf(ErrNotOwner, "push %s on %s: fenced by a new primary (term %v)", p.key, s.cfg.ID, p.promised)
			}
		}
	}
	var ops []ReplicateOp
	// Stateful checks under the locks.
	dup := make([]bool, len(parts))
	for i, pp := range req.Parts {
		p := parts[i]
		if req.ClientID != "" {
			w := p.dedup[req.ClientID]
			if w != nil {
				seen, err := w.check(req.Seq, s.cfg.DedupWindow)
				if err != nil {
					return nil, nil, fmt.Errorf("push %s on %s from %s: %w", p.key, s.cfg.ID, req.ClientID, err)
				}
				if seen {
					dup[i] = true
					continue
				}
			}
		}
		ev := PushEvent{Worker: req.Worker, Step: pp.Step, Clock: req.Clock, Rows: pp.Rows, Grad: pp.Grad}
		if err := p.cm.CheckPush(ev); err != nil {
			return nil, nil, fmt.Errorf("push %s on %s: %w", p.key, s.cfg.ID, err)
		}
	}
	// Apply. Nothing below can fail for a validated request.
	resp := &PushResponse{Versions: make([]int64, len(parts))}
	var bytes uint64
	for i, pp := range req.Parts {
		p := parts[i]
		if dup[i] {
			s.st.dupParts.Add(1)
			resp.Versions[i] = p.cm.Version()
			if s.repl != nil {
				ops = append(ops, ReplicateOp{Key: p.key, Term: p.term, LSN: p.lsn, Barrier: true})
			}
			continue
		}
		ev := PushEvent{Worker: req.Worker, Step: pp.Step, Clock: req.Clock, Rows: pp.Rows, Grad: pp.Grad}
		res, err := p.cm.Push(ev)
		if err != nil {
			// Unreachable after CheckPush under the same lock.
			return nil, nil, fmt.Errorf("push %s on %s: internal: %w", p.key, s.cfg.ID, err)
		}
		if res.Outcome == Duplicate {
			s.st.dupParts.Add(1)
		}
		if up := res.Update; up != nil {
			start := time.Now()
			if up.Rows == nil {
				err = p.opt.ApplyDense(p.values, up.Grad)
			} else {
				err = p.opt.ApplySparse(p.values, p.rowSize, up.Rows, up.Grad)
			}
			s.st.applyNanos.Add(uint64(time.Since(start)))
			s.st.updates.Add(1)
			if err != nil {
				s.log.Error("apply failed after validation", "key", p.key.String(), "err", err)
				return nil, nil, fmt.Errorf("push %s on %s: internal: %w", p.key, s.cfg.ID, err)
			}
		}
		p.lsn++
		p.term = p.promised
		if s.repl != nil {
			ops = append(ops, ReplicateOp{Key: p.key, Term: p.term, LSN: p.lsn, ClientID: req.ClientID, Seq: req.Seq,
				Worker: req.Worker, Clock: req.Clock, Step: pp.Step, Rows: pp.Rows, Grad: pp.Grad})
		}
		if req.ClientID != "" {
			w := p.dedup[req.ClientID]
			if w == nil {
				w = &seqWindow{seen: map[uint64]struct{}{}}
				p.dedup[req.ClientID] = w
			}
			w.add(req.Seq, s.cfg.DedupWindow)
		}
		for _, id := range res.Released {
			if ch, ok := p.waiters[id]; ok {
				close(ch)
				delete(p.waiters, id)
			}
		}
		resp.Versions[i] = res.Version
		bytes += 4 * uint64(len(pp.Grad))
	}
	s.st.bytesIn.Add(bytes)
	return resp, ops, nil
}

// checkGrad checks a push part's lengths, row ids and finiteness against
// the partition's fixed shape.
func checkGrad(p *partition, pp PushPart) error {
	size := int(p.rows.Len()) * p.rowSize
	if pp.Rows == nil {
		if len(pp.Grad) != size {
			return Errorf(ErrShapeMismatch, "dense gradient of %d values, want %d", len(pp.Grad), size)
		}
	} else {
		if want := len(pp.Rows) * p.rowSize; len(pp.Grad) != want {
			return Errorf(ErrShapeMismatch, "sparse gradient of %d values for %d rows, want %d", len(pp.Grad), len(pp.Rows), want)
		}
		nrows := p.rows.Len()
		for _, r := range pp.Rows {
			if r < 0 || r >= nrows {
				return Errorf(ErrInvalidArgument, "row %d out of range [0, %d)", r, nrows)
			}
		}
	}
	if !p.spec.AllowNonFinite {
		if i := firstNonFinite(pp.Grad); i >= 0 {
			return Errorf(ErrNonFinite, "gradient value %d is %v", i, pp.Grad[i])
		}
	}
	return nil
}

// seqWindow remembers the recent push sequence numbers of one client on one
// partition: every seq in (max-window, max] that was accepted.
type seqWindow struct {
	max  uint64
	any  bool
	seen map[uint64]struct{}
}

// check reports whether seq was already accepted; a seq at or below
// max-window can no longer be told apart and is rejected as stale.
func (w *seqWindow) check(seq uint64, window int) (bool, error) {
	if w.any && w.max >= uint64(window) && seq <= w.max-uint64(window) {
		return false, Errorf(ErrStale, "push seq %d is below the dedup window (latest %d, window %d)", seq, w.max, window)
	}
	_, ok := w.seen[seq]
	return ok, nil
}

func (w *seqWindow) add(seq uint64, window int) {
	w.seen[seq] = struct{}{}
	if !w.any || seq > w.max {
		w.max, w.any = seq, true
	}
	if len(w.seen) > 2*window {
		for q := range w.seen {
			if w.max >= uint64(window) && q <= w.max-uint64(window) {
				delete(w.seen, q)
			}
		}
	}
}
