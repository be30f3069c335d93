package grpctransport

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

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
	s.gs.RegisterService(&replicationDesc, &replicationServer{rep: rep, s: s})
	return nil
}

type replicationServer struct {
	rep ps.Replicator
	s   *Server
}

// serveEnvelope reads a request envelope, runs call, and writes the
// response envelope.
func serveEnvelope(srv any, stream grpc.ServerStream, call func(ctx context.Context, rs *replicationServer, in []byte) ([]byte, error)) error {
	rs := srv.(*replicationServer)
	in, err := recvEnvelope(stream.RecvMsg, rs.s.c.maxTensorBytes)
	if err != nil {
		return toStatus(fmt.Errorf("%w: %w", ps.ErrInvalidArgument, err))
	}
	out, err := call(stream.Context(), rs, in)
	if err != nil {
		return toStatus(err)
	}
	return sendEnvelope(out, rs.s.c.chunkElems*4, stream.SendMsg)
}

func replicateHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, func(ctx context.Context, rs *replicationServer, in []byte) ([]byte, error) {
		req, err := decodeReplicateRequest(in)
		if err != nil {
			return nil, err
		}
		resp, err := rs.rep.Replicate(ctx, req)
		if err != nil {
			return nil, err
		}
		return encodeJSON(resp, nil)
	})
}

func fetchHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, func(ctx context.Context, rs *replicationServer, in []byte) ([]byte, error) {
		var req ps.FetchRequest
		if _, err := decodeJSON(in, &req); err != nil {
			return nil, err
		}
		resp, err := rs.rep.Fetch(ctx, &req)
		if err != nil {
			return nil, err
		}
		h := *resp
		h.State = nil
		var payload []byte
		if resp.State != nil {
			if payload, err = resp.State.MarshalBinary(); err != nil {
				return nil, err
			}
		}
		return encodeJSON(&h, payload)
	})
}

func installHandler(srv any, stream grpc.ServerStream) error {
	return serveEnvelope(srv, stream, func(ctx context.Context, rs *replicationServer, in []byte) ([]byte, error) {
		var req ps.InstallRequest
		payload, err := decodeJSON(in, &req)
		if err != nil {
			return nil, err
		}
		if len(payload) > 0 {
			req.State = &ps.PartitionState{}
			if err := req.State.UnmarshalBinary(payload); err != nil {
				return nil, err
			}
		}
		resp, err := rs.rep.Install(ctx, &req)
		if err != nil {
			return nil, err
		}
		return encodeJSON(resp, nil)
	})
}

