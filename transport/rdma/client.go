//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowps/flowps/ps"
)

const (
	clientRecvs = 8
	clientSends = 8
	maxHints    = 4096
	// slowestRate is the transfer rate (bytes/s) below which the liveness
	// checks give up on a peer: large calls in flight extend DeadAfter by
	// their size at this rate, since a provider may copy a whole message
	// inside one progress call, during which its side answers no pings.
	slowestRate = 32 << 20
)

// Dialer connects to rdma Servers. Each Dial opens its own endpoint,
// completion queue and progress goroutine.
type Dialer struct {
	cfg DialerConfig
}

// NewDialer returns a ps.Dialer over libfabric. cfg is checked on Dial.
func NewDialer(cfg DialerConfig) ps.Dialer { return &Dialer{cfg: cfg} }

// conn is one connection to a server: a ps.Service.
type conn struct {
	cfg  DialerConfig
	log  *slog.Logger
	addr string
	fab  *fabric

	area *region
	ctrl *region // clientRecvs receive buffers, then clientSends send buffers
	free chan int

	server uint64
	idx    uint32
	nonce  uint64
	size   int
	rbase  uint64
	rkey   uint64
	ext    *extents
	// shared says the server maps this connection's area as its mirror
	// (shm): frames are written in place and each write carries only the
	// frame's front word as the notice.
	shared bool

	seq       atomic.Uint64
	lastHeard atomic.Int64
	// sent counts request frames posted; serverReceived is the server's
	// count of frames that landed, as of lastPong. A request the server
	// has not received long after it was sent was lost (e.g. the provider
	// rejected the region key without telling us).
	sent           atomic.Uint64
	delivered      atomic.Uint64 // request writes the provider reported done
	pendingBytes   atomic.Int64  // room of the calls in flight
	serverReceived atomic.Uint64
	lastPong       atomic.Int64
	welcome        chan welcome

	mu      sync.Mutex
	pending map[int]*call
	hints   map[string]int

	dead     chan struct{}
	deadErr  error
	deadOnce sync.Once

	stop      chan struct{}
	pingDone  chan struct{}
	closeOnce sync.Once

	// The goodbye handshake: whoever closes first sends ctrlBye and waits
	// (bounded) for ctrlByeAck, so neither side sends to an endpoint that is
	// gone. (libfabric's shm reaches a peer in the same process through
	// that peer's own mapping, which vanishes when it closes.)
	serverBye  atomic.Bool
	byeAck     chan struct{}
	byeAckOnce sync.Once
	bg         sync.WaitGroup
}

// call is one request in flight, keyed by its first page.
type call struct {
	page, npages int
	sentIndex    uint64
	sentAt       int64
	done         chan struct{}
	arrived      bool
	abandoned    bool
}

