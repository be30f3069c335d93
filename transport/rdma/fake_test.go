package rdma

import (
	"context"
	"fmt"
	"sync"

	"github.com/flowps/flowps/ps"
)

// fakeService is a small in-memory ps.Service: each partition is a float32
// vector; a push adds the gradient (so tests can count applications) and
// bumps the version; (ClientID, Seq) pairs are applied once.
type fakeService struct {
	mu      sync.Mutex
	parts   map[ps.PartKey]*fakePart
	seen    map[string]map[uint64][]int64
	pushes  int // pushes applied (not deduplicated ones)
	changed chan struct{}
}

type fakePart struct {
	version int64
	rowSize int
	values  []float32
}

func newFakeService() *fakeService {
	return &fakeService{parts: map[ps.PartKey]*fakePart{}, seen: map[string]map[uint64][]int64{}, changed: make(chan struct{})}
}

func (f *fakeService) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	if len(req.Spec.Shape) == 0 || req.Spec.Name == "" {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "create %q: empty name or shape", req.Spec.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rowSize := int(req.Spec.RowSize())
	ranges := req.Spec.Partitions()
	resp := &ps.CreateResponse{}
	for _, i := range req.Parts {
		if i < 0 || i >= len(ranges) {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "create %s: no partition %d", req.Spec.Name, i)
		}
		k := ps.PartKey{Var: req.Spec.Name, Index: i}
		p := f.parts[k]
		if p == nil {
			n := int(ranges[i].End-ranges[i].Start) * rowSize
			p = &fakePart{rowSize: rowSize, values: make([]float32, n)}
			for j := range p.values {
				p.values[j] = req.Spec.Init.Value
			}
			f.parts[k] = p
		} else if p.rowSize != rowSize {
			return nil, ps.Errorf(ps.ErrSpecMismatch, "create %s: row size %d, have %d", k, rowSize, p.rowSize)
		}
		resp.Versions = append(resp.Versions, p.version)
	}
	return resp, nil
}

func (f *fakeService) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	for {
		f.mu.Lock()
		resp, wait, err := f.pullLocked(req)
		ch := f.changed
		f.mu.Unlock()
		if !wait {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pull waiting for a version: %w", ctx.Err())
		case <-ch:
		}
	}
}

func (f *fakeService) pullLocked(req *ps.PullRequest) (*ps.PullResponse, bool, error) {
	resp := &ps.PullResponse{}
	for _, pp := range req.Parts {
		p := f.parts[pp.Key]
		if p == nil {
			return nil, false, ps.Errorf(ps.ErrUnknownVariable, "pull %s", pp.Key)
		}
		if p.version < pp.MinVersion {
			return nil, true, nil
		}
		var vals []float32
		if pp.Rows == nil {
			vals = append([]float32(nil), p.values...)
		} else {
			for _, r := range pp.Rows {
				if r < 0 || int(r+1)*p.rowSize > len(p.values) {
					return nil, false, ps.Errorf(ps.ErrInvalidArgument, "pull %s: row %d", pp.Key, r)
				}
				vals = append(vals, p.values[int(r)*p.rowSize:int(r+1)*p.rowSize]...)
			}
		}
		resp.Parts = append(resp.Parts, ps.PartValues{Key: pp.Key, Version: p.version, Values: vals})
	}
	return resp, false, nil
}

func (f *fakeService) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.seen[req.ClientID][req.Seq]; ok && req.ClientID != "" {
		return &ps.PushResponse{Versions: v}, nil
	}
	for _, pp := range req.Parts {
		p := f.parts[pp.Key]
		if p == nil {
			return nil, ps.Errorf(ps.ErrUnknownVariable, "push %s", pp.Key)
		}
		want := len(p.values)
		if pp.Rows != nil {
			want = len(pp.Rows) * p.rowSize
		}
		if len(pp.Grad) != want {
			return nil, ps.Errorf(ps.ErrShapeMismatch, "push %s: %d values, want %d", pp.Key, len(pp.Grad), want)
		}
	}
	resp := &ps.PushResponse{}
	for _, pp := range req.Parts {
		p := f.parts[pp.Key]
		if pp.Rows == nil {
			for i, g := range pp.Grad {
				p.values[i] += g
			}
		} else {
			for j, r := range pp.Rows {
				for i := 0; i < p.rowSize; i++ {
					p.values[int(r)*p.rowSize+i] += pp.Grad[j*p.rowSize+i]
				}
			}
		}
		p.version++
		resp.Versions = append(resp.Versions, p.version)
	}
	f.pushes++
	if req.ClientID != "" {
		if f.seen[req.ClientID] == nil {
			f.seen[req.ClientID] = map[uint64][]int64{}
		}
		f.seen[req.ClientID][req.Seq] = resp.Versions
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return resp, nil
}

func (f *fakeService) Close() error { return nil }

func (f *fakeService) applied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pushes
}