// Replicate implements ps.Replicator.
func (c *client) Replicate(ctx context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	in, err := encodeReplicateRequest(req)
	if err != nil {
		return nil, err
	}
	out, err := c.callEnvelope(ctx, "replicate", 0, ReplicationReplicateMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.ReplicateResponse
	if _, err := decodeJSON(out, &resp); err != nil {
		return nil, fmt.Errorf("grpc replicate %s: %w", c.p.addr, err)
	}
	return &resp, nil
}

// Fetch implements ps.Replicator.
func (c *client) Fetch(ctx context.Context, req *ps.FetchRequest) (*ps.FetchResponse, error) {
	in, err := encodeJSON(req, nil)
	if err != nil {
		return nil, err
	}
	out, err := c.callEnvelope(ctx, "fetch", 1, ReplicationFetchMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.FetchResponse
	payload, err := decodeJSON(out, &resp)
	if err != nil {
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
	in, err := encodeJSON(&h, payload)
	if err != nil {
		return nil, err
	}
	out, err := c.callEnvelope(ctx, "install", 2, ReplicationInstallMethod, in)
	if err != nil {
		return nil, err
	}
	var resp ps.InstallResponse
	if _, err := decodeJSON(out, &resp); err != nil {
		return nil, fmt.Errorf("grpc install %s: %w", c.p.addr, err)
	}
	return &resp, nil
}

var _ ps.Replicator = (*client)(nil)

// callEnvelope sends one request envelope on a new stream of the
// replication service and returns the response envelope.
func (c *client) callEnvelope(ctx context.Context, op string, stream int, method string, in []byte) ([]byte, error) {
	if err := c.check(ctx, op); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.p.conn().NewStream(sctx, &replicationDesc.Streams[stream], method)
	if err != nil {
		return nil, c.fail(ctx, op, err)
	}
	err = sendEnvelope(in, c.d.c.chunkElems*4, st.SendMsg)
	if err != nil && err != io.EOF {
		return nil, c.fail(ctx, op, err)
	}
	if err == nil {
		if err := st.CloseSend(); err != nil {
			return nil, c.fail(ctx, op, err)
		}
	}
	out, err := recvEnvelope(st.RecvMsg, c.d.c.maxTensorBytes)
	if err != nil {
		var fe frameError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("grpc %s %s: %w", op, c.p.addr, err)
		}
		return nil, c.fail(ctx, op, err)
	}
	return out, nil
}

// frameError is a malformed envelope (as opposed to a failed call).
type frameError struct{ msg string }

func (e frameError) Error() string { return "replication envelope: " + e.msg }

// sendEnvelope cuts b into chunks of at most chunk bytes (at least one
// message, even for an empty envelope).
func sendEnvelope(b []byte, chunk int, send func(any) error) error {
	if chunk <= 0 {
		chunk = DefaultChunkBytes
	}
	for first := true; first || len(b) > 0; first = false {
		n := min(chunk, len(b))
		if err := send(wrapperspb.Bytes(b[:n])); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// recvEnvelope concatenates chunks until the end of the stream; more than
// limit bytes is an error.
func recvEnvelope(recv func(any) error, limit int64) ([]byte, error) {
	var out []byte
	for {
		m := &wrapperspb.BytesValue{}
		err := recv(m)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if int64(len(out))+int64(len(m.Value)) > limit {
			return nil, frameError{fmt.Sprintf("more than %d bytes", limit)}
		}
		if out == nil {
			out = m.Value
		} else {
			out = append(out, m.Value...)
		}
	}
}

// encodeJSON builds an envelope of a JSON header and a raw payload.
func encodeJSON(h any, payload []byte) ([]byte, error) {
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("replication envelope: %w", err)
	}
	out := make([]byte, 0, 4+len(hj)+len(payload))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hj)))
	out = append(out, hj...)
	return append(out, payload...), nil
}

// decodeJSON splits an envelope, decodes its header into h and returns the
// payload. Errors wrap ps.ErrInvalidArgument.
func decodeJSON(b []byte, h any) ([]byte, error) {
	if len(b) < 4 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "replication envelope of %d bytes", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "replication envelope: header of %d bytes, %d left", n, len(b)-4)
	}
	if err := json.Unmarshal(b[4:4+n], h); err != nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "replication envelope header: %v", err)
	}
	return b[4+n:], nil
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

func encodeReplicateRequest(req *ps.ReplicateRequest) ([]byte, error) {
	h := replicateHeader{From: req.From, Ops: make([]opHeader, len(req.Ops))}
	n := 0
	for i, op := range req.Ops {
		h.Ops[i] = opHeader{ReplicateOp: op, HasGrad: op.Grad != nil, NumGrad: len(op.Grad)}
		h.Ops[i].Grad = nil
		n += len(op.Grad)
	}
	payload := make([]byte, 0, 4*n)
	for _, op := range req.Ops {
		for _, x := range op.Grad {
			payload = binary.LittleEndian.AppendUint32(payload, math.Float32bits(x))
		}
	}
	return encodeJSON(&h, payload)
}

func decodeReplicateRequest(b []byte) (*ps.ReplicateRequest, error) {
	var h replicateHeader
	payload, err := decodeJSON(b, &h)
	if err != nil {
		return nil, err
	}
	total := uint64(0)
	for _, op := range h.Ops {
		if op.NumGrad < 0 {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "replicate: negative gradient length")
		}
		total += uint64(op.NumGrad)
	}
	if 4*total != uint64(len(payload)) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "replicate: %d payload bytes, header says %d", len(payload), 4*total)
	}
	req := &ps.ReplicateRequest{From: h.From, Ops: make([]ps.ReplicateOp, len(h.Ops))}
	for i, op := range h.Ops {
		req.Ops[i] = op.ReplicateOp
		if op.HasGrad {
			g := make([]float32, op.NumGrad)
			for j := range g {
				g[j] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*j:]))
			}
			req.Ops[i].Grad = g
			payload = payload[4*op.NumGrad:]
		}
	}
	return req, nil
}
