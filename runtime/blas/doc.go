// Package blas selects the float32 matrix-multiply backend of the runtime.
//
// Without build tags the backend is gonum's native Go BLAS (always builds,
// no cgo). Built with the tag openblas (and cgo), the package links
// Debian's libopenblas and installs it at init with blas32.Use, so every
// user of gonum.org/v1/gonum/blas/blas32 in the binary gets it too:
//
//	go test -tags openblas ./runtime/...
//
// Only Sgemm is routed to OpenBLAS; other level-1/2/3 routines keep gonum's
// native code (the runtime does not use them on hot paths).
//
// Threads: OpenBLAS starts its own thread pool. The runtime's executor
// already runs independent kernels on GOMAXPROCS workers, so on a small
// machine one OpenBLAS thread per call is usually fastest; SetThreads
// changes it (a no-op for the native backend). The backend starts with one
// thread unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS is set;
// OPENBLAS_CORETYPE is left to the environment.
//
// Sgemm uses row-major storage, as gonum's blas32.General does:
//
//	// C[m×n] = alpha·op(A)·op(B) + beta·C
//	blas.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
package blas
