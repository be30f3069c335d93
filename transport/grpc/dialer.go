package grpctransport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// pullStreams is the most streams one Pull is split over.
	pullStreams int

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

	// sizes holds the bytes of values of dense parts, as the last pull of
	// each answered (PartKey → int64), for splitPull. It holds only keys
	// this client asked for.
	sizes sync.Map
}

// learn records the sizes of the dense parts of a pull's response.
func (p *peer) learn(req []ps.PullPart, resp []ps.PartValues) {
	for i, pv := range resp {
		if i < len(req) && req[i].Rows == nil && req[i].Key == pv.Key {
			p.sizes.Store(pv.Key, 4*int64(len(pv.Values)))
		}
	}
}

// size is the learned size of dense part key, 0 if unknown.
func (p *peer) size(key ps.PartKey) int64 {
	if v, ok := p.sizes.Load(key); ok {
		return v.(int64)
	}
	return 0
}

func (p *peer) conn() *grpc.ClientConn {
	if len(p.ccs) == 1 {
		return p.ccs[0]
	}
	return p.ccs[p.next.Add(1)%uint64(len(p.ccs))]
}

func (p *peer) close() {
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
	d.pullStreams = cfg.PullStreams
	if d.pullStreams == 0 {
		d.pullStreams = DefaultPullStreams
	}
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

// Pull implements ps.Service. A pull of several dense parts that earlier
// pulls showed to add up to at least splitPullBytes is split into up to
// DialerConfig.PullStreams concurrent streams of balanced size (see
// splitPull); the response is the same.
func (c *client) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	if err := c.check(ctx, "pull"); err != nil {
		return nil, err
	}
	groups := c.splitPull(req)
	if len(groups) <= 1 {
		resp, err := c.pullOne(ctx, req, &atomic.Int64{})
		if err == nil {
			c.p.learn(req.Parts, resp.Parts)
		}
		return resp, err
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var budget atomic.Int64 // bytes of values announced so far, all streams
	subs := make([]*ps.PullResponse, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for g, idx := range groups {
		sub := &ps.PullRequest{ClientID: req.ClientID, Worker: req.Worker, Clock: req.Clock, Parts: make([]ps.PullPart, len(idx))}
		for j, i := range idx {
			sub.Parts[j] = req.Parts[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			subs[g], errs[g] = c.pullOne(gctx, sub, &budget)
			if errs[g] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// The first error that is not just another stream's cancellation.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || (errors.Is(first, context.Canceled) && ctx.Err() == nil)) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	resp := &ps.PullResponse{Parts: make([]ps.PartValues, len(req.Parts))}
	for g, idx := range groups {
		if len(subs[g].Parts) != len(idx) {
			return nil, fmt.Errorf("grpc pull %s: %w: %d parts answered for %d asked", c.p.addr, ps.ErrInvalidArgument, len(subs[g].Parts), len(idx))
		}
		for j, i := range idx {
			resp.Parts[i] = subs[g].Parts[j]
		}
	}
	c.p.learn(req.Parts, resp.Parts)
	return resp, nil
}

// splitPullBytes is the least total a pull must have (as learned from
// earlier responses) to be split over several streams. Below it the extra
// streams cost more than the overlap saves.
const splitPullBytes = 8 << 20

// splitPull returns the indexes of req's parts grouped for concurrent
// streams, or nil to pull in one stream. Only dense parts whose size an
// earlier pull showed count; groups are balanced greedily by that size.
func (c *client) splitPull(req *ps.PullRequest) [][]int {
	k := min(c.d.pullStreams, len(req.Parts))
	if k < 2 {
		return nil
	}
	sizes := make([]int64, len(req.Parts))
	var total int64
	for i, pp := range req.Parts {
		if pp.Rows == nil {
			sizes[i] = c.p.size(pp.Key)
			total += sizes[i]
		}
	}
	if total < splitPullBytes {
		return nil
	}
	order := make([]int, len(sizes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(sizes[b], sizes[a]) })
	groups := make([][]int, k)
	load := make([]int64, k)
	for _, i := range order {
		g := 0
		for j := 1; j < k; j++ {
			if load[j] < load[g] {
				g = j
			}
		}
		groups[g] = append(groups[g], i)
		load[g] += sizes[i]
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g) > 0 {
			slices.Sort(g)
			out = append(out, g)
		}
	}
	return out
}

// pullOne pulls req over one stream. budget counts the value bytes that
// all streams of one Pull announced, against MaxTensorBytes.
func (c *client) pullOne(ctx context.Context, req *ps.PullRequest, budget *atomic.Int64) (*ps.PullResponse, error) {
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
	in.onHeader = func() ([]float32, error) {
		h := in.header.(*pb.PullHeader)
		total, err := totalValues(len(h.GetParts()), func(i int) int64 { return h.Parts[i].GetNumValues() }, c.d.c.maxTensorBytes)
		if err != nil {
			return nil, err
		}
		if budget.Add(4*total) > c.d.c.maxTensorBytes {
			return nil, ps.Errorf(ps.ErrTooLarge, "tensor data exceeds the limit of %d bytes", c.d.c.maxTensorBytes)
		}
		r, backing, err := pullFromHeader(h, c.d.c.maxTensorBytes)
		resp = r
		return backing, err
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
	if in.next != int64(len(in.dst)) {
		return nil, fmt.Errorf("grpc pull %s: response ended after %d of %d values", c.p.addr, in.next, len(in.dst))
	}
	return resp, nil
}

// Push implements ps.Service. The gradients in req are read by the
// transport until Push returns; do not modify them before.
func (c *client) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	if err := c.check(ctx, "push"); err != nil {
		return nil, err
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
	err = sendFrames(header, vals, c.d.pushElems, func(f *frameOut) error {
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
