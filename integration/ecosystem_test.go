package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowps/flowps/data"
	"github.com/flowps/flowps/formats/tfevents"
	"github.com/flowps/flowps/internal/clustertest"
	"github.com/flowps/flowps/ps"
)

// trainerResult is the part of the trainer's final JSON line these tests
// read.
type trainerResult struct {
	Rank         int     `json:"rank"`
	Workers      int     `json:"workers"`
	Steps        int64   `json:"steps"`
	TestAccuracy float64 `json:"test_accuracy"`
	// EpochTestAccuracy is the test accuracy after each epoch.
	EpochTestAccuracy []float64 `json:"epoch_test_accuracy"`
	TrainAccuracy     float64   `json:"train_accuracy"`
	BytesPushed       int64     `json:"bytes_pushed"`
	BytesPulled       int64     `json:"bytes_pulled"`
	EventFile         string    `json:"event_file"`
	LoadSeconds       float64   `json:"load_seconds"`
	Params            int       `json:"params"`
}

// runTrainerBin runs the trainer binary with env added to this process's
// environment and returns its final JSON line decoded and its stderr.
func runTrainerBin(t *testing.T, env []string, args ...string) (*trainerResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	res, stderr, err := runTrainer(ctx, filepath.Join(clustertest.Binaries(t), "trainer"), env, args...)
	if err != nil {
		t.Fatalf("trainer %v: %v", args, err)
	}
	return res, stderr
}

// runTrainer runs the trainer binary with env added to this process's
// environment and returns its final JSON line decoded and its stderr. It
// returns errors rather than failing the test, so it can run in a
// goroutine.
func runTrainer(ctx context.Context, bin string, env []string, args ...string) (*trainerResult, string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), fmt.Errorf("%v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res trainerResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return nil, stderr.String(), fmt.Errorf("last stdout line: %v\n%s", err, stdout.String())
	}
	return &res, stderr.String(), nil
}

// TestTrainerLogdirWritesTensorBoardEvents: the trainer process writes an
// event file that package tfevents reads back with the progress tags at
// increasing steps and one point per epoch of the epoch tags.
func TestTrainerLogdirWritesTensorBoardEvents(t *testing.T) {
	skipShort(t)
	logdir := t.TempDir()
	res, _ := runTrainerBin(t, nil, "--local", "--data", "synthetic", "--model", "logreg", "--epochs", "2",
		"--batch", "50", "--progress", "0.01", "--logdir", logdir)
	files, err := tfevents.Files(logdir)
	if err != nil || len(files) != 1 || files[0] != res.EventFile || !strings.HasSuffix(files[0], ".rank-0") {
		t.Fatalf("event files %v (%v), result names %q", files, err, res.EventFile)
	}
	evs, err := tfevents.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].FileVersion != "brain.Event:2" {
		t.Errorf("first event: file_version %q", evs[0].FileVersion)
	}
	s := tfevents.Scalars(evs)
	for _, tag := range []string{"loss/train", "examples_per_sec", "learning_rate", "bytes/pushed_mib", "bytes/pulled_mib"} {
		pts := s[tag]
		if len(pts) < 2 {
			t.Errorf("%s: %d points, want several", tag, len(pts))
			continue
		}
		for i := 1; i < len(pts); i++ {
			if pts[i].Step <= pts[i-1].Step {
				t.Errorf("%s: step %d after %d", tag, pts[i].Step, pts[i-1].Step)
			}
		}
		if last := pts[len(pts)-1].Step; last != res.Steps {
			t.Errorf("%s: last step %d, want %d", tag, last, res.Steps)
		}
	}
	if lr := s["learning_rate"][0].Value; math.Abs(lr-0.1) > 1e-7 {
		t.Errorf("learning_rate %v, want 0.1", lr)
	}
	for _, tag := range []string{"accuracy/train", "accuracy/test", "loss/test"} {
		pts := s[tag]
		if len(pts) != 2 || pts[0].Step != res.Steps/2 || pts[1].Step != res.Steps {
			t.Errorf("%s: %+v, want steps %d and %d", tag, pts, res.Steps/2, res.Steps)
		}
	}
	if acc := s["accuracy/test"]; len(acc) == 2 && math.Abs(acc[1].Value-res.TestAccuracy) > 1e-6 {
		t.Errorf("accuracy/test %v, final result %v", acc[1].Value, res.TestAccuracy)
	}
	if p := s["bytes/pushed_mib"]; len(p) > 0 && math.Abs(p[len(p)-1].Value*(1<<20)-float64(res.BytesPushed)) > 1e-4*float64(res.BytesPushed) {
		t.Errorf("bytes/pushed_mib %v MiB, result %d bytes", p[len(p)-1].Value, res.BytesPushed)
	}
}

