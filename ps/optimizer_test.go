package ps

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// optStep is one apply: dense when rows is nil.
type optStep struct {
	rows []int64
	grad []float32
}

// The expected values below were worked out by hand from the update rules
// documented on each optimizer (TensorFlow's formulations).
func TestOptimizerTable(t *testing.T) {
	tests := []struct {
		name    string
		spec    OptimizerSpec
		rowSize int
		init    []float32
		steps   []optStep
		want    []float32
		tol     float64
	}{
		{
			name: "sgd dense", spec: OptimizerSpec{Kind: OptSGD, LR: 0.1}, rowSize: 1,
			init:  []float32{1, 2},
			steps: []optStep{{nil, []float32{0.5, -1}}, {nil, []float32{0.5, -1}}},
			want:  []float32{0.9, 2.2}, tol: 1e-6,
		},
		{
			// rows 2 and 0 of 3; row 2 appears twice and its gradients are
			// summed: 1+3 = 4 → 2 - 0.4; row 0: 2 → 1 - 0.2; row 1 untouched.
			name: "sgd sparse duplicate rows", spec: OptimizerSpec{Kind: OptSGD, LR: 0.1}, rowSize: 2,
			init:  []float32{1, 1, 5, 5, 2, 2},
			steps: []optStep{{[]int64{2, 0, 2}, []float32{1, 1, 2, 2, 3, 3}}},
			want:  []float32{0.8, 0.8, 5, 5, 1.6, 1.6}, tol: 1e-6,
		},
		{
			// a=1, p=1-0.1=0.9; a=0.9+1=1.9, p=0.9-0.19=0.71
			name: "momentum dense", spec: OptimizerSpec{Kind: OptMomentum, LR: 0.1, Momentum: 0.9}, rowSize: 1,
			init:  []float32{1},
			steps: []optStep{{nil, []float32{1}}, {nil, []float32{1}}},
			want:  []float32{0.71}, tol: 1e-6,
		},
		{
			// a=1, p=1-(0.1+0.09)=0.81; a=1.9, p=0.81-(0.1+0.171)=0.539
			name: "nesterov dense", spec: OptimizerSpec{Kind: OptMomentum, LR: 0.1, Momentum: 0.9, Nesterov: true}, rowSize: 1,
			init:  []float32{1},
			steps: []optStep{{nil, []float32{1}}, {nil, []float32{1}}},
			want:  []float32{0.539}, tol: 1e-6,
		},
		{
			// row 1 as "momentum dense"; row 0 untouched keeps its
			// accumulator at 0, then gets g=1 in step 2 only: p=1-0.1.
			name: "momentum sparse", spec: OptimizerSpec{Kind: OptMomentum, LR: 0.1, Momentum: 0.9}, rowSize: 1,
			init:  []float32{1, 1},
			steps: []optStep{{[]int64{1}, []float32{1}}, {[]int64{1, 0}, []float32{1, 1}}},
			want:  []float32{0.9, 0.71}, tol: 1e-6,
		},
		{
			// acc 7+9=16, p=1-0.3/4=0.925; acc 25, p=0.925-0.3/5=0.865
			name: "adagrad dense", spec: OptimizerSpec{Kind: OptAdagrad, LR: 0.1, InitialAccumulator: 7}, rowSize: 1,
			init:  []float32{1},
			steps: []optStep{{nil, []float32{3}}, {nil, []float32{3}}},
			want:  []float32{0.925 - 0.06}, tol: 1e-6,
		},
		{
			// duplicate row 0: 1+2=3 → as one adagrad step: 1-0.075
			name: "adagrad sparse", spec: OptimizerSpec{Kind: OptAdagrad, LR: 0.1, InitialAccumulator: 7}, rowSize: 1,
			init:  []float32{1, 4},
			steps: []optStep{{[]int64{0, 0}, []float32{1, 2}}},
			want:  []float32{0.925, 4}, tol: 1e-6,
		},
		{
			// t=1: m=0.2, v=0.004, α=0.1·√0.001/0.1 → p≈1-0.1=0.9
			// t=2, g=-1: m=0.08, v=0.004996, α=0.1·√0.001999/0.19=0.0235317
			//   p = 0.9 - 0.0235317·0.08/0.0706824 = 0.873366
			name: "adam dense", spec: OptimizerSpec{Kind: OptAdam, LR: 0.1}, rowSize: 1,
			init:  []float32{1},
			steps: []optStep{{nil, []float32{2}}, {nil, []float32{-1}}},
			want:  []float32{0.873366}, tol: 2e-6,
		},
		{
			// Lazy sparse Adam: row 1 follows "adam dense"; row 0 is first
			// touched at t=2 (the partition's step count), with m=0.1,
			// v=0.001 after its first update: p = 1 - 0.0235317·0.1/0.0316228
			// = 0.925586.
			name: "adam sparse lazy", spec: OptimizerSpec{Kind: OptAdam, LR: 0.1}, rowSize: 1,
			init:  []float32{1, 1},
			steps: []optStep{{[]int64{1}, []float32{2}}, {[]int64{0, 1}, []float32{1, -1}}},
			want:  []float32{0.925586, 0.873366}, tol: 2e-6,
		},
		{
			// lr=1, n=7: n'=16, z=3, p=-3/4; n''=25, z=3+3-(5-4)(-0.75)=6.75,
			// p=-6.75/5
			name: "ftrl dense", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7}, rowSize: 1,
			init:  []float32{0},
			steps: []optStep{{nil, []float32{3}}, {nil, []float32{3}}},
			want:  []float32{-1.35}, tol: 1e-6,
		},
		{
			// l1=1: p=(1-3)/4=-0.5; z=6+0.5=6.5, p=(1-6.5)/5=-1.1
			name: "ftrl l1", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7, L1: 1}, rowSize: 1,
			init:  []float32{0},
			steps: []optStep{{nil, []float32{3}}, {nil, []float32{3}}},
			want:  []float32{-1.1}, tol: 1e-6,
		},
		{
			// |z|=3 ≤ l1=4 → 0; l2=0.5 (l1=0) → -3/(4+1)
			name: "ftrl l1 clips, l2 shrinks", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7, L1: 4}, rowSize: 1,
			init:  []float32{0.3},
			steps: []optStep{{nil, []float32{3 + 0.3*(4-float32(math.Sqrt(7)))}}},
			want:  []float32{0}, tol: 1e-6,
		},
		{
			name: "ftrl l2", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7, L2: 0.5}, rowSize: 1,
			init:  []float32{0},
			steps: []optStep{{nil, []float32{3}}},
			want:  []float32{-0.6}, tol: 1e-6,
		},
		{
			// lr_power=-1: n'^1 = 16, z=3, p=-3/16
			name: "ftrl lr_power -1", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7, LRPower: -1}, rowSize: 1,
			init:  []float32{0},
			steps: []optStep{{nil, []float32{3}}},
			want:  []float32{-0.1875}, tol: 1e-6,
		},
		{
			// sparse FTRL, duplicates 1+2 summed on row 1; row 0 untouched
			name: "ftrl sparse", spec: OptimizerSpec{Kind: OptFTRL, LR: 1, InitialAccumulator: 7}, rowSize: 1,
			init:  []float32{9, 0},
			steps: []optStep{{[]int64{1, 1}, []float32{1, 2}}},
			want:  []float32{9, -0.75}, tol: 1e-6,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := NewOptimizer(tc.spec, len(tc.init))
			if err != nil {
				t.Fatal(err)
			}
			p := slices.Clone(tc.init)
			for i, st := range tc.steps {
				if st.rows == nil {
					err = o.ApplyDense(p, st.grad)
				} else {
					err = o.ApplySparse(p, tc.rowSize, st.rows, st.grad)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			for i := range p {
				if math.Abs(float64(p[i]-tc.want[i])) > tc.tol {
					t.Errorf("value %d = %.7f, want %.7f", i, p[i], tc.want[i])
				}
			}
		})
	}
}

