package tfconfig

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// tfjob is the TF_CONFIG the Kubeflow training operator sets (json.Marshal
// of its TFConfig struct: keys sorted, replica types lower-cased, host names
// <job>-<type>-<i>.<namespace>.svc, the TFJob port), here for a job "mnist"
// in namespace "kubeflow" with a chief, two ps and three workers; the task
// is filled in per case.
func tfjob(typ string, index int) string {
	return `{"cluster":{"chief":["mnist-chief-0.kubeflow.svc:2222"],` +
		`"ps":["mnist-ps-0.kubeflow.svc:2222","mnist-ps-1.kubeflow.svc:2222"],` +
		`"worker":["mnist-worker-0.kubeflow.svc:2222","mnist-worker-1.kubeflow.svc:2222","mnist-worker-2.kubeflow.svc:2222"]},` +
		`"task":{"type":"` + typ + `","index":` + string(rune('0'+index)) + `},"environment":"cloud"}`
}

func TestTFJobShape(t *testing.T) {
	cases := []struct {
		typ     string
		index   int
		role    Role
		id      string
		rank    int // -1: error
		chief   bool
		seeds   []string
		gossip  string
		grpc    string
		gbind   string
		grpcBnd string
	}{
		{"chief", 0, RoleTrainer, "chief-0", 0, true,
			[]string{"mnist-ps-0.kubeflow.svc:2222", "mnist-ps-1.kubeflow.svc:2222"},
			"mnist-chief-0.kubeflow.svc:2222", "mnist-chief-0.kubeflow.svc:2223", "0.0.0.0:2222", "0.0.0.0:2223"},
		{"worker", 0, RoleTrainer, "worker-0", 1, false,
			[]string{"mnist-ps-0.kubeflow.svc:2222", "mnist-ps-1.kubeflow.svc:2222"},
			"mnist-worker-0.kubeflow.svc:2222", "mnist-worker-0.kubeflow.svc:2223", "0.0.0.0:2222", "0.0.0.0:2223"},
		{"worker", 2, RoleTrainer, "worker-2", 3, false,
			[]string{"mnist-ps-0.kubeflow.svc:2222", "mnist-ps-1.kubeflow.svc:2222"},
			"mnist-worker-2.kubeflow.svc:2222", "mnist-worker-2.kubeflow.svc:2223", "0.0.0.0:2222", "0.0.0.0:2223"},
		{"ps", 1, RolePS, "ps-1", -1, false,
			[]string{"mnist-ps-0.kubeflow.svc:2222"},
			"mnist-ps-1.kubeflow.svc:2222", "mnist-ps-1.kubeflow.svc:2223", "0.0.0.0:2222", "0.0.0.0:2223"},
		{"ps", 0, RolePS, "ps-0", -1, false,
			[]string{"mnist-ps-1.kubeflow.svc:2222"},
			"mnist-ps-0.kubeflow.svc:2222", "mnist-ps-0.kubeflow.svc:2223", "0.0.0.0:2222", "0.0.0.0:2223"},
	}
	for _, c := range cases {
		cfg, err := Parse([]byte(tfjob(c.typ, c.index)))
		if err != nil {
			t.Fatalf("%s %d: %v", c.typ, c.index, err)
		}
		if cfg.Environment != "cloud" || cfg.Task.Type != c.typ || cfg.Task.Index != c.index {
			t.Errorf("%s %d: parsed %+v", c.typ, c.index, cfg)
		}
		if cfg.Role() != c.role || cfg.ID() != c.id || cfg.IsChief() != c.chief {
			t.Errorf("%s %d: role %v id %s chief %v", c.typ, c.index, cfg.Role(), cfg.ID(), cfg.IsChief())
		}
		if cfg.Workers() != 4 {
			t.Errorf("%s %d: Workers() = %d, want 4 (3 workers + chief)", c.typ, c.index, cfg.Workers())
		}
		rank, err := cfg.Rank()
		if c.rank < 0 {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %d: rank %d, %v; want an error", c.typ, c.index, rank, err)
			}
		} else if err != nil || rank != c.rank {
			t.Errorf("%s %d: rank %d, %v; want %d", c.typ, c.index, rank, err, c.rank)
		}
		if got := cfg.PSSeeds(); !reflect.DeepEqual(got, c.seeds) {
			t.Errorf("%s %d: seeds %v", c.typ, c.index, got)
		}
		ep, err := cfg.Endpoints()
		if err != nil {
			t.Fatal(err)
		}
		want := Endpoints{Host: strings.Split(c.gossip, ":")[0], Gossip: c.gossip, GossipBind: c.gbind, GRPC: c.grpc, GRPCBind: c.grpcBnd}
		if ep != want {
			t.Errorf("%s %d: endpoints %+v, want %+v", c.typ, c.index, ep, want)
		}
	}
}

