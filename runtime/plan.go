package runtime

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Plan-only ops.
const (
	opFeed     = "Feed"     // a fed value
	opRecv     = "Recv"     // a dense variable pulled from the VarStore
	opIdentity = "Identity" // pass-through (inference Dropout)
)

// pnode is one node of a plan.
type pnode struct {
	op    string
	name  string
	in    []int
	shape Shape
	dtype DType
	a     attrs
	src   *Node // graph node it came from (nil when the plan made it)

	varName string  // Recv, GatherVar, Push
	value   *Tensor // Const

	// Filled by finish.
	uses  int   // number of input edges reading this value (+1 when fetched)
	succ  []int // distinct consumers
	npred int   // distinct producers
	alias bool  // output shares input 0's buffer
	async bool  // runs on its own goroutine (I/O)
}

// plan is what a session runs for one (feeds, fetches, targets, training)
// signature: the pruned, optimised and partitioned graph.
type plan struct {
	nodes   []pnode
	fetch   []int
	targets []int
	feeds   []*Node // feeds[i] is the graph node fed into plan node feedIdx[i]
	feedIdx []int
	recvs   []int // dense Recv nodes, pulled in one batch at run start
	roots   []int // nodes with no producers (besides Recvs and feeds)
	stats   PlanStats
}

// PlanStats counts nodes after each plan pass; tests and tools use it to
// see what the passes did.
type PlanStats struct {
	Graph    int // nodes in the graph
	Pruned   int // after pruning to the fetches' and targets' ancestors
	Folded   int // constants folded (nodes replaced by a Const)
	Merged   int // nodes removed by common-subexpression elimination
	Fused    int // fusions (MatMul or Conv2D +BiasAdd(+Relu), BiasAdd+Relu, MaxPoolGrad+ReluGrad)
	Recv     int // dense variable pulls
	Sparse   int // sparse (row) variable pulls
	Push     int // gradient pushes
	Final    int // nodes the executor runs
	Parallel int // largest number of nodes that may run at once (width)
}

// String renders the counts on one line.
func (s PlanStats) String() string {
	return fmt.Sprintf("graph=%d pruned=%d folded=%d merged=%d fused=%d recv=%d sparse=%d push=%d final=%d", s.Graph, s.Pruned, s.Folded, s.Merged, s.Fused, s.Recv, s.Sparse, s.Push, s.Final)
}

// planOptions switch passes off (tests compare results with and without).
type planOptions struct {
	noFold, noCSE, noFuse bool
}

func buildPlan(g *Graph, feeds []*Node, fetches, targets []*Node, training bool, opt planOptions) (*plan, error) {
	for _, list := range [][]*Node{feeds, fetches, targets} {
		for _, n := range list {
			if !g.contains(n) {
				return nil, errorf(ErrForeignNode, "plan: %v", n)
			}
		}
	}
	p := &plan{}
	p.stats.Graph = len(g.nodes)
	fed := map[int]bool{}
	for _, n := range feeds {
		fed[n.id] = true
	}
	// 1. Prune: ancestors of fetches and targets, stopping at feeds.
	need := make([]bool, len(g.nodes))
	for _, n := range append(slices.Clone(fetches), targets...) {
		need[n.id] = true
	}
	for i := len(g.nodes) - 1; i >= 0; i-- {
		if !need[i] || fed[i] {
			continue
		}
		n := g.nodes[i]
		for j, in := range n.inputs {
			if n.op == opPush && j == 0 {
				continue // a Push names its variable; it does not read it
			}
			need[in.id] = true
		}
	}
	idx := make([]int, len(g.nodes))
	for i := range idx {
		idx[i] = -1
	}
	for i, n := range g.nodes {
		if !need[i] {
			continue
		}
		if n.op == opPlaceholder && !fed[i] {
			return nil, errorf(ErrMissingFeed, "plan: placeholder %s %v", n.name, n.shape)
		}
		pn := pnode{op: n.op, name: n.name, shape: n.shape, dtype: n.dtype, a: n.a, src: n}
		switch {
		case fed[i]:
			pn.op = opFeed
			p.feeds = append(p.feeds, n)
			p.feedIdx = append(p.feedIdx, len(p.nodes))
		case n.op == opVariable:
			pn.op, pn.varName = opRecv, n.name
		case n.op == opConst:
			pn.value = n.a.value
		case n.op == opPush:
			pn.varName = n.inputs[0].name
			pn.in = []int{idx[n.inputs[1].id]}
		case n.op == opDropout && !training:
			pn.op = opIdentity
		}
		if !fed[i] && n.op != opPush {
			for _, in := range n.inputs {
				pn.in = append(pn.in, idx[in.id])
			}
		}
		idx[i] = len(p.nodes)
		p.nodes = append(p.nodes, pn)
	}
	for _, n := range fetches {
		p.fetch = append(p.fetch, idx[n.id])
	}
	for _, n := range targets {
		p.targets = append(p.targets, idx[n.id])
	}
	p.stats.Pruned = len(p.nodes)

	// 2. Cut at variables read only by Gather: pull just their rows.
	p.sparseVars()
	// 3. Fold constants.
	if !opt.noFold {
		if err := p.fold(); err != nil {
			return nil, err
		}
	}
	// 4. Merge common subexpressions.
	if !opt.noCSE {
		p.cse()
	}
	// 5. Fuse.
	if !opt.noFuse {
		p.fuse()
	}
	p.compact()
	p.finish()
	return p, nil
}

