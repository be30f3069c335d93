package grpctransport

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
)

// Dialer dials parameter servers over gRPC. It implements ps.Dialer.
// Connections are cached per address and shared by every Service dialed to
// it; the last Service's Close closes them, and Dialer.Close closes all.
// Safe for concurrent use.
type Dialer struct {
	cfg    DialerConfig
	c      common
	cfgErr error
	opts   []grpc.DialOption
	enc    pb.ValueEncoding
	// pushElems is the values per Push frame: ChunkBytes of the encoding.
	pushElems int
	// useData says calls try servers' data paths (DialerConfig.DataPath).
	useData bool
	// dataSyncDial (tests) dials a data path on the call's path even
	// before it was reachable, so that every call after the first
	// DataPath lookup takes it.
	dataSyncDial bool

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
}

// peer is the shared connections to one address.
type peer struct {
	addr string
	ccs  []*grpc.ClientConn
	refs int
	next atomic.Uint64
	data *dataPeer // nil when the data path is not used
}

func (p *peer) conn() *grpc.ClientConn {
	if len(p.ccs) == 1 {
		return p.ccs[0]
	}
	return p.ccs[p.next.Add(1)%uint64(len(p.ccs))]
}

func (p *peer) close() {
	if p.data != nil {
		p.data.close()
	}
	for _, cc := range p.ccs {
		cc.Close()
	}
}

// NewDialer returns a dialer. An invalid cfg is reported by Dial.
func NewDialer(cfg DialerConfig) *Dialer {
	d := &Dialer{cfg: cfg, peers: make(map[string]*peer)}
	d.c, d.cfgErr = cfg.resolve()
	if d.cfgErr != nil {
		return d
	}
	if d.cfg.ConnsPerPeer == 0 {
		d.cfg.ConnsPerPeer = 1
	}
	d.enc, _ = valueEncoding(cfg.GradientEncoding) // checked by resolve
	d.pushElems = d.c.chunkElems * 4 / valueBytes(d.enc)
	d.useData = cfg.DataPath != DataPathOff && (cfg.Compression == "" || cfg.Compression == CompressionNone) && littleEndian
	callOpts := []grpc.CallOption{
		grpc.ForceCodecV2(newCodec()),
		grpc.MaxCallRecvMsgSize(d.c.maxMessageBytes),
		grpc.MaxCallSendMsgSize(d.c.maxMessageBytes),
	}
	if cfg.Compression != "" && cfg.Compression != CompressionNone {
		callOpts = append(callOpts, grpc.UseCompressor(cfg.Compression))
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	ka := cfg.Keepalive
	if ka == 0 {
		ka = DefaultKeepalive
	}
	ka = max(ka, minKeepalive)
	d.opts = []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		experimental.WithBufferPool(sharedPool),
		grpc.WithDefaultCallOptions(callOpts...),
		grpc.WithInitialWindowSize(d.c.window),
		grpc.WithInitialConnWindowSize(d.c.window),
		grpc.WithReadBufferSize(d.c.readBuf),
		grpc.WithWriteBufferSize(d.c.writeBuf),
	}
	if cfg.Keepalive >= 0 {
		d.opts = append(d.opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: ka}))
	}
	return d
}