func TestWorkersOnlyAndMaster(t *testing.T) {
	cfg, err := Parse([]byte(`{"cluster":{"worker":["10.0.0.1:2222","10.0.0.2:2222"],"ps":["10.0.0.3:2222"]},"task":{"type":"worker","index":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := cfg.Rank(); r != 1 || cfg.Workers() != 2 || cfg.IsChief() {
		t.Errorf("workers only: rank %d workers %d", r, cfg.Workers())
	}
	// The older operator names the chief "Master"; types are lower-cased.
	cfg, err = Parse([]byte(`{"cluster":{"Master":["m-0:2222"],"Worker":["w-0:2222"],"PS":["p-0:2222"]},"task":{"type":"MASTER","index":0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := cfg.Rank(); r != 0 || !cfg.IsChief() || cfg.Workers() != 2 || cfg.ID() != "master-0" {
		t.Errorf("master: rank %d chief %v workers %d id %s", r, cfg.IsChief(), cfg.Workers(), cfg.ID())
	}
	// An evaluator is not in the cluster.
	cfg, err = Parse([]byte(`{"cluster":{"worker":["w-0:2222"],"ps":["p-0:2222"]},"task":{"type":"evaluator","index":0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Role() != RoleEvaluator || len(cfg.PSSeeds()) != 1 {
		t.Errorf("evaluator: %v %v", cfg.Role(), cfg.PSSeeds())
	}
	if _, err := cfg.Endpoints(); !errors.Is(err, ErrInvalid) {
		t.Errorf("evaluator endpoints: %v", err)
	}
	// IPv6 hosts.
	cfg, err = Parse([]byte(`{"cluster":{"ps":["[::1]:7946"]},"task":{"type":"ps","index":0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ep, _ := cfg.Endpoints(); ep.GRPC != "[::1]:7947" || ep.Host != "::1" {
		t.Errorf("ipv6: %+v", ep)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{``, "malformed JSON"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":0}`, "malformed JSON"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":0}} {}`, "data after"},
		{`{"cluster":{"ps":["a:1"]}}`, "task.type missing"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"gpu","index":0}}`, `unknown task.type "gpu"`},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":1}}`, "task ps 1 out of range: cluster.ps has 1 entries"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"worker","index":0}}`, "task worker 0 out of range: cluster.worker has 0 entries"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":-1}}`, "negative"},
		{`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":"0"}}`, "is a JSON string"},
		{`{"cluster":{"workers":["a:1"]},"task":{"type":"ps","index":0}}`, `unknown task type "workers"`},
		{`{"cluster":{"ps":"a:1"},"task":{"type":"ps","index":0}}`, "cluster.ps must be a list"},
		{`{"cluster":{"ps":["a"]},"task":{"type":"ps","index":0}}`, `cluster.ps[0] "a"`},
		{`{"cluster":{"ps":["a:0"]},"task":{"type":"ps","index":0}}`, "port"},
		{`{"cluster":{"ps":["a:65535"]},"task":{"type":"ps","index":0}}`, "port"},
		{`{"cluster":{"ps":[":22"]},"task":{"type":"ps","index":0}}`, "empty host"},
		{`{"cluster":{"ps":["a:1","a:1"]},"task":{"type":"ps","index":0}}`, `"a:1" is both ps[0] and ps[1]`},
		{`{"cluster":{"chief":["a:1"],"master":["b:1"]},"task":{"type":"chief","index":0}}`, "at most one"},
		{`{"cluster":{"ps":["a:1"],"PS":["b:1"]},"task":{"type":"ps","index":0}}`, "given twice"},
		{`{"sparseCluster":{"worker":{"1":"a:1"},"ps":["b:1"]},"task":{"type":"worker","index":1}}`, "sparseCluster"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.in, err, c.want)
		}
	}
	cfg, _ := Parse([]byte(`{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":0}}`))
	if _, err := cfg.Rank(); !errors.Is(err, ErrInvalid) {
		t.Errorf("ps rank: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvVar, "")
	if cfg, err := FromEnv(); cfg != nil || err != nil {
		t.Errorf("blank: %v %v", cfg, err)
	}
	t.Setenv(EnvVar, tfjob("worker", 1))
	cfg, err := FromEnv()
	if err != nil || cfg.ID() != "worker-1" {
		t.Fatalf("%v %v", cfg, err)
	}
	t.Setenv(EnvVar, "{")
	if _, err := FromEnv(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "$TF_CONFIG") {
		t.Errorf("bad: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tfjob("worker", 1))
	f.Add(`{"cluster":{"ps":["[::1]:7946"]},"task":{"type":"ps","index":0}}`)
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := Parse([]byte(in))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Whatever parses is usable: the helpers do not fail or panic.
		_ = cfg.PSSeeds()
		_ = cfg.Workers()
		if cfg.Role() != RoleEvaluator {
			if _, err := cfg.Endpoints(); err != nil {
				t.Fatalf("Endpoints of a valid config: %v", err)
			}
		}
		if cfg.Role() == RoleTrainer {
			if r, err := cfg.Rank(); err != nil || r < 0 || r >= cfg.Workers() {
				t.Fatalf("rank %d of %d: %v", r, cfg.Workers(), err)
			}
		}
	})
}

func TestTFJobFile(t *testing.T) {
	b, err := os.ReadFile("../testdata/tf_config_tfjob_worker1.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != tfjob("worker", 1) {
		t.Fatalf("testdata file and tfjob() differ")
	}
	cfg, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := cfg.Rank(); r != 2 || cfg.Workers() != 4 || len(cfg.PSSeeds()) != 2 || cfg.Role() != RoleTrainer {
		t.Errorf("rank %d workers %d seeds %v", r, cfg.Workers(), cfg.PSSeeds())
	}
}
