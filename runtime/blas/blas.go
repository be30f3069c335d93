package blas

import (
	"github.com/flowps/flowps/runtime/blas/internal/native"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// impl is gonum's native implementation with Sgemm routed through this
// package's Sgemm, so every user of blas32 in the binary gets the same
// backend choice.
type impl struct{ gonum.Implementation }

func (impl) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Sgemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func init() {
	blas32.Use(impl{})
}

// SetThreads sets the number of threads OpenBLAS uses per call (n ≥ 1). It
// does nothing without OpenBLAS; the native and gonum kernels run on the
// calling goroutine. Shapes are timed again for the new thread count in
// the auto mode.
func SetThreads(n int) {
	if n >= 1 && haveOpenBLAS {
		openblasSetThreads(n)
		curThreads.Store(int32(openblasThreads()))
	}
}

// Threads returns OpenBLAS's thread count, or 0 when the binary has no
// OpenBLAS.
func Threads() int {
	if !haveOpenBLAS {
		return 0
	}
	return openblasThreads()
}

func tr(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C on row-major matrices,
// where op transposes when the flag is set; op(A) is m×k, op(B) k×n, C
// m×n, with leading dimensions (row strides) lda, ldb, ldc. beta == 0
// overwrites C without reading it; alpha == 0 or k == 0 only scales C.
// It panics, as gonum does, when a dimension is negative, a leading
// dimension too small or a slice too short.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkSgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if f := forced.Load(); f != 0 {
		run(backendID(f), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	sgemmAuto(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkSgemm panics unless the slices hold the matrices the arguments
// describe. The native and OpenBLAS kernels rely on it: they read and
// write through raw pointers.
func checkSgemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	switch {
	case m < 0 || n < 0 || k < 0:
		panic("blas: negative Sgemm dimension")
	case lda < max(1, ac) || ldb < max(1, bc) || ldc < max(1, n):
		panic("blas: bad Sgemm leading dimension")
	case m == 0 || n == 0:
	case k > 0 && (len(a) < lda*(ar-1)+ac || len(b) < ldb*(br-1)+bc):
		panic("blas: Sgemm input slice too short")
	case len(c) < ldc*(m-1)+n:
		panic("blas: Sgemm output slice too short")
	}
}

// run calls one backend.
func run(be backendID, tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	switch be {
	case useNative:
		native.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	case useOpenBLAS:
		cblasSgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	default:
		gonum.Implementation{}.Sgemm(tr(tA), tr(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}
