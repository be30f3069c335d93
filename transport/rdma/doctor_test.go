package rdma

import (
	"context"
	"strings"
	"testing"
)

func TestDoctorHere(t *testing.T) {
	r := Doctor(context.Background(), "127.0.0.1")
	t.Log("\n" + r.String())
	if r.Choice != "grpc" {
		t.Fatalf("choice %q on a machine without RDMA devices", r.Choice)
	}
	if r.Netdev != "lo" {
		t.Errorf("route to 127.0.0.1 via %q, want lo", r.Netdev)
	}
	if !strings.Contains(r.String(), "memlock") {
		t.Errorf("report lacks the memlock line")
	}
	if r.Built && !strings.Contains(r.Reason, "no RDMA devices found") {
		t.Errorf("reason %q, want it to say no RDMA devices found", r.Reason)
	}
	if !r.Built && r.Reason != ErrNoRDMA.Error() {
		t.Errorf("reason %q without the rdma tag", r.Reason)
	}
}

func TestDecide(t *testing.T) {
	base := Report{Built: true, Providers: []string{"verbs;ofi_rxm/rdm", "tcp;ofi_rxm/rdm"}, PeerHost: "p", PeerIP: "10.0.0.2", Netdev: "eth1", RDMADevice: "mlx5_0", MemlockUnlimited: true,
		Devices: []Device{{Name: "mlx5_0", Ports: []Port{{Num: "1", State: "4: ACTIVE", LinkLayer: "Ethernet", Netdevs: []string{"eth1"}}}}}}
	choice, reason := base.decide("")
	// The character devices do not exist here, so even a perfect sysfs view
	// must not choose RDMA.
	if choice != "grpc" || !strings.Contains(reason, "uverbs") {
		t.Fatalf("decide = %q, %q; want grpc for missing uverbs", choice, reason)
	}
	down := base
	down.Devices = []Device{{Name: "mlx5_0", Ports: []Port{{Num: "1", State: "1: DOWN", LinkLayer: "Ethernet", Netdevs: []string{"eth1"}}}}}
	if c, r := down.decide(""); c != "grpc" || !strings.Contains(r, "not ACTIVE") {
		t.Fatalf("down port: %q, %q", c, r)
	}
	ib := base
	ib.Devices = []Device{{Name: "mlx5_0", Ports: []Port{{Num: "1", State: "4: ACTIVE", LinkLayer: "InfiniBand", Netdevs: []string{"eth1"}}}}}
	if c, r := ib.decide(""); c != "grpc" || !strings.Contains(r, "Ethernet") {
		t.Fatalf("infiniband port: %q, %q", c, r)
	}
	none := base
	none.RDMADevice = ""
	if c, r := none.decide(""); c != "grpc" || !strings.Contains(r, "eth1") {
		t.Fatalf("no device behind netdev: %q, %q", c, r)
	}
}

func TestChoose(t *testing.T) {
	ctx := context.Background()
	d := Choose(ctx, "127.0.0.1", "", ProviderSHM)
	if d.RDMA || !strings.Contains(d.Reason, "no fabric endpoint") && Available() {
		t.Fatalf("peer without an endpoint: %+v", d)
	}
	d = Choose(ctx, "127.0.0.1", ProviderVerbs, "")
	if d.RDMA {
		t.Fatalf("chose RDMA on a machine without RDMA devices: %+v", d)
	}
	t.Logf("verbs peer here: %s", d.Reason)
	d = Choose(ctx, "127.0.0.1", ProviderTCP, ProviderTCP)
	if d.RDMA != Available() {
		t.Fatalf("override: %+v (Available %v)", d, Available())
	}
	if Available() && d.Provider != ProviderTCP {
		t.Fatalf("override chose %q", d.Provider)
	}
	if d := Choose(ctx, "127.0.0.1", ProviderSHM, ProviderTCP); d.RDMA {
		t.Fatalf("override for another provider than the peer's: %+v", d)
	}
}
