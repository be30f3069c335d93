package grpctransport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"github.com/flowps/flowps/transport/transporttest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// bytesConn is a net.Conn that reads from r and discards what is written.
type bytesConn struct {
	r io.Reader
}

func (c *bytesConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *bytesConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// dataRequest encodes one data-path request as a client sends it.
func dataRequest(op, enc byte, h proto.Message, data []byte) []byte {
	hb, _ := proto.Marshal(h)
	b := dataPrefix{kind: op, enc: enc, beat: 1, header: uint32(len(hb)), data: uint64(len(data))}.put(nil)
	return append(append(b, hb...), data...)
}

// FuzzDataPathRequest feeds arbitrary bytes to a data-path server as the
// requests of one connection: whatever a peer sends must end in an error
// answer or a closed connection, never a panic or an allocation above the
// server's tensor limit (1 MiB here).
func FuzzDataPathRequest(f *testing.F) {
	pull := dataRequest(dataOpPull, 0, &pb.PullRequest{Parts: []*pb.PullPart{{Key: &pb.PartKey{Var: "w"}}}}, nil)
	push := dataRequest(dataOpPush, 0, &pb.PushHeader{Parts: []*pb.PushPartHeader{{NumValues: 2, HasGrad: true}}}, le(1, 2))
	bf16 := dataRequest(dataOpPush, 1, &pb.PushHeader{Parts: []*pb.PushPartHeader{{NumValues: 3, HasGrad: true}}}, []byte{1, 2, 3, 4, 5, 6})
	f.Add(pull)
	f.Add(append(append([]byte{}, push...), pull...))
	f.Add(bf16)
	f.Add(dataRequest(dataOpPush, 0, &pb.PushHeader{Parts: []*pb.PushPartHeader{{NumValues: 1 << 40, HasGrad: true}}}, nil))
	f.Add(dataRequest(9, 0, &pb.PullRequest{}, nil))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0})
	rep := func(h string, data []byte) []byte {
		b := dataPrefix{kind: dataOpReplicate, beat: 1, header: uint32(len(h)), data: uint64(len(data))}.put(nil)
		return append(append(b, h...), data...)
	}
	f.Add(rep(`{"from":"p","ops":[{"Key":{"Var":"w"},"LSN":3,"has_grad":true,"num_grad":2}]}`, le(1, 2)))
	f.Add(rep(`{"from":"p","ops":[{"has_grad":true,"num_grad":-1}]}`, nil))
	f.Add(rep(`{"ops":[{"has_grad":true,"num_grad":1099511627776}]}`, nil))
	f.Add(rep(`{"ops":[{"has_grad":true,"num_grad":2}]}`, le(1)))
	// Sizes whose sum wraps int64 to a multiple of 2^62 (announcing 0 data
	// bytes): totalValues once let them through to a negative make.
	f.Add(rep(`{"ops":[{"has_grad":true,"num_grad":1},{"has_grad":true,"num_grad":9223372036854775807}]}`, nil))
	f.Add(dataRequest(dataOpPush, 0, &pb.PushHeader{Parts: []*pb.PushPartHeader{{NumValues: 1, HasGrad: true}, {NumValues: 1<<63 - 1, HasGrad: true}}}, nil))
	fake := &fakeReplicator{Fake: transporttest.Fake{
		PullFunc: func(context.Context, *ps.PullRequest) (*ps.PullResponse, error) {
			return &ps.PullResponse{Parts: []ps.PartValues{{Values: []float32{1, 2, 3}}}}, nil
		},
	}, replicate: func(req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
		return &ps.ReplicateResponse{Status: make([]ps.OpStatus, len(req.Ops))}, nil
	}}
	s := NewServer(fake, ServerConfig{MaxTensorBytes: 1 << 20, MaxMessageBytes: 1 << 16})
	s.rep = fake // as RegisterReplication does (which this small MaxMessageBytes refuses)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &dataServer{s: s, ctx: ctx, cancel: cancel}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &bytesConn{r: bytes.NewReader(data)}
		br := newDataReader(c)
		var scratch []byte
		for range 8 {
			p, err := readDataPrefix(br, s.c.maxMessageBytes, s.c.maxTensorBytes)
			if err != nil {
				return
			}
			if err := d.call(c, br, p, &scratch); err != nil {
				return
			}
		}
	})
}

