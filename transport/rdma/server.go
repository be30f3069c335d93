//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/flowps/flowps/ps"
)

const (
	serverRecvs = 64 // posted control receive buffers
	serverSends = 64 // control send buffers
)

// Server serves a ps.Service on one fabric endpoint. Clients find it by the
// address Addr returns (or by Endpoint, advertised through gossip).
type Server struct {
	cfg  ServerConfig
	svc  ps.Service
	log  *slog.Logger
	fab  *fabric
	name []byte

	ctrlRecv *region
	ctrlSend *region
	sendFree chan int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // request handlers, accepts, the reaper

	mu      sync.Mutex
	clients map[uint32]*serverClient
	byNonce map[uint64]*serverClient
	closed  bool
	reaped  bool // the reaper has exited: drop leaves cleanup to Close
	closing []*serverClient

	// alias says svc keeps no reference to a pushed gradient once Push
	// returned, so pushes are decoded as views of the mirror area (no copy).
	alias bool
	// holdFailed is how long the response to an aliased push that failed
	// past validation is held back (see handle).
	holdFailed time.Duration

	// testHook, when set, runs after a request was served and its response
	// written into the area, before it is sent (tests tear frames with it).
	testHook func(buf []byte)
}

// serverClient is one connected client and its mirror staging area.
type serverClient struct {
	idx      uint32
	nonce    uint64
	addr     uint64
	area     *region
	shared   bool // area is the client's own memory (shm; see sharedarea_linux.go)
	size     int
	rbase    uint64
	rkey     uint64
	lastSeen atomic.Int64
	dead     atomic.Bool
	received atomic.Uint64 // request frames that landed, reported in pongs
	// The goodbye handshake (see conn): saidBye when the client closed
	// first; byeAck closed when it acknowledged the server's goodbye.
	saidBye    atomic.Bool
	byeAck     chan struct{}
	byeAckOnce sync.Once
	// ops counts handlers and posted operations aimed at this client; the
	// client's address leaves the AV only when it drops to zero (shm
	// unmaps the peer's region on fi_av_remove).
	ops opCount

	mu      sync.Mutex
	cancels map[int]context.CancelFunc
}

// NewServer opens a fabric endpoint of cfg.Provider and serves svc on it
// until Close. The Server does not close svc.
func NewServer(svc ps.Service, cfg ServerConfig) (*Server, error) {
	if svc == nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: nil service")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// One client's mirror must fit at least; more are checked as they come.
	if err := checkMemlock(cfg.Provider, cfg.MaxAreaBytes); err != nil {
		return nil, err
	}
	node, service := cfg.Node, cfg.Service
	if cfg.Provider == ProviderSHM {
		node, service = uniqueSHMName("psd"), ""
	}
	fab, err := openFabric(cfg.Provider, node, service, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("rdma: server endpoint: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		svc:      svc,
		log:      cfg.Logger.With("transport", "rdma", "provider", cfg.Provider),
		fab:      fab,
		sendFree: make(chan int, serverSends),
		clients:  make(map[uint32]*serverClient),
		byNonce:  make(map[uint64]*serverClient),
		// ps.Server copies what it keeps of a gradient (the sync-mode sum,
		// a replication op buffered out of order) and forwards it to the
		// replicas inside the call. Another Service may retain req's
		// slices, so its pushes get copies (see isPSServer for wrappers).
		alias:      isPSServer(svc),
		holdFailed: aliasHold,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Server, error) {
		s.cancel()
		fab.close()
		return nil, err
	}
	if s.name, err = fab.name(); err != nil {
		return fail(err)
	}
	if s.ctrlRecv, err = fab.register(serverRecvs*ctrlSize, fiAccessRecv); err != nil {
		return fail(err)
	}
	if s.ctrlSend, err = fab.register(serverSends*ctrlSize, fiAccessSend); err != nil {
		return fail(err)
	}
	for i := 0; i < serverSends; i++ {
		s.sendFree <- i
	}
	fab.onRemote = s.onRemote
	fab.onError = func(err error) { s.log.Warn("rdma: fabric error", "err", err) }
	fab.start()
	for i := 0; i < serverRecvs; i++ {
		if err := s.postRecv(i); err != nil {
			return fail(err)
		}
	}
	s.wg.Add(1)
	go s.reaper()
	s.log.Info("rdma: serving", "addr", s.Addr(), "mr_mode", fmt.Sprintf("%#x", fab.info.mrMode))
	return s, nil
}

// Endpoint returns the fabric endpoint name and provider to advertise.
func (s *Server) Endpoint() (name []byte, provider string) {
	return append([]byte(nil), s.name...), s.cfg.Provider
}

// Addr returns the address a Dialer dials: FormatAddr(provider, name).
func (s *Server) Addr() string { return FormatAddr(s.cfg.Provider, s.name) }

// Clients reports how many clients are connected.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Close stops serving, waits for running requests, drops every client and
// releases the endpoint and its memory (and, for shm, its /dev/shm region).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.fab.close()
	s.mu.Lock()
	s.clients = map[uint32]*serverClient{}
	s.byNonce = map[uint64]*serverClient{}
	s.mu.Unlock()
	return nil
}

