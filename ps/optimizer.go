package ps

import (
	"math"
)

// Optimizer applies gradients to the values of one partition and owns that
// partition's optimizer state (slots: momentum accumulators, Adam moments,
// FTRL's linear and accumulator terms, Adam's step count). It is not safe
// for concurrent use: the server calls it under the partition's lock.
//
// ApplyDense updates every value: param and grad both hold the whole
// partition. ApplySparse updates only the listed rows: rows are
// partition-local row indices, grad holds len(rows)×rowSize values, and
// duplicate row ids are summed before the update (so a row is updated once
// per call, as TensorFlow's sparse apply ops do after unsorted_segment_sum).
// Sparse updates are "lazy": slots of rows not listed are left untouched.
// Both return an error wrapping ErrShapeMismatch or ErrInvalidArgument when
// lengths or row ids do not fit, and then change nothing.
type Optimizer interface {
	ApplyDense(param, grad []float32) error
	ApplySparse(param []float32, rowSize int, rows []int64, grad []float32) error
}

// NewOptimizer returns the optimizer spec names (defaults filled in by
// WithDefaults) for a partition of size values, with fresh slots.
func NewOptimizer(spec OptimizerSpec, size int) (Optimizer, error) {
	spec = spec.WithDefaults()
	if err := validateOptimizer(spec); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, Errorf(ErrInvalidArgument, "optimizer for %d values", size)
	}
	var k kernel
	switch spec.Kind {
	case OptSGD:
		k = &sgd{lr: spec.LR}
	case OptMomentum:
		k = &momentum{lr: spec.LR, mu: spec.Momentum, nesterov: spec.Nesterov, accum: make([]float32, size)}
	case OptAdagrad:
		a := make([]float32, size)
		fill(a, spec.InitialAccumulator)
		k = &adagrad{lr: spec.LR, eps: spec.Epsilon, accum: a}
	case OptAdam:
		k = &adam{lr: spec.LR, b1: spec.Beta1, b2: spec.Beta2, eps: spec.Epsilon, m: make([]float32, size), v: make([]float32, size)}
	case OptFTRL:
		a := make([]float32, size)
		fill(a, spec.InitialAccumulator)
		k = &ftrl{lr: spec.LR, l1: spec.L1, l2: spec.L2, lrPower: spec.LRPower, accum: a, linear: make([]float32, size)}
	}
	return &optimizer{k: k, size: size}, nil
}

func fill(a []float32, v float32) {
	for i := range a {
		a[i] = v
	}
}

// kernel is one optimizer's update over a contiguous range [off, off+len(g))
// of the partition; begin is called once per apply (Adam's step count).
type kernel interface {
	begin()
	update(p, g []float32, off int)
}

type optimizer struct {
	k    kernel
	size int

	// sparse scratch, reused across calls
	mark, dupMark []uint64 // bitsets over rows, zero between calls
	dups          []int64
	pos           map[int64]int
	sum           []float32
}

func (o *optimizer) ApplyDense(param, grad []float32) error {
	if len(param) != o.size || len(grad) != o.size {
		return Errorf(ErrShapeMismatch, "dense apply: %d values and %d gradients, want %d", len(param), len(grad), o.size)
	}
	o.k.begin()
	o.k.update(param, grad, 0)
	return nil
}

