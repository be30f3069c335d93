package wire_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/ps/wire"
)

func TestTopKRowsKnownValues(t *testing.T) {
	tk, err := wire.NewTopKRows(0.5, 2) // 3 rows of 2: keep 2
	if err != nil {
		t.Fatal(err)
	}
	rows, vals, err := tk.Compress([]float32{1, 1, 0, 3, -2, 0})
	if err != nil {
		t.Fatal(err)
	}
	// norms² 2, 9, 4: rows 1 and 2.
	if !slices.Equal(rows, []int64{1, 2}) || !slices.Equal(vals, []float32{0, 3, -2, 0}) {
		t.Fatalf("got %v %v", rows, vals)
	}
	if !slices.Equal(tk.Residual(), []float32{1, 1, 0, 0, 0, 0}) {
		t.Fatalf("residual %v", tk.Residual())
	}
	rows, vals, err = tk.Compress([]float32{1, 0, 0, 1, 0, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// norms² (2,1)→5, (0,1)→1, (0,0.5)→0.25: rows 0 and 1.
	if !slices.Equal(rows, []int64{0, 1}) || !slices.Equal(vals, []float32{2, 1, 0, 1}) {
		t.Fatalf("got %v %v", rows, vals)
	}
	if _, _, err := tk.Compress([]float32{1, 2, 3}); !errors.Is(err, ps.ErrShapeMismatch) {
		t.Fatalf("odd length: %v", err)
	}
	if _, err := wire.NewTopKRows(0.5, 0); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("row size 0: %v", err)
	}
	if _, err := wire.NewTopKRows(2, 1); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Fatalf("ratio 2: %v", err)
	}
}

// TopKRows output is a ps sparse push as it stands: pushing it to a real
// ps.Server step after step, then the residual, applies exactly the sum of
// all gradients (plain SGD, lr 1).
func TestTopKRowsIsASparsePush(t *testing.T) {
	ctx := context.Background()
	cfg := ps.DefaultServerConfig()
	cfg.ID = "ps-0"
	srv, err := ps.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const rowsN, rowSize = 40, 8
	spec := ps.VariableSpec{Name: "emb", Shape: []int64{rowsN, rowSize}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}
	if len(spec.Partitions()) != 1 {
		t.Fatalf("want one partition, got %v", spec.Partitions())
	}
	if _, err := srv.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	key := ps.PartKey{Var: "emb", Index: 0}
	tk, _ := wire.NewTopKRows(0.1, rowSize)
	rng := rand.New(rand.NewPCG(1, 2))
	total := make([]float64, rowsN*rowSize)
	g := make([]float32, rowsN*rowSize)
	push := func(seq uint64, rows []int64, vals []float32) {
		t.Helper()
		if _, err := srv.Push(ctx, &ps.PushRequest{ClientID: "w", Seq: seq,
			Parts: []ps.PushPart{{Key: key, Rows: slices.Clone(rows), Grad: slices.Clone(vals)}}}); err != nil {
			t.Fatal(err)
		}
	}
	for step := range 30 {
		for i := range g {
			g[i] = float32(rng.IntN(9) - 4) // small integers: sums are exact
			total[i] += float64(g[i])
		}
		rows, vals, err := tk.Compress(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 4 || len(vals) != 4*rowSize {
			t.Fatalf("step %d: %d rows, %d values", step, len(rows), len(vals))
		}
		push(uint64(step+1), rows, vals)
	}
	all := make([]int64, rowsN)
	for i := range all {
		all[i] = int64(i)
	}
	push(100, all, tk.Residual())
	resp, err := srv.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range resp.Parts[0].Values {
		if math.Abs(float64(v)+total[i]) > 1e-3 { // w = 0 - lr·Σg
			t.Fatalf("value %d = %g, want %g", i, v, -total[i])
		}
	}
}
