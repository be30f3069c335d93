package grpctransport

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The benchmarks compare the transport with two baselines on loopback, in
// one run:
//
//	BenchmarkPushPull   flowps over gRPC: Push and Pull of one dense part
//	BenchmarkRawTCP     a length-prefixed raw TCP stream doing the same
//	                    exchange (request, payload one way, small answer)
//	BenchmarkEcho       a bare unary gRPC echo of a BytesValue (latency
//	                    baseline for small pulls)
//
// Each reports MB/s and p50/p99 latency in µs. Run:
//
//	go test ./transport/grpc -run '^$' -bench . -benchtime 2s
//
// FLOWPS_BENCH_CHUNK, _WINDOW, _RBUF, _BUF (write), _CONNS, _ENC
// (GradientEncoding) and _DATAPATH (DialerConfig.DataPath: "off" for
// gRPC only) override the config for tuning sweeps.

var benchSizes = []int{4 << 10, 4 << 20, 64 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	default:
		return strconv.Itoa(n>>10) + "KiB"
	}
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}

// benchService answers pulls with a fixed tensor and pushes with a version.
type benchService struct{ values []float32 }

func (s *benchService) Create(context.Context, *ps.CreateRequest) (*ps.CreateResponse, error) {
	return &ps.CreateResponse{}, nil
}

func (s *benchService) Pull(_ context.Context, r *ps.PullRequest) (*ps.PullResponse, error) {
	return &ps.PullResponse{Parts: []ps.PartValues{{Key: r.Parts[0].Key, Version: 1, Values: s.values}}}, nil
}

func (s *benchService) Push(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
	return &ps.PushResponse{Versions: []int64{int64(len(r.Parts[0].Grad))}}, nil
}

func (s *benchService) Close() error { return nil }

// latencies records per-operation durations and reports their quantiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B, bytes int) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Nanoseconds())/1e3, "p99-µs")
	b.SetBytes(int64(bytes))
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs op b.N times and reports bytes/op, latency quantiles and the
// CPU time per op of the whole process (client and server), which a busy
// machine distorts less than wall time.
func timed(b *testing.B, bytes int, op func() error) {
	lat := make(latencies, 0, b.N)
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op") }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	lat.report(b, bytes)
}

func BenchmarkPushPull(b *testing.B) {
	for _, comp := range []string{"", CompressionS2} {
		for _, size := range benchSizes {
			if comp != "" && size > 4<<20 {
				continue
			}
			name := sizeName(size)
			if comp != "" {
				name += "/" + comp
			}
			values := make([]float32, size/4)
			for i := range values {
				values[i] = float32(i % 1000)
			}
			scfg := ServerConfig{ChunkBytes: envInt("FLOWPS_BENCH_CHUNK"), WindowBytes: int32(envInt("FLOWPS_BENCH_WINDOW")),
				ReadBufferBytes: envInt("FLOWPS_BENCH_RBUF"), WriteBufferBytes: envInt("FLOWPS_BENCH_BUF")}
			dcfg := DialerConfig{Compression: comp, ChunkBytes: scfg.ChunkBytes, WindowBytes: scfg.WindowBytes,
				ReadBufferBytes: scfg.ReadBufferBytes, WriteBufferBytes: scfg.WriteBufferBytes, ConnsPerPeer: envInt("FLOWPS_BENCH_CONNS"),
				GradientEncoding: os.Getenv("FLOWPS_BENCH_ENC"), DataPath: os.Getenv("FLOWPS_BENCH_DATAPATH")}
			addr, stop := serve(b, &benchService{values: values}, scfg)
			d := NewDialer(dcfg)
			svc, err := d.Dial(context.Background(), addr)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			key := ps.PartKey{Var: "w"}
			b.Run("push/"+name, func(b *testing.B) {
				req := &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: values}}}
				timed(b, size, func() error { _, err := svc.Push(ctx, req); return err })
			})
			b.Run("pull/"+name, func(b *testing.B) {
				req := &ps.PullRequest{Parts: []ps.PullPart{{Key: key}}}
				timed(b, size, func() error {
					r, err := svc.Pull(ctx, req)
					if err == nil && len(r.Parts[0].Values) != len(values) {
						err = fmt.Errorf("pulled %d values", len(r.Parts[0].Values))
					}
					return err
				})
			})
			svc.Close()
			d.Close()
			stop()
		}
	}
}

// rawServer answers a length-prefixed protocol: a request is an op byte and
// a length; op 'P' (push) is followed by the payload and answered with 8
// bytes; op 'L' (pull) is answered with the length and the payload.
func rawServer(b *testing.B, payload []byte) (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, len(payload))
		var hdr [9]byte
		for {
			if _, err := io.ReadFull(conn, hdr[:]); err != nil {
				return
			}
			n := binary.LittleEndian.Uint64(hdr[1:])
			switch hdr[0] {
			case 'P':
				if _, err := io.ReadFull(conn, buf[:n]); err != nil {
					return
				}
				if _, err := conn.Write(hdr[1:]); err != nil {
					return
				}
			case 'L':
				if _, err := conn.Write(hdr[1:]); err != nil {
					return
				}
				if _, err := conn.Write(payload[:n]); err != nil {
					return
				}
			}
		}
	}()
	return lis.Addr().String(), func() { lis.Close(); <-done }
}

func BenchmarkRawTCP(b *testing.B) {
	for _, size := range benchSizes {
		payload := make([]byte, size)
		addr, stop := rawServer(b, payload)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, size)
		var hdr [9]byte
		b.Run("push/"+sizeName(size), func(b *testing.B) {
			timed(b, size, func() error {
				hdr[0] = 'P'
				binary.LittleEndian.PutUint64(hdr[1:], uint64(size))
				if _, err := conn.Write(hdr[:]); err != nil {
					return err
				}
				if _, err := conn.Write(payload); err != nil {
					return err
				}
				_, err := io.ReadFull(conn, hdr[1:])
				return err
			})
		})
		b.Run("pull/"+sizeName(size), func(b *testing.B) {
			timed(b, size, func() error {
				hdr[0] = 'L'
				binary.LittleEndian.PutUint64(hdr[1:], uint64(size))
				if _, err := conn.Write(hdr[:]); err != nil {
					return err
				}
				if _, err := io.ReadFull(conn, hdr[1:]); err != nil {
					return err
				}
				_, err := io.ReadFull(conn, buf[:binary.LittleEndian.Uint64(hdr[1:])])
				return err
			})
		})
		conn.Close()
		stop()
	}
}

// echoDesc is a bare gRPC service echoing a BytesValue with the stock codec.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.BytesValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
}

func BenchmarkEcho(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	gs.RegisterService(&echoDesc, nil)
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	for _, size := range []int{16, 4 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			in := &wrapperspb.BytesValue{Value: make([]byte, size)}
			out := &wrapperspb.BytesValue{}
			timed(b, size, func() error {
				return cc.Invoke(context.Background(), "/bench.Echo/Echo", in, out)
			})
		})
	}
}
