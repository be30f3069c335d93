package runtime

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	b := NewBuilder()
	x := b.Placeholder("x", Float32, Shape{-1, 3})
	w := b.Variable("w", Shape{3, 2}, ConstantInit(0.5))
	y := b.MatMul(x, w, false, false)
	loss := b.Mean(b.Square(y), nil, false)
	train := b.Minimize(loss, nil)
	g, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	st := NewMemStore(0.1)
	s, err := NewSession(context.Background(), g, SessionConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	xv, _ := NewTensor(Shape{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	for i := 0; i < 3; i++ {
		res, err := s.Run(context.Background(), RunArgs{Step: int64(i), Feeds: Feeds{x: xv}, Fetches: []*Node{loss, y}, Targets: []*Node{train}})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res.Values[0], res.Values[1], res.Stats)
	}
}
