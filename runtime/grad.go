package runtime

import "slices"

// gradFunc returns the gradient contribution for each input of n given dy,
// the gradient of the loss with respect to n's output (nil entries: no
// gradient for that input). need[i] says whether input i needs one.
type gradFunc func(b *Builder, n, dy *Node, need []bool) []*Node

var gradFuncs map[string]gradFunc

func init() {
	gradFuncs = map[string]gradFunc{
		opMatMul: gradMatMul,
		opAdd:    gradAddSub,
		opSub:    gradAddSub,
		opMul:    gradMul,
		opDiv:    gradDiv,
		opBiasAdd: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{dy, b.internal(opBiasAddGrad, n.inputs[1].shape, attrs{}, dy)}
		},
		opRelu: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opReluGrad, n.shape, attrs{}, dy, n)}
		},
		opSigmoid: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opSigmoidGrad, n.shape, attrs{}, dy, n)}
		},
		opTanh: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opTanhGrad, n.shape, attrs{}, dy, n)}
		},
		opSoftmax: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opSoftmaxGrad, n.shape, attrs{}, dy, n)}
		},
		opLogSoftmax: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opLogSoftmaxGrad, n.shape, attrs{}, dy, n)}
		},
		opSparseXent:  gradSparseXent,
		opSigmoidXent: gradSigmoidXent,
		opSum:         gradReduce,
		opMean:        gradReduce,
		opSquare: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.Mul(dy, b.Mul(n.inputs[0], b.Scalar(2)))}
		},
		opExp: func(b *Builder, n, dy *Node, _ []bool) []*Node { return []*Node{b.Mul(dy, n)} },
		opLog: func(b *Builder, n, dy *Node, _ []bool) []*Node { return []*Node{b.Div(dy, n.inputs[0])} },
		opNeg: func(b *Builder, n, dy *Node, _ []bool) []*Node { return []*Node{b.Neg(dy)} },
		opReshape: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opReshapeLike, n.inputs[0].shape, attrs{}, dy, n.inputs[0])}
		},
		opTranspose: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			inv := make([]int, len(n.a.perm))
			for i, p := range n.a.perm {
				inv[p] = i
			}
			return []*Node{b.Transpose(dy, inv)}
		},
		opConcat:  gradConcat,
		opGather:  gradGather,
		opDropout: func(b *Builder, n, dy *Node, _ []bool) []*Node { return []*Node{b.Dropout(dy, n.a.rate, n.a.seed)} },
		opConv2D: func(b *Builder, n, dy *Node, need []bool) []*Node {
			x, f := n.inputs[0], n.inputs[1]
			out := make([]*Node, 2)
			if need[0] {
				out[0] = b.internal(opConvInputGrad, x.shape, n.a, dy, x, f)
			}
			if need[1] {
				out[1] = b.internal(opConvFilterGrad, f.shape, n.a, dy, x, f)
			}
			return out
		},
		opMaxPool: func(b *Builder, n, dy *Node, _ []bool) []*Node {
			return []*Node{b.internal(opMaxPoolGrad, n.inputs[0].shape, n.a, dy, n.inputs[0], n)}
		},
		opCast:  func(b *Builder, n, dy *Node, _ []bool) []*Node { return []*Node{dy} },
		opAddN:  func(b *Builder, n, dy *Node, _ []bool) []*Node { return slices.Repeat([]*Node{dy}, len(n.inputs)) },
		opGroup: func(b *Builder, n, dy *Node, _ []bool) []*Node { return make([]*Node, len(n.inputs)) },
	}
}

// internal adds a node whose shape the caller computed (ops that only
// Gradients creates).
func (b *Builder) internal(op string, shape Shape, a attrs, in ...*Node) *Node {
	if !b.check(op, in...) {
		return inert
	}
	return b.add(op, in, shape.Clone(), Float32, a)
}

