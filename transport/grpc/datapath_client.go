package grpctransport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxIdleDataConns bounds the idle data-path connections kept per server.
const maxIdleDataConns = 8

// dataRetry is how long a client waits before asking again for a data path
// it could not learn, and first waits to dial again one it could not
// reach; the wait doubles with every failed dial, up to dataRetryMax.
const (
	dataRetry    = 2 * time.Second
	dataRetryMax = time.Minute
)

// dataDialTimeout bounds a dial on the call's path, to a data path that
// was reachable; a probe of one that never was, or failed, runs in the
// background with dataProbeTimeout while calls use gRPC, so that a port a
// firewall drops never stalls them.
const (
	dataDialTimeout  = 2 * time.Second
	dataProbeTimeout = 10 * time.Second
)

// dataPeer is the data path to one server, shared by every Service dialed
// to that address: what the server announced, and idle connections.
type dataPeer struct {
	d    *Dialer
	addr string // the gRPC address dialed; the data path is on its host

	ctx    context.Context // probes' parent, cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // probes

	mu        sync.Mutex
	known     bool   // the server answered DataPath (or we gave up asking)
	asking    bool   // a DataPath call is in flight
	target    string // HOST:PORT of the data path, or localPrefix and a Unix socket; "" for none
	tcp       string // HOST:PORT, the fallback of a Unix target
	noLocal   bool   // the server's Unix socket could not be reached: use TCP
	replicate bool   // the data path carries Replicate calls too
	reachable bool   // the last dial to target succeeded
	probing   bool   // a background dial is in flight
	backoff   time.Duration
	retryAt   time.Time // when a failed lookup or dial may be retried
	idle      []*dataConn
	closed    bool
}

func newDataPeer(d *Dialer, addr string) *dataPeer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dataPeer{d: d, addr: addr, ctx: ctx, cancel: cancel}
}

// dataConn is one connection of the data path.
type dataConn struct {
	c  *watchedConn
	br *bufio.Reader
}

// watchedConn gives every read a deadline of timeout from its start (when
// timeout > 0): a response that keeps arriving, heartbeats included, keeps
// the call alive; a server silent for timeout fails it. aborted, set when
// the call's context ends, pins the deadline in the past.
type watchedConn struct {
	net.Conn
	timeout time.Duration
	beat    uint16 // heartbeat seconds asked of the server (0: none)
	aborted atomic.Bool
}

func (w *watchedConn) Read(b []byte) (int, error) {
	if w.timeout > 0 {
		w.Conn.SetReadDeadline(time.Now().Add(w.timeout))
		if w.aborted.Load() { // abort ran between the check and here
			w.Conn.SetReadDeadline(aLongTimeAgo)
		}
	}
	return w.Conn.Read(b)
}

// abort makes the connection's blocked and later I/O fail at once.
func (w *watchedConn) abort() {
	w.aborted.Store(true)
	w.Conn.SetDeadline(aLongTimeAgo)
}

// get returns a connection to the data path, or nil when calls should go
// over gRPC (no data path, not learned yet, not reachable yet or any more,
// or turned off).
func (dp *dataPeer) get(ctx context.Context, p *peer) *dataConn {
	dp.mu.Lock()
	if dp.closed {
		dp.mu.Unlock()
		return nil
	}
	if n := len(dp.idle); n > 0 {
		dc := dp.idle[n-1]
		dp.idle = dp.idle[:n-1]
		dp.mu.Unlock()
		return dc
	}
	switch {
	case dp.asking, dp.known && dp.target == "":
		dp.mu.Unlock()
		return nil
	case !dp.known:
		if time.Now().Before(dp.retryAt) {
			dp.mu.Unlock()
			return nil
		}
		// Learn the data path first (one gRPC call per server, and again
		// after a failed dial: the server may have restarted on another
		// port); concurrent calls use gRPC meanwhile.
		dp.asking = true
		dp.mu.Unlock()
		dp.learn(ctx, p)
		dp.mu.Lock()
		if dp.target == "" || dp.closed {
			dp.mu.Unlock()
			return nil
		}
	}
	target := dp.target
	if !dp.reachable && !dp.d.dataSyncDial {
		// Never reached, or the last dial failed: dial in the background
		// (the connection joins the idle ones); this call uses gRPC.
		if !dp.probing && !time.Now().Before(dp.retryAt) {
			dp.probing = true
			dp.wg.Add(1)
			go dp.probe(target) // owner: dp, whose close waits for it
		}
		dp.mu.Unlock()
		return nil
	}
	dp.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, dataDialTimeout)
	dc, err := dp.dial(dctx, target)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			dp.failed(target, err)
		}
		return nil
	}
	return dc
}

