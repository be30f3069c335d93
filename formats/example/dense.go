package example

import (
	"errors"
	"fmt"
	"math"

	"github.com/flowps/flowps/formats/tfrecord"
)

// Default feature names of the image conversion, as in TensorFlow's MNIST
// examples.
const (
	DefaultImageKey = "image"
	DefaultLabelKey = "label"
)

// DenseOptions say how ReadDense turns Examples into dense float32 features
// and integer labels.
type DenseOptions struct {
	// FeatureKey names the feature holding the inputs; empty means
	// DefaultImageKey. It may be a float_list (used as is), an int64_list
	// (converted to float32), or a bytes_list of exactly one value holding
	// raw uint8 values (each byte times ByteScale), as MNIST converters
	// write "image_raw". Encoded images (PNG, JPEG) are not decoded.
	FeatureKey string
	// LabelKey names the int64_list feature holding one label per example;
	// empty means DefaultLabelKey.
	LabelKey string
	// Dim is the number of inputs every example must have; zero takes it
	// from the first example.
	Dim int
	// ByteScale multiplies raw bytes of a bytes_list feature; zero maps
	// pixels to [0, 1] as float32(b)/255, the same values the MNIST IDX
	// loader produces.
	ByteScale float32
	// Limit stops after this many examples; zero reads all.
	Limit int
}

func (o DenseOptions) withDefaults() DenseOptions {
	if o.FeatureKey == "" {
		o.FeatureKey = DefaultImageKey
	}
	if o.LabelKey == "" {
		o.LabelKey = DefaultLabelKey
	}
	return o
}

var div255 = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// byteTable returns the float of each byte value: b*scale, or b/255 for a
// zero scale.
func byteTable(scale float32) *[256]float32 {
	if scale == 0 {
		return &div255
	}
	t := new([256]float32)
	for i := range t {
		t[i] = float32(i) * scale
	}
	return t
}

// Dense is a data set of fixed-size float32 inputs with integer labels.
// Example i has inputs X[i*Dim:(i+1)*Dim] and label Labels[i].
type Dense struct {
	X      []float32
	Labels []int64
	Dim    int
}

// N returns the number of examples.
func (d *Dense) N() int { return len(d.Labels) }

// Classes returns one more than the largest label (0 when empty), the class
// count of labels numbered from 0.
func (d *Dense) Classes() int {
	c := int64(-1)
	for _, l := range d.Labels {
		c = max(c, l)
	}
	return int(c + 1)
}

// AppendDense decodes one serialized Example and appends its inputs to x,
// returning the extended slice and the label. opts.Dim, if non-zero, is
// checked.
func AppendDense(x []float32, rec []byte, opts DenseOptions) ([]float32, int64, error) {
	opts = opts.withDefaults()
	e, err := Decode(rec)
	if err != nil {
		return x, 0, err
	}
	labels, err := e.Int64s(opts.LabelKey)
	if err != nil {
		return x, 0, fmt.Errorf("label: %w", err)
	}
	if len(labels) != 1 {
		return x, 0, fmt.Errorf("label %q holds %d values, want 1: %w", opts.LabelKey, len(labels), ErrFeature)
	}
	f, ok := e.Features[opts.FeatureKey]
	if !ok {
		return x, 0, fmt.Errorf("feature %q missing (have %v): %w", opts.FeatureKey, e.Keys(), ErrFeature)
	}
	start := len(x)
	switch f.Kind {
	case KindFloat:
		x = append(x, f.Floats...)
	case KindInt64:
		for _, v := range f.Int64s {
			x = append(x, float32(v))
		}
	case KindBytes:
		if len(f.Bytes) != 1 {
			return x[:start], 0, fmt.Errorf("feature %q is a bytes_list of %d values, want 1 of raw bytes: %w", opts.FeatureKey, len(f.Bytes), ErrFeature)
		}
		scale := byteTable(opts.ByteScale)
		for _, v := range f.Bytes[0] {
			x = append(x, scale[v])
		}
	default:
		return x, 0, fmt.Errorf("feature %q has no list: %w", opts.FeatureKey, ErrFeature)
	}
	if n := len(x) - start; opts.Dim > 0 && n != opts.Dim {
		return x[:start], 0, fmt.Errorf("feature %q has %d values, want %d: %w", opts.FeatureKey, n, opts.Dim, ErrFeature)
	}
	return x, labels[0], nil
}

