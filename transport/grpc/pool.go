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
// two from 256 B to 4 MiB; other sizes are allocated.
type dirtyPool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

const (
	minClass = 8  // 256 B
	maxClass = 22 // 4 MiB
)

var sharedPool = &dirtyPool{}

var _ mem.BufferPool = sharedPool

// class returns the power of two that fits n.
func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := class(n)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c-minClass].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minClass || c > 1<<maxClass || c&(c-1) != 0 {
		return
	}
	p.classes[bits.Len(uint(c))-1-minClass].Put(b)
}
