package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/runtime/blas"
)

// mlp builds the 784-256-128-10 MNIST MLP (or any sizes) and returns the
// nodes the tests and benchmarks use.
type mlpModel struct {
	g                 *Graph
	x, y              *Node
	logits, loss, acc *Node
	train             *Node
}

func buildMLP(tb testing.TB, sizes ...int) *mlpModel {
	tb.Helper()
	b := NewBuilder()
	m := &mlpModel{}
	m.x = b.Placeholder("x", Float32, Shape{-1, sizes[0]})
	m.y = b.Placeholder("y", Int64, Shape{-1})
	h := m.x
	for i := 1; i < len(sizes); i++ {
		w := b.Variable("dense"+string(rune('0'+i))+"/w", Shape{sizes[i-1], sizes[i]}, GlorotUniform(int64(i)))
		bias := b.Variable("dense"+string(rune('0'+i))+"/b", Shape{sizes[i]}, ZerosInit())
		h = b.BiasAdd(b.MatMul(h, w, false, false), bias)
		if i < len(sizes)-1 {
			h = b.Relu(h)
		}
	}
	m.logits = h
	m.loss = b.Mean(b.SparseSoftmaxCrossEntropyWithLogits(h, m.y), nil, false)
	m.acc = b.Accuracy(h, m.y)
	m.train = b.Minimize(m.loss, nil)
	g, err := b.Build()
	if err != nil {
		tb.Fatal(err)
	}
	m.g = g
	return m
}

// blobs makes n points in d dimensions around k random centres, labelled
// by centre: linearly separable with high probability.
func blobs(r *rand.Rand, n, d, k int) (*Tensor, *Tensor) {
	centres := make([][]float32, k)
	for c := range centres {
		centres[c] = make([]float32, d)
		for j := range centres[c] {
			centres[c][j] = float32(r.NormFloat64()) * 3
		}
	}
	xs := make([]float32, n*d)
	ys := make([]int64, n)
	for i := 0; i < n; i++ {
		c := r.IntN(k)
		ys[i] = int64(c)
		for j := 0; j < d; j++ {
			xs[i*d+j] = centres[c][j] + float32(r.NormFloat64())*0.5
		}
	}
	x, _ := NewTensor(Shape{n, d}, xs)
	y, _ := NewIntTensor(Int64, Shape{n}, ys)
	return x, y
}