// FuzzDataPathResponse feeds arbitrary bytes to a client as a server's
// response to a pull (whose parts offer Dst buffers of the right and the
// wrong length) and to a push: any bytes must give a response or an
// error, never a panic, a write into a Dst of the wrong length, or an
// allocation above the client's tensor limit (1 MiB here).
func FuzzDataPathResponse(f *testing.F) {
	ok := func(h proto.Message, data []byte) []byte {
		hb, _ := proto.Marshal(h)
		b := dataPrefix{kind: dataStatusOK, header: uint32(len(hb)), data: uint64(len(data))}.put(nil)
		return append(append(b, hb...), data...)
	}
	beat := dataPrefix{kind: dataStatusBeat}.put(nil)
	f.Add(ok(&pb.PullHeader{Parts: []*pb.PartValuesHeader{{NumValues: 2, HasValues: true}, {NumValues: 1, HasValues: true}}}, le(1, 2, 3)))
	f.Add(append(beat, ok(&pb.PullHeader{Parts: []*pb.PartValuesHeader{{NumValues: 3, HasValues: true}}}, le(1, 2, 3))...))
	f.Add(ok(&pb.PushResponse{Versions: []int64{4}}, nil))
	rh := []byte(`{"Status":[1],"Promised":[{"N":2,"ID":"p"}]}`)
	f.Add(append(dataPrefix{kind: dataStatusOK, header: uint32(len(rh))}.put(nil), rh...))
	errh, _ := proto.Marshal(&pb.DataError{Code: string(ps.CodeStale), Message: "old"})
	f.Add(append(dataPrefix{kind: dataStatusError, header: uint32(len(errh))}.put(nil), errh...))
	f.Add(ok(&pb.PullHeader{Parts: []*pb.PartValuesHeader{{NumValues: 1 << 40, HasValues: true}}}, nil))
	d := NewDialer(DialerConfig{MaxTensorBytes: 1 << 20, MaxMessageBytes: 1 << 16})
	const untouched = -7.5
	f.Fuzz(func(t *testing.T, data []byte) {
		cl := &client{d: d, p: &peer{addr: "fuzz", data: &dataPeer{d: d, addr: "fuzz", closed: true}}}
		right, wrong := make([]float32, 2), make([]float32, 5)
		for i := range wrong {
			wrong[i] = untouched
		}
		req := &ps.PullRequest{Parts: []ps.PullPart{{Dst: right}, {Dst: wrong}}}
		dc := &dataConn{c: &watchedConn{Conn: &bytesConn{r: bytes.NewReader(data)}}}
		dc.br = newDataReader(dc.c)
		resp, err := cl.dataPull(context.Background(), dc, req)
		if err == nil {
			total := 0
			for _, p := range resp.Parts {
				total += len(p.Values)
			}
			if 4*total > 1<<20 {
				t.Fatalf("pull response of %d values over the limit", total)
			}
		}
		for i, v := range wrong {
			if v != untouched && (resp == nil || len(resp.Parts) < 2 || !ps.SameBuffer(resp.Parts[1].Values, wrong)) {
				t.Fatalf("Dst of the wrong length written at %d", i)
			}
		}
		dc = &dataConn{c: &watchedConn{Conn: &bytesConn{r: bytes.NewReader(data)}}}
		dc.br = newDataReader(dc.c)
		cl.dataPush(context.Background(), dc, &ps.PushRequest{Parts: []ps.PushPart{{Grad: []float32{1}}}})
		dc = &dataConn{c: &watchedConn{Conn: &bytesConn{r: bytes.NewReader(data)}}}
		dc.br = newDataReader(dc.c)
		env, _ := encodeReplicateRequest(&ps.ReplicateRequest{From: "p", Ops: []ps.ReplicateOp{{Grad: []float32{1}}}})
		cl.dataReplicate(context.Background(), dc, env)
	})
}

// A failed gRPC call whose ErrorInfo names no ps code (a peer's bug) is
// still an error: ps.ErrorFromCode would turn the empty code into nil.
func TestFromStatusEmptyCodeIsAnError(t *testing.T) {
	st, err := status.New(codes.Unavailable, "gone").WithDetails(&errdetails.ErrorInfo{Domain: errorDomain})
	if err != nil {
		t.Fatal(err)
	}
	if err := fromStatus(context.Background(), "pull", "x", st.Err()); !errors.Is(err, ps.ErrUnavailable) {
		t.Errorf("fromStatus = %v, want ps.ErrUnavailable", err)
	}
}
