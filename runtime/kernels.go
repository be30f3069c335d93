package runtime

import (
	"math"
	"slices"

	"github.com/flowps/flowps/runtime/blas"
)

// kernelFunc computes node n from its inputs into out. out's Shape slice
// may be reused (append to out.Shape[:0]); buffers come from k.floats.
type kernelFunc func(k *kctx, n *pnode, in []*Tensor, out *Tensor) error

var kernels map[string]kernelFunc

func init() {
	kernels = map[string]kernelFunc{
		opMatMul:         kMatMul,
		opFusedMatMul:    kMatMul,
		opAdd:            kBinary,
		opSub:            kBinary,
		opMul:            kBinary,
		opDiv:            kBinary,
		opBiasAdd:        kBiasAdd,
		opBiasRelu:       kBiasAdd,
		opRelu:           kUnary,
		opSigmoid:        kUnary,
		opTanh:           kUnary,
		opSquare:         kUnary,
		opExp:            kUnary,
		opLog:            kUnary,
		opNeg:            kUnary,
		opSoftmax:        kSoftmax,
		opLogSoftmax:     kSoftmax,
		opSparseXent:     kSparseXent,
		opSparseXentGrad: kSparseXentGrad,
		opSigmoidXent:    kSigmoidXent,
		opSigmoidXGrad:   kSigmoidXent,
		opSum:            kReduce,
		opMean:           kReduce,
		opReshape:        kReshape,
		opReshapeLike:    kReshape,
		opIdentity:       kReshape,
		opTranspose:      kTranspose,
		opConcat:         kConcat,
		opConcatSlice:    kConcatSlice,
		opGather:         kGather,
		opGatherGrad:     kGatherGrad,
		opSparseToDense:  kSparseToDense,
		opDropout:        kDropout,
		opConv2D:         kConv2D,
		opFusedConv:      kConv2D,
		opConvInputGrad:  kConvInputGrad,
		opConvFilterGrad: kConvFilterGrad,
		opMaxPool:        kMaxPool,
		opMaxPoolGrad:    kMaxPool,
		opArgMax:         kArgMax,
		opCast:           kCast,
		opEqual:          kEqual,
		opAddN:           kAddN,
		opOnesLike:       kOnesLike,
		opReduceLike:     kReduceLike,
		opBroadcastLike:  kBroadcastLike,
		opReluGrad:       kActGrad,
		opSigmoidGrad:    kActGrad,
		opTanhGrad:       kActGrad,
		opSoftmaxGrad:    kSoftmaxGrad,
		opLogSoftmaxGrad: kSoftmaxGrad,
		opBiasAddGrad:    kBiasAddGrad,
	}
}

// alloc sets out to a float32 tensor of shape dims with a pooled buffer.
func (k *kctx) alloc(out *Tensor, dims ...int) []float32 {
	out.DType = Float32
	out.Shape = append(out.Shape[:0], dims...)
	out.I, out.Rows, out.DenseShape = nil, nil, nil
	n := 1
	for _, d := range dims {
		n *= d
	}
	out.F = k.floats(n)
	return out.F
}

func wantF(t *Tensor, what string) error {
	if t.DType != Float32 || t.IsSparse() {
		return errorf(ErrDType, "%s is %v (sparse %v), want dense float32", what, t.DType, t.IsSparse())
	}
	return nil
}

func kMatMul(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	a, b := in[0], in[1]
	if err := wantF(a, "a"); err != nil {
		return err
	}
	if err := wantF(b, "b"); err != nil {
		return err
	}
	if a.Shape.Rank() != 2 || b.Shape.Rank() != 2 {
		return errorf(ErrShape, "operands %v and %v are not matrices", a.Shape, b.Shape)
	}
	m, ka := a.Shape[0], a.Shape[1]
	if n.a.transA {
		m, ka = ka, m
	}
	kb, nn := b.Shape[0], b.Shape[1]
	if n.a.transB {
		kb, nn = nn, kb
	}
	if ka != kb {
		return errorf(ErrShape, "inner dimensions differ: %v (transpose %v) and %v (transpose %v)", a.Shape, n.a.transA, b.Shape, n.a.transB)
	}
	c := k.alloc(out, m, nn)
	beta := float32(0)
	if n.a.bias {
		bias := in[2]
		if err := wantF(bias, "bias"); err != nil {
			return err
		}
		if len(bias.F) != nn {
			return errorf(ErrShape, "bias %v does not fit output [%d,%d]", bias.Shape, m, nn)
		}
		for r := 0; r < m; r++ {
			copy(c[r*nn:(r+1)*nn], bias.F)
		}
		beta = 1
	}
	blas.Sgemm(n.a.transA, n.a.transB, m, nn, ka, 1, a.F, max(1, a.Shape[1]), b.F, max(1, b.Shape[1]), beta, c, max(1, nn))
	if n.a.relu {
		relu(c)
	}
	return nil
}