func gradMatMul(b *Builder, n, dy *Node, need []bool) []*Node {
	x, y := n.inputs[0], n.inputs[1]
	tA, tB := n.a.transA, n.a.transB
	var dx, dw *Node
	switch {
	case !tA && !tB:
		if need[0] {
			dx = b.MatMul(dy, y, false, true)
		}
		if need[1] {
			dw = b.MatMul(x, dy, true, false)
		}
	case tA && !tB:
		if need[0] {
			dx = b.MatMul(y, dy, false, true)
		}
		if need[1] {
			dw = b.MatMul(x, dy, false, false)
		}
	case !tA && tB:
		if need[0] {
			dx = b.MatMul(dy, y, false, false)
		}
		if need[1] {
			dw = b.MatMul(dy, x, true, false)
		}
	default:
		if need[0] {
			dx = b.MatMul(y, dy, true, true)
		}
		if need[1] {
			dw = b.MatMul(dy, x, true, true)
		}
	}
	return []*Node{dx, dw}
}

// reduceLike sums g down to x's shape where broadcasting widened x.
func reduceLike(b *Builder, g, x, other, out *Node) *Node {
	if x.shape.Equal(out.shape) && (x.shape.Known() || x.shape.Equal(other.shape)) {
		return g
	}
	return b.internal(opReduceLike, x.shape, attrs{}, g, x)
}

func gradAddSub(b *Builder, n, dy *Node, need []bool) []*Node {
	x, y := n.inputs[0], n.inputs[1]
	out := make([]*Node, 2)
	if need[0] {
		out[0] = reduceLike(b, dy, x, y, n)
	}
	if need[1] {
		g := dy
		if n.op == opSub {
			g = b.Neg(dy)
		}
		out[1] = reduceLike(b, g, y, x, n)
	}
	return out
}

func gradMul(b *Builder, n, dy *Node, need []bool) []*Node {
	x, y := n.inputs[0], n.inputs[1]
	out := make([]*Node, 2)
	if need[0] {
		out[0] = reduceLike(b, b.Mul(dy, y), x, y, n)
	}
	if need[1] {
		out[1] = reduceLike(b, b.Mul(dy, x), y, x, n)
	}
	return out
}

func gradDiv(b *Builder, n, dy *Node, need []bool) []*Node {
	x, y := n.inputs[0], n.inputs[1]
	out := make([]*Node, 2)
	if need[0] {
		out[0] = reduceLike(b, b.Div(dy, y), x, y, n)
	}
	if need[1] {
		out[1] = reduceLike(b, b.Neg(b.Mul(dy, b.Div(n, y))), y, x, n)
	}
	return out
}

func gradSparseXent(b *Builder, n, dy *Node, _ []bool) []*Node {
	logits, labels := n.inputs[0], n.inputs[1]
	return []*Node{b.internal(opSparseXentGrad, logits.shape, attrs{}, dy, logits, labels), nil}
}

func gradSigmoidXent(b *Builder, n, dy *Node, need []bool) []*Node {
	x, z := n.inputs[0], n.inputs[1]
	out := make([]*Node, 2)
	if need[0] {
		out[0] = b.internal(opSigmoidXGrad, x.shape, attrs{}, dy, x, z)
	}
	if need[1] {
		out[1] = b.Neg(b.Mul(dy, x))
	}
	return out
}

func gradReduce(b *Builder, n, dy *Node, _ []bool) []*Node {
	x := n.inputs[0]
	return []*Node{b.internal(opBroadcastLike, x.shape, attrs{axes: n.a.axes, keepDims: n.a.keepDims, mean: n.a.mean}, dy, x)}
}

func gradConcat(b *Builder, n, dy *Node, need []bool) []*Node {
	out := make([]*Node, len(n.inputs))
	for i, x := range n.inputs {
		if need[i] {
			in := append([]*Node{dy}, n.inputs...)
			out[i] = b.internal(opConcatSlice, x.shape, attrs{axis: n.a.axis, index: i}, in...)
		}
	}
	return out
}

