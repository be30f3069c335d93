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
// A Server receives each pushed tensor into one backing array. When the
// Service is a *ps.Server, which keeps no reference to a gradient once a
// Push succeeded (it copies into its sync-mode sums and out-of-order
// replication buffers, and returns only after its replicas received the
// op), the array goes back to a pool after a successful Push and is reused,
// unzeroed, for a later one; after a failed Push, and for any other
// Service, it is left to the garbage collector.
//
// # Gradient encoding
//
// DialerConfig.GradientEncoding "bf16" or "fp16" sends pushed gradients as
// 2-byte values (PushHeader.encoding in flowps.proto; offsets still count
// values), encoded with ps/wire and widened back to float32 by the server
// before the Service sees them, so a gradient arrives exactly as
// ps/wire's round trip of it (TestPushGradientEncoding). Pulls stay exact
// float32. It halves the bytes of a push: worth it on a link slower than
// the CPU, not on loopback (see Performance).
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
// Issue 4 (2026-11-25, load average 11-16, the benchmark process getting
// 24-30 % of one core, so CPU per call sets the pace): levers measured with
// benchmarks/transport (rows interleaved; medians of 3 runs of each binary,
// alternated) and CPU time per call. Kept:
//
//   - Pooled push arrays (tensorpool.go, for *ps.Server only): a 64 MiB push
//     into ps.Server took 132 ms of CPU before, 119 ms after (user+sys of
//     22-push runs minus start-up, 3 runs each, median); push GB/s over
//     grpc-echo's 0.46× → 0.57× at 4 MiB and at 64 MiB, and again 0.47× →
//     0.59× and 0.49× → 0.59× in a quieter hour (load 3-4; tables in
//     benchmarks/transport/README.md).
//
// Measured and not kept:
//
//   - Splitting a pull of several dense parts over concurrent streams (up
//     to 4, balanced by sizes learned from earlier pulls; commit 20dfb51,
//     dropped in the next): 64 MiB pull (4 parts) 0.23× tcp split, 0.25×
//     one stream, p50 459 ms vs 331 ms. Overlapping the server's copy with
//     sending cannot pay when the process is CPU-starved; it adds CPU.
//   - 1 MiB instead of 256 KiB socket read and write buffers: CPU per call
//     equal within noise (4 MiB 4.8-6.1 ms vs 4.4-6.3 ms; 64 MiB 80-89 ms
//     vs 73-82 ms, BenchmarkPushPull with FLOWPS_BENCH_BUF/RBUF).
//   - grpc.WithSharedWriteBuffer is already gRPC 1.85's default; gRPC's
//     HTTP/2 DATA frames are fixed at 16 KiB (http2MaxFrameLen, no option),
//     so WriteBufferSize 0 would cost two system calls (9-byte header, 16
//     KiB payload) per frame; not pursued.
//   - bf16 gradients (GradientEncoding, kept as an option): half the bytes,
//     but on loopback more CPU: a 64 MiB push 110 ms of CPU vs 75 ms
//     float32 (BenchmarkPushPull, FLOWPS_BENCH_ENC=bf16), push GB/s over
//     grpc-echo 0.40× vs 0.57× (4 MiB) and 0.41× vs 0.57× (64 MiB). Encoding
//     and decoding are 36 % and 35 % of that CPU; a four-values-per-step
//     (SWAR) rewrite of both ran no faster than ps/wire's scalar loops
//     (memory-bound under this load: encode 0.48 vs 0.45 s, decode 0.26
//     vs 0.29 s of user time for 300 × 1 Mi values), so it was dropped.
//
// What is left, in a profile of 4 MiB and 64 MiB pulls: 47 % memmove
// (ps.Server's clone of the partition 40 % of it, this package's copy out
// of gRPC's frames 25 %, gRPC's write buffer 18 %, gRPC's read buffer
// 17 %), 23 % system calls, 7 % zeroing the client's fresh destination
// array. gRPC's two copies and 16 KiB frames are not configurable;
// reaching 0.8× raw TCP needs either ps changes (a pull that does not
// clone; a cheaper push check and apply) or a data path beside gRPC for
// large tensors (raw TCP or TLS streams negotiated over gRPC, as
// transport/rdma negotiates its regions).
//
// Replication. A Server whose Service also implements ps.Replicator (a
// ps.Server with replication on) serves the flowps.v1.Replication service
// beside ParameterServer once RegisterReplication is called (before Serve);
// the Services a Dialer returns implement ps.Replicator, so servers reach
// each other with the same Dialer. See replica.go for the envelope format.
// BenchmarkReplicatedPush (4 MiB dense push, loopback, load average ≈ 11):
// r=1 about 4.8 ms, r=2 about 17.7 ms per acknowledged push.
package grpctransport
