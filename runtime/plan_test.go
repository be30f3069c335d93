package runtime

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
)

func allClose(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol*math.Max(1, math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

func TestPlanPasses(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 4})
	unused := b.Placeholder("unused", Float32, Shape{-1, 4})
	w := b.Variable("w", Shape{4, 3}, GlorotUniform(1))
	bias := b.Variable("b", Shape{3}, ConstantInit(0.1))
	// Constant subgraph: (2*3) + 1 folds into one Const.
	k := b.Add(b.Mul(b.Scalar(2), b.Scalar(3)), b.Scalar(1))
	// Two identical products: CSE keeps one.
	h1 := b.MatMul(x, w, false, false)
	h2 := b.MatMul(x, w, false, false)
	h := b.Relu(b.BiasAdd(b.Add(h1, h2), bias))
	out := b.Mul(h, k)
	b.Exp(b.Relu(unused)) // pruned: nothing fetches it
	loss := b.Mean(b.Square(out), nil, false)
	train := b.Minimize(loss, nil)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	store := NewMemStore(0)
	s, err := NewSession(ctx, g, SessionConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	xv := randTensor(newRand().r, Shape{5, 4}, -1, 1)
	args := RunArgs{Feeds: Feeds{x: xv}, Fetches: []*Node{out, loss}, Targets: []*Node{train}}
	st, err := s.PlanStats(args)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan: %v", st)
	if st.Pruned >= st.Graph {
		t.Errorf("pruning removed nothing: %v", st)
	}
	if st.Folded < 2 {
		t.Errorf("folded %d constants, want ≥ 2 (Mul, Add)", st.Folded)
	}
	if st.Merged < 1 {
		t.Errorf("merged %d nodes, want ≥ 1 (the twin MatMul)", st.Merged)
	}
	if st.Fused != 1 {
		t.Errorf("fused %d, want 1 (BiasAdd+Relu)", st.Fused)
	}
	if st.Recv != 2 || st.Push != 2 || st.Sparse != 0 {
		t.Errorf("cut: recv %d push %d sparse %d, want 2, 2, 0", st.Recv, st.Push, st.Sparse)
	}
	if st.Final >= st.Pruned {
		t.Errorf("final %d not below pruned %d", st.Final, st.Pruned)
	}
	// Same results with every pass off.
	opt, err := s.run(ctx, args, planOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.run(ctx, args, planOptions{noFold: true, noCSE: true, noFuse: true})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := s.planWith(args, planOptions{noFold: true, noCSE: true, noFuse: true})
	if ps := cp.p.stats; ps.Folded != 0 || ps.Merged != 0 || ps.Fused != 0 || ps.Final <= st.Final {
		t.Errorf("passes off: %v", ps)
	}
	for i := range opt.Values {
		if !allClose(opt.Values[i].F, plain.Values[i].F, 1e-5) {
			t.Errorf("fetch %d differs with passes off: %v vs %v", i, opt.Values[i], plain.Values[i])
		}
	}
	// Plans are cached per signature.
	n := len(s.plans)
	if _, err := s.Run(ctx, args); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(ctx, RunArgs{Feeds: Feeds{x: xv}, Fetches: []*Node{loss}}); err != nil {
		t.Fatal(err)
	}
	if len(s.plans) != n+1 {
		t.Errorf("plans %d, want %d (one new signature)", len(s.plans), n+1)
	}
}

func newRand() *randSource { return newRandSource(5) }

func TestFusedMLPPlan(t *testing.T) {
	m := buildMLP(t, 784, 256, 128, 10)
	s, err := NewSession(context.Background(), m.g, SessionConfig{Store: NewMemStore(0)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.PlanStats(RunArgs{Feeds: Feeds{m.x: nil, m.y: nil}, Targets: []*Node{m.train}})
	if err != nil {
		t.Fatal(err)
	}
	// Two MatMul+BiasAdd+Relu layers and one MatMul+BiasAdd.
	if st.Fused != 3 || st.Recv != 6 || st.Push != 6 {
		t.Errorf("plan %v", st)
	}
	// Backprop needs no gradient for the input x: the first layer's dx
	// MatMul must not be in the plan.
	cp, _ := s.plan(RunArgs{Feeds: Feeds{m.x: nil, m.y: nil}, Targets: []*Node{m.train}})
	mm := 0
	for _, n := range cp.p.nodes {
		if n.op == opMatMul || n.op == opFusedMatMul {
			mm++
		}
	}
	if mm != 3+3+2 {
		t.Errorf("%d matrix products, want 8 (3 forward, 3 dW, 2 dx)", mm)
	}
}

func TestBufferReuse(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{64, 64})
	h := x
	for i := 0; i < 20; i++ {
		h = b.Tanh(b.Neg(h))
	}
	g, _ := b.Build()
	s, err := NewSession(ctx, g, SessionConfig{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	xv := randTensor(newRandSource(1).r, Shape{64, 64}, -1, 1)
	res, err := s.Run(ctx, RunArgs{Feeds: Feeds{x: xv}, Fetches: []*Node{h}})
	if err != nil {
		t.Fatal(err)
	}
	// 40 kernels in a chain: each buffer is released after its one
	// reader, so the first run allocates about two buffers, not 40.
	if st := res.Stats; st.PoolMisses > 3 || st.PoolHits < 37 {
		t.Errorf("first run: hits %d misses %d", st.PoolHits, st.PoolMisses)
	}
	_, m1 := s.PoolStats()
	for i := 0; i < 5; i++ {
		if _, err := s.Run(ctx, RunArgs{Feeds: Feeds{x: xv}, Fetches: []*Node{h}}); err != nil {
			t.Fatal(err)
		}
	}
	// Later runs allocate only the fetched buffer handed to the caller.
	hits, m2 := s.PoolStats()
	if m2-m1 > 5 {
		t.Errorf("misses grew by %d over 5 runs", m2-m1)
	}
	t.Logf("pool hits %d misses %d", hits, m2)
}

// recStore records calls to a MemStore.
type recStore struct {
	*MemStore
	mu     sync.Mutex
	pulls  []PullRequest
	pushes []Gradient
}

func (r *recStore) Pull(ctx context.Context, step int64, reqs []PullRequest) error {
	r.mu.Lock()
	for _, q := range reqs {
		r.pulls = append(r.pulls, PullRequest{Name: q.Name, Rows: slices.Clone(q.Rows)})
	}
	r.mu.Unlock()
	return r.MemStore.Pull(ctx, step, reqs)
}

func (r *recStore) Push(ctx context.Context, step int64, g Gradient) error {
	r.mu.Lock()
	r.pushes = append(r.pushes, Gradient{Name: g.Name, Rows: slices.Clone(g.Rows), Values: slices.Clone(g.Values)})
	r.mu.Unlock()
	return r.MemStore.Push(ctx, step, g)
}

func TestSparseEmbedding(t *testing.T) {
	ctx := context.Background()
	build := func(dense bool) (*Graph, *Node, *Node, *Node, *Node) {
		b := NewBuilder()
		ids := b.Placeholder("ids", Int64, Shape{-1, 3})
		var emb *Node
		if dense {
			emb = b.Placeholder("emb", Float32, Shape{1000, 4})
		} else {
			emb = b.Variable("emb", Shape{1000, 4}, UniformInit(-1, 1, 3))
		}
		w := b.Variable("w", Shape{4, 2}, GlorotUniform(4))
		e := b.Sum(b.Gather(emb, ids), []int{1}, false) // [-1,4]
		loss := b.Mean(b.Square(b.MatMul(e, w, false, false)), nil, false)
		grads := b.Gradients(loss, []*Node{emb, w})
		g, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		return g, ids, emb, grads[0], b.Group(b.Push(g.Lookup("w"), grads[1]))
	}
	g, ids, emb, gEmb, _ := build(false)
	store := &recStore{MemStore: NewMemStore(0.5)}
	s, err := NewSession(ctx, g, SessionConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if defs := store.Names(); len(defs) != 2 {
		t.Fatalf("created %v", defs)
	}
	idv := ints(Shape{2, 3}, 7, 999, 7, 3, 0, 7)
	b2 := g.b
	push := b2.Push(emb, gEmb)
	g, _ = b2.Build()
	s, _ = NewSession(ctx, g, SessionConfig{Store: store, SkipCreate: true})
	args := RunArgs{Feeds: Feeds{ids: idv}, Targets: []*Node{push}}
	st, err := s.PlanStats(args)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sparse != 1 || st.Recv != 1 || st.Push != 1 {
		t.Fatalf("plan %v: want 1 sparse pull, 1 dense pull (w), 1 push", st)
	}
	before := store.Value("emb")
	if _, err := s.Run(ctx, args); err != nil {
		t.Fatal(err)
	}
	var sparsePull *PullRequest
	for i := range store.pulls {
		if store.pulls[i].Name == "emb" {
			sparsePull = &store.pulls[i]
		}
	}
	if sparsePull == nil || !slices.Equal(sparsePull.Rows, []int64{7, 999, 3, 0}) {
		t.Fatalf("sparse pull %+v, want rows 7 999 3 0", sparsePull)
	}
	if len(store.pushes) != 1 || !slices.Equal(store.pushes[0].Rows, []int64{0, 3, 7, 999}) || len(store.pushes[0].Values) != 16 {
		t.Fatalf("push %+v, want sorted rows 0 3 7 999", store.pushes)
	}
	// Compare with the dense gradient of the same function.
	gd, idsD, embD, gEmbD, _ := build(true)
	sd, err := NewSession(ctx, gd, SessionConfig{Store: NewMemStore(0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.store.(*MemStore).Set("w", store.Value("w")); err != nil {
		t.Fatal(err)
	}
	ev, _ := NewTensor(Shape{1000, 4}, before)
	res, err := sd.Run(ctx, RunArgs{Feeds: Feeds{idsD: idv, embD: ev}, Fetches: []*Node{gEmbD}})
	if err != nil {
		t.Fatal(err)
	}
	dense := res.Values[0]
	if dense.IsSparse() || !dense.Shape.Equal(Shape{1000, 4}) {
		t.Fatalf("dense gradient %v", dense)
	}
	after := store.Value("emb")
	for j, row := range store.pushes[0].Rows {
		if !allClose(store.pushes[0].Values[j*4:(j+1)*4], dense.F[row*4:(row+1)*4], 1e-5) {
			t.Errorf("row %d: sparse %v dense %v", row, store.pushes[0].Values[j*4:(j+1)*4], dense.F[row*4:(row+1)*4])
		}
	}
	changed := 0
	for i := range after {
		if after[i] != before[i] {
			changed++
		}
	}
	if changed != 16 {
		t.Errorf("%d values of emb changed, want 16 (4 rows)", changed)
	}
}

func TestMixedDenseAndGatherReadIsDense(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	ids := b.Placeholder("ids", Int64, Shape{-1})
	emb := b.Variable("emb", Shape{10, 2}, UniformInit(-1, 1, 1))
	loss := b.Add(b.Sum(b.Gather(emb, ids), nil, false), b.Sum(b.Square(emb), nil, false))
	train := b.Minimize(loss, nil)
	g, _ := b.Build()
	store := &recStore{MemStore: NewMemStore(0.1)}
	s, err := NewSession(ctx, g, SessionConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.PlanStats(RunArgs{Feeds: Feeds{ids: nil}, Targets: []*Node{train}})
	if st.Sparse != 0 || st.Recv != 1 {
		t.Fatalf("plan %v", st)
	}
	before := store.Value("emb")
	if _, err := s.Run(ctx, RunArgs{Feeds: Feeds{ids: ints(Shape{3}, 1, 1, 4)}, Targets: []*Node{train}}); err != nil {
		t.Fatal(err)
	}
	p := store.pushes[0]
	if p.Rows != nil || len(p.Values) != 20 {
		t.Fatalf("push %+v, want dense", p)
	}
	// d/d emb = 2*emb + count(row in ids).
	for r := 0; r < 10; r++ {
		cnt := float32(0)
		switch r {
		case 1:
			cnt = 2
		case 4:
			cnt = 1
		}
		for c := 0; c < 2; c++ {
			want := 2*before[r*2+c] + cnt
			if math.Abs(float64(p.Values[r*2+c]-want)) > 1e-5 {
				t.Errorf("grad[%d,%d] = %v, want %v", r, c, p.Values[r*2+c], want)
			}
		}
	}
}

type failStore struct{ *MemStore }

var errBoom = errors.New("boom")

func (failStore) Push(context.Context, int64, Gradient) error { return errBoom }

func TestStoreErrorsPropagate(t *testing.T) {
	ctx := context.Background()
	m := buildMLP(t, 4, 3)
	s, err := NewSession(ctx, m.g, SessionConfig{Store: failStore{NewMemStore(0.1)}})
	if err != nil {
		t.Fatal(err)
	}
	x := randTensor(newRandSource(2).r, Shape{2, 4}, -1, 1)
	_, err = s.Run(ctx, RunArgs{Feeds: Feeds{m.x: x, m.y: ints(Shape{2}, 0, 2)}, Targets: []*Node{m.train}})
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v", err)
	}
	// No store at all.
	if _, err := NewSession(ctx, m.g, SessionConfig{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("err = %v", err)
	}
}

func TestDropoutModes(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1})
	d := b.Dropout(x, 0.25, 42)
	g, _ := b.Build()
	s, _ := NewSession(ctx, g, SessionConfig{})
	ones := make([]float32, 10000)
	for i := range ones {
		ones[i] = 1
	}
	xv, _ := NewTensor(Shape{10000}, ones)
	run := func(step int64, training bool) []float32 {
		res, err := s.Run(ctx, RunArgs{Step: step, Training: training, Feeds: Feeds{x: xv}, Fetches: []*Node{d}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Values[0].F
	}
	if inf := run(1, false); !slices.Equal(inf, ones) {
		t.Fatal("inference dropout changed values")
	}
	a, a2, c := run(1, true), run(1, true), run(2, true)
	if !slices.Equal(a, a2) {
		t.Fatal("same seed and step gave different masks")
	}
	if slices.Equal(a, c) {
		t.Fatal("different steps gave the same mask")
	}
	zeros, sum := 0, float64(0)
	for _, v := range a {
		if v == 0 {
			zeros++
		} else if math.Abs(float64(v)-1/0.75) > 1e-6 {
			t.Fatalf("kept value %v, want %v", v, 1/0.75)
		}
		sum += float64(v)
	}
	if zeros < 2200 || zeros > 2800 {
		t.Errorf("%d of 10000 dropped, want about 2500", zeros)
	}
	t.Logf("dropped %d, mean %.3f", zeros, sum/10000)
}

func TestCanceledRun(t *testing.T) {
	m := buildMLP(t, 4, 3)
	s, err := NewSession(context.Background(), m.g, SessionConfig{Store: NewMemStore(0.1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := randTensor(newRandSource(2).r, Shape{2, 4}, -1, 1)
	_, err = s.Run(ctx, RunArgs{Feeds: Feeds{m.x: x, m.y: ints(Shape{2}, 0, 2)}, Targets: []*Node{m.train}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFusedConvMatchesUnfused(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 6, 6, 2})
	f1 := b.Variable("f1", Shape{3, 3, 2, 4}, GlorotUniform(1))
	b1 := b.Variable("b1", Shape{4}, UniformInit(-0.5, 0.5, 2))
	f2 := b.Variable("f2", Shape{2, 2, 4, 3}, GlorotUniform(3))
	b2 := b.Variable("b2", Shape{3}, UniformInit(-0.5, 0.5, 4))
	h := b.Relu(b.BiasAdd(b.Conv2D(x, f1, [2]int{1, 1}, Same), b1))
	out := b.BiasAdd(b.Conv2D(h, f2, [2]int{2, 2}, Valid), b2)
	loss := b.Mean(b.Square(out), nil, false)
	grads := b.Gradients(loss, []*Node{f1, b1, f2, b2})
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(ctx, g, SessionConfig{Store: NewMemStore(0)})
	if err != nil {
		t.Fatal(err)
	}
	args := RunArgs{Feeds: Feeds{x: randTensor(newRandSource(8).r, Shape{3, 6, 6, 2}, -1, 1)}, Fetches: append([]*Node{out}, grads...)}
	cp, err := s.plan(args)
	if err != nil {
		t.Fatal(err)
	}
	fused := 0
	for _, n := range cp.p.nodes {
		if n.op == opFusedConv {
			fused++
		}
	}
	if fused != 2 {
		t.Fatalf("%d FusedConv2D nodes, want 2 (%v)", fused, cp.p.stats)
	}
	on, err := s.run(ctx, args, planOptions{})
	if err != nil {
		t.Fatal(err)
	}
	off, err := s.run(ctx, args, planOptions{noFuse: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range on.Values {
		if !allClose(on.Values[i].F, off.Values[i].F, 1e-5) {
			t.Errorf("fetch %d differs with fusion off", i)
		}
	}
}

func TestTwoGathersMergeSparseRows(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	ids1 := b.Placeholder("ids1", Int64, Shape{-1})
	ids2 := b.Placeholder("ids2", Int64, Shape{-1})
	emb := b.Variable("emb", Shape{50, 3}, UniformInit(-1, 1, 1))
	loss := b.Add(b.Sum(b.Gather(emb, ids1), nil, false), b.Mul(b.Scalar(2), b.Sum(b.Gather(emb, ids2), nil, false)))
	train := b.Minimize(loss, nil)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	store := &recStore{MemStore: NewMemStore(0.1)}
	s, err := NewSession(ctx, g, SessionConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	args := RunArgs{Feeds: Feeds{ids1: ints(Shape{3}, 5, 9, 5), ids2: ints(Shape{2}, 9, 40)}, Targets: []*Node{train}}
	if st, _ := s.PlanStats(args); st.Sparse != 2 || st.Recv != 0 {
		t.Fatalf("plan %v", st)
	}
	if _, err := s.Run(ctx, args); err != nil {
		t.Fatal(err)
	}
	p := store.pushes[0]
	if !slices.Equal(p.Rows, []int64{5, 9, 40}) {
		t.Fatalf("rows %v", p.Rows)
	}
	// Row 5 twice from ids1 (2), row 9 once from each (1 + 2), row 40 from ids2 (2).
	want := []float32{2, 2, 2, 3, 3, 3, 2, 2, 2}
	if !allClose(p.Values, want, 1e-6) {
		t.Fatalf("values %v, want %v", p.Values, want)
	}
}
