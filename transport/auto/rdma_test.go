//go:build rdma && cgo && linux

package auto_test

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/flowps/flowps/transport/auto"
	grpctransport "github.com/flowps/flowps/transport/grpc"
	"github.com/flowps/flowps/transport/rdma"
)

// TestRealFabricFallsBackToGRPC runs the real transports: one ps.Server
// served over gRPC and over libfabric; a ps.Client dials through an auto
// Dialer with the provider override, trains over the fabric, then the
// fabric server goes away mid-run and the client carries on over gRPC
// with every push applied once.
func TestRealFabricFallsBackToGRPC(t *testing.T) {
	for _, prov := range []string{rdma.ProviderSHM, rdma.ProviderTCP} {
		t.Run(prov, func(t *testing.T) { testRealFallback(t, prov) })
	}
}

func testRealFallback(t *testing.T, prov string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpctransport.NewServer(srv, grpctransport.ServerConfig{})
	go gs.Serve(lis)
	defer gs.Stop()
	fs, err := rdma.NewServer(srv, rdma.ServerConfig{Provider: prov})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	name, fprov := fs.Endpoint()
	members := ps.StaticMembers{{ID: "ps-0", Role: sharding.RolePS, Addr: lis.Addr().String(),
		Fabric: hex.EncodeToString(name), FabricProvider: fprov, Host: "elsewhere"}}

	gd := grpctransport.NewDialer(grpctransport.DialerConfig{})
	defer gd.Close()
	d, err := auto.NewDialer(auto.Config{
		Provider: prov, GRPC: gd,
		RDMA: rdma.NewDialer(rdma.DialerConfig{PingInterval: 100 * time.Millisecond, DeadAfter: 2 * time.Second, AreaBytes: 8 << 20}),
		Peer: auto.PeerFrom(members),
	})
	if err != nil {
		t.Fatal(err)
	}
	cc := ps.DefaultClientConfig()
	cc.ID, cc.Members, cc.Dialer = "trainer-0", members, d
	cc.RetryTimeout = 10 * time.Second
	cl, err := ps.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	spec := ps.VariableSpec{Name: "w", Shape: []int64{1000},
		Init:      ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}
	if err := cl.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	g := make([]float32, 1000)
	for i := range g {
		g[i] = 1
	}
	push := func(n int) {
		for i := 0; i < n; i++ {
			if err := cl.Push(ctx, "w", g, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(5)
	cs := d.Choices()
	if len(cs) != 1 || cs[0].Transport != auto.TransportRDMA || cs[0].Provider != prov {
		t.Fatalf("choices %+v, want rdma over %s", cs, prov)
	}
	if fs.Clients() != 1 {
		t.Errorf("fabric server has %d clients, want 1", fs.Clients())
	}
	fs.Close() // the fabric goes away; gRPC stays
	push(5)
	got := make([]float32, 1000)
	if _, err := cl.Pull(ctx, "w", got, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != -10 {
			t.Fatalf("w[%d] = %v, want -10", i, v)
		}
	}
	cs = d.Choices()
	if len(cs) != 1 || cs[0].Transport != auto.TransportGRPC || cs[0].Fallbacks != 1 || !strings.Contains(cs[0].Reason, "fell back") {
		t.Errorf("choices after the fabric closed %+v, want grpc after one fallback", cs)
	}
}

// TestRealModeRDMA: --transport rdma with the shm override dials the real
// fabric, and refuses a peer that advertises another provider.
func TestRealModeRDMA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "ps-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fs, err := rdma.NewServer(srv, rdma.ServerConfig{Provider: rdma.ProviderSHM})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	name, _ := fs.Endpoint()
	m := sharding.Member{ID: "ps-0", Role: sharding.RolePS, Addr: "127.0.0.1:1", Fabric: hex.EncodeToString(name), FabricProvider: rdma.ProviderSHM}
	members := ps.StaticMembers{m}
	gd := grpctransport.NewDialer(grpctransport.DialerConfig{})
	defer gd.Close()
	d, err := auto.NewDialer(auto.Config{Mode: auto.ModeRDMA, Provider: rdma.ProviderSHM, GRPC: gd,
		RDMA: rdma.NewDialer(rdma.DialerConfig{AreaBytes: 8 << 20}), Peer: auto.PeerFrom(members)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := d.Dial(ctx, m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Create(ctx, &ps.CreateRequest{Spec: ps.VariableSpec{Name: "v", Shape: []int64{4},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}, Parts: []int{0}}); err != nil {
		t.Fatalf("create over shm (gRPC address unreachable on purpose): %v", err)
	}

	d2, err := auto.NewDialer(auto.Config{Mode: auto.ModeRDMA, Provider: rdma.ProviderTCP, GRPC: gd,
		RDMA: rdma.NewDialer(rdma.DialerConfig{}), Peer: auto.PeerFrom(members)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Dial(ctx, m.Addr); err == nil || !strings.Contains(err.Error(), "advertises shm") {
		t.Errorf("rdma mode, tcp override, shm peer: err = %v, want a refusal naming the mismatch", err)
	}
}
