package data

import (
	"fmt"
	"math/rand/v2"
)

// Dataset is a labelled classification data set held in memory. Example i
// has features X[i*Dim() : (i+1)*Dim()] (row-major, float32) and label
// Labels[i] in [0, Classes).
type Dataset struct {
	// Name describes the source, for messages.
	Name string
	// X holds N()×Dim() features.
	X []float32
	// Labels holds one class per example.
	Labels []int32
	// Shape is the shape of one example, e.g. [28 28] for MNIST images;
	// its product is Dim().
	Shape []int
	// Classes is the number of classes.
	Classes int
}

// N is the number of examples.
func (d *Dataset) N() int { return len(d.Labels) }

// Dim is the number of features of one example (the product of Shape).
func (d *Dataset) Dim() int {
	n := 1
	for _, s := range d.Shape {
		n *= s
	}
	return n
}

// Validate checks that X, Labels, Shape and Classes agree.
func (d *Dataset) Validate() error {
	if len(d.Shape) == 0 || d.Dim() <= 0 {
		return fmt.Errorf("%w: %s: bad example shape %v", ErrFormat, d.Name, d.Shape)
	}
	if len(d.X) != d.N()*d.Dim() {
		return fmt.Errorf("%w: %s: %d feature values for %d examples of %d", ErrFormat, d.Name, len(d.X), d.N(), d.Dim())
	}
	if d.Classes < 1 {
		return fmt.Errorf("%w: %s: %d classes", ErrFormat, d.Name, d.Classes)
	}
	for i, l := range d.Labels {
		if l < 0 || int(l) >= d.Classes {
			return fmt.Errorf("%w: %s: label %d of example %d outside [0, %d)", ErrFormat, d.Name, l, i, d.Classes)
		}
	}
	return nil
}

// Subset returns the examples at idx, copied, in that order.
func (d *Dataset) Subset(idx []int) *Dataset {
	x, y := d.Gather(idx, nil, nil)
	return &Dataset{Name: d.Name, X: x, Labels: y, Shape: append([]int(nil), d.Shape...), Classes: d.Classes}
}

// Slice returns examples [lo, hi) sharing d's storage.
func (d *Dataset) Slice(lo, hi int) *Dataset {
	dim := d.Dim()
	return &Dataset{
		Name:    fmt.Sprintf("%s[%d:%d]", d.Name, lo, hi),
		X:       d.X[lo*dim : hi*dim : hi*dim],
		Labels:  d.Labels[lo:hi:hi],
		Shape:   d.Shape,
		Classes: d.Classes,
	}
}

// Shard returns worker rank's contiguous share of d when it is split among
// workers: shard sizes differ by at most one example and together cover d.
// The shard shares d's storage.
func (d *Dataset) Shard(rank, workers int) (*Dataset, error) {
	if workers < 1 || rank < 0 || rank >= workers {
		return nil, fmt.Errorf("data: shard rank %d of %d workers: want 0 ≤ rank < workers", rank, workers)
	}
	n := d.N()
	lo := rank * (n / workers)
	lo += min(rank, n%workers)
	size := n / workers
	if rank < n%workers {
		size++
	}
	return d.Slice(lo, lo+size), nil
}

// Gather copies the examples at idx into x and y (reusing their storage
// when large enough) and returns them: x holds len(idx)×Dim() values.
func (d *Dataset) Gather(idx []int, x []float32, y []int32) ([]float32, []int32) {
	dim := d.Dim()
	x = grow(x, len(idx)*dim)
	y = growInt32(y, len(idx))
	for j, i := range idx {
		copy(x[j*dim:(j+1)*dim], d.X[i*dim:(i+1)*dim])
		y[j] = d.Labels[i]
	}
	return x, y
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growInt32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

// Sampler deals the examples of each epoch to workers, as PyTorch's
// DistributedSampler does: all N indices are shuffled with (Seed, epoch),
// worker Rank takes every Workers-th of them starting at Rank, and its share
// is cut into batches of Batch, dropping the incomplete last batch.
//
// Each epoch the workers' shares are disjoint and of equal size, and batch t
// of all workers together is exactly batch t of a single worker with batch
// Workers×Batch and the same seed. So the mean of the workers' gradients in
// a synchronous step equals the gradient of the combined batch when the loss
// is a mean: sync training with W workers at batch B follows the same path
// as one worker at batch W·B.
type Sampler struct {
	N, Batch, Rank, Workers int
	Seed                    uint64
	// NoShuffle keeps the data in order (useful for evaluation and tests).
	NoShuffle bool
}

// NewSampler returns a shuffling sampler and checks its arguments: there
// must be at least one full batch per worker.
func NewSampler(n, batch, rank, workers int, seed uint64) (*Sampler, error) {
	s := &Sampler{N: n, Batch: batch, Rank: rank, Workers: workers, Seed: seed}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sampler) validate() error {
	switch {
	case s.Workers < 1 || s.Rank < 0 || s.Rank >= s.Workers:
		return fmt.Errorf("data: sampler rank %d of %d workers: want 0 ≤ rank < workers", s.Rank, s.Workers)
	case s.Batch < 1:
		return fmt.Errorf("data: batch size %d: want ≥ 1", s.Batch)
	case s.N < s.Batch*s.Workers:
		return fmt.Errorf("data: %d examples are fewer than one batch of %d for each of %d workers", s.N, s.Batch, s.Workers)
	}
	return nil
}

// StepsPerEpoch is the number of batches each worker gets per epoch.
func (s *Sampler) StepsPerEpoch() int { return s.N / s.Workers / s.Batch }

// Epoch returns this worker's batches for epoch e (0-based), each a slice
// of example indices.
func (s *Sampler) Epoch(e int) [][]int {
	perm := make([]int, s.N)
	for i := range perm {
		perm[i] = i
	}
	if !s.NoShuffle {
		r := rand.New(rand.NewPCG(s.Seed, uint64(e)+0x9e3779b97f4a7c15))
		r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	}
	steps := s.StepsPerEpoch()
	mine := make([]int, 0, steps*s.Batch)
	for i := s.Rank; i < len(perm) && len(mine) < steps*s.Batch; i += s.Workers {
		mine = append(mine, perm[i])
	}
	out := make([][]int, steps)
	for t := range out {
		out[t] = mine[t*s.Batch : (t+1)*s.Batch : (t+1)*s.Batch]
	}
	return out
}