// ReadDense reads the Examples in the TFRecord files that pattern names (a
// file, a directory of part-* files or a glob; plain, gzip or zlib, see
// tfrecord.Files) into memory. Every example must have the same number of
// inputs. Errors name the file and record.
func ReadDense(pattern string, opts DenseOptions) (*Dense, error) {
	m, err := tfrecord.Open(pattern)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	d := &Dense{Dim: opts.Dim}
	for rec, err := range m.All() {
		if err != nil {
			return nil, err
		}
		if opts.Limit > 0 && d.N() >= opts.Limit {
			break
		}
		idx := m.Index() - 1
		o := opts
		o.Dim = d.Dim
		var label int64
		start := len(d.X)
		d.X, label, err = AppendDense(d.X, rec, o)
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", m.File(), idx, err)
		}
		if d.Dim == 0 {
			d.Dim = len(d.X) - start
			if d.Dim == 0 {
				return nil, fmt.Errorf("%s: record %d: feature %q is empty: %w", m.File(), idx, opts.withDefaults().FeatureKey, ErrFeature)
			}
		}
		d.Labels = append(d.Labels, label)
	}
	if d.N() == 0 {
		return nil, fmt.Errorf("%s: no examples: %w", pattern, tfrecord.ErrNoFiles)
	}
	return d, nil
}

// ImageFormat is how WriteImages stores an image feature.
type ImageFormat int

// The image formats.
const (
	// FloatImage stores the inputs as a float_list, exactly.
	FloatImage ImageFormat = iota
	// BytesImage stores one raw byte per input, round(x*255) clamped to
	// [0, 255], as a one-value bytes_list: four times smaller, exact for
	// inputs that are multiples of 1/255 (MNIST's scaled pixels).
	BytesImage
)

// ImageOptions configure WriteImages.
type ImageOptions struct {
	// ImageKey and LabelKey name the features; empty means DefaultImageKey
	// and DefaultLabelKey.
	ImageKey, LabelKey string
	// Format of the image feature.
	Format ImageFormat
}

// WriteImages writes one Example per row of x (row-major, dim inputs per
// example) with its label, as a TFRecord MNIST converter does: the image
// under ImageKey and the label as a one-value int64_list under LabelKey.
// It does not close w.
func WriteImages(w *tfrecord.Writer, x []float32, labels []int32, dim int, opts ImageOptions) error {
	if dim <= 0 || len(x) != len(labels)*dim {
		return fmt.Errorf("example: %d inputs for %d labels of dim %d: %w", len(x), len(labels), dim, ErrFeature)
	}
	if opts.ImageKey == "" {
		opts.ImageKey = DefaultImageKey
	}
	if opts.LabelKey == "" {
		opts.LabelKey = DefaultLabelKey
	}
	if opts.ImageKey == opts.LabelKey {
		return errors.New("example: image and label keys are the same")
	}
	e := New()
	var buf []byte
	pix := make([]byte, dim)
	for i, l := range labels {
		row := x[i*dim : (i+1)*dim]
		switch opts.Format {
		case FloatImage:
			e.Set(opts.ImageKey, FloatFeature(row...))
		case BytesImage:
			for j, v := range row {
				pix[j] = byte(math.Round(float64(min(max(v, 0), 1)) * 255))
			}
			e.Set(opts.ImageKey, BytesFeature(pix))
		default:
			return fmt.Errorf("example: unknown image format %d", opts.Format)
		}
		e.Set(opts.LabelKey, Int64Feature(int64(l)))
		buf = e.AppendEncode(buf[:0])
		if err := w.Write(buf); err != nil {
			return fmt.Errorf("example: write example %d: %w", i, err)
		}
	}
	return nil
}
