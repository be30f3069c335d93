package runtime

import (
	"context"
	"math/rand/v2"
	"testing"
)

// lines makes 8×8 images of a horizontal line, a vertical line or a
// diagonal at a random position, with noise; the label is the kind.
func lines(r *rand.Rand, n int) (*Tensor, *Tensor) {
	xs := make([]float32, n*64)
	ys := make([]int64, n)
	for i := 0; i < n; i++ {
		img := xs[i*64 : (i+1)*64]
		for j := range img {
			img[j] = float32(r.NormFloat64()) * 0.2
		}
		k, p := r.IntN(3), r.IntN(8)
		ys[i] = int64(k)
		for j := 0; j < 8; j++ {
			switch k {
			case 0:
				img[p*8+j] += 1
			case 1:
				img[j*8+p] += 1
			default:
				img[j*8+(j+p)%8] += 1
			}
		}
	}
	x, _ := NewTensor(Shape{n, 8, 8, 1}, xs)
	y, _ := NewIntTensor(Int64, Shape{n}, ys)
	return x, y
}

func TestTrainCNN(t *testing.T) {
	ctx := context.Background()
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 8, 8, 1})
	y := b.Placeholder("y", Int64, Shape{-1})
	f := b.Variable("conv/f", Shape{3, 3, 1, 8}, GlorotUniform(1))
	fb := b.Variable("conv/b", Shape{8}, ZerosInit())
	h := b.Relu(b.BiasAdd(b.Conv2D(x, f, [2]int{1, 1}, Same), fb))
	h = b.MaxPool(h, [2]int{2, 2}, [2]int{2, 2}, Same)
	h = b.Dropout(b.Reshape(h, Shape{-1, 4 * 4 * 8}), 0.1, 5)
	w := b.Variable("dense/w", Shape{128, 3}, GlorotUniform(2))
	wb := b.Variable("dense/b", Shape{3}, ZerosInit())
	logits := b.BiasAdd(b.MatMul(h, w, false, false), wb)
	loss := b.Mean(b.SparseSoftmaxCrossEntropyWithLogits(logits, y), nil, false)
	acc := b.Accuracy(logits, y)
	train := b.Minimize(loss, nil)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(ctx, g, SessionConfig{Store: NewMemStore(0.1)})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	for step := 0; step < 150; step++ {
		xb, yb := lines(r, 32)
		if _, err := s.Run(ctx, RunArgs{Step: int64(step), Training: true, Feeds: Feeds{x: xb, y: yb}, Targets: []*Node{train}}); err != nil {
			t.Fatal(err)
		}
	}
	xt, yt := lines(r, 300)
	res, err := s.Run(ctx, RunArgs{Feeds: Feeds{x: xt, y: yt}, Fetches: []*Node{acc, loss}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := res.Values[0].Float()
	l, _ := res.Values[1].Float()
	t.Logf("test accuracy %.3f loss %.4f; %v", a, l, s.Stats())
	if a < 0.9 {
		t.Fatalf("CNN test accuracy %.3f, want ≥ 0.9", a)
	}
}
