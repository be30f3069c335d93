package blas

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// impl is the backend in use; set at init.
var impl blas.Float32 = gonum.Implementation{}

var backend = "gonum"

// setThreads and threads are set by the OpenBLAS backend.
var (
	setThreads = func(int) {}
	threads    = func() int { return 0 }
)

func init() {
	blas32.Use(impl)
}

// Backend names the Sgemm backend: "gonum" or "openblas".
func Backend() string { return backend }

// SetThreads sets the number of threads OpenBLAS uses per call (n ≥ 1). It
// does nothing for the gonum backend.
func SetThreads(n int) {
	if n >= 1 {
		setThreads(n)
	}
}

// Threads returns OpenBLAS's thread count, or 0 for the gonum backend.
func Threads() int { return threads() }

func tr(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices,
// where op transposes when the flag is set; op(A) is m×k, op(B) k×n, C
// m×n, with leading dimensions (row strides) lda, ldb, ldc. The caller
// guarantees the slices are long enough; the native backend panics
// otherwise, as gonum does.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	impl.Sgemm(tr(transA), tr(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
