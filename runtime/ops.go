package runtime

import (
	"fmt"
	"slices"
)

// Op type names.
const (
	opPlaceholder = "Placeholder"
	opConst       = "Const"
	opVariable    = "Variable"
	opMatMul      = "MatMul"
	opAdd         = "Add"
	opSub         = "Sub"
	opMul         = "Mul"
	opDiv         = "Div"
	opBiasAdd     = "BiasAdd"
	opRelu        = "Relu"
	opSigmoid     = "Sigmoid"
	opTanh        = "Tanh"
	opSoftmax     = "Softmax"
	opLogSoftmax  = "LogSoftmax"
	opSparseXent  = "SparseSoftmaxCrossEntropyWithLogits"
	opSigmoidXent = "SigmoidCrossEntropyWithLogits"
	opSum         = "Sum"
	opMean        = "Mean"
	opSquare      = "Square"
	opExp         = "Exp"
	opLog         = "Log"
	opNeg         = "Neg"
	opReshape     = "Reshape"
	opTranspose   = "Transpose"
	opConcat      = "Concat"
	opGather      = "Gather"
	opDropout     = "Dropout"
	opConv2D      = "Conv2D"
	opMaxPool     = "MaxPool"
	opArgMax      = "ArgMax"
	opCast        = "Cast"
	opEqual       = "Equal"
	opPush        = "Push"
	opGroup       = "Group"

	// Ops added by Gradients.
	opAddN           = "AddN"
	opOnesLike       = "OnesLike"
	opReduceLike     = "ReduceLike"  // sum dy down to the shape of input 1
	opReshapeLike    = "ReshapeLike" // reshape dy to the shape of input 1
	opBroadcastLike  = "BroadcastLike"
	opReluGrad       = "ReluGrad"
	opSigmoidGrad    = "SigmoidGrad"
	opTanhGrad       = "TanhGrad"
	opSoftmaxGrad    = "SoftmaxGrad"
	opLogSoftmaxGrad = "LogSoftmaxGrad"
	opSparseXentGrad = "SparseXentGrad"
	opSigmoidXGrad   = "SigmoidXentGrad"
	opBiasAddGrad    = "BiasAddGrad"
	opConcatSlice    = "ConcatSlice"
	opGatherGrad     = "GatherGrad"    // sparse rows
	opSparseToDense  = "SparseToDense" // densify a sparse tensor like input 1
	opConvInputGrad  = "Conv2DBackpropInput"
	opConvFilterGrad = "Conv2DBackpropFilter"
	opMaxPoolGrad    = "MaxPoolGrad"

	// Ops the plan introduces.
	opFusedMatMul = "FusedMatMul" // MatMul (+ bias) (+ relu)
	opFusedConv   = "FusedConv2D" // Conv2D + bias (+ relu)
	opBiasRelu    = "BiasAddRelu"
	opGatherVar   = "GatherVariable" // sparse pull of the rows Gather needs
)

// Placeholder declares an input fed at run time. Use -1 for dimensions
// known only then (the batch). Names must be unique.
func (b *Builder) Placeholder(name string, dtype DType, shape Shape) *Node {
	if b.err != nil {
		return inert
	}
	if dtype != Float32 && !dtype.isInt() {
		return b.fail(errorf(ErrDType, "Placeholder %s: dtype %v", name, dtype))
	}
	if name == "" || b.phs[name] != nil || b.vars[name] != nil {
		return b.fail(errorf(ErrInvalidArgument, "Placeholder %q: empty or duplicate name", name))
	}
	n := b.add(opPlaceholder, nil, shape.Clone(), dtype, attrs{})
	n.name = name
	b.phs[name] = n
	return n
}

// Const adds a constant. The tensor is copied.
func (b *Builder) Const(t *Tensor) *Node {
	if b.err != nil {
		return inert
	}
	if t == nil || t.IsSparse() || !t.Shape.Known() || t.Shape.NumElements() != t.Len() {
		return b.fail(errorf(ErrInvalidArgument, "Const: bad tensor %v", t))
	}
	c := t.Clone()
	return b.add(opConst, nil, c.Shape, c.DType, attrs{value: c})
}