// probe dials target in the background.
func (dp *dataPeer) probe(target string) {
	defer dp.wg.Done()
	ctx, cancel := context.WithTimeout(dp.ctx, dataProbeTimeout)
	defer cancel()
	dc, err := dp.dial(ctx, target)
	dp.mu.Lock()
	dp.probing = false
	dp.mu.Unlock()
	if err != nil {
		if dp.ctx.Err() == nil {
			dp.failed(target, err)
		}
		return
	}
	dp.mu.Lock()
	first := !dp.reachable
	dp.reachable, dp.backoff = true, 0
	closed := dp.closed
	if !closed {
		dp.idle = append(dp.idle, dc)
	}
	dp.mu.Unlock()
	if closed {
		dc.c.Close()
		return
	}
	if first {
		dp.d.c.logger.Info("grpc transport: pulls and pushes use the data path", "addr", dp.addr, "data", target, "tls", dp.d.cfg.TLS != nil)
	}
}

// failed records a failed dial to target: calls use gRPC, the data path is
// asked for again (the server may have moved it), and dialed again after a
// growing wait.
func (dp *dataPeer) failed(target string, err error) {
	dp.mu.Lock()
	if strings.HasPrefix(target, localPrefix) && dp.target == target && !dp.reachable {
		// Never reached: another host or network namespace, where the
		// socket is not there. Use TCP from now on, at once. (A socket
		// that worked and failed is a server that went away: asked for
		// again below, like a TCP data path.)
		dp.noLocal, dp.reachable, dp.target = true, false, dp.tcp
		dp.mu.Unlock()
		dp.d.c.logger.Debug("grpc transport: local data path unreachable, using TCP", "addr", dp.addr, "local", target, "err", err)
		return
	}
	was := dp.reachable || dp.backoff == 0
	dp.reachable, dp.known = false, false
	dp.backoff = min(max(2*dp.backoff, dataRetry), dataRetryMax)
	dp.retryAt = time.Now().Add(dp.backoff)
	wait := dp.backoff
	dp.mu.Unlock()
	if was {
		dp.d.c.logger.Warn("grpc transport: data path unreachable, calls use gRPC", "addr", dp.addr, "data", target, "err", err, "retry_in", wait)
	} else {
		dp.d.c.logger.Debug("grpc transport: data path still unreachable", "addr", dp.addr, "data", target, "err", err, "retry_in", wait)
	}
}

// learn asks the server for its data path over gRPC.
func (dp *dataPeer) learn(ctx context.Context, p *peer) {
	info := &pb.DataPathInfo{}
	err := p.conn().Invoke(ctx, pb.ParameterServer_DataPath_FullMethodName, &pb.DataPathRequest{}, info)
	dp.mu.Lock()
	defer dp.mu.Unlock()
	dp.asking = false
	switch {
	case status.Code(err) == codes.Unimplemented:
		dp.known, dp.target = true, ""
		dp.d.c.logger.Info("grpc transport: server has no data path (older version), calls use gRPC", "addr", dp.addr)
	case err != nil:
		if ctx.Err() == nil {
			dp.retryAt = time.Now().Add(dataRetry)
		}
		dp.d.c.logger.Debug("grpc transport: asking for the data path", "addr", dp.addr, "err", err)
	case info.GetPort() <= 0 || info.GetPort() > 65535 || info.GetVersion() != dataVersion:
		dp.known, dp.target = true, ""
		dp.d.c.logger.Info("grpc transport: server offers no data path, calls use gRPC", "addr", dp.addr,
			"port", info.GetPort(), "version", info.GetVersion())
	default:
		host, _, herr := net.SplitHostPort(dp.addr)
		if herr != nil {
			dp.known, dp.target = true, ""
			return
		}
		dp.tcp = net.JoinHostPort(host, strconv.Itoa(int(info.GetPort())))
		target := dp.tcp
		if name := info.GetLocal(); name != "" && localDataPath && !dp.noLocal && dp.d.cfg.DataPath != DataPathTCP {
			target = localPrefix + name
		}
		if target != dp.target {
			dp.reachable = false
		}
		dp.known, dp.target, dp.replicate = true, target, info.GetReplicate()
	}
}

