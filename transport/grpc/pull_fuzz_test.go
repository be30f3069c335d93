package grpctransport

import (
	"testing"

	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// FuzzPullFrameDecode is FuzzFrameDecode for the other direction: the
// frames of a Pull response, which a client decodes from whatever the
// server sent. Any bytes must yield values or an error in frameIn.err,
// never a panic, a write past the destination, or an allocation above the
// client's tensor limit.
func FuzzPullFrameDecode(f *testing.F) {
	good, _ := proto.Marshal(&pb.PullFrame{Header: &pb.PullHeader{Parts: []*pb.PartValuesHeader{
		{Key: &pb.PartKey{Var: "w", Index: 1}, Version: 3, NumValues: 2, HasValues: true}}}, Data: le(1, 2)})
	f.Add(good, 1)
	f.Add(good, 7)
	f.Add([]byte{0x0a, 0x04, 0x0a, 0x02, 0x18, 0x7f}, 3)
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		var bs mem.BufferSlice
		if split < 1 {
			split = 1
		}
		for i := 0; i < len(data); i += split {
			bs = append(bs, mem.SliceBuffer(data[i:min(i+split, len(data))]))
		}
		in := &frameIn{header: &pb.PullHeader{}, maxHeader: 1 << 16}
		in.onHeader = func() ([]float32, error) {
			resp, backing, err := pullFromHeader(in.header.(*pb.PullHeader), limit)
			if err == nil {
				if 4*len(backing) > limit {
					t.Fatalf("allocated %d values over the %d-byte limit", len(backing), limit)
				}
				for _, p := range resp.Parts {
					if len(p.Values) > len(backing) {
						t.Fatalf("part of %d values in a backing of %d", len(p.Values), len(backing))
					}
				}
			}
			return backing, err
		}
		if err := in.unmarshal(bs); err != nil {
			t.Fatalf("unmarshal returned %v; errors belong in frameIn.err", err)
		}
		if in.err == nil && in.next > int64(len(in.dst)) {
			t.Fatalf("wrote %d values into %d", in.next, len(in.dst))
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
