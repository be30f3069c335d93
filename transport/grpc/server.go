package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// Server serves a ps.Service over gRPC.
type Server struct {
	svc     ps.Service
	cfg     ServerConfig
	c       common
	cfgErr  error
	gs      *grpc.Server
	stopped chan struct{}
	once    sync.Once
	// recycle says svc keeps no reference to a pushed gradient once Push
	// returned successfully, so the handler may reuse its backing array.
	recycle bool
	// rep serves replication (RegisterReplication), on gRPC and the data
	// path; nil when not registered.
	rep ps.Replicator

	dataMu sync.Mutex
	data   *dataServer // nil until Serve starts it, or when off
}

// NewServer returns a server for svc. It does not listen; call Serve. An
// invalid cfg is reported by Serve.
func NewServer(svc ps.Service, cfg ServerConfig) *Server {
	s := &Server{svc: svc, cfg: cfg, stopped: make(chan struct{})}
	// ps.Server copies what it keeps of a gradient (the sync-mode sum, a
	// replication op buffered out of order) and returns from a successful
	// Push only after every replica received the op; a wrapper that
	// declares Unwrap (psd's metrics) promises the same (ps.ServerOf).
	// Another Service may retain req's slices, so its pushes get fresh
	// arrays and its pulls allocate their own.
	_, s.recycle = ps.ServerOf(svc)
	s.c, s.cfgErr = cfg.resolve()
	if s.cfgErr != nil {
		return s
	}
	if s.cfg.StopTimeout == 0 {
		s.cfg.StopTimeout = DefaultStopTimeout
	}
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec()),
		experimental.BufferPool(sharedPool),
		grpc.InitialWindowSize(s.c.window),
		grpc.InitialConnWindowSize(s.c.window),
		grpc.ReadBufferSize(s.c.readBuf),
		grpc.WriteBufferSize(s.c.writeBuf),
		grpc.MaxRecvMsgSize(s.c.maxMessageBytes),
		grpc.MaxSendMsgSize(s.c.maxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: serverMinPing}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.gs = grpc.NewServer(opts...)
	pb.RegisterParameterServerServer(s.gs, &handler{s: s})
	return s
}

// Serve accepts connections on lis until Stop; it returns nil after Stop,
// and the listener's error otherwise. It closes lis.
func (s *Server) Serve(lis net.Listener) error {
	if s.cfgErr != nil {
		lis.Close()
		return s.cfgErr
	}
	s.dataMu.Lock()
	select {
	case <-s.stopped:
		s.dataMu.Unlock()
		lis.Close()
		return nil
	default:
	}
	if s.data == nil {
		d, err := s.startDataPath(lis)
		if err != nil {
			s.dataMu.Unlock()
			lis.Close()
			return err
		}
		s.data = d
	}
	s.dataMu.Unlock()
	s.c.logger.Info("grpc transport serving", "addr", lis.Addr().String(), "tls", s.cfg.TLS != nil)
	err := s.gs.Serve(lis)
	select {
	case <-s.stopped:
		return nil
	default:
	}
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop stops the server: it stops accepting, lets calls in flight finish
// for up to ServerConfig.StopTimeout, then closes every connection (the
// callers of calls still running get ps.ErrUnavailable). It returns when
// the server has stopped and is idempotent. It does not Close the Service.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.dataMu.Lock()
		close(s.stopped)
		data := s.data
		s.dataMu.Unlock()
		if s.gs == nil {
			return
		}
		// Both paths stop gracefully at once, within one StopTimeout.
		dctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
		defer cancel()
		dataDone := make(chan struct{})
		go func() { // owner: Stop, which waits for it
			if data != nil {
				data.stop(dctx)
			}
			close(dataDone)
		}()
		done := make(chan struct{})
		go func() {
			s.gs.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-dctx.Done():
			s.c.logger.Warn("grpc transport stop timed out; closing calls in flight", "timeout", s.cfg.StopTimeout)
			s.gs.Stop()
			<-done
		}
		<-dataDone
	})
}