// replicates reports whether Replicate calls may take the data path: the
// server said so, or has not been asked yet (get asks it; a server that
// does not carry them leaves the call on gRPC).
func (dp *dataPeer) replicates() bool {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.replicate || !dp.known
}

// Ways calls to a server travel (DataPath.Via).
const (
	ViaUnix = "unix" // the data path over the server's Unix socket
	ViaTCP  = "tcp"  // the data path over TCP
	ViaGRPC = "grpc" // gRPC streams: no data path, not connected yet, or off
)

// DataPath is how pulls and pushes to one server travel now.
type DataPath struct {
	// Addr is the server's gRPC address, as dialed.
	Addr string `json:"addr"`
	// Via is ViaUnix, ViaTCP or ViaGRPC.
	Via string `json:"via"`
	// Target is the data path's HOST:PORT or socket name ("" for gRPC).
	Target string `json:"target,omitempty"`
}

// state reports dp as a DataPath.
func (dp *dataPeer) state() DataPath {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	out := DataPath{Addr: dp.addr, Via: ViaGRPC}
	if !dp.known || dp.target == "" || !dp.reachable || dp.closed {
		return out
	}
	if name, ok := strings.CutPrefix(dp.target, localPrefix); ok {
		out.Via, out.Target = ViaUnix, name
	} else {
		out.Via, out.Target = ViaTCP, dp.target
	}
	return out
}

// localPrefix marks a data-path target that is a Unix socket's name.
const localPrefix = "unix:"

