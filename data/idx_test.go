package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func encode(t testing.TB, x *IDX) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := EncodeIDX(&b, x); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, dir, name string, p []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIDXRoundTrip(t *testing.T) {
	x := &IDX{Dims: []int{3, 2, 4}, Data: make([]byte, 24)}
	for i := range x.Data {
		x.Data[i] = byte(i * 7)
	}
	raw := encode(t, x)
	if got := raw[:4]; !bytes.Equal(got, []byte{0, 0, 8, 3}) {
		t.Fatalf("magic %x", got)
	}
	for name, p := range map[string][]byte{"plain": raw, "gzip": gz(t, raw)} {
		got, err := DecodeIDX(bytes.NewReader(p))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got.Dims, x.Dims) || !bytes.Equal(got.Data, x.Data) {
			t.Fatalf("%s: got %v %v, want %v %v", name, got.Dims, got.Data, x.Dims, x.Data)
		}
	}
}

func TestIDXErrors(t *testing.T) {
	good := encode(t, &IDX{Dims: []int{10, 5}, Data: make([]byte, 50)})
	cases := []struct {
		name  string
		in    []byte
		err   error
		wants []string
	}{
		{"empty", nil, ErrTruncated, []string{"empty"}},
		{"short magic", []byte{0, 0}, ErrTruncated, []string{"2 of 4"}},
		{"bad magic", []byte{1, 2, 8, 1, 0, 0, 0, 1, 5}, ErrFormat, []string{"bad magic", "0x01020801"}},
		{"float type", []byte{0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0}, ErrFormat, []string{"0x0d", "not supported"}},
		{"unknown type", []byte{0, 0, 0x42, 1, 0, 0, 0, 1, 5}, ErrFormat, []string{"unknown element type"}},
		{"rank 0", []byte{0, 0, 8, 0}, ErrFormat, []string{"0 dimensions"}},
		{"rank 200", []byte{0, 0, 8, 200}, ErrFormat, []string{"200 dimensions"}},
		{"zero dim", []byte{0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 0}, ErrFormat, []string{"dimension 1 is 0"}},
		{"huge", []byte{0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrFormat, []string{"more than"}},
		{"short dims", good[:6], ErrTruncated, []string{"2 of 8", "dimensions"}},
		{"short payload", good[:len(good)-7], ErrTruncated, []string{"43 of 50 bytes"}},
		{"no payload", good[:12], ErrTruncated, []string{"0 of 50 bytes"}},
		{"trailing", append(slices.Clone(good), 9), ErrFormat, []string{"trailing data"}},
		{"short gzip payload", gz(t, good[:len(good)-1]), ErrTruncated, []string{"49 of 50 decompressed bytes"}},
		{"cut gzip stream", gz(t, good)[:20], ErrTruncated, nil},
		{"gzip junk", []byte{0x1f, 0x8b, 1, 2, 3}, ErrFormat, []string{"gzip"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeIDX(bytes.NewReader(c.in))
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestReadIDXFileNamesFile(t *testing.T) {
	dir := t.TempDir()
	good := encode(t, &IDX{Dims: []int{100}, Data: make([]byte, 100)})
	p := writeFile(t, dir, "labels-idx1-ubyte", good[:50])
	_, err := ReadIDXFile(p)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "labels-idx1-ubyte") ||
		!strings.Contains(err.Error(), "42 of 100 bytes") {
		t.Fatalf("err = %v, want truncated error naming the file and byte counts", err)
	}
	_, err = ReadIDXFile(filepath.Join(dir, "absent"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("missing file: err = %v", err)
	}
}

// writeMNIST writes a small MNIST-like pair of files under dir with n
// examples of 4×3 pixels.
func writeMNIST(t testing.TB, dir, images, labels string, n int, gzipped bool) {
	t.Helper()
	img := &IDX{Dims: []int{n, 4, 3}, Data: make([]byte, n*12)}
	for i := range img.Data {
		img.Data[i] = byte(i)
	}
	lab := &IDX{Dims: []int{n}, Data: make([]byte, n)}
	for i := range lab.Data {
		lab.Data[i] = byte(i % 10)
	}
	ip, lp := encode(t, img), encode(t, lab)
	if gzipped {
		writeFile(t, dir, images+".gz", gz(t, ip))
		writeFile(t, dir, labels+".gz", gz(t, lp))
		return
	}
	writeFile(t, dir, images, ip)
	writeFile(t, dir, labels, lp)
}

func TestLoadMNISTDir(t *testing.T) {
	dir := t.TempDir()
	writeMNIST(t, dir, MNISTTrainImages, MNISTTrainLabels, 30, true)
	writeMNIST(t, dir, MNISTTestImages, MNISTTestLabels, 20, false)
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.N() != 30 || test.N() != 20 || train.Dim() != 12 || !slices.Equal(train.Shape, []int{4, 3}) {
		t.Fatalf("train %d×%v, test %d", train.N(), train.Shape, test.N())
	}
	if err := train.Validate(); err != nil {
		t.Fatal(err)
	}
	if train.X[1] != 1.0/255 || train.X[255] != 1 || train.Labels[13] != 3 {
		t.Fatalf("values: %v %v %v", train.X[1], train.X[255], train.Labels[13])
	}
	got, err := ResolveDir(t.Context(), dir)
	if err != nil || got != dir {
		t.Fatalf("ResolveDir(dir) = %q, %v", got, err)
	}
}

func TestLoadMNISTBad(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, MNISTTrainImages, MNISTTrainLabels, 30, false)
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), MNISTTestImages) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("count mismatch", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, MNISTTrainImages, "x", 30, false)
		writeMNIST(t, dir, "y", MNISTTrainLabels, 29, false)
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "29 labels") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("label out of range", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, MNISTTrainImages, "x", 3, false)
		writeFile(t, dir, MNISTTrainLabels, encode(t, &IDX{Dims: []int{3}, Data: []byte{1, 12, 3}}))
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "label 12") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("labels as images", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, "x", MNISTTrainImages, 3, false)
		writeMNIST(t, dir, "y", MNISTTrainLabels, 3, false)
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "1 dimensions") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("corrupt header", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, MNISTTrainImages, MNISTTrainLabels, 3, false)
		p := filepath.Join(dir, MNISTTrainImages)
		b, _ := os.ReadFile(p)
		b[2] = 0x77
		writeFile(t, dir, MNISTTrainImages, b)
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), MNISTTrainImages) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad dir", func(t *testing.T) {
		_, err := ResolveDir(t.Context(), filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		t.Setenv(MNISTDirEnv, t.TempDir())
		_, err := ResolveDir(t.Context(), "mnist")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), MNISTDirEnv) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRealMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir, err := ResolveDir(t.Context(), "mnist")
	if err != nil {
		t.Skipf("real MNIST not available: %v", err)
	}
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.N() != 60000 || test.N() != 10000 || !slices.Equal(train.Shape, []int{28, 28}) {
		t.Fatalf("train %d %v test %d", train.N(), train.Shape, test.N())
	}
	if err := train.Validate(); err != nil {
		t.Fatal(err)
	}
	var counts [10]int
	for _, l := range test.Labels {
		counts[l]++
	}
	for c, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("class %d has %d test examples", c, n)
		}
	}
	lo, hi := slices.Min(train.X), slices.Max(train.X)
	if lo != 0 || hi != 1 {
		t.Errorf("pixel range [%v, %v], want [0, 1]", lo, hi)
	}
}

