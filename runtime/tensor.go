package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// DType is the element type of a tensor.
type DType uint8

// The element types. Float32 is the only differentiable type; Int32 and
// Int64 carry labels and indices.
const (
	Float32 DType = iota + 1
	Int32
	Int64
)

// String returns "float32", "int32" or "int64".
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

func (d DType) isInt() bool { return d == Int32 || d == Int64 }

// Shape is a tensor shape. At graph-build time a dimension may be -1
// (unknown, typically the batch dimension); at run time every dimension is
// known. A nil or empty Shape is a scalar.
type Shape []int

// String renders the shape as [?,784] with ? for unknown dimensions.
func (s Shape) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		if d < 0 {
			b.WriteByte('?')
		} else {
			b.WriteString(strconv.Itoa(d))
		}
	}
	b.WriteByte(']')
	return b.String()
}

// Rank is the number of dimensions.
func (s Shape) Rank() int { return len(s) }

// Known reports whether every dimension is known (≥ 0).
func (s Shape) Known() bool {
	for _, d := range s {
		if d < 0 {
			return false
		}
	}
	return true
}

// NumElements is the product of the dimensions, or -1 if any is unknown.
func (s Shape) NumElements() int {
	n := 1
	for _, d := range s {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// Equal reports whether two shapes are identical (unknown dimensions must
// be unknown in both).
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Compatible reports whether a run-time shape (or another build-time shape)
// fits this one: same rank, and equal wherever both dimensions are known.
func (s Shape) Compatible(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] >= 0 && o[i] >= 0 && s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not alias s.
func (s Shape) Clone() Shape {
	if s == nil {
		return nil
	}
	return append(Shape(make([]int, 0, len(s))), s...)
}

// Tensor is a value: a dense n-dimensional array in row-major order, or a
// sparse set of rows of a larger matrix (an embedding gradient).
//
// Float32 tensors keep their elements in F. Integer tensors of either
// integer dtype keep theirs in I (as int64; the dtype records what the graph
// declared and what Cast produces).
//
// A sparse tensor has Rows != nil: it holds len(Rows) rows of a tensor whose
// full shape is DenseShape; Shape is [len(Rows), DenseShape[1:]...] and F
// holds the rows' values in the order of Rows. Gradients of Gather are
// sparse; everything else is dense.
//
// Tensors passed to Session.Run as feeds are read, never written or kept.
// Tensors returned by Session.Run belong to the caller.
type Tensor struct {
	DType DType
	Shape Shape
	F     []float32
	I     []int64

	Rows       []int64
	DenseShape Shape
}

// NewTensor returns a float32 tensor of the given shape over data (not
// copied). It returns an error if len(data) does not match the shape.
func NewTensor(shape Shape, data []float32) (*Tensor, error) {
	if !shape.Known() {
		return nil, fmt.Errorf("runtime: tensor shape %v has unknown dimensions", shape)
	}
	if n := shape.NumElements(); n != len(data) {
		return nil, fmt.Errorf("runtime: tensor shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{DType: Float32, Shape: shape.Clone(), F: data}, nil
}

// NewIntTensor returns an integer tensor (Int32 or Int64) over data (not
// copied).
func NewIntTensor(dtype DType, shape Shape, data []int64) (*Tensor, error) {
	if !dtype.isInt() {
		return nil, fmt.Errorf("runtime: NewIntTensor with dtype %v", dtype)
	}
	if !shape.Known() {
		return nil, fmt.Errorf("runtime: tensor shape %v has unknown dimensions", shape)
	}
	if n := shape.NumElements(); n != len(data) {
		return nil, fmt.Errorf("runtime: tensor shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{DType: dtype, Shape: shape.Clone(), I: data}, nil
}

// Scalar returns a float32 scalar tensor.
func Scalar(v float32) *Tensor { return &Tensor{DType: Float32, F: []float32{v}} }

// Zeros returns a float32 tensor of zeros.
func Zeros(shape ...int) *Tensor {
	s := Shape(shape)
	n := s.NumElements()
	if n < 0 {
		n = 0
	}
	return &Tensor{DType: Float32, Shape: s.Clone(), F: make([]float32, n)}
}

// IsSparse reports whether t holds a set of rows (see Tensor).
func (t *Tensor) IsSparse() bool { return t != nil && t.Rows != nil }

// Len is the number of elements stored.
func (t *Tensor) Len() int {
	if t.DType == Float32 {
		return len(t.F)
	}
	return len(t.I)
}

// Float returns the single value of a float32 tensor with one element, or
// NaN-free 0 and false otherwise. Convenient for fetched losses.
func (t *Tensor) Float() (float32, bool) {
	if t == nil || t.DType != Float32 || len(t.F) != 1 {
		return 0, false
	}
	return t.F[0], true
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	if t == nil {
		return nil
	}
	c := &Tensor{DType: t.DType, Shape: t.Shape.Clone(), DenseShape: t.DenseShape.Clone()}
	if t.F != nil {
		c.F = append([]float32(nil), t.F...)
	}
	if t.I != nil {
		c.I = append([]int64(nil), t.I...)
	}
	if t.Rows != nil {
		c.Rows = append([]int64(nil), t.Rows...)
	}
	return c
}

// String summarises the tensor (dtype, shape and up to 8 values).
func (t *Tensor) String() string {
	if t == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v%v", t.DType, t.Shape)
	if t.Rows != nil {
		fmt.Fprintf(&b, " rows of %v", t.DenseShape)
	}
	b.WriteString(" [")
	n := t.Len()
	for i := 0; i < n && i < 8; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		if t.DType == Float32 {
			b.WriteString(strconv.FormatFloat(float64(t.F[i]), 'g', 5, 32))
		} else {
			b.WriteString(strconv.FormatInt(t.I[i], 10))
		}
	}
	if n > 8 {
		b.WriteString(" …")
	}
	b.WriteByte(']')
	return b.String()
}
