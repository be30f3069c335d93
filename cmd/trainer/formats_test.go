package main

import (
	"bytes"
	"compress/zlib"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowps/flowps/formats/example"
	"github.com/flowps/flowps/formats/tfevents"
	"github.com/flowps/flowps/formats/tfrecord"
)

const heartScale = "../../testdata/libsvm_heart_scale"

func writeRecords(t *testing.T, path string, comp tfrecord.Compression, n int) {
	t.Helper()
	w, err := tfrecord.Create(path, tfrecord.WriterOptions{Compression: comp})
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, n*4)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 3)
		x[i*4] = float32(i)
	}
	if err := example.WriteImages(w, x, labels, 4, example.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "a.tfrecord")
	gz := filepath.Join(dir, "b.tfrecord.gz")
	writeRecords(t, plain, tfrecord.None, 5)
	writeRecords(t, gz, tfrecord.Gzip, 5)
	zl := filepath.Join(dir, "c.z")
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write([]byte("anything"))
	zw.Close()
	os.WriteFile(zl, zb.Bytes(), 0o644)
	parts := filepath.Join(dir, "parts")
	os.Mkdir(parts, 0o755)
	writeRecords(t, filepath.Join(parts, "part-00000"), tfrecord.None, 3)
	mnist := fakeMNIST(t)
	// A LIBSVM file whose first line starts with "80" must not look like
	// zlib (0x38 0x30 passes zlib's header checksum).
	svm80 := filepath.Join(dir, "eighty.svm")
	os.WriteFile(svm80, []byte("80 1:0.5\n"), 0o644)

	for _, c := range []struct {
		spec, kind, path string
	}{
		{"mnist", kindMNIST, "mnist"},
		{"synthetic", kindSynthetic, ""},
		{plain, kindTFRecord, plain},
		{gz, kindTFRecord, gz},
		{zl, kindTFRecord, zl},
		{parts, kindTFRecord, parts},
		{filepath.Join(dir, "*.tfrecord*"), kindTFRecord, filepath.Join(dir, "*.tfrecord*")},
		{mnist, kindMNIST, mnist},
		{heartScale, kindLibSVM, heartScale},
		{svm80, kindLibSVM, svm80},
		{"libsvm:" + plain, kindLibSVM, plain},
		{"tfrecord:" + heartScale, kindTFRecord, heartScale},
		{"mnist:" + mnist, kindMNIST, mnist},
		{"tfrecord:gs://not/here-*", kindTFRecord, "gs://not/here-*"},
	} {
		got, err := parseSource(c.spec)
		if err != nil || got.Kind != c.kind || got.Path != c.path {
			t.Errorf("%q: got %+v, %v; want %s %s", c.spec, got, err, c.kind, c.path)
		}
	}
	for _, bad := range []string{"", filepath.Join(dir, "missing"), "tfrecord:", "libsvm:"} {
		if got, err := parseSource(bad); err == nil {
			t.Errorf("%q: got %+v, want an error", bad, got)
		}
	}
}

// TestConvertRoundTrip: `trainer convert` of the synthetic set in float
// format, read back as TFRecord, trains to exactly the result of training
// on the synthetic set itself (same examples, same order, same values).
func TestConvertRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "conv")
	var so, se bytes.Buffer
	if code := run(t.Context(), []string{"convert", "--data", "synthetic", "--out", out, "--shards", "3", "--gzip"}, &so, &se); code != 0 {
		t.Fatalf("convert: code %d: %s", code, se.String())
	}
	files, err := tfrecord.Files(filepath.Join(out, "train"))
	if err != nil || len(files) != 3 || !strings.HasSuffix(files[0], "part-00000-of-00003.tfrecord.gz") {
		t.Fatalf("train files %v, %v", files, err)
	}
	// A second convert into the same place refuses to mix files.
	if code := run(t.Context(), []string{"convert", "--data", "synthetic", "--out", out}, io.Discard, &se); code != 1 || !strings.Contains(se.String(), "not empty") {
		t.Errorf("convert into a full directory: code %d: %s", code, se.String())
	}
	common := []string{"--local", "--model", "logreg", "--epochs", "1", "--batch", "64"}
	code, want, stderr := runTrainer(t, append(common, "--data", "synthetic")...)
	if code != 0 {
		t.Fatalf("synthetic: %s", stderr)
	}
	code, got, stderr := runTrainer(t, append(common, "--data", filepath.Join(out, "train"), "--test-data", "tfrecord:"+filepath.Join(out, "test"))...)
	if code != 0 {
		t.Fatalf("tfrecord: %s", stderr)
	}
	if got.TestAccuracy != want.TestAccuracy || got.TrainLoss != want.TrainLoss || got.Steps != want.Steps {
		t.Errorf("TFRecord run: acc %v loss %v steps %d; synthetic run: acc %v loss %v steps %d",
			got.TestAccuracy, got.TrainLoss, got.Steps, want.TestAccuracy, want.TrainLoss, want.Steps)
	}
	// --data-shape must fit the examples.
	code, _, stderr = runTrainer(t, append(common, "--data", filepath.Join(out, "train"), "--test-data", filepath.Join(out, "test"), "--data-shape", "28,27")...)
	if code != 1 || !strings.Contains(stderr, "784") {
		t.Errorf("bad --data-shape: code %d: %s", code, stderr)
	}
	code, _, stderr = runTrainer(t, append(common, "--data", filepath.Join(out, "train"), "--test-data", filepath.Join(out, "test"), "--feature-key", "pixels")...)
	if code != 1 || !strings.Contains(stderr, "pixels") {
		t.Errorf("missing feature: code %d: %s", code, stderr)
	}
}

