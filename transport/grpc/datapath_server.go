package grpctransport

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/protobuf/proto"
)

// DataPathOff, as ServerConfig.DataAddr or DialerConfig.DataPath, turns the
// data path off: every call goes over gRPC.
const DataPathOff = "off"

// DataPathTCP, as DialerConfig.DataPath, uses a server's data path over
// TCP only, never over its Unix socket.
const DataPathTCP = "tcp"

// dataHandshakeTimeout bounds a new connection's TLS handshake and magic.
const dataHandshakeTimeout = 10 * time.Second

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// dataServer serves a Server's data path.
type dataServer struct {
	s      *Server
	lis    net.Listener
	port   int
	local  net.Listener    // the abstract Unix socket, or nil
	name   string          // its name ("@flowps-data-…"), or ""
	ctx    context.Context // calls' parent, cancelled when Stop gives up waiting
	cancel context.CancelFunc

	calls      atomic.Uint64 // requests served (tests)
	localConns atomic.Uint64 // connections accepted on the Unix socket (tests)

	mu       sync.Mutex
	conns    map[*dataSrvConn]struct{}
	stopping bool
	idle     chan struct{} // closed when stopping and no call is in flight
	wg       sync.WaitGroup
}

// dataSrvConn is one accepted connection; busy while it serves a call.
type dataSrvConn struct {
	c    net.Conn
	busy bool
}

