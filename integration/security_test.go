package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/internal/clustertest"
	"github.com/flowps/flowps/internal/secure"
	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/sharding"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

func gossipKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// secureClient joins the cluster's gossip with key and returns a ps.Client
// whose gRPC dialer uses tlsCfg (nil: plaintext).
func secureClient(t *testing.T, c *clustertest.Cluster, id, key string, tlsCfg *tls.Config) *ps.Client {
	t.Helper()
	k, err := secure.ParseGossipKey(key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sharding.NewMembership(sharding.MembershipConfig{
		Self: sharding.Member{ID: id, Role: sharding.RoleTrainer}, BindAddr: "127.0.0.1:0",
		Profile: sharding.ProfileLocal, SecretKey: k,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Join(ctx, c.GossipSeeds()); err != nil {
		m.Shutdown()
		t.Fatal(err)
	}
	d := grpctransport.NewDialer(grpctransport.DialerConfig{TLS: tlsCfg})
	cfg := ps.DefaultClientConfig()
	cfg.ID, cfg.Members, cfg.Dialer = id, m, d
	cfg.RetryTimeout = 500 * time.Millisecond
	cl, err := ps.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		d.Close()
		m.Shutdown()
	})
	return cl
}

// TestClientWithoutCertificateRefused: psd run with mutual TLS and gossip
// encryption. A client with a certificate from the cluster's CA creates,
// pushes and pulls; clients without a certificate, with one from another
// CA, or speaking plaintext can neither push nor pull (and change
// nothing); a psd with the wrong gossip key, or none, cannot join, and
// neither can a trainer with the wrong key.
func TestClientWithoutCertificateRefused(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	pki, err := secure.NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := secure.NewPKI(filepath.Join(dir, "rogue"))
	if err != nil {
		t.Fatal(err)
	}
	psdID, _ := pki.Issue("psd")
	trainerID, _ := pki.Issue("trainer")
	rogueID, _ := rogue.Issue("trainer")
	key := gossipKey(t)
	flags := []string{"--tls-cert", psdID.Cert, "--tls-key", psdID.Key, "--tls-ca", psdID.CA, "--gossip-key", key}
	c := clustertest.New(t, flags...)
	c.Start(2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	spec := ps.VariableSpec{Name: "w", Shape: []int64{1000, 10}, Init: ps.Initializer{Kind: ps.InitConstant, Value: 1},
		Optimizer: ps.OptimizerSpec{Kind: ps.OptSGD, LR: 1}, Consistency: ps.Consistency{Mode: ps.Async},
		MinPartitionBytes: 8 << 10, MaxPartitionBytes: 8 << 10}
	goodTLS, err := secure.ClientTLS(trainerID)
	if err != nil {
		t.Fatal(err)
	}
	good := secureClient(t, c, "trainer-good", key, goodTLS)
	if err := good.CreateVariable(ctx, spec); err != nil {
		t.Fatalf("client with a valid certificate: create: %v", err)
	}
	grad := make([]float32, spec.NumElements())
	for i := range grad {
		grad[i] = 1
	}
	if err := good.Push(ctx, "w", grad, 0); err != nil {
		t.Fatalf("client with a valid certificate: push: %v", err)
	}
	vals := make([]float32, spec.NumElements())
	if _, err := good.Pull(ctx, "w", vals, 0); err != nil || vals[0] != 0 {
		t.Fatalf("client with a valid certificate: pull: %v (value %v, want 0)", err, vals[0])
	}

	noCert := goodTLS.Clone()
	noCert.Certificates = nil
	rogueTLS, err := secure.ClientTLS(secure.Files{Cert: rogueID.Cert, Key: rogueID.Key, CA: pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"no certificate", noCert},
		{"certificate from another CA", rogueTLS},
		{"plaintext", nil},
	} {
		bad := secureClient(t, c, "trainer-bad-"+strings.ReplaceAll(tc.name, " ", "-"), key, tc.tls)
		start := time.Now()
		if err := bad.CreateVariable(ctx, spec); err == nil {
			t.Errorf("%s: create succeeded", tc.name)
		} else {
			t.Logf("%s: create refused after %v: %v", tc.name, time.Since(start).Round(time.Millisecond), err)
		}
		// Talk to each psd directly too, past the client's routing.
		for _, n := range c.Nodes {
			d := grpctransport.NewDialer(grpctransport.DialerConfig{TLS: tc.tls})
			svc, err := d.Dial(ctx, n.GRPC)
			if err != nil {
				t.Fatal(err)
			}
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			key0 := ps.PartKey{Var: "w", Index: 0}
			start := time.Now()
			_, err = svc.Push(cctx, &ps.PushRequest{Parts: []ps.PushPart{{Key: key0, Grad: grad[:len(grad)/len(spec.Partitions())]}}})
			if err == nil {
				t.Errorf("%s: push to %s succeeded", tc.name, n.ID)
			} else if n == c.Nodes[0] {
				t.Logf("%s: push refused after %v: %v", tc.name, time.Since(start).Round(time.Millisecond), err)
			}
			if _, err := svc.Pull(cctx, &ps.PullRequest{Parts: []ps.PullPart{{Key: key0}}}); err == nil {
				t.Errorf("%s: pull from %s succeeded", tc.name, n.ID)
			}
			ccancel()
			svc.Close()
			d.Close()
		}
	}
	if _, err := good.Pull(ctx, "w", vals, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != 0 {
			t.Fatalf("value %d is %v after refused pushes, want 0", i, v)
		}
	}

	// Gossip: a psd with another key, or none, cannot join.
	bin := clustertest.Binaries(t)
	for _, tc := range []struct {
		name string
		key  []string
	}{
		{"wrong gossip key", []string{"--gossip-key", gossipKey(t)}},
		{"no gossip key", nil},
	} {
		args := []string{"--id", "intruder", "--listen", "127.0.0.1:0", "--http", "",
			"--gossip", "127.0.0.1:" + itoa(clustertest.FreePort(t)), "--profile", "local",
			"--join", c.Nodes[0].Gossip, "--join-timeout", "2s",
			"--tls-cert", psdID.Cert, "--tls-key", psdID.Key, "--tls-ca", psdID.CA}
		args = append(args, tc.key...)
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "psd"), args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err == nil {
			t.Errorf("%s: psd joined and exited cleanly:\n%s", tc.name, out.String())
		} else if !strings.Contains(out.String(), "--join") {
			t.Errorf("%s: psd failed, but not on join: %v\n%s", tc.name, err, out.String())
		}
	}
	c.WaitMembers(2, 5*time.Second)
	for _, n := range c.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.ID == "intruder" || strings.HasPrefix(m.ID, "spy") {
				t.Errorf("%s lists %s", n.ID, m.ID)
			}
		}
	}
	// A trainer with the wrong key cannot join either.
	wrong, _ := secure.ParseGossipKey(gossipKey(t))
	m, err := sharding.NewMembership(sharding.MembershipConfig{
		Self: sharding.Member{ID: "spy", Role: sharding.RoleTrainer}, BindAddr: "127.0.0.1:0",
		Profile: sharding.ProfileLocal, SecretKey: wrong,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	jctx, jcancel := context.WithTimeout(ctx, 2*time.Second)
	defer jcancel()
	if _, err := m.Join(jctx, c.GossipSeeds()); err == nil {
		t.Error("trainer with the wrong gossip key joined")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
