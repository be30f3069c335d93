// Package grpctransport carries ps.Service calls over gRPC (HTTP/2 over
// TCP). The package is named grpctransport so that it does not shadow
// google.golang.org/grpc; import it as
//
//	grpctransport "github.com/flowps/flowps/transport/grpc"
//
// # Serving and dialing
//
//	lis, _ := net.Listen("tcp", "127.0.0.1:7070")
//	srv := grpctransport.NewServer(server, grpctransport.ServerConfig{})
//	go srv.Serve(lis) // returns nil after Stop
//	defer srv.Stop()  // graceful, then forced after StopTimeout
//
//	d := grpctransport.NewDialer(grpctransport.DialerConfig{Compression: "s2"})
//	defer d.Close()
//	svc, _ := d.Dial(ctx, "127.0.0.1:7070") // a ps.Service
//	defer svc.Close()
//	resp, err := svc.Pull(ctx, req)
//
// *Dialer implements ps.Dialer. Dial does not wait for the connection; an
// unreachable server makes calls fail with ps.ErrUnavailable. Connections
// are cached per address and shared by every Service dialed to it
// (DialerConfig.ConnsPerPeer connections, used round-robin); the last
// Service's Close closes them, and Dialer.Close closes all of them.
// Both configs take a *tls.Config (nil means plaintext); zero fields take
// the Default* constants.
//
// # Wire format
//
// The contract is pb/flowps.proto: a unary Create, a server-streaming Pull
// and a client-streaming Push. A tensor is never `repeated float`: the
// values of all parts of a request or response are laid end to end and sent
// as raw little-endian float32 bytes in consecutive chunks of ChunkBytes,
// the first message also carrying the header (keys, versions, row ids, and
// whether each Rows / Values / Grad was nil). So a 1 GiB tensor moves in
// bounded messages, and the receiver allocates one backing array for a
// request's values and hands out windows of it (with capacity clipped, so
// appending to one part cannot overwrite the next).
//
// The codec (codec.go) writes those bytes as the protobuf the .proto
// describes, but without copying: a chunk is handed to gRPC as views of the
// caller's float32 slices (mem.BufferSlice over unsafe.Slice), and incoming
// chunks are copied from gRPC's receive buffers straight into the
// destination tensor. A client generated from flowps.proto by stock tools
// interoperates. Receive buffers come from a pool that skips gRPC's
// zeroing.
//
// Aliasing: Push reads req's gradients until it returns; a Service's Pull
// response Values are read by the server after the Service returns them,
// so a Service must not modify them afterwards (ps.Server returns copies).
//
// # Errors
//
// A Service error crosses as a gRPC status whose code approximates it
// (NotOwner → FailedPrecondition, Stale → Aborted, ...) and whose
// ErrorInfo detail (domain "flowps.ps") holds its ps.Code; the client
// rebuilds it with ps.ErrorFromCode, so errors.Is matches the same sentinel
// and the message is kept. A failure below the service (connection refused
// or lost, server stopping, TLS mismatch) becomes ps.ErrUnavailable; the
// caller's own cancellation or deadline becomes context.Canceled or
// context.DeadlineExceeded; a malformed frame from a peer becomes
// ps.ErrInvalidArgument, and one announcing more than MaxTensorBytes,
// ps.ErrTooLarge. Nothing a peer sends makes this package panic
// (FuzzFrameDecode).
//
// # Compression
//
// Importing this package registers two gRPC compressors from
// klauspost/compress: "s2" and "zstd" (fastest level). A client chooses
// with DialerConfig.Compression; servers accept both. Trained float32
// weights are close to incompressible; compression pays on slow links or
// for gradients with many zeros.
//
// # Performance
//
// BenchmarkPushPull (this transport), BenchmarkRawTCP (a length-prefixed
// raw TCP stream doing the same exchange) and BenchmarkEcho (a bare unary
// gRPC echo with the stock codec) run in one binary, client and server in
// one process on loopback:
//
//	go test ./transport/grpc -run '^$' -bench . -benchtime 2s
//
// They report MB/s, p50/p99 latency and the process's CPU time per call.
// On the 2-core development VM with a load average near 4 (other builds
// running), one dense part, defaults:
//
//	             4 KiB p50   4 MiB push  4 MiB pull  64 MiB push  64 MiB pull
//	grpc         41-47 µs    1143 MB/s   1352 MB/s   1806 MB/s    1795 MB/s
//	raw TCP       9 µs       3272 MB/s   2970 MB/s   2335 MB/s    2301 MB/s
//	gRPC echo    35-44 µs
//
// A 4 KiB pull or push has a p50 within 0.9-1.2× of the bare echo (a
// single-frame push is sent like a unary call). At 64 MiB the transport
// reaches about 0.77× of raw TCP; at 4 MiB only about 0.35-0.45×, because
// raw TCP's 4 MiB buffers stay in cache while grpc-go's data path copies
// each byte three more times in user space (into its write buffer, out of
// its read buffer into frame buffers, and into the destination tensor) and
// spends about 4× the CPU per call; on a 2-core machine CPU is the limit.
// Under heavy load (load average 20+) every figure of this transport drops
// far more than raw TCP's. Levers measured: chunk size (256 KiB and 4 MiB
// no better than 1 MiB), flow-control window (4 MiB / 16 MiB / 64 MiB
// indistinguishable in the noise once ≥ the chunk size), a read buffer small
// enough for gRPC to read frames directly (no clear gain: two system calls
// per 16 KiB frame instead of one copy), the zero-copy codec and the
// non-zeroing receive pool (kept). DefaultChunkBytes, DefaultWindowBytes
// and DefaultBufferBytes are those choices.
//
// Replication. A Server whose Service also implements ps.Replicator (a
// ps.Server with replication on) serves the flowps.v1.Replication service
// beside ParameterServer once RegisterReplication is called (before Serve);
// the Services a Dialer returns implement ps.Replicator, so servers reach
// each other with the same Dialer. See replica.go for the envelope format.
// BenchmarkReplicatedPush (4 MiB dense push, loopback, load average ≈ 11):
// r=1 about 4.8 ms, r=2 about 17.7 ms per acknowledged push.
package grpctransport