// TestTFRecordMNISTMatchesIDX: `trainer convert` writes MNIST as gzipped
// TFRecord shards of raw-byte Examples; one epoch of logreg on them
// reaches the accuracy of one epoch on the IDX files (±0.005; the bytes
// format is exact for MNIST, so in practice the runs are identical).
func TestTFRecordMNISTMatchesIDX(t *testing.T) {
	skipShort(t)
	if _, err := data.ResolveDir(t.Context(), "mnist"); err != nil {
		t.Skipf("real MNIST not available: %v", err)
	}
	out := filepath.Join(t.TempDir(), "mnist-tfr")
	cmd := exec.Command(filepath.Join(clustertest.Binaries(t), "trainer"), "convert", "--out", out, "--format", "bytes", "--gzip", "--shards", "4")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("convert: %v\n%s", err, b)
	}
	common := []string{"--local", "--model", "logreg", "--epochs", "1", "--batch", "128", "--lr", "0.1"}
	idx, _ := runTrainerBin(t, nil, append(common, "--data", "mnist")...)
	tfr, _ := runTrainerBin(t, nil, append(common, "--data", filepath.Join(out, "train"), "--test-data", filepath.Join(out, "test"))...)
	t.Logf("logreg 1 epoch: IDX %.4f (load %.1fs), TFRecord %.4f (load %.1fs)", idx.TestAccuracy, idx.LoadSeconds, tfr.TestAccuracy, tfr.LoadSeconds)
	if math.Abs(idx.TestAccuracy-tfr.TestAccuracy) > 0.005 {
		t.Errorf("TFRecord accuracy %.4f, IDX %.4f: differ by more than 0.005", tfr.TestAccuracy, idx.TestAccuracy)
	}
	if idx.TestAccuracy < 0.89 {
		t.Errorf("IDX accuracy %.4f < 0.89: the comparison needs a model that learned", idx.TestAccuracy)
	}
}

// TestLibSVMHeartScaleLogreg: logistic regression on LIBSVM's heart_scale
// (270 rows, 13 features, labels ±1), 54 rows held out, reaches 0.75 test
// accuracy (measured: 0.8519; the majority class, -1, is 56% of the
// file).
func TestLibSVMHeartScaleLogreg(t *testing.T) {
	skipShort(t)
	res, _ := runTrainerBin(t, nil, "--local", "--model", "logreg", "--data", "libsvm:../testdata/libsvm_heart_scale",
		"--epochs", "30", "--batch", "8", "--lr", "0.1")
	t.Logf("heart_scale logreg: test accuracy %.4f, train accuracy %.4f", res.TestAccuracy, res.TrainAccuracy)
	if res.Params != 28 {
		t.Errorf("params %d, want 28 (13×2 weights, 2 biases)", res.Params)
	}
	if res.TestAccuracy < 0.75 {
		t.Errorf("test accuracy %.4f < 0.75", res.TestAccuracy)
	}
}

