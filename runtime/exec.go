package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// testHookBeforeKernel, set only by tests, runs before every kernel.
var testHookBeforeKernel func(n *pnode)

// runState is the execution state of one Run of a plan. It is reused
// between runs of the same plan (through the plan's sync.Pool) so that a
// training step allocates almost nothing.
type runState struct {
	s *Session
	p *plan

	vals    []Tensor
	owner   []int32 // node whose pooled buffer backs vals[i], or -1
	refs    []int32 // remaining reads of the buffer node i owns
	pending []int32 // producers not yet finished
	kcs     []*kctx

	mu        sync.Mutex
	cond      sync.Cond
	ready     []int
	remaining int
	running   int
	err       error
	async     sync.WaitGroup

	ctx      context.Context
	step     int64
	training bool

	byOp map[string]time.Duration // kernel time per op type (RunArgs.Profile)

	// argmax[i] is, for a MaxPool node i whose gradient the plan computes,
	// the input index of each output's maximum, written by its kernel in
	// the run numbered argGen[i]; MaxPoolGrad reads it instead of
	// searching the windows again. gen numbers the runs of this state.
	argmax [][]int32
	argGen []uint64
	gen    uint64

	start, busyFrom, lastKernel time.Time
	busy                        time.Duration
	st                          Stats
}

func newRunState(s *Session, p *plan) *runState {
	n := len(p.nodes)
	r := &runState{s: s, p: p, vals: make([]Tensor, n), owner: make([]int32, n), refs: make([]int32, n), pending: make([]int32, n),
		argmax: make([][]int32, n), argGen: make([]uint64, n)}
	r.cond.L = &r.mu
	w := min(max(1, s.cfg.Workers), max(1, p.stats.Parallel))
	for range w {
		k := newKctx(s.pool, 0, false)
		k.r = r
		r.kcs = append(r.kcs, k)
	}
	return r
}

func (r *runState) reset(ctx context.Context, args RunArgs, start time.Time) {
	for i := range r.vals {
		sh := r.vals[i].Shape
		if sh != nil {
			sh = sh[:0]
		}
		r.vals[i] = Tensor{Shape: sh}
		r.owner[i] = -1
		r.refs[i] = 0
		r.pending[i] = int32(r.p.nodes[i].npred)
	}
	for _, fi := range r.p.feedIdx {
		r.vals[fi] = Tensor{}
	}
	r.ready = r.ready[:0]
	r.remaining = len(r.p.nodes)
	r.running = 0
	r.err = nil
	r.ctx, r.step, r.training = ctx, args.Step, args.Training
	r.start, r.busy, r.lastKernel = start, 0, start
	r.st = Stats{Runs: 1}
	r.gen++
	r.byOp = nil
	if args.Profile {
		r.byOp = map[string]time.Duration{}
	}
	for _, k := range r.kcs {
		k.step, k.training, k.hits, k.misses = args.Step, args.Training, 0, 0
	}
}

func (r *runState) run(parent context.Context, args RunArgs, start time.Time) (*Result, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	r.reset(ctx, args, start)
	p := r.p

	r.mu.Lock()
	for j, fi := range p.feedIdx {
		r.vals[fi] = *args.Feeds[p.feeds[j]]
		r.vals[fi].Rows, r.vals[fi].DenseShape = nil, nil
		r.finishLocked(fi, false)
	}
	r.ready = append(r.ready, p.roots...)
	switch {
	case len(p.recvs) > 1 && r.s.cfg.SplitPulls:
		for j := range p.recvs {
			r.async.Add(1)
			go r.pullDense(ctx, p.recvs[j:j+1])
		}
	case len(p.recvs) > 0:
		r.async.Add(1)
		go r.pullDense(ctx, p.recvs)
	}
	r.mu.Unlock()

	var wg sync.WaitGroup
	for _, k := range r.kcs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(k)
		}()
	}
	r.worker(r.kcs[0])
	wg.Wait()
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		cancel()
	}
	r.async.Wait() // every I/O goroutine has returned
	if err == nil {
		err = r.err
	}
	if err != nil {
		return nil, err
	}
	end := time.Now()
	st := r.st
	st.Wall = end.Sub(start)
	st.Idle = st.Wall - r.busy
	if st.PushTail = end.Sub(r.lastKernel); p.stats.Push == 0 {
		st.PushTail = 0
	}
	for _, k := range r.kcs {
		st.PoolHits += k.hits
		st.PoolMisses += k.misses
	}
	st.ByOp = r.byOp
	res := &Result{Values: make([]*Tensor, len(p.fetch)), Stats: st}
	for j, f := range p.fetch {
		res.Values[j] = r.fetchValue(f)
	}
	return res, nil
}