// sparseVars turns Gather(Recv v, ids) into GatherVar(ids) when every
// reader of v is such a Gather.
func (p *plan) sparseVars() {
	readers := make([][]int, len(p.nodes))
	for i := range p.nodes {
		for j, in := range p.nodes[i].in {
			_ = j
			readers[in] = append(readers[in], i)
		}
	}
	for v := range p.nodes {
		if p.nodes[v].op != opRecv || len(readers[v]) == 0 || slices.Contains(p.fetch, v) {
			continue
		}
		ok := true
		for _, r := range readers[v] {
			rn := &p.nodes[r]
			if rn.op != opGather || rn.in[0] != v || rn.in[1] == v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		for _, r := range readers[v] {
			rn := &p.nodes[r]
			rn.op, rn.varName = opGatherVar, p.nodes[v].name
			rn.a.shape = p.nodes[v].shape // the variable's shape
			rn.in = []int{rn.in[1]}
		}
	}
}

var notFoldable = map[string]bool{
	opFeed: true, opRecv: true, opGatherVar: true, opPush: true, opGroup: true,
	opConst: true, opDropout: true, opPlaceholder: true, opVariable: true,
}

// reachable marks nodes the fetches and targets need.
func (p *plan) reachable() []bool {
	live := make([]bool, len(p.nodes))
	for _, i := range append(slices.Clone(p.fetch), p.targets...) {
		live[i] = true
	}
	for i := len(p.nodes) - 1; i >= 0; i-- {
		if live[i] {
			for _, in := range p.nodes[i].in {
				live[in] = true
			}
		}
	}
	return live
}

func (p *plan) fold() error {
	live := p.reachable()
	k := newKctx(nil, 0, false)
	for i := range p.nodes {
		n := &p.nodes[i]
		if !live[i] || notFoldable[n.op] || len(n.in) == 0 || kernels[n.op] == nil {
			continue
		}
		all := true
		for _, in := range n.in {
			all = all && p.nodes[in].op == opConst
		}
		if !all {
			continue
		}
		ins := make([]*Tensor, len(n.in))
		for j, in := range n.in {
			ins[j] = p.nodes[in].value
		}
		out := &Tensor{}
		if err := runKernel(k, n, ins, out); err != nil {
			return fmt.Errorf("plan: folding constants: %w", err)
		}
		if out.IsSparse() {
			continue
		}
		out = out.Clone() // detach from any input's buffer
		n.op, n.in, n.value = opConst, nil, out
		n.shape, n.a = out.Shape, attrs{value: out}
		p.stats.Folded++
	}
	return nil
}

// key identifies a node's computation for CSE; "" means never merge.
func (p *plan) key(n *pnode) string {
	switch n.op {
	case opFeed, opPush, opGroup, opRecv:
		return ""
	}
	var b strings.Builder
	b.WriteString(n.op)
	for _, in := range n.in {
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(in))
	}
	a := n.a
	fmt.Fprintf(&b, "|%v%v%v%v%v%v%v%d%d%v%v%v%v|%d|%v%v|%s", a.transA, a.transB, a.axes, a.keepDims, a.mean, []int(a.shape), a.perm, a.axis, a.index,
		a.strides, a.ksize, a.same, math.Float32bits(a.rate), a.seed, a.dtype, a.relu, n.varName)
	if n.op == opConst {
		h := fnv.New64a()
		v := n.value
		fmt.Fprintf(h, "%v%v", v.DType, []int(v.Shape))
		var buf [8]byte
		for _, f := range v.F {
			u := math.Float32bits(f)
			buf[0], buf[1], buf[2], buf[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			h.Write(buf[:4])
		}
		for _, x := range v.I {
			for j := range 8 {
				buf[j] = byte(x >> (8 * j))
			}
			h.Write(buf[:])
		}
		fmt.Fprintf(&b, "|%x|%d", h.Sum64(), v.Len())
	}
	return b.String()
}

func (p *plan) cse() {
	seen := map[string]int{}
	repl := make([]int, len(p.nodes))
	live := p.reachable()
	for i := range p.nodes {
		repl[i] = i
		n := &p.nodes[i]
		for j, in := range n.in {
			n.in[j] = repl[in]
		}
		if !live[i] {
			continue
		}
		k := p.key(n)
		if k == "" {
			continue
		}
		if prev, ok := seen[k]; ok {
			if n.op != opConst || tensorsEqual(p.nodes[prev].value, n.value) {
				repl[i] = prev
				p.stats.Merged++
			}
			continue
		}
		seen[k] = i
	}
	for j, f := range p.fetch {
		p.fetch[j] = repl[f]
	}
	for j, t := range p.targets {
		p.targets[j] = repl[t]
	}
}

func tensorsEqual(x, y *Tensor) bool {
	return x.DType == y.DType && x.Shape.Equal(y.Shape) && slices.Equal(x.F, y.F) && slices.Equal(x.I, y.I)
}

// fuse rewrites Relu(BiasAdd(MatMul(a,w), b)) into FusedMatMul(a,w,b) with
// relu, BiasAdd(MatMul) into FusedMatMul without, the same for Conv2D
// (FusedConv2D), Relu(BiasAdd(x,b)) into BiasAddRelu, and
// ReluGrad(MaxPoolGrad(dp,y,p), y) into a MaxPoolGrad with relu, when the
// intermediate values have no other reader.
func (p *plan) fuse() {
	live := p.reachable()
	readers := make([]int, len(p.nodes))
	for i := range p.nodes {
		if !live[i] {
			continue
		}
		for _, in := range p.nodes[i].in {
			readers[in]++
		}
	}
	for _, f := range p.fetch {
		readers[f] += 2
	}
	private := func(i int) bool { return readers[i] == 1 }
	for i := range p.nodes {
		n := &p.nodes[i]
		if !live[i] {
			continue
		}
		switch n.op {
		case opRelu:
			ba := n.in[0]
			if p.nodes[ba].op != opBiasAdd || !private(ba) {
				continue
			}
			bn := &p.nodes[ba]
			mm := bn.in[0]
			if p.nodes[mm].op == opMatMul && private(mm) {
				m := &p.nodes[mm]
				n.op, n.in = opFusedMatMul, []int{m.in[0], m.in[1], bn.in[1]}
				n.a = attrs{transA: m.a.transA, transB: m.a.transB, bias: true, relu: true}
				readers[mm], readers[ba] = 0, 0
			} else if p.nodes[mm].op == opConv2D && private(mm) {
				m := &p.nodes[mm]
				n.op, n.in = opFusedConv, []int{m.in[0], m.in[1], bn.in[1]}
				n.a = attrs{strides: m.a.strides, same: m.a.same, bias: true, relu: true}
				readers[mm], readers[ba] = 0, 0
			} else {
				n.op, n.in = opBiasRelu, []int{bn.in[0], bn.in[1]}
				readers[ba] = 0
			}
			p.stats.Fused++
		case opReluGrad:
			// ReluGrad(MaxPoolGrad(dp, y, p), y), the backward of
			// MaxPool(Relu(...)): the pool's gradient masked by y > 0 as
			// it is scattered, instead of a second pass.
			mg := n.in[0]
			g := &p.nodes[mg]
			if g.op != opMaxPoolGrad || g.a.relu || !private(mg) || len(g.in) != 3 || g.in[1] != n.in[1] {
				continue
			}
			n.op, n.in, n.a = opMaxPoolGrad, slices.Clone(g.in), g.a
			n.a.relu = true
			readers[mg] = 0
			p.stats.Fused++
		case opBiasAdd:
			mm := n.in[0]
			if op := p.nodes[mm].op; op != opMatMul && op != opConv2D || !private(mm) {
				continue
			}
			// Leave it for a Relu reader to fuse all three.
			if next := p.soleReader(i, live); next >= 0 && p.nodes[next].op == opRelu && private(i) {
				continue
			}
			m := &p.nodes[mm]
			if m.op == opConv2D {
				n.op, n.in = opFusedConv, []int{m.in[0], m.in[1], n.in[1]}
				n.a = attrs{strides: m.a.strides, same: m.a.same, bias: true}
			} else {
				n.op, n.in = opFusedMatMul, []int{m.in[0], m.in[1], n.in[1]}
				n.a = attrs{transA: m.a.transA, transB: m.a.transB, bias: true}
			}
			readers[mm] = 0
			p.stats.Fused++
		}
	}
}

func (p *plan) soleReader(i int, live []bool) int {
	r := -1
	for j := i + 1; j < len(p.nodes); j++ {
		if live[j] && slices.Contains(p.nodes[j].in, i) {
			if r >= 0 {
				return -1
			}
			r = j
		}
	}
	return r
}

// compact drops nodes nothing needs and renumbers the rest.
func (p *plan) compact() {
	live := p.reachable()
	idx := make([]int, len(p.nodes))
	out := p.nodes[:0:0]
	for i := range p.nodes {
		idx[i] = -1
		if !live[i] {
			continue
		}
		n := p.nodes[i]
		n.in = slices.Clone(n.in)
		for j, in := range n.in {
			n.in[j] = idx[in]
		}
		idx[i] = len(out)
		out = append(out, n)
	}
	p.nodes = out
	for j, f := range p.fetch {
		p.fetch[j] = idx[f]
	}
	for j, t := range p.targets {
		p.targets[j] = idx[t]
	}
	fi := p.feedIdx[:0]
	fs := p.feeds[:0]
	for j, f := range p.feedIdx {
		if idx[f] >= 0 {
			fi = append(fi, idx[f])
			fs = append(fs, p.feeds[j])
		}
	}
	p.feedIdx, p.feeds = fi, fs
}

var aliasOps = map[string]bool{opReshape: true, opReshapeLike: true, opIdentity: true}

// finish computes the executor's bookkeeping.
func (p *plan) finish() {
	for i := range p.nodes {
		n := &p.nodes[i]
		n.alias = aliasOps[n.op]
		n.async = n.op == opGatherVar || n.op == opPush
		seen := map[int]bool{}
		for _, in := range n.in {
			p.nodes[in].uses++
			if !seen[in] {
				seen[in] = true
				p.nodes[in].succ = append(p.nodes[in].succ, i)
				n.npred++
			}
		}
		switch n.op {
		case opRecv:
			p.recvs = append(p.recvs, i)
			p.stats.Recv++
		case opGatherVar:
			p.stats.Sparse++
		case opPush:
			p.stats.Push++
		}
		if n.npred == 0 && n.op != opRecv && n.op != opFeed {
			p.roots = append(p.roots, i)
		}
	}
	for _, f := range p.fetch {
		p.nodes[f].uses++
	}
	p.stats.Final = len(p.nodes)
	// Width: the largest antichain is hard; report the largest level.
	level := make([]int, len(p.nodes))
	count := map[int]int{}
	for i := range p.nodes {
		for _, in := range p.nodes[i].in {
			level[i] = max(level[i], level[in]+1)
		}
		count[level[i]]++
		p.stats.Parallel = max(p.stats.Parallel, count[level[i]])
	}
}