func (o *optimizer) ApplySparse(param []float32, rowSize int, rows []int64, grad []float32) error {
	if len(param) != o.size {
		return Errorf(ErrShapeMismatch, "sparse apply: %d values, want %d", len(param), o.size)
	}
	if rowSize <= 0 || o.size%rowSize != 0 {
		return Errorf(ErrInvalidArgument, "sparse apply: row size %d does not divide %d values", rowSize, o.size)
	}
	if len(grad) != len(rows)*rowSize {
		return Errorf(ErrShapeMismatch, "sparse apply: %d gradients for %d rows of %d, want %d", len(grad), len(rows), rowSize, len(rows)*rowSize)
	}
	nrows := int64(o.size / rowSize)
	for _, r := range rows {
		if r < 0 || r >= nrows {
			return Errorf(ErrInvalidArgument, "sparse apply: row %d out of range [0, %d)", r, nrows)
		}
	}
	o.k.begin()
	if len(rows) < 2 {
		o.applyRows(param, rowSize, rows, grad)
		return nil
	}
	// Find the ids that occur more than once with two bitsets over the
	// partition's rows (all zero between calls): one pass, no allocation.
	words := int(nrows+63) / 64
	if len(o.mark) < words {
		o.mark = make([]uint64, words)
		o.dupMark = make([]uint64, words)
	}
	mark, dupMark := o.mark, o.dupMark
	dups := o.dups[:0]
	for _, r := range rows {
		w, bit := r>>6, uint64(1)<<(r&63)
		if mark[w]&bit == 0 {
			mark[w] |= bit
		} else if dupMark[w]&bit == 0 {
			dupMark[w] |= bit
			dups = append(dups, r)
		}
	}
	for _, r := range rows {
		mark[r>>6] = 0
	}
	o.dups = dups
	if len(dups) == 0 {
		o.applyRows(param, rowSize, rows, grad)
		return nil
	}
	// Rows seen once are applied straight from grad; duplicated ones are
	// summed into a scratch buffer first and applied once each.
	if o.pos == nil {
		o.pos = map[int64]int{}
	}
	clear(o.pos)
	for j, r := range dups {
		o.pos[r] = j
	}
	if cap(o.sum) < len(dups)*rowSize {
		o.sum = make([]float32, len(dups)*rowSize)
	}
	sum := o.sum[:len(dups)*rowSize]
	clear(sum)
	for i, r := range rows {
		g := grad[i*rowSize : (i+1)*rowSize]
		if dupMark[r>>6]&(uint64(1)<<(r&63)) == 0 {
			off := int(r) * rowSize
			o.k.update(param[off:off+rowSize], g, off)
			continue
		}
		j := o.pos[r]
		dst := sum[j*rowSize : (j+1)*rowSize]
		dst = dst[:len(g)]
		for k, x := range g {
			dst[k] += x
		}
	}
	o.applyRows(param, rowSize, dups, sum)
	for _, r := range dups {
		dupMark[r>>6] = 0
	}
	return nil
}

// applyRows applies grad (len(rows)×rowSize values) to distinct rows.
func (o *optimizer) applyRows(param []float32, rowSize int, rows []int64, grad []float32) {
	for i, r := range rows {
		off := int(r) * rowSize
		o.k.update(param[off:off+rowSize], grad[i*rowSize:(i+1)*rowSize], off)
	}
}

// SumDuplicateRows returns rows with each id once, in order of first
// appearance, and grad with the rows of duplicate ids summed. When rows has
// no duplicates it returns its arguments unchanged (no copy); otherwise it
// returns new slices and leaves the arguments alone. grad must hold
// len(rows)×rowSize values.
func SumDuplicateRows(rows []int64, grad []float32, rowSize int) ([]int64, []float32) {
	if len(rows) < 2 {
		return rows, grad
	}
	first := make(map[int64]int, len(rows))
	dup := false
	for i, r := range rows {
		if _, ok := first[r]; ok {
			dup = true
			break
		}
		first[r] = i
	}
	if !dup {
		return rows, grad
	}
	return mergeRows(rows, grad, rowSize, first, nil, nil)
}

