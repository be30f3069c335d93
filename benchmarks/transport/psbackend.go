package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/flowps/flowps/ps"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// The parameter-server backends (grpc, inproc, rdma-*) serve a real
// ps.Server. The client creates, over the transport itself, one variable
// per size ("bench/<bytes>", async SGD with a tiny learning rate so that
// weights stay put), partitioned by flowps's default bounds; a push sends
// the gradient of every partition in one request (what ps.Client sends to
// one server), and a pull reads every partition into one buffer, offering
// each partition's window as its Dst (what ps.Client does) and copying
// the values there when the transport returned them elsewhere.

// newPSServer returns the ps.Server every parameter-server backend hosts.
func newPSServer() (*ps.Server, error) {
	cfg := ps.DefaultServerConfig()
	cfg.ID = "bench-ps"
	return ps.NewServer(cfg)
}

// psClient runs cells against a ps.Service.
type psClient struct {
	svc   ps.Service
	extra func() error // closes the dialer, if any
	seq   atomic.Uint64
}

func newPSClient(svc ps.Service, closeDialer func() error) *psClient {
	return &psClient{svc: svc, extra: closeDialer}
}

func (c *psClient) prepare(ctx context.Context, size int) (cell, error) {
	n := int64(size / 4)
	shape := []int64{n}
	if n%256 == 0 {
		shape = []int64{n / 256, 256}
	}
	spec := ps.VariableSpec{
		Name:        fmt.Sprintf("bench/%d", size),
		Shape:       shape,
		Init:        ps.Initializer{Kind: ps.InitNormal, Stddev: 0.05, Seed: 1},
		Optimizer:   ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1e-9},
		Consistency: ps.Consistency{Mode: ps.Async},
	}
	ranges := spec.Partitions()
	parts := make([]int, len(ranges))
	for i := range parts {
		parts[i] = i
	}
	if _, err := c.svc.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: parts}); err != nil {
		return nil, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	grad := make([]float32, n)
	fillFloats(grad, 1)
	// Pulls land in one buffer, each partition in its window (PullPart.Dst),
	// as ps.Client pulls a dense variable into the runtime's tensor.
	dst := make([]float32, n)
	row := spec.RowSize()
	push := &ps.PushRequest{ClientID: "bench", Parts: make([]ps.PushPart, len(ranges))}
	pull := &ps.PullRequest{ClientID: "bench", Parts: make([]ps.PullPart, len(ranges))}
	for i, r := range ranges {
		key := ps.PartKey{Var: spec.Name, Index: i}
		push.Parts[i] = ps.PushPart{Key: key, Grad: grad[r.Start*row : r.End*row]}
		w := dst[r.Start*row : r.End*row : r.End*row]
		pull.Parts[i] = ps.PullPart{Key: key, Dst: w}
	}
	return &funcCell{
		push: func(ctx context.Context) error {
			req := *push
			req.Seq = c.seq.Add(1)
			resp, err := c.svc.Push(ctx, &req)
			if err != nil {
				return err
			}
			if len(resp.Versions) != len(ranges) {
				return fmt.Errorf("push answered %d versions for %d parts", len(resp.Versions), len(ranges))
			}
			return nil
		},
		pull: func(ctx context.Context) error {
			resp, err := c.svc.Pull(ctx, pull)
			if err != nil {
				return err
			}
			got := 0
			for i, p := range resp.Parts {
				got += len(p.Values)
				if w := pull.Parts[i].Dst; !ps.SameBuffer(p.Values, w) {
					copy(w, p.Values) // what ps.Client does when a transport ignores Dst
				}
			}
			if got != int(n) {
				return fmt.Errorf("pull returned %d values, want %d", got, n)
			}
			return nil
		},
	}, nil
}

func (c *psClient) close() error {
	err := c.svc.Close()
	if c.extra != nil {
		err = errors.Join(err, c.extra())
	}
	return err
}

// servePS starts a ps.Server behind a transport server made by start,
// which returns the address and a stop function for the transport.
func servePS(start func(svc *ps.Server) (string, func() error, error)) (string, func() error, error) {
	srv, err := newPSServer()
	if err != nil {
		return "", nil, err
	}
	addr, stop, err := start(srv)
	if err != nil {
		srv.Close()
		return "", nil, err
	}
	return addr, func() error { return errors.Join(stop(), srv.Close()) }, nil
}

var grpcBackend = grpcPSBackend("grpc", "", "")

// grpcTCPBackend is grpc with its data path over TCP even on this host
// (DialerConfig.DataPath "tcp"), as for a psd on another machine.
var grpcTCPBackend = grpcPSBackend("grpc-tcp", "", grpctransport.DataPathTCP)

// grpcH2Backend is grpc with the data path off: every pull and push on
// gRPC's own HTTP/2 streams, as before the data path existed.
var grpcH2Backend = grpcPSBackend("grpc-h2", "", grpctransport.DataPathOff)

// grpcBF16Backend is grpc with DialerConfig.GradientEncoding "bf16": pushes
// send 2 bytes per value (its GB/s still counts the float32 payload), pulls
// are unchanged.
var grpcBF16Backend = grpcPSBackend("grpc-bf16", grpctransport.EncodingBF16, "")

// grpcPSBackend is flowps's gRPC transport in front of a ps.Server, its
// client sending gradients in encoding enc over the data path choice
// dataPath (DialerConfig.DataPath).
func grpcPSBackend(name, enc, dataPath string) backend {
	return backend{
		name:  name,
		child: true,
		serve: func(ctx context.Context, e *env) (string, func() error, error) {
			return servePS(func(svc *ps.Server) (string, func() error, error) {
				var lc net.ListenConfig
				lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
				if err != nil {
					return "", nil, fmt.Errorf("grpc listen: %w", err)
				}
				gs := grpctransport.NewServer(svc, grpctransport.ServerConfig{Logger: e.logger})
				done := make(chan error, 1)
				go func() { done <- gs.Serve(lis) }()
				return lis.Addr().String(), func() error {
					gs.Stop()
					return <-done
				}, nil
			})
		},
		dial: func(ctx context.Context, e *env, addr string) (client, error) {
			d := grpctransport.NewDialer(grpctransport.DialerConfig{Compression: e.compress, Logger: e.logger,
				GradientEncoding: enc, DataPath: dataPath})
			svc, err := d.Dial(ctx, addr)
			if err != nil {
				d.Close()
				return nil, err
			}
			return newPSClient(svc, d.Close), nil
		},
	}
}

var inprocBackend = backend{
	name: "inproc",
	serve: func(ctx context.Context, e *env) (string, func() error, error) {
		return servePS(func(svc *ps.Server) (string, func() error, error) {
			const addr = "bench-ps"
			stop := e.inprocNet().Serve(addr, svc)
			return addr, func() error { stop(); return nil }, nil
		})
	},
	dial: func(ctx context.Context, e *env, addr string) (client, error) {
		svc, err := e.inprocNet().Dialer("bench").Dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		return newPSClient(svc, nil), nil
	},
}