// Dial connects to a server address made by FormatAddr.
func (d *Dialer) Dial(ctx context.Context, addr string) (ps.Service, error) {
	if err := d.cfg.Validate(); err != nil {
		return nil, err
	}
	cfg := d.cfg.withDefaults()
	prov, name, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if cfg.Provider != "" && cfg.Provider != prov {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "rdma: address %q is for provider %s, dialer is configured for %s", addr, prov, cfg.Provider)
	}
	if err := checkMemlock(prov, cfg.AreaBytes); err != nil {
		return nil, fmt.Errorf("rdma: dial %s: %w", addr, err)
	}
	node, service := cfg.Node, "0"
	if prov == ProviderSHM {
		node, service = uniqueSHMName("trainer"), ""
	}
	fab, err := openFabric(prov, node, service, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("rdma: dial %s: %w", addr, err)
	}
	c := &conn{
		cfg:      cfg,
		log:      cfg.Logger.With("transport", "rdma", "peer", addr),
		addr:     addr,
		fab:      fab,
		free:     make(chan int, clientSends),
		welcome:  make(chan welcome, 1),
		pending:  make(map[int]*call),
		hints:    make(map[string]int),
		dead:     make(chan struct{}),
		stop:     make(chan struct{}),
		pingDone: make(chan struct{}),
		byeAck:   make(chan struct{}),
	}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	c.nonce = binary.LittleEndian.Uint64(nb[:])
	if err := c.handshake(ctx, name); err != nil {
		c.fail(err)
		c.bg.Wait()
		fab.close()
		if ps.CodeOf(err) == ps.CodeInternal {
			// A fabric error (e.g. shm: no such peer region): the peer is
			// not there to talk to.
			return nil, fmt.Errorf("rdma: dial %s: %w: %w", addr, ps.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("rdma: dial %s: %w", addr, err)
	}
	c.lastHeard.Store(time.Now().UnixNano())
	go c.pinger()
	return c, nil
}

func (c *conn) handshake(ctx context.Context, serverName []byte) error {
	var err error
	size := int(c.cfg.AreaBytes) / pageSize * pageSize
	const access = fiAccessSend | fiAccessWrite | fiAccessRead | fiAccessRWrite | fiAccessRRead
	memfd := -1
	if c.fab.isSHM() && !c.cfg.NoSharedArea {
		buf, fd, err := newSharedArea(size, c.nonce)
		if err != nil {
			return err
		}
		memfd = fd
		// The server maps it during the handshake; the mapping outlives
		// the descriptor.
		defer unix.Close(memfd)
		if c.area, err = c.fab.registerMapped(buf, access); err != nil {
			return err
		}
	} else if c.area, err = c.fab.register(size, access); err != nil {
		return err
	}
	if c.ctrl, err = c.fab.register((clientRecvs+clientSends)*ctrlSize, fiAccessSend|fiAccessRecv); err != nil {
		return err
	}
	for i := 0; i < clientSends; i++ {
		c.free <- clientRecvs + i
	}
	c.fab.onRemote = c.onRemote
	c.fab.busy = func() bool { return c.pendingBytes.Load() > 0 }
	c.fab.onError = func(err error) { c.fail(err) }
	c.fab.start()
	for i := 0; i < clientRecvs; i++ {
		if err := c.postRecv(i); err != nil {
			return err
		}
	}
	if c.server, err = c.fab.insert(serverName); err != nil {
		return err
	}
	myName, err := c.fab.name()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	h := hello{nonce: c.nonce, areaBytes: uint64(size), areaBase: c.area.base, areaKey: c.area.key, name: myName}
	if memfd >= 0 {
		h.pid, h.fd = uint32(os.Getpid()), uint32(memfd)
	}
	retry := time.NewTicker(200 * time.Millisecond)
	defer retry.Stop()
	for {
		if err := c.sendCtrl(ctx, func(b []byte) int { return encodeHello(b, h) }); err != nil {
			return fmt.Errorf("send hello: %w: %w", ps.ErrUnavailable, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no welcome from the server: %w", ps.ErrUnavailable, ctx.Err())
		case <-c.dead:
			return c.deadErr
		case w := <-c.welcome:
			if w.code != ps.CodeOK {
				return fmt.Errorf("server refused the connection: %w", ps.ErrorFromCode(w.code, w.msg))
			}
			if w.areaBytes < minAreaBytes || w.areaBytes > uint64(size) || w.areaBytes%pageSize != 0 {
				return ps.Errorf(ps.ErrInvalidArgument, "rdma: server granted a staging area of %d bytes (asked %d)", w.areaBytes, size)
			}
			c.idx, c.size, c.rbase, c.rkey = w.client, int(w.areaBytes), w.areaBase, w.areaKey
			c.shared = w.shared && memfd >= 0
			c.ext = newExtents(c.size/pageSize, c.cfg.MaxInflight)
			// One probe write proves the keys and the data path before the
			// connection is handed out.
			if err := c.roundTrip(ctx, "probe", frameProbe, 0, func([]byte) gap { return gap{} }, 0, "", func(b []byte) error { return nil }); err != nil {
				return fmt.Errorf("%w: probe write: %w", ps.ErrUnavailable, err)
			}
			return nil
		case <-retry.C:
		}
	}
}

func (c *conn) postRecv(i int) error { return c.postRecvCtx(context.Background(), i) }

// postRecvCtx posts control receive buffer i; from its callback it makes
// one attempt and leaves retries to a goroutine, as callbacks must.
func (c *conn) postRecvCtx(ctx context.Context, i int) error {
	return c.fab.recv(ctx, c.ctrl, i*ctrlSize, ctrlSize, func(comp completion) {
		if comp.err != nil {
			c.fail(comp.err)
			return
		}
		m, err := decodeCtrl(c.ctrl.buf[i*ctrlSize : i*ctrlSize+int(min(comp.len, ctrlSize))])
		if err == nil {
			c.lastHeard.Store(time.Now().UnixNano())
			switch {
			case m.kind == ctrlWelcome && m.welcome.nonce == c.nonce:
				select {
				case c.welcome <- m.welcome:
				default:
				}
			case m.kind == ctrlPong && m.a == c.nonce:
				c.serverReceived.Store(m.c)
				c.lastPong.Store(time.Now().UnixNano())
			case m.kind == ctrlBye && m.a == c.nonce:
				c.serverBye.Store(true)
				c.fail(errors.New("the server closed the connection"))
				// Acknowledge once nothing else will be sent, so the server
				// may close its endpoint safely.
				c.bg.Add(1)
				go func() {
					defer c.bg.Done()
					<-c.pingDone
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					if sent, err := c.sendCtrlWait(ctx, true, func(b []byte) int { return encodeSmall(b, ctrlByeAck, c.idx, c.nonce, 0) }); err == nil {
						select {
						case <-sent:
						case <-ctx.Done():
						}
					}
				}()
			case m.kind == ctrlByeAck && m.a == c.nonce:
				c.byeAckOnce.Do(func() { close(c.byeAck) })
			}
		} else {
			c.log.Warn("rdma: bad control message", "err", err)
		}
		err = c.postRecvCtx(nil, i)
		if errors.Is(err, errAgain) {
			c.bg.Add(1)
			go func() {
				defer c.bg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DeadAfter)
				defer cancel()
				if err := c.postRecvCtx(ctx, i); err != nil && !errors.Is(err, errFabricClosed) {
					c.fail(err)
				}
			}()
		} else if err != nil && !errors.Is(err, errFabricClosed) {
			c.fail(err)
		}
	})
}

// sendCtrl sends a control message from a free send buffer, waiting for
// one if all are in flight.
func (c *conn) sendCtrl(ctx context.Context, fill func([]byte) int) error {
	_, err := c.sendCtrlWait(ctx, false, fill)
	return err
}

// sendCtrlWait is sendCtrl that may send on a dead connection (the goodbye
// handshake) and returns a channel closed when the send completed.
func (c *conn) sendCtrlWait(ctx context.Context, evenIfDead bool, fill func([]byte) int) (<-chan struct{}, error) {
	var dead <-chan struct{} = c.dead
	if evenIfDead {
		dead = nil
	}
	var i int
	select {
	case i = <-c.free:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-dead:
		return nil, c.deadErr
	}
	n := fill(c.ctrl.buf[i*ctrlSize : (i+1)*ctrlSize])
	sent := make(chan struct{})
	err := c.fab.send(ctx, c.ctrl, i*ctrlSize, n, c.server, func(comp completion) {
		c.free <- i
		close(sent)
		if comp.err != nil {
			c.fail(comp.err)
		}
	})
	if err != nil {
		c.free <- i
		return nil, err
	}
	return sent, nil
}

// fail marks the connection dead: every waiting call returns
// ps.ErrUnavailable with the cause.
func (c *conn) fail(cause error) {
	c.deadOnce.Do(func() {
		if errors.Is(cause, ps.ErrClosed) {
			c.deadErr = cause
		} else {
			c.deadErr = fmt.Errorf("rdma: connection to %s lost: %w: %v", c.addr, ps.ErrUnavailable, cause)
		}
		c.log.Warn("rdma: connection lost", "err", cause)
		close(c.dead)
	})
}

func (c *conn) pinger() {
	defer close(c.pingDone)
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.dead:
			return
		case <-t.C:
		}
		if quiet := time.Since(time.Unix(0, c.lastHeard.Load())); quiet > c.cfg.DeadAfter+transferTime(c.pendingBytes.Load()) {
			c.fail(fmt.Errorf("no word from the server for %v", quiet.Round(time.Millisecond)))
			return
		}
		if lost := c.lostRequest(); lost != nil {
			c.fail(lost)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PingInterval)
		_ = c.sendCtrl(ctx, func(b []byte) int { return encodeSmall(b, ctrlPing, c.idx, c.nonce, 0) })
		cancel()
	}
}