// postRecv posts control receive buffer i. From a callback it makes one
// attempt; if the queue is full a goroutine keeps trying.
func (s *Server) postRecv(i int) error {
	return s.postRecvCtx(s.ctx, i)
}

func (s *Server) postRecvCtx(ctx context.Context, i int) error {
	return s.fab.recv(ctx, s.ctrlRecv, i*ctrlSize, ctrlSize, func(c completion) {
		if c.err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("rdma: control receive failed", "err", c.err)
			}
		} else {
			msg := append([]byte(nil), s.ctrlRecv.buf[i*ctrlSize:i*ctrlSize+int(min(c.len, ctrlSize))]...)
			s.onCtrl(msg)
		}
		if s.ctx.Err() != nil {
			return
		}
		err := s.postRecvCtx(nil, i)
		if errors.Is(err, errAgain) {
			s.mu.Lock()
			if !s.closed {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					if err := s.postRecv(i); err != nil && s.ctx.Err() == nil {
						s.log.Error("rdma: re-posting a control receive failed", "err", err)
					}
				}()
			}
			s.mu.Unlock()
		} else if err != nil && s.ctx.Err() == nil {
			s.log.Error("rdma: re-posting a control receive failed", "err", err)
		}
	})
}

// sendCtrl sends a control message from a free send buffer; it gives up
// (the peer retries) when none is free.
func (s *Server) sendCtrl(dest uint64, fill func([]byte) int) {
	s.sendCtrlTo(s.ctx, nil, dest, fill)
}

// sendCtrlWait sends and returns a channel closed when the send completed
// (nil if it was not sent).
func (s *Server) sendCtrlWait(ctx context.Context, dest uint64, fill func([]byte) int) <-chan struct{} {
	sent := make(chan struct{})
	var i int
	select {
	case i = <-s.sendFree:
	case <-ctx.Done():
		return nil
	}
	n := fill(s.ctrlSend.buf[i*ctrlSize : (i+1)*ctrlSize])
	err := s.fab.send(ctx, s.ctrlSend, i*ctrlSize, n, dest, func(completion) {
		s.sendFree <- i
		close(sent)
	})
	if err != nil {
		s.sendFree <- i
		return nil
	}
	return sent
}

