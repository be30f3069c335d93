package models

import (
	"fmt"
	"math"
	"slices"

	"github.com/flowps/flowps/runtime"
)

// InitScheme chooses how weights and biases are initialised.
type InitScheme string

// The initialisation schemes.
const (
	// InitGlorot draws weights from Glorot-uniform and sets biases to zero
	// (TensorFlow/Keras' default).
	InitGlorot InitScheme = "glorot"
	// InitTorch draws weights AND biases from U(-1/√fan_in, 1/√fan_in),
	// PyTorch's default for Linear and Conv2d (kaiming-uniform with a=√5),
	// so results compare with PyTorch references.
	InitTorch InitScheme = "torch"
)

// Config parameterises a model. The zero value (after defaults) is an
// MNIST classifier: 28×28 inputs, 10 classes, Glorot init, seed 0.
type Config struct {
	// InputShape is the shape of one example; default [28 28]. The cnn
	// needs [h w] or [h w c].
	InputShape []int
	// Classes is the number of classes; default 10.
	Classes int
	// Seed seeds every initializer (each variable also mixes in its name).
	Seed int64
	// Init is the initialisation scheme; default InitGlorot.
	Init InitScheme
	// Hidden are the MLP's hidden layer widths; default [256 128].
	Hidden []int
	// ConvFilters are the cnn's two convolution widths and ConvDense its
	// fully connected width; defaults 16, 32 and 128 (see doc.go for why
	// smaller than LeNet's 32, 64, 1024).
	ConvFilters [2]int
	ConvDense   int
}

func (c *Config) defaults() error {
	if len(c.InputShape) == 0 {
		c.InputShape = []int{28, 28}
	}
	if c.Classes == 0 {
		c.Classes = 10
	}
	if c.Init == "" {
		c.Init = InitGlorot
	}
	if c.Hidden == nil {
		c.Hidden = []int{256, 128}
	}
	if c.ConvFilters == [2]int{} {
		c.ConvFilters = [2]int{16, 32}
	}
	if c.ConvDense == 0 {
		c.ConvDense = 128
	}
	for _, d := range c.InputShape {
		if d < 1 {
			return fmt.Errorf("models: input shape %v: dimensions must be ≥ 1", c.InputShape)
		}
	}
	if c.Classes < 2 {
		return fmt.Errorf("models: %d classes, want ≥ 2", c.Classes)
	}
	if c.Init != InitGlorot && c.Init != InitTorch {
		return fmt.Errorf("models: unknown init scheme %q (want glorot or torch)", c.Init)
	}
	for _, h := range c.Hidden {
		if h < 1 {
			return fmt.Errorf("models: hidden widths %v must be ≥ 1", c.Hidden)
		}
	}
	if c.ConvFilters[0] < 1 || c.ConvFilters[1] < 1 || c.ConvDense < 1 {
		return fmt.Errorf("models: cnn widths %v, %d must be ≥ 1", c.ConvFilters, c.ConvDense)
	}
	return nil
}

func (c *Config) inputDim() int {
	n := 1
	for _, d := range c.InputShape {
		n *= d
	}
	return n
}

// Model is a built classifier graph and the nodes a trainer needs.
type Model struct {
	// Name is the model's name (logreg, mlp, cnn).
	Name string
	// Graph holds every node below.
	Graph *runtime.Graph
	// Input is the float32 placeholder "x" of shape [-1, D], D the product
	// of the input shape: feed a batch of flattened examples.
	Input *runtime.Node
	// Labels is the int32 placeholder "labels" of shape [-1].
	Labels *runtime.Node
	// Logits are the unnormalised class scores [-1, classes].
	Logits *runtime.Node
	// Loss is the mean softmax cross entropy over the batch (a mean, so the
	// average of per-worker gradients equals the gradient of the combined
	// batch).
	Loss *runtime.Node
	// Accuracy is the fraction of the batch classified correctly.
	Accuracy *runtime.Node
	// Train is the target that computes every gradient and pushes it: run
	// it to take one training step.
	Train *runtime.Node
	// Vars are the model's variables in creation order.
	Vars []*runtime.Node
}

// NumParams is the number of scalar parameters in Vars.
func (m *Model) NumParams() int {
	n := 0
	for _, v := range m.Vars {
		n += v.Shape().NumElements()
	}
	return n
}

var builders = map[string]func(*layers, *runtime.Node, *Config) *runtime.Node{
	"logreg": buildLogReg,
	"mlp":    buildMLP,
	"cnn":    buildCNN,
}

