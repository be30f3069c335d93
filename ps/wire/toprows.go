package wire

import (
	"math"

	"github.com/flowps/flowps/ps"
)

// TopKRows is top-k sparsification by rows, with error feedback: it sends
// the rows of (residual + gradient) with the largest L2 norms, whole, and
// keeps the others as the residual. Its output is a ps sparse push as it
// stands (PushPart.Rows and PushPart.Grad), so it needs no change to any
// transport: use it where a variable's rows are a natural unit (embedding
// tables, dense kernels [in, out] whose rows are input features). For a
// rank-1 variable each row is one value and it equals TopK. The zero value
// is not usable; call NewTopKRows. Not safe for concurrent use.
type TopKRows struct {
	ratio    float64
	rowSize  int
	residual []float32
	norms    []float32
	scratch  []float32
	rows     []int64
	vals     []float32
}

// NewTopKRows returns a sparsifier for tensors of rows of rowSize values
// that keeps ⌈ratio·rows⌉ (at least one) rows per call. ratio must be in
// (0, 1] and rowSize ≥ 1.
func NewTopKRows(ratio float64, rowSize int) (*TopKRows, error) {
	if !(ratio > 0 && ratio <= 1) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "wire: top-k rows ratio %v not in (0, 1]", ratio)
	}
	if rowSize < 1 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "wire: top-k row size %d, want ≥ 1", rowSize)
	}
	return &TopKRows{ratio: ratio, rowSize: rowSize}, nil
}

// K is the number of rows Compress keeps of a tensor of rows rows.
func (t *TopKRows) K(rows int) int {
	if rows == 0 {
		return 0
	}
	return min(rows, max(1, int(math.Ceil(t.ratio*float64(rows)))))
}

// Residual is the mass not yet sent (nil before the first call); the
// TopKRows' own buffer.
func (t *TopKRows) Residual() []float32 { return t.residual }

// Reset forgets the residual.
func (t *TopKRows) Reset() { t.residual = nil }

// Compress adds grad (rows × rowSize values, row-major) to the residual
// and returns the k rows of largest L2 norm (a row holding NaN counts as
// largest) as ascending row indices and their values, len(rows)×rowSize;
// their residual becomes zero. The slices are reused by the next call. A
// length that is not a whole number of rows, or differs from the previous
// call's, is an error wrapping ps.ErrShapeMismatch.
func (t *TopKRows) Compress(grad []float32) (rows []int64, vals []float32, err error) {
	rs := t.rowSize
	if len(grad)%rs != 0 {
		return nil, nil, ps.Errorf(ps.ErrShapeMismatch, "wire: top-k rows: %d values are not rows of %d", len(grad), rs)
	}
	if t.residual == nil {
		t.residual = make([]float32, len(grad))
	} else if len(t.residual) != len(grad) {
		return nil, nil, ps.Errorf(ps.ErrShapeMismatch, "wire: top-k rows got %d values, residual holds %d", len(grad), len(t.residual))
	}
	r := t.residual
	for i, g := range grad {
		r[i] += g
	}
	n := len(grad) / rs
	k := t.K(n)
	if cap(t.norms) < n {
		t.norms = make([]float32, n)
		t.scratch = make([]float32, n)
	}
	norms := t.norms[:n]
	for i := range norms {
		var s float64
		for _, v := range r[i*rs : (i+1)*rs] {
			s += float64(v) * float64(v)
		}
		if s != s {
			s = math.Inf(1)
		}
		norms[i] = float32(s)
	}
	t.rows, t.vals = t.rows[:0], t.vals[:0]
	if k == 0 {
		return t.rows, t.vals, nil
	}
	scratch := t.scratch[:n]
	copy(scratch, norms)
	thr := kthLargest(scratch, k)
	above := 0
	for _, v := range norms {
		if v > thr {
			above++
		}
	}
	ties := k - above
	for i, v := range norms {
		if v > thr || (v == thr && ties > 0) {
			if v == thr {
				ties--
			}
			t.rows = append(t.rows, int64(i))
			t.vals = append(t.vals, r[i*rs:(i+1)*rs]...)
			clear(r[i*rs : (i+1)*rs])
		}
	}
	return t.rows, t.vals, nil
}