// sendCtrlTo is sendCtrl counted against a connected client's ops; ctx
// bounds retries while the provider's queues are full (nil: one attempt,
// as callbacks must).
func (s *Server) sendCtrlTo(ctx context.Context, c *serverClient, dest uint64, fill func([]byte) int) {
	if c != nil && !c.ops.add() {
		return
	}
	done := func() {
		if c != nil {
			c.ops.done()
		}
	}
	var i int
	select {
	case i = <-s.sendFree:
	default:
		done()
		s.log.Warn("rdma: no free control send buffer; dropping a control message")
		return
	}
	buf := s.ctrlSend.buf[i*ctrlSize : (i+1)*ctrlSize]
	n := fill(buf)
	err := s.fab.send(ctx, s.ctrlSend, i*ctrlSize, n, dest, func(c completion) {
		if c.err != nil {
			s.log.Debug("rdma: control send failed", "err", c.err)
		}
		s.sendFree <- i
		done()
	})
	if err != nil {
		s.sendFree <- i
		done()
		s.log.Debug("rdma: control send failed", "err", err)
	}
}

// onCtrl runs on the progress goroutine: it must not block.
func (s *Server) onCtrl(b []byte) {
	m, err := decodeCtrl(b)
	if err != nil {
		s.log.Warn("rdma: bad control message", "err", err)
		return
	}
	switch m.kind {
	case ctrlHello:
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.accept(m.hello)
		}()
	case ctrlPing:
		if c := s.client(m.client); c != nil && c.nonce == m.a {
			c.lastSeen.Store(time.Now().UnixNano())
			recv := c.received.Load()
			s.sendCtrlTo(nil, c, c.addr, func(b []byte) int { return encodeSmall(b, ctrlPong, c.idx, m.a, recv) })
		}
	case ctrlBye:
		if c := s.client(m.client); c != nil && c.nonce == m.a {
			c.saidBye.Store(true)
			s.drop(c, "client closed")
		}
	case ctrlByeAck:
		s.mu.Lock()
		for _, c := range s.closing {
			if c.idx == m.client && c.nonce == m.a {
				c.byeAckOnce.Do(func() { close(c.byeAck) })
			}
		}
		s.mu.Unlock()
	case ctrlCancel:
		if c := s.client(m.client); c != nil && c.nonce == m.a {
			c.mu.Lock()
			if cancel := c.cancels[int(m.c)]; cancel != nil {
				cancel()
			}
			c.mu.Unlock()
		}
	}
}

func (s *Server) client(idx uint32) *serverClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[idx]
}

// accept handles a hello: it registers the client's mirror area and answers
// with a welcome. A repeated hello (the welcome was lost) gets the same
// welcome again.
func (s *Server) accept(h hello) {
	s.mu.Lock()
	c := s.byNonce[h.nonce]
	s.mu.Unlock()
	if c != nil {
		s.sendWelcome(c.addr, welcome{nonce: h.nonce, client: c.idx, areaBytes: uint64(c.size), areaBase: c.area.base, areaKey: c.area.key, shared: c.shared})
		return
	}
	addr, err := s.fab.insert(h.name)
	if err != nil {
		s.log.Warn("rdma: hello with an unusable address", "err", err)
		return
	}
	reject := func(code ps.Code, msg string) {
		s.log.Warn("rdma: rejecting client", "reason", msg)
		s.sendWelcome(addr, welcome{nonce: h.nonce, code: code, msg: msg})
	}
	size := int64(h.areaBytes)
	if size > s.cfg.MaxAreaBytes {
		size = s.cfg.MaxAreaBytes
	}
	size = size / pageSize * pageSize
	if size < minAreaBytes {
		reject(ps.CodeInvalidArgument, fmt.Sprintf("staging area of %d bytes is below the minimum %d", h.areaBytes, minAreaBytes))
		return
	}
	const access = fiAccessSend | fiAccessWrite | fiAccessRead | fiAccessRWrite | fiAccessRRead
	var area *region
	shared := false
	if h.fd > 0 && s.fab.isSHM() && uint64(size) <= h.areaBytes {
		buf, err := openSharedArea(h.pid, h.fd, int(size), h.nonce)
		if err == nil {
			area, err = s.fab.registerMapped(buf, access)
			shared = err == nil
		}
		if err != nil {
			s.log.Info("rdma: cannot map the client's staging area; using a private mirror", "pid", h.pid, "err", err)
		}
	}
	if area == nil {
		var err error
		if area, err = s.fab.register(int(size), access); err != nil {
			reject(ps.CodeUnavailable, err.Error())
			return
		}
	}
	c = &serverClient{byeAck: make(chan struct{}), nonce: h.nonce, addr: addr, area: area, shared: shared, size: int(size), rbase: h.areaBase, rkey: h.areaKey, cancels: map[int]context.CancelFunc{}}
	c.lastSeen.Store(time.Now().UnixNano())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fab.release(area)
		return
	}
	for i := uint32(1); i <= uint32(s.cfg.MaxClients); i++ {
		if s.clients[i] == nil {
			c.idx = i
			break
		}
	}
	if c.idx != 0 {
		s.clients[c.idx] = c
		s.byNonce[c.nonce] = c
	}
	s.mu.Unlock()
	if c.idx == 0 {
		s.fab.release(area)
		reject(ps.CodeUnavailable, fmt.Sprintf("server has its maximum of %d clients", s.cfg.MaxClients))
		return
	}
	s.log.Info("rdma: client connected", "client", c.idx, "area_bytes", size, "shared_area", shared)
	s.sendWelcome(addr, welcome{nonce: h.nonce, client: c.idx, areaBytes: uint64(size), areaBase: area.base, areaKey: area.key, shared: shared})
}

