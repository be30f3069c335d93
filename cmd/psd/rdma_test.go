package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/rdma"
	"github.com/prometheus/client_golang/prometheus"
)

func TestStartRDMAWithoutEndpoint(t *testing.T) {
	ctx := context.Background()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, prov := range []string{"", "auto", "none"} {
		var logs bytes.Buffer
		f, err := startRDMA(ctx, transportConfig{Transport: "auto", RDMAProvider: prov}, "127.0.0.1:7000", false, srv, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatalf("--rdma-provider %q on a machine without RDMA devices: %v (psd must still start)", prov, err)
		}
		if f.Fabric != "" || f.Provider != "" || f.Reason == "" {
			t.Errorf("--rdma-provider %q: %+v, want no endpoint and a reason", prov, f)
		}
		if !strings.Contains(logs.String(), "no fabric endpoint") || !strings.Contains(logs.String(), f.Reason) {
			t.Errorf("--rdma-provider %q: log %q does not say why", prov, logs.String())
		}
		if prov != "none" && !rdma.Available() && !strings.Contains(f.Reason, "without RDMA support") {
			t.Errorf("reason %q should name the missing build tag", f.Reason)
		}
		f.Close()
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := startRDMA(ctx, transportConfig{Transport: "auto", RDMAProvider: "udp"}, "", false, srv, discard); err == nil || !strings.Contains(err.Error(), `"udp"`) {
		t.Errorf("bad provider: %v", err)
	}
	f, err := startRDMA(ctx, transportConfig{Transport: "grpc", RDMAProvider: "shm"}, "", false, srv, discard)
	if err != nil || f.Provider != "" || f.Reason != "--transport grpc" {
		t.Errorf("--transport grpc: %+v, %v; want no endpoint", f, err)
	}
	f, err = startRDMA(ctx, transportConfig{Transport: "auto", RDMAProvider: "auto"}, "", true, srv, discard)
	if err != nil || f.Provider != "" || !strings.Contains(f.Reason, "TLS") {
		t.Errorf("auto with TLS: %+v, %v; want no endpoint because of TLS", f, err)
	}
	if _, err := startRDMA(ctx, transportConfig{Transport: "auto", RDMAProvider: "shm"}, "", true, srv, discard); err == nil || !strings.Contains(err.Error(), "neither encrypts") {
		t.Errorf("shm with TLS: %v, want a refusal", err)
	}
	if !rdma.Available() {
		if _, err := startRDMA(ctx, transportConfig{Transport: "rdma"}, "", false, srv, discard); err == nil || !strings.Contains(err.Error(), "--transport rdma: no fabric endpoint") {
			t.Errorf("--transport rdma without RDMA: %v, want a refusal", err)
		}
	}
}

func TestTransportFlags(t *testing.T) {
	for _, tc := range []struct {
		cfg transportConfig
		ok  bool
	}{
		{transportConfig{"auto", "auto"}, true},
		{transportConfig{"grpc", "none"}, true},
		{transportConfig{"rdma", "shm"}, true},
		{transportConfig{"rdma", "tcp;ofi_rxm"}, true},
		{transportConfig{"rdma", "none"}, false},
		{transportConfig{"fast", "auto"}, false},
		{transportConfig{"auto", "psm3"}, false},
	} {
		if err := tc.cfg.resolve(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

// TestStartRDMAShm serves shm when built with -tags rdma (and refuses
// clearly when not), then reaches the service through the advertised
// endpoint.
func TestStartRDMAShm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := startRDMA(ctx, transportConfig{Transport: "rdma", RDMAProvider: rdma.ProviderSHM}, "127.0.0.1:7000", false, srv, log)
	if !rdma.Available() {
		if !errors.Is(err, rdma.ErrNoRDMA) {
			t.Fatalf("explicit shm without the rdma tag: %v, want rdma.ErrNoRDMA", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Provider != rdma.ProviderSHM || f.Fabric == "" {
		t.Fatalf("front %+v, want an shm endpoint", f)
	}
	// The endpoint travels in gossip metadata, which is bounded.
	m := sharding.Member{ID: "psd-with-a-rather-long-name-0", Role: sharding.RolePS, Addr: "[fd00:1234:5678::1]:65535",
		Host: "a-host-name-of-some-length.example.internal", Capacity: 1.5, Fabric: f.Fabric, FabricProvider: f.Provider}
	if b, _ := json.Marshal(m); len(b) > sharding.MaxMetaSize {
		t.Errorf("member with a fabric endpoint encodes to %d bytes > %d", len(b), sharding.MaxMetaSize)
	} else {
		t.Logf("shm endpoint name %d bytes; member metadata %d of %d bytes", len(f.Fabric)/2, len(b), sharding.MaxMetaSize)
	}
	name, err := hex.DecodeString(f.Fabric)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := rdma.NewDialer(rdma.DialerConfig{AreaBytes: 8 << 20}).Dial(ctx, rdma.FormatAddr(f.Provider, name))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: ps.VariableSpec{Name: "v", Shape: []int64{4},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}, Parts: []int{0}}); err != nil {
		t.Fatal(err)
	}
	if st := f.status(nil); st.FabricClients != 1 || st.FabricProvider != rdma.ProviderSHM {
		t.Errorf("status %+v, want one shm client", st)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(transportCollector{front: f})
	if v, ok := gauge(t, reg, "flowps_fabric_clients", ""); !ok || v != 1 {
		t.Errorf("flowps_fabric_clients = %v (found %v), want 1", v, ok)
	}
	if v, ok := gauge(t, reg, "flowps_fabric_endpoint", rdma.ProviderSHM); !ok || v != 1 {
		t.Errorf("flowps_fabric_endpoint{provider=shm} = %v (found %v), want 1", v, ok)
	}
}

func TestTransportCollectorWithoutFabric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(transportCollector{front: &rdmaFront{Reason: "none"}})
	if v, ok := gauge(t, reg, "flowps_fabric_endpoint", "none"); !ok || v != 0 {
		t.Errorf("flowps_fabric_endpoint{provider=none} = %v (found %v), want 0", v, ok)
	}
	if _, ok := gauge(t, reg, "flowps_peer_transport", ""); ok {
		t.Error("peer series without a dialer")
	}
}

// gauge finds the first series of name (whose provider label, when given,
// equals provider) in reg and returns its value.
func gauge(t *testing.T, reg *prometheus.Registry, name, provider string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if provider != "" {
				match := false
				for _, l := range m.GetLabel() {
					match = match || (l.GetName() == "provider" && l.GetValue() == provider)
				}
				if !match {
					continue
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