// fetchValue hands a fetched value to the caller: pooled buffers are given
// away (their reads never reach zero, so the pool never sees them again);
// constants and feeds are copied.
func (r *runState) fetchValue(i int) *Tensor {
	v := r.vals[i]
	t := &Tensor{DType: v.DType, Shape: v.Shape.Clone(), F: v.F, I: v.I, DenseShape: v.DenseShape.Clone()}
	if v.Rows != nil {
		t.Rows = append([]int64(nil), v.Rows...)
	}
	if r.owner[i] < 0 {
		t = t.Clone()
	}
	if t.Shape == nil {
		t.Shape = Shape{}
	}
	return t
}

func (r *runState) failLocked(err error) {
	if r.err == nil {
		r.err = err
	}
	r.cond.Broadcast()
}

func (r *runState) worker(k *kctx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.ready) == 0 && r.remaining > 0 && r.err == nil {
			r.cond.Wait()
		}
		if r.remaining == 0 || r.err != nil {
			return
		}
		if err := r.ctx.Err(); err != nil {
			r.failLocked(fmt.Errorf("runtime: run at step %d: %w", r.step, err))
			return
		}
		i := r.ready[len(r.ready)-1]
		r.ready = r.ready[:len(r.ready)-1]
		n := &r.p.nodes[i]
		if n.async {
			r.async.Add(1)
			go r.io(i)
			continue
		}
		if r.running == 0 {
			r.busyFrom = time.Now()
		}
		r.running++
		r.mu.Unlock()
		if testHookBeforeKernel != nil {
			testHookBeforeKernel(n)
		}
		t0 := time.Now()
		err := r.exec(k, i)
		t1 := time.Now()
		r.mu.Lock()
		r.st.Compute += t1.Sub(t0)
		r.st.Kernels++
		r.running--
		if r.running == 0 {
			r.busy += t1.Sub(r.busyFrom)
			r.lastKernel = t1
		}
		if r.byOp != nil {
			r.byOp[n.op] += t1.Sub(t0)
		}
		if err != nil {
			r.failLocked(err)
			return
		}
		r.finishLocked(i, true)
	}
}

// exec runs node i's kernel.
func (r *runState) exec(k *kctx, i int) error {
	n := &r.p.nodes[i]
	k.ins = k.ins[:0]
	for _, in := range n.in {
		k.ins = append(k.ins, &r.vals[in])
	}
	switch n.op {
	case opConst:
		v := n.value
		r.vals[i] = Tensor{DType: v.DType, Shape: v.Shape, F: v.F, I: v.I}
		return nil
	case opGroup:
		return nil
	}
	k.pooled = false
	k.node = i
	out := &r.vals[i]
	if err := runKernel(k, n, k.ins, out); err != nil {
		return err
	}
	if n.alias {
		r.mu.Lock()
		if o := r.owner[n.in[0]]; o >= 0 {
			r.owner[i] = o
			r.refs[o] += int32(n.uses)
		}
		r.mu.Unlock()
	} else if k.pooled {
		r.owner[i] = int32(i)
		r.refs[i] = int32(n.uses)
	}
	return nil
}

// finishLocked marks node i done: it releases the buffers it read and
// makes its consumers ready.
func (r *runState) finishLocked(i int, byWorker bool) {
	n := &r.p.nodes[i]
	for _, in := range n.in {
		r.release(in)
	}
	if r.owner[i] == int32(i) && r.refs[i] == 0 {
		r.s.pool.put(r.vals[i].F)
	}
	woke := 0
	for _, sc := range n.succ {
		r.pending[sc]--
		if r.pending[sc] == 0 {
			r.ready = append(r.ready, sc)
			woke++
		}
	}
	r.remaining--
	switch {
	case r.remaining == 0:
		r.cond.Broadcast()
	case woke == 0:
	case byWorker:
		// The calling worker takes one ready node itself.
		for j := 1; j < woke; j++ {
			r.cond.Signal()
		}
	case woke == 1:
		r.cond.Signal()
	default:
		r.cond.Broadcast()
	}
}

