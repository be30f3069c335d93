//go:build rdma && cgo && linux

package integration

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/clustertest"
)

// rdmaStatus is the transport section of psd's /status.
type rdmaStatus struct {
	Transport struct {
		Fabric         string `json:"fabric"`
		FabricProvider string `json:"fabric_provider"`
		Reason         string `json:"reason"`
	} `json:"transport"`
}

func getHTTP(t *testing.T, url string) []byte {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}

// rdmaCalls sums psd's flowps_rpc_requests_total series with transport
// "rdma" and op op.
func rdmaCalls(t *testing.T, n *clustertest.Node, op string) float64 {
	t.Helper()
	return rpcCalls(t, n, "rdma", op)
}

// rpcCalls sums psd's flowps_rpc_requests_total series with the given
// transport and op.
func rpcCalls(t *testing.T, n *clustertest.Node, transport, op string) float64 {
	t.Helper()
	re := regexp.MustCompile(`^flowps_rpc_requests_total\{([^}]*)\} (\S+)$`)
	sum := 0.0
	for _, line := range strings.Split(string(getHTTP(t, "http://"+n.HTTP+"/metrics")), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil || !strings.Contains(m[1], `transport="`+transport+`"`) || !strings.Contains(m[1], `op="`+op+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// shmCluster starts two psd serving shm fabric endpoints besides gRPC and
// checks that they advertise them.
func shmCluster(t *testing.T) *clustertest.Cluster {
	t.Helper()
	c := clustertest.New(t, "--rdma-provider", "shm")
	c.Start(2)
	for _, n := range c.Nodes {
		var st rdmaStatus
		if err := json.Unmarshal(getHTTP(t, "http://"+n.HTTP+"/status"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Transport.FabricProvider != "shm" || st.Transport.Fabric == "" {
			t.Fatalf("%s /status transport %+v: want an advertised shm endpoint (is --rdma-provider wired into psd?)\n%s", n.ID, st.Transport, n.Log())
		}
	}
	return c
}

// TestTrainerOverSHMMatchesGRPC: the same one-worker sync job (logreg,
// one epoch of MNIST) trained over gRPC and over the RDMA transport on the
// shm provider, each on a fresh two-psd cluster, reaches the same test
// accuracy within 0.005; the shm run's pushes and pulls are served over the
// fabric, the gRPC run's are not.
func TestTrainerOverSHMMatchesGRPC(t *testing.T) {
	skipShort(t)
	job := []string{"--model", "logreg", "--epochs", "1", "--mode", "sync", "--workers", "1", "--progress", "60"}
	// run trains on a fresh cluster and returns the result and the calls
	// its psd served over the fabric (pushes, pulls); the cluster is
	// stopped before the next run starts.
	run := func(transport ...string) (*trainerResult, float64, float64, string) {
		c := shmCluster(t)
		defer c.StopAll()
		args := append([]string{"--join", strings.Join(c.GossipSeeds(), ",")}, job...)
		res, stderr := runTrainerBin(t, nil, append(args, transport...)...)
		var push, pull float64
		for _, n := range c.Nodes {
			push += rdmaCalls(t, n, "push")
			pull += rdmaCalls(t, n, "pull")
		}
		return res, push, pull, stderr
	}
	viaGRPC, gPush, gPull, _ := run("--transport", "grpc")
	viaSHM, sPush, sPull, stderr := run("--transport", "rdma", "--rdma-provider", "shm")
	t.Logf("test accuracy: grpc %.4f (%d steps), rdma shm %.4f (%d steps); fabric calls: grpc run %v, shm run %v pushes %v pulls",
		viaGRPC.TestAccuracy, viaGRPC.Steps, viaSHM.TestAccuracy, viaSHM.Steps, gPush+gPull, sPush, sPull)
	if viaSHM.Steps != viaGRPC.Steps {
		t.Errorf("steps: shm %d, grpc %d", viaSHM.Steps, viaGRPC.Steps)
	}
	if d := math.Abs(viaSHM.TestAccuracy - viaGRPC.TestAccuracy); d > 0.005 {
		t.Errorf("accuracy over shm %.4f differs from gRPC's %.4f by %.4f > 0.005", viaSHM.TestAccuracy, viaGRPC.TestAccuracy, d)
	}
	if viaGRPC.TestAccuracy < 0.85 {
		t.Errorf("gRPC run accuracy %.4f: the job did not train", viaGRPC.TestAccuracy)
	}
	if want := float64(viaSHM.Steps); sPush < want || sPull < want {
		t.Errorf("shm run: %v pushes and %v pulls served over the fabric, want ≥ %v each (one per step)\ntrainer stderr:\n%s", sPush, sPull, want, stderr)
	}
	if gPush+gPull != 0 {
		t.Errorf("gRPC run: %v calls served over the fabric", gPush+gPull)
	}
}

// TestTrainerAutoPicksSHMOnSameHost: with --transport auto and the shm
// override, the trainer reaches both psd over the fabric; and it says so.
func TestTrainerAutoPicksSHMOnSameHost(t *testing.T) {
	skipShort(t)
	c := shmCluster(t)
	args := []string{"--join", strings.Join(c.GossipSeeds(), ","), "--model", "logreg", "--epochs", "1", "--batch", "1000", "--progress", "60",
		"--transport", "auto", "--rdma-provider", "shm"}
	_, stderr := runTrainerBin(t, nil, args...)
	// The trainer's pulls all went over the fabric, none over gRPC (the
	// primaries of logreg's two small variables may both be one psd).
	var fabric, grpc float64
	for _, n := range c.Nodes {
		fabric += rdmaCalls(t, n, "pull")
		grpc += rpcCalls(t, n, "grpc", "pull")
	}
	if fabric == 0 || grpc != 0 {
		t.Errorf("pulls served: %v over the fabric, %v over gRPC; want all over the fabric", fabric, grpc)
	}
	if !strings.Contains(stderr, "transport chosen") || !strings.Contains(stderr, "transport=rdma") {
		t.Errorf("trainer log does not show the per-peer choice:\n%s", stderr)
	}
}
