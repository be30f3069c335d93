package ps

import (
	"math"
	"unsafe"
)

// Unit-stride float32 loops on the server's hot path: the finiteness check
// of every pushed gradient, the sync-mode sum and mean, and SGD's update.
// On amd64 with AVX2 they run in assembly (vec_amd64.s), eight values per
// instruction; elsewhere, or with the purego build tag, in the Go loops
// below. Both give bit-identical results: each value gets the same float32
// operations in the same order (no fused multiply-add), so a model trains
// the same whichever runs.

// firstNonFinite returns the index of the first NaN or ±Inf in g, or -1.
func firstNonFinite(g []float32) int {
	if !useAVX2 {
		return firstNonFiniteGo(g)
	}
	// Blocks small enough to stay in cache for the scalar search, large
	// enough that the call is free.
	const block = 4096
	for off := 0; off < len(g); off += block {
		b := g[off:min(off+block, len(g))]
		if anyNonFiniteAVX2(b) {
			return off + firstNonFiniteGo(b)
		}
	}
	return -1
}

// firstNonFiniteGo is firstNonFinite in Go.
func firstNonFiniteGo(g []float32) int {
	// The exponent bits are all ones exactly for NaN and ±Inf. Adding one
	// to the lowest exponent bit of (bits & exponent mask) carries into the
	// sign bit exactly then, and never beyond it, so two floats are checked
	// per uint64 operation and a block of 16 with one branch; only a block
	// that holds a non-finite value is searched one by one.
	const (
		exp2  = 0x7f8000007f800000
		one2  = 0x0080000000800000
		sign2 = 0x8000000080000000
	)
	i := 0
	if len(g) > 0 && uintptr(unsafe.Pointer(&g[0]))%8 != 0 {
		// Align the uint64 view: check the first value on its own.
		if math.Float32bits(g[0])&0x7f800000 == 0x7f800000 {
			return 0
		}
		i = 1
	}
	if len(g)-i >= 16 {
		base := i
		w := unsafe.Slice((*uint64)(unsafe.Pointer(&g[base])), (len(g)-base)/2)
		for ; i+16 <= len(g); i += 16 {
			o := (i - base) / 2
			b := w[o : o+8 : o+8]
			acc := (b[0]&exp2 + one2) | (b[1]&exp2 + one2) | (b[2]&exp2 + one2) | (b[3]&exp2 + one2) |
				(b[4]&exp2 + one2) | (b[5]&exp2 + one2) | (b[6]&exp2 + one2) | (b[7]&exp2 + one2)
			if acc&sign2 != 0 {
				break
			}
		}
	}
	for ; i < len(g); i++ {
		if math.Float32bits(g[i])&0x7f800000 == 0x7f800000 {
			return i
		}
	}
	return -1
}

// sgdUpdate sets p[i] -= lr*g[i] for i < len(g); len(p) ≥ len(g).
func sgdUpdate(p, g []float32, lr float32) {
	p = p[:len(g)]
	if useAVX2 && len(g) > 0 {
		sgdAVX2(p, g, lr)
		return
	}
	for i, x := range g {
		p[i] -= lr * x
	}
}

// addTo sets acc[i] += g[i] for i < len(g); len(acc) ≥ len(g).
func addTo(acc, g []float32) {
	acc = acc[:len(g)]
	if useAVX2 && len(g) > 0 {
		addAVX2(acc, g)
		return
	}
	for i, x := range g {
		acc[i] += x
	}
}

// addDiv sets acc[i] = (acc[i] + g[i]) / n for i < len(g): the last
// gradient of a sync step added and the sum turned into the mean in one
// pass, rounded exactly as addTo followed by divBy.
func addDiv(acc, g []float32, n float32) {
	acc = acc[:len(g)]
	if useAVX2 && len(g) > 0 {
		addDivAVX2(acc, g, n)
		return
	}
	for i, x := range g {
		acc[i] = (acc[i] + x) / n
	}
}

// divBy sets acc[i] /= n.
func divBy(acc []float32, n float32) {
	if useAVX2 && len(acc) > 0 {
		divAVX2(acc, n)
		return
	}
	for i := range acc {
		acc[i] /= n
	}
}