// relu clamps negatives to zero in place. It is branch-free: with random
// signs a branch mispredicts half the time, which made this loop cost as
// much as a small matrix product.
func relu(c []float32) {
	for i, v := range c {
		u := math.Float32bits(v)
		c[i] = math.Float32frombits(u &^ uint32(int32(u)>>31))
	}
}

func kBiasAdd(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x, b := in[0], in[1]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	if x.Shape.Rank() < 1 || len(b.F) != x.Shape[len(x.Shape)-1] {
		return errorf(ErrShape, "bias %v does not fit the last dimension of %v", b.Shape, x.Shape)
	}
	o := k.alloc(out, x.Shape...)
	c := len(b.F)
	if c == 0 {
		return nil
	}
	for r := 0; r < len(x.F); r += c {
		xr, orow := x.F[r:r+c], o[r:r+c]
		for j, bv := range b.F {
			orow[j] = xr[j] + bv
		}
		if n.op == opBiasRelu {
			relu(orow)
		}
	}
	return nil
}

func kUnary(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	o := k.alloc(out, x.Shape...)
	xs := x.F[:len(o)]
	switch n.op {
	case opRelu:
		copy(o, xs)
		relu(o)
	case opSigmoid:
		for i, v := range xs {
			o[i] = sigmoid(v)
		}
	case opTanh:
		for i, v := range xs {
			o[i] = float32(math.Tanh(float64(v)))
		}
	case opSquare:
		for i, v := range xs {
			o[i] = v * v
		}
	case opExp:
		for i, v := range xs {
			o[i] = float32(math.Exp(float64(v)))
		}
	case opLog:
		for i, v := range xs {
			o[i] = float32(math.Log(float64(v)))
		}
	case opNeg:
		for i, v := range xs {
			o[i] = -v
		}
	}
	return nil
}

func sigmoid(v float32) float32 {
	if v >= 0 {
		return 1 / (1 + float32(math.Exp(-float64(v))))
	}
	e := float32(math.Exp(float64(v)))
	return e / (1 + e)
}

func kActGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, y := in[0], in[1]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	if !dy.Shape.Equal(y.Shape) {
		return errorf(ErrShape, "gradient %v and output %v differ", dy.Shape, y.Shape)
	}
	o := k.alloc(out, y.Shape...)
	g, ys := dy.F[:len(o)], y.F[:len(o)]
	switch n.op {
	case opReluGrad:
		// Branch-free: keep g where y > 0 (positive float bits are
		// positive int32s; -bits>>31 is then all ones).
		for i, v := range ys {
			m := uint32(-int32(math.Float32bits(v)) >> 31)
			o[i] = math.Float32frombits(math.Float32bits(g[i]) & m)
		}
	case opSigmoidGrad:
		for i, v := range ys {
			o[i] = g[i] * v * (1 - v)
		}
	case opTanhGrad:
		for i, v := range ys {
			o[i] = g[i] * (1 - v*v)
		}
	}
	return nil
}

// rows splits a tensor's shape into (rows, last dimension).
func rowsOf(s Shape) (int, int) {
	if len(s) == 0 {
		return 1, 1
	}
	c := s[len(s)-1]
	if c == 0 {
		return 0, 0
	}
	return s.NumElements() / c, c
}

