package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// cluster is this process's way to the parameter servers: an in-process
// server (--local) or a gossip membership and a transport dialer (--join).
type cluster struct {
	members  ps.MemberSource
	dialer   ps.Dialer
	logger   *slog.Logger
	progress io.Writer
	id       string
	closers  []func() error
	// dataPaths reports how calls to each psd travel (nil with --local).
	dataPaths func() []grpctransport.DataPath
}

// connect sets up the parameter servers cfg asks for. With --join it joins
// the gossip cluster and waits until at least one psd is in view.
func connect(ctx context.Context, cfg *config, progress io.Writer, logger *slog.Logger) (*cluster, error) {
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	c := &cluster{logger: logger, progress: progress, id: id}
	if cfg.Local {
		srv, err := ps.NewServer(ps.ServerConfig{ID: "local", Logger: logger.With("component", "ps")})
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, srv.Close)
		c.members = ps.StaticMembers{{ID: "local", Role: sharding.RolePS, Addr: "local"}}
		c.dialer = ps.DirectDialer{"local": srv}
		return c, nil
	}
	if err := c.join(ctx, cfg); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// join joins the gossip cluster at cfg.Join and waits for a psd.
func (c *cluster) join(ctx context.Context, cfg *config) error {
	seeds := cfg.joinAddrs()
	profile := sharding.ProfileLAN
	if host, _, err := net.SplitHostPort(seeds[0]); err == nil {
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			profile = sharding.ProfileLocal
		}
	}
	m, err := sharding.NewMembership(sharding.MembershipConfig{
		Self:      sharding.Member{ID: fmt.Sprintf("trainer-%d-%s", cfg.Rank, c.id), Role: sharding.RoleTrainer},
		BindAddr:  cfg.Gossip,
		SecretKey: cfg.Security.GossipKey,
		Profile:   profile,
		Logger:    c.logger.With("component", "gossip"),
	})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	c.closers = append(c.closers, func() error {
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = m.Leave(lctx)
		return m.Shutdown()
	})
	jctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
	defer cancel()
	if _, err := m.Join(jctx, seeds); err != nil {
		return fmt.Errorf("cannot join the cluster at --join %s: %w", cfg.Join, err)
	}
	// Wait (polling) until gossip shows a parameter server.
	for {
		if n := countPS(m.Members()); n > 0 {
			fmt.Fprintf(c.progress, "joined the cluster at %s: %d parameter servers, %d members in view\n", cfg.Join, n, len(m.Members()))
			break
		}
		select {
		case <-jctx.Done():
			return fmt.Errorf("joined %s but no parameter server (psd) appeared within %v: %w", cfg.Join, cfg.JoinTimeout, jctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.members = m
	d, closeDialer, dataPaths, err := newDialer(cfg, c.logger, c.progress, m)
	if err != nil {
		return err
	}
	c.dialer, c.dataPaths = d, dataPaths
	c.closers = append(c.closers, closeDialer)
	return nil
}

func countPS(ms []sharding.Member) int {
	n := 0
	for _, m := range ms {
		if m.Role == sharding.RolePS {
			n++
		}
	}
	return n
}

// client returns a parameter-server client for worker rank.
func (c *cluster) client(rank int) (*ps.Client, error) {
	cc := ps.DefaultClientConfig()
	cc.ID = fmt.Sprintf("trainer-%d-%s", rank, c.id)
	cc.Worker = rank
	cc.Members = c.members
	cc.Dialer = c.dialer
	cc.Logger = c.logger.With("component", "ps-client", "rank", rank)
	cl, err := ps.NewClient(cc)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, cl.Close)
	return cl, nil
}

// Close releases everything in reverse order of creation.
func (c *cluster) Close() error {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	c.closers = nil
	return errors.Join(errs...)
}

func randomID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
