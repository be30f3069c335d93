package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series returns the metric of family name whose labels include want.
func series(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// TestObservedRecordsCalls drives a real ps.Server through the wrapper
// with a ps.Client and checks the per-peer series: counts by outcome,
// latency and payload histograms, and payload bytes that match what was
// pushed and pulled.
func TestObservedRecordsCalls(t *testing.T) {
	ctx := context.Background()
	srv, err := ps.NewServer(ps.ServerConfig{ID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rpc := newRPCMetrics()
	reg := prometheus.NewRegistry()
	rpc.register(reg)
	svc := observedAs(srv, rpc, "grpc")
	if _, ok := svc.(ps.Replicator); !ok {
		t.Fatal("the wrapper of a ps.Server does not implement ps.Replicator: RegisterReplication would fail")
	}
	if u, ok := svc.(interface{ Unwrap() ps.Service }); !ok || u.Unwrap() != srv {
		t.Error("Unwrap does not return the server")
	}

	cc := ps.DefaultClientConfig()
	cc.ID = "trainer-7"
	cc.Members = ps.StaticMembers{{ID: "s", Role: sharding.RolePS, Addr: "s"}}
	cc.Dialer = ps.DirectDialer{"s": svc}
	cl, err := ps.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	spec := ps.VariableSpec{Name: "w", Shape: []int64{100, 10}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async}}
	if err := cl.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	grad := make([]float32, 1000)
	for range 3 {
		if err := cl.Push(ctx, "w", grad, 0); err != nil {
			t.Fatal(err)
		}
	}
	dst := make([]float32, 1000)
	if _, err := cl.Pull(ctx, "w", dst, 0); err != nil {
		t.Fatal(err)
	}
	// A bad push straight to the service: an unknown variable.
	_, err = svc.Push(ctx, &ps.PushRequest{ClientID: "trainer-7", Parts: []ps.PushPart{{Key: ps.PartKey{Var: "nope"}, Grad: []float32{1}}}})
	if !errors.Is(err, ps.ErrUnknownVariable) {
		t.Fatalf("push to an unknown variable: %v", err)
	}

	peer := map[string]string{"transport": "grpc", "peer": "trainer-7"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range peer {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if m := series(t, reg, "flowps_rpc_requests_total", with("op", "push", "code", "ok")); m == nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("ok pushes: %v", m)
	}
	if m := series(t, reg, "flowps_rpc_requests_total", with("op", "push", "code", string(ps.CodeUnknownVariable))); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("failed pushes: %v", m)
	}
	if m := series(t, reg, "flowps_rpc_duration_seconds", with("op", "push")); m == nil || m.GetHistogram().GetSampleCount() != 4 {
		t.Errorf("push latency histogram: %v", m)
	}
	if m := series(t, reg, "flowps_rpc_duration_seconds", with("op", "pull")); m == nil || m.GetHistogram().GetSampleCount() < 1 {
		t.Errorf("pull latency histogram: %v", m)
	}
	if m := series(t, reg, "flowps_rpc_payload_bytes_total", with("op", "push")); m == nil || m.GetCounter().GetValue() != 3*4000 {
		t.Errorf("push bytes: %v, want %d", m, 3*4000)
	}
	if m := series(t, reg, "flowps_rpc_payload_bytes", with("op", "push")); m == nil || m.GetHistogram().GetSampleCount() != 3 || m.GetHistogram().GetSampleSum() != 12000 {
		t.Errorf("push size histogram: %v", m)
	}
	if m := series(t, reg, "flowps_rpc_payload_bytes_total", with("op", "pull")); m == nil || m.GetCounter().GetValue() < 4000 {
		t.Errorf("pull bytes: %v, want ≥ 4000", m)
	}
	if m := series(t, reg, "flowps_rpc_requests_total", map[string]string{"op": "create", "peer": unknownPeer, "code": "ok"}); m == nil {
		t.Error("no create series")
	}
}

// TestPeerLabelsBounded: client ids beyond maxPeers share one label value.
func TestPeerLabelsBounded(t *testing.T) {
	r := newRPCMetrics()
	for i := range maxPeers {
		if got := r.peer(fmt.Sprint("c", i)); got != fmt.Sprint("c", i) {
			t.Fatalf("peer %d labelled %q", i, got)
		}
	}
	if got := r.peer("one-too-many"); got != otherPeer {
		t.Errorf("peer %d labelled %q, want %q", maxPeers+1, got, otherPeer)
	}
	if got := r.peer("c3"); got != "c3" {
		t.Errorf("known peer labelled %q", got)
	}
	if got := r.peer(""); got != unknownPeer {
		t.Errorf("empty id labelled %q", got)
	}
}