func kSoftmax(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	o := k.alloc(out, x.Shape...)
	r, c := rowsOf(x.Shape)
	for i := 0; i < r; i++ {
		xr, orow := x.F[i*c:(i+1)*c], o[i*c:(i+1)*c]
		m := xr[0]
		for _, v := range xr {
			m = max(m, v)
		}
		var s float64
		for j, v := range xr {
			e := math.Exp(float64(v - m))
			s += e
			orow[j] = float32(e)
		}
		if n.op == opSoftmax {
			inv := float32(1 / s)
			for j := range orow {
				orow[j] *= inv
			}
		} else {
			ls := float32(math.Log(s)) + m
			for j, v := range xr {
				orow[j] = v - ls
			}
		}
	}
	return nil
}

func kSoftmaxGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, y := in[0], in[1]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	if !dy.Shape.Equal(y.Shape) {
		return errorf(ErrShape, "gradient %v and output %v differ", dy.Shape, y.Shape)
	}
	o := k.alloc(out, y.Shape...)
	r, c := rowsOf(y.Shape)
	for i := 0; i < r; i++ {
		g, yr, orow := dy.F[i*c:(i+1)*c], y.F[i*c:(i+1)*c], o[i*c:(i+1)*c]
		var s float32
		if n.op == opSoftmaxGrad {
			for j := range g {
				s += g[j] * yr[j]
			}
			for j := range g {
				orow[j] = yr[j] * (g[j] - s)
			}
		} else {
			for _, v := range g {
				s += v
			}
			for j := range g {
				orow[j] = g[j] - float32(math.Exp(float64(yr[j])))*s
			}
		}
	}
	return nil
}

func xentCheck(logits, labels *Tensor) (int, int, error) {
	if err := wantF(logits, "logits"); err != nil {
		return 0, 0, err
	}
	if logits.Shape.Rank() != 2 || labels.Shape.Rank() != 1 || logits.Shape[0] != labels.Shape[0] || !labels.DType.isInt() {
		return 0, 0, errorf(ErrShape, "logits %v and labels %v %v", logits.Shape, labels.DType, labels.Shape)
	}
	r, c := logits.Shape[0], logits.Shape[1]
	for _, l := range labels.I {
		if l < 0 || l >= int64(c) {
			return 0, 0, errorf(ErrOutOfRange, "label %d not in [0,%d)", l, c)
		}
	}
	return r, c, nil
}

func logSumExp(xr []float32) float32 {
	m := xr[0]
	for _, v := range xr {
		m = max(m, v)
	}
	var s float64
	for _, v := range xr {
		s += math.Exp(float64(v - m))
	}
	return float32(math.Log(s)) + m
}

func kSparseXent(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	r, c, err := xentCheck(in[0], in[1])
	if err != nil {
		return err
	}
	o := k.alloc(out, r)
	for i := 0; i < r; i++ {
		xr := in[0].F[i*c : (i+1)*c]
		o[i] = logSumExp(xr) - xr[in[1].I[i]]
	}
	return nil
}

func kSparseXentGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy := in[0]
	r, c, err := xentCheck(in[1], in[2])
	if err != nil {
		return err
	}
	if len(dy.F) != r {
		return errorf(ErrShape, "gradient %v for logits %v", dy.Shape, in[1].Shape)
	}
	o := k.alloc(out, r, c)
	for i := 0; i < r; i++ {
		xr, orow := in[1].F[i*c:(i+1)*c], o[i*c:(i+1)*c]
		ls := logSumExp(xr)
		g := dy.F[i]
		for j, v := range xr {
			orow[j] = g * float32(math.Exp(float64(v-ls)))
		}
		orow[in[2].I[i]] -= g
	}
	return nil
}

// kSigmoidXent computes the loss (2 inputs) or its gradient (3 inputs:
// dy, logits, labels).
func kSigmoidXent(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	var dy *Tensor
	if n.op == opSigmoidXGrad {
		dy, in = in[0], in[1:]
	}
	x, z := in[0], in[1]
	if err := wantF(x, "logits"); err != nil {
		return err
	}
	if err := wantF(z, "labels"); err != nil {
		return err
	}
	if !x.Shape.Equal(z.Shape) || dy != nil && !dy.Shape.Equal(x.Shape) {
		return errorf(ErrShape, "logits %v and labels %v differ", x.Shape, z.Shape)
	}
	o := k.alloc(out, x.Shape...)
	for i, v := range x.F[:len(o)] {
		if dy != nil {
			o[i] = dy.F[i] * (sigmoid(v) - z.F[i])
		} else {
			o[i] = max(v, 0) - v*z.F[i] + float32(math.Log1p(math.Exp(-math.Abs(float64(v)))))
		}
	}
	return nil
}

