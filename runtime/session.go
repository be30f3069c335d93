package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SessionConfig configures a Session. The zero value is usable for graphs
// without variables.
type SessionConfig struct {
	// Store holds the graph's variables. Required when the graph has any.
	Store VarStore
	// Workers bounds how many kernels run at once. Zero means GOMAXPROCS.
	Workers int
	// MaxPoolBytes bounds the memory the buffer pool keeps for reuse
	// between steps. Zero means 256 MiB (several steps' activations of a
	// LeNet at batch 128); a negative value disables pooling.
	MaxPoolBytes int64
	// SkipCreate makes NewSession skip VarStore.Create (when the variables
	// were created elsewhere, e.g. by another trainer).
	SkipCreate bool
	// SplitPulls pulls each dense variable with its own VarStore.Pull, all
	// started together at the start of a step, so that the kernels which
	// need only the variables that have arrived run while the others are
	// still in flight (a parameter server's transfer of a CNN's large
	// dense layer then overlaps the convolutions). False pulls every dense
	// variable in one call: one request per server, and a store that
	// times its Pull calls sees one call per step.
	SplitPulls bool
	// Logger receives debug messages (plan building). Nil discards.
	Logger *slog.Logger
}

// Session runs a Graph against a VarStore. It caches one plan per
// (feeds, fetches, targets, training) signature and pools buffers between
// runs. Run may be called from many goroutines at once; each call has its
// own execution state.
type Session struct {
	g     *Graph
	cfg   SessionConfig
	log   *slog.Logger
	pool  *pool
	store VarStore

	mu    sync.Mutex
	plans map[string]*cachedPlan
	total Stats
}

type cachedPlan struct {
	once  sync.Once
	p     *plan
	err   error
	state sync.Pool // *runState
}

