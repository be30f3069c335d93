//go:build !amd64 || purego

package ps

// useAVX2 is false: the Go loops of vec.go run.
var useAVX2 = false

func anyNonFiniteAVX2([]float32) bool      { panic("ps: no AVX2 kernels in this build") }
func sgdAVX2(_, _ []float32, _ float32)    { panic("ps: no AVX2 kernels in this build") }
func addAVX2(_, _ []float32)               { panic("ps: no AVX2 kernels in this build") }
func addDivAVX2(_, _ []float32, _ float32) { panic("ps: no AVX2 kernels in this build") }
func divAVX2(_ []float32, _ float32)       { panic("ps: no AVX2 kernels in this build") }
