package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gradLike is a gradient-shaped tensor: normal values with a share of
// exact zeros, as ReLU layers and blank MNIST pixels produce.
func gradLike(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	g := make([]float32, n)
	for i := range g {
		if rng.IntN(3) > 0 {
			g[i] = float32(rng.NormFloat64() * 1e-3)
		}
	}
	return g
}

func TestCodecsRoundTrip(t *testing.T) {
	g := gradLike(10000, 1)
	for _, name := range allCodecs {
		c, err := newCodec(name, 100)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.encode(nil, g)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := make([]float32, len(g))
		if err := c.decode(out, b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e := relError(out, g)
		switch {
		case !c.lossy():
			if !slices.Equal(out, g) {
				t.Errorf("%s changed the tensor", name)
			}
			if name != "none" && len(b) >= 4*len(g) {
				t.Errorf("%s: %d bytes for a third zeros, want < %d", name, len(b), 4*len(g))
			}
		case strings.HasPrefix(name, "bf16"):
			if e > 1.0/256 || e == 0 {
				t.Errorf("%s: relative error %g", name, e)
			}
		case name == "fp16":
			// Values ~1e-3 are normal halves: 11 significant bits.
			if e > 1.0/2048 || e == 0 {
				t.Errorf("%s: relative error %g", name, e)
			}
		case strings.HasPrefix(name, "topk"):
			nz := 0
			for _, v := range out {
				if v != 0 {
					nz++
				}
			}
			want := map[string]int{"topk1%": 100, "topk10%": 1000}[name]
			if nz != want {
				t.Errorf("%s: %d non-zeros, want %d", name, nz, want)
			}
		case strings.HasPrefix(name, "toprows"):
			nzRows := 0
			for r := 0; r < len(out); r += 100 {
				if slices.ContainsFunc(out[r:r+100], func(v float32) bool { return v != 0 }) {
					nzRows++
				}
			}
			want := map[string]int{"toprows1%": 1, "toprows10%": 10}[name]
			if nzRows != want {
				t.Errorf("%s: %d non-zero rows, want %d", name, nzRows, want)
			}
		}
		if c.decode(make([]float32, len(g)+1), b) == nil && name != "s2" && !strings.HasPrefix(name, "topk") {
			t.Errorf("%s decoded into the wrong length without error", name)
		}
	}
}

func TestMeasureCodec(t *testing.T) {
	set := tensorSet{Name: "g", Names: []string{"a", "b"}, Tensors: [][]float32{gradLike(5000, 2), gradLike(300, 3)}, RowSizes: []int{50, 1}}
	r, err := measureCodec(set, "bf16", 3, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.RawBytes != 4*5300 || r.WireBytes != 2*5300 || r.Ratio != 0.5 || r.Reps != 3 {
		t.Errorf("sizes: %+v", r)
	}
	if r.EncodeMsPerMB <= 0 || r.DecodeMsPerMB <= 0 || r.BreakEvenGBps <= 0 || r.RelError <= 0 || r.RelError > 1.0/256 {
		t.Errorf("measures: %+v", r)
	}
	r, err = measureCodec(set, "none", 1, 0)
	if err != nil || r.RelError != 0 || r.WireBytes != r.RawBytes || r.BreakEvenGBps != 0 {
		t.Errorf("none: %+v %v", r, err)
	}
}

// A short run on synthetic data: the table and JSON lines appear, every
// trained codec learns, and top-k sends about its share of the bytes.
func TestRunSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("trains four small models")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "out.jsonl")
	var out, errb bytes.Buffer
	args := []string{"--data", "synthetic", "--epochs", "1", "--capture", "5", "--reps", "1", "--min-time", "1ms", "--json", path,
		"--train-codecs", "none,bf16,topk1%,toprows10%"}
	if code := mainArgs(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"Wire size and CPU", "grad@5", "weights@", "Accuracy", "topk1%", "bf16+zstd"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	accuracy := map[string]float64{}
	codecRows := 0
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		var line struct {
			Kind string
			Run  *trainResult
			Row  *codecRow
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		switch line.Kind {
		case "accuracy":
			accuracy[line.Run.Codec] = line.Run.TestAccuracy
			if line.Run.Codec == "topk1%" && math.Abs(line.Run.WireRatio-0.0125) > 0.005 {
				t.Errorf("topk1%% wire ratio %v", line.Run.WireRatio)
			}
		case "codec":
			codecRows++
		}
	}
	// 10 codecs on one gradient set, 6 (no top-k) on the weights.
	if codecRows != 16 {
		t.Errorf("%d codec rows, want 16", codecRows)
	}
	for _, c := range []string{"none", "bf16", "topk1%", "toprows10%"} {
		if a, ok := accuracy[c]; !ok || a < 0.5 {
			t.Errorf("%s: accuracy %v (ok %v), want > 0.5 on separable synthetic data", c, a, ok)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--codecs", "gzip"}, {"--train-codecs", "topk50%"}, {"--seeds", "x"}, {"--epochs", "0"}, {"--capture", ""}, {"stray"},
	} {
		var out, errb bytes.Buffer
		if code := mainArgs(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
