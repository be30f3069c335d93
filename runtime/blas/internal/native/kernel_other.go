//go:build !amd64 || purego

package native

// The native kernel is amd64 assembly; elsewhere the gonum (or OpenBLAS)
// backend is used.
const OK = false

const Why = "no native kernel in this build (it needs amd64 without the purego tag)"

func kernel6x16(kc int, a *float32, astride int, b, c *float32, ldc int, alpha, beta float32) {
	panic("blas: native kernel not available")
}

func interleave4(kc int, src *float32, ld int, dst *float32, stride int)     { panic("unreachable") }
func interleave2(kc int, src *float32, ld int, dst *float32, stride int)     { panic("unreachable") }
func copy6(kc int, src *float32, ld int, dst *float32)                       { panic("unreachable") }
func copyRows16(kc int, src *float32, ld int, dst *float32, np, pstride int) { panic("unreachable") }