// NewSession returns a session for g. Unless cfg.SkipCreate is set, it
// registers the graph's variables with cfg.Store (VarStore.Create). A
// variable read only through Gather is created with Sparse set.
func NewSession(ctx context.Context, g *Graph, cfg SessionConfig) (*Session, error) {
	if g == nil {
		return nil, errorf(ErrInvalidArgument, "NewSession: nil graph")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = goruntime.GOMAXPROCS(0)
	}
	if cfg.MaxPoolBytes == 0 {
		cfg.MaxPoolBytes = 256 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Session{g: g, cfg: cfg, log: log, pool: newPool(cfg.MaxPoolBytes), store: cfg.Store, plans: map[string]*cachedPlan{}}
	if len(g.vars) > 0 {
		if cfg.Store == nil {
			return nil, errorf(ErrNoStore, "NewSession: graph has %d variables", len(g.vars))
		}
		if !cfg.SkipCreate {
			defs := sparseDefs(g)
			if err := cfg.Store.Create(ctx, defs); err != nil {
				return nil, fmt.Errorf("runtime: create variables: %w", err)
			}
		}
	}
	return s, nil
}

// sparseDefs returns the graph's variable definitions, with Sparse set for
// those every reader of which is a Gather.
func sparseDefs(g *Graph) []VariableDef {
	defs := g.Variables()
	onlyGather := map[*Node]bool{}
	for _, v := range g.vars {
		onlyGather[v] = true
	}
	used := map[*Node]bool{}
	for _, n := range g.nodes {
		for j, in := range n.inputs {
			if in.op != opVariable || n.op == opPush && j == 0 {
				continue
			}
			used[in] = true
			if n.op != opGather || j != 0 {
				onlyGather[in] = false
			}
		}
	}
	for i, v := range g.vars {
		defs[i].Sparse = used[v] && onlyGather[v]
	}
	return defs
}

// Graph returns the session's graph.
func (s *Session) Graph() *Graph { return s.g }

// Feeds maps placeholders (or any node whose value is given) to values.
type Feeds map[*Node]*Tensor

// RunArgs says what one Run computes.
type RunArgs struct {
	// Step is the training step, passed to VarStore.Pull and Push (sync
	// mode) and mixed into Dropout's masks.
	Step int64
	// Training enables Dropout; without it Dropout passes values through.
	Training bool
	// Feeds gives the placeholders' values.
	Feeds Feeds
	// Fetches are the nodes whose values Run returns, in order.
	Fetches []*Node
	// Targets are run for their effect (Push, Group from Minimize).
	Targets []*Node
	// Profile fills Stats.ByOp with the kernel time per op type.
	Profile bool
}

// Result is what Run returns.
type Result struct {
	// Values holds one tensor per fetch; the caller owns them.
	Values []*Tensor
	// Stats says where the run's time went.
	Stats Stats
}

// Stats account for one run (or, from Session.Stats, all runs so far).
type Stats struct {
	Runs int64
	// Wall is the time from the start to the end of Run.
	Wall time.Duration
	// Compute is the sum of kernel times over all workers (it can exceed
	// Wall when kernels run in parallel).
	Compute time.Duration
	// Pull and Push are the sums of the durations of VarStore.Pull and
	// VarStore.Push calls (they overlap compute and each other).
	Pull, Push time.Duration
	// Idle is the wall time during which no kernel ran: waiting for pulls,
	// for pushes at the end, or on scheduling.
	Idle time.Duration
	// PushTail is the wall time from the end of the last kernel to the
	// end of the last push: communication that backprop did not hide.
	PushTail time.Duration
	// Kernels is the number of kernels run; Pulls and Pushes count store
	// calls.
	Kernels, Pulls, Pushes int64
	// PullBytes and PushBytes count float32 payload bytes.
	PullBytes, PushBytes int64
	// PoolHits and PoolMisses count buffer requests served from the pool
	// or freshly allocated.
	PoolHits, PoolMisses int64
	// ByOp is the kernel time per op type ("FusedMatMul", "ReluGrad",
	// ...), only for runs with RunArgs.Profile (Session.Stats sums them).
	ByOp map[string]time.Duration
}

func (a *Stats) add(b Stats) {
	a.Runs += b.Runs
	a.Wall += b.Wall
	a.Compute += b.Compute
	a.Pull += b.Pull
	a.Push += b.Push
	a.Idle += b.Idle
	a.PushTail += b.PushTail
	a.Kernels += b.Kernels
	a.Pulls += b.Pulls
	a.Pushes += b.Pushes
	a.PullBytes += b.PullBytes
	a.PushBytes += b.PushBytes
	a.PoolHits += b.PoolHits
	a.PoolMisses += b.PoolMisses
	if b.ByOp != nil {
		if a.ByOp == nil {
			a.ByOp = map[string]time.Duration{}
		}
		for k, v := range b.ByOp {
			a.ByOp[k] += v
		}
	}
}

// String renders the stats on one line.
func (a Stats) String() string {
	return fmt.Sprintf("runs=%d wall=%v compute=%v pull=%v push=%v idle=%v push_tail=%v kernels=%d pool_hits=%d pool_misses=%d",
		a.Runs, a.Wall, a.Compute, a.Pull, a.Push, a.Idle, a.PushTail, a.Kernels, a.PoolHits, a.PoolMisses)
}

// Stats returns the totals over every run of this session so far.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.total
	if t.ByOp != nil {
		t.ByOp = make(map[string]time.Duration, len(s.total.ByOp))
		for k, v := range s.total.ByOp {
			t.ByOp[k] = v
		}
	}
	return t
}

// PlanStats returns the node counts of the plan for args (building and
// caching it if needed), to show what pruning, folding, merging, fusion
// and the cut at variables did.
func (s *Session) PlanStats(args RunArgs) (PlanStats, error) {
	cp, err := s.plan(args)
	if err != nil {
		return PlanStats{}, err
	}
	return cp.p.stats, nil
}

func (s *Session) plan(args RunArgs) (*cachedPlan, error) {
	return s.planWith(args, planOptions{})
}

func (s *Session) planWith(args RunArgs, opt planOptions) (*cachedPlan, error) {
	feeds := make([]*Node, 0, len(args.Feeds))
	for n := range args.Feeds {
		if !s.g.contains(n) {
			return nil, errorf(ErrForeignNode, "Run: fed node %v", n)
		}
		feeds = append(feeds, n)
	}
	slices.SortFunc(feeds, func(x, y *Node) int { return x.id - y.id })
	var kb strings.Builder
	for _, part := range [][]*Node{feeds, args.Fetches, args.Targets} {
		for _, n := range part {
			if n == nil {
				return nil, errorf(ErrInvalidArgument, "Run: nil node")
			}
			kb.WriteString(strconv.Itoa(n.id))
			kb.WriteByte(',')
		}
		kb.WriteByte('|')
	}
	fmt.Fprintf(&kb, "%v%v", args.Training, opt)
	key := kb.String()
	s.mu.Lock()
	cp := s.plans[key]
	if cp == nil {
		cp = &cachedPlan{}
		s.plans[key] = cp
	}
	s.mu.Unlock()
	cp.once.Do(func() {
		cp.p, cp.err = buildPlan(s.g, feeds, args.Fetches, args.Targets, args.Training, opt)
		if cp.err == nil {
			s.log.Debug("runtime: plan built", "stats", cp.p.stats.String())
		}
	})
	return cp, cp.err
}

