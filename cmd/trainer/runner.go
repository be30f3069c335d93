package main

import (
	"context"
	"fmt"

	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/runtime"
)

// stepRunner runs a model's training step and evaluation on a batch.
type stepRunner interface {
	// train takes one step on batch (x, y) against weights of version step
	// and returns the batch's loss and accuracy (before the update).
	train(ctx context.Context, step int64, x []float32, y []int32) (loss, acc float32, err error)
	// eval returns the batch's accuracy and loss without updating weights.
	eval(ctx context.Context, step int64, x []float32, y []int32) (acc, loss float32, err error)
}

// sessionRunner runs a models.Model in a runtime.Session whose variables
// live in a VarStore. It is used by one goroutine.
type sessionRunner struct {
	sess *runtime.Session
	m    *models.Model
	dim  int
	lab  []int64
}

func newSessionRunner(ctx context.Context, m *models.Model, store runtime.VarStore) (*sessionRunner, error) {
	sess, err := runtime.NewSession(ctx, m.Graph, runtime.SessionConfig{Store: store})
	if err != nil {
		return nil, err
	}
	return &sessionRunner{sess: sess, m: m, dim: m.Input.Shape()[1]}, nil
}

func (r *sessionRunner) feeds(x []float32, y []int32) (runtime.Feeds, error) {
	n := len(y)
	if len(x) != n*r.dim {
		return nil, fmt.Errorf("batch has %d feature values for %d examples of %d", len(x), n, r.dim)
	}
	xt, err := runtime.NewTensor(runtime.Shape{n, r.dim}, x)
	if err != nil {
		return nil, err
	}
	r.lab = r.lab[:0]
	for _, l := range y {
		r.lab = append(r.lab, int64(l))
	}
	yt, err := runtime.NewIntTensor(runtime.Int32, runtime.Shape{n}, r.lab)
	if err != nil {
		return nil, err
	}
	return runtime.Feeds{r.m.Input: xt, r.m.Labels: yt}, nil
}

func (r *sessionRunner) train(ctx context.Context, step int64, x []float32, y []int32) (loss, acc float32, err error) {
	feeds, err := r.feeds(x, y)
	if err != nil {
		return 0, 0, err
	}
	res, err := r.sess.Run(ctx, runtime.RunArgs{
		Step: step, Training: true, Feeds: feeds,
		Fetches: []*runtime.Node{r.m.Loss, r.m.Accuracy}, Targets: []*runtime.Node{r.m.Train},
	})
	if err != nil {
		return 0, 0, err
	}
	loss, _ = res.Values[0].Float()
	acc, _ = res.Values[1].Float()
	return loss, acc, nil
}

func (r *sessionRunner) eval(ctx context.Context, step int64, x []float32, y []int32) (acc, loss float32, err error) {
	feeds, err := r.feeds(x, y)
	if err != nil {
		return 0, 0, err
	}
	res, err := r.sess.Run(ctx, runtime.RunArgs{
		Step: step, Feeds: feeds, Fetches: []*runtime.Node{r.m.Accuracy, r.m.Loss},
	})
	if err != nil {
		return 0, 0, err
	}
	acc, _ = res.Values[0].Float()
	loss, _ = res.Values[1].Float()
	return acc, loss, nil
}
