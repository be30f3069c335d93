package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// serveEnv names the environment variable that turns this program into a
// benchmark server: FLOWPS_BENCH_SERVE=<transport> starts that
// transport's server on 127.0.0.1, prints "ADDR <address>" on stdout and
// serves until stdin is closed.
const serveEnv = "FLOWPS_BENCH_SERVE"

// serveChild is the child side of --child.
func serveChild(ctx context.Context, name string, stdin io.Reader, stdout io.Writer) error {
	b, ok := findBackend(name)
	if !ok || !b.child {
		return fmt.Errorf("%s=%q: not a transport with a child server", serveEnv, name)
	}
	e := &env{compress: "none", logger: slog.New(slog.DiscardHandler)}
	addr, stop, err := b.serve(ctx, e)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "ADDR %s\n", addr); err != nil {
		return errors.Join(err, stop())
	}
	io.Copy(io.Discard, stdin) // until the parent closes stdin or exits
	return stop()
}

// startChild runs this program as a server for transport name in a child
// process and returns its address and a stop function that ends it.
func startChild(ctx context.Context, cfg config, name string) (string, func() error, error) {
	cmd := exec.Command(cfg.Self, cfg.ChildArgs...)
	cmd.Env = append(os.Environ(), serveEnv+"="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start child server: %w", err)
	}
	waited := make(chan error, 1)
	lines := make(chan string, 1)
	go func() { // ends when the child's stdout closes
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
		waited <- cmd.Wait()
	}()
	stop := func() error {
		stdin.Close()
		t := time.NewTimer(15 * time.Second)
		defer t.Stop()
		select {
		case err := <-waited:
			return err
		case <-t.C:
			cmd.Process.Kill()
			<-waited
			return fmt.Errorf("child server for %s did not stop in 15s; killed", name)
		}
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
		if !ok {
			return "", nil, errors.Join(fmt.Errorf("child server for %s said %q, want ADDR <address>", name, line), stop())
		}
		return addr, stop, nil
	case <-ctx.Done():
	case <-t.C:
	}
	cmd.Process.Kill()
	return "", nil, errors.Join(fmt.Errorf("child server for %s did not start", name), stop())
}
