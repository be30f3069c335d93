package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flowps/flowps/internal/freeport"
)

// buildBinaries builds psd and trainer from the module at root into dir
// with the build tags scripts/detect-tags.sh prints, and returns those
// tags.
func buildBinaries(ctx context.Context, root, dir string, stderr io.Writer) (string, error) {
	tags := ""
	if out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "detect-tags.sh")).Output(); err == nil {
		tags = strings.Join(strings.Fields(string(out)), ",")
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./cmd/psd", "./cmd/trainer")
	fmt.Fprintf(stderr, "building: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return tags, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return tags, nil
}

// moduleRoot walks up from the working directory to the directory that
// holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from inside the flowps module or give --bin")
		}
		dir = parent
	}
}

// proc is one child process: its output goes to a log file, and its
// rusage is read when it ends.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stdout  bytes.Buffer // trainers: the metrics line
	done    chan struct{}
	err     error // set before done closes
}

// launcher starts child processes and ends every one still running when
// closed.
type launcher struct {
	dir   string // log files
	mu    sync.Mutex
	procs []*proc
}

// start starts bin with args; stdout is kept in memory when keepStdout,
// otherwise it goes to the log file with stderr.
func (l *launcher) start(name, bin string, args []string, keepStdout bool) (*proc, error) {
	return l.startEnv(name, bin, args, nil, keepStdout)
}

// startEnv is start with extra environment variables (NAME=value) on top
// of this process's environment.
func (l *launcher) startEnv(name, bin string, args, env []string, keepStdout bool) (*proc, error) {
	logPath := filepath.Join(l.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stderr = f
	p.cmd.Stdout = f
	if keepStdout {
		p.cmd.Stdout = &p.stdout
	}
	// Its own process group: a Ctrl-C reaches this program, which then
	// stops the children in order (trainers, then psd).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(f, "# %s %s %s\n", strings.Join(env, " "), bin, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() { // owner: the launcher; ends when the process does
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and waits for the
// process to end.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuSeconds is the user+system time of the ended process.
func (p *proc) cpuSeconds() float64 {
	if p.cmd.ProcessState == nil {
		return 0
	}
	return (p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()).Seconds()
}

// logTail returns the last lines of the process's log.
func (p *proc) logTail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	parts := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// close stops every process still running, newest first (trainers before
// the psd they talk to).
func (l *launcher) close() {
	l.mu.Lock()
	procs := append([]*proc(nil), l.procs...)
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
}

// psdNode is one running psd.
type psdNode struct {
	*proc
	id, grpc, gossip, http string
}

// startPSD starts psd number i, joining seeds (none for the first).
func (l *launcher) startPSD(ctx context.Context, bin string, i, replicas int, seeds []string) (*psdNode, error) {
	ports := make([]int, 3)
	for j := range ports {
		p, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		ports[j] = p
	}
	n := &psdNode{id: fmt.Sprintf("psd-%d", i),
		grpc:   fmt.Sprintf("127.0.0.1:%d", ports[0]),
		gossip: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		http:   fmt.Sprintf("127.0.0.1:%d", ports[2])}
	args := []string{"--id", n.id, "--listen", n.grpc, "--gossip", n.gossip, "--http", n.http,
		"--profile", "local", "--replicas", strconv.Itoa(replicas), "--log-level", "warn"}
	if len(seeds) > 0 {
		args = append(args, "--join", strings.Join(seeds, ","))
	}
	p, err := l.start(n.id, bin, args, false)
	if err != nil {
		return nil, err
	}
	n.proc = p
	err = poll(ctx, 20*time.Second, func() error {
		if !p.running() {
			return fmt.Errorf("exited (%v):\n%s", p.err, p.logTail(20))
		}
		return httpGet(ctx, "http://"+n.http+"/healthz", nil)
	})
	if err != nil {
		return nil, fmt.Errorf("%s not healthy: %w", n.id, err)
	}
	return n, nil
}

// waitMembers polls every node's /status until each lists want psd.
func waitMembers(ctx context.Context, nodes []*psdNode, want int) error {
	return poll(ctx, 20*time.Second, func() error {
		for _, n := range nodes {
			var st struct {
				Members []struct {
					Role string `json:"role"`
				} `json:"members"`
			}
			if err := httpGet(ctx, "http://"+n.http+"/status", &st); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			got := 0
			for _, m := range st.Members {
				if m.Role == "ps" {
					got++
				}
			}
			if got != want {
				return fmt.Errorf("%s lists %d psd, want %d", n.id, got, want)
			}
		}
		return nil
	})
}

// httpGet fetches url and decodes its JSON body into v (v nil: discard).
func httpGet(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// fetchProfile saves a CPU profile of seconds from a psd's pprof handler.
func fetchProfile(ctx context.Context, n *psdNode, seconds int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+10)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.http, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile of %s: %s", n.id, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// poll calls cond every 20 ms until it returns nil, ctx ends or timeout
// passes, and returns cond's last error then.
func poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %v)", err, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
