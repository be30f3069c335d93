package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// SyntheticConfig describes a Gaussian-clusters classification problem:
// each class has a centre drawn from N(0, 1) per feature, scaled by
// Separation, and examples are their class centre plus N(0, Noise²) noise
// per feature. Train and test sets share the centres.
type SyntheticConfig struct {
	// Train and Test are the numbers of examples; Test may be 0.
	Train, Test int
	// Shape is the shape of one example (default [28 28], like MNIST).
	Shape []int
	// Classes is the number of classes (default 10).
	Classes int
	// Separation scales the class centres (default 1).
	Separation float64
	// Noise is the per-feature noise standard deviation (default 1).
	Noise float64
	// Seed makes the data reproducible.
	Seed uint64
}

// Synthetic generates the train and test sets SyntheticConfig describes.
// Labels are balanced (example i has class i mod Classes) in a shuffled
// order.
func Synthetic(cfg SyntheticConfig) (train, test *Dataset, err error) {
	if len(cfg.Shape) == 0 {
		cfg.Shape = []int{28, 28}
	}
	if cfg.Classes == 0 {
		cfg.Classes = 10
	}
	if cfg.Separation == 0 {
		cfg.Separation = 1
	}
	if cfg.Noise == 0 {
		cfg.Noise = 1
	}
	dim := 1
	for _, s := range cfg.Shape {
		if s < 1 {
			return nil, nil, fmt.Errorf("data: synthetic shape %v: dimensions must be ≥ 1", cfg.Shape)
		}
		dim *= s
	}
	if cfg.Train < 1 || cfg.Test < 0 || cfg.Classes < 2 || cfg.Noise < 0 || math.IsNaN(cfg.Noise+cfg.Separation) {
		return nil, nil, fmt.Errorf("data: synthetic config %+v: want Train ≥ 1, Test ≥ 0, Classes ≥ 2, Noise ≥ 0", cfg)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	centres := make([]float64, cfg.Classes*dim)
	for i := range centres {
		centres[i] = r.NormFloat64() * cfg.Separation
	}
	gen := func(n int, name string) *Dataset {
		d := &Dataset{
			Name:    name,
			X:       make([]float32, n*dim),
			Labels:  make([]int32, n),
			Shape:   append([]int(nil), cfg.Shape...),
			Classes: cfg.Classes,
		}
		for i := range d.Labels {
			d.Labels[i] = int32(i % cfg.Classes)
		}
		r.Shuffle(n, func(i, j int) { d.Labels[i], d.Labels[j] = d.Labels[j], d.Labels[i] })
		for i, c := range d.Labels {
			row, ctr := d.X[i*dim:(i+1)*dim], centres[int(c)*dim:(int(c)+1)*dim]
			for k := range row {
				row[k] = float32(ctr[k] + r.NormFloat64()*cfg.Noise)
			}
		}
		return d
	}
	train = gen(cfg.Train, "synthetic-train")
	test = gen(cfg.Test, "synthetic-test")
	return train, test, nil
}