// startDataPath listens for the data path beside the gRPC listener lis: on
// ServerConfig.DataAddr, or by default on lis's host at a free port. It
// returns nil, with no error, when the data path is off or cannot work on
// this host (big-endian: values travel little-endian and are not copied).
func (s *Server) startDataPath(lis net.Listener) (*dataServer, error) {
	addr := s.cfg.DataAddr
	if addr == DataPathOff || !littleEndian {
		return nil, nil
	}
	if addr == "" {
		host := "127.0.0.1"
		if ta, ok := lis.Addr().(*net.TCPAddr); ok {
			host = ta.IP.String()
		} else {
			return nil, nil // not TCP (a test's in-memory listener): no data path
		}
		addr = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpctransport: data path listen %s: %w", addr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var local net.Listener
	var name string
	if !s.cfg.NoLocalDataPath && localDataPath {
		// A random name: no other process can have bound it first, and
		// only clients that asked this server over gRPC know it.
		var r [16]byte
		rand.Read(r[:])
		name = "@flowps-data-" + hex.EncodeToString(r[:])
		if local, err = net.Listen("unix", name); err != nil {
			s.c.logger.Warn("grpc transport: no local data path, clients on this host use TCP", "err", err)
			local, name = nil, ""
		}
	}
	wrap := func(l net.Listener) net.Listener { return l }
	if s.cfg.TLS != nil {
		cfg := s.cfg.TLS.Clone()
		cfg.NextProtos = []string{dataALPN}
		wrap = func(l net.Listener) net.Listener { return tls.NewListener(l, cfg) }
	}
	ln = wrap(ln)
	if local != nil {
		local = wrap(local)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &dataServer{s: s, lis: ln, port: port, local: local, name: name, ctx: ctx, cancel: cancel, conns: map[*dataSrvConn]struct{}{}}
	d.wg.Add(1)
	go d.accept(ln) // owner: d, stopped by stop
	if local != nil {
		d.wg.Add(1)
		go d.accept(local) // owner: d, stopped by stop
	}
	s.c.logger.Info("grpc transport data path serving", "addr", ln.Addr().String(), "local", name, "tls", s.cfg.TLS != nil)
	return d, nil
}

func (d *dataServer) accept(lis net.Listener) {
	defer d.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := lis.Accept()
		if err != nil {
			d.mu.Lock()
			stopping := d.stopping
			d.mu.Unlock()
			if stopping || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			d.s.c.logger.Warn("data path accept", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if lis == d.local {
			d.localConns.Add(1)
		}
		sc := &dataSrvConn{c: c}
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			c.Close()
			continue
		}
		d.conns[sc] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go d.serveConn(sc) // owner: d, which closes its connection in stop
	}
}

// setBusy marks sc busy or idle; it returns false when the server is
// stopping and sc must close instead.
func (d *dataServer) setBusy(sc *dataSrvConn, busy bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	sc.busy = busy
	if d.stopping {
		d.signalIdleLocked()
		return false
	}
	return true
}

func (d *dataServer) signalIdleLocked() {
	for sc := range d.conns {
		if sc.busy {
			return
		}
	}
	select {
	case <-d.idle:
	default:
		close(d.idle)
	}
}

// stop stops accepting, closes idle connections, lets calls in flight end
// until ctx is done, then cancels them and closes every connection. It
// returns when every goroutine of d has returned.
func (d *dataServer) stop(ctx context.Context) {
	d.mu.Lock()
	d.stopping = true
	d.idle = make(chan struct{})
	d.lis.Close()
	if d.local != nil {
		d.local.Close()
	}
	for sc := range d.conns {
		if !sc.busy {
			sc.c.Close()
		}
	}
	d.signalIdleLocked()
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	d.cancel()
	d.mu.Lock()
	for sc := range d.conns {
		sc.c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *dataServer) serveConn(sc *dataSrvConn) {
	defer d.wg.Done()
	defer func() {
		sc.c.Close()
		d.mu.Lock()
		delete(d.conns, sc)
		if d.stopping {
			d.signalIdleLocked()
		}
		d.mu.Unlock()
	}()
	c := sc.c
	c.SetDeadline(time.Now().Add(dataHandshakeTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			d.s.c.logger.Debug("data path TLS handshake", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
	}
	var m [len(dataMagic)]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != dataMagic {
		d.s.c.logger.Debug("data path: not a flowps data connection", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	if _, err := c.Write(dataMagic[:]); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	br := newDataReader(c)
	var scratch []byte
	for {
		p, err := readDataPrefix(br, d.s.c.maxMessageBytes, d.s.c.maxTensorBytes)
		if err != nil && errors.Is(err, io.EOF) {
			return // the client closed an idle connection
		}
		if !d.setBusy(sc, true) {
			return
		}
		if err == nil {
			raceOrder()
			err = d.call(c, br, p, &scratch)
		} else if !isIOError(err) {
			// A bad prefix: say why, then drop the connection.
			reject(c, err)
		}
		if !d.setBusy(sc, false) || err != nil {
			if err != nil && !isIOError(err) {
				d.s.c.logger.Debug("data path call", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
	}
}

// isIOError reports whether err came from the connection rather than from
// what was read.
func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// errPeerGone ends a connection whose client left (or broke the protocol)
// during a call; errStopped one whose call Stop cut off, so that its
// client sees ps.ErrUnavailable, as over gRPC, and not the context error
// the service returned.
var (
	errNoResponse = errors.New("service returned no response")
	errPeerGone   = errors.New("data path: client went away during the call")
	errStopped    = errors.New("data path: server stopped during the call")
)

// call serves one request whose prefix was read. It returns an error when
// the connection must close.
func (d *dataServer) call(c net.Conn, br *bufio.Reader, p dataPrefix, scratch *[]byte) error {
	d.calls.Add(1)
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	switch p.kind {
	case dataOpPull:
		var h pb.PullRequest
		if p.data != 0 {
			return reject(c, fmt.Errorf("%w: pull request with %d data bytes", errDataFrame, p.data))
		}
		if err := readDataHeader(br, p.header, &h); err != nil {
			return d.fail(c, unexpectedEOF(err))
		}
		return d.pull(ctx, cancel, c, br, p, pullFromPB(&h))
	case dataOpPush:
		var h pb.PushHeader
		if err := readDataHeader(br, p.header, &h); err != nil {
			return d.fail(c, unexpectedEOF(err))
		}
		return d.push(ctx, cancel, c, br, p, &h, scratch)
	case dataOpReplicate:
		switch {
		case d.s.rep == nil:
			return reject(c, fmt.Errorf("%w: replicate on a data path without replication", errDataFrame))
		case p.enc != 0:
			return reject(c, fmt.Errorf("%w: replicate with value encoding %d (float32 only)", errDataFrame, p.enc))
		}
		hb, err := readDataBytes(br, p.header)
		if err != nil {
			return d.fail(c, unexpectedEOF(err))
		}
		return d.replicate(ctx, cancel, c, br, p, hb)
	}
	return reject(c, fmt.Errorf("%w: unknown operation %d", errDataFrame, p.kind))
}

// replicate serves a Replicate call: the envelope's header is checked
// against the data announced before the gradients are read, into a
// pooled array when the service keeps none of it (as for a push).
func (d *dataServer) replicate(ctx context.Context, cancel func(), c net.Conn, br *bufio.Reader, p dataPrefix, hb []byte) error {
	h, total, err := decodeReplicateHeader(hb, d.s.c.maxTensorBytes)
	if err != nil {
		return reject(c, err)
	}
	if p.data != 4*uint64(total) {
		return reject(c, fmt.Errorf("%w: %d data bytes for %d gradient values", errDataFrame, p.data, total))
	}
	var pooled bool
	all := d.s.gradAlloc(&pooled)(int(total))
	if err := readValues(br, [][]float32{all}, pb.ValueEncoding_VALUE_ENCODING_FLOAT32, nil); err != nil {
		return d.fail(c, unexpectedEOF(err))
	}
	req := replicateRequest(h, all)
	var resp *ps.ReplicateResponse
	cut, err := d.gradientCall(c, br, p, cancel, all, pooled, func() (err error) {
		if resp, err = d.s.rep.Replicate(ctx, req); err == nil && resp == nil {
			err = errNoResponse
		}
		return err
	})
	if cut != nil {
		return cut
	}
	if err != nil {
		return respondError(c, err)
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return respondError(c, err)
	}
	return writeDataRaw(c, dataPrefix{kind: dataStatusOK}, out, nil)
}

// fail answers a malformed request with its error, or gives up on a broken
// connection; either way the connection closes.
func (d *dataServer) fail(c net.Conn, err error) error {
	if isIOError(err) {
		return err
	}
	return reject(c, err)
}

func (d *dataServer) pull(ctx context.Context, cancel func(), c net.Conn, br *bufio.Reader, p dataPrefix, req *ps.PullRequest) error {
	// A ps.Server copies each part once, into pooled arrays (as for the
	// gRPC handler); writing the response returns only when the kernel has
	// the bytes, so they go back to the pool right after.
	var bufs pullBuffers
	defer bufs.release()
	if d.s.recycle {
		req.Alloc = bufs.alloc
	}
	var resp *ps.PullResponse
	var err error
	if cut := d.watched(c, br, p, cancel, func() { resp, err = d.s.svc.Pull(ctx, req) }); cut != nil {
		return cut
	}
	if err == nil && resp == nil {
		err = errNoResponse
	}
	if err != nil {
		return respondError(c, err)
	}
	h, vals := pullHeader(resp)
	return writeDataMessage(c, dataPrefix{kind: dataStatusOK}, h, valueBuffers(vals))
}

func (d *dataServer) push(ctx context.Context, cancel func(), c net.Conn, br *bufio.Reader, p dataPrefix, h *pb.PushHeader, scratch *[]byte) error {
	enc := pb.ValueEncoding(p.enc)
	if err := checkEncoding(enc); err != nil {
		return reject(c, err)
	}
	// The header's sizes are checked against the limit and against the
	// data announced before anything is allocated for them.
	total, err := totalValues(len(h.GetParts()), func(i int) int64 { return h.Parts[i].GetNumValues() }, d.s.c.maxTensorBytes)
	if err != nil {
		return reject(c, err)
	}
	if want := uint64(total) * uint64(valueBytes(enc)); p.data != want {
		return reject(c, fmt.Errorf("%w: %d data bytes for %d values of %d bytes", errDataFrame, p.data, total, valueBytes(enc)))
	}
	var pooled bool
	req, backing, err := pushFromHeaderAlloc(h, d.s.c.maxTensorBytes, d.s.gradAlloc(&pooled))
	if err != nil {
		return reject(c, err)
	}
	if enc != pb.ValueEncoding_VALUE_ENCODING_FLOAT32 && len(*scratch) == 0 {
		*scratch = make([]byte, dataBufSize)
	}
	if err := readValues(br, [][]float32{backing}, enc, *scratch); err != nil {
		return d.fail(c, unexpectedEOF(err))
	}
	var resp *ps.PushResponse
	cut, err := d.gradientCall(c, br, p, cancel, backing, pooled, func() (err error) {
		if resp, err = d.s.svc.Push(ctx, req); err == nil && resp == nil {
			err = errNoResponse
		}
		return err
	})
	if cut != nil {
		return cut
	}
	if err != nil {
		return respondError(c, err)
	}
	return writeDataMessage(c, dataPrefix{kind: dataStatusOK}, &pb.PushResponse{Versions: resp.Versions}, nil)
}

// gradientCall runs call, a Push or Replicate of the gradients in backing,
// under watched, and gives backing back to gradPool (when pooled, i.e. the
// service keeps nothing of it) once the call succeeded, as the gRPC
// handler does. cut is watched's verdict; err is call's.
func (d *dataServer) gradientCall(c net.Conn, br *bufio.Reader, p dataPrefix, cancel func(), backing []float32, pooled bool, call func() error) (cut, err error) {
	if cut := d.watched(c, br, p, cancel, func() { err = call() }); cut != nil {
		return cut, nil
	}
	if err == nil && pooled {
		gradPool.put(backing)
	}
	return nil, err
}

// watched runs the service call fn while watching the client (watchPeer)
// and sending heartbeats. It returns errPeerGone when the client went away
// and errStopped when Stop cut the call off (the client then sees the
// connection end): either way the call's result must not be sent.
func (d *dataServer) watched(c net.Conn, br *bufio.Reader, p dataPrefix, cancel func(), fn func()) error {
	gone := watchPeer(c, br, cancel)
	beats := startBeats(c, p.beat)
	fn()
	beats.stop()
	if gone() {
		return errPeerGone
	}
	if d.ctx.Err() != nil {
		return errStopped
	}
	return nil
}

// watchPeer watches c while a call runs: the client sends nothing until the
// response, so a byte or the end of the connection means it gave up (closed
// the connection on cancel or deadline) and cancel is called. The returned
// function stops the watch and reports whether the client went away; the
// connection is then unusable. A request pipelined behind this one (bytes
// already buffered in br) breaks the protocol and counts as going away.
// (Starting the watch only after 2 ms, to spare fast calls the read and
// its interruption, measured no faster: 74-95 µs per 4 KiB call either way.)
func watchPeer(c net.Conn, br *bufio.Reader, cancel func()) func() bool {
	if br.Buffered() > 0 {
		cancel()
		return func() bool { return true }
	}
	done := make(chan bool, 1)
	go func() { // owner: the returned function, which waits for it
		var b [1]byte
		n, err := c.Read(b[:])
		var ne net.Error
		gone := n > 0 || !(errors.As(err, &ne) && ne.Timeout())
		if gone {
			cancel()
		}
		done <- gone
	}()
	return func() bool {
		c.SetReadDeadline(aLongTimeAgo)
		gone := <-done
		c.SetReadDeadline(time.Time{})
		return gone
	}
}

// beats sends heartbeats on a connection while a call runs.
type beats struct {
	mu    sync.Mutex
	done  bool
	timer *time.Timer
}

// startBeats sends a heartbeat prefix on c every `every` seconds until
// stop; nil (and no heartbeats) for 0.
func startBeats(c net.Conn, every uint16) *beats {
	if every == 0 {
		return nil
	}
	d := time.Duration(every) * time.Second
	b := &beats{}
	var beat func()
	beat = func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.done {
			return
		}
		var p [dataPrefixBytes]byte
		if _, err := c.Write(dataPrefix{kind: dataStatusBeat}.put(p[:0])); err != nil {
			b.done = true // the response's write will fail too
			return
		}
		b.timer.Reset(d)
	}
	b.mu.Lock()
	b.timer = time.AfterFunc(d, beat)
	b.mu.Unlock()
	return b
}

// stop ends the heartbeats; it returns when none is being written, so the
// response may follow.
func (b *beats) stop() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.done = true
	b.timer.Stop()
	b.mu.Unlock()
}

// respondError answers the call with err's ps code and text.
func respondError(c net.Conn, err error) error {
	return writeDataMessage(c, dataPrefix{kind: dataStatusError}, &pb.DataError{Code: string(ps.CodeOf(err)), Message: err.Error()}, nil)
}

// reject answers a malformed request with its error and returns that error:
// the stream cannot be trusted past it, so the connection closes.
func reject(c net.Conn, err error) error {
	respondError(c, err)
	return err
}

// writeDataMessage writes prefix p (its sizes filled in), header h and
// data in one writev where the connection allows.
func writeDataMessage(c net.Conn, p dataPrefix, h proto.Message, data net.Buffers) error {
	hb, err := proto.Marshal(h)
	if err != nil {
		return err
	}
	return writeDataRaw(c, p, hb, data)
}

// writeDataRaw is writeDataMessage with the header already encoded.
func writeDataRaw(c net.Conn, p dataPrefix, hb []byte, data net.Buffers) error {
	var n uint64
	for _, b := range data {
		n += uint64(len(b))
	}
	head := make([]byte, 0, dataPrefixBytes+len(hb))
	p.header, p.data = uint32(len(hb)), n
	head = p.put(head)
	head = append(head, hb...)
	raceOrder()
	bufs := make(net.Buffers, 0, 1+len(data))
	bufs = append(bufs, head)
	for _, b := range data {
		if len(b) > 0 {
			bufs = append(bufs, b)
		}
	}
	_, err := bufs.WriteTo(c)
	return err
}

// valueBuffers views float32 slices as the bytes to write (no copy).
func valueBuffers(vals [][]float32) net.Buffers {
	out := make(net.Buffers, 0, len(vals))
	for _, v := range vals {
		if len(v) > 0 {
			out = append(out, f32bytes(v))
		}
	}
	return out
}

// dataPort is the port and local socket name DataPath announces: 0 and ""
// without a data path.
func (s *Server) dataPort() (int, string) {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.data == nil {
		return 0, ""
	}
	return s.data.port, s.data.name
}

// DataPath implements the gRPC method that tells clients where the data
// path listens.
func (h *handler) DataPath(context.Context, *pb.DataPathRequest) (*pb.DataPathInfo, error) {
	port, name := h.s.dataPort()
	if port == 0 {
		return &pb.DataPathInfo{}, nil
	}
	return &pb.DataPathInfo{Port: int32(port), Version: dataVersion, Local: name, Replicate: h.s.rep != nil}, nil
}

// LocalDataAddr is the abstract Unix socket the data path also listens on
// ("" when there is none).
func (s *Server) LocalDataAddr() string {
	_, name := s.dataPort()
	return name
}

// DataAddr is the address the data path listens on ("" when it is off or
// Serve has not started it).
func (s *Server) DataAddr() string {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.data == nil {
		return ""
	}
	return s.data.lis.Addr().String()
}
