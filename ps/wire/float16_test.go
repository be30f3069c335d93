package wire

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/flowps/flowps/ps"
)

func f32(bits uint32) float32 { return math.Float32frombits(bits) }

func TestBF16KnownValues(t *testing.T) {
	inf := float32(math.Inf(1))
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{f32(0x80000000), 0x8000}, // -0
		{1, 0x3f80},
		{-2, 0xc000},
		{0.5, 0x3f00},
		{inf, 0x7f80},
		{-inf, 0xff80},
		{f32(0x3f808000), 0x3f80}, // exactly halfway, even below: stays
		{f32(0x3f818000), 0x3f82}, // exactly halfway, odd below: rounds up to even
		{f32(0x3f808001), 0x3f81}, // just above halfway: up
		{f32(0x3f807fff), 0x3f80}, // just below halfway: down
		{math.MaxFloat32, 0x7f80}, // rounds past the largest bf16 to Inf
		{f32(0x7f7f7fff), 0x7f7f}, // largest value that stays finite
		{f32(0x00000001), 0x0000}, // tiny subnormal rounds to zero
		{f32(0x00018000), 0x0002}, // subnormal tie, odd below: up
		{3.140625, 0x4049},        // π truncated to 8 bits, exact
	}
	for _, c := range cases {
		if got := Float32ToBF16(c.in); got != c.want {
			t.Errorf("Float32ToBF16(%g = %#08x) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
		}
	}
	if got := BF16ToFloat32(0x3f80); got != 1 {
		t.Errorf("BF16ToFloat32(0x3f80) = %g", got)
	}
	nan := Float32ToBF16(f32(0x7f800001)) // signalling NaN with a low payload only
	if v := BF16ToFloat32(nan); v == v {
		t.Errorf("NaN encoded as %#04x, decodes to %g", nan, v)
	}
	if nan := Float32ToBF16(f32(0xffc00000)); nan&0x8000 == 0 || nan&0x7f80 != 0x7f80 || nan&0x7f == 0 {
		t.Errorf("-NaN encoded as %#04x", nan)
	}
}

func TestFP16KnownValues(t *testing.T) {
	inf := float32(math.Inf(1))
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{f32(0x80000000), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.333251953125, 0x3555}, // exact
		{65504, 0x7bff},          // largest half
		{65519.996, 0x7bff},      // below the rounding boundary
		{65520, 0x7c00},          // the boundary ties to even: Inf
		{1e6, 0x7c00},            // overflow to Inf
		{-1e6, 0xfc00},
		{inf, 0x7c00},
		{-inf, 0xfc00},
		{float32(math.Ldexp(1, -14)), 0x0400}, // smallest normal
		{float32(math.Ldexp(1, -24)), 0x0001}, // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000}, // half of it: tie to even zero
		{float32(math.Ldexp(1.5, -25)), 0x0001},
		{float32(math.Ldexp(3, -25)), 0x0002}, // 1.5 ulp: tie to even 2
		{float32(math.Ldexp(5, -25)), 0x0002}, // 2.5 ulp: tie to even 2
		{float32(math.Ldexp(1, -26)), 0x0000},
		{float32(-math.Ldexp(1023, -24)), 0x83ff}, // largest subnormal
		{float32(math.Ldexp(2047, -25)), 0x0400},  // rounds up into the smallest normal
		{1 + float32(math.Ldexp(1, -11)), 0x3c00}, // tie, even below
		{1 + float32(math.Ldexp(3, -11)), 0x3c02}, // tie, odd below: up
		{1 + float32(math.Ldexp(1, -11)) + float32(math.Ldexp(1, -20)), 0x3c01}, // above tie
		{2047.5, 0x67ff + 1},      // 2047.5 is a tie between 2047 (0x67ff) and 2048: even is 2048
		{float32(1e-10), 0x0000},  // far below subnormals
		{float32(-1e-10), 0x8000}, // keeps the sign
	}
	for _, c := range cases {
		if got := Float32ToFP16(c.in); got != c.want {
			t.Errorf("Float32ToFP16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	decode := []struct {
		in   uint16
		want float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, float32(math.Ldexp(1, -24))},
		{0x03ff, float32(math.Ldexp(1023, -24))}, {0x0400, float32(math.Ldexp(1, -14))},
		{0x7c00, inf}, {0xfc00, -inf}, {0x3555, 0.333251953125},
	}
	for _, c := range decode {
		if got := FP16ToFloat32(c.in); got != c.want {
			t.Errorf("FP16ToFloat32(%#04x) = %g, want %g", c.in, got, c.want)
		}
	}
	if got := FP16ToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("FP16ToFloat32(0x8000) = %g, want -0", got)
	}
	for _, bits := range []uint32{0x7f800001, 0x7fc00000, 0xffffffff, 0x7f802000} {
		h := Float32ToFP16(f32(bits))
		if v := FP16ToFloat32(h); v == v {
			t.Errorf("NaN %#08x encoded as %#04x, decodes to %g", bits, h, v)
		}
		if (h&0x8000 != 0) != (bits&0x80000000 != 0) {
			t.Errorf("NaN %#08x lost its sign: %#04x", bits, h)
		}
	}
}

// Every half value decodes and re-encodes to itself (NaNs to a NaN), and
// every bf16 value likewise.
func TestExhaustive16BitRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		v := FP16ToFloat32(uint16(h))
		back := Float32ToFP16(v)
		if v != v {
			if FP16ToFloat32(back) == FP16ToFloat32(back) {
				t.Fatalf("fp16 NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("fp16 %#04x -> %g -> %#04x", h, v, back)
		}
		b := BF16ToFloat32(uint16(h))
		if bb := Float32ToBF16(b); b == b && bb != uint16(h) {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", h, b, bb)
		}
	}
}