// strides returns row-major strides of s.
func strides(s Shape) []int {
	st := make([]int, len(s))
	acc := 1
	for i := len(s) - 1; i >= 0; i-- {
		st[i] = acc
		acc *= s[i]
	}
	return st
}

// bcastStrides maps src (broadcast to dst) onto dst's dimensions: stride 0
// where src is 1 or missing. ok is false if src does not broadcast to dst.
func bcastStrides(src, dst Shape) ([]int, bool) {
	if len(src) > len(dst) {
		return nil, false
	}
	st := make([]int, len(dst))
	ss := strides(src)
	off := len(dst) - len(src)
	for i := range src {
		switch {
		case src[i] == dst[i+off]:
			if src[i] != 1 {
				st[i+off] = ss[i]
			}
		case src[i] == 1:
		default:
			return nil, false
		}
	}
	return st, true
}

// runtimeBroadcast is broadcastShape for known shapes.
func runtimeBroadcast(x, y Shape) (Shape, bool) {
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
		switch {
		case a == c || c == 1:
			out[n-i] = a
		case a == 1:
			out[n-i] = c
		default:
			return nil, false
		}
	}
	return out, true
}

// forEach2 calls fn(outIndex, aIndex, bIndex) for every element of shape
// dst, with a and b indexed through broadcast strides sa, sb.
func forEach2(dst Shape, sa, sb []int, fn func(o, a, b int)) {
	n := dst.NumElements()
	if n == 0 {
		return
	}
	r := len(dst)
	if r == 0 {
		fn(0, 0, 0)
		return
	}
	idx := make([]int, r)
	ia, ib := 0, 0
	last := dst[r-1]
	for o := 0; o < n; o += last {
		for j := 0; j < last; j++ {
			fn(o+j, ia+j*sa[r-1], ib+j*sb[r-1])
		}
		// advance all but the last dimension
		for d := r - 2; d >= 0; d-- {
			idx[d]++
			ia += sa[d]
			ib += sb[d]
			if idx[d] < dst[d] {
				break
			}
			ia -= sa[d] * dst[d]
			ib -= sb[d] * dst[d]
			idx[d] = 0
		}
	}
}

func binop(op string) func(a, b float32) float32 {
	switch op {
	case opAdd:
		return func(a, b float32) float32 { return a + b }
	case opSub:
		return func(a, b float32) float32 { return a - b }
	case opMul:
		return func(a, b float32) float32 { return a * b }
	}
	return func(a, b float32) float32 { return a / b }
}

func kBinary(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x, y := in[0], in[1]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	if err := wantF(y, "y"); err != nil {
		return err
	}
	if x.Shape.Equal(y.Shape) {
		o := k.alloc(out, x.Shape...)
		a, b := x.F[:len(o)], y.F[:len(o)]
		switch n.op {
		case opAdd:
			for i := range o {
				o[i] = a[i] + b[i]
			}
		case opSub:
			for i := range o {
				o[i] = a[i] - b[i]
			}
		case opMul:
			for i := range o {
				o[i] = a[i] * b[i]
			}
		case opDiv:
			for i := range o {
				o[i] = a[i] / b[i]
			}
		}
		return nil
	}
	s, ok := runtimeBroadcast(x.Shape, y.Shape)
	if !ok {
		return errorf(ErrShape, "cannot broadcast %v with %v", x.Shape, y.Shape)
	}
	sa, _ := bcastStrides(x.Shape, s)
	sb, _ := bcastStrides(y.Shape, s)
	o := k.alloc(out, s...)
	f := binop(n.op)
	if len(y.F) == 1 {
		bv := y.F[0]
		if len(x.F) == len(o) {
			for i, v := range x.F {
				o[i] = f(v, bv)
			}
			return nil
		}
	}
	a, b := x.F, y.F
	forEach2(s, sa, sb, func(oi, ai, bi int) { o[oi] = f(a[ai], b[bi]) })
	return nil
}

