package runtime_test

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/flowps/flowps/runtime"
)

// Logistic regression on two Gaussian blobs, trained with plain SGD in a
// MemStore.
func Example() {
	ctx := context.Background()
	b := runtime.NewBuilder()
	x := b.Placeholder("x", runtime.Float32, runtime.Shape{-1, 2})
	y := b.Placeholder("y", runtime.Int64, runtime.Shape{-1})
	w := b.Variable("w", runtime.Shape{2, 2}, runtime.GlorotUniform(1))
	bias := b.Variable("b", runtime.Shape{2}, runtime.ZerosInit())
	logits := b.BiasAdd(b.MatMul(x, w, false, false), bias)
	loss := b.Mean(b.SparseSoftmaxCrossEntropyWithLogits(logits, y), nil, false)
	acc := b.Accuracy(logits, y)
	train := b.Minimize(loss, nil)
	g, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	store := runtime.NewMemStore(0.5)
	sess, err := runtime.NewSession(ctx, g, runtime.SessionConfig{Store: store})
	if err != nil {
		fmt.Println(err)
		return
	}

	// 200 points: class 0 around (-1,-1), class 1 around (1,1).
	r := rand.New(rand.NewPCG(1, 2))
	xs, ys := make([]float32, 400), make([]int64, 200)
	for i := range ys {
		ys[i] = int64(i % 2)
		c := float32(2*ys[i] - 1)
		xs[2*i] = c + float32(r.NormFloat64())*0.5
		xs[2*i+1] = c + float32(r.NormFloat64())*0.5
	}
	xt, _ := runtime.NewTensor(runtime.Shape{200, 2}, xs)
	yt, _ := runtime.NewIntTensor(runtime.Int64, runtime.Shape{200}, ys)

	for step := int64(0); step < 50; step++ {
		_, err := sess.Run(ctx, runtime.RunArgs{
			Step: step, Training: true,
			Feeds:   runtime.Feeds{x: xt, y: yt},
			Targets: []*runtime.Node{train},
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	res, err := sess.Run(ctx, runtime.RunArgs{Feeds: runtime.Feeds{x: xt, y: yt}, Fetches: []*runtime.Node{acc}})
	if err != nil {
		fmt.Println(err)
		return
	}
	a, _ := res.Values[0].Float()
	fmt.Printf("accuracy ≥ 0.95: %v\n", a >= 0.95)
	// Output: accuracy ≥ 0.95: true
}