// Dial returns a Service for the server at addr (HOST:PORT). It connects in
// the background and does not wait; a server that cannot be reached makes
// the calls fail with ps.ErrUnavailable.
func (d *Dialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	if d.cfgErr != nil {
		return nil, d.cfgErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("grpc dial %s: %w", addr, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("grpc dial %s: dialer: %w", addr, ps.ErrClosed)
	}
	p := d.peers[addr]
	if p == nil {
		p = &peer{addr: addr}
		if d.useData {
			p.data = newDataPeer(d, addr)
		}
		for i := 0; i < d.cfg.ConnsPerPeer; i++ {
			cc, err := grpc.NewClient("passthrough:///"+addr, d.opts...)
			if err != nil {
				p.close()
				return nil, fmt.Errorf("grpc dial %s: %w", addr, err)
			}
			cc.Connect()
			p.ccs = append(p.ccs, cc)
		}
		d.peers[addr] = p
		d.c.logger.Debug("grpc transport dialed", "addr", addr, "conns", len(p.ccs))
	}
	p.refs++
	return &client{d: d, p: p}, nil
}

// release drops one reference to p, closing its connections with the last.
func (d *Dialer) release(p *peer) {
	d.mu.Lock()
	p.refs--
	last := p.refs == 0 && d.peers[p.addr] == p
	if last {
		delete(d.peers, p.addr)
	}
	d.mu.Unlock()
	if last {
		p.close()
	}
}

// DataPaths reports, for every server a Service dialed from d is open to,
// how its pulls and pushes travel now, sorted by address.
func (d *Dialer) DataPaths() []DataPath {
	d.mu.Lock()
	peers := slices.Collect(maps.Values(d.peers))
	d.mu.Unlock()
	out := make([]DataPath, 0, len(peers))
	for _, p := range peers {
		if p.data == nil {
			out = append(out, DataPath{Addr: p.addr, Via: ViaGRPC})
			continue
		}
		out = append(out, p.data.state())
	}
	slices.SortFunc(out, func(a, b DataPath) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Close closes every connection; calls on Services dialed from d and Dial
// fail with ps.ErrClosed afterwards. Idempotent.
func (d *Dialer) Close() error {
	d.mu.Lock()
	peers := d.peers
	d.peers = make(map[string]*peer)
	d.closed = true
	d.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	return nil
}

var _ ps.Dialer = (*Dialer)(nil)

// unaryPush describes a Push whose request is a single frame.
var unaryPush = grpc.StreamDesc{StreamName: "Push"}

// client is a ps.Service over a peer's connections.
type client struct {
	d      *Dialer
	p      *peer
	closed atomic.Bool
}

// fail converts the error of call op into a ps error.
func (c *client) fail(ctx context.Context, op string, err error) error {
	c.d.mu.Lock()
	closed := c.d.closed
	c.d.mu.Unlock()
	if closed || c.closed.Load() {
		return fmt.Errorf("grpc %s %s: %w", op, c.p.addr, ps.ErrClosed)
	}
	return fromStatus(ctx, op, c.p.addr, err)
}

func (c *client) check(ctx context.Context, op string) error {
	if c.closed.Load() {
		return fmt.Errorf("grpc %s %s: %w", op, c.p.addr, ps.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("grpc %s %s: %w", op, c.p.addr, err)
	}
	return nil
}

// Create implements ps.Service.
func (c *client) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	if err := c.check(ctx, "create"); err != nil {
		return nil, err
	}
	out := &pb.CreateResponse{}
	if err := c.p.conn().Invoke(ctx, pb.ParameterServer_Create_FullMethodName, createToPB(req), out); err != nil {
		return nil, c.fail(ctx, "create", err)
	}
	return &ps.CreateResponse{Versions: versionsFromPB(out.Versions)}, nil
}

// Pull implements ps.Service.
func (c *client) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	if err := c.check(ctx, "pull"); err != nil {
		return nil, err
	}
	if c.p.data != nil {
		if dc := c.p.data.get(ctx, c.p); dc != nil {
			return c.dataPull(ctx, dc, req)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.p.conn().NewStream(sctx, &pb.ParameterServer_ServiceDesc.Streams[0], pb.ParameterServer_Pull_FullMethodName)
	if err != nil {
		return nil, c.fail(ctx, "pull", err)
	}
	if err := stream.SendMsg(pullToPB(req)); err != nil && err != io.EOF {
		return nil, c.fail(ctx, "pull", err)
	}
	if err := stream.CloseSend(); err != nil {
		return nil, c.fail(ctx, "pull", err)
	}
	var resp *ps.PullResponse
	in := &frameIn{header: &pb.PullHeader{}, maxHeader: c.d.c.maxMessageBytes}
	in.onHeader = func() ([][]float32, error) {
		r, segs, err := pullFromHeader(in.header.(*pb.PullHeader), c.d.c.maxTensorBytes, req)
		resp = r
		return segs, err
	}
	for {
		err := stream.RecvMsg(in)
		if in.err != nil {
			return nil, fmt.Errorf("grpc pull %s: %w", c.p.addr, in.err)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, c.fail(ctx, "pull", err)
		}
	}
	if !in.gotHeader {
		return nil, fmt.Errorf("grpc pull %s: response without header", c.p.addr)
	}
	if in.next != in.dst.total {
		return nil, fmt.Errorf("grpc pull %s: response ended after %d of %d values", c.p.addr, in.next, in.dst.total)
	}
	return resp, nil
}

// Push implements ps.Service. The gradients in req are read by the
// transport until Push returns; do not modify them before.
func (c *client) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	if err := c.check(ctx, "push"); err != nil {
		return nil, err
	}
	if c.p.data != nil {
		if dc := c.p.data.get(ctx, c.p); dc != nil {
			return c.dataPush(ctx, dc, req)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	header, vals := pushHeader(req)
	header.Encoding = c.d.enc
	desc := &pb.ParameterServer_ServiceDesc.Streams[1]
	var total int
	for _, v := range vals {
		total += len(v)
	}
	if total <= c.d.pushElems {
		// One frame: send it as a unary call would, with END_STREAM on
		// the message itself, which saves a frame and a wake-up per small
		// push. The server's stream handler sees one message, then EOF.
		desc = &unaryPush
	}
	stream, err := c.p.conn().NewStream(sctx, desc, pb.ParameterServer_Push_FullMethodName)
	if err != nil {
		return nil, c.fail(ctx, "push", err)
	}
	err = sendFrames(header, vals, nil, c.d.pushElems, func(f *frameOut) error {
		f.enc = c.d.enc
		return stream.SendMsg(f)
	})
	// io.EOF means the server ended the call early; its status follows.
	if err != nil && err != io.EOF {
		return nil, c.fail(ctx, "push", err)
	}
	if err == nil {
		if err := stream.CloseSend(); err != nil {
			return nil, c.fail(ctx, "push", err)
		}
	}
	out := &pb.PushResponse{}
	if err := stream.RecvMsg(out); err != nil {
		return nil, c.fail(ctx, "push", err)
	}
	return &ps.PushResponse{Versions: versionsFromPB(out.Versions)}, nil
}

// Close implements ps.Service: it releases this Service's share of the
// connections. Idempotent; later calls fail with ps.ErrClosed.
func (c *client) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.d.release(c.p)
	}
	return nil
}
