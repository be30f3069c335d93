package rdma

import (
	"context"
	"fmt"
	"strings"
)

// Decision is auto mode's transport choice for one peer, with its reason,
// to be logged and shown per peer in status: never a silent fallback.
type Decision struct {
	// RDMA is true when the peer should be dialed over this package with
	// Provider; false means gRPC.
	RDMA     bool
	Provider string
	Reason   string
}

// Choose decides, for one peer, whether to use RDMA. peerProvider is the
// fabric provider the peer advertises ("" when it advertises no fabric
// endpoint). override, when set (tests, CI: ProviderTCP or ProviderSHM),
// skips the device checks so the RDMA path runs without RDMA hardware.
// Otherwise RDMA needs libfabric in this binary, a verbs endpoint at the
// peer, and an ACTIVE RoCE port behind the interface that routes to it
// (see Doctor). The last checks — verbs opens, the handshake's one-write
// probe succeeds — happen in Dial; a Dial error means gRPC for that peer.
func Choose(ctx context.Context, peerHost, peerProvider, override string) Decision {
	no := func(format string, args ...any) Decision {
		return Decision{Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case !Available():
		return no("%v", ErrNoRDMA)
	case peerProvider == "":
		return no("peer %s advertises no fabric endpoint", peerHost)
	case override != "":
		if err := validProvider(override); err != nil {
			return no("override: %v", err)
		}
		if override != peerProvider {
			return no("override provider %s, but peer %s advertises %s", override, peerHost, peerProvider)
		}
		return Decision{RDMA: true, Provider: override, Reason: "provider override " + override + " (device checks skipped)"}
	case peerProvider != ProviderVerbs:
		return no("peer %s advertises %s, and without an override only %s is used between hosts", peerHost, peerProvider, ProviderVerbs)
	}
	r := Doctor(ctx, peerHost)
	if !strings.HasPrefix(r.Choice, "rdma") {
		return no("%s", r.Reason)
	}
	return Decision{RDMA: true, Provider: ProviderVerbs, Reason: r.Reason}
}
