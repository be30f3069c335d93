package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/models"
	"github.com/flowps/flowps/runtime"
)

// wireStore is a VarStore that passes every gradient through a codec's
// encode → decode before applying it to an in-memory store with plain SGD,
// simulating a lossy wire between trainer and parameter server (the
// trainer holds the top-k residuals, as it would). It also counts bytes
// and, when asked, keeps copies of the gradients of chosen steps.
type wireStore struct {
	inner *runtime.MemStore
	codec string

	mu       sync.Mutex
	vars     map[string]*wireVar
	rowSizes map[string]int
	capture  map[int64]bool
	// captured holds, per captured step, each variable's raw gradient.
	captured            map[int64]map[string][]float32
	rawBytes, wireBytes int64
	errSum              float64
	errN                int64
}

type wireVar struct {
	mu    sync.Mutex
	c     codec
	buf   []byte
	dense []float32
}

func newWireStore(lr float32, codecName string, captureSteps []int64) *wireStore {
	s := &wireStore{inner: runtime.NewMemStore(lr), codec: codecName, vars: map[string]*wireVar{}, rowSizes: map[string]int{},
		capture: map[int64]bool{}, captured: map[int64]map[string][]float32{}}
	for _, st := range captureSteps {
		s.capture[st] = true
	}
	return s
}

func (s *wireStore) Create(ctx context.Context, vars []runtime.VariableDef) error {
	s.mu.Lock()
	for _, d := range vars {
		if len(d.Shape) > 0 && d.Shape[0] > 0 {
			s.rowSizes[d.Name] = d.Shape.NumElements() / d.Shape[0]
		}
	}
	s.mu.Unlock()
	return s.inner.Create(ctx, vars)
}

func (s *wireStore) Pull(ctx context.Context, step int64, reqs []runtime.PullRequest) error {
	return s.inner.Pull(ctx, step, reqs)
}