// Scalar adds a float32 scalar constant.
func (b *Builder) Scalar(v float32) *Node { return b.Const(Scalar(v)) }

// Variable declares a float32 variable of a fully known shape (rank ≥ 1)
// whose values live in the session's VarStore. Names must be unique.
func (b *Builder) Variable(name string, shape Shape, init Initializer) *Node {
	if b.err != nil {
		return inert
	}
	if name == "" || b.phs[name] != nil || b.vars[name] != nil {
		return b.fail(errorf(ErrInvalidArgument, "Variable %q: empty or duplicate name", name))
	}
	if len(shape) == 0 || !shape.Known() || shape.NumElements() == 0 {
		return b.fail(errorf(ErrShape, "Variable %s: shape %v must be known, rank ≥ 1, non-empty", name, shape))
	}
	def := &VariableDef{Name: name, Shape: shape.Clone(), Init: init}
	n := b.add(opVariable, nil, def.Shape, Float32, attrs{varDef: def})
	n.name = name
	b.vars[name] = n
	return n
}

func (b *Builder) wantFloat(op string, ns ...*Node) bool {
	for _, n := range ns {
		if n.dtype != Float32 {
			b.fail(errorf(ErrDType, "%s: input %s is %v, want float32", op, n.name, n.dtype))
			return false
		}
	}
	return true
}

// MatMul multiplies two matrices: op(a)·op(b) where op transposes when the
// flag is set. Shapes [m,k]·[k,n] → [m,n].
func (b *Builder) MatMul(x, y *Node, transA, transB bool) *Node {
	if !b.check(opMatMul, x, y) || !b.wantFloat(opMatMul, x, y) {
		return inert
	}
	if x.shape.Rank() != 2 || y.shape.Rank() != 2 {
		return b.fail(errorf(ErrShape, "MatMul: want matrices, got %s %v and %s %v", x.name, x.shape, y.name, y.shape))
	}
	m, k1 := x.shape[0], x.shape[1]
	if transA {
		m, k1 = k1, m
	}
	k2, n := y.shape[0], y.shape[1]
	if transB {
		k2, n = n, k2
	}
	if k1 >= 0 && k2 >= 0 && k1 != k2 {
		return b.fail(errorf(ErrShape, "MatMul: inner dimensions differ: %s %v (transpose %v) and %s %v (transpose %v)", x.name, x.shape, transA, y.name, y.shape, transB))
	}
	return b.add(opMatMul, []*Node{x, y}, Shape{m, n}, Float32, attrs{transA: transA, transB: transB})
}

// broadcastShape applies numpy broadcasting rules at build time.
func broadcastShape(x, y Shape) (Shape, bool) {
	n := max(len(x), len(y))
	out := make(Shape, n)
	for i := 1; i <= n; i++ {
		a, c := 1, 1
		if i <= len(x) {
			a = x[len(x)-i]
		}
		if i <= len(y) {
			c = y[len(y)-i]
		}
		var d int
		switch {
		case a == c:
			d = a
		case a == 1:
			d = c
		case c == 1:
			d = a
		case a < 0:
			d = c
		case c < 0:
			d = a
		default:
			return nil, false
		}
		out[n-i] = d
	}
	return out, true
}

func (b *Builder) binary(op string, x, y *Node) *Node {
	if !b.check(op, x, y) || !b.wantFloat(op, x, y) {
		return inert
	}
	s, ok := broadcastShape(x.shape, y.shape)
	if !ok {
		return b.fail(errorf(ErrShape, "%s: cannot broadcast %s %v with %s %v", op, x.name, x.shape, y.name, y.shape))
	}
	return b.add(op, []*Node{x, y}, s, Float32, attrs{})
}

// Add returns x + y with numpy broadcasting.
func (b *Builder) Add(x, y *Node) *Node { return b.binary(opAdd, x, y) }

// Sub returns x - y with numpy broadcasting.
func (b *Builder) Sub(x, y *Node) *Node { return b.binary(opSub, x, y) }

// Mul returns x * y (element-wise) with numpy broadcasting.
func (b *Builder) Mul(x, y *Node) *Node { return b.binary(opMul, x, y) }