func (r *runState) release(in int) {
	o := r.owner[in]
	if o < 0 {
		return
	}
	r.refs[o]--
	if r.refs[o] == 0 {
		r.s.pool.put(r.vals[o].F)
	}
}

// pullDense fetches the dense variables of the Recv nodes recvs in one
// VarStore.Pull.
func (r *runState) pullDense(ctx context.Context, recvs []int) {
	defer r.async.Done()
	p := r.p
	reqs := make([]PullRequest, len(recvs))
	hits := 0
	for j, i := range recvs {
		n := &p.nodes[i]
		buf, hit := r.s.pool.get(n.shape.NumElements())
		if hit {
			hits++
		}
		reqs[j] = PullRequest{Name: n.varName, Dst: buf}
	}
	t0 := time.Now()
	err := r.s.store.Pull(ctx, r.step, reqs)
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Pull += d
	r.st.Pulls++
	r.st.PoolHits += int64(hits)
	r.st.PoolMisses += int64(len(reqs) - hits)
	if err != nil {
		what := fmt.Sprintf("%d variables", len(reqs))
		if len(reqs) == 1 {
			what = reqs[0].Name
		}
		r.failLocked(fmt.Errorf("runtime: pull %s at step %d: %w", what, r.step, err))
		return
	}
	for j, i := range recvs {
		n := &p.nodes[i]
		r.vals[i] = Tensor{DType: Float32, Shape: n.shape, F: reqs[j].Dst}
		r.owner[i] = int32(i)
		r.refs[i] = int32(n.uses)
		r.st.PullBytes += int64(4 * len(reqs[j].Dst))
		r.finishLocked(i, false)
	}
}

// io runs a GatherVar (sparse pull) or Push node on its own goroutine.
func (r *runState) io(i int) {
	defer r.async.Done()
	n := &r.p.nodes[i]
	t0 := time.Now()
	var err error
	var bytes int64
	var k kctx
	k.pool = r.s.pool
	switch n.op {
	case opGatherVar:
		err = r.gatherVar(&k, i)
		bytes = int64(4 * len(r.vals[i].F))
	case opPush:
		g := &r.vals[n.in[0]]
		grad := Gradient{Name: n.varName, Values: g.F}
		if g.IsSparse() {
			grad.Rows = g.Rows
		} else if !n.src.inputs[0].shape.Equal(g.Shape) {
			err = errorf(ErrShape, "push %s: gradient shape %v, variable %v", n.varName, g.Shape, n.src.inputs[0].shape)
		}
		if err == nil {
			err = r.s.store.Push(r.ctx, r.step, grad)
		}
		bytes = int64(4 * len(g.F))
		if err != nil {
			err = fmt.Errorf("runtime: push %s at step %d: %w", n.varName, r.step, err)
		}
	}
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.PoolHits += k.hits
	r.st.PoolMisses += k.misses
	if n.op == opPush {
		r.st.Push += d
		r.st.Pushes++
		r.st.PushBytes += bytes
	} else {
		r.st.Pull += d
		r.st.Pulls++
		r.st.PullBytes += bytes
	}
	if err != nil {
		r.failLocked(err)
		return
	}
	if k.pooled {
		r.owner[i] = int32(i)
		r.refs[i] = int32(n.uses)
	}
	r.finishLocked(i, false)
}