// Names lists the models Build knows, sorted.
func Names() []string {
	out := make([]string, 0, len(builders))
	for k := range builders {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Known reports whether Build knows the model name.
func Known(name string) bool { return builders[name] != nil }

// Build builds the named model (logreg, mlp or cnn) for cfg.
func Build(name string, cfg Config) (*Model, error) {
	f := builders[name]
	if f == nil {
		return nil, fmt.Errorf("models: unknown model %q (want one of %v)", name, Names())
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if name == "cnn" && len(cfg.InputShape) != 2 && len(cfg.InputShape) != 3 {
		return nil, fmt.Errorf("models: cnn needs an image input shape [h w] or [h w c], got %v", cfg.InputShape)
	}
	b := runtime.NewBuilder()
	l := &layers{b: b, cfg: &cfg}
	x := b.Placeholder("x", runtime.Float32, runtime.Shape{-1, cfg.inputDim()})
	y := b.Placeholder("labels", runtime.Int32, runtime.Shape{-1})
	logits := b.Name(f(l, x, &cfg), "logits")
	loss := b.Name(b.Mean(b.SparseSoftmaxCrossEntropyWithLogits(logits, y), nil, false), "loss")
	acc := b.Name(b.Accuracy(logits, y), "accuracy")
	train := b.Name(b.Minimize(loss, l.vars), "train")
	g, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("models: build %s: %w", name, err)
	}
	return &Model{Name: name, Graph: g, Input: x, Labels: y, Logits: logits, Loss: loss, Accuracy: acc, Train: train, Vars: l.vars}, nil
}

// layers adds variables and layers with the config's init scheme.
type layers struct {
	b    *runtime.Builder
	cfg  *Config
	vars []*runtime.Node
}

// params adds a weight of shape w (fan-in fanIn) and a bias of width out.
func (l *layers) params(name string, w runtime.Shape, fanIn, out int) (kernel, bias *runtime.Node) {
	seed := l.cfg.Seed
	var wi, bi runtime.Initializer
	switch l.cfg.Init {
	case InitTorch:
		lim := float32(1 / math.Sqrt(float64(fanIn)))
		wi, bi = runtime.UniformInit(-lim, lim, seed), runtime.UniformInit(-lim, lim, seed)
	default:
		wi, bi = runtime.GlorotUniform(seed), runtime.ZerosInit()
	}
	kernel = l.b.Variable(name+"/kernel", w, wi)
	bias = l.b.Variable(name+"/bias", runtime.Shape{out}, bi)
	l.vars = append(l.vars, kernel, bias)
	return kernel, bias
}

// dense is x·W + b for x [n, in].
func (l *layers) dense(name string, x *runtime.Node, in, out int) *runtime.Node {
	w, bias := l.params(name, runtime.Shape{in, out}, in, out)
	return l.b.BiasAdd(l.b.MatMul(x, w, false, false), bias)
}

// conv is a SAME k×k convolution with bias for x [n, h, w, cin].
func (l *layers) conv(name string, x *runtime.Node, k, cin, cout int) *runtime.Node {
	f, bias := l.params(name, runtime.Shape{k, k, cin, cout}, k*k*cin, cout)
	return l.b.BiasAdd(l.b.Conv2D(x, f, [2]int{1, 1}, runtime.Same), bias)
}

func buildLogReg(l *layers, x *runtime.Node, c *Config) *runtime.Node {
	return l.dense("logreg", x, c.inputDim(), c.Classes)
}

func buildMLP(l *layers, x *runtime.Node, c *Config) *runtime.Node {
	h, in := x, c.inputDim()
	for i, w := range c.Hidden {
		h = l.b.Relu(l.dense(fmt.Sprintf("dense%d", i+1), h, in, w))
		in = w
	}
	return l.dense(fmt.Sprintf("dense%d", len(c.Hidden)+1), h, in, c.Classes)
}

// buildCNN is LeNet-style: conv5×5-relu-maxpool2, twice, then
// fc-relu-fc. Pooling uses SAME padding, so odd sizes round up.
func buildCNN(l *layers, x *runtime.Node, c *Config) *runtime.Node {
	b := l.b
	s := c.InputShape
	hh, ww, ch := s[0], 1, 1
	switch len(s) {
	case 2:
		ww = s[1]
	case 3:
		ww, ch = s[1], s[2]
	}
	img := b.Reshape(x, runtime.Shape{-1, hh, ww, ch})
	f1, f2 := c.ConvFilters[0], c.ConvFilters[1]
	pool := func(n *runtime.Node) *runtime.Node {
		return b.MaxPool(n, [2]int{2, 2}, [2]int{2, 2}, runtime.Same)
	}
	h := pool(b.Relu(l.conv("conv1", img, 5, ch, f1)))
	h = pool(b.Relu(l.conv("conv2", h, 5, f1, f2)))
	oh, ow := (hh+3)/4, (ww+3)/4
	flat := b.Reshape(h, runtime.Shape{-1, oh * ow * f2})
	h = b.Relu(l.dense("fc1", flat, oh*ow*f2, c.ConvDense))
	return l.dense("fc2", h, c.ConvDense, c.Classes)
}