// kReduceLike sums dy down to the shape of in[1] (undoing broadcasting).
func kReduceLike(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, x := in[0], in[1]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	o := k.alloc(out, x.Shape...)
	if dy.Shape.Equal(x.Shape) {
		copy(o, dy.F)
		return nil
	}
	st, ok := bcastStrides(x.Shape, dy.Shape)
	if !ok {
		return errorf(ErrShape, "gradient %v does not reduce to %v", dy.Shape, x.Shape)
	}
	clear(o)
	g := dy.F
	forEach2(dy.Shape, st, st, func(oi, xi, _ int) { o[xi] += g[oi] })
	return nil
}

func axesCount(s Shape, axes []int) int {
	c := 1
	for _, a := range axes {
		c *= s[a]
	}
	return c
}

// keptStrides returns, for each dimension of s, the stride of the reduced
// tensor (0 on reduced axes).
func keptStrides(s Shape, axes []int) []int {
	red := make(Shape, len(s))
	for i, d := range s {
		red[i] = d
		if slices.Contains(axes, i) {
			red[i] = 1
		}
	}
	st := strides(red)
	for _, a := range axes {
		st[a] = 0
	}
	return st
}

func kReduce(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	axes := n.a.axes
	for _, a := range axes {
		if a >= x.Shape.Rank() {
			return errorf(ErrShape, "axis %d of %v", a, x.Shape)
		}
	}
	o := k.alloc(out, reducedShape(x.Shape, axes, n.a.keepDims)...)
	cnt := axesCount(x.Shape, axes)
	if len(o) == 1 {
		var s float64
		for _, v := range x.F {
			s += float64(v)
		}
		if n.a.mean {
			s /= float64(cnt)
		}
		o[0] = float32(s)
		return nil
	}
	clear(o)
	st := keptStrides(x.Shape, axes)
	xs := x.F
	forEach2(x.Shape, st, st, func(xi, oi, _ int) { o[oi] += xs[xi] })
	if n.a.mean && cnt > 0 {
		inv := 1 / float32(cnt)
		for i := range o {
			o[i] *= inv
		}
	}
	return nil
}

// kBroadcastLike is the gradient of Sum/Mean: it spreads dy back over the
// reduced axes of in[1].
func kBroadcastLike(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, x := in[0], in[1]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	if want := reducedShape(x.Shape, n.a.axes, n.a.keepDims).NumElements(); len(dy.F) != want {
		return errorf(ErrShape, "gradient %v does not fit reduction of %v", dy.Shape, x.Shape)
	}
	o := k.alloc(out, x.Shape...)
	scale := float32(1)
	if n.a.mean {
		if c := axesCount(x.Shape, n.a.axes); c > 0 {
			scale = 1 / float32(c)
		}
	}
	if len(dy.F) == 1 {
		v := dy.F[0] * scale
		for i := range o {
			o[i] = v
		}
		return nil
	}
	st := keptStrides(x.Shape, n.a.axes)
	g := dy.F
	forEach2(x.Shape, st, st, func(oi, gi, _ int) { o[oi] = g[gi] * scale })
	return nil
}

func kBiasAddGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy := in[0]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	r, c := rowsOf(dy.Shape)
	if c != n.shape[0] {
		return errorf(ErrShape, "gradient %v for bias %v", dy.Shape, n.shape)
	}
	o := k.alloc(out, c)
	clear(o)
	if c >= 8 {
		// Row by row with the assembly axpy: the scalar loop cost ~3 ns
		// per element on the CNN's conv gradients.
		for i := 0; i < r; i++ {
			axpy(1, dy.F[i*c:(i+1)*c], o)
		}
		return nil
	}
	for i := 0; i < r; i++ {
		row := dy.F[i*c : (i+1)*c]
		for j, v := range row {
			o[j] += v
		}
	}
	return nil
}

func kOnesLike(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	o := k.alloc(out, in[0].Shape...)
	for i := range o {
		o[i] = 1
	}
	return nil
}