func FuzzIDX(f *testing.F) {
	f.Add(encode(f, &IDX{Dims: []int{2, 3}, Data: []byte{1, 2, 3, 4, 5, 6}}))
	f.Add(gz(f, encode(f, &IDX{Dims: []int{4}, Data: []byte{9, 8, 7, 6}})))
	f.Add([]byte{0, 0, 8, 1, 0, 0, 0, 2, 1})
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		x, err := DecodeIDX(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("error %v matches no sentinel", err)
			}
			return
		}
		n := 1
		for _, d := range x.Dims {
			if d < 1 {
				t.Fatalf("dims %v", x.Dims)
			}
			n *= d
		}
		if n != len(x.Data) {
			t.Fatalf("dims %v but %d bytes", x.Dims, len(x.Data))
		}
		re := encode(t, x)
		if len(in) >= 2 && !bytes.Equal(in[:2], gzipMagic) && !bytes.Equal(re, in) {
			t.Fatalf("re-encoding differs: %x vs %x", re, in)
		}
	})
}

func TestIDXCorruptGzip(t *testing.T) {
	good := encode(t, &IDX{Dims: []int{1000}, Data: bytes.Repeat([]byte("abcdefgh"), 125)})
	z := gz(t, good)
	z[len(z)-6] ^= 0xff // CRC
	if _, err := DecodeIDX(bytes.NewReader(z)); !errors.Is(err, ErrFormat) {
		t.Fatalf("bad checksum: err = %v, want ErrFormat", err)
	}
}
