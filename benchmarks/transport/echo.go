package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// The grpc-echo baseline: a bare gRPC service, flowps.bench.Echo, with two
// unary methods. Push carries the payload and is answered by an 8-byte ack;
// Pull carries an 8-byte size and is answered by that many bytes. Messages
// are raw bytes (rawCodec, no protobuf) and every gRPC setting is the
// default except the message size limits, which must admit 64 MiB. Both
// sides receive into memory they own (one copy out of gRPC's buffers, as
// any real receiver makes); senders hand gRPC their slice without a copy.

// echoMaxMessage is the message size limit of both sides.
const echoMaxMessage = 1 << 30

// rawMsg is a message of raw bytes.
type rawMsg struct{ b []byte }

// rawCodec marshals *rawMsg as its bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "flowps-bench-raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	n := data.Len()
	if cap(m.b) < n {
		m.b = make([]byte, n)
	}
	m.b = m.b[:n]
	data.CopyTo(m.b)
	return nil
}

// echoService is the handler type of the service description.
type echoService interface {
	pushBuf() *rawMsg
	push(in *rawMsg) *rawMsg
	pull(in *rawMsg) (*rawMsg, error)
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "flowps.bench.Echo",
	HandlerType: (*echoService)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Push", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			s := srv.(echoService)
			in := s.pushBuf()
			if err := dec(in); err != nil {
				return nil, err
			}
			return s.push(in), nil
		}},
		{MethodName: "Pull", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &rawMsg{}
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(echoService).pull(in)
		}},
	},
}

// echoServer implements echoService.
type echoServer struct {
	bufs sync.Pool // *rawMsg receive buffers
	mu   sync.Mutex
	src  []byte // what pulls return, grown to the largest
}

func (s *echoServer) pushBuf() *rawMsg {
	if m, ok := s.bufs.Get().(*rawMsg); ok {
		return m
	}
	return &rawMsg{}
}

func (s *echoServer) push(in *rawMsg) *rawMsg {
	ack := make([]byte, 8)
	binary.LittleEndian.PutUint64(ack, uint64(len(in.b)))
	s.bufs.Put(in)
	return &rawMsg{b: ack}
}

func (s *echoServer) pull(in *rawMsg) (*rawMsg, error) {
	if len(in.b) != 8 {
		return nil, fmt.Errorf("echo pull: request of %d bytes, want 8", len(in.b))
	}
	n := binary.LittleEndian.Uint64(in.b)
	if n > echoMaxMessage-64 {
		return nil, fmt.Errorf("echo pull: %d bytes is too large", n)
	}
	s.mu.Lock()
	if uint64(len(s.src)) < n {
		s.src = make([]byte, n)
		fillPayload(s.src, 2)
	}
	out := s.src[:n]
	s.mu.Unlock()
	return &rawMsg{b: out}, nil
}

var echoBackend = backend{
	name:  "grpc-echo",
	child: true,
	serve: func(ctx context.Context, _ *env) (string, func() error, error) {
		var lc net.ListenConfig
		lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, fmt.Errorf("grpc-echo listen: %w", err)
		}
		gs := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(echoMaxMessage), grpc.MaxSendMsgSize(echoMaxMessage))
		gs.RegisterService(&echoDesc, &echoServer{})
		done := make(chan error, 1)
		go func() { done <- gs.Serve(lis) }()
		stop := func() error {
			gs.Stop()
			return <-done
		}
		return lis.Addr().String(), stop, nil
	},
	dial: func(ctx context.Context, e *env, addr string) (client, error) {
		opts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(echoMaxMessage), grpc.MaxCallSendMsgSize(echoMaxMessage)}
		if e.compress != "none" {
			opts = append(opts, grpc.UseCompressor(e.compress))
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(opts...))
		if err != nil {
			return nil, fmt.Errorf("grpc-echo dial: %w", err)
		}
		return &echoClient{cc: cc}, nil
	},
}

type echoClient struct{ cc *grpc.ClientConn }

func (c *echoClient) prepare(_ context.Context, size int) (cell, error) {
	payload := make([]byte, size)
	fillPayload(payload, 1)
	req := make([]byte, 8)
	binary.LittleEndian.PutUint64(req, uint64(size))
	recv := &rawMsg{b: make([]byte, size)}
	return &funcCell{
		push: func(ctx context.Context) error {
			ack := &rawMsg{}
			if err := c.cc.Invoke(ctx, "/flowps.bench.Echo/Push", &rawMsg{b: payload}, ack); err != nil {
				return err
			}
			if len(ack.b) != 8 || binary.LittleEndian.Uint64(ack.b) != uint64(size) {
				return fmt.Errorf("echo push: bad ack %x", ack.b)
			}
			return nil
		},
		pull: func(ctx context.Context) error {
			if err := c.cc.Invoke(ctx, "/flowps.bench.Echo/Pull", &rawMsg{b: req}, recv); err != nil {
				return err
			}
			if len(recv.b) != size {
				return fmt.Errorf("echo pull: %d bytes, want %d", len(recv.b), size)
			}
			return nil
		},
	}, nil
}

func (c *echoClient) close() error { return c.cc.Close() }
