package wire

import (
	"encoding/binary"
	"math"

	"github.com/flowps/flowps/ps"
)

// Float32ToBF16 rounds f to bfloat16 (round to nearest, ties to even).
// NaN becomes a quiet NaN with the same sign; values beyond bfloat16's
// largest finite value round to ±Inf as IEEE rounding says.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, force quiet
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat32 widens a bfloat16 to float32 exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToFP16 rounds f to IEEE 754 binary16 (round to nearest, ties to
// even), producing subnormals below 2⁻¹⁴, ±0 below half the smallest
// subnormal, ±Inf beyond 65504 (precisely: from 65520 up) and a quiet NaN
// for NaN.
func Float32ToFP16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		s := uint32(14 - e) // 14..24
		sig := mant | 0x800000
		m := sig >> s
		rem := sig & (1<<s - 1)
		half := uint32(1) << (s - 1)
		if rem > half || (rem == half && m&1 == 1) {
			m++ // may carry into the smallest normal, which is right
		}
		return sign | uint16(m)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, up to Inf, which is right
	}
	return sign | uint16(h)
}

// FP16ToFloat32 widens an IEEE 754 binary16 to float32 exactly.
func FP16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if m == 0 {
			return math.Float32frombits(sign)
		}
		// m·2⁻²⁴, exact in float32.
		v := float32(m) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(v))
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | m<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | m<<13)
}

// EncodeBF16 appends src as little-endian bfloat16 (2 bytes per value) to
// dst and returns the extended slice.
func EncodeBF16(dst []byte, src []float32) []byte {
	at := len(dst)
	dst = grow(dst, 2*len(src))
	out := dst[at:]
	for i, f := range src {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(f))
	}
	return dst
}

// DecodeBF16 appends the float32s of little-endian bfloat16 src to dst. An
// odd len(src) is an error wrapping ps.ErrInvalidArgument.
func DecodeBF16(dst []float32, src []byte) ([]float32, error) {
	if len(src)%2 != 0 {
		return dst, ps.Errorf(ps.ErrInvalidArgument, "wire: bf16 data of %d bytes is not a whole number of values", len(src))
	}
	n := len(src) / 2
	at := len(dst)
	dst = growF(dst, n)
	out := dst[at:]
	for i := range out {
		out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return dst, nil
}

// EncodeFP16 appends src as little-endian IEEE half (2 bytes per value) to
// dst and returns the extended slice.
func EncodeFP16(dst []byte, src []float32) []byte {
	at := len(dst)
	dst = grow(dst, 2*len(src))
	out := dst[at:]
	for i, f := range src {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToFP16(f))
	}
	return dst
}

// DecodeFP16 appends the float32s of little-endian IEEE half src to dst. An
// odd len(src) is an error wrapping ps.ErrInvalidArgument.
func DecodeFP16(dst []float32, src []byte) ([]float32, error) {
	if len(src)%2 != 0 {
		return dst, ps.Errorf(ps.ErrInvalidArgument, "wire: fp16 data of %d bytes is not a whole number of values", len(src))
	}
	n := len(src) / 2
	at := len(dst)
	dst = growF(dst, n)
	out := dst[at:]
	for i := range out {
		out[i] = FP16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return dst, nil
}

// grow extends b by n bytes, reallocating at most once.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func growF(b []float32, n int) []float32 {
	if cap(b)-len(b) < n {
		nb := make([]float32, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
