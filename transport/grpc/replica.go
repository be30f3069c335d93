package grpctransport

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unsafe"

	"github.com/flowps/flowps/ps"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The replication service carries ps.Replicator calls between servers. It
// is a second gRPC service beside ParameterServer, written by hand rather
// than generated, because every method has the same shape:
//
//	service Replication {
//	  rpc Replicate(stream google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	  rpc Fetch(stream google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	  rpc Install(stream google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	}
//
// A request (and a response) is one envelope cut into chunks of at most
// ChunkBytes: a 4-byte little-endian header length, a JSON header, then a
// binary payload — raw little-endian float32 gradients for Replicate, a
// ps.PartitionState in its MarshalBinary encoding for Fetch responses and
// Install requests. Errors travel as the same status codes as the
// ParameterServer service's.
const replicationService = "flowps.v1.Replication"

// Full method names of the replication calls.
const (
	ReplicationReplicateMethod = "/" + replicationService + "/Replicate"
	ReplicationFetchMethod     = "/" + replicationService + "/Fetch"
	ReplicationInstallMethod   = "/" + replicationService + "/Install"
)

var replicationDesc = grpc.ServiceDesc{
	ServiceName: replicationService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Replicate", Handler: replicateHandler, ServerStreams: true, ClientStreams: true},
		{StreamName: "Fetch", Handler: fetchHandler, ServerStreams: true, ClientStreams: true},
		{StreamName: "Install", Handler: installHandler, ServerStreams: true, ClientStreams: true},
	},
	Metadata: "replication (hand-written; see transport/grpc/replica.go)",
}

// RegisterReplication serves the Service's replication calls (it must
// implement ps.Replicator) beside the parameter service. Call it after
// NewServer and before Serve.
func (s *Server) RegisterReplication() error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	rep, ok := s.svc.(ps.Replicator)
	if !ok {
		return fmt.Errorf("grpctransport: %T does not implement ps.Replicator", s.svc)
	}
	s.rep = rep
	s.gs.RegisterService(&replicationDesc, &replicationServer{s: s})
	return nil
}

// replicationServer serves the gRPC replication service of s (s.rep).
type replicationServer struct {
	s *Server
}

// serveEnvelope reads a request envelope, runs call, and writes the
// response envelope.
func serveEnvelope(srv any, stream grpc.ServerStream, alloc func(h []byte, n int) []byte,
	call func(ctx context.Context, rs *replicationServer, h, payload []byte) (*envelope, error)) error {
	rs := srv.(*replicationServer)
	h, payload, err := recvEnvelope(stream.RecvMsg, rs.s.c.maxTensorBytes, alloc)
	if err != nil {
		return toStatus(fmt.Errorf("%w: %w", ps.ErrInvalidArgument, err))
	}
	out, err := call(stream.Context(), rs, h, payload)
	if err != nil {
		return toStatus(err)
	}
	return out.send(rs.s.c.chunkElems*4, stream.SendMsg)
}

func replicateHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, allocFloats, func(ctx context.Context, rs *replicationServer, h, payload []byte) (*envelope, error) {
		req, err := decodeReplicateRequest(h, payload)
		if err != nil {
			return nil, err
		}
		resp, err := rs.s.rep.Replicate(ctx, req)
		if err != nil {
			return nil, err
		}
		return jsonEnvelope(resp)
	})
}

func fetchHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, nil, func(ctx context.Context, rs *replicationServer, h, _ []byte) (*envelope, error) {
		var req ps.FetchRequest
		if err := decodeHeader(h, &req); err != nil {
			return nil, err
		}
		resp, err := rs.s.rep.Fetch(ctx, &req)
		if err != nil {
			return nil, err
		}
		hr := *resp
		hr.State = nil
		env, err := jsonEnvelope(&hr)
		if err != nil || resp.State == nil {
			return env, err
		}
		b, err := resp.State.MarshalBinary()
		if err != nil {
			return nil, err
		}
		env.payload = [][]byte{b}
		return env, nil
	})
}

func installHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, nil, func(ctx context.Context, rs *replicationServer, h, payload []byte) (*envelope, error) {
		var req ps.InstallRequest
		if err := decodeHeader(h, &req); err != nil {
			return nil, err
		}
		if len(payload) > 0 {
			req.State = &ps.PartitionState{}
			if err := req.State.UnmarshalBinary(payload); err != nil {
				return nil, err
			}
		}
		resp, err := rs.s.rep.Install(ctx, &req)
		if err != nil {
			return nil, err
		}
		return jsonEnvelope(resp)
	})
}

