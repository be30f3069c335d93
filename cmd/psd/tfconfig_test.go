package main

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestTFConfigFlags(t *testing.T) {
	const cluster = `{"cluster":{"chief":["127.0.0.1:5000"],"ps":["127.0.0.1:5010","127.0.0.1:5020"],"worker":["127.0.0.1:5030"]},`
	t.Setenv("TF_CONFIG", cluster+`"task":{"type":"ps","index":1}}`)
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "ps-1" || c.Gossip != "127.0.0.1:5020" || c.Listen != "127.0.0.1:5021" || !slices.Equal(c.Join, []string{"127.0.0.1:5010"}) {
		t.Errorf("from TF_CONFIG: id %q gossip %q listen %q join %v", c.ID, c.Gossip, c.Listen, c.Join)
	}

	// Flags win over TF_CONFIG.
	c, err = parseFlags([]string{"--id", "mine", "--join", "127.0.0.1:9999"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "mine" || !slices.Equal(c.Join, []string{"127.0.0.1:9999"}) || c.Gossip != "127.0.0.1:5020" {
		t.Errorf("flags over TF_CONFIG: id %q join %v gossip %q", c.ID, c.Join, c.Gossip)
	}

	// The TFJob shape: service DNS names bind the wildcard address.
	b, err := os.ReadFile("../../testdata/tf_config_tfjob_worker1.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_CONFIG", strings.Replace(string(b), `"type":"worker","index":1`, `"type":"ps","index":0`, 1))
	c, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "ps-0" || c.Gossip != "0.0.0.0:2222" || c.Listen != "0.0.0.0:2223" || !slices.Equal(c.Join, []string{"mnist-ps-1.kubeflow.svc:2222"}) {
		t.Errorf("TFJob ps-0: id %q gossip %q listen %q join %v", c.ID, c.Gossip, c.Listen, c.Join)
	}

	// The worker task of the same file is not for psd.
	t.Setenv("TF_CONFIG", string(b))
	if _, err := parseFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "worker-1") || !strings.Contains(err.Error(), "trainer") {
		t.Errorf("worker task given to psd: %v", err)
	}
	t.Setenv("TF_CONFIG", `{"cluster":{"ps":["a:1"]},"task":{"type":"ps","index":3}}`)
	if _, err := parseFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "TF_CONFIG") {
		t.Errorf("index out of range: %v", err)
	}
	t.Setenv("TF_CONFIG", "")
	if c, err := parseFlags(nil, io.Discard); err != nil || c.Listen != "127.0.0.1:7000" {
		t.Errorf("blank TF_CONFIG: %v %q", err, c.Listen)
	}
}