func (s *Server) sendWelcome(addr uint64, w welcome) {
	s.sendCtrl(addr, func(b []byte) int { return encodeWelcome(b, w) })
}

// drop forgets a client; its area is released once its requests finish.
func (s *Server) drop(c *serverClient, why string) {
	if !c.dead.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.clients[c.idx] == c {
		delete(s.clients, c.idx)
	}
	delete(s.byNonce, c.nonce)
	if s.reaped {
		// The server is past its last cleanup: Close releases everything.
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	c.mu.Lock()
	for _, cancel := range c.cancels {
		cancel()
	}
	c.mu.Unlock()
	s.log.Info("rdma: client dropped", "client", c.idx, "reason", why)
	go func() {
		defer s.wg.Done()
		if c.ops.closeAndWait(5 * time.Second) {
			if c.saidBye.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if sent := s.sendCtrlWait(ctx, c.addr, func(b []byte) int { return encodeSmall(b, ctrlByeAck, c.idx, c.nonce, 0) }); sent != nil {
					select {
					case <-sent:
					case <-ctx.Done():
					}
				}
				cancel()
			}
			s.fab.remove(c.addr)
			s.fab.release(c.area)
		} else {
			// An operation never completed: keep the address and the area
			// rather than free memory the provider may still touch. Both go
			// when the server closes.
			s.log.Warn("rdma: client operations still pending after drop; deferring cleanup to Close", "client", c.idx)
		}
	}()
}

func (s *Server) reaper() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.mu.Lock()
			all := make([]*serverClient, 0, len(s.clients))
			for _, c := range s.clients {
				all = append(all, c)
			}
			s.mu.Unlock()
			// Tell clients, so they fail fast instead of waiting for their
			// liveness timeout, and wait (bounded) for their
			// acknowledgements before the endpoint goes.
			s.mu.Lock()
			s.closing = all
			s.mu.Unlock()
			bctx, cancel := context.WithTimeout(context.Background(), time.Second)
			for _, c := range all {
				s.sendCtrlTo(bctx, c, c.addr, func(b []byte) int { return encodeSmall(b, ctrlBye, c.idx, c.nonce, 0) })
			}
			for _, c := range all {
				select {
				case <-c.byeAck:
				case <-bctx.Done():
				}
			}
			cancel()
			for _, c := range all {
				s.drop(c, "server closing")
			}
			s.mu.Lock()
			s.reaped = true
			s.mu.Unlock()
			return
		case <-t.C:
			limit := time.Now().Add(-s.cfg.IdleTimeout).UnixNano()
			s.mu.Lock()
			var idle []*serverClient
			for _, c := range s.clients {
				if c.lastSeen.Load() < limit {
					idle = append(idle, c)
				}
			}
			s.mu.Unlock()
			for _, c := range idle {
				s.drop(c, "idle")
			}
		}
	}
}

