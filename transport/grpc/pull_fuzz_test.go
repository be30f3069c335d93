package grpctransport

import (
	"testing"

	"github.com/flowps/flowps/ps"

	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// FuzzPullFrameDecode is FuzzFrameDecode for the other direction: the
// frames of a Pull response, which a client decodes from whatever the
// server sent, partly into the request's Dst buffers. Any bytes must yield
// values or an error in frameIn.err, never a panic, a write past the
// destination or into a Dst of the wrong length, or an allocation above
// the client's tensor limit. dsts chooses, a byte per part, the request's
// Dst: 1 the announced length, 2 one value more, else none.
func FuzzPullFrameDecode(f *testing.F) {
	good, _ := proto.Marshal(&pb.PullFrame{Header: &pb.PullHeader{Parts: []*pb.PartValuesHeader{
		{Key: &pb.PartKey{Var: "w", Index: 1}, Version: 3, NumValues: 2, HasValues: true}}}, Data: le(1, 2)})
	f.Add(good, 1, uint64(0))
	f.Add(good, 7, uint64(1))
	two, _ := proto.Marshal(&pb.PullFrame{Header: &pb.PullHeader{Parts: []*pb.PartValuesHeader{
		{NumValues: 2, HasValues: true}, {NumValues: 0, HasValues: true}, {}, {NumValues: 3, HasValues: true}}},
		Data: le(1, 2, 3, 4, 5)})
	f.Add(two, 3, uint64(0x01000201))
	f.Add(two, 5, uint64(0x02010101))
	f.Add([]byte{0x0a, 0x04, 0x0a, 0x02, 0x18, 0x7f}, 3, uint64(1))
	const limit = 1 << 20
	const untouched = -7.25
	f.Fuzz(func(t *testing.T, data []byte, split int, dsts uint64) {
		var bs mem.BufferSlice
		if split < 1 {
			split = 1
		}
		for i := 0; i < len(data); i += split {
			bs = append(bs, mem.SliceBuffer(data[i:min(i+split, len(data))]))
		}
		var (
			req  *ps.PullRequest
			resp *ps.PullResponse
			segs [][]float32
		)
		in := &frameIn{header: &pb.PullHeader{}, maxHeader: 1 << 16}
		in.onHeader = func() ([][]float32, error) {
			h := in.header.(*pb.PullHeader)
			req = &ps.PullRequest{Parts: make([]ps.PullPart, min(len(h.Parts), 8))}
			for i := range req.Parts {
				n := h.Parts[i].GetNumValues()
				if n < 0 || n > 1<<12 {
					continue
				}
				switch dsts >> (8 * i) & 0xff {
				case 1:
				case 2:
					n++
				default:
					continue
				}
				req.Parts[i].Dst = make([]float32, n)
				for j := range req.Parts[i].Dst {
					req.Parts[i].Dst[j] = untouched
				}
			}
			var err error
			resp, segs, err = pullFromHeader(h, limit, req)
			if err == nil {
				total := 0
				for _, s := range segs {
					total += len(s)
				}
				if 4*total > limit {
					t.Fatalf("%d values to fill, over the %d-byte limit", total, limit)
				}
			}
			return segs, err
		}
		if err := in.unmarshal(bs); err != nil {
			t.Fatalf("unmarshal returned %v; errors belong in frameIn.err", err)
		}
		if !in.gotHeader || in.dst.segs == nil && in.err != nil {
			return
		}
		if in.next > in.dst.total {
			t.Fatalf("wrote %d values into %d", in.next, in.dst.total)
		}
		h := in.header.(*pb.PullHeader)
		for i, pp := range req.Parts {
			if pp.Dst == nil || resp == nil {
				continue
			}
			if int64(len(pp.Dst)) == h.Parts[i].GetNumValues() && h.Parts[i].GetHasValues() {
				if !ps.SameBuffer(resp.Parts[i].Values, pp.Dst) {
					t.Fatalf("part %d: Values are not the request's Dst of the announced length", i)
				}
				continue
			}
			for j, v := range pp.Dst {
				if v != untouched {
					t.Fatalf("part %d: Dst of %d values (announced %d, has values %v) written at %d", i, len(pp.Dst), h.Parts[i].GetNumValues(), h.Parts[i].GetHasValues(), j)
				}
			}
		}
	})
}

// FuzzCreateFromPB decodes a Create request as the server does (protobuf,
// then createFromPB) and validates its spec: no input may panic.
func FuzzCreateFromPB(f *testing.F) {
	good, _ := proto.Marshal(&pb.CreateRequest{Spec: &pb.VariableSpec{Name: "w", Shape: []int64{4, 2},
		Init: &pb.Initializer{Kind: "zeros"}, Optimizer: &pb.OptimizerSpec{Kind: "sgd", Lr: 1}}, Parts: []int64{0, 1}})
	f.Add(good)
	f.Add([]byte{0x12, 0x03, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.CreateRequest
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		req := createFromPB(&m)
		if req.Spec.Validate() == nil {
			_ = req.Spec.NumElements()
		}
	})
}