// kReshape covers Reshape, ReshapeLike and Identity; the output shares the
// input's buffer (the executor tracks the alias).
func kReshape(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if x.IsSparse() {
		return errorf(ErrDType, "reshape of a sparse tensor")
	}
	var target Shape
	switch n.op {
	case opIdentity:
		target = x.Shape
	case opReshapeLike:
		target = in[1].Shape
	default:
		target = n.a.shape
	}
	total := x.Len()
	out.Shape = append(out.Shape[:0], target...)
	prod, unk := 1, -1
	for i, d := range out.Shape {
		if d < 0 {
			unk = i
		} else {
			prod *= d
		}
	}
	if unk >= 0 {
		if prod > 0 {
			out.Shape[unk] = total / prod
			prod *= out.Shape[unk]
		} else {
			out.Shape[unk] = 0
		}
	}
	if prod != total {
		return errorf(ErrShape, "cannot reshape %v (%d elements) to %v", x.Shape, total, target)
	}
	out.DType, out.F, out.I, out.Rows, out.DenseShape = x.DType, x.F, x.I, nil, nil
	return nil
}

func kTranspose(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	perm := n.a.perm
	if len(perm) != x.Shape.Rank() || x.IsSparse() {
		return errorf(ErrShape, "perm %v for %v", perm, x.Shape)
	}
	dims := make(Shape, len(perm))
	xs := strides(x.Shape)
	st := make([]int, len(perm))
	for i, p := range perm {
		dims[i] = x.Shape[p]
		st[i] = xs[p]
	}
	out.DType = x.DType
	out.Shape = append(out.Shape[:0], dims...)
	out.Rows, out.DenseShape = nil, nil
	if x.DType == Float32 {
		o := k.alloc(out, dims...)
		src := x.F
		forEach2(dims, st, st, func(oi, xi, _ int) { o[oi] = src[xi] })
		return nil
	}
	o := make([]int64, len(x.I))
	src := x.I
	forEach2(dims, st, st, func(oi, xi, _ int) { o[oi] = src[xi] })
	out.F, out.I = nil, o
	return nil
}

// splitAt returns (outer, axis length, inner) of s around axis.
func splitAt(s Shape, axis int) (int, int, int) {
	outer, inner := 1, 1
	for i := 0; i < axis; i++ {
		outer *= s[i]
	}
	for i := axis + 1; i < len(s); i++ {
		inner *= s[i]
	}
	return outer, s[axis], inner
}

func kConcat(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	axis := n.a.axis
	first := in[0]
	dims := first.Shape.Clone()
	dims[axis] = 0
	for _, x := range in {
		if x.IsSparse() || x.DType != first.DType || x.Shape.Rank() != len(dims) {
			return errorf(ErrShape, "concat of %v and %v", first.Shape, x.Shape)
		}
		for i := range dims {
			if i != axis && x.Shape[i] != first.Shape[i] {
				return errorf(ErrShape, "concat of %v and %v off axis %d", first.Shape, x.Shape, axis)
			}
		}
		dims[axis] += x.Shape[axis]
	}
	outer, total, inner := splitAt(dims, axis)
	if first.DType == Float32 {
		o := k.alloc(out, dims...)
		off := 0
		for _, x := range in {
			w := x.Shape[axis] * inner
			for r := 0; r < outer; r++ {
				copy(o[r*total*inner+off:r*total*inner+off+w], x.F[r*w:(r+1)*w])
			}
			off += w
		}
		return nil
	}
	o := make([]int64, dims.NumElements())
	off := 0
	for _, x := range in {
		w := x.Shape[axis] * inner
		for r := 0; r < outer; r++ {
			copy(o[r*total*inner+off:r*total*inner+off+w], x.I[r*w:(r+1)*w])
		}
		off += w
	}
	out.DType, out.Shape, out.F, out.I, out.Rows, out.DenseShape = first.DType, append(out.Shape[:0], dims...), nil, o, nil, nil
	return nil
}

// kConcatSlice extracts piece n.a.index of dy along axis; in = dy, xs...
func kConcatSlice(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, xs := in[0], in[1:]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	axis := n.a.axis
	off := 0
	for i := 0; i < n.a.index; i++ {
		off += xs[i].Shape[axis]
	}
	x := xs[n.a.index]
	if dy.Shape.Rank() != x.Shape.Rank() || off+x.Shape[axis] > dy.Shape[axis] {
		return errorf(ErrShape, "piece %v at %d of %v", x.Shape, off, dy.Shape)
	}
	outer, total, inner := splitAt(dy.Shape, axis)
	o := k.alloc(out, x.Shape...)
	w := x.Shape[axis] * inner
	for r := 0; r < outer; r++ {
		copy(o[r*w:(r+1)*w], dy.F[r*total*inner+off*inner:])
	}
	return nil
}