// onRemote runs on the progress goroutine when a client's request frame
// landed in its area; it hands the frame to a handler goroutine.
func (s *Server) onRemote(imm uint32, _ uint64) {
	idx := imm >> pageBits
	page := int(imm & (1<<pageBits - 1))
	s.mu.Lock()
	c := s.clients[idx]
	if c == nil || s.closed {
		s.mu.Unlock()
		s.log.Warn("rdma: request from an unknown client", "client", idx)
		return
	}
	if !c.ops.add() {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	c.received.Add(1)
	c.lastSeen.Store(time.Now().UnixNano())
	go func() {
		defer s.wg.Done()
		defer c.ops.done()
		s.handle(c, page)
	}()
}

// handle serves one request frame at page of c's area and writes the
// response frame over it, then into the client's area at the same offset.
func (s *Server) handle(c *serverClient, page int) {
	off := page * pageSize
	if off+pageSize > c.size {
		s.log.Warn("rdma: request page outside the staging area", "client", c.idx, "page", page)
		s.drop(c, "slot overrun")
		return
	}
	buf := c.area.buf[off:c.size]
	h, err := readFrame(buf, len(buf))
	room := h.room
	if room < pageSize {
		room = pageSize
	}
	buf = buf[:room]
	var kind uint32
	var body int
	var g gap
	if err != nil {
		s.log.Warn("rdma: torn or corrupt request frame", "client", c.idx, "err", err)
		kind, body = respTorn, 0
	} else {
		ctx, cancel := context.WithCancel(s.ctx)
		if h.timeout > 0 {
			ctx, cancel = context.WithTimeout(s.ctx, time.Duration(h.timeout))
		}
		c.mu.Lock()
		c.cancels[page] = cancel
		c.mu.Unlock()
		var hold bool
		kind, body, g, hold = s.serve(ctx, h, buf, !c.shared && s.fab.zeroCopy())
		if hold {
			// The push's gradients were views of these pages, and it failed
			// where the service may have been forwarding them (to replicas):
			// a sender cut off by the context, such as a gRPC stream being
			// reset, can still be reading them. The client reuses the pages
			// once the response lands, so hold it back a while.
			t := time.NewTimer(s.holdFailed)
			select {
			case <-t.C:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
		if s.ctx.Err() != nil {
			kind, body, g = respErr, encodeErr(buf[headerSize:], ps.CodeUnavailable, "rdma: server closing"), gap{}
		}
		c.mu.Lock()
		delete(c.cancels, page)
		c.mu.Unlock()
		cancel()
	}
	n := putFrame(buf, frameHeader{seq: h.seq, kind: kind, body: body, room: room})
	if s.testHook != nil {
		s.testHook(buf[:n])
	}
	if c.dead.Load() || !c.ops.add() {
		return
	}
	onWritten := func(comp completion) {
		c.ops.done()
		if comp.err != nil {
			s.drop(c, "response write failed: "+comp.err.Error())
		}
	}
	switch {
	case c.shared:
		// The response is in the client's area already: the write is the
		// notice (see sharedarea_linux.go).
		err = s.fab.writedata(s.ctx, c.area, off, s.fab.writeLen(n, room, true), uint32(page), c.addr, c.rbase+uint64(off), c.rkey, onWritten)
	case g.data != nil:
		err = s.fab.writedataGo(s.ctx, c.area, off, headerSize+g.off, g.data, n, uint32(page), c.addr, c.rbase+uint64(off), c.rkey, onWritten)
	default:
		err = s.fab.writedata(s.ctx, c.area, off, s.fab.writeLen(n, room, false), uint32(page), c.addr, c.rbase+uint64(off), c.rkey, onWritten)
	}
	if err != nil {
		c.ops.done()
		if s.ctx.Err() == nil {
			s.drop(c, "response write failed: "+err.Error())
		}
	}
}

// serve decodes the request in buf, calls the service and encodes the
// response body into buf, returning its kind and length, the part sent from
// Go memory, and whether the response must be held back (see handle).
func (s *Server) serve(ctx context.Context, h frameHeader, buf []byte, zeroCopy bool) (uint32, int, gap, bool) {
	in := buf[headerSize : headerSize+h.body]
	out := buf[headerSize:]
	fail := func(err error) (uint32, int, gap, bool) {
		code, msg := ps.CodeOf(err), err.Error()
		if frameLen(errSize(code, msg)) > len(buf) {
			msg = msg[:max(0, len(buf)-headerSize-trailerSize-8-len(code)-8)]
		}
		return respErr, encodeErr(out, code, msg), gap{}, false
	}
	need := func(n int) (uint32, int, gap, bool) {
		w := writer{b: out}
		w.u64(uint64(roundPage(frameLen(n))))
		return respNeed, w.n, gap{}, false
	}
	switch h.kind {
	case frameCreate:
		req, err := decodeCreate(in)
		if err != nil {
			return fail(err)
		}
		resp, err := s.svc.Create(ctx, req)
		if err != nil {
			return fail(err)
		}
		if frameLen(versionsSize(resp.Versions)) > len(buf) {
			return need(versionsSize(resp.Versions))
		}
		return respOK, encodeVersions(out, resp.Versions), gap{}, false
	case framePull:
		req, err := decodePull(in)
		if err != nil {
			return fail(err)
		}
		// The service writes the values straight into this frame, after
		// the table (decodePull copied all it needs out of the request).
		a := &frameAlloc{body: out[:len(buf)-headerSize-trailerSize], start: pullTableSize(req)}
		a.next = a.start
		req.Alloc = a.alloc
		resp, err := s.svc.Pull(ctx, req)
		if err != nil {
			return fail(err)
		}
		kind, n, g, fits := pullResp(a, resp, zeroCopy)
		if !fits {
			return need(n)
		}
		return kind, n, g, false
	case frameProbe:
		if h.body != 0 {
			return fail(ps.Errorf(ps.ErrInvalidArgument, "rdma: probe with a body"))
		}
		return respOK, 0, gap{}, false
	case framePush:
		req, err := decodePushAlias(in, s.alias)
		if err != nil {
			return fail(err)
		}
		resp, err := s.svc.Push(ctx, req)
		if err != nil {
			kind, n, g, _ := fail(err)
			return kind, n, g, s.alias && mayStillRead(err)
		}
		if frameLen(versionsSize(resp.Versions)) > len(buf) {
			return need(versionsSize(resp.Versions))
		}
		return respOK, encodeVersions(out, resp.Versions), gap{}, false
	}
	return fail(ps.Errorf(ps.ErrInvalidArgument, "rdma: unknown request kind %d", h.kind))
}

// aliasHold is how long the response to an aliased push that failed past
// validation is held back: far longer than a gRPC stream takes to drop its
// queued frames once its context ends (one frame, microseconds).
const aliasHold = 250 * time.Millisecond

// mayStillRead reports whether a failed Push may have handed its gradients
// to something that outlives the call: every failure but ps.Server's
// validation errors, which it returns before forwarding anything.
func mayStillRead(err error) bool {
	switch ps.CodeOf(err) {
	case ps.CodeUnknownVariable, ps.CodeSpecMismatch, ps.CodeShapeMismatch, ps.CodeNonFinite,
		ps.CodeStale, ps.CodeInvalidArgument, ps.CodeTooLarge:
		return false
	}
	return true
}

// frameAlloc is a pull's PullRequest.Alloc: it hands out the body space of
// the response frame after the table, in order, each part's values
// aligned (alignData); past the frame's end it returns fresh arrays and
// counts what the frame lacked.
type frameAlloc struct {
	body        []byte // the frame's body space
	start, next int    // [start, next) is handed out
}

func (a *frameAlloc) alloc(n int) []float32 {
	off := alignData(a.next)
	if n <= 0 || off+4*n > len(a.body) {
		return make([]float32, max(n, 0))
	}
	a.next = off + 4*n
	return unsafe.Slice((*float32)(unsafe.Pointer(&a.body[off])), n)[:n:n]
}

// at returns the body offset of v when frameAlloc handed it out.
func (a *frameAlloc) at(v []float32) (int, bool) {
	if len(v) == 0 || len(a.body) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(&a.body[0]))
	p := uintptr(unsafe.Pointer(&v[0]))
	if p < base+uintptr(a.start) || p+uintptr(4*len(v)) > base+uintptr(a.next) {
		return 0, false
	}
	return int(p - base), true
}

// pullResp completes the response body of a pull whose values the service
// wrote into a's frame where it could: it copies the others after them
// (or, the largest, leaves it to be sent from Go memory) and writes the
// table. fits is false, and n the body size needed, when the frame is too
// small. zeroCopy allows sending from Go memory.
func pullResp(a *frameAlloc, resp *ps.PullResponse, zeroCopy bool) (kind uint32, n int, g gap, fits bool) {
	table := respTableSize(resp)
	if table != a.start {
		// The service answered other parts than asked: values written
		// into the frame may lie under the table. Lay it out afresh.
		for i := range resp.Parts {
			if _, ok := a.at(resp.Parts[i].Values); ok {
				resp.Parts[i].Values = slices.Clone(resp.Parts[i].Values)
			}
		}
		a.next = a.start
	}
	loc := make([]respPart, len(resp.Parts))
	end := max(a.next, table)
	var rest []int // parts whose values are elsewhere
	for i, p := range resp.Parts {
		loc[i] = respPart{count: len(p.Values), isNil: p.Values == nil}
		if off, ok := a.at(p.Values); ok {
			loc[i].off = off
		} else if len(p.Values) > 0 {
			rest = append(rest, i)
		}
	}
	skip := -1
	if zeroCopy {
		skip = pickGap(len(rest), func(j int) int { return 4 * len(resp.Parts[rest[j]].Values) })
		if skip >= 0 {
			skip = rest[skip]
		}
	}
	place := func(i int) {
		loc[i].off = alignData(end)
		end = loc[i].off + 4*loc[i].count
	}
	for _, i := range rest {
		if i != skip {
			place(i)
		}
	}
	if skip >= 0 {
		place(skip)
	}
	if frameLen(end) > len(a.body)+headerSize+trailerSize {
		return 0, end, gap{}, false
	}
	for _, i := range rest {
		if i == skip {
			g = gap{off: loc[i].off, data: f32bytes(resp.Parts[i].Values)}
			continue
		}
		copy(a.body[loc[i].off:], f32bytes(resp.Parts[i].Values))
	}
	putPullTable(a.body, resp, loc)
	zeroGaps(a.body[:end], table, loc)
	return respOK, end, g, true
}

// isPSServer reports whether svc is a *ps.Server, whose Push keeps no
// reference to the request's gradients once it returned, or wraps one
// (ps.ServerOf: a wrapper that declares Unwrap forwards each call and
// keeps nothing of it, as psd's metrics wrapper does).
func isPSServer(svc ps.Service) bool {
	_, ok := ps.ServerOf(svc)
	return ok
}

// inflight counts requests being served (tests).
func (s *Server) inflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.clients {
		c.mu.Lock()
		n += len(c.cancels)
		c.mu.Unlock()
	}
	return n
}

// opCount counts operations in flight; once closed it admits no more, and
// closeAndWait waits for the count to reach zero.
type opCount struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

func (o *opCount) add() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.n++
	return true
}

func (o *opCount) done() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n--
	if o.n == 0 && o.zero != nil {
		close(o.zero)
		o.zero = nil
	}
}

// closeAndWait reports whether the count reached zero within d.
func (o *opCount) closeAndWait(d time.Duration) bool {
	o.mu.Lock()
	o.closed = true
	if o.n == 0 {
		o.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	o.zero = ch
	o.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}
