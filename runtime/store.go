package runtime

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
)

// InitKind names a variable initializer. The names equal those of package
// ps, so an adapter converts them with a plain string conversion.
type InitKind string

// The initializers.
const (
	InitZeros         InitKind = "zeros"
	InitConstant      InitKind = "constant"
	InitUniform       InitKind = "uniform"
	InitNormal        InitKind = "normal"
	InitGlorotUniform InitKind = "glorot_uniform"
)

// Initializer says how a variable's initial values are drawn. Zero value:
// zeros.
type Initializer struct {
	Kind   InitKind
	Value  float32 // constant
	Min    float32 // uniform
	Max    float32 // uniform
	Mean   float32 // normal
	Stddev float32 // normal
	Seed   int64
}

// ZerosInit initialises to 0.
func ZerosInit() Initializer { return Initializer{Kind: InitZeros} }

// ConstantInit initialises every element to v.
func ConstantInit(v float32) Initializer { return Initializer{Kind: InitConstant, Value: v} }

// UniformInit draws from U[min, max).
func UniformInit(min, max float32, seed int64) Initializer {
	return Initializer{Kind: InitUniform, Min: min, Max: max, Seed: seed}
}

// NormalInit draws from N(mean, stddev²).
func NormalInit(mean, stddev float32, seed int64) Initializer {
	return Initializer{Kind: InitNormal, Mean: mean, Stddev: stddev, Seed: seed}
}

// GlorotUniform draws from U[-l, l) with l = sqrt(6/(fanIn+fanOut)), where
// fanIn and fanOut come from the variable's shape (for a conv filter
// [kh,kw,in,out]: kh*kw*in and kh*kw*out).
func GlorotUniform(seed int64) Initializer { return Initializer{Kind: InitGlorotUniform, Seed: seed} }

// VariableDef describes a variable: a named float32 tensor of rank ≥ 1
// whose values live in a VarStore, outside the runtime.
type VariableDef struct {
	Name  string
	Shape Shape
	Init  Initializer
	// Sparse marks variables read only through Gather (embeddings): the
	// session pulls and pushes them by rows. Set by the plan; a VarStore
	// may use it to choose a layout.
	Sparse bool
}

// Fill writes the initial values of a variable of this definition into dst
// (len = elements of Shape). Values depend only on the definition, so every
// store computes the same ones.
func (d *VariableDef) Fill(dst []float32) error {
	if n := d.Shape.NumElements(); n != len(dst) {
		return errorf(ErrShape, "init %s: shape %v has %d elements, buffer %d", d.Name, d.Shape, n, len(dst))
	}
	r := rand.New(rand.NewPCG(uint64(d.Init.Seed), fnv64(d.Name)))
	switch d.Init.Kind {
	case "", InitZeros:
		clear(dst)
	case InitConstant:
		for i := range dst {
			dst[i] = d.Init.Value
		}
	case InitUniform:
		for i := range dst {
			dst[i] = d.Init.Min + (d.Init.Max-d.Init.Min)*r.Float32()
		}
	case InitNormal:
		for i := range dst {
			dst[i] = d.Init.Mean + d.Init.Stddev*float32(r.NormFloat64())
		}
	case InitGlorotUniform:
		fanIn, fanOut := fans(d.Shape)
		l := float32(math.Sqrt(6 / float64(fanIn+fanOut)))
		for i := range dst {
			dst[i] = -l + 2*l*r.Float32()
		}
	default:
		return errorf(ErrInvalidArgument, "init %s: unknown initializer %q", d.Name, d.Init.Kind)
	}
	return nil
}

