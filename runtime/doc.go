// Package runtime is flowps's TensorFlow-style dataflow-graph runtime:
// graph building with shape inference, reverse-mode automatic
// differentiation, a plan step (the "distributed master") and a parallel
// executor whose variables live outside, in a VarStore such as a parameter
// server client.
//
// # Building a graph
//
// A Builder records nodes. Its methods return *Node and record the first
// error (shape or dtype mismatch, bad attribute); after an error they
// return an inert node, and Build (or Err) reports it, naming the op and
// the shapes involved. So model code reads as a list of layers with one
// error check:
//
//	b := runtime.NewBuilder()
//	x := b.Placeholder("x", runtime.Float32, runtime.Shape{-1, 784}) // -1: batch
//	y := b.Placeholder("y", runtime.Int64, runtime.Shape{-1})
//	w1 := b.Variable("dense1/w", runtime.Shape{784, 256}, runtime.GlorotUniform(1))
//	b1 := b.Variable("dense1/b", runtime.Shape{256}, runtime.ZerosInit())
//	h := b.Relu(b.BiasAdd(b.MatMul(x, w1, false, false), b1))
//	w2 := b.Variable("dense2/w", runtime.Shape{256, 10}, runtime.GlorotUniform(2))
//	b2 := b.Variable("dense2/b", runtime.Shape{10}, runtime.ZerosInit())
//	logits := b.BiasAdd(b.MatMul(h, w2, false, false), b2)
//	loss := b.Mean(b.SparseSoftmaxCrossEntropyWithLogits(logits, y), nil, false)
//	acc := b.Accuracy(logits, y)
//	train := b.Minimize(loss, nil) // Gradients + one Push per variable
//	g, err := b.Build()
//
// Shapes use -1 for dimensions known only at run time. Float32 is the only
// differentiable dtype; Int32/Int64 carry labels and ids (their values sit
// in Tensor.I as int64).
//
// Gradients(loss, xs) adds the backward graph from per-op gradient
// functions and returns one node per x. The gradient of a Variable read
// through Gather is sparse (Tensor.Rows set): only touched rows.
// Minimize(loss, vars) wraps Gradients, Push and Group; call Gradients and
// Push yourself to clip or transform gradients first.
//
// # Running
//
// Variables live outside the runtime behind VarStore (Create, Pull, Push).
// MemStore is an in-memory store with plain SGD for tests and examples; a
// parameter-server client adapts ps.Client to VarStore.
//
//	store := runtime.NewMemStore(0.1)
//	sess, err := runtime.NewSession(ctx, g, runtime.SessionConfig{Store: store})
//	res, err := sess.Run(ctx, runtime.RunArgs{
//		Step:     step,
//		Training: true, // enables Dropout
//		Feeds:    runtime.Feeds{x: xBatch, y: yBatch},
//		Fetches:  []*runtime.Node{loss, acc},
//		Targets:  []*runtime.Node{train},
//	})
//	l, _ := res.Values[0].Float()
//	fmt.Println(l, res.Stats) // wall, compute, pull, push, idle time
//
// A Graph is immutable; any number of Sessions and goroutines may run it at
// once. Execution state lives in the executor.
//
// # What Run does
//
// The first Run of a (feeds, fetches, targets, training) signature builds a
// plan and caches it: prune to what the fetches and targets need, fold
// constants, merge common subexpressions (op + inputs + attributes), fuse
// MatMul+BiasAdd(+Relu) and BiasAdd+Relu, and cut at the variables: each
// dense variable read becomes a Recv (all pulled in one VarStore.Pull at the
// start of the step), each Gather of a variable read only by Gathers a
// sparse pull of the rows the ids name, and each Push a send that starts
// the moment its gradient exists, so pushes overlap the rest of backprop.
// Session.PlanStats shows what each pass did.
//
// The executor runs ready nodes on up to SessionConfig.Workers goroutines,
// releases every buffer after its last reader and reuses it from a pool
// keyed by size (Session.PoolStats), and reports per-run Stats: wall time,
// kernel (compute) time, time in Pull and Push, idle time (no kernel
// running: waiting on the store), the push tail that backprop did not
// hide, and with RunArgs.Profile the kernel time per op type.
//
// Errors: build-time problems come from Builder.Build; run-time ones
// (a batch dimension that disagrees between two feeds, an id out of
// range, a store failure, a cancelled context) from Session.Run, wrapped
// around the sentinels in errors.go or the store's own errors. The runtime
// never panics on user input; a kernel bug is recovered into an error.
//
// # Kernels
//
// Kernels work on float32. Matrix products (MatMul, Conv2D by im2col) go
// through package runtime/blas: gonum's native BLAS by default, OpenBLAS
// with the build tag openblas. A convolution is one product per chunk of
// about 2 MiB of im2col rows (a few images), which keeps the patch matrix
// in cache between im2col and the product; its input gradient is one
// product per chunk and col2im, its filter gradient one product per chunk
// accumulated into the result. MaxPool records, when the plan also
// computes its gradient, the argmax of every window in the run state, so
// MaxPoolGrad only scatters through it; the plan fuses the ReluGrad that
// follows a MaxPoolGrad into it.
//
// SessionConfig.SplitPulls issues one Pull per dense variable instead of
// one for all, so kernels start as their own variables arrive. It pays
// only when a variable's transfer is long compared with the kernels that
// run before its first use; against one psd on loopback it did not (MLP:
// six requests cost more than the overlap saves; CNN: unchanged).
package runtime
