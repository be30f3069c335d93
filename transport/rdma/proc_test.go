//go:build rdma && cgo && linux

package rdma

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
)

// serveEnv makes the test binary a server process: it serves a fakeService
// on the named provider, prints "ADDR <addr>" and serves until its stdin
// closes.
const serveEnv = "FLOWPS_RDMA_TEST_SERVE"

func TestMain(m *testing.M) {
	if prov := os.Getenv(serveEnv); prov != "" {
		os.Exit(serveChild(prov))
	}
	os.Exit(m.Run())
}

func serveChild(prov string) int {
	cfg := DefaultServerConfig()
	cfg.Provider = prov
	s, err := NewServer(newFakeService(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		return 1
	}
	fmt.Printf("ADDR %s\n", s.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

// child is a server in another process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startChild(t *testing.T, prov string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+prov)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		c.stdin.Close()
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		removeSHM(c.cmd.Process.Pid)
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the child's address: %v", err)
	}
	c.addr = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	return c
}

// removeSHM removes what a killed process's shm endpoints left behind: a
// process that dies without closing them cannot.
func removeSHM(pid int) {
	m, _ := filepath.Glob(fmt.Sprintf("/dev/shm/flowps-*-%d-*", pid))
	for _, f := range m {
		os.Remove(f)
	}
}

func TestTwoProcesses(t *testing.T) {
	for _, prov := range providers {
		t.Run(prov, func(t *testing.T) {
			ch := startChild(t, prov)
			c := testDial(t, ch.addr)
			if got, want := c.(*conn).shared, prov == ProviderSHM; got != want {
				t.Fatalf("staging area shared with the server process: %v, want %v", got, want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n := int64(4 << 20 / 4)
			key := bigVar(t, ctx, c, "w", n)
			grad := make([]float32, n)
			for i := range grad {
				grad[i] = float32(i)
			}
			for seq := uint64(1); seq <= 2; seq++ {
				resp, err := c.Push(ctx, &ps.PushRequest{ClientID: "p", Seq: seq, Parts: []ps.PushPart{{Key: key, Grad: grad}}})
				if err != nil || resp.Versions[0] != int64(seq) {
					t.Fatalf("push %d = %+v, %v", seq, resp, err)
				}
			}
			pr, err := c.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key}}})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range pr.Parts[0].Values {
				if v != 2*grad[i] {
					t.Fatalf("value %d = %v, want %v", i, v, 2*grad[i])
				}
			}
			if _, err := c.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: ps.PartKey{Var: "x"}}}}); !errors.Is(err, ps.ErrUnknownVariable) {
				t.Fatalf("unknown variable across processes: %v", err)
			}
			c.Close()
			// A clean shutdown of the server process leaves nothing behind.
			ch.stdin.Close()
			if err := ch.cmd.Wait(); err != nil {
				t.Fatalf("server process: %v", err)
			}
			if m, _ := filepath.Glob(fmt.Sprintf("/dev/shm/flowps-*-%d-*", ch.cmd.Process.Pid)); len(m) > 0 {
				t.Fatalf("server process left %v in /dev/shm", m)
			}
		})
	}
}

func TestPeerVanishes(t *testing.T) {
	for _, prov := range providers {
		t.Run(prov, func(t *testing.T) {
			ch := startChild(t, prov)
			cfg := DefaultDialerConfig()
			cfg.PingInterval = 100 * time.Millisecond
			cfg.DeadAfter = time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			svc, err := NewDialer(cfg).Dial(ctx, ch.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			key := bigVar(t, ctx, svc, "w", 1024)
			errc := make(chan error, 1)
			go func() {
				_, err := svc.Pull(ctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key, MinVersion: 5}}})
				errc <- err
			}()
			// Kill the server once the pull was delivered and waits there.
			waitFor(t, func() bool { return svc.(*conn).delivered.Load() == 3 }) // probe, create, pull
			if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			select {
			case err := <-errc:
				if !errors.Is(err, ps.ErrUnavailable) || !ps.Retryable(err) {
					t.Fatalf("pull when the server died: %v, want ErrUnavailable", err)
				}
				t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			case <-time.After(10 * time.Second):
				t.Fatal("no error 10s after the server died")
			}
			if _, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key, Grad: make([]float32, 1024)}}}); !errors.Is(err, ps.ErrUnavailable) {
				t.Fatalf("push to a dead server: %v", err)
			}
		})
	}
}