// Div returns x / y (element-wise) with numpy broadcasting.
func (b *Builder) Div(x, y *Node) *Node { return b.binary(opDiv, x, y) }

// BiasAdd adds a vector bias [c] along the last dimension of x [..., c].
func (b *Builder) BiasAdd(x, bias *Node) *Node {
	if !b.check(opBiasAdd, x, bias) || !b.wantFloat(opBiasAdd, x, bias) {
		return inert
	}
	if x.shape.Rank() < 1 || bias.shape.Rank() != 1 || !dimFits(x.shape[len(x.shape)-1], bias.shape[0]) {
		return b.fail(errorf(ErrShape, "BiasAdd: bias %s %v does not fit the last dimension of %s %v", bias.name, bias.shape, x.name, x.shape))
	}
	return b.add(opBiasAdd, []*Node{x, bias}, x.shape.Clone(), Float32, attrs{})
}

func dimFits(a, c int) bool { return a < 0 || c < 0 || a == c }

func (b *Builder) unary(op string, x *Node) *Node {
	if !b.check(op, x) || !b.wantFloat(op, x) {
		return inert
	}
	return b.add(op, []*Node{x}, x.shape.Clone(), Float32, attrs{})
}

// Relu returns max(x, 0).
func (b *Builder) Relu(x *Node) *Node { return b.unary(opRelu, x) }

// Sigmoid returns 1/(1+exp(-x)).
func (b *Builder) Sigmoid(x *Node) *Node { return b.unary(opSigmoid, x) }

// Tanh returns tanh(x).
func (b *Builder) Tanh(x *Node) *Node { return b.unary(opTanh, x) }

// Square returns x*x.
func (b *Builder) Square(x *Node) *Node { return b.unary(opSquare, x) }

// Exp returns e^x.
func (b *Builder) Exp(x *Node) *Node { return b.unary(opExp, x) }

// Log returns the natural logarithm of x.
func (b *Builder) Log(x *Node) *Node { return b.unary(opLog, x) }

// Neg returns -x.
func (b *Builder) Neg(x *Node) *Node { return b.unary(opNeg, x) }

// Softmax normalises the last dimension: exp(x)/sum(exp(x)).
func (b *Builder) Softmax(x *Node) *Node {
	if b.err == nil && x != nil && x.shape.Rank() < 1 {
		return b.fail(errorf(ErrShape, "Softmax: %s %v has no last dimension", x.name, x.shape))
	}
	return b.unary(opSoftmax, x)
}

// LogSoftmax returns x - log(sum(exp(x))) over the last dimension.
func (b *Builder) LogSoftmax(x *Node) *Node {
	if b.err == nil && x != nil && x.shape.Rank() < 1 {
		return b.fail(errorf(ErrShape, "LogSoftmax: %s %v has no last dimension", x.name, x.shape))
	}
	return b.unary(opLogSoftmax, x)
}

// SparseSoftmaxCrossEntropyWithLogits returns, per example, the cross
// entropy between softmax(logits) [n,c] and integer labels [n] in [0,c).
// The result has shape [n]; take Mean for a loss.
func (b *Builder) SparseSoftmaxCrossEntropyWithLogits(logits, labels *Node) *Node {
	op := opSparseXent
	if !b.check(op, logits, labels) || !b.wantFloat(op, logits) {
		return inert
	}
	if !labels.dtype.isInt() {
		return b.fail(errorf(ErrDType, "%s: labels %s are %v, want an integer type", op, labels.name, labels.dtype))
	}
	if logits.shape.Rank() != 2 || labels.shape.Rank() != 1 || !dimFits(logits.shape[0], labels.shape[0]) {
		return b.fail(errorf(ErrShape, "%s: logits %s %v want [n,c] and labels %s %v want [n]", op, logits.name, logits.shape, labels.name, labels.shape))
	}
	n := logits.shape[0]
	if n < 0 {
		n = labels.shape[0]
	}
	return b.add(op, []*Node{logits, labels}, Shape{n}, Float32, attrs{})
}

