package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/auto"
	"github.com/flowps/flowps/transport/rdma"
	"github.com/prometheus/client_golang/prometheus"
)

// Values of --rdma-provider besides the libfabric provider names.
const (
	// rdmaProviderAuto (the default, also "") serves verbs;ofi_rxm when
	// this binary has libfabric, libfabric has a verbs provider, and an
	// RDMA device has an ACTIVE Ethernet (RoCE) port with its uverbs and
	// rdma_cm character devices; otherwise no fabric endpoint. shm and
	// tcp;ofi_rxm are never picked automatically: shm reaches only this
	// host and tcp;ofi_rxm is slower than gRPC between hosts; name them to
	// get them.
	rdmaProviderAuto = "auto"
	// rdmaProviderNone serves no fabric endpoint.
	rdmaProviderNone = "none"
)

// rdmaFront is psd's RDMA side: a libfabric server in front of the same
// ps.Service the gRPC server serves, or nothing, with the reason either
// way. Fabric and Provider go into this node's sharding.Member (Fabric,
// FabricProvider) so that trainers can choose RDMA for it.
type rdmaFront struct {
	srv *rdma.Server
	// Fabric is the endpoint name (hex) and Provider the libfabric
	// provider; both empty when no fabric endpoint is served.
	Fabric   string
	Provider string
	// Reason says why the endpoint is (not) served, for the log and /status.
	Reason string
}

// transportConfig holds psd's transport flags. Embed it in config and
// call addFlags and resolve, as securityConfig is.
type transportConfig struct {
	// Transport is --transport: auto serves a fabric endpoint as
	// --rdma-provider says; grpc serves none; rdma must serve one (psd
	// fails to start otherwise). Peers are always dialed over gRPC:
	// replication and migration calls are carried by gRPC only.
	Transport string
	// RDMAProvider is --rdma-provider: auto, none, or a libfabric provider.
	RDMAProvider string
}

func (c *transportConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Transport, "transport", auto.ModeAuto, "auto: serve a fabric (RDMA) endpoint as --rdma-provider says, beside gRPC; grpc: gRPC only; rdma: fail to start unless a fabric endpoint opens")
	fs.StringVar(&c.RDMAProvider, "rdma-provider", rdmaProviderAuto, "fabric endpoint to serve and advertise: auto (verbs;ofi_rxm when an ACTIVE RoCE port exists, else none: see psd doctor), none, verbs;ofi_rxm, tcp;ofi_rxm or shm (same-host trainers; tests)")
}

func (c *transportConfig) resolve() error {
	switch c.Transport {
	case auto.ModeAuto, auto.ModeGRPC, auto.ModeRDMA:
	default:
		return fmt.Errorf("--transport %q: want auto, grpc or rdma", c.Transport)
	}
	switch c.RDMAProvider {
	case "", rdmaProviderAuto, rdmaProviderNone, rdma.ProviderSHM, rdma.ProviderTCP, rdma.ProviderVerbs:
	default:
		return fmt.Errorf("--rdma-provider %q: want auto, none, %s, %s or %s", c.RDMAProvider, rdma.ProviderVerbs, rdma.ProviderTCP, rdma.ProviderSHM)
	}
	if c.Transport == auto.ModeRDMA && c.RDMAProvider == rdmaProviderNone {
		return errors.New("--transport rdma with --rdma-provider none: nothing to serve")
	}
	return nil
}

// startRDMA starts the fabric endpoint tc asks for, serving svc (pass
// observedAs(n.server, n.metrics.rpc, "rdma") so its calls are counted
// under transport "rdma"). advertised is this node's advertised gRPC
// address: verbs and tcp;ofi_rxm bind its host; shm ignores it. In auto
// mode it never fails because the machine has no RDMA: psd then serves
// gRPC alone and logs why. An explicitly named provider that cannot be
// opened, or --transport rdma without an endpoint, is an error. secured
// says gRPC uses mutual TLS: the fabric transport neither encrypts nor
// authenticates, so auto then serves no endpoint and an explicit provider
// is refused. The result is never nil on success; Close it when the node
// stops.
func startRDMA(ctx context.Context, tc transportConfig, advertised string, secured bool, svc ps.Service, log *slog.Logger) (*rdmaFront, error) {
	f := &rdmaFront{}
	provider := tc.RDMAProvider
	none := func(reason string) (*rdmaFront, error) {
		if tc.Transport == auto.ModeRDMA {
			return nil, fmt.Errorf("--transport rdma: no fabric endpoint: %s", reason)
		}
		f.Reason = reason
		log.Info("rdma: no fabric endpoint; serving gRPC only", "reason", reason)
		return f, nil
	}
	switch {
	case tc.Transport == auto.ModeGRPC:
		return none("--transport grpc")
	case provider == rdmaProviderNone:
		return none("--rdma-provider none")
	case secured && (provider == "" || provider == rdmaProviderAuto):
		return none("mutual TLS is on (--tls-*), and the fabric transport neither encrypts nor authenticates")
	case secured:
		return nil, fmt.Errorf("--rdma-provider %s with --tls-*: the fabric transport neither encrypts nor authenticates; use --rdma-provider none", provider)
	case provider == "" || provider == rdmaProviderAuto:
		p, reason := autoProvider(ctx)
		if p == "" {
			return none(reason)
		}
		provider, f.Reason = p, reason
	case provider == rdma.ProviderSHM || provider == rdma.ProviderTCP || provider == rdma.ProviderVerbs:
		if !rdma.Available() {
			return nil, fmt.Errorf("--rdma-provider %s: %w", provider, rdma.ErrNoRDMA)
		}
		f.Reason = "--rdma-provider " + provider
	default:
		return nil, fmt.Errorf("--rdma-provider %q: want auto, none, %s, %s or %s", provider, rdma.ProviderVerbs, rdma.ProviderTCP, rdma.ProviderSHM)
	}
	cfg := rdma.ServerConfig{Provider: provider, Logger: log.With("component", "rdma")}
	if host, _, err := net.SplitHostPort(advertised); err == nil && host != "" && provider != rdma.ProviderSHM {
		cfg.Node = host
	}
	srv, err := rdma.NewServer(svc, cfg)
	if err != nil {
		return nil, fmt.Errorf("--rdma-provider %s: %w", provider, err)
	}
	name, prov := srv.Endpoint()
	f.srv, f.Fabric, f.Provider = srv, hex.EncodeToString(name), prov
	log.Info("rdma: serving a fabric endpoint", "provider", prov, "addr", srv.Addr(), "reason", f.Reason)
	return f, nil
}

