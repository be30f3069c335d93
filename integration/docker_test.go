package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runScript runs a script of scripts/ from the repository root with a time
// limit, logs its output and fails the test when it exits non-zero. The
// scripts own their clean-up (traps), so cancelling sends SIGTERM first
// and gives them WaitDelay to tear down.
func runScript(t *testing.T, limit time.Duration, name string, env ...string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", name))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 60 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("%s (%v):\n%s", name, time.Since(start).Round(time.Second), out.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String()
}

// TestDockerCluster runs scripts/docker-cluster-test.sh: the compose
// cluster (3 psd with --replicas 2, 2 sync trainers on MNIST), one psd
// killed and another cut off its network for 20 s, and both trainers must
// finish at the target accuracy. It needs Docker and docker-compose and
// takes minutes, so it runs only with FLOWPS_DOCKER_TEST=1.
func TestDockerCluster(t *testing.T) {
	if os.Getenv("FLOWPS_DOCKER_TEST") != "1" {
		t.Skip("set FLOWPS_DOCKER_TEST=1 to run the Docker cluster test (needs docker and docker-compose)")
	}
	out := runScript(t, 10*time.Minute, "docker-cluster-test.sh")
	if !strings.Contains(out, "docker-cluster-test: PASS") {
		t.Fatal("the script exited 0 without reporting PASS")
	}
}

// TestPythonClient runs scripts/python-client-test.sh: the example Python
// client creates, pulls and pushes variables on two real psd. It needs a
// python3 with grpcio and grpc_tools, so it runs only with
// FLOWPS_PYTHON_TEST=1.
func TestPythonClient(t *testing.T) {
	if os.Getenv("FLOWPS_PYTHON_TEST") != "1" {
		t.Skip("set FLOWPS_PYTHON_TEST=1 to run the Python client test (needs python3-grpcio and python3-grpc-tools)")
	}
	out := runScript(t, 3*time.Minute, "python-client-test.sh")
	if !strings.Contains(out, "python-client-test: PASS") {
		t.Fatal("the script exited 0 without reporting PASS")
	}
}
