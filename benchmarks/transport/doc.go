// Command transport benchmarks flowps's transports against baselines in
// the same run, on 127.0.0.1:
//
//	go run ./benchmarks/transport
//	go run ./benchmarks/transport --sizes 4KiB,4MiB --transports tcp,grpc --ops push,pull --json out.jsonl --plot out.png
//	go run ./benchmarks/transport --compress zstd --child
//	go run -tags rdma ./benchmarks/transport --transports tcp,grpc,rdma-tcp,rdma-shm
//
// Transports:
//
//   - tcp: the baseline. Length-prefixed frames over a plain net.Conn; the
//     server answers a push with an 8-byte ack and a pull with the bytes.
//     No gRPC, no protobuf: the ceiling for any transport over TCP.
//   - grpc-echo: gRPC's own cost. A bare gRPC service (flowps.bench.Echo)
//     of raw-byte messages with default settings (but message size limits)
//     that acks a push and answers a pull with bytes.
//   - grpc: flowps's gRPC transport (transport/grpc) in front of a real
//     ps.Server holding one variable of the payload size, partitioned as
//     flowps partitions it; a push applies SGD. As deployed: pulls and
//     pushes take the data path (plain TCP beside gRPC) the server offers.
//   - grpc-h2: grpc with the data path off (DialerConfig.DataPath "off"):
//     every call on gRPC's HTTP/2 streams.
//   - grpc-bf16: grpc with DialerConfig.GradientEncoding "bf16": a push
//     sends 2 bytes per gradient value (GB/s still counts the float32
//     payload); pulls are as grpc's.
//   - inproc: the in-process fake (transport/inproc), same ps.Server.
//   - rdma-tcp, rdma-shm: flowps's libfabric transport over the tcp;ofi_rxm
//     and shm providers, same ps.Server; only in binaries built with
//     -tags rdma.
//
// Every server runs in this process unless --child, which runs it in a
// child process of the same binary (environment FLOWPS_BENCH_SERVE names
// the transport; the child prints its address and serves until its stdin
// closes). All servers stay up for the whole run. For each size and op,
// every transport warms up (--warmup runs), then the transports are
// measured interleaved, in rounds that give each a slice of about
// --min-time/10, until each has both --min-runs runs and --min-time of
// runs (or --max-runs): load from elsewhere on the machine then falls on
// all rows alike. Ops: push (payload to the server), pull (payload from
// it), pushpull (one then the other; its GB/s counts both payloads).
//
// The table gives per op and size each transport's GB/s (payload bytes /
// total time / 1e9, one direction), p50 and p99 latency (nearest rank: with
// fewer than 100 runs p99 is the maximum) and the ratio of its GB/s to the
// tcp row's. --json writes one object per cell with transport, op, bytes,
// gb_per_s, p50_us, p99_us, mean_us, min_us, runs, ratio_tcp, compress and
// server; --plot draws GB/s against size, one panel per op.
//
// On a 2-core machine the client, the server and the kernel's loopback
// share two cores, so results move with any other load; compare rows of
// one run, and take medians over several.
package main