// gatherVar pulls the distinct rows that ids name and gathers them.
func (r *runState) gatherVar(k *kctx, i int) error {
	n := &r.p.nodes[i]
	ids := &r.vals[n.in[0]]
	vshape := n.a.shape
	rows := vshape[0]
	rs := vshape.NumElements() / rows
	uniq := make([]int64, 0, len(ids.I))
	pos := make(map[int64]int, len(ids.I))
	for _, id := range ids.I {
		if id < 0 || id >= int64(rows) {
			return errorf(ErrOutOfRange, "Gather %s: id %d not in [0,%d)", n.varName, id, rows)
		}
		if _, ok := pos[id]; !ok {
			pos[id] = len(uniq)
			uniq = append(uniq, id)
		}
	}
	buf, _ := r.s.pool.get(len(uniq) * rs)
	defer r.s.pool.put(buf)
	if err := r.s.store.Pull(r.ctx, r.step, []PullRequest{{Name: n.varName, Rows: uniq, Dst: buf}}); err != nil {
		return fmt.Errorf("runtime: pull %d rows of %s at step %d: %w", len(uniq), n.varName, r.step, err)
	}
	out := &r.vals[i]
	out.DType = Float32
	out.Shape = append(append(out.Shape[:0], ids.Shape...), vshape[1:]...)
	out.F = k.floats(len(ids.I) * rs)
	for j, id := range ids.I {
		u := pos[id]
		copy(out.F[j*rs:(j+1)*rs], buf[u*rs:(u+1)*rs])
	}
	return nil
}

// kctx is a kernel's view of the executor: buffer allocation, the step and
// the mode. One per worker; not shared.
type kctx struct {
	pool     *pool
	step     int64
	training bool
	pooled   bool      // the output buffer came from the pool
	r        *runState // the run a worker belongs to; nil for I/O and tests
	node     int       // plan index of the node being run (with r)
	hits     int64
	misses   int64
	ins      []*Tensor
}

func newKctx(p *pool, step int64, training bool) *kctx {
	return &kctx{pool: p, step: step, training: training}
}

// argmaxFor returns the argmax buffer of n elements for the node being
// run, marked valid for this run, or nil when the plan computes no
// MaxPoolGrad of it (evaluation) or the kernel runs outside a run.
func (k *kctx) argmaxFor(n int) []int32 {
	r := k.r
	if r == nil {
		return nil
	}
	i := k.node
	want := false
	for _, sc := range r.p.nodes[i].succ {
		if g := &r.p.nodes[sc]; g.op == opMaxPoolGrad && len(g.in) == 3 && g.in[2] == i {
			want = true
			break
		}
	}
	if !want {
		return nil
	}
	if cap(r.argmax[i]) < n {
		r.argmax[i] = make([]int32, n)
	}
	r.argmax[i] = r.argmax[i][:n]
	r.argGen[i] = r.gen
	return r.argmax[i]
}

// cachedArgmax returns the argmax the MaxPool node y recorded in this
// run, or nil.
func (k *kctx) cachedArgmax(y, n int) []int32 {
	r := k.r
	if r == nil || y < 0 || y >= len(r.argmax) || r.argGen[y] != r.gen || len(r.argmax[y]) != n {
		return nil
	}
	return r.argmax[y]
}

// floats returns an output buffer of n elements (contents arbitrary).
func (k *kctx) floats(n int) []float32 {
	b, hit := k.pool.get(n)
	if k.pool != nil {
		k.pooled = true
		if hit {
			k.hits++
		} else {
			k.misses++
		}
	}
	return b
}

// scratch returns a temporary buffer; give it back with free.
func (k *kctx) scratch(n int) []float32 {
	b, hit := k.pool.get(n)
	if k.pool != nil {
		if hit {
			k.hits++
		} else {
			k.misses++
		}
	}
	return b
}

func (k *kctx) free(b []float32) { k.pool.put(b) }

// runKernel runs n's kernel on in, writing out. A panic in a kernel (a bug,
// never expected from user input, which is checked) becomes an error.
func runKernel(k *kctx, n *pnode, in []*Tensor, out *Tensor) (err error) {
	kf := kernels[n.op]
	if kf == nil {
		return errorf(ErrInvalidArgument, "no kernel for op %s (%s)", n.op, n.name)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("runtime: internal error in %s %s: %v", n.op, n.name, p)
		}
	}()
	if err := kf(k, n, in, out); err != nil {
		return fmt.Errorf("%s %s: %w", n.op, n.name, err)
	}
	return nil
}