// autoProvider is --rdma-provider auto's choice: verbs when the checks of
// rdma.Doctor that do not depend on a peer pass, else "" and why.
func autoProvider(ctx context.Context) (provider, reason string) {
	if !rdma.Available() {
		return "", rdma.ErrNoRDMA.Error()
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r := rdma.Doctor(dctx, "")
	if r.ProviderError != "" {
		return "", "libfabric lists no providers: " + r.ProviderError
	}
	verbs := false
	for _, p := range r.Providers {
		if strings.HasPrefix(p, "verbs") {
			verbs = true
		}
	}
	if len(r.Devices) == 0 {
		return "", "no RDMA devices found"
	}
	if !verbs {
		return "", "libfabric has no verbs provider"
	}
	for _, d := range r.Devices {
		if !hasCharDevice(d.CharDevices, "uverbs") || !hasCharDevice(d.CharDevices, "rdma_cm") {
			continue
		}
		for _, p := range d.Ports {
			if p.Active() && p.LinkLayer == "Ethernet" {
				return rdma.ProviderVerbs, fmt.Sprintf("RDMA device %s port %s is ACTIVE Ethernet (RoCE)", d.Name, p.Num)
			}
		}
	}
	return "", "no RDMA device has an ACTIVE Ethernet port with uverbs and rdma_cm devices (see psd doctor)"
}

// hasCharDevice reports whether one of devs names sub and exists.
func hasCharDevice(devs []string, sub string) bool {
	for _, d := range devs {
		if strings.Contains(filepath.Base(d), sub) {
			if _, err := os.Stat(d); err == nil {
				return true
			}
		}
	}
	return false
}

// Close stops the fabric server, if any.
func (f *rdmaFront) Close() error {
	if f == nil || f.srv == nil {
		return nil
	}
	return f.srv.Close()
}

// transportStatus is the "transport" section of /status.
type transportStatus struct {
	// Fabric and FabricProvider are what this node advertises (empty
	// without a fabric endpoint); Reason says why.
	Fabric         string `json:"fabric,omitempty"`
	FabricProvider string `json:"fabric_provider,omitempty"`
	Reason         string `json:"reason"`
	// FabricClients counts clients connected over the fabric.
	FabricClients int `json:"fabric_clients"`
	// Peers is the transport this node uses for each peer it dialed, when
	// it dials through an auto.Dialer.
	Peers []auto.Choice `json:"peers,omitempty"`
}

// status returns the /status section; peers may be nil.
func (f *rdmaFront) status(peers *auto.Dialer) transportStatus {
	st := transportStatus{}
	if f != nil {
		st.Fabric, st.FabricProvider, st.Reason = f.Fabric, f.Provider, f.Reason
		if f.srv != nil {
			st.FabricClients = f.srv.Clients()
		}
	}
	if peers != nil {
		st.Peers = peers.Choices()
	}
	return st
}

var (
	mFabric = prometheus.NewDesc("flowps_fabric_endpoint",
		"1 when this node serves a fabric (RDMA) endpoint, labelled with its libfabric provider; 0 with provider \"none\" otherwise.", []string{"provider"}, nil)
	mFabricClients = prometheus.NewDesc("flowps_fabric_clients",
		"Clients connected to this node's fabric endpoint.", nil, nil)
	mPeerTransport = prometheus.NewDesc("flowps_peer_transport",
		"1 for the transport (and provider) this node uses to reach each peer it dialed.", []string{"peer", "addr", "transport", "provider"}, nil)
	mFallbacks = prometheus.NewDesc("flowps_transport_fallbacks_total",
		"Fabric errors after which calls to a peer moved to gRPC.", []string{"peer", "addr"}, nil)
)

// transportCollector exports the fabric endpoint and, when peers is set,
// the per-peer transport choices, for /metrics:
//
//	n.metrics.reg.MustRegister(transportCollector{front: front})
type transportCollector struct {
	front *rdmaFront
	peers *auto.Dialer // nil when this node does not dial through auto
}

// Describe implements prometheus.Collector.
func (c transportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- mFabric
	ch <- mFabricClients
	ch <- mPeerTransport
	ch <- mFallbacks
}

// Collect implements prometheus.Collector.
func (c transportCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.front.status(c.peers)
	if st.FabricProvider != "" {
		ch <- prometheus.MustNewConstMetric(mFabric, prometheus.GaugeValue, 1, st.FabricProvider)
	} else {
		ch <- prometheus.MustNewConstMetric(mFabric, prometheus.GaugeValue, 0, "none")
	}
	ch <- prometheus.MustNewConstMetric(mFabricClients, prometheus.GaugeValue, float64(st.FabricClients))
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(mPeerTransport, prometheus.GaugeValue, 1, p.Peer, p.Addr, p.Transport, p.Provider)
		ch <- prometheus.MustNewConstMetric(mFallbacks, prometheus.CounterValue, float64(p.Fallbacks), p.Peer, p.Addr)
	}
}
