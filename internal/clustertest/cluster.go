// Package clustertest starts real psd processes on 127.0.0.1 for
// integration tests, in the manner of raft's MakeCluster: build the binaries
// once, start a cluster with short gossip timeouts, wait by polling /status,
// kill or stop nodes, and join Go clients to the cluster over gossip.
package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/freeport"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds psd and trainer once per test process and returns the
// directory holding them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "flowps-bin-")
		if buildErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		if tags := buildTags(root); tags != "" {
			args = append(args, "-tags", tags)
		}
		args = append(args, "./cmd/psd", "./cmd/trainer")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func buildTags(root string) string {
	out, err := exec.Command(filepath.Join(root, "scripts", "detect-tags.sh")).Output()
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(out)), ",")
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate module root")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreePort returns a port on 127.0.0.1 that is free for both TCP and UDP
// right now (gossip needs both).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Node is one psd process.
type Node struct {
	ID      string
	GRPC    string
	Gossip  string
	HTTP    string
	DataDir string
	Args    []string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   sync.Mutex
	done    chan struct{}
}

// Cluster is a set of psd processes.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	Nodes []*Node
	// Extra flags given to every psd started.
	Extra []string
}

// New returns an empty cluster whose nodes are stopped when the test ends.
func New(t testing.TB, extra ...string) *Cluster {
	c := &Cluster{t: t, bin: Binaries(t), dir: t.TempDir(), Extra: extra}
	t.Cleanup(c.StopAll)
	return c
}

// Start starts n psd nodes; the first starts the cluster and the others
// join it. It waits until every node lists all of them.
func (c *Cluster) Start(n int) {
	c.t.Helper()
	for i := 0; i < n; i++ {
		c.Add()
	}
	c.WaitMembers(len(c.Nodes), 15*time.Second)
}

// Add starts one more psd that joins the first node.
func (c *Cluster) Add(extra ...string) *Node {
	c.t.Helper()
	id := fmt.Sprintf("psd-%d", len(c.Nodes))
	n := &Node{
		ID:      id,
		GRPC:    fmt.Sprintf("127.0.0.1:%d", FreePort(c.t)),
		Gossip:  fmt.Sprintf("127.0.0.1:%d", FreePort(c.t)),
		HTTP:    fmt.Sprintf("127.0.0.1:%d", FreePort(c.t)),
		DataDir: filepath.Join(c.dir, id),
	}
	n.Args = []string{"--id", id, "--listen", n.GRPC, "--gossip", n.Gossip, "--http", n.HTTP,
		"--data-dir", n.DataDir, "--profile", "local", "--log-level", "debug"}
	if len(c.Nodes) > 0 {
		var seeds []string
		for _, o := range c.Nodes {
			if o.Running() {
				seeds = append(seeds, o.Gossip)
			}
		}
		n.Args = append(n.Args, "--join", strings.Join(seeds, ","))
	}
	n.Args = append(n.Args, c.Extra...)
	n.Args = append(n.Args, extra...)
	c.Nodes = append(c.Nodes, n)
	c.startNode(n)
	return n
}

func (c *Cluster) startNode(n *Node) {
	c.t.Helper()
	n.log = &bytes.Buffer{}
	n.cmd = exec.Command(filepath.Join(c.bin, "psd"), n.Args...)
	n.cmd.Stdout = &lockedWriter{&n.logMu, n.log}
	n.cmd.Stderr = n.cmd.Stdout
	if err := n.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.ID, err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(n.cmd, n.done)
	WaitFor(c.t, 10*time.Second, n.ID+" healthy", func() error {
		if !n.Running() {
			return fmt.Errorf("exited:\n%s", n.Log())
		}
		resp, err := http.Get("http://" + n.HTTP + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// Restart starts a stopped node again with the same flags and data dir.
func (c *Cluster) Restart(n *Node) {
	c.t.Helper()
	c.startNode(n)
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Log returns what the node printed so far.
func (n *Node) Log() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	return n.log.String()
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill() { n.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful leave) and waits for the process to end.
func (n *Node) Stop() { n.signal(syscall.SIGTERM) }

func (n *Node) signal(sig syscall.Signal) {
	if !n.Running() {
		return
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// StopAll stops every running node; on a failed test it prints their logs.
func (c *Cluster) StopAll() {
	for _, n := range c.Nodes {
		n.Stop()
	}
	if c.t.Failed() {
		for _, n := range c.Nodes {
			c.t.Logf("---- %s log ----\n%s", n.ID, tail(n.Log(), 60))
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Status is the part of psd's /status document tests read.
type Status struct {
	ID      string `json:"id"`
	Members []struct {
		ID   string `json:"id"`
		Role string `json:"role"`
		Addr string `json:"addr"`
	} `json:"members"`
	Partitions []struct {
		Key struct {
			Var   string `json:"var"`
			Index int    `json:"index"`
		} `json:"key"`
		Version int64 `json:"version"`
	} `json:"partitions"`
}

// Status fetches and decodes the node's /status.
func (n *Node) Status() (Status, error) {
	var st Status
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + n.HTTP + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// PSMembers returns the ids of ps members the node lists.
func (s Status) PSMembers() []string {
	var out []string
	for _, m := range s.Members {
		if m.Role == "ps" {
			out = append(out, m.ID)
		}
	}
	return out
}

// WaitMembers waits until every running node lists exactly want ps members.
func (c *Cluster) WaitMembers(want int, timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, fmt.Sprintf("%d ps members everywhere", want), func() error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Status()
			if err != nil {
				return fmt.Errorf("%s: %w", n.ID, err)
			}
			if got := len(st.PSMembers()); got != want {
				return fmt.Errorf("%s lists %v", n.ID, st.PSMembers())
			}
		}
		return nil
	})
}

// GossipSeeds returns the gossip addresses of the running nodes.
func (c *Cluster) GossipSeeds() []string {
	var out []string
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n.Gossip)
		}
	}
	return out
}

// WaitFor polls cond every 20 ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Client joins the cluster's gossip as a trainer and returns a ps.Client
// over the gRPC transport with the given worker rank. Everything is closed
// when the test ends.
func (c *Cluster) Client(id string, worker int) *ps.Client {
	c.t.Helper()
	m, err := sharding.NewMembership(sharding.MembershipConfig{
		Self:     sharding.Member{ID: id, Role: sharding.RoleTrainer},
		BindAddr: "127.0.0.1:0",
		Profile:  sharding.ProfileLocal,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Join(ctx, c.GossipSeeds()); err != nil {
		m.Shutdown()
		c.t.Fatal(err)
	}
	d := grpctransport.NewDialer(grpctransport.DialerConfig{})
	cfg := ps.DefaultClientConfig()
	cfg.ID, cfg.Worker, cfg.Members, cfg.Dialer = id, worker, m, d
	cl, err := ps.NewClient(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		cl.Close()
		d.Close()
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.Leave(lctx)
		m.Shutdown()
	})
	return cl
}

// Service dials one node's gRPC endpoint directly, bypassing placement and
// the client's own checks, for tests of what a server does with bad
// requests.
func (n *Node) Service(t testing.TB) ps.Service {
	t.Helper()
	d := grpctransport.NewDialer(grpctransport.DialerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	svc, err := d.Dial(ctx, n.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(); d.Close() })
	return svc
}
