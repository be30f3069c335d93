package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// node is one running psd: the parameter server, its gRPC front, its
// gossip membership and its HTTP endpoints.
type node struct {
	cfg     config
	start   time.Time
	server  *ps.Server
	grpc    *grpctransport.Server
	members *sharding.Membership
	metrics *metrics
	fabric  *rdmaFront // rdma.go: the fabric endpoint, or none and why

	mu    sync.Mutex
	epoch uint64
}

func run(ctx context.Context, cfg config) error {
	log := cfg.Logger
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	defer lis.Close()
	addr, err := advertised(lis.Addr().String(), cfg.Advertise)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var httpLis net.Listener
	if cfg.HTTP != "" {
		if httpLis, err = net.Listen("tcp", cfg.HTTP); err != nil {
			return fmt.Errorf("--http %s: %w", cfg.HTTP, err)
		}
		defer httpLis.Close()
		httpLis = cfg.httpListener(httpLis)
	}

	n := &node{cfg: cfg, start: time.Now()}
	scfg := ps.DefaultServerConfig()
	scfg.ID = cfg.ID
	scfg.Logger = log
	// Replication is always on: with --replicas 1 it still migrates
	// partitions on join and hands them over on leave. Peers are reached
	// over gRPC at their advertised address.
	peers := grpctransport.NewDialer(grpctransport.DialerConfig{TLS: cfg.PeerTLS})
	defer peers.Close()
	scfg.Replication = &ps.ReplicationConfig{Replicas: cfg.Replicas, Dialer: peers}
	if n.server, err = ps.NewServer(scfg); err != nil {
		return err
	}
	defer n.server.Close()

	n.metrics = newMetrics(n)
	if n.fabric, err = startRDMA(ctx, cfg.transportConfig, addr, cfg.GRPCServerTLS != nil, observedAs(n.server, n.metrics.rpc, "rdma"), log); err != nil {
		return err
	}
	defer n.fabric.Close()
	n.metrics.reg.MustRegister(transportCollector{front: n.fabric})

	host, _ := os.Hostname()
	self := sharding.Member{ID: cfg.ID, Role: sharding.RolePS, Addr: addr, Host: host, Capacity: cfg.Capacity,
		Fabric: n.fabric.Fabric, FabricProvider: n.fabric.Provider}
	mcfg := sharding.MembershipConfig{
		Self:          self,
		BindAddr:      cfg.Gossip,
		AdvertiseAddr: advertiseGossip(cfg.Gossip, cfg.Advertise),
		Profile:       cfg.Profile,
		SecretKey:     cfg.GossipKey,
		Logger:        log.With("component", "gossip"),
	}
	if n.members, err = sharding.NewMembership(mcfg); err != nil {
		return fmt.Errorf("--gossip %s: %w", cfg.Gossip, err)
	}
	defer n.members.Shutdown()

	views, cancelViews := n.members.Subscribe()
	defer cancelViews()
	n.applyView(n.members.View())

	if len(cfg.Join) > 0 {
		jctx, cancel := context.WithTimeout(ctx, cfg.JoinWait)
		joined, err := n.members.Join(jctx, cfg.Join)
		cancel()
		if err != nil {
			return fmt.Errorf("--join %v: %w", cfg.Join, err)
		}
		log.Info("joined cluster", "contacted", joined, "members", len(n.members.Members()))
	}

	ck, err := startCheckpoints(ctx, cfg, n.server, n.members)
	if err != nil {
		return err
	}
	defer ck.stop()

	n.grpc = grpctransport.NewServer(observed(n.server, n.metrics), grpctransport.ServerConfig{TLS: cfg.GRPCServerTLS, DataAddr: cfg.DataAddr, Logger: log.With("component", "grpc")})
	if err := n.grpc.RegisterReplication(); err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- n.grpc.Serve(lis) }()
	var hs *http.Server
	if httpLis != nil {
		hs = &http.Server{Handler: ck.routes(n.httpHandler()), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
	}
	log.Info("psd serving", "grpc", addr, "gossip", cfg.Gossip, "http", cfg.HTTP, "profile", cfg.Profile, "fabric", n.fabric.Provider, "fabric_reason", n.fabric.Reason)

	var runErr error
loop:
	for {
		select {
		case v, ok := <-views:
			if !ok {
				break loop
			}
			n.applyView(v)
		case err := <-errc:
			runErr = err
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	log.Info("psd stopping: handing partitions over, then leaving the cluster")
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := n.server.Drain(dctx); err != nil {
		log.Warn("hand-over before leaving", "err", err)
	}
	dcancel()
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.members.Leave(lctx); err != nil {
		log.Warn("leave", "err", err)
	}
	if hs != nil {
		hs.Shutdown(lctx)
	}
	n.grpc.Stop()
	return runErr
}

// applyView hands the view to the server, which re-runs placement: it takes
// over partitions it now leads, re-replicates, and migrates.
func (n *node) applyView(v sharding.View) {
	n.mu.Lock()
	n.epoch = v.Epoch
	n.mu.Unlock()
	n.server.SetView(v)
	n.cfg.Logger.Info("membership view", "epoch", v.Epoch, "members", len(v.Members), "ps", len(v.PS()))
}

// advertised turns a bound address into one peers can dial: a wildcard host
// is replaced by --advertise or, failing that, this host's first
// non-loopback address.
func advertised(bound, advertise string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return bound, nil
	}
	if advertise != "" {
		return net.JoinHostPort(advertise, port), nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}

// advertiseGossip turns --advertise (a bare HOST) into the HOST:PORT gossip
// advertises, with the port of --gossip. Empty leaves the choice to
// sharding (the bind address, or a private address for a wildcard bind).
func advertiseGossip(gossip, advertise string) string {
	if advertise == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(gossip)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(advertise, port)
}