// dial opens a data-path connection: TCP with keepalive (or the server's
// Unix socket, for a target with localPrefix), TLS when the dialer has a
// TLS config, then the magic both ways.
func (dp *dataPeer) dial(ctx context.Context, target string) (*dataConn, error) {
	ka := dp.d.cfg.Keepalive
	if ka == 0 {
		ka = DefaultKeepalive
	}
	nd := net.Dialer{Timeout: 10 * time.Second}
	if ka > 0 {
		ka = max(ka, minKeepalive)
		nd.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka, Count: 1}
	} else {
		nd.KeepAlive = -1
	}
	network, address := "tcp", target
	if name, ok := strings.CutPrefix(target, localPrefix); ok {
		network, address = "unix", name
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if ka > 0 {
		setUserTimeout(c, 2*ka)
	}
	// The closure holds the raw connection: c becomes the TLS connection
	// below, and a deadline on the raw one ends the TLS handshake too.
	raw := c
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()
	c.SetDeadline(time.Now().Add(dataHandshakeTimeout))
	if cfg := dp.d.cfg.TLS; cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{dataALPN}
		if cfg.ServerName == "" {
			// The certificate names the host the gRPC address is on,
			// whichever socket carries the data path.
			host, _, _ := net.SplitHostPort(dp.addr)
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write(dataMagic[:]); err != nil {
		c.Close()
		return nil, err
	}
	var m [len(dataMagic)]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != dataMagic {
		c.Close()
		if err == nil {
			err = fmt.Errorf("not a flowps data path (got %q)", m[:])
		}
		return nil, err
	}
	if !stop() { // ctx ended while dialing: the deadline is spent
		c.Close()
		return nil, ctx.Err()
	}
	c.SetDeadline(time.Time{})
	wc := &watchedConn{Conn: c}
	if ka > 0 {
		beat := dataBeat(ka)
		wc.beat = uint16(min(beat/time.Second, 65535))
		wc.timeout = 2*beat + time.Second
	}
	return &dataConn{c: wc, br: newDataReader(wc)}, nil
}

// dataBeat is the heartbeat interval a client with keepalive ka asks for:
// ka in whole seconds, at least one.
func dataBeat(ka time.Duration) time.Duration {
	return max(time.Second, ka.Truncate(time.Second))
}

// put returns a connection after a complete call.
func (dp *dataPeer) put(dc *dataConn) {
	dp.mu.Lock()
	if !dp.closed && len(dp.idle) < maxIdleDataConns {
		dp.idle = append(dp.idle, dc)
		dp.mu.Unlock()
		return
	}
	dp.mu.Unlock()
	dc.c.Close()
}

// close closes the idle connections and waits for a probe in flight;
// connections in use close when their call ends.
func (dp *dataPeer) close() {
	dp.mu.Lock()
	idle := dp.idle
	dp.idle, dp.closed = nil, true
	dp.mu.Unlock()
	dp.cancel()
	for _, dc := range idle {
		dc.c.Close()
	}
	dp.wg.Wait()
}

// dataCall runs one call on dc: it writes the request (prefix, header,
// data) and reads the response prefix and header into ok (or the error),
// leaving the response's data to read. Cancelling ctx, or its deadline,
// aborts the I/O; the connection is then not reused. done must be called
// when the call is over, with whether the connection may be reused.
func (c *client) dataCall(ctx context.Context, dc *dataConn, op byte, enc byte, h proto.Message, data net.Buffers, ok proto.Message) (p dataPrefix, done func(reuse bool), err error) {
	hb, err := proto.Marshal(h)
	if err != nil {
		return p, func(reuse bool) { c.p.data.put(dc) }, err
	}
	return c.dataCallRaw(ctx, dc, op, enc, hb, data, func(b []byte) error {
		if err := proto.Unmarshal(b, ok); err != nil {
			return fmt.Errorf("%w: header: %v", errDataFrame, err)
		}
		return nil
	})
}

// dataCallRaw is dataCall with the request header encoded and the
// response header handed to decode.
func (c *client) dataCallRaw(ctx context.Context, dc *dataConn, op byte, enc byte, hb []byte, data net.Buffers, decode func([]byte) error) (p dataPrefix, done func(reuse bool), err error) {
	dc.c.aborted.Store(false)
	stop := context.AfterFunc(ctx, dc.c.abort)
	done = func(reuse bool) {
		if !stop() { // the context fired: the connection's deadline is spent
			reuse = false
		}
		if reuse {
			c.p.data.put(dc)
		} else {
			dc.c.Close()
		}
	}
	// The connection itself, not the wrapper, so that net.Buffers can use
	// writev.
	raceOrder()
	if err := writeDataRaw(dc.c.Conn, dataPrefix{kind: op, enc: enc, beat: dc.c.beat}, hb, data); err != nil {
		return p, done, err
	}
	defer raceOrder()
	for {
		p, err = readDataPrefix(dc.br, c.d.c.maxMessageBytes, c.d.c.maxTensorBytes)
		if err != nil {
			return p, done, err
		}
		if p.kind != dataStatusBeat {
			break
		}
		if p.header != 0 || p.data != 0 {
			return p, done, fmt.Errorf("%w: heartbeat with %d header and %d data bytes", errDataFrame, p.header, p.data)
		}
	}
	switch p.kind {
	case dataStatusOK:
		b, err := readDataBytes(dc.br, p.header)
		if err != nil {
			return p, done, unexpectedEOF(err)
		}
		return p, done, decode(b)
	case dataStatusError:
		var e pb.DataError
		if err := readDataHeader(dc.br, p.header, &e); err != nil {
			return p, done, unexpectedEOF(err)
		}
		if p.data != 0 {
			return p, done, fmt.Errorf("%w: error response with %d data bytes", errDataFrame, p.data)
		}
		serr := ps.ErrorFromCode(ps.Code(e.GetCode()), e.GetMessage())
		if serr == nil { // an error answer must carry an error
			return p, done, fmt.Errorf("%w: error response without a code: %q", errDataFrame, e.GetMessage())
		}
		return p, done, &serviceError{serr}
	}
	return p, done, fmt.Errorf("%w: response status %d", errDataFrame, p.kind)
}

// serviceError is an error the server's Service returned, as rebuilt from
// the wire: the connection stays usable after it.
type serviceError struct{ err error }

func (e *serviceError) Error() string { return e.err.Error() }
func (e *serviceError) Unwrap() error { return e.err }

// dataFail converts a data-path call's error into what the Service
// returns: the server's own error, the caller's context error, ps.ErrClosed
// after Close, a malformed response as ps.ErrInvalidArgument, and a broken
// connection as ps.ErrUnavailable.
func (c *client) dataFail(ctx context.Context, op string, err error) error {
	var se *serviceError
	switch {
	case errors.As(err, &se):
		return se.err
	case ctx.Err() != nil:
		return fmt.Errorf("grpc %s %s: %w", op, c.p.addr, ctx.Err())
	case c.closed.Load():
		return fmt.Errorf("grpc %s %s: %w", op, c.p.addr, ps.ErrClosed)
	case errors.Is(err, ps.ErrInvalidArgument), errors.Is(err, ps.ErrTooLarge):
		return fmt.Errorf("grpc %s %s: data path: %w", op, c.p.addr, err)
	}
	return fmt.Errorf("grpc %s %s: data path: %v: %w", op, c.p.addr, err, ps.ErrUnavailable)
}

// dataPull is Pull over the data path: values are read straight into the
// parts' Dst buffers where they fit.
func (c *client) dataPull(ctx context.Context, dc *dataConn, req *ps.PullRequest) (*ps.PullResponse, error) {
	var h pb.PullHeader
	p, done, err := c.dataCall(ctx, dc, dataOpPull, 0, pullToPB(req), nil, &h)
	if err != nil {
		var se *serviceError
		done(errors.As(err, &se))
		return nil, c.dataFail(ctx, "pull", err)
	}
	resp, segs, err := pullFromHeader(&h, c.d.c.maxTensorBytes, req)
	if err == nil {
		var total uint64
		for _, s := range segs {
			total += 4 * uint64(len(s))
		}
		if total != p.data {
			err = fmt.Errorf("%w: %d data bytes for %d announced", errDataFrame, p.data, total)
		}
	}
	if err == nil {
		err = unexpectedEOF(readValues(dc.br, segs, pb.ValueEncoding_VALUE_ENCODING_FLOAT32, nil))
	}
	done(err == nil)
	if err != nil {
		return nil, c.dataFail(ctx, "pull", err)
	}
	return resp, nil
}

// dataReplicate is Replicate over the data path: the envelope's JSON
// header, then the gradients written from the ops' slices.
func (c *client) dataReplicate(ctx context.Context, dc *dataConn, in *envelope) (*ps.ReplicateResponse, error) {
	var resp ps.ReplicateResponse
	p, done, err := c.dataCallRaw(ctx, dc, dataOpReplicate, 0, in.header, net.Buffers(in.payload), func(b []byte) error {
		return decodeHeader(b, &resp)
	})
	if err := c.endWithoutData(ctx, "replicate", p, done, err); err != nil {
		return nil, err
	}
	return &resp, nil
}

// endWithoutData ends a call whose response carries a header only (push,
// replicate): data after it is malformed; the connection is reused after
// a success or a service error. It returns the call's error as the
// Service reports it.
func (c *client) endWithoutData(ctx context.Context, op string, p dataPrefix, done func(reuse bool), err error) error {
	if err == nil && p.data != 0 {
		err = fmt.Errorf("%w: %s response with %d data bytes", errDataFrame, op, p.data)
	}
	var se *serviceError
	done(err == nil || errors.As(err, &se))
	if err != nil {
		return c.dataFail(ctx, op, err)
	}
	return nil
}

// dataPush is Push over the data path: float32 gradients are written from
// the caller's slices; bf16 and fp16 ones are encoded first.
func (c *client) dataPush(ctx context.Context, dc *dataConn, req *ps.PushRequest) (*ps.PushResponse, error) {
	header, vals := pushHeader(req)
	header.Encoding = c.d.enc
	var data net.Buffers
	if c.d.enc == pb.ValueEncoding_VALUE_ENCODING_FLOAT32 {
		data = valueBuffers(vals)
	} else {
		// Encoded into a pooled buffer: the call's writev returns once the
		// kernel holds the bytes.
		n := 0
		for _, v := range vals {
			n += 2 * len(v)
		}
		buf := sharedPool.Get(n)
		defer sharedPool.Put(buf)
		b, err := appendEncoded16((*buf)[:0], c.d.enc, vals)
		if err != nil {
			return nil, err
		}
		data = net.Buffers{b}
	}
	var out pb.PushResponse
	p, done, err := c.dataCall(ctx, dc, dataOpPush, byte(c.d.enc), header, data, &out)
	if err := c.endWithoutData(ctx, "push", p, done, err); err != nil {
		return nil, err
	}
	return &ps.PushResponse{Versions: versionsFromPB(out.Versions)}, nil
}