// Replicate implements ps.Replicator: over the data path when the server
// carries replication there (DataPathInfo.replicate), else over gRPC.
func (c *client) Replicate(ctx context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	in, err := encodeReplicateRequest(req)
	if err != nil {
		return nil, err
	}
	if dp := c.p.data; dp != nil && dp.replicates() {
		if err := c.check(ctx, "replicate"); err != nil {
			return nil, err
		}
		if dc := dp.get(ctx, c.p); dc != nil {
			if dp.replicates() { // now known: get asked the server
				return c.dataReplicate(ctx, dc, in)
			}
			dp.put(dc)
		}
	}
	out, _, err := c.callEnvelope(ctx, "replicate", 0, ReplicationReplicateMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.ReplicateResponse
	if err := decodeHeader(out, &resp); err != nil {
		return nil, fmt.Errorf("grpc replicate %s: %w", c.p.addr, err)
	}
	return &resp, nil
}

// Fetch implements ps.Replicator.
func (c *client) Fetch(ctx context.Context, req *ps.FetchRequest) (*ps.FetchResponse, error) {
	in, err := jsonEnvelope(req)
	if err != nil {
		return nil, err
	}
	out, payload, err := c.callEnvelope(ctx, "fetch", 1, ReplicationFetchMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.FetchResponse
	if err := decodeHeader(out, &resp); err != nil {
		return nil, fmt.Errorf("grpc fetch %s: %w", c.p.addr, err)
	}
	if len(payload) > 0 {
		resp.State = &ps.PartitionState{}
		if err := resp.State.UnmarshalBinary(payload); err != nil {
			return nil, fmt.Errorf("grpc fetch %s: %w", c.p.addr, err)
		}
	}
	return &resp, nil
}

// Install implements ps.Replicator.
func (c *client) Install(ctx context.Context, req *ps.InstallRequest) (*ps.InstallResponse, error) {
	h := *req
	h.State = nil
	var payload []byte
	if req.State != nil {
		var err error
		if payload, err = req.State.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	in, err := jsonEnvelope(&h)
	if err != nil {
		return nil, err
	}
	if payload != nil {
		in.payload = [][]byte{payload}
	}
	out, _, err := c.callEnvelope(ctx, "install", 2, ReplicationInstallMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.InstallResponse
	if err := decodeHeader(out, &resp); err != nil {
		return nil, fmt.Errorf("grpc install %s: %w", c.p.addr, err)
	}
	return &resp, nil
}

var _ ps.Replicator = (*client)(nil)

// callEnvelope sends one request envelope on a new stream of the
// replication service and returns the response's header and payload.
func (c *client) callEnvelope(ctx context.Context, op string, stream int, method string, in *envelope) ([]byte, []byte, error) {
	if err := c.check(ctx, op); err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.p.conn().NewStream(sctx, &replicationDesc.Streams[stream], method)
	if err != nil {
		return nil, nil, c.fail(ctx, op, err)
	}
	err = in.send(c.d.c.chunkElems*4, st.SendMsg)
	if err != nil && err != io.EOF {
		return nil, nil, c.fail(ctx, op, err)
	}
	if err == nil {
		if err := st.CloseSend(); err != nil {
			return nil, nil, c.fail(ctx, op, err)
		}
	}
	h, payload, err := recvEnvelope(st.RecvMsg, c.d.c.maxTensorBytes, nil)
	if err != nil {
		var fe frameError
		if errors.As(err, &fe) {
			return nil, nil, fmt.Errorf("grpc %s %s: %w", op, c.p.addr, err)
		}
		return nil, nil, c.fail(ctx, op, err)
	}
	return h, payload, nil
}

// frameError is a malformed envelope (as opposed to a failed call).
type frameError struct{ msg string }

func (e frameError) Error() string { return "replication envelope: " + e.msg }

// envelope is one request or response: a JSON header and a payload given
// as pieces (sent without being concatenated). On the wire the first
// message holds the 8-byte little-endian payload length and the header;
// the payload follows in messages of at most ChunkBytes.
type envelope struct {
	header  []byte
	payload [][]byte
}

func jsonEnvelope(h any) (*envelope, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("replication envelope: %w", err)
	}
	return &envelope{header: b}, nil
}

func (e *envelope) send(chunk int, send func(any) error) error {
	if chunk <= 0 {
		chunk = DefaultChunkBytes
	}
	n := 0
	for _, p := range e.payload {
		n += len(p)
	}
	first := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(e.header)), uint64(n))
	if err := send(wrapperspb.Bytes(append(first, e.header...))); err != nil {
		return err
	}
	for _, p := range e.payload {
		for len(p) > 0 {
			k := min(chunk, len(p))
			if err := send(wrapperspb.Bytes(p[:k])); err != nil {
				return err
			}
			p = p[k:]
		}
	}
	return nil
}

// recvEnvelope reads an envelope until the end of the stream. alloc, when
// non-nil, supplies the payload buffer for the given header and length
// (so floats can land in a []float32's memory); a payload longer than
// limit is refused before anything is allocated.
func recvEnvelope(recv func(any) error, limit int64, alloc func(h []byte, n int) []byte) ([]byte, []byte, error) {
	m := &wrapperspb.BytesValue{}
	if err := recv(m); err != nil {
		if err == io.EOF {
			return nil, nil, frameError{"empty stream"}
		}
		return nil, nil, err
	}
	if len(m.Value) < 8 {
		return nil, nil, frameError{fmt.Sprintf("first message of %d bytes", len(m.Value))}
	}
	n := binary.LittleEndian.Uint64(m.Value)
	if n > uint64(limit) {
		return nil, nil, frameError{fmt.Sprintf("payload of %d bytes, limit %d", n, limit)}
	}
	h := m.Value[8:]
	var payload []byte
	if alloc != nil {
		payload = alloc(h, int(n))
	}
	if payload == nil {
		payload = make([]byte, n)
	}
	off := 0
	for {
		m := &wrapperspb.BytesValue{}
		err := recv(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if len(m.Value) > len(payload)-off {
			return nil, nil, frameError{fmt.Sprintf("more than the announced %d payload bytes", n)}
		}
		off += copy(payload[off:], m.Value)
	}
	if off != len(payload) {
		return nil, nil, frameError{fmt.Sprintf("payload ended after %d of %d bytes", off, n)}
	}
	return h, payload, nil
}

// allocFloats gives a Replicate payload the memory of a []float32, so the
// gradients need no second copy on little-endian hosts.
func allocFloats(_ []byte, n int) []byte {
	if !littleEndian || n%4 != 0 {
		return nil
	}
	return f32bytes(make([]float32, n/4))
}

// decodeHeader decodes a JSON header; errors wrap ps.ErrInvalidArgument.
func decodeHeader(h []byte, v any) error {
	if err := json.Unmarshal(h, v); err != nil {
		return ps.Errorf(ps.ErrInvalidArgument, "replication envelope header: %v", err)
	}
	return nil
}

// opHeader is a ReplicateOp without its gradient, whose length it gives.
type opHeader struct {
	ps.ReplicateOp
	HasGrad bool `json:"has_grad"`
	NumGrad int  `json:"num_grad"`
}

type replicateHeader struct {
	From string     `json:"from"`
	Ops  []opHeader `json:"ops"`
}

func encodeReplicateRequest(req *ps.ReplicateRequest) (*envelope, error) {
	h := replicateHeader{From: req.From, Ops: make([]opHeader, len(req.Ops))}
	var pieces [][]byte
	for i, op := range req.Ops {
		h.Ops[i] = opHeader{ReplicateOp: op, HasGrad: op.Grad != nil, NumGrad: len(op.Grad)}
		h.Ops[i].Grad = nil
		if len(op.Grad) > 0 {
			pieces = append(pieces, leBytes(op.Grad))
		}
	}
	env, err := jsonEnvelope(&h)
	if err != nil {
		return nil, err
	}
	env.payload = pieces
	return env, nil
}

// leBytes is v as little-endian bytes: a view on little-endian hosts, a
// copy elsewhere.
func leBytes(v []float32) []byte {
	if littleEndian {
		return f32bytes(v)
	}
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeReplicateHeader decodes a Replicate envelope's header and returns
// the number of gradient values its ops announce, at most maxBytes/4.
func decodeReplicateHeader(hb []byte, maxBytes int64) (*replicateHeader, int64, error) {
	var h replicateHeader
	if err := decodeHeader(hb, &h); err != nil {
		return nil, 0, err
	}
	total, err := totalValues(len(h.Ops), func(i int) int64 { return int64(h.Ops[i].NumGrad) }, maxBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("replicate: %w", err)
	}
	return &h, total, nil
}

// replicateRequest gives the ops of h their gradients, in order, from all
// (which holds exactly the values h announces).
func replicateRequest(h *replicateHeader, all []float32) *ps.ReplicateRequest {
	req := &ps.ReplicateRequest{From: h.From, Ops: make([]ps.ReplicateOp, len(h.Ops))}
	for i, op := range h.Ops {
		req.Ops[i] = op.ReplicateOp
		if op.HasGrad {
			req.Ops[i].Grad = all[:op.NumGrad:op.NumGrad]
			all = all[op.NumGrad:]
		}
	}
	return req
}

func decodeReplicateRequest(hb, payload []byte) (*ps.ReplicateRequest, error) {
	// recvEnvelope bounded the payload; the header must announce exactly it.
	h, total, err := decodeReplicateHeader(hb, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	if 4*total != int64(len(payload)) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "replicate: %d payload bytes do not match the header's gradient lengths", len(payload))
	}
	var all []float32
	if littleEndian && len(payload) > 0 && uintptr(unsafe.Pointer(&payload[0]))%4 == 0 {
		all = unsafe.Slice((*float32)(unsafe.Pointer(&payload[0])), len(payload)/4)
	} else {
		all = make([]float32, len(payload)/4)
		for j := range all {
			all[j] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*j:]))
		}
	}
	return replicateRequest(h, all), nil
}