func fans(s Shape) (in, out int) {
	switch len(s) {
	case 0:
		return 1, 1
	case 1:
		return s[0], s[0]
	case 2:
		return s[0], s[1]
	}
	rf := 1
	for _, d := range s[:len(s)-2] {
		rf *= d
	}
	return rf * s[len(s)-2], rf * s[len(s)-1]
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// PullRequest asks for one variable's values. Rows == nil asks for the
// whole variable and Dst has its element count; otherwise Rows are row
// indices (distinct, each < Shape[0]) and Dst holds len(Rows) rows.
type PullRequest struct {
	Name string
	Rows []int64
	Dst  []float32
}

// Gradient is one variable's gradient. Rows == nil: Values covers the
// whole variable. Otherwise Values holds len(Rows) rows for the given
// distinct row indices (sorted ascending), as Gather's gradient produces.
type Gradient struct {
	Name   string
	Rows   []int64
	Values []float32
}

// VarStore holds a graph's variables outside the runtime: a parameter
// server client, or MemStore. The session calls it from several goroutines
// at once; implementations must be safe for concurrent use.
//
// Buffers: Pull writes into the Dst buffers the caller owns; Push must not
// keep g.Values or g.Rows after it returns (the session reuses them).
type VarStore interface {
	// Create registers variables; it is idempotent (creating an existing
	// variable with the same definition succeeds).
	Create(ctx context.Context, vars []VariableDef) error
	// Pull fills each request's Dst with values as of step (a store in
	// sync mode may wait until the variables reach that version).
	Pull(ctx context.Context, step int64, reqs []PullRequest) error
	// Push sends one gradient computed at step. The session calls it as
	// soon as each gradient exists, concurrently with the rest of
	// backprop and with other pushes.
	Push(ctx context.Context, step int64, g Gradient) error
}

// MemStore is an in-memory VarStore that applies plain SGD on every push:
// w -= LR * g. It is meant for tests and examples.
type MemStore struct {
	// LR is the learning rate.
	LR float32

	mu   sync.RWMutex
	vars map[string]*memVar
}

type memVar struct {
	mu     sync.Mutex
	def    VariableDef
	val    []float32
	pushes int64
}

// NewMemStore returns an empty store with learning rate lr.
func NewMemStore(lr float32) *MemStore { return &MemStore{LR: lr, vars: map[string]*memVar{}} }

// Create implements VarStore.
func (m *MemStore) Create(_ context.Context, vars []VariableDef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range vars {
		if old, ok := m.vars[d.Name]; ok {
			if !old.def.Shape.Equal(d.Shape) {
				return errorf(ErrShape, "create %s: exists with shape %v, asked %v", d.Name, old.def.Shape, d.Shape)
			}
			continue
		}
		if len(d.Shape) == 0 || !d.Shape.Known() {
			return errorf(ErrShape, "create %s: bad variable shape %v", d.Name, d.Shape)
		}
		v := &memVar{def: d, val: make([]float32, d.Shape.NumElements())}
		v.def.Shape = d.Shape.Clone()
		if err := v.def.Fill(v.val); err != nil {
			return err
		}
		m.vars[d.Name] = v
	}
	return nil
}

func (m *MemStore) get(name string) (*memVar, error) {
	m.mu.RLock()
	v := m.vars[name]
	m.mu.RUnlock()
	if v == nil {
		return nil, fmt.Errorf("memstore: unknown variable %q: %w", name, ErrInvalidArgument)
	}
	return v, nil
}

// Pull implements VarStore.
func (m *MemStore) Pull(ctx context.Context, _ int64, reqs []PullRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range reqs {
		v, err := m.get(r.Name)
		if err != nil {
			return err
		}
		v.mu.Lock()
		err = copyRows(v, r.Rows, r.Dst, true, 0)
		v.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// Push implements VarStore: it applies w -= LR*g at once.
func (m *MemStore) Push(ctx context.Context, _ int64, g Gradient) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := m.get(g.Name)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pushes++
	return copyRows(v, g.Rows, g.Values, false, m.LR)
}

// copyRows reads rows into buf (pull) or applies buf as a gradient.
func copyRows(v *memVar, rows []int64, buf []float32, pull bool, lr float32) error {
	if rows == nil {
		if len(buf) != len(v.val) {
			return errorf(ErrShape, "memstore %s: %d values, variable has %d", v.def.Name, len(buf), len(v.val))
		}
		if pull {
			copy(buf, v.val)
		} else {
			axpy(-lr, buf, v.val)
		}
		return nil
	}
	rs := len(v.val) / v.def.Shape[0]
	if len(buf) != len(rows)*rs {
		return errorf(ErrShape, "memstore %s: %d values for %d rows of %d", v.def.Name, len(buf), len(rows), rs)
	}
	for i, r := range rows {
		if r < 0 || r >= int64(v.def.Shape[0]) {
			return errorf(ErrOutOfRange, "memstore %s: row %d of %d", v.def.Name, r, v.def.Shape[0])
		}
		if pull {
			copy(buf[i*rs:(i+1)*rs], v.val[int(r)*rs:])
		} else {
			axpy(-lr, buf[i*rs:(i+1)*rs], v.val[int(r)*rs:int(r+1)*rs])
		}
	}
	return nil
}

// Value returns a copy of a variable's current values, or nil if unknown.
func (m *MemStore) Value(name string) []float32 {
	v, err := m.get(name)
	if err != nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]float32(nil), v.val...)
}

// Set overwrites a variable's values (len must match).
func (m *MemStore) Set(name string, vals []float32) error {
	v, err := m.get(name)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(vals) != len(v.val) {
		return errorf(ErrShape, "memstore set %s: %d values, variable has %d", name, len(vals), len(v.val))
	}
	copy(v.val, vals)
	return nil
}

// Pushes returns how many gradients the variable has received.
func (m *MemStore) Pushes(name string) int64 {
	v, err := m.get(name)
	if err != nil {
		return 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pushes
}

// Names returns the variables' names, sorted.
func (m *MemStore) Names() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.vars))
	for k := range m.vars {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