func TestOptimizerRejectsBadInput(t *testing.T) {
	o, err := NewOptimizer(OptimizerSpec{Kind: OptAdam, LR: 0.1}, 4)
	if err != nil {
		t.Fatal(err)
	}
	p := []float32{1, 2, 3, 4}
	if err := o.ApplyDense(p, []float32{1}); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("short dense gradient: %v", err)
	}
	if err := o.ApplySparse(p, 2, []int64{2}, []float32{1, 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("row out of range: %v", err)
	}
	if err := o.ApplySparse(p, 2, []int64{-1}, []float32{1, 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("negative row: %v", err)
	}
	if err := o.ApplySparse(p, 2, []int64{0}, []float32{1}); !errors.Is(err, ErrShapeMismatch) {
		t.Errorf("short sparse gradient: %v", err)
	}
	if err := o.ApplySparse(p, 3, []int64{0}, []float32{1, 1, 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("row size not dividing: %v", err)
	}
	if !slices.Equal(p, []float32{1, 2, 3, 4}) {
		t.Errorf("rejected applies changed values: %v", p)
	}
	// Nothing changed, including Adam's step count: the next good apply is
	// a first step (≈ lr·sign(g)).
	if err := o.ApplyDense(p, []float32{1, 1, 1, 1}); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(p[0]-0.9)) > 1e-5 {
		t.Errorf("first Adam step after rejects: %v, want 0.9", p[0])
	}
	for _, bad := range []OptimizerSpec{
		{Kind: OptSGD, LR: 0},
		{Kind: OptSGD, LR: -1},
		{Kind: "rmsprop", LR: 1},
		{Kind: OptAdam, LR: 1, Beta1: 1},
		{Kind: OptFTRL, LR: 1, LRPower: 0.5},
		{Kind: OptSGD, LR: float32(math.NaN())},
	} {
		if _, err := NewOptimizer(bad, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NewOptimizer(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestSumDuplicateRows(t *testing.T) {
	rows := []int64{3, 1, 3, 1, 0}
	grad := []float32{1, 10, 2, 20, 3, 30, 4, 40, 5, 50}
	r, g := SumDuplicateRows(rows, grad, 2)
	if !slices.Equal(r, []int64{3, 1, 0}) || !slices.Equal(g, []float32{4, 40, 6, 60, 5, 50}) {
		t.Errorf("got %v %v", r, g)
	}
	if !slices.Equal(grad, []float32{1, 10, 2, 20, 3, 30, 4, 40, 5, 50}) {
		t.Errorf("input modified: %v", grad)
	}
	r, g = SumDuplicateRows([]int64{2, 0}, []float32{1, 2}, 1)
	if !slices.Equal(r, []int64{2, 0}) || !slices.Equal(g, []float32{1, 2}) {
		t.Errorf("no duplicates: got %v %v", r, g)
	}
}

// Sparse applies with duplicate ids equal applies of the pre-summed rows,
// for every optimizer, over several calls (the scratch bitsets must be
// clean between calls).
func TestSparseDuplicatesMatchPresummed(t *testing.T) {
	const rowSize, nrows = 3, 50
	for _, kind := range []OptimizerKind{OptSGD, OptMomentum, OptAdagrad, OptAdam, OptFTRL} {
		spec := OptimizerSpec{Kind: kind, LR: 0.05, L1: 0.01, L2: 0.01}
		a, err := NewOptimizer(spec, nrows*rowSize)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := NewOptimizer(spec, nrows*rowSize)
		pa := make([]float32, nrows*rowSize)
		for i := range pa {
			pa[i] = float32(i%7) * 0.1
		}
		pb := slices.Clone(pa)
		for call := 0; call < 5; call++ {
			var rows []int64
			var grad []float32
			for i := 0; i < 40; i++ {
				rows = append(rows, int64(mix64(uint64(call*100+i))%20)*2+int64(call%2))
				for k := 0; k < rowSize; k++ {
					grad = append(grad, float32(int(mix64(uint64(i*rowSize+k))%9)-4)*0.25)
				}
			}
			if err := a.ApplySparse(pa, rowSize, rows, grad); err != nil {
				t.Fatal(err)
			}
			r2, g2 := SumDuplicateRows(rows, grad, rowSize)
			if len(r2) == len(rows) {
				t.Fatal("test rows have no duplicates")
			}
			if err := b.ApplySparse(pb, rowSize, r2, g2); err != nil {
				t.Fatal(err)
			}
		}
		for i := range pa {
			if math.Abs(float64(pa[i]-pb[i])) > 1e-6 {
				t.Fatalf("%s: value %d: %v with duplicates, %v pre-summed", kind, i, pa[i], pb[i])
			}
		}
	}
}