// lostRequest finds a request sent more than DeadAfter before the latest
// pong that the server, as of that pong, had still not received.
func (c *conn) lostRequest() error {
	pong := c.lastPong.Load()
	recv := c.serverReceived.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.pending {
		if cl.sentIndex > recv && cl.sentAt != 0 && pong-cl.sentAt > int64(c.cfg.DeadAfter+transferTime(int64(cl.npages*pageSize))) {
			return fmt.Errorf("request %d never reached the server (%d received): the write was lost or its region key rejected", cl.sentIndex, recv)
		}
	}
	return nil
}

// transferTime is how long n bytes may take at slowestRate.
func transferTime(n int64) time.Duration {
	return time.Duration(float64(n) / slowestRate * float64(time.Second))
}

// onRemote runs on the progress goroutine: a response frame landed.
func (c *conn) onRemote(imm uint32, _ uint64) {
	c.lastHeard.Store(time.Now().UnixNano())
	page := int(imm & (1<<pageBits - 1))
	c.mu.Lock()
	cl := c.pending[page]
	if cl == nil {
		c.mu.Unlock()
		c.log.Warn("rdma: response for no pending request", "page", page)
		return
	}
	delete(c.pending, page)
	cl.arrived = true
	abandoned := cl.abandoned
	c.mu.Unlock()
	c.pendingBytes.Add(-int64(cl.npages * pageSize))
	if abandoned {
		c.ext.release(cl.page, cl.npages)
		return
	}
	close(cl.done)
}

