package example

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/formats/tfrecord"
)

// TestMNISTTFRecord converts the real MNIST test set (10,000 images) to
// TFRecord with WriteImages, in both image formats, and reads it back with
// ReadDense: the inputs and labels come back bit for bit. Under -race it
// uses the first 1,000 images.
func TestMNISTTFRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := data.ResolveDir(ctx, "mnist")
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	find := func(name string) string {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			p += ".gz"
		}
		return p
	}
	test, err := data.LoadIDXPair(find(data.MNISTTestImages), find(data.MNISTTestLabels), 10, "mnist-test")
	if err != nil {
		t.Skipf("MNIST test set: %v", err)
	}
	if raceEnabled {
		test = test.Slice(0, 1000)
	}
	out := t.TempDir()
	for _, c := range []struct {
		name   string
		format ImageFormat
		comp   tfrecord.Compression
	}{{"float", FloatImage, tfrecord.None}, {"bytes.gz", BytesImage, tfrecord.Gzip}} {
		// Two part files, as a Spark job or a sharded converter writes.
		half := test.N() / 2
		for p, rng := range [][2]int{{0, half}, {half, test.N()}} {
			path := filepath.Join(out, c.name, "part-0000"+string(rune('0'+p)))
			os.MkdirAll(filepath.Dir(path), 0o755)
			w, err := tfrecord.Create(path, tfrecord.WriterOptions{Compression: c.comp})
			if err != nil {
				t.Fatal(err)
			}
			part := test.Slice(rng[0], rng[1])
			start := time.Now()
			if err := WriteImages(w, part.X, part.Labels, test.Dim(), ImageOptions{Format: c.format}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(path)
			t.Logf("%s part %d: %d examples, %d bytes, written in %v", c.name, p, part.N(), st.Size(), time.Since(start))
		}
		start := time.Now()
		d, err := ReadDense(filepath.Join(out, c.name), DenseOptions{Dim: 784})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: read %d examples in %v", c.name, d.N(), time.Since(start))
		if d.N() != test.N() || d.Dim != test.Dim() || d.Classes() != 10 {
			t.Fatalf("%s: N %d Dim %d Classes %d", c.name, d.N(), d.Dim, d.Classes())
		}
		for i, l := range test.Labels {
			if d.Labels[i] != int64(l) {
				t.Fatalf("%s: label %d = %d, want %d", c.name, i, d.Labels[i], l)
			}
		}
		for j, v := range test.X {
			if d.X[j] != v {
				t.Fatalf("%s: input %d = %v, want %v", c.name, j, d.X[j], v)
			}
		}
	}
}
