// Package auto chooses, per peer, the transport a ps.Client (or anything
// that dials parameter servers by their gRPC address) uses: RDMA through
// transport/rdma when the peer and this machine can, gRPC otherwise, and
// gRPC again when the fabric fails at run time. It never chooses silently:
// every choice is logged once per peer with its reason and is listed by
// Choices for status pages and metrics.
//
// # Use
//
//	g := grpctransport.NewDialer(grpctransport.DialerConfig{})
//	defer g.Close()
//	d, err := auto.NewDialer(auto.Config{
//		Mode:     auto.ModeAuto,   // or ModeGRPC, ModeRDMA (--transport)
//		Provider: "",              // or "shm", "tcp;ofi_rxm" (--rdma-provider)
//		GRPC:     g,
//		RDMA:     rdma.NewDialer(rdma.DialerConfig{}),
//		Peer:     auto.PeerFrom(membership), // finds the Member of a gRPC address
//		Logger:   logger,
//	})
//	cc := ps.DefaultClientConfig()
//	cc.Dialer = d // the client dials members' Addr, as before
//	...
//	for _, c := range d.Choices() { fmt.Println(c.Peer, c.Transport, c.Provider, c.Reason) }
//
// Dial takes the peer's gRPC address — the Addr a ps.Client dials — and
// finds the peer's advertised fabric endpoint (sharding.Member.Fabric and
// FabricProvider) through Config.Peer.
//
// # Selection
//
// ModeGRPC always uses gRPC. ModeAuto uses RDMA for a peer only when all of
// these hold, and gRPC otherwise, with the first that failed as the reason:
// this binary has libfabric (built with -tags rdma); Config.Secure is off
// (the fabric neither encrypts nor authenticates, so a TLS deployment stays
// on gRPC); the peer is in the
// membership view and advertises a well-formed fabric endpoint;
// rdma.Choose accepts it — with a Provider override (tests, CI, benchmarks)
// the peer must advertise that very provider and the device checks are
// skipped; without one the peer must advertise verbs;ofi_rxm and the
// local interface that routes to it must sit on an RDMA device with an
// ACTIVE Ethernet (RoCE) port and its uverbs and rdma_cm devices; and the
// RDMA Dial — which opens the provider, handshakes and makes one probe
// write — succeeds. ModeRDMA runs the same checks but turns any failure
// into an error wrapping ps.ErrUnavailable (a ps.Client retries, since a
// peer may advertise its endpoint a moment after joining) and never falls
// back; NewDialer refuses ModeRDMA in a binary without libfabric.
//
// Config.SameHostSHM lets auto mode use shm for a peer on this machine
// (same sharding.Member.Host) that advertises shm. It is off by default:
// between two processes on the 2-core development VM, a 4 KiB call over
// shm took about 1.1 ms at p50 against 0.1 ms over gRPC, and only large
// tensors gain (4 MiB pull 0.82 GB/s over shm, 0.50 GB/s over gRPC).
//
// # Fallback and re-sending
//
// A Service dialed over RDMA that fails with ps.ErrUnavailable (a lost
// connection, a dead endpoint; not the caller's cancellation, and not a
// service error such as ps.ErrNotOwner, which the peer answered) re-sends
// the same request over the gRPC connection to the same peer. Creates are
// idempotent, pulls read, and a push keeps its (ClientID, Seq), so the
// server applies a push that had in fact arrived over the fabric only once.
// If gRPC answers, the fabric alone is broken: the Service stays on gRPC,
// closes the fabric connection, and the Dialer logs the fallback, counts it
// in Choice.Fallbacks and keeps that peer on gRPC — across redials — until
// it advertises a different fabric endpoint (it restarted). If gRPC fails
// too, the peer is down: the error is returned and nothing changes.
//
// # Replication
//
// The RDMA transport carries only the parameter service. A dialed Service
// implements ps.Replicator when the gRPC dialer's Services do, and sends
// Replicate, Fetch and Install over gRPC whatever the choice.
//
// # Concurrency and ownership
//
// A Dialer and the Services it returns are safe for concurrent use; the
// Dialer starts no goroutines. It does not own the GRPC and RDMA dialers
// of its Config: close the Services first, then those dialers.
package auto
