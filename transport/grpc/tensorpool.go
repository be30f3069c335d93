package grpctransport

import (
	"math/bits"
	"sync"
)

// tensorPool recycles the float32 backing arrays a Server receives pushed
// gradients into. A fresh large allocation is zeroed by the Go runtime
// before the frames overwrite every element of it (about a tenth of the CPU
// time of a large push); a recycled one is not. Capacities are powers of
// two from 2^minTensorClass to 2^maxTensorClass elements; smaller requests
// are allocated (cheap), larger ones too (rare, and a pooled GiB would stay
// resident).
//
// A buffer handed to a ps.Service must only come back to the pool when the
// service holds no reference to it any more: see handler.Push.
type tensorPool struct {
	classes [maxTensorClass - minTensorClass + 1]sync.Pool
}

const (
	minTensorClass = 14 // 16 Ki float32s = 64 KiB
	maxTensorClass = 28 // 256 Mi float32s = 1 GiB
)

var gradPool = &tensorPool{}

func tensorClass(n int) int {
	if n <= 1<<minTensorClass {
		return minTensorClass
	}
	return bits.Len(uint(n - 1))
}

// get returns a slice of n float32s with unspecified contents, and whether
// it may be returned with put.
func (p *tensorPool) get(n int) ([]float32, bool) {
	if n < 1<<(minTensorClass-2) {
		return make([]float32, n), false
	}
	c := tensorClass(n)
	if c > maxTensorClass {
		return make([]float32, n), false
	}
	if b, ok := p.classes[c-minTensorClass].Get().(*[]float32); ok {
		return (*b)[:n], true
	}
	return make([]float32, n, 1<<c), true
}

// put recycles b, which must come from get (with pooled true) and be
// referenced by nobody else.
func (p *tensorPool) put(b []float32) {
	c := cap(b)
	if c < 1<<minTensorClass || c > 1<<maxTensorClass || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	p.classes[bits.Len(uint(c))-1-minTensorClass].Put(&b)
}
