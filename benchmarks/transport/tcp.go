package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// The tcp baseline: length-prefixed frames over a plain net.Conn, no gRPC,
// no protobuf. A request is one byte of op and an 8-byte little-endian
// length; a push carries that many payload bytes and is answered by an
// 8-byte ack (the length received); a pull asks for that many bytes and is
// answered by an 8-byte length and the bytes. It is the ceiling for any
// transport over TCP on this host.

const (
	tcpOpPush = 1
	tcpOpPull = 2
	// tcpMaxFrame bounds a frame the server accepts, so a bad peer cannot
	// make it allocate at will.
	tcpMaxFrame = 1 << 30
)

// tcpServer serves the baseline protocol. Its goroutines are owned by it
// and end in close.
type tcpServer struct {
	lis   net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// src is what pulls send: grown to the largest pull, filled once.
	srcMu sync.Mutex
	src   []byte
}

// startBaseline serves the baseline protocol on network: "tcp" at a free
// port of 127.0.0.1, or "unix" at an abstract socket with a random name.
func startBaseline(ctx context.Context, network string) (*tcpServer, error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		var r [8]byte
		rand.Read(r[:])
		addr = "@flowps-bench-" + hex.EncodeToString(r[:])
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s baseline listen: %w", network, err)
	}
	s := &tcpServer{lis: lis, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *tcpServer) addr() string { return s.lis.Addr().String() }

func (s *tcpServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil { // closed
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *tcpServer) pullSource(n int) []byte {
	s.srcMu.Lock()
	defer s.srcMu.Unlock()
	if len(s.src) < n {
		s.src = make([]byte, n)
		fillPayload(s.src, 2)
	}
	return s.src[:n]
}

// serve answers requests until the peer closes or sends a bad frame.
func (s *tcpServer) serve(c net.Conn) {
	var hdr [9]byte
	var ack [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint64(hdr[1:])
		if n > tcpMaxFrame {
			return
		}
		switch hdr[0] {
		case tcpOpPush:
			if uint64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(c, buf[:n]); err != nil {
				return
			}
			binary.LittleEndian.PutUint64(ack[:], n)
			if _, err := c.Write(ack[:]); err != nil {
				return
			}
		case tcpOpPull:
			binary.LittleEndian.PutUint64(ack[:], n)
			bufs := net.Buffers{ack[:], s.pullSource(int(n))}
			if _, err := bufs.WriteTo(c); err != nil {
				return
			}
		default:
			return
		}
	}
}

func (s *tcpServer) close() error {
	err := s.lis.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// tcpClient is one connection to a tcpServer; calls are serialised.
type tcpClient struct {
	mu   sync.Mutex
	c    net.Conn
	recv []byte
}

// dialBaseline connects to a baseline server at addr on network.
func dialBaseline(ctx context.Context, network, addr string) (*tcpClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s baseline dial %s: %w", network, addr, err)
	}
	return &tcpClient{c: c}, nil
}

// roundTrip sends one request and reads its answer. Deadlines from ctx
// apply to the socket.
func (t *tcpClient) roundTrip(ctx context.Context, op byte, payload []byte, n int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		t.c.SetDeadline(dl)
	}
	var hdr [9]byte
	hdr[0] = op
	binary.LittleEndian.PutUint64(hdr[1:], uint64(n))
	bufs := net.Buffers{hdr[:]}
	if op == tcpOpPush {
		bufs = append(bufs, payload)
	}
	if _, err := bufs.WriteTo(t.c); err != nil {
		return fmt.Errorf("tcp baseline write: %w", err)
	}
	var ack [8]byte
	if _, err := io.ReadFull(t.c, ack[:]); err != nil {
		return fmt.Errorf("tcp baseline read: %w", err)
	}
	if got := binary.LittleEndian.Uint64(ack[:]); got != uint64(n) {
		return fmt.Errorf("tcp baseline: answer for %d bytes, asked %d", got, n)
	}
	if op == tcpOpPull {
		if cap(t.recv) < n {
			t.recv = make([]byte, n)
		}
		if _, err := io.ReadFull(t.c, t.recv[:n]); err != nil {
			return fmt.Errorf("tcp baseline read: %w", err)
		}
	}
	return nil
}

func (t *tcpClient) close() error { return t.c.Close() }

// tcpBackend adapts the baseline to the benchmark's backend interface.
var tcpBackend = socketBackend("tcp", "tcp")

// unixBackend is the same protocol over a Unix socket: the ceiling for
// the grpc row, whose data path uses the server's Unix socket on this host.
var unixBackend = socketBackend("unix", "unix")

func socketBackend(name, network string) backend {
	return backend{
		name:  name,
		child: true,
		serve: func(ctx context.Context, _ *env) (string, func() error, error) {
			s, err := startBaseline(ctx, network)
			if err != nil {
				return "", nil, err
			}
			return s.addr(), s.close, nil
		},
		dial: func(ctx context.Context, _ *env, addr string) (client, error) {
			c, err := dialBaseline(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &tcpBench{c: c}, nil
		},
	}
}

type tcpBench struct{ c *tcpClient }

func (b *tcpBench) prepare(_ context.Context, size int) (cell, error) {
	payload := make([]byte, size)
	fillPayload(payload, 1)
	return &funcCell{
		push: func(ctx context.Context) error { return b.c.roundTrip(ctx, tcpOpPush, payload, size) },
		pull: func(ctx context.Context) error { return b.c.roundTrip(ctx, tcpOpPull, nil, size) },
	}, nil
}

func (b *tcpBench) close() error {
	err := b.c.close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