func TestTrainMLPSynthetic(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	m := buildMLP(t, 20, 32, 4)
	store := NewMemStore(0.1)
	s, err := NewSession(ctx, m.g, SessionConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	x, y := blobs(r, 256, 20, 4)
	var first, last float32
	for step := 0; step < 60; step++ {
		res, err := s.Run(ctx, RunArgs{Step: int64(step), Training: true, Feeds: Feeds{m.x: x, m.y: y}, Fetches: []*Node{m.loss}, Targets: []*Node{m.train}})
		if err != nil {
			t.Fatal(err)
		}
		l, _ := res.Values[0].Float()
		if step == 0 {
			first = l
		}
		last = l
	}
	// Fresh data from the same distribution (same centres: reuse r state
	// would change them, so evaluate on the training set's twin).
	res, err := s.Run(ctx, RunArgs{Feeds: Feeds{m.x: x, m.y: y}, Fetches: []*Node{m.acc, m.loss}})
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := res.Values[0].Float()
	t.Logf("loss %.4f -> %.4f, accuracy %.3f", first, last, acc)
	if !(last < first/4) || acc < 0.97 {
		t.Fatalf("did not learn: loss %.4f -> %.4f, accuracy %.3f", first, last, acc)
	}
	if n := store.Pushes("dense1/w"); n != 60 {
		t.Fatalf("dense1/w got %d pushes, want 60", n)
	}
}

func mnistLikeBatch(r *rand.Rand, n int) (*Tensor, *Tensor) {
	xs := make([]float32, n*784)
	for i := range xs {
		xs[i] = r.Float32()
	}
	ys := make([]int64, n)
	for i := range ys {
		ys[i] = int64(r.IntN(10))
	}
	x, _ := NewTensor(Shape{n, 784}, xs)
	y, _ := NewIntTensor(Int64, Shape{n}, ys)
	return x, y
}

// BenchmarkMLPStep is one training step of the MNIST MLP 784-256-128-10
// at batch 128 against a MemStore (pull, forward, backward, SGD push), for
// executor workers × OpenBLAS threads. Run with -tags openblas for the
// OpenBLAS backend (the gonum backend has no thread setting).
func BenchmarkMLPStep(b *testing.B) {
	for _, c := range []struct{ workers, threads int }{{1, 1}, {2, 1}, {1, 2}, {2, 2}} {
		b.Run(fmt.Sprintf("workers=%d/blas=%d", c.workers, c.threads), func(b *testing.B) {
			if c.threads > 1 && blas.Threads() == 0 {
				b.Skip("gonum backend has no thread setting")
			}
			blas.SetThreads(c.threads)
			defer blas.SetThreads(1)
			benchStep(b, buildMLP(b, 784, 256, 128, 10), c.workers, func(r *rand.Rand) (*Tensor, *Tensor) { return mnistLikeBatch(r, 128) })
		})
	}
}

// BenchmarkCNNStep is one training step of a LeNet-style CNN on 28×28
// images (conv 5×5×32, pool, conv 5×5×64, pool, dense 512, dense 10) at
// batch 32.
func BenchmarkCNNStep(b *testing.B) {
	b.Run("batch=32", func(b *testing.B) {
		bd := NewBuilder()
		m := &mlpModel{}
		m.x = bd.Placeholder("x", Float32, Shape{-1, 784})
		m.y = bd.Placeholder("y", Int64, Shape{-1})
		h := bd.Reshape(m.x, Shape{-1, 28, 28, 1})
		layer := 0
		conv := func(h *Node, cin, cout int) *Node {
			layer++
			f := bd.Variable(fmt.Sprintf("conv%d/f", layer), Shape{5, 5, cin, cout}, GlorotUniform(int64(layer)))
			fb := bd.Variable(fmt.Sprintf("conv%d/b", layer), Shape{cout}, ZerosInit())
			return bd.MaxPool(bd.Relu(bd.BiasAdd(bd.Conv2D(h, f, [2]int{1, 1}, Same), fb)), [2]int{2, 2}, [2]int{2, 2}, Same)
		}
		h = bd.Reshape(conv(conv(h, 1, 32), 32, 64), Shape{-1, 7 * 7 * 64})
		w1 := bd.Variable("fc1/w", Shape{7 * 7 * 64, 512}, GlorotUniform(5))
		b1 := bd.Variable("fc1/b", Shape{512}, ZerosInit())
		h = bd.Relu(bd.BiasAdd(bd.MatMul(h, w1, false, false), b1))
		w2 := bd.Variable("fc2/w", Shape{512, 10}, GlorotUniform(6))
		b2 := bd.Variable("fc2/b", Shape{10}, ZerosInit())
		m.logits = bd.BiasAdd(bd.MatMul(h, w2, false, false), b2)
		m.loss = bd.Mean(bd.SparseSoftmaxCrossEntropyWithLogits(m.logits, m.y), nil, false)
		m.train = bd.Minimize(m.loss, nil)
		g, err := bd.Build()
		if err != nil {
			b.Fatal(err)
		}
		m.g = g
		benchStep(b, m, 0, func(r *rand.Rand) (*Tensor, *Tensor) { return mnistLikeBatch(r, 32) })
	})
}

func benchStep(b *testing.B, m *mlpModel, workers int, batch func(*rand.Rand) (*Tensor, *Tensor)) {
	ctx := context.Background()
	s, err := NewSession(ctx, m.g, SessionConfig{Store: NewMemStore(0.01), Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	x, y := batch(rand.New(rand.NewPCG(1, 1)))
	n := x.Shape[0]
	args := RunArgs{Training: true, Feeds: Feeds{m.x: x, m.y: y}, Targets: []*Node{m.train}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		args.Step = int64(i)
		if _, err := s.Run(ctx, args); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "examples/s")
	// CPU time of the whole process per step: on a machine shared with
	// other jobs, wall time overstates the cost; examples per CPU-second
	// is the one-thread throughput when run with -cpu 1.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "examples/cpu-s")
	st := s.Stats()
	b.ReportMetric(float64(st.Compute.Microseconds())/float64(st.Runs), "compute-µs/op")
	b.ReportMetric(float64(st.Idle.Microseconds())/float64(st.Runs), "idle-µs/op")
	b.StopTimer()
	// Where kernel time goes, over 10 profiled steps.
	args.Profile = true
	prof := map[string]time.Duration{}
	for i := 0; i < 10; i++ {
		res, err := s.Run(ctx, args)
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range res.Stats.ByOp {
			prof[k] += v / 10
		}
	}
	b.Logf("backend %s threads %d: %v; per-step kernel time by op: %v", blas.Backend(), blas.Threads(), st, prof)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
