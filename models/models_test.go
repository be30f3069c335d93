package models

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/runtime"
)

func TestShapesAndParams(t *testing.T) {
	cases := []struct {
		name   string
		vars   []string
		params int
	}{
		{"logreg", []string{"logreg/kernel", "logreg/bias"}, 784*10 + 10},
		{"mlp", []string{"dense1/kernel", "dense1/bias", "dense2/kernel", "dense2/bias", "dense3/kernel", "dense3/bias"},
			784*256 + 256 + 256*128 + 128 + 128*10 + 10},
		{"cnn", []string{"conv1/kernel", "conv1/bias", "conv2/kernel", "conv2/bias", "fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias"},
			5*5*16 + 16 + 5*5*16*32 + 32 + 7*7*32*128 + 128 + 128*10 + 10},
	}
	for _, c := range cases {
		m, err := Build(c.name, Config{Seed: 1})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var names []string
		for _, v := range m.Vars {
			names = append(names, v.Name())
		}
		if !slices.Equal(names, c.vars) {
			t.Errorf("%s: vars %v, want %v", c.name, names, c.vars)
		}
		if m.NumParams() != c.params {
			t.Errorf("%s: %d params, want %d", c.name, m.NumParams(), c.params)
		}
		if !m.Input.Shape().Equal(runtime.Shape{-1, 784}) || !m.Logits.Shape().Equal(runtime.Shape{-1, 10}) {
			t.Errorf("%s: input %v logits %v", c.name, m.Input.Shape(), m.Logits.Shape())
		}
		if len(m.Graph.Variables()) != len(c.vars) {
			t.Errorf("%s: graph has %d variables", c.name, len(m.Graph.Variables()))
		}
	}
}

func TestInitSchemes(t *testing.T) {
	m, err := Build("mlp", Config{Seed: 1, Init: InitTorch})
	if err != nil {
		t.Fatal(err)
	}
	defs := m.Graph.Variables()
	k, b := defs[0], defs[1] // dense1: fan-in 784
	lim := float32(1 / math.Sqrt(784))
	if k.Init.Kind != runtime.InitUniform || k.Init.Min != -lim || k.Init.Max != lim || b.Init.Kind != runtime.InitUniform || b.Init.Max != lim {
		t.Errorf("torch init: kernel %+v bias %+v", k.Init, b.Init)
	}
	m, err = Build("cnn", Config{Seed: 1, Init: InitGlorot})
	if err != nil {
		t.Fatal(err)
	}
	defs = m.Graph.Variables()
	if defs[0].Init.Kind != runtime.InitGlorotUniform || defs[1].Init.Kind != runtime.InitZeros {
		t.Errorf("glorot init: %+v %+v", defs[0].Init, defs[1].Init)
	}
	m2, _ := Build("cnn", Config{Seed: 1, Init: InitTorch})
	if l := m2.Graph.Variables()[2].Init.Max; l != float32(1/math.Sqrt(5*5*16)) {
		t.Errorf("conv2 torch limit %v, want 1/sqrt(400)", l)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"resnet", Config{}},
		{"cnn", Config{InputShape: []int{784}}},
		{"mlp", Config{Classes: 1}},
		{"mlp", Config{Init: "he"}},
		{"mlp", Config{Hidden: []int{0}}},
		{"logreg", Config{InputShape: []int{28, 0}}},
	} {
		if _, err := Build(c.name, c.cfg); err == nil {
			t.Errorf("Build(%q, %+v) succeeded", c.name, c.cfg)
		}
	}
	if !Known("cnn") || Known("resnet") || !slices.Equal(Names(), []string{"cnn", "logreg", "mlp"}) {
		t.Errorf("Names() = %v", Names())
	}
}

// TestModelsLearn trains each model for a few SGD steps on separable
// synthetic data with the runtime's in-memory store: the loss must fall
// well below its starting value, and accuracy must rise.
func TestModelsLearn(t *testing.T) {
	train, _, err := data.Synthetic(data.SyntheticConfig{Train: 64, Shape: []int{12, 12}, Classes: 4, Separation: 0.5, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, train.N())
	for i := range idx {
		idx[i] = i
	}
	x, y := train.Gather(idx, nil, nil)
	lab := make([]int64, len(y))
	for i, l := range y {
		lab[i] = int64(l)
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			cfg := Config{InputShape: train.Shape, Classes: train.Classes, Seed: 2, Hidden: []int{32, 16}, ConvFilters: [2]int{4, 8}, ConvDense: 16}
			m, err := Build(name, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			sess, err := runtime.NewSession(ctx, m.Graph, runtime.SessionConfig{Store: runtime.NewMemStore(0.1)})
			if err != nil {
				t.Fatal(err)
			}
			xt, _ := runtime.NewTensor(runtime.Shape{len(y), train.Dim()}, x)
			yt, _ := runtime.NewIntTensor(runtime.Int32, runtime.Shape{len(y)}, lab)
			feeds := runtime.Feeds{m.Input: xt, m.Labels: yt}
			eval := func() (float32, float32) {
				res, err := sess.Run(ctx, runtime.RunArgs{Feeds: feeds, Fetches: []*runtime.Node{m.Loss, m.Accuracy}})
				if err != nil {
					t.Fatal(err)
				}
				l, _ := res.Values[0].Float()
				a, _ := res.Values[1].Float()
				return l, a
			}
			l0, a0 := eval()
			for step := range 40 {
				if _, err := sess.Run(ctx, runtime.RunArgs{Step: int64(step), Training: true, Feeds: feeds, Targets: []*runtime.Node{m.Train}}); err != nil {
					t.Fatal(err)
				}
			}
			l1, a1 := eval()
			t.Logf("loss %.4f → %.4f, accuracy %.3f → %.3f", l0, l1, a0, a1)
			if !(l1 < 0.5*l0) || a1 < 0.9 {
				t.Errorf("did not learn: loss %.4f → %.4f, accuracy %.3f → %.3f", l0, l1, a0, a1)
			}
		})
	}
}
