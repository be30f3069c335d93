package runtime

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRandomGraphsNeverPanic builds random graphs from random (often
// ill-fitting) ops, shapes and attributes, then runs the ones that build
// with feeds whose unknown dimensions are drawn at random. Build and Run
// may fail, but must not panic, and no failure may be an internal
// (recovered) error: every bad input must be caught by a check.
func TestRandomGraphsNeverPanic(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 43))
	dim := func() int {
		if r.IntN(4) == 0 {
			return -1
		}
		return 1 + r.IntN(4)
	}
	shape := func() Shape {
		s := make(Shape, 1+r.IntN(4))
		for i := range s {
			s[i] = dim()
		}
		return s
	}
	built, ran := 0, 0
	for iter := 0; iter < 3000; iter++ {
		b := NewBuilder()
		var nodes []*Node
		var phs []*Node
		for i := 0; i < 3; i++ {
			p := b.Placeholder("p"+string(rune('a'+i)), Float32, shape())
			nodes, phs = append(nodes, p), append(phs, p)
		}
		ids := b.Placeholder("ids", Int64, Shape{dim()})
		phs = append(phs, ids)
		pick := func() *Node { return nodes[r.IntN(len(nodes))] }
		for i := 0; i < 6; i++ {
			var n *Node
			switch r.IntN(22) {
			case 0:
				n = b.MatMul(pick(), pick(), r.IntN(2) == 0, r.IntN(2) == 0)
			case 1:
				n = b.Add(pick(), pick())
			case 2:
				n = b.Mul(pick(), pick())
			case 3:
				n = b.Div(pick(), pick())
			case 4:
				n = b.BiasAdd(pick(), pick())
			case 5:
				n = b.Relu(pick())
			case 6:
				n = b.Softmax(pick())
			case 7:
				n = b.Sum(pick(), []int{r.IntN(3) - 1}, r.IntN(2) == 0)
			case 8:
				n = b.Mean(pick(), nil, false)
			case 9:
				n = b.Reshape(pick(), Shape{-1, 1 + r.IntN(3)})
			case 10:
				n = b.Transpose(pick(), []int{1, 0})
			case 11:
				n = b.Concat(r.IntN(2), pick(), pick())
			case 12:
				n = b.Gather(pick(), ids)
			case 13:
				n = b.Conv2D(pick(), pick(), [2]int{1 + r.IntN(2), 1}, Same)
			case 14:
				n = b.MaxPool(pick(), [2]int{2, 2}, [2]int{1 + r.IntN(2), 2}, Valid)
			case 15:
				n = b.SparseSoftmaxCrossEntropyWithLogits(pick(), ids)
			case 16:
				n = b.SigmoidCrossEntropyWithLogits(pick(), pick())
			case 17:
				n = b.LogSoftmax(pick())
			case 18:
				n = b.Dropout(pick(), 0.5, 1)
			case 19:
				n = b.Sub(pick(), b.Scalar(1))
			case 20:
				n = b.Cast(b.ArgMax(pick(), r.IntN(2)), Float32)
			default:
				n = b.Tanh(pick())
			}
			if b.Err() != nil {
				break
			}
			nodes = append(nodes, n)
		}
		last := nodes[len(nodes)-1]
		var grads []*Node
		if b.Err() == nil {
			grads = b.Gradients(b.Sum(last, nil, false), phs[:3])
		}
		g, err := b.Build()
		if err != nil {
			if strings.Contains(err.Error(), "internal") {
				t.Fatalf("build: %v", err)
			}
			continue
		}
		built++
		s, err := NewSession(context.Background(), g, SessionConfig{})
		if err != nil {
			t.Fatal(err)
		}
		feeds := Feeds{}
		batch := 1 + r.IntN(3)
		for _, p := range phs {
			sh := p.Shape().Clone()
			for i := range sh {
				if sh[i] < 0 {
					sh[i] = batch + r.IntN(2)
				}
			}
			if p.DType() == Int64 {
				v := make([]int64, sh.NumElements())
				for i := range v {
					v[i] = int64(r.IntN(4))
				}
				feeds[p], _ = NewIntTensor(Int64, sh, v)
			} else {
				feeds[p] = randTensor(r, sh, -1, 1)
			}
		}
		fetch := []*Node{last}
		for _, gr := range grads {
			if gr != nil {
				fetch = append(fetch, gr)
			}
		}
		_, err = s.Run(context.Background(), RunArgs{Training: true, Feeds: feeds, Fetches: fetch})
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("graph %d: %v", iter, err)
		}
		if err == nil {
			ran++
		} else if testing.Verbose() {
			t.Logf("run error: %v", err)
		}
	}
	t.Logf("built %d graphs, %d ran without error", built, ran)
	if built < 150 || ran < 80 {
		t.Fatalf("too few graphs exercised: built %d ran %d", built, ran)
	}
}
