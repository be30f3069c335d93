package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"

	"github.com/flowps/flowps/internal/clustertest"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// TestClusterSync trains with two trainers against two real psd processes
// in sync mode and checks that they end where one --local worker at the
// combined batch does; then a job that disagrees with the servers'
// variables (another consistency mode) fails with a clear error.
func TestClusterSync(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: skipping the psd cluster test")
	}
	c := clustertest.New(t)
	c.Start(2)
	t.Log("cluster up")
	seed := c.Nodes[0].Gossip
	common := []string{"--data", "synthetic", "--model", "logreg", "--epochs", "1", "--lr", "0.2", "--seed", "4", "--progress", "60"}

	runPair := func() []*result {
		var wg sync.WaitGroup
		res := make([]*result, 2)
		logs := make([]string, 2)
		codes := make([]int, 2)
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out, errb bytes.Buffer
				args := append([]string{"--join", seed, "--gossip", "127.0.0.1:0", "--mode", "sync", "--workers", "2",
					"--rank", string(rune('0' + r)), "--batch", "25"}, common...)
				codes[r] = run(context.Background(), args, &out, &errb)
				logs[r] = errb.String()
				lines := strings.Split(strings.TrimSpace(out.String()), "\n")
				var v result
				if json.Unmarshal([]byte(lines[len(lines)-1]), &v) == nil {
					res[r] = &v
				}
			}()
		}
		wg.Wait()
		for r := range 2 {
			if codes[r] != 0 || res[r] == nil {
				t.Fatalf("trainer %d: code %d\n%s", r, codes[r], logs[r])
			}
		}
		return res
	}
	res := runPair()
	// The psd run in this process, so by the end the trainers' pulls and
	// pushes to each psd holding their variables travel over its data
	// path's Unix socket (TCP off Linux).
	want := grpctransport.ViaUnix
	if goruntime.GOOS != "linux" {
		want = grpctransport.ViaTCP
	}
	for r := range 2 {
		if len(res[r].DataPaths) == 0 || len(res[r].DataPaths) > 2 {
			t.Errorf("trainer %d: data paths %v, want one per psd holding its variables", r, res[r].DataPaths)
		}
		for addr, via := range res[r].DataPaths {
			if via != want {
				t.Errorf("trainer %d: calls to %s over %s, want %s", r, addr, via, want)
			}
		}
	}
	code, local, stderr := runTrainer(t, append([]string{"--local", "--mode", "sync", "--batch", "50"}, common...)...)
	if code != 0 {
		t.Fatalf("local: %d %s", code, stderr)
	}
	t.Logf("cluster 2×25: loss %.6f acc %.4f (%.0f + %.0f examples/s); local 1×50: loss %.6f acc %.4f (%.0f examples/s)",
		res[0].TestLoss, res[0].TestAccuracy, res[0].ExamplesPerSec, res[1].ExamplesPerSec, local.TestLoss, local.TestAccuracy, local.ExamplesPerSec)
	for r := range 2 {
		if res[r].Steps != local.Steps || math.Abs(res[r].TestLoss-local.TestLoss) > 1e-4*local.TestLoss {
			t.Errorf("trainer %d: %d steps, test loss %.6f; local: %d steps, %.6f", r, res[r].Steps, res[r].TestLoss, local.Steps, local.TestLoss)
		}
	}
	if local.TestAccuracy < 0.9 {
		t.Errorf("local accuracy %.4f < 0.9", local.TestAccuracy)
	}

	// A second job on the same servers resumes from their version and
	// trains further instead of failing with stale steps.
	again := runPair()
	t.Logf("second job: loss %.6f acc %.4f", again[0].TestLoss, again[0].TestAccuracy)
	if again[0].Steps != res[0].Steps || !(again[0].TestLoss < res[0].TestLoss) {
		t.Errorf("second job: %d steps, test loss %.6f; first: %d steps, %.6f", again[0].Steps, again[0].TestLoss, res[0].Steps, res[0].TestLoss)
	}

	t.Log("mismatched job starts")
	code, _, stderr = runTrainer(t, append([]string{"--join", seed, "--gossip", "127.0.0.1:0", "--mode", "async", "--batch", "50"}, common...)...)
	t.Log("mismatched job done")
	if code != 1 || !strings.Contains(stderr, "logreg/kernel") || !strings.Contains(stderr, "disagrees with the parameter servers") {
		t.Errorf("mismatched job: code %d, stderr %q", code, stderr)
	}
}
