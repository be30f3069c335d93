package wire

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/flowps/flowps/ps"
)

// TopK sparsifies one tensor's gradients with error feedback: Compress
// sends the largest-magnitude entries of (residual + gradient) and keeps
// the rest as the residual for the next call. The zero value is not
// usable; call NewTopK. Not safe for concurrent use.
type TopK struct {
	ratio    float64
	residual []float32
	mags     []float32
	scratch  []float32
	idx      []int32
	vals     []float32
}

// NewTopK returns a sparsifier keeping ⌈ratio·n⌉ (at least one) of n
// entries per call. ratio must be in (0, 1].
func NewTopK(ratio float64) (*TopK, error) {
	if !(ratio > 0 && ratio <= 1) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "wire: top-k ratio %v not in (0, 1]", ratio)
	}
	return &TopK{ratio: ratio}, nil
}

// Ratio is the fraction of entries kept per call.
func (t *TopK) Ratio() float64 { return t.ratio }

// K is the number of entries Compress keeps of a tensor of n.
func (t *TopK) K(n int) int {
	if n == 0 {
		return 0
	}
	return min(n, max(1, int(math.Ceil(t.ratio*float64(n)))))
}

// Residual is the mass not yet sent (nil before the first call). It is
// the TopK's own buffer: read it, do not keep it.
func (t *TopK) Residual() []float32 { return t.residual }

// Reset forgets the residual, for example after the variable was
// re-initialised.
func (t *TopK) Reset() { t.residual = nil }

// Compress adds grad to the residual and returns the k entries of largest
// magnitude (NaN counts as largest, so the server sees and rejects it) as
// ascending indices and their values; their residual becomes zero. grad
// is not modified. The returned slices are reused by the next call. A
// grad whose length differs from the previous call's is an error wrapping
// ps.ErrShapeMismatch (call Reset when a tensor changes shape).
func (t *TopK) Compress(grad []float32) (idx []int32, vals []float32, err error) {
	n := len(grad)
	if n > math.MaxInt32 {
		return nil, nil, ps.Errorf(ps.ErrTooLarge, "wire: top-k of %d values exceeds int32 indices", n)
	}
	if t.residual == nil {
		t.residual = make([]float32, n)
	} else if len(t.residual) != n {
		return nil, nil, ps.Errorf(ps.ErrShapeMismatch, "wire: top-k got %d values, residual holds %d", n, len(t.residual))
	}
	r := t.residual
	for i, g := range grad {
		r[i] += g
	}
	k := t.K(n)
	t.idx, t.vals = t.idx[:0], t.vals[:0]
	if k == 0 {
		return t.idx, t.vals, nil
	}
	if k == n {
		for i, v := range r {
			t.idx = append(t.idx, int32(i))
			t.vals = append(t.vals, v)
			r[i] = 0
		}
		return t.idx, t.vals, nil
	}
	if cap(t.mags) < n {
		t.mags = make([]float32, n)
	}
	m := t.mags[:n]
	for i, v := range r {
		m[i] = magnitude(v)
	}
	// thr is the k-th largest magnitude: entries above it are all sent,
	// entries equal to it fill the remaining places in index order.
	thr, ok := t.sampledThreshold(m, k)
	if !ok {
		thr = kthLargest(t.scratchCopy(m), k)
	}
	above := 0
	for _, a := range m {
		if a > thr {
			above++
		}
	}
	ties := k - above
	for i, v := range r {
		a := m[i]
		if a > thr || (a == thr && ties > 0) {
			if a == thr {
				ties--
			}
			t.idx = append(t.idx, int32(i))
			t.vals = append(t.vals, v)
			r[i] = 0
		}
	}
	return t.idx, t.vals, nil
}

// sampleSize is how many magnitudes sampledThreshold looks at first.
const sampleSize = 2048

// sampledThreshold finds the k-th largest of m without a selection over
// all of it: a threshold from an evenly spaced sample (set a little low,
// so that it very probably admits at least k entries), then an exact
// selection among the few entries at or above it. It reports false when
// the sample's guess admits fewer than k or too many entries; the caller
// then selects over everything.
func (t *TopK) sampledThreshold(m []float32, k int) (float32, bool) {
	n := len(m)
	if n < 8*sampleSize || k > n/8 {
		return 0, false
	}
	stride := n / sampleSize
	if cap(t.scratch) < sampleSize {
		t.scratch = make([]float32, sampleSize, max(sampleSize, 4*k))
	}
	sample := t.scratch[:sampleSize]
	for i := range sample {
		sample[i] = m[i*stride]
	}
	// Expected rank of the k-th largest in the sample, with margin.
	want := float64(k) * sampleSize / float64(n)
	rank := min(sampleSize, int(want+3*math.Sqrt(want)+8))
	guess := kthLargest(sample, rank)
	limit := 4*k + 64
	cand := t.scratch[:0]
	for _, a := range m {
		if a >= guess {
			if len(cand) == limit {
				return 0, false
			}
			cand = append(cand, a)
		}
	}
	t.scratch = cand[:0]
	if len(cand) < k {
		return 0, false
	}
	return kthLargest(cand, k), true
}

