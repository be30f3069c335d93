package runtime

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMaxPoolArgmaxCache checks that MaxPoolGrad scattering through the
// argmax its forward kernel recorded gives the gradient a fresh search of
// the windows gives, that the record is made only when the plan computes
// the gradient, and that a record from another run is not used.
func TestMaxPoolArgmaxCache(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		name   string
		shape  Shape
		ks, st [2]int
		same   bool
	}{
		{"2x2s2-same-odd", Shape{2, 7, 5, 3}, [2]int{2, 2}, [2]int{2, 2}, true},
		{"3x3s1-valid-overlap", Shape{1, 6, 6, 4}, [2]int{3, 3}, [2]int{1, 1}, false},
		{"3x3s2-same", Shape{3, 9, 8, 2}, [2]int{3, 3}, [2]int{2, 2}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := attrs{ksize: c.ks, strides: c.st, same: c.same}
			// Plan: 0 = MaxPool(x), 1 = MaxPoolGrad(dy, x, y=node 0).
			p := &plan{nodes: []pnode{
				{op: opMaxPool, a: a, succ: []int{1}},
				{op: opMaxPoolGrad, a: a, in: []int{3, 2, 0}},
			}}
			rs := &runState{p: p, argmax: make([][]int32, 2), argGen: make([]uint64, 2), gen: 1}
			k := &kctx{pool: newPool(1 << 20), r: rs}
			grad := func(k *kctx, x *Tensor) []float32 {
				var y, dx Tensor
				k.node = 0
				if err := kMaxPool(k, &p.nodes[0], []*Tensor{x}, &y); err != nil {
					t.Fatal(err)
				}
				dy := distinct(r, y.Shape)
				k.node = 1
				if err := kMaxPool(k, &p.nodes[1], []*Tensor{dy, x, &y}, &dx); err != nil {
					t.Fatal(err)
				}
				// The same gradient without the run state: the windows
				// are searched again.
				var dx2 Tensor
				if err := kMaxPool(&kctx{}, &p.nodes[1], []*Tensor{dy, x, &y}, &dx2); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(dx.F, dx2.F) {
					t.Fatalf("cached argmax gives %v, search gives %v", dx.F, dx2.F)
				}
				return dx.F
			}
			x := distinct(r, c.shape)
			grad(k, x)
			if rs.argGen[0] != rs.gen || len(rs.argmax[0]) == 0 {
				t.Fatal("the forward kernel recorded no argmax")
			}
			// A record of an earlier run is ignored: the next run's
			// gradient of another input is computed afresh.
			rs.gen++
			x2 := distinct(r, c.shape)
			var out Tensor
			k.node = 0
			if err := kMaxPool(k, &p.nodes[0], []*Tensor{x2}, &out); err != nil {
				t.Fatal(err)
			}
			rs.gen++ // as if node 0's record came from the run before
			dy := distinct(r, out.Shape)
			var got, want Tensor
			k.node = 1
			if err := kMaxPool(k, &p.nodes[1], []*Tensor{dy, x, &out}, &got); err != nil {
				t.Fatal(err)
			}
			var y1 Tensor
			if err := kMaxPool(&kctx{}, &p.nodes[0], []*Tensor{x}, &y1); err != nil {
				t.Fatal(err)
			}
			if err := kMaxPool(&kctx{}, &p.nodes[1], []*Tensor{dy, x, &y1}, &want); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.F, want.F) {
				t.Fatal("a stale argmax was used")
			}
			// Without a MaxPoolGrad consumer nothing is recorded.
			p.nodes[0].succ = nil
			rs.gen++
			k.node = 0
			if err := kMaxPool(k, &p.nodes[0], []*Tensor{x}, &out); err != nil {
				t.Fatal(err)
			}
			if rs.argGen[0] == rs.gen {
				t.Fatal("argmax recorded for a pool whose gradient the plan does not compute")
			}
		})
	}
}

// TestMaxPoolNaN: a NaN in a window is the window's maximum (it
// propagates) and receives the gradient.
func TestMaxPoolNaN(t *testing.T) {
	nan := float32(0)
	nan /= nan
	x, _ := NewTensor(Shape{1, 2, 2, 1}, []float32{1, nan, 3, 2})
	a := attrs{ksize: [2]int{2, 2}, strides: [2]int{2, 2}}
	var y Tensor
	if err := kMaxPool(&kctx{}, &pnode{op: opMaxPool, a: a}, []*Tensor{x}, &y); err != nil {
		t.Fatal(err)
	}
	if v := y.F[0]; v == v {
		t.Fatalf("max of a window holding NaN is %v", v)
	}
}

// TestMaxPoolReluGradFused: the plan fuses ReluGrad into the MaxPoolGrad
// of MaxPool(Relu(conv)), and the gradients equal those without fusion.
func TestMaxPoolReluGradFused(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 7, 6, 2})
	f := b.Variable("f", Shape{3, 3, 2, 4}, GlorotUniform(1))
	fb := b.Variable("fb", Shape{4}, UniformInit(-0.5, 0.5, 2))
	h := b.MaxPool(b.Relu(b.BiasAdd(b.Conv2D(x, f, [2]int{1, 1}, Same), fb)), [2]int{2, 2}, [2]int{2, 2}, Same)
	loss := b.Mean(b.Square(h), nil, false)
	grads := b.Gradients(loss, []*Node{f, fb})
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(ctx, g, SessionConfig{Store: NewMemStore(0)})
	if err != nil {
		t.Fatal(err)
	}
	args := RunArgs{Feeds: Feeds{x: randTensor(newRandSource(3).r, Shape{3, 7, 6, 2}, -1, 1)}, Fetches: grads}
	cp, err := s.plan(args)
	if err != nil {
		t.Fatal(err)
	}
	fusedGrad := 0
	for _, n := range cp.p.nodes {
		if n.op == opReluGrad {
			t.Fatalf("ReluGrad left in the plan: %v", cp.p.stats)
		}
		if n.op == opMaxPoolGrad && n.a.relu {
			fusedGrad++
		}
	}
	if fusedGrad != 1 {
		t.Fatalf("%d fused MaxPoolGrad nodes, want 1", fusedGrad)
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
			t.Errorf("gradient %d differs with fusion off: %v vs %v", i, on.Values[i].F, off.Values[i].F)
		}
	}
}