// handler adapts the Service to the generated gRPC server interface.
type handler struct {
	pb.UnimplementedParameterServerServer
	s *Server
}

func (h *handler) Create(ctx context.Context, req *pb.CreateRequest) (*pb.CreateResponse, error) {
	resp, err := h.s.svc.Create(ctx, createFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	if resp == nil {
		return nil, status.Error(codes.Internal, "service returned no response")
	}
	return &pb.CreateResponse{Versions: resp.Versions}, nil
}

func (h *handler) Pull(req *pb.PullRequest, stream grpc.ServerStreamingServer[pb.PullFrame]) error {
	preq := pullFromPB(req)
	// A ps.Server copies each part once, into pooled arrays that the
	// frames are sent from; another Service may keep what Alloc gave it,
	// so it allocates its own.
	var bufs pullBuffers
	defer bufs.release()
	if h.s.recycle {
		preq.Alloc = bufs.alloc
	}
	resp, err := h.s.svc.Pull(stream.Context(), preq)
	if err != nil {
		return toStatus(err)
	}
	if resp == nil {
		return status.Error(codes.Internal, "service returned no response")
	}
	header, vals := pullHeader(resp)
	roots := make([]mem.Buffer, len(vals))
	for i, v := range vals {
		roots[i] = bufs.rootOf(v)
	}
	err = sendFrames(header, vals, roots, h.s.c.chunkElems, func(f *frameOut) error { return stream.SendMsg(f) })
	if testHookPullSent != nil {
		testHookPullSent()
	}
	return err
}

// testHookPullSent, when set by a test, runs in the Pull handler after
// its last SendMsg returned.
var testHookPullSent func()

// gradAlloc allocates a pushed gradient's backing array: from gradPool
// when the service keeps no reference to it (s.recycle), setting *pooled
// when the array may go back with gradPool.put after a successful Push.
func (s *Server) gradAlloc(pooled *bool) func(n int) []float32 {
	if !s.recycle {
		return func(n int) []float32 { return make([]float32, n) }
	}
	return func(n int) []float32 {
		var b []float32
		b, *pooled = gradPool.get(n)
		return b
	}
}

func (h *handler) Push(stream grpc.ClientStreamingServer[pb.PushFrame, pb.PushResponse]) error {
	var (
		req     *ps.PushRequest
		backing []float32
		pooled  bool
	)
	in := &frameIn{header: &pb.PushHeader{}, maxHeader: h.s.c.maxMessageBytes}
	in.onHeader = func() ([][]float32, error) {
		hdr := in.header.(*pb.PushHeader)
		in.enc = hdr.GetEncoding()
		if err := checkEncoding(in.enc); err != nil {
			return nil, err
		}
		r, b, err := pushFromHeaderAlloc(hdr, h.s.c.maxTensorBytes, h.s.gradAlloc(&pooled))
		req, backing = r, b
		return [][]float32{b}, err
	}
	// Before svc.Push is called nobody else has seen backing; after, only
	// a successful Push of a service known not to retain it (s.recycle)
	// gives it back. A failed one may have been cut off by the context
	// while a replica's stream was still reading it.
	recycle := func() {
		if pooled {
			gradPool.put(backing)
			pooled = false
		}
	}
	for {
		err := stream.RecvMsg(in)
		if in.err != nil {
			recycle()
			return toStatus(fmt.Errorf("push: %w", in.err))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			recycle()
			return err
		}
	}
	if !in.gotHeader {
		return toStatus(ps.Errorf(ps.ErrInvalidArgument, "push stream without header"))
	}
	if in.next != in.dst.total {
		recycle()
		return toStatus(ps.Errorf(ps.ErrInvalidArgument, "push stream ended after %d of %d values", in.next, in.dst.total))
	}
	resp, err := h.s.svc.Push(stream.Context(), req)
	if err != nil {
		return toStatus(err)
	}
	recycle()
	if resp == nil {
		return status.Error(codes.Internal, "service returned no response")
	}
	return stream.SendAndClose(&pb.PushResponse{Versions: resp.Versions})
}
