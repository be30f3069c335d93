// Package rdma carries ps.Service calls over libfabric (OFI): RDMA verbs on
// RoCE/InfiniBand NICs through the "verbs;ofi_rxm" provider, and the very
// same code over "tcp;ofi_rxm" and "shm", which is how it runs and is tested
// on machines without RDMA hardware.
//
// # Use
//
//	srv, err := rdma.NewServer(svc, rdma.ServerConfig{Provider: rdma.ProviderSHM})
//	// advertise srv.Endpoint() (name, provider) in gossip metadata, or
//	// hand out srv.Addr(), which is rdma.FormatAddr(provider, name)
//	defer srv.Close()
//
//	d := rdma.NewDialer(rdma.DialerConfig{})
//	remote, err := d.Dial(ctx, addr) // a ps.Service
//	defer remote.Close()
//	resp, err := remote.Pull(ctx, &ps.PullRequest{...})
//
// Calls have the semantics of the gRPC transport and pass the shared
// conformance suite (transport/transporttest): service errors come back
// matching the same ps sentinels with their messages; cancelling a call's
// context cancels the server's call; its deadline travels with the request;
// a lost server or connection yields ps.ErrUnavailable (retryable); calls
// after Close yield ps.ErrClosed.
//
// # Building
//
// The libfabric code is cgo behind the build tag rdma (files tagged
// `rdma && cgo && linux`); it links -lfabric (Debian: libfabric-dev; 1.17 is
// what it was written against). Without the tag the package still builds
// everywhere: NewServer and Dial return ErrNoRDMA ("flowps built without
// RDMA support: rebuild with -tags rdma"), Available reports false, and
// Doctor still inspects devices, routes and the memlock limit. CI runs
//
//	go test ./transport/rdma/...              # stub, codecs, doctor
//	go test -tags rdma ./transport/rdma/...   # shm and tcp;ofi_rxm end to end
//
// on a machine with libfabric-dev installed. Only a few libfabric symbols
// are linked directly (fi_getinfo, fi_freeinfo, fi_dupinfo, fi_fabric,
// fi_strerror, fi_version); everything else goes through provider tables,
// wrapped by the small C layer in fabric.c.
//
// # Addresses and the handshake
//
// A server address is "<provider>|<hex endpoint name>", for example
// "tcp;ofi_rxm|0200a7a97f000001..." or "shm|66695f73686d3a2f2f...". The
// provider comes first because an endpoint name means nothing to another
// provider.
//
// The handshake runs over the fabric itself, not over gRPC: the gRPC
// transport is a separate package that this one must not depend on, and
// reliable-datagram endpoints need no connection setup, so a message is all
// it takes. A client opens its own endpoint, registers its staging area and
// sends a hello (fi_send into one of the server's posted receive buffers)
// with its endpoint name, the area's size, address and key, and a random
// nonce. The server inserts the client into its address vector (fi_av_insert
// returns 1 on success), registers a mirror area of the granted size, and
// answers with a welcome: the client's 12-bit index and the mirror's address
// and key. A lost hello or welcome is re-sent; the nonce makes that
// idempotent. Finally one probe write proves the keys and the data path
// before Dial returns.
//
// # Data path
//
// Both sides hold a staging area of the same size, registered once (mmap'd
// memory, never the Go heap); client offset o is server offset o. A call
// reserves a page-aligned extent, writes the request frame there and sends
// it with one fi_writedata into the server's mirror at the same offset,
// its 32-bit immediate naming the client (12 bits) and the first page (20
// bits): payload and notice are one operation, which shm requires since it
// orders only send-after-send. The server decodes the frame, calls the
// service on a goroutine, writes the response frame over the request and
// sends it back with one fi_writedata to the client's extent. So a push is
// one write each way and a pull is a small write and a large one.
//
// Copies. A pull response body is a table (how long the server held the
// pull, then each part's key, version, value count and offset), then the
// values; the table's size follows from
// the request, so the server hands ps.Server a PullRequest.Alloc that
// returns the frame space after it, and ps.Server copies each partition
// straight into the response frame under its lock: one copy, then the
// write. (A service that returns values of its own has them copied in, or
// the largest sent from Go memory.) The client decodes each part into its
// PullPart.Dst when the length fits and returns Dst as the part's Values
// (ps.Client then skips its own copy), else into a new slice; nil and
// empty stay apart. A push is written from the caller's gradient itself
// (zero copy from pinned Go memory where the provider allows it, from 256
// KiB up; with a shared shm area the gradient is copied into it instead,
// see shm), and when the service is a *ps.Server the server decodes its
// gradients as views of the mirror area instead of copying them out: the
// extent stays reserved until the response is written, and ps.Server keeps
// no reference once Push returned (the sync-mode sum and buffered
// replication ops are copies; replicas get the op inside the call). One
// case is not covered by that: a push that failed where ps.Server may have
// been forwarding it to replicas (any failure but a validation error) may
// leave a sender cut off by the context, such as a gRPC stream being
// reset, still reading the pages, so its answer is held back 250 ms before
// the client may reuse them. A wrapper that exposes Unwrap() ps.Service,
// such as psd's metrics wrapper, is taken to forward calls and keep
// nothing; other services get copies. (A client that
// wrote into an extent it had sent would change a gradient under
// ps.Server's checks; this package's client never does: even a cancelled
// call keeps its extent until the answer lands.)
//
// Each frame carries its sequence number as a version word before and
// after the payload, written back to front; a reader that finds them unequal
// (or unequal to the sequence it expects) has a torn frame, and the call is
// sent again (pushes keep their (ClientID, Seq), so a re-sent push is
// applied once by the service). Extents are credits: MaxInflight bounds the
// calls in flight and the area bounds their bytes; an extent whose call was
// cancelled stays reserved until the server's answer lands. The server
// tells a client how large a response would be when it does not fit its
// extent; the client re-sends with that room and remembers it per pull
// shape, so steady-state pulls take one round trip.
//
// Why the server writes pull responses rather than the client reading
// registered weights: reading live partition memory in place needs ps to
// allocate partitions from registered slabs and to version them; writing
// the response costs the server one copy into the frame, which it makes
// under the partition lock anyway. A client-side fi_read of the response
// values straight into Dst would save the client's decode copy for a
// second round trip, but the provider would then write into the caller's
// memory, and a read still pending when its peer died could land after
// the call returned; reading into the staging area and copying is what
// the write already does.
//
// Writes use delivery-complete semantics, so a key the target rejects, or a
// peer that vanished, fails the operation on tcp;ofi_rxm. shm does not
// report a rejected write at all; for it, and for lost writes in general,
// pings carry the server's count of received frames, and a request the
// server has not received DeadAfter after it was sent fails the connection.
// A server that stops answering pings for DeadAfter is declared gone.
//
// # Progress and threading
//
// Progress is manual: one goroutine per completion queue (one per server,
// one per dialed connection) reads completions and dispatches them. When
// there are none it waits in C, off Go's scheduler: tcp and verbs block in
// fi_cq_sread on the provider's wait fd; shm, which has no wait object
// another process can signal, blocks in ppoll on a doorbell, a Unix
// datagram socket in the abstract namespace named after the endpoint,
// which every peer rings right after posting an operation to it. While
// operations are in flight, the owner awaits an arrival or an event came
// within the last millisecond, it spins briefly (16 polls, yielding) and
// then waits at most 20 µs, backing off to 500 µs, since providers move
// some transfers in steps that each need a progress call; otherwise it
// waits up to 100 ms and a local post wakes it. Never a Go timer: a
// time.Sleep under a millisecond became a millisecond whenever the process
// had nothing else to run, which was a ~1.1 ms floor per call between
// processes. An idle server with a client pinging every 100 ms uses under
// 1% of a core (TestIdleServerCPU). shm peers in different network
// namespaces cannot ring each other; their calls then wait for the 100 ms
// cold wait of the other side. Operations are posted from any goroutine
// (FI_THREAD_SAFE domains); completion callbacks run on the progress
// goroutine and never wait for queue space, since that space only frees
// through progress.
//
// # Performance
//
// Measured 2026-12-03 on 2 shared cores (load average 3.0-7.5), medians
// of three runs of `go run -tags rdma ./benchmarks/transport --transports
// tcp,grpc-echo,grpc,inproc,rdma-tcp,rdma-shm --sizes 4KiB,4MiB,64MiB
// --ops push,pull` (and with --child); benchmarks/transport/README.md has
// the tables. rdma-shm against the grpc rows of the same run, at 4 MiB:
// pull 4.43× in this process, 4.02× with the server in a child process;
// push 3.18× and 2.68× (before this work: pull 1.58× and 1.89×, push
// 1.40× and 1.75×). 4 KiB p50 with a child server: ~150 µs (1200 µs
// before the doorbell). With shared areas a 4 MiB push costs the client's
// copy of the gradient into the frame and ps.Server's finiteness check
// and SGD in place (~0.7 ms); a pull, ps.Server's copy into the frame and
// the decode into Dst. With private areas (tcp, verbs, NoSharedArea) the
// provider's copy comes on top: shm's process_vm_readv runs at 3-4 GB/s
// here. Under load the wall time is a multiple of the CPU time of both
// processes: what is left is CPU, mostly ps.Server's two passes over a
// pushed gradient.
//
// # shm
//
// Every shm endpoint gets a unique name (role, pid, counter, time); shm
// keeps its region in /dev/shm under that name and removes it on close. A
// process killed before closing leaves it behind (the tests remove what the
// processes they kill left). Client and server in one process work, but
// libfabric's shm reaches an in-process peer through that peer's own
// mapping, so an endpoint must not send to a peer that has closed: both
// sides therefore say goodbye (ctrlBye, acknowledged) before closing, and
// neither sends after it.
//
// Shared staging areas. shm moves every write of more than a few KiB with
// one process_vm_readv, which runs at 3-4 GB/s here (memmove: 8-19 GB/s).
// So by default a shm client maps its staging area from a memfd and names
// it in its hello (pid and descriptor); the server opens it through
// /proc/<pid>/fd (the permission CMA needs anyway), checks that it is the
// memfd named for this handshake's nonce, and maps it as the client's
// mirror. Frames are then written in place, back word first and front
// word last as before, and the fabric write that notifies the peer
// rewrites only the start of the frame with itself; the version words
// still catch a frame overwritten while it was read. Pulls then cost two
// copies (ps.Server into the frame, the decode into Dst) and pushes one
// (the gradient into the frame; ps.Server reads it in place). A server
// that cannot map the area answers with a private mirror and the provider
// copies, as on tcp and verbs; DialerConfig.NoSharedArea asks for that.
//
// libfabric 1.17's shm sends writes of up to 4 KiB (its inject size) by a
// path that ignores the target's verdict on the key: one with a key the
// target does not know crashed the target process (SIGSEGV), which a small
// pull request with a wrong key did. Every shm write is therefore at least
// 4 KiB + 8 bytes, which takes the checked path, and shm extents are two
// pages; the wrong-key test covers a small frame since.
//
// # Memory registration
//
// MR mode bits are followed as the provider returns them: FI_MR_VIRT_ADDR
// decides whether remote addresses are virtual addresses or offsets,
// FI_MR_PROV_KEY whose key is used, FI_MR_LOCAL that local descriptors are
// passed, FI_MR_ENDPOINT that regions are bound to the endpoint. verbs pins
// what it registers, bounded by RLIMIT_MEMLOCK (`ulimit -l`); a registration
// that fails says so and shows the limit.
//
// # Choosing RDMA
//
// Doctor(ctx, peerHost) reports the libfabric version and providers, RDMA
// devices with their ports, link layers, states and character devices
// (github.com/Mellanox/rdmamap and sysfs), the memlock limit, the interface
// that routes to the peer, and the choice auto mode would make with its
// reason — on a machine without RDMA NICs, "no RDMA devices found".
package rdma
