package models

import (
	"context"
	"testing"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/runtime"
)

// BenchmarkTrainStep measures one training step at batch 64 on 28×28
// inputs against the runtime's in-memory store, reporting examples/s.
func BenchmarkTrainStep(b *testing.B) {
	const batch = 64
	train, _, err := data.Synthetic(data.SyntheticConfig{Train: batch, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = i
	}
	x, y := train.Gather(idx, nil, nil)
	lab := make([]int64, batch)
	for i, l := range y {
		lab[i] = int64(l)
	}
	for _, c := range []struct {
		name, model string
		cfg         Config
	}{
		{"logreg", "logreg", Config{}},
		{"mlp", "mlp", Config{}},
		{"cnn-8-16-64", "cnn", Config{ConvFilters: [2]int{8, 16}, ConvDense: 64}},
		{"cnn", "cnn", Config{}},
		{"cnn-lenet-32-64-1024", "cnn", Config{ConvFilters: [2]int{32, 64}, ConvDense: 1024}},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, err := Build(c.model, c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			sess, err := runtime.NewSession(ctx, m.Graph, runtime.SessionConfig{Store: runtime.NewMemStore(0.01)})
			if err != nil {
				b.Fatal(err)
			}
			xt, _ := runtime.NewTensor(runtime.Shape{batch, 784}, x)
			yt, _ := runtime.NewIntTensor(runtime.Int32, runtime.Shape{batch}, lab)
			args := runtime.RunArgs{Training: true, Feeds: runtime.Feeds{m.Input: xt, m.Labels: yt}, Targets: []*runtime.Node{m.Train}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				args.Step = int64(i)
				if _, err := sess.Run(ctx, args); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "examples/s")
		})
	}
}
