//go:build rdma && cgo && linux

package rdma

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

var providers = []string{ProviderSHM, ProviderTCP}

func testServer(t *testing.T, prov string, svc ps.Service) *Server {
	t.Helper()
	cfg := DefaultServerConfig()
	cfg.Provider = prov
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := NewServer(svc, cfg)
	if err != nil {
		t.Fatalf("NewServer(%s): %v", prov, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testDial(t *testing.T, addr string) ps.Service {
	t.Helper()
	return testDialWith(t, addr, nil)
}

// testDialWith is testDial with edit applied to the config.
func testDialWith(t *testing.T, addr string, edit func(*DialerConfig)) ps.Service {
	t.Helper()
	cfg := DefaultDialerConfig()
	cfg.AreaBytes = 160 << 20
	cfg.PingInterval = 100 * time.Millisecond
	cfg.DeadAfter = 3 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewDialer(cfg).Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	for _, prov := range providers {
		t.Run(prov, func(t *testing.T) {
			svc := newFakeService()
			s := testServer(t, prov, svc)
			c := testDial(t, s.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			spec := ps.VariableSpec{Name: "w", Shape: []int64{4, 3}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 1}}
			cr, err := c.Create(ctx, &ps.CreateRequest{Spec: spec, Parts: []int{0}})
			if err != nil || len(cr.Versions) != 1 || cr.Versions[0] != 0 {
				t.Fatalf("Create = %+v, %v", cr, err)
			}
			key := ps.PartKey{Var: "w", Index: 0}
			grad := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
			pr, err := c.Push(ctx, &ps.PushRequest{ClientID: "t", Seq: 1, Parts: []ps.PushPart{{Key: key, Grad: grad}}})
			if err != nil || len(pr.Versions) != 1 || pr.Versions[0] != 1 {
				t.Fatalf("Push = %+v, %v", pr, err)
			}
			pl, err := c.Pull(ctx, &ps.PullRequest{ClientID: "t", Parts: []ps.PullPart{{Key: key}, {Key: key, Rows: []int64{2}}}})
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			if len(pl.Parts) != 2 || pl.Parts[0].Version != 1 || len(pl.Parts[0].Values) != 12 {
				t.Fatalf("Pull = %+v", pl)
			}
			for i, v := range pl.Parts[0].Values {
				if v != 1+grad[i] {
					t.Fatalf("value %d = %v, want %v", i, v, 1+grad[i])
				}
			}
			if got := pl.Parts[1].Values; len(got) != 3 || got[0] != 8 || got[2] != 10 {
				t.Fatalf("sparse pull = %v", got)
			}
			_, err = c.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "nope"}}}})
			if !errors.Is(err, ps.ErrUnknownVariable) {
				t.Fatalf("pull of unknown variable: %v, want ErrUnknownVariable", err)
			}
			_, err = c.Push(ctx, &ps.PushRequest{ClientID: "t", Seq: 2, Parts: []ps.PushPart{{Key: key, Grad: grad[:5]}}})
			if !errors.Is(err, ps.ErrShapeMismatch) {
				t.Fatalf("short push: %v, want ErrShapeMismatch", err)
			}
		})
	}
}
