// Package blas is the float32 matrix multiply of the runtime: one Sgemm,
// served by the fastest backend this binary has for each shape.
//
// Sgemm uses row-major storage, as gonum's blas32.General does:
//
//	// C[m×n] = alpha·op(A)·op(B) + beta·C
//	blas.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
//
// beta == 0 overwrites C without reading it (NaN there does no harm);
// alpha == 0 or k == 0 only scales C. Bad dimensions panic, as in gonum;
// the runtime checks shapes when the graph is built.
//
// # Backends
//
//   - native: this package's GEMM for amd64 with AVX2 and FMA
//     (internal/native): a 6×16 micro-kernel in Go assembly with twelve
//     YMM accumulators, Go-side cache blocking (kc ≤ 256, mc ≤ 144,
//     nc ≤ 4096, balanced so no block is a sliver) and packing routines in
//     assembly. No cgo, so it builds without OpenBLAS. It runs on the
//     calling goroutine; pack buffers come from a sync.Pool, so concurrent
//     calls (the executor runs kernels in parallel) do not share them and
//     a call does not allocate once the pool is warm. Used when
//     golang.org/x/sys/cpu reports AVX2 and FMA.
//   - openblas: Debian's libopenblas through cgo, when built with the tag
//     openblas (go test -tags openblas ./runtime/...). OpenBLAS picks its
//     kernels for the CPU at load time (DYNAMIC_ARCH; OPENBLAS_CORETYPE is
//     left to the environment).
//   - gonum: gonum's pure-Go Sgemm, everywhere else. It may run several
//     goroutines per call.
//
// Only Sgemm is routed; the package installs itself with blas32.Use, so
// every user of gonum.org/v1/gonum/blas/blas32 in the binary goes through
// the same choice, and other level-1/2/3 routines stay gonum's.
//
// # How the backend is chosen
//
// With native and OpenBLAS both present, the mode is auto and Backend()
// says "openblas+native(auto)". Neither is faster everywhere, and which
// one wins depends on the machine, so nothing is decided in advance: the
// first call of each shape (transposes, m, n, k, and OpenBLAS's thread
// count) runs each candidate 5 times, interleaved and timed, on its own
// operands into a scratch copy of C; the one with the better best time
// takes that shape for good (OpenBLAS must be 2% faster to beat native, so
// near-ties go one way), and computes the call's real result. That costs
// ten extra products per shape once per process, and keeps every result
// of a shape, the first included, from one kernel. Choices() lists the
// shapes with the winner and both best times, for a log line or a debug
// page:
//
//	for _, c := range blas.Choices() {
//		logger.Info("sgemm", "shape", c.String())
//	}
//	// 128x256x784 NN: native (native 1.6ms, openblas 4.3ms)
//
// With one backend present (no -tags openblas, or a CPU without AVX2)
// that one runs every call and Backend() names it.
//
// Results are correct either way, but the two kernels round differently.
// Within a process a shape always gets the same kernel; another process
// may time a near-tie the other way, so a run that must repeat bit for bit
// across processes should fix the backend (FLOWPS_SGEMM).
//
// # Override
//
// FLOWPS_SGEMM, read at init, fixes the backend: auto (the default),
// native, openblas or gonum. SetBackend does the same at run time (and
// returns an error for a backend this binary or CPU lacks). A value that
// cannot be honoured is reported on stderr and in Backend(), and the
// auto mode is used:
//
//	FLOWPS_SGEMM=native go test -tags openblas -bench MLPStep -cpu 1 ./runtime
//
// # Threads
//
// OpenBLAS starts its own thread pool. The runtime's executor already runs
// independent kernels on GOMAXPROCS workers, so on a small machine one
// OpenBLAS thread per call is usually fastest; SetThreads changes it (a
// no-op without OpenBLAS; the native kernel is always single-threaded).
// The backend starts with one thread unless OPENBLAS_NUM_THREADS or
// OMP_NUM_THREADS is set. Shapes are timed again for a new thread count.
//
// # Measured
//
// On a 2-vCPU AMD EPYC (Zen, family 23 model 1) under KVM, AVX2+FMA, no
// AVX-512, with OpenBLAS 0.3.21 picking core "Zen" and one thread, shared
// with other engineers' builds (load average 3.6-8; the figures move by
// ±20% with it, so they are medians of interleaved runs, per CPU-second).
// The micro-kernel alone reaches 36-37.5 GFLOPS (16 flops per cycle).
// GFLOP/cpu-s, three passes of
// go test -tags openblas -run XXX -bench SgemmShapes -cpu 1 ./runtime/blas:
//
//	shape (m×n×k)                gonum  openblas  native
//	MLP fwd1 128×256×784           4.3       9.3    21.2
//	MLP fwd2 128×128×256           4.8      10.7    21.4
//	MLP fwd3 128×10×128            1.0      11.9     8.5
//	MLP dw1 784×256×128 tA         3.9      17.3    20.3
//	MLP dx2 128×256×128 tB         4.2      16.9    28.7
//	CNN fc1 32×3136×512 tB         4.2      16.6    13.6
//	1024×1024×1024                 4.2      32.8    25.5
//
// OpenBLAS's single-threaded path is slow on this core for products
// whose n is at most about 320 (its l1stride = 0 path) and fast on large
// ones; on an AVX-512 EPYC it did 94 GFLOPS on one thread, where auto
// would keep it. The native kernel loses on very thin products (n = 10,
// or m = 32 with k = 3136), which auto leaves to OpenBLAS.
//
// One training step at -cpu 1 (go test -tags openblas -bench
// 'MLPStep/workers=1/blas=1' ./runtime, FLOWPS_SGEMM set per run, five
// interleaved rounds, load 4.6-8.4), examples per CPU-second: auto 20421,
// native 20739, openblas 12306, gonum 3983; PyTorch 1.13 on one OpenBLAS
// thread, same sitting: 12252. A second sitting at load 3.1-3.9: auto
// 24068, native 23385, openblas 12921, gonum 4355, PyTorch 14182.
// BenchmarkCNNStep (three rounds, load 3.9-7.9): auto 238, native 196,
// openblas 171, gonum 58.
package blas
