package grpctransport

import (
	"unsafe"

	"github.com/flowps/flowps/ps"
	"google.golang.org/grpc/mem"
)

// pullPool holds the arrays a Server copies pulled partitions into
// (ps.PullRequest.Alloc), 64 KiB to 1 GiB, unzeroed.
var pullPool = newDirtyPool(16, 30)

// minPooledPull is the smallest part, in bytes, whose pull buffer is
// pooled; smaller ones are allocated (cheap) and left to the collector.
const minPooledPull = 64 << 10

// pullBuffers allocates one pull's values in pooled arrays and returns
// each to the pool only once gRPC has written, or dropped, every frame
// holding it. An array is a reference-counted mem.Buffer: the call holds
// one reference until release, and every frame handed to gRPC holds its
// own (mem.Buffer.Slice), which gRPC frees after writing the frame to the
// connection, possibly long after SendMsg returned (a slow reader's flow
// control holds the tail of a response). The last Free puts the array back.
// Used by one goroutine, the handler's.
type pullBuffers struct {
	roots []mem.Buffer
	vals  [][]float32
}

// alloc is the request's ps.PullRequest.Alloc.
func (b *pullBuffers) alloc(n int) []float32 {
	if 4*n < minPooledPull {
		return make([]float32, n)
	}
	p := pullPool.Get(4 * n)
	data := unsafe.SliceData(*p)
	if uintptr(unsafe.Pointer(data))%4 != 0 { // never for Go's large allocations
		return make([]float32, n)
	}
	v := unsafe.Slice((*float32)(unsafe.Pointer(data)), n)
	b.roots = append(b.roots, mem.NewBuffer(p, pullPool))
	b.vals = append(b.vals, v)
	return v
}

// rootOf returns the buffer v is, or nil when v was not allocated here.
func (b *pullBuffers) rootOf(v []float32) mem.Buffer {
	for i, w := range b.vals {
		if len(v) > 0 && ps.SameBuffer(v, w) {
			return b.roots[i]
		}
	}
	return nil
}

// release drops the call's references; arrays still in gRPC's frames go
// back to the pool when those are written.
func (b *pullBuffers) release() {
	for _, r := range b.roots {
		r.Free()
	}
	b.roots, b.vals = nil, nil
}