// TestLibSVMHeart trains logistic regression on heart_scale (270 rows, 13
// features) with a 20% held-out test set.
func TestLibSVMHeart(t *testing.T) {
	code, res, stderr := runTrainer(t, "--local", "--model", "logreg", "--data", heartScale, "--epochs", "30", "--batch", "8", "--lr", "0.1")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	t.Logf("heart_scale: test accuracy %.4f (54 held out), train accuracy %.4f, loss %.4f", res.TestAccuracy, res.TrainAccuracy, res.TrainLoss)
	if res.Params != 13*2+2 {
		t.Errorf("params %d, want 28 (13 features × 2 classes + 2 biases)", res.Params)
	}
	if res.TestAccuracy < 0.75 {
		t.Errorf("test accuracy %.4f < 0.75", res.TestAccuracy)
	}
	// Test data in another format is refused; a LibSVM test file with a
	// label the training data lacks is an error naming it.
	bad := filepath.Join(t.TempDir(), "bad.svm")
	os.WriteFile(bad, []byte("+1 1:0.5\n7 2:1\n"), 0o644)
	code, _, stderr = runTrainer(t, "--local", "--model", "logreg", "--data", heartScale, "--test-data", bad)
	if code != 1 || !strings.Contains(stderr, "label 7") {
		t.Errorf("unseen test label: code %d: %s", code, stderr)
	}
}

// TestLogdirEvents: --logdir writes a TensorBoard event file with the
// progress scalars at increasing steps and the epoch scalars once per
// epoch.
func TestLogdirEvents(t *testing.T) {
	logdir := t.TempDir()
	code, res, stderr := runTrainer(t, "--local", "--data", "synthetic", "--model", "logreg", "--epochs", "2", "--batch", "100",
		"--logdir", logdir, "--progress", "0.001", "--workers", "2", "--rank", "0")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	files, err := tfevents.Files(logdir)
	if err != nil || len(files) != 1 || !strings.HasSuffix(files[0], ".rank-0") || files[0] != res.EventFile {
		t.Fatalf("event files %v (%v); result names %q", files, err, res.EventFile)
	}
	evs, err := tfevents.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	s := tfevents.Scalars(evs)
	for _, tag := range []string{"loss/train", "examples_per_sec", "learning_rate", "bytes/pushed_mib", "bytes/pulled_mib"} {
		if len(s[tag]) < 2 {
			t.Errorf("%s: %d points", tag, len(s[tag]))
		}
		if !slices.IsSortedFunc(s[tag], func(a, b tfevents.Point) int { return int(a.Step - b.Step) }) {
			t.Errorf("%s: steps not increasing", tag)
		}
	}
	for _, tag := range []string{"accuracy/train", "accuracy/test", "loss/test"} {
		if len(s[tag]) != 2 || s[tag][1].Step != res.Steps {
			t.Errorf("%s: %+v, want 2 points, the last at step %d", tag, s[tag], res.Steps)
		}
	}
	if got := s["accuracy/test"][1].Value; math.Abs(got-res.TestAccuracy) > 1e-6 {
		t.Errorf("accuracy/test %v, result %v", got, res.TestAccuracy)
	}
	pushed := s["bytes/pushed_mib"]
	if last := pushed[len(pushed)-1].Value; math.Abs(last*(1<<20)-float64(res.BytesPushed)) > 1e-4*float64(res.BytesPushed) {
		t.Errorf("last bytes/pushed_mib %v, result %d bytes", last, res.BytesPushed)
	}
	// logreg on 784 inputs, 10 classes: 7850 floats pushed per step.
	if res.BytesPushed != res.Steps*7850*4 {
		t.Errorf("bytes pushed %d, want %d", res.BytesPushed, res.Steps*7850*4)
	}
	if res.BytesPulled < res.BytesPushed {
		t.Errorf("bytes pulled %d < pushed %d", res.BytesPulled, res.BytesPushed)
	}
}

func TestTFConfigTrainerFlags(t *testing.T) {
	b, err := os.ReadFile("../../testdata/tf_config_tfjob_worker1.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_CONFIG", string(b))
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// 1 chief + 3 workers; worker 1 is rank 2.
	if c.Rank != 2 || c.Workers != 4 || c.Join != "mnist-ps-0.kubeflow.svc:2222,mnist-ps-1.kubeflow.svc:2222" || c.Gossip != "0.0.0.0:2222" {
		t.Errorf("rank %d workers %d join %q gossip %q", c.Rank, c.Workers, c.Join, c.Gossip)
	}
	c, err = parseFlags([]string{"--rank", "3", "--gossip", "127.0.0.1:0"}, io.Discard)
	if err != nil || c.Rank != 3 || c.Workers != 4 || c.Gossip != "127.0.0.1:0" {
		t.Errorf("flags over TF_CONFIG: %v rank %d workers %d gossip %q", err, c.Rank, c.Workers, c.Gossip)
	}
	// --local skips the cluster part of TF_CONFIG.
	if c, err := parseFlags([]string{"--local"}, io.Discard); err != nil || c.Join != "" || c.Workers != 4 {
		t.Errorf("--local with TF_CONFIG: %v %+v", err, c)
	}
	for _, tc := range []struct{ task, want string }{
		{`"type":"ps","index":1`, "ps tasks run psd"},
		{`"type":"evaluator","index":0`, "no evaluator mode"},
		{`"type":"worker","index":9`, "TF_CONFIG"},
	} {
		t.Setenv("TF_CONFIG", strings.Replace(string(b), `"type":"worker","index":1`, tc.task, 1))
		code, _, stderr := runTrainer(t, "--data", "synthetic")
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: code %d: %s", tc.task, code, stderr)
		}
	}
}
