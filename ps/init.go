package ps

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// InitPartition fills dst, the values of partition part of the variable spec
// describes, with the spec's initializer. The values are a pure function of
// (Init.Seed, spec.Name, part) and the initializer's parameters, so any
// server that creates the partition produces the same bits. dst must hold
// exactly the partition's rows × RowSize values.
//
// Glorot-uniform draws from U(-l, l) with l = sqrt(6 / (fan_in + fan_out))
// computed from the WHOLE variable's shape with TensorFlow's convention:
// rank 1: fan_in = fan_out = shape[0]; rank 2: fan_in = shape[0], fan_out =
// shape[1]; higher ranks (convolution kernels): receptive field r = product
// of shape[:-2], fan_in = shape[-2]·r, fan_out = shape[-1]·r.
func InitPartition(dst []float32, spec *VariableSpec, part int) error {
	parts := spec.Partitions()
	if part < 0 || part >= len(parts) {
		return Errorf(ErrInvalidArgument, "init %s: partition %d of %d", spec.Name, part, len(parts))
	}
	if want := parts[part].Len() * spec.RowSize(); int64(len(dst)) != want {
		return Errorf(ErrShapeMismatch, "init %s/%d: %d values, want %d", spec.Name, part, len(dst), want)
	}
	in := spec.Init
	if err := validateInit(in); err != nil {
		return err
	}
	switch in.Kind {
	case "", InitZeros:
		clear(dst)
		return nil
	case InitConstant:
		for i := range dst {
			dst[i] = in.Value
		}
		return nil
	}
	rng := initRand(in.Seed, spec.Name, part)
	switch in.Kind {
	case InitUniform:
		fillUniform(dst, rng, in.Min, in.Max)
	case InitNormal:
		mean, sd := float64(in.Mean), float64(in.Stddev)
		for i := range dst {
			dst[i] = float32(mean + sd*rng.NormFloat64())
		}
	case InitGlorotUniform:
		fanIn, fanOut := fans(spec.Shape)
		limit := float32(math.Sqrt(6 / (fanIn + fanOut)))
		fillUniform(dst, rng, -limit, limit)
	}
	return nil
}

func fillUniform(dst []float32, rng *rand.Rand, lo, hi float32) {
	w := hi - lo
	for i := range dst {
		dst[i] = lo + w*rng.Float32()
	}
}

// initRand seeds a PCG generator from (seed, name, part).
func initRand(seed int64, name string, part int) *rand.Rand {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(name))
	h.Write([]byte{0})
	binary.LittleEndian.PutUint64(b[:], uint64(part))
	h.Write(b[:])
	s1 := mix64(h.Sum64())
	s2 := mix64(s1 ^ 0x9e3779b97f4a7c15)
	return rand.New(rand.NewPCG(s1, s2))
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// fans returns TensorFlow's (fan_in, fan_out) for a shape.
func fans(shape []int64) (fanIn, fanOut float64) {
	switch len(shape) {
	case 1:
		return float64(shape[0]), float64(shape[0])
	case 2:
		return float64(shape[0]), float64(shape[1])
	}
	r := 1.0
	for _, d := range shape[:len(shape)-2] {
		r *= float64(d)
	}
	return float64(shape[len(shape)-2]) * r, float64(shape[len(shape)-1]) * r
}