// psdProc is a psd process started by these tests with its own
// environment.
type psdProc struct {
	cmd  *exec.Cmd
	http string
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func (p *psdProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *psdProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func startPsd(t *testing.T, env []string, args ...string) *psdProc {
	t.Helper()
	p := &psdProc{http: fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t)), done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(clustertest.Binaries(t), "psd"),
		append([]string{"--http", p.http, "--profile", "local", "--data-dir", t.TempDir()}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- psd %s log ----\n%s", p.http, p.logText())
		}
	})
	return p
}

func (p *psdProc) get(path string) (string, error) {
	select {
	case <-p.done:
		return "", fmt.Errorf("psd exited:\n%s", p.logText())
	default:
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + p.http + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// freeGossipPort returns a port P free for TCP and UDP whose P+1 (the gRPC
// port of the TF_CONFIG convention) is free for TCP too.
func freeGossipPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := clustertest.FreePort(t)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// TestTFConfigTFJobShape: the TF_CONFIG of testdata (Kubeflow's TFJob
// shape: 1 chief, 2 ps, 3 workers; this task worker 1), with its hosts
// replaced by 127.0.0.1 ports, starts two psd as ps-0 and ps-1 (id,
// gossip port, gRPC port+1 and the other ps as seed, all from TF_CONFIG)
// and a trainer as worker 1: rank 2 of 4 workers, joining through the ps
// seeds. The psd's metrics show the pushes of the trainer with rank 2.
func TestTFConfigTFJobShape(t *testing.T) {
	skipShort(t)
	raw, err := os.ReadFile("../testdata/tf_config_tfjob_worker1.json")
	if err != nil {
		t.Fatal(err)
	}
	var tc struct {
		Cluster     map[string][]string `json:"cluster"`
		Task        map[string]any      `json:"task"`
		Environment string              `json:"environment"`
	}
	if err := json.Unmarshal(raw, &tc); err != nil {
		t.Fatal(err)
	}
	ports := map[string][]int{}
	for typ, addrs := range tc.Cluster {
		for i := range addrs {
			p := freeGossipPort(t)
			ports[typ] = append(ports[typ], p)
			addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
		}
	}
	withTask := func(typ string, index int) string {
		tc.Task = map[string]any{"type": typ, "index": index}
		b, err := json.Marshal(tc)
		if err != nil {
			t.Fatal(err)
		}
		return "TF_CONFIG=" + string(b)
	}

	ps0 := startPsd(t, []string{withTask("ps", 0)})
	ps1 := startPsd(t, []string{withTask("ps", 1)})
	type status struct {
		ID        string `json:"id"`
		Addr      string `json:"addr"`
		Gossip    string `json:"gossip"`
		Data      string `json:"data"`
		DataLocal string `json:"data_local"`
		Members   []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"members"`
	}
	for i, p := range []*psdProc{ps0, ps1} {
		clustertest.WaitFor(t, 20*time.Second, fmt.Sprintf("ps-%d sees both ps", i), func() error {
			body, err := p.get("/status")
			if err != nil {
				return err
			}
			var st status
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return err
			}
			wantGossip := fmt.Sprintf("127.0.0.1:%d", ports["ps"][i])
			wantAddr := fmt.Sprintf("127.0.0.1:%d", ports["ps"][i]+1)
			if st.ID != fmt.Sprintf("ps-%d", i) || st.Gossip != wantGossip || st.Addr != wantAddr {
				return fmt.Errorf("id %q gossip %q addr %q, want ps-%d %s %s", st.ID, st.Gossip, st.Addr, i, wantGossip, wantAddr)
			}
			if !strings.HasPrefix(st.Data, "127.0.0.1:") || goruntime.GOOS == "linux" && !strings.HasPrefix(st.DataLocal, "@flowps-data-") {
				return fmt.Errorf("data path %q and %q on /status, want 127.0.0.1:PORT and (Linux) @flowps-data-…", st.Data, st.DataLocal)
			}
			n := 0
			for _, m := range st.Members {
				if m.Role == "ps" {
					n++
				}
			}
			if n != 2 {
				return fmt.Errorf("%d ps members", n)
			}
			return nil
		})
	}

	// The trainer is worker 1 of a job whose chief and other workers are
	// not started: async mode lets it train alone.
	res, stderr := runTrainerBin(t, []string{withTask("worker", 1)}, "--data", "synthetic", "--model", "logreg",
		"--epochs", "1", "--batch", "100", "--mode", "async", "--join-timeout", "20s")
	if res.Rank != 2 || res.Workers != 4 {
		t.Errorf("trainer rank %d of %d workers, want 2 of 4 (chief + 3 workers)", res.Rank, res.Workers)
	}
	if !strings.Contains(stderr, "TF_CONFIG: task worker-1 is rank 2 of 4 workers") || !strings.Contains(stderr, "gossip join rank workers") {
		t.Errorf("trainer did not report its TF_CONFIG flags:\n%s", stderr)
	}
	if !strings.Contains(stderr, "2 parameter servers") {
		t.Errorf("trainer did not see both psd:\n%s", stderr)
	}
	if res.TestAccuracy < 0.8 {
		t.Errorf("test accuracy %.4f", res.TestAccuracy)
	}
	// The pushes reached the psd under the rank-2 trainer's client id.
	push := regexp.MustCompile(`flowps_rpc_requests_total\{code="ok",op="push",peer="trainer-2-[0-9a-f]+",transport="grpc"\} (\d+)`)
	total := 0
	for _, p := range []*psdProc{ps0, ps1} {
		body, err := p.get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range push.FindAllStringSubmatch(body, -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	// logreg has two variables (kernel, bias), each pushed once per step;
	// a push goes to the primary only (replicas get replication calls).
	if want := int(2 * res.Steps); total != want {
		t.Errorf("psd counted %d pushes from trainer-2-*, want %d (2 variables × %d steps)", total, want, res.Steps)
	}
}

// TestMetricsHistogramsAfterPush: after a client pushes and pulls, psd's
// /metrics exposes the per-peer latency and payload histograms and counts.
func TestMetricsHistogramsAfterPush(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t)
	c.Start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.Client("metrics-client", 0)
	spec := ps.VariableSpec{Name: "m", Shape: []int64{256, 64}, Init: ps.Initializer{Kind: ps.InitZeros},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 0.1}, Consistency: ps.Consistency{Mode: ps.Async}}
	if err := cl.CreateVariable(ctx, spec); err != nil {
		t.Fatal(err)
	}
	grad := make([]float32, 256*64)
	for range 5 {
		if err := cl.Push(ctx, "m", grad, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Pull(ctx, "m", grad, 0); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + c.Nodes[0].HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	// c.Client's ps.Client uses its id as ClientID.
	peer := `peer="` + cl.ID() + `"`
	for _, want := range []string{
		`flowps_rpc_requests_total{code="ok",op="push",` + peer + `,transport="grpc"} 5`,
		`flowps_rpc_duration_seconds_count{op="push",` + peer + `,transport="grpc"} 5`,
		`flowps_rpc_duration_seconds_bucket{op="push",` + peer + `,transport="grpc",le="+Inf"} 5`,
		`flowps_rpc_payload_bytes_sum{op="push",` + peer + `,transport="grpc"} 327680`,
		`flowps_rpc_payload_bytes_total{op="push",` + peer + `,transport="grpc"} 327680`,
		`flowps_rpc_duration_seconds_count{op="pull",` + peer + `,transport="grpc"}`,
		`flowps_rpc_payload_bytes_total{op="pull",` + peer + `,transport="grpc"} 65536`,
		`flowps_partitions_owned 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		var rpc []string
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "flowps_rpc_") && !strings.Contains(l, "_bucket") {
				rpc = append(rpc, l)
			}
		}
		t.Logf("flowps_rpc_ lines:\n%s", strings.Join(rpc, "\n"))
	}
}