// mergeRows sums the gradients of duplicate row ids into outRows and
// outGrad (reused when their capacity allows), with pos as scratch.
func mergeRows(rows []int64, grad []float32, rowSize int, pos map[int64]int, outRows []int64, outGrad []float32) ([]int64, []float32) {
	clear(pos)
	outRows = outRows[:0]
	outGrad = outGrad[:0]
	for i, r := range rows {
		src := grad[i*rowSize : (i+1)*rowSize]
		if j, ok := pos[r]; ok {
			dst := outGrad[j*rowSize : (j+1)*rowSize]
			dst = dst[:len(src)]
			for k, x := range src {
				dst[k] += x
			}
			continue
		}
		pos[r] = len(outRows)
		outRows = append(outRows, r)
		outGrad = append(outGrad, src...)
	}
	return outRows, outGrad
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// sgd: p -= lr·g.
type sgd struct{ lr float32 }

func (o *sgd) begin() {}

func (o *sgd) update(p, g []float32, _ int) { sgdUpdate(p, g, o.lr) }

// momentum is TensorFlow's ApplyMomentum:
// a = a·μ + g; p -= lr·a, or with Nesterov p -= lr·g + lr·μ·a.
type momentum struct {
	lr, mu   float32
	nesterov bool
	accum    []float32
}

func (o *momentum) begin() {}

func (o *momentum) update(p, g []float32, off int) {
	lr, mu := o.lr, o.mu
	a := o.accum[off : off+len(g)]
	p = p[:len(g)]
	if o.nesterov {
		for i, x := range g {
			acc := a[i]*mu + x
			a[i] = acc
			p[i] -= x*lr + acc*mu*lr
		}
		return
	}
	for i, x := range g {
		acc := a[i]*mu + x
		a[i] = acc
		p[i] -= lr * acc
	}
}

// adagrad is TensorFlow's ApplyAdagradV2: a += g²; p -= lr·g / (√a + ε).
type adagrad struct {
	lr, eps float32
	accum   []float32
}

func (o *adagrad) begin() {}

func (o *adagrad) update(p, g []float32, off int) {
	lr, eps := o.lr, o.eps
	a := o.accum[off : off+len(g)]
	p = p[:len(g)]
	for i, x := range g {
		acc := a[i] + x*x
		a[i] = acc
		p[i] -= lr * x / (sqrt32(acc) + eps)
	}
}

// adam is TensorFlow's ApplyAdam with the step count t kept per partition:
// t += 1; α = lr·√(1-β2^t)/(1-β1^t); m += (g-m)(1-β1); v += (g²-v)(1-β2);
// p -= α·m/(√v + ε).
type adam struct {
	lr, b1, b2, eps float32
	m, v            []float32
	t               int64
	alpha           float32
}

func (o *adam) begin() {
	o.t++
	b1p := math.Pow(float64(o.b1), float64(o.t))
	b2p := math.Pow(float64(o.b2), float64(o.t))
	o.alpha = float32(float64(o.lr) * math.Sqrt(1-b2p) / (1 - b1p))
}

func (o *adam) update(p, g []float32, off int) {
	alpha, eps := o.alpha, o.eps
	c1, c2 := 1-o.b1, 1-o.b2
	m := o.m[off : off+len(g)]
	v := o.v[off : off+len(g)]
	p = p[:len(g)]
	for i, x := range g {
		mi := m[i] + (x-m[i])*c1
		vi := v[i] + (x*x-v[i])*c2
		m[i], v[i] = mi, vi
		p[i] -= alpha * mi / (sqrt32(vi) + eps)
	}
}

// ftrl is TensorFlow's ApplyFtrl (FTRL-proximal):
//
//	n' = n + g²
//	z += g - (n'^(-k) - n^(-k))/lr · p        (k = lr_power)
//	p = |z| > l1 ? (sign(z)·l1 - z) / (n'^(-k)/lr + 2·l2) : 0
//	n = n'
type ftrl struct {
	lr, l1, l2, lrPower float32
	accum, linear       []float32
}

func (o *ftrl) begin() {}

func (o *ftrl) update(p, g []float32, off int) {
	lr, l1, l2x2 := o.lr, o.l1, 2*o.l2
	n := o.accum[off : off+len(g)]
	z := o.linear[off : off+len(g)]
	p = p[:len(g)]
	pow := func(x float32) float32 { return float32(math.Pow(float64(x), float64(-o.lrPower))) }
	if o.lrPower == -0.5 {
		pow = sqrt32
	}
	for i, x := range g {
		nOld := n[i]
		nNew := nOld + x*x
		pn := pow(nNew)
		zi := z[i] + x - (pn-pow(nOld))/lr*p[i]
		z[i] = zi
		if zi > l1 || zi < -l1 {
			s := l1
			if zi < 0 {
				s = -l1
			}
			p[i] = (s - zi) / (pn/lr + l2x2)
		} else {
			p[i] = 0
		}
		n[i] = nNew
	}
}