// SigmoidCrossEntropyWithLogits returns the element-wise logistic loss
// max(x,0) - x*z + log(1+exp(-|x|)) for logits x and float labels z of the
// same shape.
func (b *Builder) SigmoidCrossEntropyWithLogits(logits, labels *Node) *Node {
	op := opSigmoidXent
	if !b.check(op, logits, labels) || !b.wantFloat(op, logits, labels) {
		return inert
	}
	if !logits.shape.Compatible(labels.shape) {
		return b.fail(errorf(ErrShape, "%s: logits %s %v and labels %s %v differ", op, logits.name, logits.shape, labels.name, labels.shape))
	}
	return b.add(op, []*Node{logits, labels}, mergeShape(logits.shape, labels.shape), Float32, attrs{})
}

func mergeShape(x, y Shape) Shape {
	out := x.Clone()
	for i := range out {
		if out[i] < 0 {
			out[i] = y[i]
		}
	}
	return out
}

func normAxes(op string, x *Node, axes []int) ([]int, error) {
	r := x.shape.Rank()
	if axes == nil {
		out := make([]int, r)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	out := make([]int, 0, len(axes))
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || slices.Contains(out, a) {
			return nil, errorf(ErrInvalidArgument, "%s: bad or repeated axis in %v for %s %v", op, axes, x.name, x.shape)
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return out, nil
}

func reducedShape(s Shape, axes []int, keep bool) Shape {
	out := Shape{}
	for i, d := range s {
		if slices.Contains(axes, i) {
			if keep {
				out = append(out, 1)
			}
			continue
		}
		out = append(out, d)
	}
	return out
}

func (b *Builder) reduce(op string, x *Node, axes []int, keep bool) *Node {
	if !b.check(op, x) || !b.wantFloat(op, x) {
		return inert
	}
	ax, err := normAxes(op, x, axes)
	if err != nil {
		return b.fail(err)
	}
	return b.add(op, []*Node{x}, reducedShape(x.shape, ax, keep), Float32, attrs{axes: ax, keepDims: keep, mean: op == opMean})
}

// Sum adds x over the given axes (negative axes count from the end; nil
// means all axes). keepDims keeps reduced axes with size 1.
func (b *Builder) Sum(x *Node, axes []int, keepDims bool) *Node {
	return b.reduce(opSum, x, axes, keepDims)
}

// Mean averages x over the given axes (nil means all).
func (b *Builder) Mean(x *Node, axes []int, keepDims bool) *Node {
	return b.reduce(opMean, x, axes, keepDims)
}

// Reshape changes the shape; at most one dimension may be -1 and is then
// inferred from the element count at run time. Dimensions the input does
// not know (its batch) may also be carried through by writing -1.
func (b *Builder) Reshape(x *Node, shape Shape) *Node {
	if !b.check(opReshape, x) {
		return inert
	}
	unknown, prod := 0, 1
	for _, d := range shape {
		if d < -1 || d == 0 {
			return b.fail(errorf(ErrInvalidArgument, "Reshape: bad target %v for %s %v", shape, x.name, x.shape))
		}
		if d == -1 {
			unknown++
		} else {
			prod *= d
		}
	}
	if unknown > 1 {
		return b.fail(errorf(ErrShape, "Reshape: target %v for %s %v has more than one -1", shape, x.name, x.shape))
	}
	out := shape.Clone()
	if n := x.shape.NumElements(); n >= 0 {
		if unknown == 0 && n != prod || unknown == 1 && n%prod != 0 {
			return b.fail(errorf(ErrShape, "Reshape: %s %v (%d elements) cannot become %v", x.name, x.shape, n, shape))
		}
		if unknown == 1 {
			out[slices.Index(out, -1)] = n / prod
		}
	}
	return b.add(opReshape, []*Node{x}, out, x.dtype, attrs{shape: shape.Clone()})
}

// Transpose permutes the dimensions: output dimension i is input dimension
// perm[i].
func (b *Builder) Transpose(x *Node, perm []int) *Node {
	if !b.check(opTranspose, x) {
		return inert
	}
	if len(perm) != x.shape.Rank() {
		return b.fail(errorf(ErrShape, "Transpose: perm %v does not fit %s %v", perm, x.name, x.shape))
	}
	seen := make([]bool, len(perm))
	out := make(Shape, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			return b.fail(errorf(ErrInvalidArgument, "Transpose: perm %v is not a permutation for %s %v", perm, x.name, x.shape))
		}
		seen[p] = true
		out[i] = x.shape[p]
	}
	return b.add(opTranspose, []*Node{x}, out, x.dtype, attrs{perm: slices.Clone(perm)})
}

// Concat joins tensors along axis; all other dimensions must agree.
func (b *Builder) Concat(axis int, xs ...*Node) *Node {
	if len(xs) == 0 {
		return b.fail(errorf(ErrInvalidArgument, "Concat: no inputs"))
	}
	if !b.check(opConcat, xs...) {
		return inert
	}
	r := xs[0].shape.Rank()
	if axis < 0 {
		axis += r
	}
	if axis < 0 || axis >= r {
		return b.fail(errorf(ErrInvalidArgument, "Concat: axis out of range for %s %v", xs[0].name, xs[0].shape))
	}
	out := xs[0].shape.Clone()
	for _, x := range xs[1:] {
		if x.dtype != xs[0].dtype {
			return b.fail(errorf(ErrDType, "Concat: %s is %v, %s is %v", xs[0].name, xs[0].dtype, x.name, x.dtype))
		}
		if x.shape.Rank() != r {
			return b.fail(errorf(ErrShape, "Concat: %s %v and %s %v differ in rank", xs[0].name, xs[0].shape, x.name, x.shape))
		}
		for i := range out {
			if i == axis {
				if out[i] < 0 || x.shape[i] < 0 {
					out[i] = -1
				} else {
					out[i] += x.shape[i]
				}
			} else if !dimFits(out[i], x.shape[i]) {
				return b.fail(errorf(ErrShape, "Concat: %s %v and %s %v differ off axis %d", xs[0].name, xs[0].shape, x.name, x.shape, axis))
			} else if out[i] < 0 {
				out[i] = x.shape[i]
			}
		}
	}
	return b.add(opConcat, slices.Clone(xs), out, xs[0].dtype, attrs{axis: axis})
}

// Gather looks up rows of params [rows, ...] by integer indices of any
// shape: the result has shape indices.shape + params.shape[1:]. When params
// is a Variable read only through Gather, the session pulls just the rows
// a step needs and pushes a sparse gradient.
func (b *Builder) Gather(params, indices *Node) *Node {
	if !b.check(opGather, params, indices) || !b.wantFloat(opGather, params) {
		return inert
	}
	if !indices.dtype.isInt() {
		return b.fail(errorf(ErrDType, "Gather: indices %s are %v, want an integer type", indices.name, indices.dtype))
	}
	if params.shape.Rank() < 1 {
		return b.fail(errorf(ErrShape, "Gather: params %s %v must have rank ≥ 1 (indices %s %v)", params.name, params.shape, indices.name, indices.shape))
	}
	out := append(indices.shape.Clone(), params.shape[1:]...)
	return b.add(opGather, []*Node{params, indices}, out, Float32, attrs{})
}

// Dropout zeroes each element with probability rate and scales the rest by
// 1/(1-rate) in training runs (RunArgs.Training); in other runs it passes
// x through. The mask is a pure function of (seed, step, element index), so
// runs are reproducible.
func (b *Builder) Dropout(x *Node, rate float32, seed int64) *Node {
	if !b.check(opDropout, x) || !b.wantFloat(opDropout, x) {
		return inert
	}
	if !(rate >= 0 && rate < 1) {
		return b.fail(errorf(ErrInvalidArgument, "Dropout: rate %v not in [0,1) for %s %v", rate, x.name, x.shape))
	}
	return b.add(opDropout, []*Node{x}, x.shape.Clone(), Float32, attrs{rate: rate, seed: seed})
}

// Padding names a convolution/pooling padding scheme.
type Padding string

// The paddings: SAME pads so that out = ceil(in/stride); VALID does not pad.
const (
	Same  Padding = "SAME"
	Valid Padding = "VALID"
)

func convOut(in, k, s int, same bool) int {
	if in < 0 {
		return -1
	}
	if same {
		return (in + s - 1) / s
	}
	if in < k {
		return 0
	}
	return (in-k)/s + 1
}

func (b *Builder) padding(op string, p Padding) (bool, bool) {
	switch p {
	case Same:
		return true, true
	case Valid:
		return false, true
	}
	b.fail(errorf(ErrInvalidArgument, "%s: padding %q, want SAME or VALID", op, p))
	return false, false
}

// Conv2D convolves x [n,h,w,cin] (NHWC) with filter [kh,kw,cin,cout]
// using strides [sh,sw]; result [n,oh,ow,cout].
func (b *Builder) Conv2D(x, filter *Node, strides [2]int, padding Padding) *Node {
	if !b.check(opConv2D, x, filter) || !b.wantFloat(opConv2D, x, filter) {
		return inert
	}
	same, ok := b.padding(opConv2D, padding)
	if !ok {
		return inert
	}
	if x.shape.Rank() != 4 || filter.shape.Rank() != 4 || !dimFits(x.shape[3], filter.shape[2]) || filter.shape[0] <= 0 || filter.shape[1] <= 0 {
		return b.fail(errorf(ErrShape, "Conv2D: input %s %v [n,h,w,cin] does not fit filter %s %v [kh,kw,cin,cout]", x.name, x.shape, filter.name, filter.shape))
	}
	if strides[0] < 1 || strides[1] < 1 {
		return b.fail(errorf(ErrInvalidArgument, "Conv2D: strides %v", strides))
	}
	oh := convOut(x.shape[1], filter.shape[0], strides[0], same)
	ow := convOut(x.shape[2], filter.shape[1], strides[1], same)
	if oh == 0 || ow == 0 {
		return b.fail(errorf(ErrShape, "Conv2D: input %s %v smaller than filter %s %v with VALID padding", x.name, x.shape, filter.name, filter.shape))
	}
	return b.add(opConv2D, []*Node{x, filter}, Shape{x.shape[0], oh, ow, filter.shape[3]}, Float32,
		attrs{strides: strides, same: same})
}

// MaxPool takes the maximum over windows ksize [kh,kw] of x [n,h,w,c]
// moved by strides; result [n,oh,ow,c].
func (b *Builder) MaxPool(x *Node, ksize, strides [2]int, padding Padding) *Node {
	if !b.check(opMaxPool, x) || !b.wantFloat(opMaxPool, x) {
		return inert
	}
	same, ok := b.padding(opMaxPool, padding)
	if !ok {
		return inert
	}
	if x.shape.Rank() != 4 {
		return b.fail(errorf(ErrShape, "MaxPool: input %s %v want [n,h,w,c], window %v", x.name, x.shape, ksize))
	}
	if strides[0] < 1 || strides[1] < 1 || ksize[0] < 1 || ksize[1] < 1 {
		return b.fail(errorf(ErrInvalidArgument, "MaxPool: ksize %v strides %v", ksize, strides))
	}
	oh := convOut(x.shape[1], ksize[0], strides[0], same)
	ow := convOut(x.shape[2], ksize[1], strides[1], same)
	if oh == 0 || ow == 0 {
		return b.fail(errorf(ErrShape, "MaxPool: input %s %v smaller than window %v", x.name, x.shape, ksize))
	}
	return b.add(opMaxPool, []*Node{x}, Shape{x.shape[0], oh, ow, x.shape[3]}, Float32,
		attrs{ksize: ksize, strides: strides, same: same})
}

// ArgMax returns the int64 index of the largest element along axis.
func (b *Builder) ArgMax(x *Node, axis int) *Node {
	if !b.check(opArgMax, x) || !b.wantFloat(opArgMax, x) {
		return inert
	}
	ax, err := normAxes(opArgMax, x, []int{axis})
	if err != nil {
		return b.fail(err)
	}
	return b.add(opArgMax, []*Node{x}, reducedShape(x.shape, ax, false), Int64, attrs{axis: ax[0]})
}

// Cast converts to dtype (float to int truncates toward zero).
func (b *Builder) Cast(x *Node, dtype DType) *Node {
	if !b.check(opCast, x) {
		return inert
	}
	if dtype != Float32 && !dtype.isInt() {
		return b.fail(errorf(ErrDType, "Cast: %s to %v", x.name, dtype))
	}
	if x.dtype == dtype {
		return x
	}
	return b.add(opCast, []*Node{x}, x.shape.Clone(), dtype, attrs{dtype: dtype})
}

// Equal compares two tensors of the same shape and type element-wise and
// returns float32 1 where they are equal, 0 elsewhere.
func (b *Builder) Equal(x, y *Node) *Node {
	if !b.check(opEqual, x, y) {
		return inert
	}
	if x.dtype.isInt() != y.dtype.isInt() {
		return b.fail(errorf(ErrDType, "Equal: %s is %v, %s is %v", x.name, x.dtype, y.name, y.dtype))
	}
	if !x.shape.Compatible(y.shape) {
		return b.fail(errorf(ErrShape, "Equal: %s %v and %s %v differ", x.name, x.shape, y.name, y.shape))
	}
	return b.add(opEqual, []*Node{x, y}, mergeShape(x.shape, y.shape), Float32, attrs{})
}

// Accuracy is the fraction of rows of logits [n,c] whose arg-max equals the
// integer label [n]: Mean(Equal(ArgMax(logits,1), labels)).
func (b *Builder) Accuracy(logits, labels *Node) *Node {
	if !b.check("Accuracy", logits, labels) {
		return inert
	}
	if !labels.dtype.isInt() {
		return b.fail(errorf(ErrDType, "Accuracy: labels %s are %v, want an integer type", labels.name, labels.dtype))
	}
	return b.Mean(b.Equal(b.ArgMax(logits, 1), labels), nil, false)
}

// Push adds a target that sends grad as variable v's gradient to the
// VarStore. The session starts the push as soon as grad is computed. grad
// may be dense (v's shape) or sparse (from Gather).
func (b *Builder) Push(v, grad *Node) *Node {
	if !b.check(opPush, v, grad) {
		return inert
	}
	if v.op != opVariable {
		return b.fail(errorf(ErrInvalidArgument, "Push: %v is not a variable", v))
	}
	if grad.dtype != Float32 {
		return b.fail(errorf(ErrDType, "Push: gradient %s of %s is %v", grad.name, v.name, grad.dtype))
	}
	if grad.op != opGatherGrad && !v.shape.Compatible(grad.shape) {
		return b.fail(errorf(ErrShape, "Push: gradient %s %v does not fit variable %s %v", grad.name, grad.shape, v.name, v.shape))
	}
	n := b.add(opPush, []*Node{v, grad}, nil, Float32, attrs{})
	n.name = "push/" + v.name
	return n
}

// Group returns a target that completes when all of deps have run.
func (b *Builder) Group(deps ...*Node) *Node {
	if !b.check(opGroup, deps...) {
		return inert
	}
	return b.add(opGroup, slices.Clone(deps), nil, Float32, attrs{})
}

// Minimize adds the gradients of loss with respect to vars (nil: every
// variable added so far) and a Push for each, and returns a Group of the
// pushes: run it as a target to take one training step.
func (b *Builder) Minimize(loss *Node, vars []*Node) *Node {
	if b.err != nil {
		return inert
	}
	if vars == nil {
		for _, n := range b.nodes {
			if n.op == opVariable {
				vars = append(vars, n)
			}
		}
	}
	grads := b.Gradients(loss, vars)
	if b.err != nil {
		return inert
	}
	var pushes []*Node
	for i, v := range vars {
		if grads[i] == nil {
			return b.fail(errorf(ErrNotDifferentiable, "Minimize: loss %s does not depend on variable %s", loss.name, v.name))
		}
		pushes = append(pushes, b.Push(v, grads[i]))
	}
	return b.Group(pushes...)
}

// String renders a node list for error messages.
func nodeNames(ns []*Node) string {
	s := "["
	for i, n := range ns {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(n)
	}
	return s + "]"
}