func gradGather(b *Builder, n, dy *Node, need []bool) []*Node {
	params, idx := n.inputs[0], n.inputs[1]
	if !need[0] {
		return []*Node{nil, nil}
	}
	in := []*Node{dy, idx}
	if !params.shape.Known() {
		in = append(in, params)
	}
	g := b.internal(opGatherGrad, params.shape, attrs{}, in...)
	if params.op != opVariable {
		g = b.internal(opSparseToDense, params.shape, attrs{}, g, params)
	}
	return []*Node{g, nil}
}

// Gradients adds the backward graph of y with respect to xs (reverse-mode
// automatic differentiation) and returns one gradient node per x, with x's
// shape; nil where y does not depend on x. If y is not a scalar, the
// gradient is that of the sum of y's elements. The gradient of a Variable
// read through Gather is sparse (a set of rows; see Tensor). Only float32
// paths carry gradients; an op without a gradient (ArgMax, Equal, or a
// gradient op itself: no second derivatives) on a path from an x to y
// records ErrNotDifferentiable.
func (b *Builder) Gradients(y *Node, xs []*Node) []*Node {
	out := make([]*Node, len(xs))
	if !b.check("Gradients", append([]*Node{y}, xs...)...) {
		return out
	}
	if y.dtype != Float32 {
		b.fail(errorf(ErrDType, "Gradients: %s is %v, want float32", y.name, y.dtype))
		return out
	}
	// Nodes y depends on.
	anc := make([]bool, y.id+1)
	anc[y.id] = true
	for i := y.id; i >= 0; i-- {
		if anc[i] {
			for _, in := range b.nodes[i].inputs {
				anc[in.id] = true
			}
		}
	}
	// Nodes on a float path from some x to y.
	rel := make([]bool, y.id+1)
	for _, x := range xs {
		if x.id <= y.id && anc[x.id] && x.dtype == Float32 {
			rel[x.id] = true
		}
	}
	for i := 0; i <= y.id; i++ {
		n := b.nodes[i]
		if !anc[i] || rel[i] || n.dtype != Float32 {
			continue
		}
		for _, in := range n.inputs {
			if rel[in.id] {
				rel[i] = true
				break
			}
		}
	}
	if !rel[y.id] {
		return out
	}
	// Seed dy/dy = 1: a constant when y's shape is known (the plan folds
	// what follows from it), else OnesLike at run time.
	var seed *Node
	if y.shape.Known() && y.shape.NumElements() <= 1024 {
		ones := make([]float32, y.shape.NumElements())
		for i := range ones {
			ones[i] = 1
		}
		seed = b.Const(&Tensor{DType: Float32, Shape: y.shape.Clone(), F: ones})
	} else {
		seed = b.internal(opOnesLike, y.shape, attrs{}, y)
	}
	contrib := map[*Node][]*Node{y: {seed}}
	for i := y.id; i >= 0; i-- {
		n := b.nodes[i]
		cs := contrib[n]
		if !rel[i] || len(cs) == 0 || b.err != nil {
			continue
		}
		dy := sumGrads(b, n, cs)
		contrib[n] = []*Node{dy}
		need := make([]bool, len(n.inputs))
		any := false
		for j, in := range n.inputs {
			need[j] = rel[in.id]
			any = any || need[j]
		}
		if !any {
			continue
		}
		gf := gradFuncs[n.op]
		if gf == nil {
			b.fail(errorf(ErrNotDifferentiable, "Gradients: op %s (%s %v) has no gradient", n.op, n.name, n.shape))
			return out
		}
		gs := gf(b, n, dy, need)
		for j, in := range n.inputs {
			if need[j] && gs[j] != nil {
				contrib[in] = append(contrib[in], gs[j])
			}
		}
	}
	if b.err != nil {
		return out
	}
	for i, x := range xs {
		if cs := contrib[x]; len(cs) > 0 {
			out[i] = sumGrads(b, x, cs)
		}
	}
	return out
}

func sumGrads(b *Builder, n *Node, cs []*Node) *Node {
	if len(cs) == 1 {
		return cs[0]
	}
	return b.internal(opAddN, n.shape, attrs{}, cs...)
}
