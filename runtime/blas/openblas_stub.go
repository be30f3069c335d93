//go:build !(openblas && cgo)

package blas

const haveOpenBLAS = false

func cblasSgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	panic("blas: built without OpenBLAS")
}

func openblasSetThreads(int) {}

func openblasThreads() int { return 0 }
