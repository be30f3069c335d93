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
// # Data path
//
// Pull and Push calls normally do not travel over gRPC at all but over the
// server's data path (datapath.go): a plain TCP connection (TLS when the
// Server has a TLS config, with the same certificates and ALPN
// "flowps-data/1") to a second port, which Serve opens on the gRPC
// listener's host (ServerConfig.DataAddr: another address, or DataPathOff)
// and which clients learn with the DataPath RPC the first time they call a
// server. Each connection carries one call at a time: a 16-byte prefix, a
// protobuf header (the same PullRequest, PullHeader, PushHeader and
// PushResponse messages as above) and the values as raw little-endian
// bytes. The sender hands the kernel views of its tensors (one writev) and
// the receiver reads straight into the destination: a pull into the
// caller's PullPart.Dst, a push into the server's pooled array, which is
// why the data path is cheaper than gRPC, whose write buffer, read buffer
// and 16 KiB frames add three copies per byte and whose per-call overhead
// is about five times a raw exchange's (see Performance). A client keeps up
// to eight idle connections per server; cancelling a call closes its
// connection, which the server notices and cancels the call's context. While
// a call runs the server sends a heartbeat every keepalive interval the
// client asked for, and a client that hears nothing for two intervals
// fails the call with ps.ErrUnavailable (with TCP_USER_TIMEOUT bounding
// unacknowledged writes on Linux), as gRPC's pings do. Errors cross as a
// pb.DataError (ps code and text), with the same sentinels as over gRPC.
//
// gRPC keeps Create, replication, discovery, and every call when the
// data path is off (DialerConfig.DataPath = DataPathOff, or a server with
// DataAddr DataPathOff), when the client compresses (the data path does
// not), when the server predates it (DataPath answers Unimplemented), and
// while a server's data path is not connected: a client's first calls to a
// server go over gRPC while it learns the port and dials in the
// background, and after a failed dial it logs a warning, asks for the port
// again (a restarted server may have another) and dials again after a wait
// that doubles from 2 s to a minute, so a port that a firewall drops costs
// nothing but the warning. A server's data port should be reachable
// wherever its gRPC port is.
//
// On Linux the server also serves the data path on an abstract Unix
// socket named "@flowps-data-" and 32 random hex digits
// (ServerConfig.NoLocalDataPath turns it off), announced in DataPathInfo's
// local field. A client dials it first (DialerConfig.DataPath DataPathTCP
// never does): in the server's network namespace — the same host, outside
// containers — it connects, and elsewhere the name does not exist, the dial
// fails at once, and the client uses the TCP port from then on; a socket
// that worked and later fails is treated as a TCP data path that failed
// (the server is asked again). TLS, when on, runs over the socket as over
// TCP. The random name means no other process can have bound it first,
// and only clients that asked the server know it (a local process could
// reach the TCP port as well). Measured with benchmarks/transport on the
// 2-core development machine (one run, p50; `--transports
// tcp,unix,grpc,grpc-tcp,grpc-h2 --sizes 4KiB,1MiB,4MiB --ops push,pull`):
// the grpc row over the socket against grpc-tcp (the same data path over
// TCP), 4 KiB push 16.3 against 31.8 µs, pull 15.2 against 28.0 µs; 1 MiB
// push 176 against 363 µs, pull 243 against 373 µs; 4 MiB push 1.06
// against 1.82 ms, pull 1.06 against 1.52 ms. The raw sockets under them
// (rows tcp and unix) move 1 MiB in 290-311 µs and 107-111 µs.
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
// Issue 3 (2026-12-03, load average 1-5; binaries interleaved, 2-3 rounds
// each; the benchmarks/transport rows pull into PullPart.Dst as ps.Client
// does). Kept, in order:
//
//   - Pulls decode into the caller's PullPart.Dst, and the server copies
//     each pulled partition once, into pooled arrays handed to gRPC as
//     reference-counted mem.Buffers (pullbuf.go): pull GB/s 0.30× / 0.26×
//     → 0.42× / 0.38× of tcp at 4 MiB, 0.32× / 0.28× → 0.69× / 0.54× at
//     64 MiB (load 5.7).
//
//   - psd serves its ps.Server through a metrics wrapper, so the pooled
//     push and pull arrays never applied there; ps.ServerOf looks through
//     wrappers that declare Unwrap: in psd's profile during training, GC
//     mark 19 % → 1 %, large allocations 9 % → 0.
//
//   - The data path (above): BenchmarkMLPStepComm, one sync step of the
//     training benchmark's MLP without compute, 2.1-2.7 ms and 2.4-3.1 ms
//     of CPU per step against 5.3-6.1 ms and 5.3-6.7 ms over gRPC (load
//     3); BenchmarkPushPull (a fake service, fresh arrays) 4 KiB p50
//     74-101 µs against 209-244 µs, 4 MiB 1.10-1.21 GB/s against
//     0.66-0.75 GB/s; benchmarks/transport in the table below.
//
// benchmarks/transport, the grpc row over tcp's, before the data path
// (527e35a) and with it, three rounds each, load 0.8-1.4:
//
//	             4 KiB push  4 KiB pull  4 MiB push  4 MiB pull  64 MiB push  64 MiB pull
//	gRPC path    0.10-0.12   0.12-0.13   0.43-0.48   0.50-0.57   0.50-0.53    0.61-0.65
//	data path    0.30-0.32   0.29-0.33   0.59-0.72   0.96-1.03   0.64         0.80-0.89
//
// Pushes stay below raw TCP because the server checks and applies each
// gradient before it answers (the inproc row, with no wire, is 0.93-0.99×
// at 4 MiB push: gradient and partition do not fit in the 8 MiB L3
// together); pulls reach raw TCP at 4 MiB.
//
// Measured and not kept:
//
//   - Starting the data path's watch of an idle client only after a call
//     ran 2 ms (to spare fast calls a read and its interruption): 74-95 µs
//     per 4 KiB call either way.
//
//   - Splitting the MLP's first layer (784×256, 85 % of a step's bytes)
//     into 2, 4 or 8 partitions and pushing then pulling them concurrently,
//     or one after another with each pull started as its push is
//     acknowledged (a P3-style pipeline), over gRPC with one ps.Server in
//     the process: per step 3.6-3.8 ms for one request each way, 3.9-4.3
//     (2 parts), 5.1-5.5 (4) and 6.2-6.8 ms (8) concurrent, 4.3-4.4, 6.2-6.9
//     and 6.2-7.1 ms pipelined (load 4-6): on 2 cores the extra requests
//     cost more CPU than the overlap saves.
//
// Replication. A Server whose Service also implements ps.Replicator (a
// ps.Server with replication on) serves the flowps.v1.Replication service
// beside ParameterServer once RegisterReplication is called (before Serve);
// the Services a Dialer returns implement ps.Replicator, so servers reach
// each other with the same Dialer. See replica.go for the envelope format.
// Replicate, the call on every replicated push's path, takes the data path
// when the server announces it carries it (DataPathInfo.replicate; op 3:
// the envelope's JSON header, then the gradients as raw float32 written
// from the op's slices and read into a pooled array); Fetch and Install
// (state transfer) stay on gRPC. BenchmarkReplicatedPush (a 4 MiB dense
// push to a primary that forwards it to its replica, both behind this
// transport on loopback; `go test -run XXX -bench ReplicatedPush
// -benchtime 200x ./transport/grpc/`): r=1 0.85-0.88 ms; r=2 5.36 ms with
// Replicate on gRPC, 2.77 ms on the data path (Unix socket), same hour on
// the 2-core machine (2026-12-08). Earlier, under load ≈ 11: r=1 4.8 ms,
// r=2 17.7 ms.
package grpctransport