func kGather(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	p, ids := in[0], in[1]
	if err := wantF(p, "params"); err != nil {
		return err
	}
	if p.Shape.Rank() < 1 || !ids.DType.isInt() {
		return errorf(ErrShape, "params %v, ids %v %v", p.Shape, ids.DType, ids.Shape)
	}
	rows := p.Shape[0]
	rs := 1
	if rows > 0 {
		rs = len(p.F) / rows
	}
	dims := append(ids.Shape.Clone(), p.Shape[1:]...)
	o := k.alloc(out, dims...)
	for j, id := range ids.I {
		if id < 0 || id >= int64(rows) {
			return errorf(ErrOutOfRange, "id %d not in [0,%d)", id, rows)
		}
		copy(o[j*rs:(j+1)*rs], p.F[int(id)*rs:])
	}
	return nil
}

// kGatherGrad builds Gather's sparse gradient: the distinct ids, sorted,
// with the rows of dy summed per id. in = dy, ids [, params].
func kGatherGrad(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	dy, ids := in[0], in[1]
	if err := wantF(dy, "dy"); err != nil {
		return err
	}
	dense := n.shape
	if len(in) > 2 {
		dense = in[2].Shape
	}
	rows := dense[0]
	rs := dense.NumElements() / max(rows, 1)
	if len(dy.F) != len(ids.I)*rs {
		return errorf(ErrShape, "gradient %v for ids %v of %v", dy.Shape, ids.Shape, dense)
	}
	uniq := slices.Clone(ids.I)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	for _, id := range uniq {
		if id < 0 || id >= int64(rows) {
			return errorf(ErrOutOfRange, "id %d not in [0,%d)", id, rows)
		}
	}
	o := k.alloc(out, append(Shape{len(uniq)}, dense[1:]...)...)
	clear(o)
	for j, id := range ids.I {
		u, _ := slices.BinarySearch(uniq, id)
		dst, src := o[u*rs:(u+1)*rs], dy.F[j*rs:(j+1)*rs]
		for t, v := range src {
			dst[t] += v
		}
	}
	out.Rows = uniq
	out.DenseShape = dense.Clone()
	return nil
}

func scatterAdd(dst []float32, t *Tensor) {
	rs := len(t.F) / max(len(t.Rows), 1)
	for j, r := range t.Rows {
		d := dst[int(r)*rs : int(r+1)*rs]
		for i, v := range t.F[j*rs : (j+1)*rs] {
			d[i] += v
		}
	}
}

func kSparseToDense(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	g, like := in[0], in[1]
	if !g.IsSparse() {
		o := k.alloc(out, g.Shape...)
		copy(o, g.F)
		return nil
	}
	if !g.DenseShape.Equal(like.Shape) {
		return errorf(ErrShape, "sparse gradient of %v for %v", g.DenseShape, like.Shape)
	}
	o := k.alloc(out, like.Shape...)
	clear(o)
	scatterAdd(o, g)
	return nil
}

// kAddN sums gradients: dense+dense is dense, sparse+sparse stays sparse
// (rows merged), a mix is densified.
func kAddN(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	nsparse := 0
	var dense Shape
	for _, t := range in {
		if t.DType != Float32 {
			return errorf(ErrDType, "AddN of %v", t.DType)
		}
		if t.IsSparse() {
			nsparse++
			if dense == nil {
				dense = t.DenseShape
			}
		} else if dense == nil {
			dense = t.Shape
		}
	}
	for _, t := range in {
		s := t.Shape
		if t.IsSparse() {
			s = t.DenseShape
		}
		if !s.Equal(dense) {
			return errorf(ErrShape, "AddN of %v and %v", dense, s)
		}
	}
	if nsparse == len(in) {
		var all []int64
		for _, t := range in {
			all = append(all, t.Rows...)
		}
		slices.Sort(all)
		all = slices.Compact(all)
		rs := dense.NumElements() / max(dense[0], 1)
		o := k.alloc(out, append(Shape{len(all)}, dense[1:]...)...)
		clear(o)
		for _, t := range in {
			for j, r := range t.Rows {
				u, _ := slices.BinarySearch(all, r)
				d := o[u*rs : (u+1)*rs]
				for i, v := range t.F[j*rs : (j+1)*rs] {
					d[i] += v
				}
			}
		}
		out.Rows, out.DenseShape = all, dense.Clone()
		return nil
	}
	o := k.alloc(out, dense...)
	clear(o)
	for _, t := range in {
		if t.IsSparse() {
			scatterAdd(o, t)
			continue
		}
		for i, v := range t.F[:len(o)] {
			o[i] += v
		}
	}
	return nil
}