// Rounding is to the nearest representable value: compared with the
// neighbours of the result, no other 16-bit value is closer.
func TestNearestRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := f32(rng.Uint32())
		if f != f || math.IsInf(float64(f), 0) {
			continue
		}
		if h := Float32ToBF16(f); h&0x7f80 != 0x7f80 { // finite result; overflow is tested above
			checkNearest(t, "bf16", f, h, BF16ToFloat32)
		}
		if math.Abs(float64(f)) < 65504 {
			checkNearest(t, "fp16", f, Float32ToFP16(f), FP16ToFloat32)
		}
	}
}

func checkNearest(t *testing.T, name string, f float32, h uint16, dec func(uint16) float32) {
	t.Helper()
	got := dec(h)
	err := math.Abs(float64(got) - float64(f))
	for _, nb := range []uint16{h - 1, h + 1} {
		v := dec(nb)
		if v != v || math.IsInf(float64(v), 0) || math.Signbit(float64(v)) != math.Signbit(float64(got)) && v != 0 {
			continue
		}
		if e := math.Abs(float64(v) - float64(f)); e < err {
			t.Fatalf("%s(%g) = %#04x (%g), but %#04x (%g) is closer", name, f, h, got, nb, v)
		}
	}
}

func TestRoundTripErrorBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 10000)
	for i := range src {
		src[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-5)))
	}
	bf, err := DecodeBF16(nil, EncodeBF16(nil, src))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := DecodeFP16(nil, EncodeFP16(nil, src))
	if err != nil {
		t.Fatal(err)
	}
	if len(bf) != len(src) || len(fp) != len(src) {
		t.Fatalf("lengths %d %d, want %d", len(bf), len(fp), len(src))
	}
	for i, x := range src {
		ax := math.Abs(float64(x))
		if e := math.Abs(float64(bf[i] - x)); e > ax*math.Ldexp(1, -8) {
			t.Fatalf("bf16 %g -> %g: error %g above 2^-8 relative", x, bf[i], e)
		}
		// Normal halves: relative 2^-11; subnormals: absolute 2^-25.
		if e := math.Abs(float64(fp[i] - x)); e > math.Max(ax*math.Ldexp(1, -11), math.Ldexp(1, -25)) {
			t.Fatalf("fp16 %g -> %g: error %g", x, fp[i], e)
		}
	}
}

func TestEncodeAppendsAndDecodeChecks(t *testing.T) {
	pre := []byte{9, 9}
	out := EncodeFP16(pre, []float32{1, -2})
	want := []byte{9, 9, 0x00, 0x3c, 0x00, 0xc0}
	if string(out) != string(want) {
		t.Fatalf("EncodeFP16 appended % x, want % x", out, want)
	}
	out = EncodeBF16(nil, []float32{1})
	if string(out) != string([]byte{0x80, 0x3f}) {
		t.Fatalf("EncodeBF16(1) = % x", out)
	}
	got, err := DecodeBF16([]float32{7}, []byte{0x80, 0x3f})
	if err != nil || len(got) != 2 || got[0] != 7 || got[1] != 1 {
		t.Fatalf("DecodeBF16 append = %v, %v", got, err)
	}
	for name, dec := range map[string]func([]float32, []byte) ([]float32, error){"bf16": DecodeBF16, "fp16": DecodeFP16} {
		if _, err := dec(nil, []byte{1, 2, 3}); !errors.Is(err, ps.ErrInvalidArgument) {
			t.Errorf("%s odd length: err %v, want ErrInvalidArgument", name, err)
		}
	}
}

func FuzzDecodeFP16(f *testing.F) {
	f.Add([]byte{0x00, 0x3c, 0xff, 0x7c})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeFP16(nil, b)
		if len(b)%2 != 0 {
			if err == nil {
				t.Fatal("odd length accepted")
			}
			return
		}
		if err != nil || len(v) != len(b)/2 {
			t.Fatalf("len %d: %d values, %v", len(b), len(v), err)
		}
		re := EncodeFP16(nil, v)
		for i := range v {
			if v[i] == v[i] && (re[2*i] != b[2*i] || re[2*i+1] != b[2*i+1]) {
				t.Fatalf("value %d: % x -> %g -> % x", i, b[2*i:2*i+2], v[i], re[2*i:2*i+2])
			}
		}
	})
}

func FuzzDecodeBF16(f *testing.F) {
	f.Add([]byte{0x80, 0x3f, 0xc0, 0x7f})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeBF16(nil, b)
		if len(b)%2 != 0 {
			if err == nil {
				t.Fatal("odd length accepted")
			}
			return
		}
		if err != nil || len(v) != len(b)/2 {
			t.Fatalf("len %d: %d values, %v", len(b), len(v), err)
		}
		re := EncodeBF16(nil, v)
		for i := range v {
			if v[i] == v[i] && (re[2*i] != b[2*i] || re[2*i+1] != b[2*i+1]) {
				t.Fatalf("value %d: % x -> %g -> % x", i, b[2*i:2*i+2], v[i], re[2*i:2*i+2])
			}
		}
	})
}

func BenchmarkEncodeBF16(b *testing.B) { benchCodec(b, EncodeBF16) }
func BenchmarkEncodeFP16(b *testing.B) { benchCodec(b, EncodeFP16) }

func benchCodec(b *testing.B, enc func([]byte, []float32) []byte) {
	src := make([]float32, 1<<18)
	for i := range src {
		src[i] = float32(i%1000) * 1e-4
	}
	var dst []byte
	b.SetBytes(4 * int64(len(src)))
	for b.Loop() {
		dst = enc(dst[:0], src)
	}
}