// scratchCopy copies m into the TopK's scratch buffer.
func (t *TopK) scratchCopy(m []float32) []float32 {
	if cap(t.scratch) < len(m) {
		t.scratch = make([]float32, len(m))
	}
	s := t.scratch[:len(m)]
	copy(s, m)
	return s
}

// magnitude is |v| with NaN as +Inf, so that NaN orders as the largest.
func magnitude(v float32) float32 {
	if v != v {
		return float32(math.Inf(1))
	}
	return float32(math.Abs(float64(v)))
}

// kthLargest returns the k-th largest (1-based) of m, reordering m.
// Quickselect with median-of-three pivots; expected O(len(m)).
func kthLargest(m []float32, k int) float32 {
	lo, hi := 0, len(m)-1
	want := k - 1 // index in descending order
	for lo < hi {
		mid := lo + (hi-lo)/2
		// median of three to m[mid]
		if m[lo] < m[mid] {
			m[lo], m[mid] = m[mid], m[lo]
		}
		if m[mid] < m[hi] {
			m[mid], m[hi] = m[hi], m[mid]
			if m[lo] < m[mid] {
				m[lo], m[mid] = m[mid], m[lo]
			}
		}
		p := m[mid]
		// Hoare partition, descending: left part ≥ p, right part ≤ p.
		i, j := lo, hi
		for i <= j {
			for m[i] > p {
				i++
			}
			for m[j] < p {
				j--
			}
			if i <= j {
				m[i], m[j] = m[j], m[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return m[want]
		}
	}
	return m[want]
}

// ScatterAdd adds vals at idx into dense: dense[idx[i]] += vals[i]. Indices
// must be in range; a bad one is an error wrapping ps.ErrInvalidArgument
// and leaves dense unchanged.
func ScatterAdd(dense []float32, idx []int32, vals []float32) error {
	if len(idx) != len(vals) {
		return ps.Errorf(ps.ErrInvalidArgument, "wire: %d indices for %d values", len(idx), len(vals))
	}
	for _, i := range idx {
		if i < 0 || int(i) >= len(dense) {
			return ps.Errorf(ps.ErrInvalidArgument, "wire: index %d out of range [0, %d)", i, len(dense))
		}
	}
	for j, i := range idx {
		dense[i] += vals[j]
	}
	return nil
}

// EncodeSparse appends a sparse vector to dst: the count as a uvarint, the
// strictly ascending indices as uvarint gaps (first index, then
// differences minus one), then the values as little-endian float32s. A 1 %
// top-k of a dense tensor costs about 5-6 bytes per kept entry. Indices
// that are negative or not strictly ascending, or len(idx) != len(vals),
// are an error wrapping ps.ErrInvalidArgument.
func EncodeSparse(dst []byte, idx []int32, vals []float32) ([]byte, error) {
	if len(idx) != len(vals) {
		return dst, ps.Errorf(ps.ErrInvalidArgument, "wire: %d indices for %d values", len(idx), len(vals))
	}
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	prev := int64(-1)
	for _, i := range idx {
		if int64(i) <= prev {
			return dst, ps.Errorf(ps.ErrInvalidArgument, "wire: sparse index %d after %d: not strictly ascending", i, prev)
		}
		dst = binary.AppendUvarint(dst, uint64(int64(i)-prev-1))
		prev = int64(i)
	}
	at := len(dst)
	dst = grow(dst, 4*len(vals))
	for j, v := range vals {
		binary.LittleEndian.PutUint32(dst[at+4*j:], math.Float32bits(v))
	}
	return dst, nil
}

// DecodeSparse parses what EncodeSparse wrote for a tensor of n values.
// Truncated or trailing data, non-minimal varints (so that every message
// has one encoding) and indices ≥ n are errors wrapping
// ps.ErrInvalidArgument. It allocates at most in proportion to len(src).
func DecodeSparse(src []byte, n int) (idx []int32, vals []float32, err error) {
	bad := func(format string, args ...any) error {
		return ps.Errorf(ps.ErrInvalidArgument, "wire: sparse data: %s", fmt.Sprintf(format, args...))
	}
	count, w := binary.Uvarint(src)
	if w <= 0 || w != uvarintLen(count) {
		return nil, nil, bad("bad count")
	}
	src = src[w:]
	// Each entry takes at least 1 index byte and 4 value bytes.
	if count > uint64(len(src))/5 || count > uint64(n) {
		return nil, nil, bad("count %d does not fit %d bytes or %d values", count, len(src), n)
	}
	idx = make([]int32, count)
	vals = make([]float32, count)
	prev := int64(-1)
	for j := range idx {
		gap, w := binary.Uvarint(src)
		if w <= 0 || w != uvarintLen(gap) {
			return nil, nil, bad("bad index %d", j)
		}
		src = src[w:]
		if gap >= uint64(n) {
			return nil, nil, bad("index gap %d out of range %d", gap, n)
		}
		i := prev + 1 + int64(gap)
		if i >= int64(n) {
			return nil, nil, bad("index %d out of range %d", i, n)
		}
		idx[j] = int32(i)
		prev = i
	}
	if len(src) != 4*int(count) {
		return nil, nil, bad("%d value bytes for %d values", len(src), count)
	}
	for j := range vals {
		vals[j] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*j:]))
	}
	return idx, vals, nil
}

// uvarintLen is the length of v's minimal uvarint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