// mix is splitmix64's finaliser.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// kDropout keeps element i when a hash of (seed, step, i) is ≥ rate; its
// gradient is the same op on dy, which regenerates the same mask.
func kDropout(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	o := k.alloc(out, x.Shape...)
	if !k.training || n.a.rate == 0 {
		copy(o, x.F)
		return nil
	}
	base := mix(uint64(n.a.seed)*0x9e3779b97f4a7c15 ^ mix(uint64(k.step)+0x632be59bd9b4e019))
	thr := uint64(float64(n.a.rate) * (1 << 53))
	scale := 1 / (1 - n.a.rate)
	for i, v := range x.F[:len(o)] {
		if mix(base+uint64(i)*0x9e3779b97f4a7c15)>>11 >= thr {
			o[i] = v * scale
		} else {
			o[i] = 0
		}
	}
	return nil
}

func kArgMax(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if err := wantF(x, "x"); err != nil {
		return err
	}
	axis := n.a.axis
	if axis >= x.Shape.Rank() || x.Shape[axis] == 0 {
		return errorf(ErrShape, "argmax over axis %d of %v", axis, x.Shape)
	}
	outer, l, inner := splitAt(x.Shape, axis)
	o := make([]int64, outer*inner)
	for a := 0; a < outer; a++ {
		for c := 0; c < inner; c++ {
			base := a*l*inner + c
			best, bi := x.F[base], 0
			for j := 1; j < l; j++ {
				if v := x.F[base+j*inner]; v > best {
					best, bi = v, j
				}
			}
			o[a*inner+c] = int64(bi)
		}
	}
	out.DType, out.F, out.I, out.Rows, out.DenseShape = Int64, nil, o, nil, nil
	out.Shape = append(out.Shape[:0], reducedShape(x.Shape, []int{axis}, false)...)
	return nil
}

func kCast(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x := in[0]
	if x.IsSparse() {
		return errorf(ErrDType, "cast of a sparse tensor")
	}
	to := n.a.dtype
	switch {
	case to == Float32 && x.DType == Float32:
		o := k.alloc(out, x.Shape...)
		copy(o, x.F)
	case to == Float32:
		o := k.alloc(out, x.Shape...)
		for i, v := range x.I {
			o[i] = float32(v)
		}
	case x.DType == Float32:
		o := make([]int64, len(x.F))
		for i, v := range x.F {
			o[i] = int64(v)
			if to == Int32 {
				o[i] = int64(int32(o[i]))
			}
		}
		out.F, out.I = nil, o
	default:
		o := slices.Clone(x.I)
		if to == Int32 {
			for i, v := range o {
				o[i] = int64(int32(v))
			}
		}
		out.F, out.I = nil, o
	}
	out.DType = to
	out.Shape = append(out.Shape[:0], x.Shape...)
	return nil
}

func kEqual(k *kctx, n *pnode, in []*Tensor, out *Tensor) error {
	x, y := in[0], in[1]
	if !x.Shape.Equal(y.Shape) || x.DType.isInt() != y.DType.isInt() {
		return errorf(ErrShape, "compare %v %v with %v %v", x.DType, x.Shape, y.DType, y.Shape)
	}
	o := k.alloc(out, x.Shape...)
	for i := range o {
		eq := false
		if x.DType.isInt() {
			eq = x.I[i] == y.I[i]
		} else {
			eq = x.F[i] == y.F[i]
		}
		if eq {
			o[i] = 1
		} else {
			o[i] = 0
		}
	}
	return nil
}
