package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/formats/example"
	"github.com/flowps/flowps/formats/libsvm"
	"github.com/flowps/flowps/formats/tfrecord"
)

// Data source kinds a --data or --test-data argument resolves to.
const (
	kindMNIST     = "mnist"     // MNIST IDX files (the module cache, $FLOWPS_MNIST_DIR or a DIR)
	kindSynthetic = "synthetic" // Gaussian clusters
	kindTFRecord  = "tfrecord"  // tf.train.Example records: file, directory of part-* files or glob
	kindLibSVM    = "libsvm"    // LIBSVM text file
)

// dataSource is a parsed --data or --test-data argument.
type dataSource struct {
	Kind string
	Path string // file, directory or glob; "mnist" for the default MNIST lookup
}

func (s dataSource) String() string {
	if s.Kind == kindSynthetic || (s.Kind == kindMNIST && s.Path == "mnist") {
		return s.Kind
	}
	return s.Kind + ":" + s.Path
}

// parseSource resolves a --data argument. Explicit prefixes name the
// format: "tfrecord:PATTERN", "libsvm:PATH", "mnist:DIR". Without a prefix,
// "mnist" and "synthetic" are the keywords; a glob is TFRecord; a directory
// is MNIST when it holds train-images-idx3-ubyte[.gz], TFRecord otherwise;
// a file is TFRecord when its first 12 bytes are a valid TFRecord header or
// a gzip/zlib stream, LibSVM otherwise.
func parseSource(spec string) (dataSource, error) {
	if spec == "" {
		return dataSource{}, errors.New("empty data source")
	}
	if kind, path, ok := strings.Cut(spec, ":"); ok {
		switch kind {
		case kindTFRecord, kindLibSVM, kindMNIST:
			if path == "" {
				return dataSource{}, fmt.Errorf("%q: no path after %s:", spec, kind)
			}
			return dataSource{Kind: kind, Path: path}, nil
		}
	}
	switch spec {
	case "mnist":
		return dataSource{Kind: kindMNIST, Path: "mnist"}, nil
	case "synthetic":
		return dataSource{Kind: kindSynthetic}, nil
	}
	st, err := os.Stat(spec)
	if err != nil {
		if strings.ContainsAny(spec, "*?[") {
			return dataSource{Kind: kindTFRecord, Path: spec}, nil
		}
		return dataSource{}, fmt.Errorf("%w: %q is neither mnist, synthetic, an existing file or directory, nor a glob: %v", data.ErrNotFound, spec, err)
	}
	if st.IsDir() {
		for _, n := range []string{data.MNISTTrainImages, data.MNISTTrainImages + ".gz"} {
			if _, err := os.Stat(filepath.Join(spec, n)); err == nil {
				return dataSource{Kind: kindMNIST, Path: spec}, nil
			}
		}
		return dataSource{Kind: kindTFRecord, Path: spec}, nil
	}
	isRec, err := looksLikeTFRecord(spec)
	if err != nil {
		return dataSource{}, err
	}
	if isRec {
		return dataSource{Kind: kindTFRecord, Path: spec}, nil
	}
	return dataSource{Kind: kindLibSVM, Path: spec}, nil
}

// looksLikeTFRecord reports whether the file starts like a TFRecord stream:
// a gzip or zlib header, or a length whose masked CRC32C follows it.
func looksLikeTFRecord(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var hdr [12]byte
	n, err := io.ReadFull(f, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	b := hdr[:n]
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return true, nil // gzip
	}
	if len(b) >= 2 && b[0] == 0x78 && (b[1] == 0x01 || b[1] == 0x5e || b[1] == 0x9c || b[1] == 0xda) {
		return true, nil // zlib with a 32 KiB window: 'x' and a control byte, never text
	}
	if len(b) < 12 {
		return false, nil
	}
	return binary.LittleEndian.Uint32(b[8:12]) == tfrecord.MaskedCRC(b[:8]), nil
}

// dataOptions are the flags that say how to read TFRecord and LibSVM data.
type dataOptions struct {
	FeatureKey, LabelKey string
	Shape                []int   // example shape from --data-shape; nil: flat
	Holdout              float64 // test fraction when there is no --test-data
	Seed                 int64
}

