//go:build openblas && cgo

package blas

/*
#cgo LDFLAGS: -lopenblas
enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
	float alpha, const float *a, int lda, const float *b, int ldb,
	float beta, float *c, int ldc);
extern void openblas_set_num_threads(int n);
extern int openblas_get_num_threads(void);
*/
import "C"

import (
	"os"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// openBLAS is gonum's native implementation with Sgemm replaced by
// OpenBLAS's cblas_sgemm.
type openBLAS struct{ gonum.Implementation }

// Sgemm implements blas.Float32 through cblas_sgemm. It checks the
// dimensions like gonum does, so a bad call panics instead of reading out
// of bounds in C.
func (openBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := C.int(C.NoTrans), C.int(C.NoTrans)
	ar, ac := m, k
	if tA != blas.NoTrans {
		ta, ar, ac = C.Trans, k, m
	}
	br, bc := k, n
	if tB != blas.NoTrans {
		tb, br, bc = C.Trans, n, k
	}
	if m < 0 || n < 0 || k < 0 || lda < max(1, ac) || ldb < max(1, bc) || ldc < max(1, n) ||
		(k > 0 && (len(a) < lda*(ar-1)+ac || len(b) < ldb*(br-1)+bc)) || len(c) < ldc*(m-1)+n {
		panic("blas: bad Sgemm dimensions")
	}
	var pa, pb *C.float
	if k > 0 {
		pa, pb = (*C.float)(&a[0]), (*C.float)(&b[0])
	}
	C.cblas_sgemm(C.RowMajor, ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha),
		pa, C.int(lda), pb, C.int(ldb), C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}

func init() {
	impl = openBLAS{}
	backend = "openblas"
	setThreads = func(n int) { C.openblas_set_num_threads(C.int(n)) }
	threads = func() int { return int(C.openblas_get_num_threads()) }
	blas32.Use(impl)
	// The executor runs kernels on GOMAXPROCS workers; OpenBLAS threads on
	// top of that oversubscribe the cores (measured: 2 workers × 2 threads
	// is 4x slower than 1 thread on 2 cores). Keep 1 unless the
	// environment asks otherwise.
	if os.Getenv("OPENBLAS_NUM_THREADS") == "" && os.Getenv("OMP_NUM_THREADS") == "" {
		C.openblas_set_num_threads(1)
	}
}
