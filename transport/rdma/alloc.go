package rdma

import (
	"context"
	"sort"
	"sync"

	"github.com/flowps/flowps/ps"
)

// span is a run of pages [start, start+n).
type span struct{ start, n int }

// extents hands out page runs of a staging area, first fit, with a bound on
// how many are out at once: these are the credits of a connection. alloc
// blocks until a run is free.
type extents struct {
	mu       sync.Mutex
	total    int
	free     []span // sorted by start, coalesced
	out      int
	maxOut   int
	released chan struct{} // closed and replaced on every free
}

func newExtents(totalPages, maxOut int) *extents {
	return &extents{
		total:    totalPages,
		free:     []span{{0, totalPages}},
		maxOut:   maxOut,
		released: make(chan struct{}),
	}
}

// alloc reserves n pages and returns the first page index.
func (e *extents) alloc(ctx context.Context, n int) (int, error) {
	if n <= 0 || n > e.total {
		return 0, ps.Errorf(ps.ErrTooLarge, "rdma: frame of %d pages exceeds the %d-page staging area", n, e.total)
	}
	for {
		e.mu.Lock()
		if e.out < e.maxOut {
			for i, s := range e.free {
				if s.n >= n {
					if s.n == n {
						e.free = append(e.free[:i], e.free[i+1:]...)
					} else {
						e.free[i] = span{s.start + n, s.n - n}
					}
					e.out++
					e.mu.Unlock()
					return s.start, nil
				}
			}
		}
		wait := e.released
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-wait:
		}
	}
}

// release returns a run that alloc handed out.
func (e *extents) release(start, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := sort.Search(len(e.free), func(i int) bool { return e.free[i].start > start })
	e.free = append(e.free, span{})
	copy(e.free[i+1:], e.free[i:])
	e.free[i] = span{start, n}
	// Coalesce with the neighbours.
	if i+1 < len(e.free) && e.free[i].start+e.free[i].n == e.free[i+1].start {
		e.free[i].n += e.free[i+1].n
		e.free = append(e.free[:i+1], e.free[i+2:]...)
	}
	if i > 0 && e.free[i-1].start+e.free[i-1].n == e.free[i].start {
		e.free[i-1].n += e.free[i].n
		e.free = append(e.free[:i], e.free[i+1:]...)
	}
	e.out--
	close(e.released)
	e.released = make(chan struct{})
}

// freePages reports the free page count (tests).
func (e *extents) freePages() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.free {
		n += s.n
	}
	return n
}
