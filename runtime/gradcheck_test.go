package runtime

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// gradCase describes one finite-difference gradient check: inputs are fed
// through placeholders, the op's output o is reduced to a scalar
// loss = sum(o * R) with a fixed random R, and the analytic gradients of
// loss with respect to each float input are compared with central
// differences.
type gradCase struct {
	name     string
	inputs   []*Tensor // float32 inputs (differentiated)
	ints     []*Tensor // integer inputs (not differentiated)
	build    func(b *Builder, xs, ints []*Node) *Node
	training bool
	eps      float32
	tol      float64
}

func randTensor(r *rand.Rand, shape Shape, lo, hi float32) *Tensor {
	n := shape.NumElements()
	d := make([]float32, n)
	for i := range d {
		d[i] = lo + (hi-lo)*r.Float32()
	}
	t, _ := NewTensor(shape, d)
	return t
}

// awayFromZero draws values with |v| in [0.1, 1].
func awayFromZero(r *rand.Rand, shape Shape) *Tensor {
	t := randTensor(r, shape, 0.1, 1)
	for i := range t.F {
		if r.IntN(2) == 0 {
			t.F[i] = -t.F[i]
		}
	}
	return t
}

// distinct fills a tensor with a shuffled ramp so maxima are unique and
// separated by more than the finite-difference step.
func distinct(r *rand.Rand, shape Shape) *Tensor {
	n := shape.NumElements()
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(i)*0.05 - float32(n)*0.025
	}
	r.Shuffle(n, func(i, j int) { d[i], d[j] = d[j], d[i] })
	t, _ := NewTensor(shape, d)
	return t
}

func ints(shape Shape, vals ...int64) *Tensor {
	t, err := NewIntTensor(Int64, shape, vals)
	if err != nil {
		panic(err)
	}
	return t
}

func runGradCase(t *testing.T, c gradCase) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 11))
	b := NewBuilder()
	var xs, is []*Node
	for i, in := range c.inputs {
		xs = append(xs, b.Placeholder("x"+string(rune('0'+i)), Float32, in.Shape))
	}
	for i, in := range c.ints {
		is = append(is, b.Placeholder("i"+string(rune('0'+i)), in.DType, in.Shape))
	}
	o := c.build(b, xs, is)
	if err := b.Err(); err != nil {
		t.Fatalf("%s: build: %v", c.name, err)
	}
	if !o.Shape().Known() {
		t.Fatalf("%s: output shape %v not known", c.name, o.Shape())
	}
	R := randTensor(r, o.Shape(), -1, 1)
	loss := b.Sum(b.Mul(o, b.Const(R)), nil, false)
	grads := b.Gradients(loss, xs)
	g, err := b.Build()
	if err != nil {
		t.Fatalf("%s: build gradients: %v", c.name, err)
	}
	for i, gr := range grads {
		if gr == nil {
			t.Fatalf("%s: no gradient for input %d", c.name, i)
		}
	}
	s, err := NewSession(context.Background(), g, SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	feeds := Feeds{}
	for i, x := range xs {
		feeds[x] = c.inputs[i]
	}
	for i, x := range is {
		feeds[x] = c.ints[i]
	}
	run := func(fetch []*Node) []*Tensor {
		res, err := s.Run(context.Background(), RunArgs{Step: 3, Training: c.training, Feeds: feeds, Fetches: fetch})
		if err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		return res.Values
	}
	analytic := run(grads)
	eps, tol := c.eps, c.tol
	if eps == 0 {
		eps = 1e-2
	}
	if tol == 0 {
		tol = 1e-2
	}
	for i, in := range c.inputs {
		ga := analytic[i]
		if ga.IsSparse() {
			t.Fatalf("%s: unexpected sparse gradient for a placeholder", c.name)
		}
		if !ga.Shape.Equal(in.Shape) {
			t.Fatalf("%s: gradient %d has shape %v, input %v", c.name, i, ga.Shape, in.Shape)
		}
		orig := in.F
		for j := range orig {
			p := append([]float32(nil), orig...)
			p[j] += eps
			in.F = p
			lp, _ := run([]*Node{loss})[0].Float()
			p[j] -= 2 * eps
			lm, _ := run([]*Node{loss})[0].Float()
			in.F = orig
			num := float64(lp-lm) / float64(2*eps)
			an := float64(ga.F[j])
			if math.Abs(num-an) > tol*math.Max(1, math.Abs(num)) {
				t.Errorf("%s: d loss/d x%d[%d]: analytic %.5f, numeric %.5f", c.name, i, j, an, num)
			}
		}
	}
}

func TestGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	f := func(s ...int) *Tensor { return randTensor(r, Shape(s), -1, 1) }
	pos := func(s ...int) *Tensor { return randTensor(r, Shape(s), 0.5, 2) }
	one := func(fn func(b *Builder, x *Node) *Node) func(b *Builder, xs, _ []*Node) *Node {
		return func(b *Builder, xs, _ []*Node) *Node { return fn(b, xs[0]) }
	}
	two := func(fn func(b *Builder, x, y *Node) *Node) func(b *Builder, xs, _ []*Node) *Node {
		return func(b *Builder, xs, _ []*Node) *Node { return fn(b, xs[0], xs[1]) }
	}
	cases := []gradCase{
		{name: "MatMul", inputs: []*Tensor{f(3, 4), f(4, 5)}, build: two(func(b *Builder, x, y *Node) *Node { return b.MatMul(x, y, false, false) })},
		{name: "MatMulTA", inputs: []*Tensor{f(4, 3), f(4, 5)}, build: two(func(b *Builder, x, y *Node) *Node { return b.MatMul(x, y, true, false) })},
		{name: "MatMulTB", inputs: []*Tensor{f(3, 4), f(5, 4)}, build: two(func(b *Builder, x, y *Node) *Node { return b.MatMul(x, y, false, true) })},
		{name: "MatMulTATB", inputs: []*Tensor{f(4, 3), f(5, 4)}, build: two(func(b *Builder, x, y *Node) *Node { return b.MatMul(x, y, true, true) })},
		{name: "Add", inputs: []*Tensor{f(3, 4), f(3, 4)}, build: two((*Builder).Add)},
		{name: "AddBroadcastRow", inputs: []*Tensor{f(3, 4), f(4)}, build: two((*Builder).Add)},
		{name: "SubBroadcastBoth", inputs: []*Tensor{f(3, 1), f(1, 4)}, build: two((*Builder).Sub)},
		{name: "MulBroadcast3D", inputs: []*Tensor{f(2, 3, 4), f(3, 1)}, build: two((*Builder).Mul)},
		{name: "MulScalar", inputs: []*Tensor{f(2, 3), f()}, build: two((*Builder).Mul)},
		{name: "Div", inputs: []*Tensor{f(3, 4), pos(3, 4)}, build: two((*Builder).Div)},
		{name: "DivBroadcast", inputs: []*Tensor{f(2, 3, 4), pos(4)}, build: two((*Builder).Div)},
		{name: "BiasAdd", inputs: []*Tensor{f(3, 4), f(4)}, build: two((*Builder).BiasAdd)},
		{name: "Relu", inputs: []*Tensor{awayFromZero(r, Shape{3, 5})}, build: one((*Builder).Relu)},
		{name: "Sigmoid", inputs: []*Tensor{f(3, 5)}, build: one((*Builder).Sigmoid)},
		{name: "Tanh", inputs: []*Tensor{f(3, 5)}, build: one((*Builder).Tanh)},
		{name: "Softmax", inputs: []*Tensor{f(3, 5)}, build: one((*Builder).Softmax)},
		{name: "LogSoftmax", inputs: []*Tensor{f(3, 5)}, build: one((*Builder).LogSoftmax)},
		{name: "SparseSoftmaxXent", inputs: []*Tensor{f(4, 5)}, ints: []*Tensor{ints(Shape{4}, 0, 4, 2, 2)},
			build: func(b *Builder, xs, is []*Node) *Node { return b.SparseSoftmaxCrossEntropyWithLogits(xs[0], is[0]) }},
		{name: "SigmoidXent", inputs: []*Tensor{f(3, 4), randTensor(r, Shape{3, 4}, 0, 1)}, build: two((*Builder).SigmoidCrossEntropyWithLogits)},
		{name: "SumAll", inputs: []*Tensor{f(3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Sum(x, nil, false) })},
		{name: "SumAxis0", inputs: []*Tensor{f(3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Sum(x, []int{0}, false) })},
		{name: "SumAxesKeep", inputs: []*Tensor{f(2, 3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Sum(x, []int{0, -1}, true) })},
		{name: "MeanAxis1", inputs: []*Tensor{f(2, 3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Mean(x, []int{1}, false) })},
		{name: "MeanAll", inputs: []*Tensor{f(2, 3)}, build: one(func(b *Builder, x *Node) *Node { return b.Mean(x, nil, false) })},
		{name: "Square", inputs: []*Tensor{f(3, 4)}, build: one((*Builder).Square)},
		{name: "Exp", inputs: []*Tensor{f(3, 4)}, build: one((*Builder).Exp)},
		{name: "Log", inputs: []*Tensor{pos(3, 4)}, build: one((*Builder).Log)},
		{name: "Neg", inputs: []*Tensor{f(3, 4)}, build: one((*Builder).Neg)},
		{name: "Reshape", inputs: []*Tensor{f(2, 3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Square(b.Reshape(x, Shape{-1, 4})) })},
		{name: "Transpose", inputs: []*Tensor{f(2, 3, 4)}, build: one(func(b *Builder, x *Node) *Node { return b.Transpose(x, []int{2, 0, 1}) })},
		{name: "Concat", inputs: []*Tensor{f(2, 3), f(2, 1), f(2, 2)}, build: func(b *Builder, xs, _ []*Node) *Node { return b.Concat(1, xs...) }},
		{name: "Gather", inputs: []*Tensor{f(5, 3)}, ints: []*Tensor{ints(Shape{2, 2}, 4, 0, 4, 2)},
			build: func(b *Builder, xs, is []*Node) *Node { return b.Gather(xs[0], is[0]) }},
		{name: "DropoutTraining", inputs: []*Tensor{f(4, 6)}, training: true, build: one(func(b *Builder, x *Node) *Node { return b.Dropout(x, 0.5, 9) })},
		{name: "Conv2DSame", inputs: []*Tensor{f(2, 5, 5, 2), f(3, 3, 2, 3)},
			build: two(func(b *Builder, x, w *Node) *Node { return b.Conv2D(x, w, [2]int{1, 1}, Same) })},
		{name: "Conv2DValidStride2", inputs: []*Tensor{f(2, 6, 5, 2), f(2, 3, 2, 2)},
			build: two(func(b *Builder, x, w *Node) *Node { return b.Conv2D(x, w, [2]int{2, 2}, Valid) })},
		{name: "Conv2DSameStride2", inputs: []*Tensor{f(1, 5, 6, 1), f(3, 3, 1, 2)},
			build: two(func(b *Builder, x, w *Node) *Node { return b.Conv2D(x, w, [2]int{2, 2}, Same) })},
		{name: "MaxPoolSame", inputs: []*Tensor{distinct(r, Shape{2, 5, 5, 2})},
			build: one(func(b *Builder, x *Node) *Node { return b.MaxPool(x, [2]int{2, 2}, [2]int{2, 2}, Same) })},
		{name: "MaxPoolValid", inputs: []*Tensor{distinct(r, Shape{1, 5, 4, 3})},
			build: one(func(b *Builder, x *Node) *Node { return b.MaxPool(x, [2]int{3, 3}, [2]int{1, 1}, Valid) })},
		{name: "DenseReluChain", inputs: []*Tensor{f(3, 4), f(4, 5), f(5)},
			build: func(b *Builder, xs, _ []*Node) *Node {
				// fused by the plan into FusedMatMul(relu) forward
				return b.Relu(b.BiasAdd(b.MatMul(xs[0], xs[1], false, false), xs[2]))
			}},
		{name: "ConvBiasReluChain", inputs: []*Tensor{awayFromZero(r, Shape{2, 4, 4, 2}), f(3, 3, 2, 3), f(3)},
			build: func(b *Builder, xs, _ []*Node) *Node {
				// fused by the plan into FusedConv2D(bias, relu) forward
				return b.Relu(b.BiasAdd(b.Conv2D(xs[0], xs[1], [2]int{1, 1}, Same), xs[2]))
			}, tol: 2e-2},
		{name: "ConvBias", inputs: []*Tensor{f(1, 5, 4, 2), f(2, 2, 2, 3), f(3)},
			build: func(b *Builder, xs, _ []*Node) *Node {
				return b.BiasAdd(b.Conv2D(xs[0], xs[1], [2]int{2, 1}, Valid), xs[2])
			}},
		{name: "SharedInput", inputs: []*Tensor{f(3, 3)},
			build: one(func(b *Builder, x *Node) *Node { return b.Mul(b.Tanh(x), b.MatMul(x, x, false, true)) })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCase(t, c) })
	}
}

type randSource struct{ r *rand.Rand }

func newRandSource(seed uint64) *randSource { return &randSource{rand.New(rand.NewPCG(seed, seed+1))} }