// roundTrip sends one request frame and decodes its response. encode
// writes exactly bodyLen bytes; room is the expected response frame size.
//
// encode may leave one large tensor out of the staging area (a gap); it is
// then sent from the caller's memory, and roundTrip returns only once the
// provider is done reading it.
func (c *conn) roundTrip(ctx context.Context, what string, kind uint32, bodyLen int, encode func([]byte) gap, room int, hint string, decode func([]byte) error) error {
	torn, grown := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("rdma: %s to %s: %w", what, c.addr, err)
		}
		select {
		case <-c.dead:
			return c.deadErr
		default:
		}
		room = roundPage(max(room, frameLen(bodyLen)))
		if c.fab.isSHM() {
			room = max(room, roundPage(shmMinWrite))
		}
		if room > c.size {
			return ps.Errorf(ps.ErrTooLarge, "rdma: %s to %s: a %d-byte frame exceeds the %d-byte staging area", what, c.addr, room, c.size)
		}
		npages := room / pageSize
		page, err := c.ext.alloc(ctx, npages)
		if err != nil {
			if errors.Is(err, ps.ErrTooLarge) {
				return err
			}
			return fmt.Errorf("rdma: %s to %s: waiting for staging space: %w", what, c.addr, err)
		}
		off := page * pageSize
		buf := c.area.buf[off : off+room]
		g := encode(buf[headerSize : headerSize+bodyLen])
		seq := c.seq.Add(1)
		var timeout int64
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(int64(time.Until(dl)), 1)
		}
		n := putFrame(buf, frameHeader{seq: seq, kind: kind, body: bodyLen, room: room, timeout: timeout})
		cl := &call{page: page, npages: npages, done: make(chan struct{})}
		c.mu.Lock()
		c.pending[page] = cl
		c.mu.Unlock()
		c.pendingBytes.Add(int64(room))
		imm := c.idx<<pageBits | uint32(page)
		c.mu.Lock()
		cl.sentIndex = c.sent.Add(1)
		cl.sentAt = time.Now().UnixNano()
		c.mu.Unlock()
		written := make(chan struct{})
		onWritten := func(comp completion) {
			defer close(written)
			if comp.err != nil {
				c.fail(fmt.Errorf("%s write: %w", what, comp.err))
				return
			}
			c.delivered.Add(1)
		}
		switch {
		case c.shared:
			// The frame is in the server's mirror already: the write is
			// the notice, rewriting the start of the frame with itself.
			err = c.fab.writedata(ctx, c.area, off, c.fab.writeLen(n, room, true), imm, c.server, c.rbase+uint64(off), c.rkey, onWritten)
		case g.data != nil:
			err = c.fab.writedataGo(ctx, c.area, off, headerSize+g.off, g.data, n, imm, c.server, c.rbase+uint64(off), c.rkey, onWritten)
		default:
			err = c.fab.writedata(ctx, c.area, off, c.fab.writeLen(n, room, false), imm, c.server, c.rbase+uint64(off), c.rkey, onWritten)
		}
		// The caller may reuse its tensor once this returns: a write from it
		// must have finished (or the connection be dead).
		waitWritten := func() {
			if g.data != nil {
				select {
				case <-written:
				case <-c.dead:
				}
			}
		}
		if err != nil {
			c.mu.Lock()
			delete(c.pending, page)
			c.mu.Unlock()
			c.pendingBytes.Add(-int64(room))
			c.ext.release(page, npages)
			if ctx.Err() != nil {
				return fmt.Errorf("rdma: %s to %s: %w", what, c.addr, ctx.Err())
			}
			c.fail(err)
			return c.deadErr
		}
		select {
		case <-cl.done:
			waitWritten()
		case <-c.dead:
			return c.deadErr
		case <-ctx.Done():
			waitWritten()
			c.mu.Lock()
			arrived := cl.arrived
			cl.abandoned = true
			c.mu.Unlock()
			if arrived {
				c.ext.release(page, npages)
			} else {
				// The server may still write into these pages: they stay
				// reserved until its response lands. Ask it to stop.
				cctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = c.sendCtrl(cctx, func(b []byte) int { return encodeSmall(b, ctrlCancel, c.idx, c.nonce, uint64(page)) })
				cancel()
			}
			return fmt.Errorf("rdma: %s to %s: %w", what, c.addr, ctx.Err())
		}
		h, ferr := readFrame(buf, room)
		if ferr == nil && h.seq != seq {
			ferr = fmt.Errorf("%w: response version %d, want %d", ErrTorn, h.seq, seq)
		}
		if ferr == nil && h.kind == respTorn {
			ferr = fmt.Errorf("%w: the server saw the request torn", ErrTorn)
		}
		if ferr != nil {
			c.ext.release(page, npages)
			if !errors.Is(ferr, ErrTorn) || torn >= c.cfg.Retries {
				return fmt.Errorf("rdma: %s to %s: %w: %v", what, c.addr, ps.ErrUnavailable, ferr)
			}
			torn++
			c.log.Debug("rdma: torn frame, sending again", "op", what, "err", ferr)
			continue
		}
		body := buf[headerSize : headerSize+h.body]
		switch h.kind {
		case respOK:
			err = decode(body)
			c.ext.release(page, npages)
			if err != nil {
				return fmt.Errorf("rdma: %s from %s: %w", what, c.addr, err)
			}
			return nil
		case respErr:
			err = decodeErr(body)
			c.ext.release(page, npages)
			return err
		case respNeed:
			r := reader{b: body}
			need := int(r.u64())
			c.ext.release(page, npages)
			if r.done() != nil || need <= room || grown >= 2 {
				return fmt.Errorf("rdma: %s to %s: %w: bad response-size answer", what, c.addr, ps.ErrUnavailable)
			}
			if need > c.size {
				return ps.Errorf(ps.ErrTooLarge, "rdma: %s from %s: the %d-byte response exceeds the %d-byte staging area", what, c.addr, need, c.size)
			}
			grown++
			room = need
			if hint != "" {
				c.mu.Lock()
				if len(c.hints) >= maxHints {
					clear(c.hints)
				}
				c.hints[hint] = need
				c.mu.Unlock()
			}
			continue
		default:
			c.ext.release(page, npages)
			return fmt.Errorf("rdma: %s to %s: %w: unknown response kind %#x", what, c.addr, ps.ErrUnavailable, h.kind)
		}
	}
}

