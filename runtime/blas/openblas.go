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

import "os"

const haveOpenBLAS = true

// cblasSgemm is Sgemm through OpenBLAS's cblas_sgemm. The caller has
// checked the dimensions (checkSgemm), so C never reads out of bounds.
func cblasSgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := C.int(C.NoTrans), C.int(C.NoTrans)
	if tA {
		ta = C.Trans
	}
	if tB {
		tb = C.Trans
	}
	var pa, pb *C.float
	if k > 0 {
		pa, pb = (*C.float)(&a[0]), (*C.float)(&b[0])
	}
	C.cblas_sgemm(C.RowMajor, ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha),
		pa, C.int(lda), pb, C.int(ldb), C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}

func openblasSetThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

func openblasThreads() int { return int(C.openblas_get_num_threads()) }

func init() {
	// The executor runs kernels on GOMAXPROCS workers; OpenBLAS threads on
	// top of that oversubscribe the cores (measured: 2 workers × 2 threads
	// is 4x slower than 1 thread on 2 cores). Keep 1 unless the
	// environment asks otherwise.
	if os.Getenv("OPENBLAS_NUM_THREADS") == "" && os.Getenv("OMP_NUM_THREADS") == "" {
		C.openblas_set_num_threads(1)
	}
	curThreads.Store(int32(openblasThreads()))
}
