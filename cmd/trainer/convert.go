package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/formats/example"
	"github.com/flowps/flowps/formats/tfrecord"
)

// convertConfig is `trainer convert`'s flags.
type convertConfig struct {
	Out      string
	Data     string
	Format   string
	Gzip     bool
	Shards   int
	ImageKey string
	LabelKey string
	Seed     int64
}

// convertSummary is the JSON line `trainer convert` prints on success.
type convertSummary struct {
	Out          string   `json:"out"`
	Format       string   `json:"format"`
	TrainRecords int      `json:"train_records"`
	TestRecords  int      `json:"test_records"`
	Files        []string `json:"files"`
	Bytes        int64    `json:"bytes"`
}

func parseConvertFlags(args []string, stderr io.Writer) (*convertConfig, error) {
	c := &convertConfig{}
	fs := flag.NewFlagSet("trainer convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Out, "out", "", "output `DIR`; train/ and test/ are created in it and must not hold files yet")
	fs.StringVar(&c.Data, "data", "mnist", "source: mnist (module cache or $FLOWPS_MNIST_DIR), a DIR of MNIST IDX files, or synthetic")
	fs.StringVar(&c.Format, "format", "float", "image feature: float (float_list, exact) or bytes (one raw uint8 per pixel, 4× smaller)")
	fs.BoolVar(&c.Gzip, "gzip", false, "gzip each file (TensorFlow's compression_type=\"GZIP\"), named *.tfrecord.gz")
	fs.IntVar(&c.Shards, "shards", 1, "files per split: part-00000-of-0000N ... (contiguous ranges of examples)")
	fs.StringVar(&c.ImageKey, "feature-key", example.DefaultImageKey, "name of the image feature")
	fs.StringVar(&c.LabelKey, "label-key", example.DefaultLabelKey, "name of the int64 label feature")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of --data synthetic")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `trainer convert: write an image data set (MNIST) as TFRecord files of
tf.train.Example, DIR/train/part-* and DIR/test/part-*, which
trainer --data DIR/train --test-data DIR/test reads back.

Usage: trainer convert --out DIR [flags]

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	case c.Out == "":
		return nil, fmt.Errorf("%w: --out DIR is required", errUsage)
	case c.Format != "float" && c.Format != "bytes":
		return nil, fmt.Errorf("%w: --format %q: want float or bytes", errUsage, c.Format)
	case c.Shards < 1 || c.Shards > 99999:
		return nil, fmt.Errorf("%w: --shards %d: want 1..99999", errUsage, c.Shards)
	case c.ImageKey == "" || c.LabelKey == "" || c.ImageKey == c.LabelKey:
		return nil, fmt.Errorf("%w: --feature-key %q and --label-key %q must be two different non-empty names", errUsage, c.ImageKey, c.LabelKey)
	}
	return c, nil
}

// runConvert is `trainer convert`: it returns the exit code like run.
func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseConvertFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "trainer convert: %v\n", err)
		return 2
	}
	sum, err := convert(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "trainer convert: %v\n", err)
		return 1
	}
	if err := writeJSONLine(stdout, sum); err != nil {
		fmt.Fprintf(stderr, "trainer convert: %v\n", err)
		return 1
	}
	return 0
}

func convert(ctx context.Context, c *convertConfig) (*convertSummary, error) {
	src, err := parseSource(c.Data)
	if err != nil {
		return nil, err
	}
	var train, test *data.Dataset
	switch src.Kind {
	case kindMNIST:
		dir, err := data.ResolveDir(ctx, src.Path)
		if err != nil {
			return nil, err
		}
		if train, test, err = data.LoadMNIST(dir); err != nil {
			return nil, err
		}
	case kindSynthetic:
		if train, test, err = data.Synthetic(data.SyntheticConfig{
			Train: 6000, Test: 1000, Shape: []int{28, 28}, Classes: 10, Separation: 0.15, Noise: 1, Seed: uint64(c.Seed),
		}); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("--data %s is %s: convert reads MNIST IDX files or synthetic data", c.Data, src.Kind)
	}
	opts := example.ImageOptions{ImageKey: c.ImageKey, LabelKey: c.LabelKey, Format: example.FloatImage}
	if c.Format == "bytes" {
		opts.Format = example.BytesImage
	}
	sum := &convertSummary{Out: c.Out, Format: c.Format, TrainRecords: train.N(), TestRecords: test.N()}
	for _, split := range []struct {
		name string
		d    *data.Dataset
	}{{"train", train}, {"test", test}} {
		files, err := writeShards(ctx, filepath.Join(c.Out, split.name), split.d, c, opts)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				return nil, err
			}
			sum.Bytes += st.Size()
		}
		sum.Files = append(sum.Files, files...)
	}
	return sum, nil
}

// writeShards writes d into dir as c.Shards files of contiguous examples.
func writeShards(ctx context.Context, dir string, d *data.Dataset, c *convertConfig, opts example.ImageOptions) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: a reader would mix its files with the new ones; remove them or choose another --out", dir)
	}
	ext := ".tfrecord"
	wopts := tfrecord.WriterOptions{}
	if c.Gzip {
		ext += ".gz"
		wopts.Compression = tfrecord.Gzip
	}
	dim := d.Dim()
	var files []string
	for s := range c.Shards {
		if err := ctx.Err(); err != nil {
			return files, err
		}
		lo, hi := s*d.N()/c.Shards, (s+1)*d.N()/c.Shards
		p := filepath.Join(dir, fmt.Sprintf("part-%05d-of-%05d%s", s, c.Shards, ext))
		w, err := tfrecord.Create(p, wopts)
		if err != nil {
			return files, err
		}
		err = example.WriteImages(w, d.X[lo*dim:hi*dim], d.Labels[lo:hi], dim, opts)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, fmt.Errorf("%s: %w", p, err)
		}
		files = append(files, p)
	}
	return files, nil
}
