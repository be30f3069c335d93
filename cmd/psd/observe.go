package main

import (
	"context"
	"sync"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/prometheus/client_golang/prometheus"
)

// maxPeers bounds the distinct peer label values of the per-peer series:
// client ids come from the network, so a peer could otherwise grow the
// metrics without bound. Later peers share the label value otherPeer.
const maxPeers = 256

// Peer label values that are not client ids.
const (
	unknownPeer = "unknown" // the request named no client (Create)
	otherPeer   = "other"   // beyond maxPeers distinct peers
)

// rpcMetrics are the per-call series observed() records, labelled by
// transport, peer (the caller's ClientID, or a replica's From) and op.
type rpcMetrics struct {
	requests *prometheus.CounterVec   // transport, peer, op, code
	duration *prometheus.HistogramVec // transport, peer, op
	size     *prometheus.HistogramVec // transport, peer, op
	bytes    *prometheus.CounterVec   // transport, peer, op

	mu    sync.Mutex
	peers map[string]bool
}

func newRPCMetrics() *rpcMetrics {
	labels := []string{"transport", "peer", "op"}
	return &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowps_rpc_requests_total",
			Help: "Parameter-service calls served, by transport, peer, op (create, pull, push, replicate, fetch, install) and outcome code (ok or a ps error code).",
		}, append(labels, "code")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flowps_rpc_duration_seconds",
			Help: "Time serving a call, from the transport handing it over to the response (sync and SSP waits included), by transport, peer and op.",
			// 50 µs (a small loopback pull) to 7.5 s (a long sync wait).
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14),
		}, labels),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flowps_rpc_payload_bytes",
			Help: "Tensor payload of one successful call (push: gradients and row ids received; pull: values sent), by transport, peer and op.",
			// 64 B to 256 MiB.
			Buckets: prometheus.ExponentialBuckets(64, 4, 12),
		}, labels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowps_rpc_payload_bytes_total",
			Help: "Tensor payload bytes of successful calls (push: received; pull: sent), by transport, peer and op.",
		}, labels),
		peers: map[string]bool{},
	}
}

func (r *rpcMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(r.requests, r.duration, r.size, r.bytes)
}

// peer returns the label value for a client id.
func (r *rpcMetrics) peer(id string) string {
	if id == "" {
		return unknownPeer
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[id] {
		return id
	}
	if len(r.peers) >= maxPeers {
		return otherPeer
	}
	r.peers[id] = true
	return id
}

// observe records one call that started at t0. payload counts only when
// the call succeeded.
func (r *rpcMetrics) observe(transport, peer, op string, t0 time.Time, payload int, err error) {
	peer = r.peer(peer)
	code := string(ps.CodeOf(err))
	if code == "" {
		code = "ok"
	}
	r.requests.WithLabelValues(transport, peer, op, code).Inc()
	r.duration.WithLabelValues(transport, peer, op).Observe(time.Since(t0).Seconds())
	if err == nil && payload >= 0 {
		r.size.WithLabelValues(transport, peer, op).Observe(float64(payload))
		r.bytes.WithLabelValues(transport, peer, op).Add(float64(payload))
	}
}

// observed wraps the ps.Service a transport serves so that every call's
// outcome, duration and payload are recorded in m, labelled with the
// transport "grpc" and the calling peer. When svc also implements
// ps.Replicator (ps.Server does), so does the result, with replication
// calls counted and timed by the sending primary's id.
//
// Wire it where the gRPC server is built:
//
//	n.grpc = grpctransport.NewServer(observed(n.server, n.metrics), ...)
func observed(svc ps.Service, m *metrics) ps.Service {
	return observedAs(svc, m.rpc, "grpc")
}

// observedAs is observed for any transport name.
func observedAs(svc ps.Service, r *rpcMetrics, transport string) ps.Service {
	o := &observedService{svc: svc, r: r, transport: transport}
	if rep, ok := svc.(ps.Replicator); ok {
		return &observedReplicator{observedService: o, rep: rep}
	}
	return o
}

// observedService is a ps.Service that records each call and forwards it.
type observedService struct {
	svc       ps.Service
	r         *rpcMetrics
	transport string
}

// Unwrap returns the wrapped Service.
func (o *observedService) Unwrap() ps.Service { return o.svc }

// Create implements ps.Service.
func (o *observedService) Create(ctx context.Context, req *ps.CreateRequest) (*ps.CreateResponse, error) {
	t0 := time.Now()
	resp, err := o.svc.Create(ctx, req)
	o.r.observe(o.transport, "", "create", t0, -1, err)
	return resp, err
}

// Pull implements ps.Service.
func (o *observedService) Pull(ctx context.Context, req *ps.PullRequest) (*ps.PullResponse, error) {
	t0 := time.Now()
	resp, err := o.svc.Pull(ctx, req)
	n := 0
	if resp != nil {
		for _, p := range resp.Parts {
			n += 4 * len(p.Values)
		}
	}
	o.r.observe(o.transport, req.ClientID, "pull", t0, n, err)
	return resp, err
}

// Push implements ps.Service.
func (o *observedService) Push(ctx context.Context, req *ps.PushRequest) (*ps.PushResponse, error) {
	t0 := time.Now()
	n := 0
	for _, p := range req.Parts {
		n += 4*len(p.Grad) + 8*len(p.Rows)
	}
	resp, err := o.svc.Push(ctx, req)
	o.r.observe(o.transport, req.ClientID, "push", t0, n, err)
	return resp, err
}

// Close implements ps.Service.
func (o *observedService) Close() error { return o.svc.Close() }

// observedReplicator adds the ps.Replicator calls to observedService.
type observedReplicator struct {
	*observedService
	rep ps.Replicator
}

// Replicate implements ps.Replicator.
func (o *observedReplicator) Replicate(ctx context.Context, req *ps.ReplicateRequest) (*ps.ReplicateResponse, error) {
	t0 := time.Now()
	resp, err := o.rep.Replicate(ctx, req)
	o.r.observe(o.transport, req.From, "replicate", t0, -1, err)
	return resp, err
}

// Fetch implements ps.Replicator.
func (o *observedReplicator) Fetch(ctx context.Context, req *ps.FetchRequest) (*ps.FetchResponse, error) {
	t0 := time.Now()
	resp, err := o.rep.Fetch(ctx, req)
	o.r.observe(o.transport, req.From, "fetch", t0, -1, err)
	return resp, err
}

// Install implements ps.Replicator.
func (o *observedReplicator) Install(ctx context.Context, req *ps.InstallRequest) (*ps.InstallResponse, error) {
	t0 := time.Now()
	resp, err := o.rep.Install(ctx, req)
	o.r.observe(o.transport, req.From, "install", t0, -1, err)
	return resp, err
}

var (
	_ ps.Service    = (*observedService)(nil)
	_ ps.Replicator = (*observedReplicator)(nil)
)