// Run computes args.Fetches and runs args.Targets. Variables are pulled
// from the store at the start (dense ones in one batch; rows for Gather
// when their ids are known), and each gradient Push starts as soon as its
// value exists. Run returns when every push has finished.
func (s *Session) Run(ctx context.Context, args RunArgs) (*Result, error) {
	return s.run(ctx, args, planOptions{})
}

func (s *Session) run(ctx context.Context, args RunArgs, opt planOptions) (*Result, error) {
	start := time.Now()
	cp, err := s.planWith(args, opt)
	if err != nil {
		return nil, err
	}
	p := cp.p
	if (len(p.recvs) > 0 || p.stats.Sparse > 0 || p.stats.Push > 0) && s.store == nil {
		return nil, errorf(ErrNoStore, "Run: plan reads or writes variables")
	}
	for i, n := range p.feeds {
		if err := checkFeed(n, args.Feeds[n]); err != nil {
			return nil, err
		}
		_ = i
	}
	r, _ := cp.state.Get().(*runState)
	if r == nil {
		r = newRunState(s, p)
	}
	res, err := r.run(ctx, args, start)
	if err != nil {
		return nil, err // r is dropped: buffers may still be referenced
	}
	cp.state.Put(r)
	s.mu.Lock()
	s.total.add(res.Stats)
	s.mu.Unlock()
	return res, nil
}

func checkFeed(n *Node, t *Tensor) error {
	if t == nil {
		return errorf(ErrMissingFeed, "Run: nil value for %s", n.name)
	}
	if t.IsSparse() {
		return errorf(ErrInvalidArgument, "Run: sparse value fed to %s", n.name)
	}
	if t.DType != n.dtype && !(t.DType.isInt() && n.dtype.isInt()) {
		return errorf(ErrDType, "Run: feed %s is %v, placeholder wants %v", n.name, t.DType, n.dtype)
	}
	if !n.shape.Compatible(t.Shape) || !t.Shape.Known() {
		return errorf(ErrShape, "Run: feed %s has shape %v, placeholder wants %v", n.name, t.Shape, n.shape)
	}
	if t.Shape.NumElements() != t.Len() {
		return errorf(ErrShape, "Run: feed %s: shape %v needs %d values, has %d", n.name, t.Shape, t.Shape.NumElements(), t.Len())
	}
	return nil
}

// pool keeps float32 buffers by exact length for reuse between kernels and
// runs. Training repeats the same shapes every step, so exact sizes hit.
type pool struct {
	mu     sync.Mutex
	free   map[int][][]float32
	bytes  int64
	max    int64
	hits   atomic.Int64
	misses atomic.Int64
}

func newPool(max int64) *pool { return &pool{free: map[int][][]float32{}, max: max} }

// get returns a buffer of length n with arbitrary contents.
func (p *pool) get(n int) ([]float32, bool) {
	if p == nil {
		return make([]float32, n), false
	}
	p.mu.Lock()
	l := p.free[n]
	if k := len(l); k > 0 {
		b := l[k-1]
		l[k-1] = nil
		p.free[n] = l[:k-1]
		p.bytes -= int64(4 * n)
		p.mu.Unlock()
		p.hits.Add(1)
		return b, true
	}
	p.mu.Unlock()
	p.misses.Add(1)
	return make([]float32, n), false
}

func (p *pool) put(b []float32) {
	if p == nil || len(b) == 0 {
		return
	}
	b = b[:len(b):len(b)]
	p.mu.Lock()
	if p.bytes+int64(4*len(b)) <= p.max {
		p.free[len(b)] = append(p.free[len(b)], b)
		p.bytes += int64(4 * len(b))
	}
	p.mu.Unlock()
}

// PoolStats returns how many buffer requests the session's pool served
// from free buffers (hits) and by allocating (misses).
func (s *Session) PoolStats() (hits, misses int64) {
	return s.pool.hits.Load(), s.pool.misses.Load()
}
