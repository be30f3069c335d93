package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestShapeErrorsNameOpAndShapes(t *testing.T) {
	cases := []struct {
		name  string
		build func(b *Builder)
		want  []string
	}{
		{"MatMul", func(b *Builder) {
			x := b.Placeholder("x", Float32, Shape{-1, 784})
			w := b.Variable("w", Shape{256, 10}, ZerosInit())
			b.MatMul(x, w, false, false)
		}, []string{"MatMul", "[?,784]", "[256,10]"}},
		{"Add", func(b *Builder) {
			b.Add(b.Placeholder("a", Float32, Shape{3, 4}), b.Placeholder("c", Float32, Shape{5}))
		}, []string{"Add", "[3,4]", "[5]"}},
		{"BiasAdd", func(b *Builder) {
			b.BiasAdd(b.Placeholder("a", Float32, Shape{-1, 4}), b.Variable("bias", Shape{3}, ZerosInit()))
		}, []string{"BiasAdd", "[?,4]", "[3]"}},
		{"Conv2D", func(b *Builder) {
			b.Conv2D(b.Placeholder("img", Float32, Shape{-1, 28, 28, 1}), b.Variable("f", Shape{5, 5, 3, 8}, ZerosInit()), [2]int{1, 1}, Same)
		}, []string{"Conv2D", "[?,28,28,1]", "[5,5,3,8]"}},
		{"Reshape", func(b *Builder) {
			b.Reshape(b.Placeholder("a", Float32, Shape{3, 4}), Shape{5, -1})
		}, []string{"Reshape", "[3,4]", "[5,?]"}},
		{"SparseXent", func(b *Builder) {
			b.SparseSoftmaxCrossEntropyWithLogits(b.Placeholder("l", Float32, Shape{8, 10}), b.Placeholder("y", Int64, Shape{7}))
		}, []string{"SparseSoftmaxCrossEntropyWithLogits", "[8,10]", "[7]"}},
		{"Concat", func(b *Builder) {
			b.Concat(1, b.Placeholder("a", Float32, Shape{2, 3}), b.Placeholder("c", Float32, Shape{3, 3}))
		}, []string{"Concat", "[2,3]", "[3,3]"}},
		{"Push", func(b *Builder) {
			w := b.Variable("w", Shape{3, 4}, ZerosInit())
			b.Push(w, b.Placeholder("g", Float32, Shape{4, 3}))
		}, []string{"Push", "[4,3]", "[3,4]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := NewBuilder()
			c.build(b)
			_, err := b.Build()
			if !errors.Is(err, ErrShape) {
				t.Fatalf("err = %v, want ErrShape", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestBuilderKeepsFirstErrorAndDoesNotPanic(t *testing.T) {
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{2, 3})
	bad := b.MatMul(x, x, false, false) // [2,3]·[2,3]
	// Later calls with the inert node, nil nodes and bad attributes must
	// neither panic nor replace the first error.
	h := b.Relu(b.Add(bad, nil))
	b.Transpose(h, []int{0, 0})
	b.Dropout(x, 2, 1)
	b.Gradients(h, []*Node{x})
	_, err := b.Build()
	if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "MatMul") {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []func(b *Builder){
		func(b *Builder) { b.Add(b.Placeholder("a", Float32, Shape{1}), nil) },
		func(b *Builder) { b.Dropout(b.Placeholder("a", Float32, Shape{1}), 1.5, 0) },
		func(b *Builder) { b.Sum(b.Placeholder("a", Float32, Shape{1}), []int{3}, false) },
		func(b *Builder) { b.Placeholder("a", Float32, nil); b.Placeholder("a", Float32, nil) },
		func(b *Builder) {
			b.Conv2D(b.Placeholder("a", Float32, Shape{1, 4, 4, 1}), b.Placeholder("f", Float32, Shape{2, 2, 1, 1}), [2]int{0, 1}, Same)
		},
		func(b *Builder) {
			b.MaxPool(b.Placeholder("a", Float32, Shape{1, 4, 4, 1}), [2]int{2, 2}, [2]int{2, 2}, "FULL")
		},
	} {
		b := NewBuilder()
		f(b)
		if _, err := b.Build(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("err = %v, want ErrInvalidArgument", err)
		}
	}
	// Nodes of another builder are rejected.
	b1, b2 := NewBuilder(), NewBuilder()
	b2.Relu(b1.Placeholder("p", Float32, Shape{1}))
	if err := b2.Err(); !errors.Is(err, ErrForeignNode) {
		t.Errorf("err = %v, want ErrForeignNode", err)
	}
}

func TestShapeInference(t *testing.T) {
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 28, 28, 1})
	c := b.Conv2D(x, b.Variable("f", Shape{5, 5, 1, 32}, ZerosInit()), [2]int{1, 1}, Same)
	p := b.MaxPool(c, [2]int{2, 2}, [2]int{2, 2}, Same)
	v := b.Conv2D(p, b.Variable("f2", Shape{3, 3, 32, 8}, ZerosInit()), [2]int{2, 2}, Valid)
	flat := b.Reshape(p, Shape{-1, 14 * 14 * 32})
	s := b.Sum(p, []int{1, 2}, true)
	am := b.ArgMax(flat, 1)
	tr := b.Transpose(x, []int{0, 3, 1, 2})
	cc := b.Concat(1, flat, flat)
	ids := b.Placeholder("ids", Int64, Shape{-1, 5})
	emb := b.Gather(b.Variable("emb", Shape{1000, 16}, ZerosInit()), ids)
	for _, tc := range []struct {
		n    *Node
		want Shape
	}{
		{c, Shape{-1, 28, 28, 32}}, {p, Shape{-1, 14, 14, 32}}, {v, Shape{-1, 6, 6, 8}}, {flat, Shape{-1, 6272}},
		{s, Shape{-1, 1, 1, 32}}, {am, Shape{-1}}, {tr, Shape{-1, 1, 28, 28}}, {cc, Shape{-1, 12544}}, {emb, Shape{-1, 5, 16}},
	} {
		if !tc.n.Shape().Equal(tc.want) {
			t.Errorf("%v: shape %v, want %v", tc.n, tc.n.Shape(), tc.want)
		}
	}
	if am.DType() != Int64 {
		t.Errorf("ArgMax dtype %v", am.DType())
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestRunTimeShapeAndFeedErrors(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 3})
	y := b.Placeholder("y", Float32, Shape{-1, 3})
	sum := b.Add(x, y)
	lab := b.Placeholder("lab", Int64, Shape{-1})
	xent := b.SparseSoftmaxCrossEntropyWithLogits(x, lab)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(ctx, g, SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	x2, _ := NewTensor(Shape{2, 3}, make([]float32, 6))
	y3, _ := NewTensor(Shape{3, 3}, make([]float32, 9))
	// Batch 2 vs batch 3 is only visible at run time.
	_, err = s.Run(ctx, RunArgs{Feeds: Feeds{x: x2, y: y3}, Fetches: []*Node{sum}})
	if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "[2,3]") || !strings.Contains(err.Error(), "[3,3]") {
		t.Errorf("batch mismatch: %v", err)
	}
	// Wrong feed shape, wrong dtype, missing feed.
	bad, _ := NewTensor(Shape{2, 4}, make([]float32, 8))
	if _, err = s.Run(ctx, RunArgs{Feeds: Feeds{x: bad, y: bad}, Fetches: []*Node{sum}}); !errors.Is(err, ErrShape) {
		t.Errorf("feed shape: %v", err)
	}
	if _, err = s.Run(ctx, RunArgs{Feeds: Feeds{x: x2}, Fetches: []*Node{sum}}); !errors.Is(err, ErrMissingFeed) {
		t.Errorf("missing feed: %v", err)
	}
	labs := ints(Shape{2}, 0, 3)
	if _, err = s.Run(ctx, RunArgs{Feeds: Feeds{x: x2, lab: labs}, Fetches: []*Node{xent}}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("label out of range: %v", err)
	}
	if _, err = s.Run(ctx, RunArgs{Feeds: Feeds{x: labs}, Fetches: []*Node{x}}); !errors.Is(err, ErrDType) {
		t.Errorf("dtype: %v", err)
	}
	// A later good run on the same plan still works.
	res, err := s.Run(ctx, RunArgs{Feeds: Feeds{x: x2, y: x2}, Fetches: []*Node{sum}})
	if err != nil || !res.Values[0].Shape.Equal(Shape{2, 3}) {
		t.Fatalf("good run: %v %v", res, err)
	}
}

// TestConcurrentSessions runs one graph from several sessions and
// goroutines at once (run with -race) and checks every result against a
// sequential run.
func TestConcurrentSessions(t *testing.T) {
	ctx := context.Background()
	m := buildMLP(t, 8, 16, 3)
	store := NewMemStore(0) // lr 0: weights stay fixed, results comparable
	sessions := make([]*Session, 3)
	for i := range sessions {
		s, err := NewSession(ctx, m.g, SessionConfig{Store: store, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s
	}
	batches := make([][2]*Tensor, 6)
	want := make([]float32, len(batches))
	for i := range batches {
		xs := make([]float32, 5*8)
		for j := range xs {
			xs[j] = float32((i*7+j)%11) / 11
		}
		x, _ := NewTensor(Shape{5, 8}, xs)
		batches[i] = [2]*Tensor{x, ints(Shape{5}, int64(i%3), 1, 2, 0, 1)}
		res, err := sessions[0].Run(ctx, RunArgs{Feeds: Feeds{m.x: x, m.y: batches[i][1]}, Fetches: []*Node{m.loss}})
		if err != nil {
			t.Fatal(err)
		}
		want[i], _ = res.Values[0].Float()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for gi := 0; gi < 6; gi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sessions[gi%len(sessions)]
			for it := 0; it < 20; it++ {
				i := (gi + it) % len(batches)
				res, err := s.Run(ctx, RunArgs{Step: int64(it), Training: true, Feeds: Feeds{m.x: batches[i][0], m.y: batches[i][1]}, Fetches: []*Node{m.loss}, Targets: []*Node{m.train}})
				if err != nil {
					errs <- err
					return
				}
				if l, _ := res.Values[0].Float(); l != want[i] {
					errs <- errors.New("concurrent result differs from sequential")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := store.Pushes("dense1/w"); n != 6*20 {
		t.Fatalf("pushes = %d, want %d", n, 6*20)
	}
}

func TestNameRules(t *testing.T) {
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{2})
	h := b.Name(b.Relu(x), "h")
	if h.Name() != "h" {
		t.Fatalf("name %q", h.Name())
	}
	g, err := b.Build()
	if err != nil || g.Lookup("x") != x {
		t.Fatal(err)
	}
	b.Name(h, "renamed") // h is part of g now
	if err := b.Err(); !errors.Is(err, ErrInvalidArgument) || h.Name() != "h" {
		t.Fatalf("rename after Build: %v, name %q", err, h.Name())
	}
	b2 := NewBuilder()
	b2.Name(b2.Placeholder("p", Float32, nil), "q")
	if err := b2.Err(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("rename placeholder: %v", err)
	}
}
