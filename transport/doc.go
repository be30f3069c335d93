// Package transport is the home of the transports that carry ps.Service
// calls between processes. It holds no code itself; each transport is a
// sub-package with the same two halves, in the manner of hashicorp/raft's
// Transport:
//
//   - a server side that serves any ps.Service (usually a *ps.Server), and
//   - a dialer, a ps.Dialer whose Dial(ctx, addr) returns a ps.Service that
//     forwards every call to the server at addr.
//
// The sub-packages:
//
//   - transport/inproc: an in-process network (inproc.Network) with link
//     cuts, partitions and fault injection, for tests that build whole
//     clusters in one process;
//   - transport/grpc (package grpctransport): gRPC over TCP, tensors as raw
//     little-endian float32 bytes streamed in chunks, optional TLS and s2 /
//     zstd wire compression;
//   - transport/rdma: libfabric one-sided RMA with gRPC as control plane.
//
// Every transport runs the conformance suite in transport/transporttest, so
// they agree on what a call means: exact round trips of every field (float
// bit patterns, nil versus empty Rows), errors that come back matching the
// same ps sentinel with errors.Is, contexts whose cancellation and deadline
// reach the server, ps.ErrUnavailable (retryable) from an unreachable or
// stopped server, and an idempotent Close after which calls fail with
// ps.ErrClosed.
//
// A transport knows nothing of placement or optimizers: ps.Client decides
// which server a partition lives on and dials it through a ps.Dialer.
package transport
