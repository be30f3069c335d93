// Package inproc is an in-process transport for ps.Service calls, the
// counterpart of hashicorp/raft's InmemTransport: tests build whole clusters
// of parameter servers and trainers in one process, then cut links, split
// the network and inject faults.
//
//	net := inproc.NewNetwork()
//	stop := net.Serve("ps-0", server) // any ps.Service
//	defer stop()
//	svc, _ := net.Dialer("trainer-0").Dial(ctx, "ps-0")
//	defer svc.Close()
//	resp, err := svc.Pull(ctx, req)
//
//	net.Disconnect("trainer-0", "ps-0")            // both directions
//	net.Partition([]string{"ps-0", "trainer-0"}, []string{"ps-1"})
//	net.Heal()
//	net.SetFault(func(from, to, method string) inproc.Fault {
//		if method == inproc.MethodPush {
//			return inproc.Fault{DropResponse: true} // applied, but the caller never hears
//		}
//		return inproc.Fault{}
//	})
//
// It behaves like a wire transport where tests can tell: requests and
// responses are deep-copied (neither side aliases the other's slices; nil
// and empty slices keep their nil-ness), errors are rebuilt from their
// ps.Code and text as they would be after crossing a wire, the caller's
// context (cancellation, deadline) reaches the server, calls to an address
// nobody serves, across a cut link or during a server's stop fail with
// ps.ErrUnavailable, and Close on a dialed Service is idempotent, after which
// calls fail with ps.ErrClosed. Addresses are arbitrary strings. Dial is
// lazy: it succeeds even if nothing serves the address yet.
//
// A dialed Service also implements ps.Replicator (Replicate, Fetch,
// Install), forwarding to a served ps.Server with replication on, so
// replicated clusters, failover and network partitions run in one process;
// fault hooks see those calls as MethodReplicate, MethodFetch and
// MethodInstall. Partition states cross by their binary encoding.
//
// inproc passes the transporttest conformance suite.
package inproc