func (s *wireStore) Push(ctx context.Context, step int64, g runtime.Gradient) error {
	s.mu.Lock()
	v := s.vars[g.Name]
	if v == nil {
		c, err := newCodec(s.codec, max(1, s.rowSizes[g.Name]))
		if err != nil {
			s.mu.Unlock()
			return err
		}
		v = &wireVar{c: c}
		s.vars[g.Name] = v
	}
	if s.capture[step] {
		m := s.captured[step]
		if m == nil {
			m = map[string][]float32{}
			s.captured[step] = m
		}
		m[g.Name] = slices.Clone(g.Values)
	}
	s.mu.Unlock()
	if g.Rows != nil {
		return fmt.Errorf("compress benchmark: sparse gradient of %s not supported (the MLP has none)", g.Name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var err error
	v.buf, err = v.c.encode(v.buf[:0], g.Values)
	if err != nil {
		return fmt.Errorf("encode %s: %w", g.Name, err)
	}
	if cap(v.dense) < len(g.Values) {
		v.dense = make([]float32, len(g.Values))
	}
	dense := v.dense[:len(g.Values)]
	if err := v.c.decode(dense, v.buf); err != nil {
		return fmt.Errorf("decode %s: %w", g.Name, err)
	}
	e := relError(dense, g.Values)
	s.mu.Lock()
	s.rawBytes += int64(4 * len(g.Values))
	s.wireBytes += int64(len(v.buf))
	if !math.IsNaN(e) {
		s.errSum += e
		s.errN++
	}
	s.mu.Unlock()
	return s.inner.Push(ctx, step, runtime.Gradient{Name: g.Name, Values: dense})
}

// trainConfig is one training run.
type trainConfig struct {
	Codec        string
	Epochs       int
	Batch        int
	LR           float32
	Seed         int64
	CaptureSteps []int64
}

// trainResult is what a run measured.
type trainResult struct {
	Codec         string    `json:"codec"`
	Seed          int64     `json:"seed"`
	EpochAccuracy []float64 `json:"epoch_test_accuracy"`
	TestAccuracy  float64   `json:"test_accuracy"`
	TrainLoss     float64   `json:"final_epoch_train_loss"`
	Steps         int64     `json:"steps"`
	Seconds       float64   `json:"seconds"`
	WireRatio     float64   `json:"wire_bytes_per_raw_byte"`
	MeanRelError  float64   `json:"mean_gradient_rel_error"`

	store *wireStore
}

// train runs --local-style training of the MLP: one worker, plain SGD on
// an in-memory store, every gradient through the codec.
func train(ctx context.Context, cfg trainConfig, trainSet, testSet *data.Dataset) (*trainResult, error) {
	m, err := models.Build("mlp", models.Config{InputShape: trainSet.Shape, Classes: trainSet.Classes, Seed: cfg.Seed, Init: models.InitTorch})
	if err != nil {
		return nil, err
	}
	store := newWireStore(cfg.LR, cfg.Codec, cfg.CaptureSteps)
	sess, err := runtime.NewSession(ctx, m.Graph, runtime.SessionConfig{Store: store})
	if err != nil {
		return nil, err
	}
	sampler, err := data.NewSampler(trainSet.N(), cfg.Batch, 0, 1, uint64(cfg.Seed))
	if err != nil {
		return nil, err
	}
	res := &trainResult{Codec: cfg.Codec, Seed: cfg.Seed, store: store}
	var (
		x    []float32
		y    []int32
		step int64
	)
	began := time.Now()
	for epoch := range cfg.Epochs {
		var lossSum float64
		batches := sampler.Epoch(epoch)
		for _, idx := range batches {
			x, y = trainSet.Gather(idx, x, y)
			feeds, err := feedsOf(m, x, y)
			if err != nil {
				return nil, err
			}
			out, err := sess.Run(ctx, runtime.RunArgs{Step: step, Training: true, Feeds: feeds,
				Fetches: []*runtime.Node{m.Loss}, Targets: []*runtime.Node{m.Train}})
			if err != nil {
				return nil, fmt.Errorf("%s epoch %d step %d: %w", cfg.Codec, epoch+1, step, err)
			}
			l, _ := out.Values[0].Float()
			if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
				return nil, fmt.Errorf("%s epoch %d step %d: training diverged", cfg.Codec, epoch+1, step)
			}
			lossSum += float64(l)
			step++
		}
		res.TrainLoss = lossSum / float64(len(batches))
		acc, err := evaluate(ctx, sess, m, testSet, step)
		if err != nil {
			return nil, err
		}
		res.EpochAccuracy = append(res.EpochAccuracy, acc)
	}
	res.Seconds = time.Since(began).Seconds()
	res.Steps = step
	res.TestAccuracy = res.EpochAccuracy[len(res.EpochAccuracy)-1]
	store.mu.Lock()
	res.WireRatio = float64(store.wireBytes) / float64(store.rawBytes)
	res.MeanRelError = store.errSum / float64(max(1, store.errN))
	store.mu.Unlock()
	return res, nil
}

func feedsOf(m *models.Model, x []float32, y []int32) (runtime.Feeds, error) {
	n := len(y)
	xt, err := runtime.NewTensor(runtime.Shape{n, len(x) / max(1, n)}, x)
	if err != nil {
		return nil, err
	}
	lab := make([]int64, n)
	for i, l := range y {
		lab[i] = int64(l)
	}
	yt, err := runtime.NewIntTensor(runtime.Int32, runtime.Shape{n}, lab)
	if err != nil {
		return nil, err
	}
	return runtime.Feeds{m.Input: xt, m.Labels: yt}, nil
}

// evaluate returns the accuracy on the whole test set.
func evaluate(ctx context.Context, sess *runtime.Session, m *models.Model, test *data.Dataset, step int64) (float64, error) {
	const batch = 1000
	var (
		x       []float32
		y       []int32
		correct float64
	)
	n := test.N()
	idx := make([]int, 0, batch)
	for lo := 0; lo < n; lo += batch {
		idx = idx[:0]
		for i := lo; i < min(n, lo+batch); i++ {
			idx = append(idx, i)
		}
		x, y = test.Gather(idx, x, y)
		feeds, err := feedsOf(m, x, y)
		if err != nil {
			return 0, err
		}
		out, err := sess.Run(ctx, runtime.RunArgs{Step: step, Feeds: feeds, Fetches: []*runtime.Node{m.Accuracy}})
		if err != nil {
			return 0, fmt.Errorf("evaluate: %w", err)
		}
		a, _ := out.Values[0].Float()
		correct += math.Round(float64(a) * float64(len(idx)))
	}
	return correct / float64(n), nil
}