// Create implements ps.Service.
func (c *conn) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	body, err := createBody(req)
	if err != nil {
		return nil, err
	}
	resp := &ps.CreateResponse{}
	err = c.roundTrip(ctx, "create "+req.Spec.Name, frameCreate, len(body), func(b []byte) gap { copy(b, body); return gap{} },
		frameLen(versionsSize(make([]int64, len(req.Parts)))+maxErrMsg), "", func(b []byte) (err error) {
			resp.Versions, err = decodeVersions(b)
			return err
		})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// pullHint names a pull's shape, so the response size learnt once is
// reserved up front next time.
func pullHint(req *ps.PullRequest) string {
	var b strings.Builder
	for _, p := range req.Parts {
		b.WriteString(p.Key.Var)
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(p.Key.Index))
		b.WriteByte(':')
		if p.Rows != nil {
			b.WriteString(strconv.Itoa(len(p.Rows)))
		}
		b.WriteByte(';')
	}
	return b.String()
}

// Pull implements ps.Service.
func (c *conn) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	hint := pullHint(req)
	c.mu.Lock()
	room := c.hints[hint]
	c.mu.Unlock()
	if room == 0 {
		room = 64 << 10
	}
	var resp *ps.PullResponse
	err := c.roundTrip(ctx, "pull", framePull, pullSize(req), func(b []byte) gap { encodePull(b, req); return gap{} },
		room, hint, func(b []byte) (err error) {
			resp, err = decodePullRespInto(b, req)
			return err
		})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Push implements ps.Service.
func (c *conn) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	resp := &ps.PushResponse{}
	skip := -1
	if c.fab.zeroCopy() && !c.shared {
		skip = pickGap(len(req.Parts), func(i int) int { return 4 * len(req.Parts[i].Grad) })
	}
	err := c.roundTrip(ctx, "push", framePush, pushSize(req), func(b []byte) gap {
		_, g := encodePushGap(b, req, skip)
		return g
	},
		frameLen(versionsSize(make([]int64, len(req.Parts)))+maxErrMsg), "", func(b []byte) (err error) {
			resp.Versions, err = decodeVersions(b)
			return err
		})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Close says goodbye to the server and releases the endpoint. Calls in
// flight fail with ps.ErrClosed.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.pingDone
		if !c.serverBye.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			sent, err := c.sendCtrlWait(ctx, true, func(b []byte) int { return encodeSmall(b, ctrlBye, c.idx, c.nonce, 0) })
			if err == nil {
				_ = sent
				select {
				case <-c.byeAck:
				case <-ctx.Done():
				}
			}
			cancel()
		}
		c.fail(fmt.Errorf("rdma: connection to %s: %w", c.addr, ps.ErrClosed))
		c.bg.Wait()
		c.fab.close()
	})
	return nil
}
