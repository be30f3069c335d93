package runtime

import (
	"context"
	"math"
	"slices"
	"testing"
)

// eval builds a graph with build, feeds the given tensors to placeholders
// named p0, p1, ... and returns the single fetched value.
func eval(t *testing.T, feeds []*Tensor, build func(b *Builder, ps []*Node) *Node) *Tensor {
	t.Helper()
	b := NewBuilder()
	var ps []*Node
	fd := Feeds{}
	for i, f := range feeds {
		p := b.Placeholder("p"+string(rune('0'+i)), f.DType, f.Shape)
		ps = append(ps, p)
		fd[p] = f
	}
	out := build(b, ps)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(context.Background(), g, SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), RunArgs{Feeds: fd, Fetches: []*Node{out}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Values[0]
}

func tensor(shape Shape, vals ...float32) *Tensor {
	t, err := NewTensor(shape, vals)
	if err != nil {
		panic(err)
	}
	return t
}

func TestConv2DMatchesDirect(t *testing.T) {
	r := newRandSource(4).r
	for _, tc := range []struct {
		x, f    Shape
		st      [2]int
		padding Padding
	}{
		{Shape{2, 7, 6, 3}, Shape{3, 3, 3, 4}, [2]int{1, 1}, Same},
		{Shape{1, 7, 6, 2}, Shape{2, 4, 2, 3}, [2]int{2, 3}, Same},
		{Shape{2, 7, 6, 2}, Shape{3, 2, 2, 2}, [2]int{2, 1}, Valid},
	} {
		x, f := randTensor(r, tc.x, -1, 1), randTensor(r, tc.f, -1, 1)
		got := eval(t, []*Tensor{x, f}, func(b *Builder, ps []*Node) *Node { return b.Conv2D(ps[0], ps[1], tc.st, tc.padding) })
		g, _ := newGeom(tc.x, tc.f[0], tc.f[1], tc.st, tc.padding == Same)
		co := tc.f[3]
		if !got.Shape.Equal(Shape{g.n, g.oh, g.ow, co}) {
			t.Fatalf("%v: shape %v", tc, got.Shape)
		}
		for b := 0; b < g.n; b++ {
			for oy := 0; oy < g.oh; oy++ {
				for ox := 0; ox < g.ow; ox++ {
					for o := 0; o < co; o++ {
						var s float64
						for ky := 0; ky < g.kh; ky++ {
							for kx := 0; kx < g.kw; kx++ {
								iy, ix := oy*g.sh-g.padTop+ky, ox*g.sw-g.padLft+kx
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								for c := 0; c < g.c; c++ {
									s += float64(x.F[((b*g.h+iy)*g.w+ix)*g.c+c]) * float64(f.F[((ky*g.kw+kx)*g.c+c)*co+o])
								}
							}
						}
						v := got.F[((b*g.oh+oy)*g.ow+ox)*co+o]
						if math.Abs(float64(v)-s) > 1e-4 {
							t.Fatalf("%v: out[%d,%d,%d,%d] = %v, want %v", tc, b, oy, ox, o, v, s)
						}
					}
				}
			}
		}
	}
	// TensorFlow's SAME padding puts the extra pad at the bottom/right:
	// a 4-wide input, window 2, stride 2 needs no padding; 5-wide pads 1
	// on the right.
	if g, _ := newGeom(Shape{1, 5, 5, 1}, 2, 2, [2]int{2, 2}, true); g.oh != 3 || g.padTop != 0 {
		t.Fatalf("geometry %+v", g)
	}
}

func TestForwardValues(t *testing.T) {
	x := tensor(Shape{2, 3}, 1, 5, 3, 9, 2, 2)
	checkF := func(name string, got *Tensor, shape Shape, want ...float32) {
		t.Helper()
		if !got.Shape.Equal(shape) || !allClose(got.F, want, 1e-5) {
			t.Errorf("%s = %v, want %v %v", name, got, shape, want)
		}
	}
	checkF("MatMulTB", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.MatMul(p[0], p[0], false, true) }),
		Shape{2, 2}, 35, 25, 25, 89)
	checkF("SumAxis1Keep", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.Sum(p[0], []int{1}, true) }),
		Shape{2, 1}, 9, 13)
	checkF("MeanAxis0", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.Mean(p[0], []int{0}, false) }),
		Shape{3}, 5, 3.5, 2.5)
	checkF("Transpose", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.Transpose(p[0], []int{1, 0}) }),
		Shape{3, 2}, 1, 9, 5, 2, 3, 2)
	checkF("Concat0", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.Concat(0, p[0], p[0]) }),
		Shape{4, 3}, 1, 5, 3, 9, 2, 2, 1, 5, 3, 9, 2, 2)
	checkF("SubBroadcast", eval(t, []*Tensor{x, tensor(Shape{2, 1}, 1, 2)}, func(b *Builder, p []*Node) *Node { return b.Sub(p[0], p[1]) }),
		Shape{2, 3}, 0, 4, 2, 7, 0, 0)
	checkF("Equal+Cast", eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node {
		return b.Equal(b.ArgMax(p[0], 1), b.Cast(b.Const(tensor(Shape{2}, 1, 1)), Int64))
	}), Shape{2}, 1, 0)
	checkF("Accuracy", eval(t, []*Tensor{x, ints(Shape{2}, 1, 0)}, func(b *Builder, p []*Node) *Node { return b.Accuracy(p[0], p[1]) }),
		Shape{}, 1)
	checkF("Gather", eval(t, []*Tensor{x, ints(Shape{3}, 1, 1, 0)}, func(b *Builder, p []*Node) *Node { return b.Gather(p[0], p[1]) }),
		Shape{3, 3}, 9, 2, 2, 9, 2, 2, 1, 5, 3)
	sm := eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.Softmax(p[0]) })
	lsm := eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.LogSoftmax(p[0]) })
	for i := 0; i < 2; i++ {
		var s float32
		for j := 0; j < 3; j++ {
			s += sm.F[i*3+j]
			if d := math.Abs(math.Log(float64(sm.F[i*3+j])) - float64(lsm.F[i*3+j])); d > 1e-5 {
				t.Errorf("log(softmax) != logsoftmax: %v", d)
			}
		}
		if math.Abs(float64(s)-1) > 1e-6 {
			t.Errorf("softmax row %d sums to %v", i, s)
		}
	}
	xe := eval(t, []*Tensor{x, ints(Shape{2}, 1, 0)}, func(b *Builder, p []*Node) *Node { return b.SparseSoftmaxCrossEntropyWithLogits(p[0], p[1]) })
	checkF("SparseXent", xe, Shape{2}, -lsm.F[1], -lsm.F[3])
	mp := eval(t, []*Tensor{tensor(Shape{1, 3, 3, 1}, 1, 2, 3, 4, 9, 6, 7, 8, 5)}, func(b *Builder, p []*Node) *Node {
		return b.MaxPool(p[0], [2]int{2, 2}, [2]int{2, 2}, Same)
	})
	checkF("MaxPoolSame", mp, Shape{1, 2, 2, 1}, 9, 6, 8, 5)
	am := eval(t, []*Tensor{x}, func(b *Builder, p []*Node) *Node { return b.ArgMax(p[0], 0) })
	if am.DType != Int64 || !slices.Equal(am.I, []int64{1, 0, 0}) {
		t.Errorf("ArgMax axis 0 = %v", am)
	}
	ci := eval(t, []*Tensor{tensor(Shape{3}, 1.7, -2.5, 3)}, func(b *Builder, p []*Node) *Node { return b.Cast(p[0], Int32) })
	if ci.DType != Int32 || !slices.Equal(ci.I, []int64{1, -2, 3}) {
		t.Errorf("Cast to int32 = %v", ci)
	}
	sx := eval(t, []*Tensor{tensor(Shape{2}, 0, 100), tensor(Shape{2}, 1, 0)}, (func(b *Builder, p []*Node) *Node { return b.SigmoidCrossEntropyWithLogits(p[0], p[1]) }))
	checkF("SigmoidXent", sx, Shape{2}, float32(math.Log(2)), 100)
}
