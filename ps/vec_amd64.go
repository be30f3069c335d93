//go:build amd64 && !purego

package ps

import "golang.org/x/sys/cpu"

// useAVX2 selects the assembly kernels; tests turn it off to compare.
var useAVX2 = cpu.X86.HasAVX2

// The kernels below require AVX2 and len(g) ≥ 1 where they take g; they
// read and write exactly len(g) values (their other slices may be longer).

//go:noescape
func anyNonFiniteAVX2(g []float32) bool

//go:noescape
func sgdAVX2(p, g []float32, lr float32)

//go:noescape
func addAVX2(acc, g []float32)

//go:noescape
func addDivAVX2(acc, g []float32, n float32)

//go:noescape
func divAVX2(acc []float32, n float32)
