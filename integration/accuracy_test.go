package integration

import (
	"math"
	"testing"

	"github.com/flowps/flowps/data"
)

// TestReferenceAccuracies: `trainer --local` with plain SGD (lr 0.1, batch
// 128) on real MNIST lands within 0.005 of the test accuracies PyTorch 1.13
// reaches with the same models and settings after each of three epochs
// (issue 3's references: MLP 784-256-128-10 0.916 / 0.933 / 0.952,
// logistic regression 0.901 / 0.909 / 0.913). The binaries are built
// without the race detector, so this runs in `make test` in a few seconds.
func TestReferenceAccuracies(t *testing.T) {
	skipShort(t)
	if _, err := data.ResolveDir(t.Context(), "mnist"); err != nil {
		t.Skipf("real MNIST not available: %v", err)
	}
	for _, c := range []struct {
		model string
		want  []float64
	}{
		{"mlp", []float64{0.916, 0.933, 0.952}},
		{"logreg", []float64{0.901, 0.909, 0.913}},
	} {
		t.Run(c.model, func(t *testing.T) {
			res, _ := runTrainerBin(t, nil, "--local", "--data", "mnist", "--model", c.model, "--epochs", "3",
				"--batch", "128", "--lr", "0.1", "--optimizer", "sgd")
			t.Logf("%s: test accuracy per epoch %v (PyTorch %v)", c.model, res.EpochTestAccuracy, c.want)
			if len(res.EpochTestAccuracy) != len(c.want) {
				t.Fatalf("%d per-epoch accuracies, want %d", len(res.EpochTestAccuracy), len(c.want))
			}
			for i, w := range c.want {
				if got := res.EpochTestAccuracy[i]; math.Abs(got-w) > 0.005 {
					t.Errorf("epoch %d: test accuracy %.4f, PyTorch's %.3f: off by %.4f > 0.005", i+1, got, w, math.Abs(got-w))
				}
			}
		})
	}
}