// loadData returns the training and test sets that --data and --test-data
// name.
func loadData(ctx context.Context, cfg *config) (train, test *data.Dataset, err error) {
	src, err := parseSource(cfg.Data)
	if err != nil {
		return nil, nil, err
	}
	opts := dataOptions{FeatureKey: cfg.FeatureKey, LabelKey: cfg.LabelKey, Shape: cfg.shape, Holdout: cfg.Holdout, Seed: cfg.Seed}
	switch src.Kind {
	case kindSynthetic:
		train, test, err = data.Synthetic(data.SyntheticConfig{
			Train: 6000, Test: 1000, Shape: []int{28, 28}, Classes: 10,
			Separation: 0.15, Noise: 1, Seed: uint64(cfg.Seed),
		})
	case kindMNIST:
		var dir string
		if dir, err = data.ResolveDir(ctx, src.Path); err == nil {
			train, test, err = data.LoadMNIST(dir)
		}
	case kindTFRecord:
		train, err = loadTFRecord(src.Path, opts, 0)
	case kindLibSVM:
		var ls *libsvm.Data
		if ls, err = libsvm.ReadFile(src.Path, libsvm.Options{}); err == nil {
			var values []float64
			train, values, err = libsvmDataset(ls, ls.Dim, nil, src.Path, opts)
			if err == nil && cfg.TestData != "" {
				test, err = loadLibSVMTest(cfg.TestData, ls.Dim, values, opts)
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if len(cfg.shape) > 0 && (src.Kind == kindMNIST || src.Kind == kindSynthetic) {
		if train, err = reshape(train, cfg.shape); err != nil {
			return nil, nil, err
		}
		if test, err = reshape(test, cfg.shape); err != nil {
			return nil, nil, err
		}
	}
	if cfg.TestData != "" && test == nil {
		ts, err := parseSource(cfg.TestData)
		if err != nil {
			return nil, nil, fmt.Errorf("--test-data: %w", err)
		}
		switch ts.Kind {
		case kindTFRecord:
			test, err = loadTFRecord(ts.Path, opts, train.Dim())
		case kindLibSVM:
			return nil, nil, fmt.Errorf("--test-data %s is LibSVM but --data %s is not: give both in one format", cfg.TestData, cfg.Data)
		default:
			return nil, nil, fmt.Errorf("--test-data %s: want a TFRecord or LibSVM source (MNIST and synthetic data bring their own test set)", cfg.TestData)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("--test-data: %w", err)
		}
	}
	if test == nil {
		if train, test, err = holdout(train, opts.Holdout, opts.Seed); err != nil {
			return nil, nil, err
		}
	}
	if test.Dim() != train.Dim() {
		return nil, nil, fmt.Errorf("%w: test examples have %d features (%v), training examples %d (%v)", data.ErrFormat, test.Dim(), test.Shape, train.Dim(), train.Shape)
	}
	test.Shape = train.Shape
	classes := max(train.Classes, test.Classes)
	train.Classes, test.Classes = classes, classes
	return train, test, nil
}

// loadTFRecord reads tf.train.Example records into a Dataset; dim, if
// non-zero, is the number of features every example must have.
func loadTFRecord(pattern string, opts dataOptions, dim int) (*data.Dataset, error) {
	if dim == 0 && len(opts.Shape) > 0 {
		dim = prod(opts.Shape)
	}
	d, err := example.ReadDense(pattern, example.DenseOptions{FeatureKey: opts.FeatureKey, LabelKey: opts.LabelKey, Dim: dim})
	if err != nil {
		return nil, err
	}
	labels := make([]int32, d.N())
	for i, l := range d.Labels {
		if l < 0 || l > 1<<20 {
			return nil, fmt.Errorf("%w: %s: example %d has label %d; want a class number in [0, 2^20]", data.ErrFormat, pattern, i, l)
		}
		labels[i] = int32(l)
	}
	shape := opts.Shape
	if len(shape) == 0 {
		shape = []int{d.Dim}
	} else if prod(shape) != d.Dim {
		return nil, fmt.Errorf("--data-shape %v holds %d values but the examples have %d features", shape, prod(shape), d.Dim)
	}
	ds := &data.Dataset{Name: "tfrecord:" + pattern, X: d.X, Labels: labels, Shape: append([]int(nil), shape...), Classes: d.Classes()}
	return ds, ds.Validate()
}

// libsvmDataset densifies LIBSVM data to dim columns and numbers its
// labels as classes: by their sorted distinct values (values nil), or by
// the training set's values for test data, where an unseen label is an
// error. It returns the label values class i stands for.
func libsvmDataset(ls *libsvm.Data, dim int, values []float64, name string, opts dataOptions) (*data.Dataset, []float64, error) {
	x, err := ls.Dense(dim)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var classes []int32
	if values == nil {
		if classes, values, err = ls.ClassLabels(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	} else {
		idx := map[float64]int32{}
		for i, v := range values {
			idx[v] = int32(i)
		}
		classes = make([]int32, ls.N())
		for i, l := range ls.Labels {
			c, ok := idx[l]
			if !ok {
				return nil, nil, fmt.Errorf("%w: %s: row %d has label %v, which the training data does not have (it has %v)", data.ErrFormat, name, i, l, values)
			}
			classes[i] = c
		}
	}
	if ls.N() == 0 {
		return nil, nil, fmt.Errorf("%w: %s holds no examples", data.ErrFormat, name)
	}
	shape := []int{dim}
	if len(opts.Shape) > 0 {
		if prod(opts.Shape) != dim {
			return nil, nil, fmt.Errorf("--data-shape %v holds %d values but %s has %d features", opts.Shape, prod(opts.Shape), name, dim)
		}
		shape = append([]int(nil), opts.Shape...)
	}
	ds := &data.Dataset{Name: "libsvm:" + name, X: x, Labels: classes, Shape: shape, Classes: max(len(values), 2)}
	return ds, values, ds.Validate()
}

// loadLibSVMTest reads --test-data as LIBSVM with the training set's width
// and label values.
func loadLibSVMTest(spec string, dim int, values []float64, opts dataOptions) (*data.Dataset, error) {
	ts, err := parseSource(spec)
	if err != nil {
		return nil, fmt.Errorf("--test-data: %w", err)
	}
	if ts.Kind != kindLibSVM {
		return nil, fmt.Errorf("--test-data %s is %s but --data is LibSVM: give both in one format", spec, ts.Kind)
	}
	ls, err := libsvm.ReadFile(ts.Path, libsvm.Options{})
	if err != nil {
		return nil, fmt.Errorf("--test-data: %w", err)
	}
	test, _, err := libsvmDataset(ls, dim, values, ts.Path, opts)
	if err != nil {
		return nil, fmt.Errorf("--test-data: %w", err)
	}
	return test, nil
}

// holdout splits off a test set when the data brought none: a seeded
// shuffle, then the last fraction of it. The same seed gives every worker
// the same split.
func holdout(d *data.Dataset, fraction float64, seed int64) (train, test *data.Dataset, err error) {
	nTest := int(float64(d.N())*fraction + 0.5)
	if nTest < 1 || nTest >= d.N() {
		return nil, nil, fmt.Errorf("%s has %d examples and no --test-data: --holdout %v leaves %d test examples; give --test-data or a --holdout in (0, 1) that keeps both sets non-empty",
			d.Name, d.N(), fraction, nTest)
	}
	perm := rand.New(rand.NewPCG(uint64(seed), 0x686f6c646f7574)).Perm(d.N())
	train = d.Subset(perm[:d.N()-nTest])
	test = d.Subset(perm[d.N()-nTest:])
	train.Name, test.Name = d.Name+" (training part)", d.Name+" (held out)"
	return train, test, nil
}

// reshape gives every example of d the shape s, which must hold Dim()
// values.
func reshape(d *data.Dataset, s []int) (*data.Dataset, error) {
	if prod(s) != d.Dim() {
		return nil, fmt.Errorf("--data-shape %v holds %d values but %s examples have %d (%v)", s, prod(s), d.Name, d.Dim(), d.Shape)
	}
	c := *d
	c.Shape = append([]int(nil), s...)
	return &c, nil
}

// parseShape parses --data-shape, such as "28,28,1"; empty is nil.
func parseShape(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1<<24 {
			return nil, fmt.Errorf("--data-shape %q: %q is not a dimension ≥ 1", s, f)
		}
		out = append(out, n)
	}
	if prod(out) > 1<<28 {
		return nil, fmt.Errorf("--data-shape %q: too many values per example", s)
	}
	return out, nil
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}
