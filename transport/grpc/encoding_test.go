package grpctransport

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/ps/wire"
	"github.com/flowps/flowps/transport/grpc/pb"
	"github.com/flowps/flowps/transport/transporttest"
	"google.golang.org/grpc/mem"
)

// gradients returns n values like real gradients (normal, several scales)
// with the awkward values of 16-bit encodings mixed in: ties, subnormals,
// values beyond fp16's range, signed zeros.
func gradients(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 1.00390625, 65504, 65520, -1e5, 6e-8, 1e-40,
		math.MaxFloat32, math.SmallestNonzeroFloat32, 3.0517578e-05}
	out := make([]float32, n)
	for i := range out {
		if i%97 == 0 {
			out[i] = special[(i/97)%len(special)]
			continue
		}
		out[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-6)))
	}
	return out
}

// roundTrip is what a gradient must arrive as under enc.
func roundTrip(t *testing.T, enc string, g []float32) []float32 {
	t.Helper()
	var out []float32
	var err error
	switch enc {
	case "", EncodingFloat32:
		return slices.Clone(g)
	case EncodingBF16:
		out, err = wire.DecodeBF16(nil, wire.EncodeBF16(nil, g))
	case EncodingFP16:
		out, err = wire.DecodeFP16(nil, wire.EncodeFP16(nil, g))
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameBits(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestEncodedFramesSplitAnywhere marshals 16-bit frames and decodes them
// from buffers cut at every small stride, so values straddle buffers.
func TestEncodedFramesSplitAnywhere(t *testing.T) {
	g := gradients(1001, 3)
	for _, enc := range []pb.ValueEncoding{pb.ValueEncoding_VALUE_ENCODING_BF16, pb.ValueEncoding_VALUE_ENCODING_FP16} {
		name := map[pb.ValueEncoding]string{pb.ValueEncoding_VALUE_ENCODING_BF16: EncodingBF16, pb.ValueEncoding_VALUE_ENCODING_FP16: EncodingFP16}[enc]
		want := roundTrip(t, name, g)
		h := &pb.PushHeader{Encoding: enc, Parts: []*pb.PushPartHeader{{HasGrad: true, NumValues: int64(len(g))}}}
		f := &frameOut{header: h, data: [][]float32{g[:500], g[500:]}, enc: enc}
		bs, err := f.marshal()
		if err != nil {
			t.Fatal(err)
		}
		flat := bs.Materialize()
		bs.Free()
		for _, stride := range []int{1, 2, 3, 7, 64, 4097} {
			var split mem.BufferSlice
			for i := 0; i < len(flat); i += stride {
				split = append(split, mem.SliceBuffer(flat[i:min(i+stride, len(flat))]))
			}
			in := &frameIn{header: &pb.PushHeader{}}
			dst := make([]float32, len(g))
			in.onHeader = func() ([][]float32, error) {
				in.enc = in.header.(*pb.PushHeader).GetEncoding()
				return [][]float32{dst}, nil
			}
			if err := in.unmarshal(split); err != nil || in.err != nil {
				t.Fatal(err, in.err)
			}
			if in.next != int64(len(g)) {
				t.Fatalf("%s stride %d: decoded %d of %d values", name, stride, in.next, len(g))
			}
			if i := sameBits(dst, want); i >= 0 {
				t.Fatalf("%s stride %d: value %d is %v, want %v (sent %v)", name, stride, i, dst[i], want[i], g[i])
			}
		}
	}
}

// TestPushGradientEncoding pushes through a real connection, in many small
// frames, and checks that the service sees exactly ps/wire's round trip.
func TestPushGradientEncoding(t *testing.T) {
	var mu sync.Mutex
	var got *ps.PushRequest
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		got = &ps.PushRequest{ClientID: r.ClientID}
		for _, p := range r.Parts {
			got.Parts = append(got.Parts, ps.PushPart{Key: p.Key, Rows: p.Rows, Grad: slices.Clone(p.Grad)})
		}
		return &ps.PushResponse{Versions: make([]int64, len(r.Parts))}, nil
	}}
	addr, _ := serve(t, fake, ServerConfig{})
	dense := gradients(30001, 5)
	sparse := gradients(3*7, 6)
	for _, enc := range []string{"", EncodingFloat32, EncodingBF16, EncodingFP16} {
		// Over gRPC in two chunk sizes, and over the data path (whose
		// server decodes 2-byte values in 32 KiB pieces: 30001 values
		// straddle them).
		for _, chunk := range []int{4100, 0, -1} {
			cfg := DialerConfig{GradientEncoding: enc, ChunkBytes: chunk, DataPath: DataPathOff}
			if chunk < 0 {
				cfg.ChunkBytes, cfg.DataPath = 0, ""
			}
			d := NewDialer(cfg)
			svc, err := d.Dial(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DataPath == "" {
				waitDataPath(t, svc)
			}
			// Client ids of several lengths move the data's start within
			// gRPC's 16 KiB frames, so 2-byte values straddle them.
			for _, id := range []string{"a", "ab", "abc"} {
				req := &ps.PushRequest{ClientID: id, Parts: []ps.PushPart{
					{Key: ps.PartKey{Var: "d"}, Grad: dense},
					{Key: ps.PartKey{Var: "e"}, Rows: []int64{1, 4, 9}, Grad: sparse},
					{Key: ps.PartKey{Var: "n"}},
				}}
				if _, err := svc.Push(context.Background(), req); err != nil {
					t.Fatalf("%q chunk %d: %v", enc, chunk, err)
				}
				mu.Lock()
				r := got
				mu.Unlock()
				if r.ClientID != id || len(r.Parts) != 3 || r.Parts[2].Grad != nil || !slices.Equal(r.Parts[1].Rows, []int64{1, 4, 9}) {
					t.Fatalf("%q: server got %+v", enc, r.Parts)
				}
				for i, g := range [][]float32{dense, sparse} {
					if j := sameBits(r.Parts[i].Grad, roundTrip(t, enc, g)); j >= 0 {
						t.Fatalf("%q chunk %d part %d: value %d is %v, sent %v", enc, chunk, i, j, r.Parts[i].Grad[j], g[j])
					}
				}
			}
			svc.Close()
			d.Close()
		}
	}
}

func TestGradientEncodingErrors(t *testing.T) {
	if _, err := NewDialer(DialerConfig{GradientEncoding: "fp8"}).Dial(context.Background(), "127.0.0.1:1"); err == nil {
		t.Error("unknown GradientEncoding accepted")
	}
	addr, _ := serve(t, &transporttest.Fake{}, ServerConfig{})
	h := &pb.PushHeader{Encoding: 7, Parts: []*pb.PushPartHeader{{HasGrad: true, NumValues: 1}}}
	if _, err := rawPush(t, addr, &pb.PushFrame{Header: h, Data: []byte{0, 0}}); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Errorf("unknown encoding on the wire: %v, want ErrInvalidArgument", err)
	}
	h.Encoding = pb.ValueEncoding_VALUE_ENCODING_BF16
	h.Parts[0].NumValues = 2
	if _, err := rawPush(t, addr, &pb.PushFrame{Header: h, Data: []byte{0, 0, 0}}); !errors.Is(err, ps.ErrInvalidArgument) {
		t.Errorf("odd bf16 bytes: %v, want ErrInvalidArgument", err)
	}
}
