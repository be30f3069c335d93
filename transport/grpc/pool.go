package grpctransport

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// dirtyPool is a mem.BufferPool that does not zero recycled buffers. gRPC's
// default pool clears every buffer it hands out; gRPC fills each receive
// buffer completely before reading it, so the clearing is pure cost (about
// a tenth of the CPU time of a large push). Sizes are grouped in powers of
// two from 2^min to 2^max bytes; other sizes are allocated (and dropped
// when put back).
type dirtyPool struct {
	min, max int
	classes  []sync.Pool
}

func newDirtyPool(minClass, maxClass int) *dirtyPool {
	return &dirtyPool{min: minClass, max: maxClass, classes: make([]sync.Pool, maxClass-minClass+1)}
}

// sharedPool holds gRPC's own buffers (receive buffers, encoded frames),
// 256 B to 4 MiB.
var sharedPool = newDirtyPool(8, 22)

var _ mem.BufferPool = sharedPool

// class returns the power of two that fits n.
func (p *dirtyPool) class(n int) int {
	if n <= 1<<p.min {
		return p.min
	}
	return bits.Len(uint(n - 1))
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := p.class(n)
	if c > p.max {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c-p.min].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<p.min || c > 1<<p.max || c&(c-1) != 0 {
		return
	}
	p.classes[bits.Len(uint(c))-1-p.min].Put(b)
}
