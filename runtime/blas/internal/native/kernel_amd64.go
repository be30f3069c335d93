//go:build amd64 && !purego

package native

import "golang.org/x/sys/cpu"

// OK reports whether this CPU (and OS) can run the AVX2+FMA
// micro-kernel. x/sys/cpu checks that the OS saves the YMM state.
var OK = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// Why says why the native kernel is unavailable (empty when it is).
var Why = func() string {
	if OK {
		return ""
	}
	return "CPU lacks AVX2+FMA"
}()

// kernel6x16 computes C[0:6,0:16] = alpha·A·B + beta·C for an A
// micro-panel of kc groups of 6 floats, astride floats apart (6 when
// packed), and a kc×16 packed B micro-panel; C has row stride ldc.
// beta == 0 does not read C. Implemented in kernel_amd64.s.
//
//go:noescape
func kernel6x16(kc int, a *float32, astride int, b, c *float32, ldc int, alpha, beta float32)

// Packing helpers, in pack_amd64.s; the caller checks the bounds.

// interleave4 sets dst[p*stride+r] = src[r*ld+p] for r < 4, p < kc.
//
//go:noescape
func interleave4(kc int, src *float32, ld int, dst *float32, stride int)

// interleave2 sets dst[p*stride+r] = src[r*ld+p] for r < 2, p < kc.
//
//go:noescape
func interleave2(kc int, src *float32, ld int, dst *float32, stride int)

// copy6 sets dst[p*6+j] = src[p*ld+j] for j < 6, p < kc.
//
//go:noescape
func copy6(kc int, src *float32, ld int, dst *float32)

// copyRows16 sets dst[q*pstride+p*16+j] = src[p*ld+q*16+j] for j < 16,
// q < np, p < kc.
//
//go:noescape
func copyRows16(kc int, src *float32, ld int, dst *float32, np, pstride int)
