package main

import (
	"crypto/tls"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowps/flowps/internal/secure"
)

func TestSecurityFlags(t *testing.T) {
	p, err := secure.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := p.Issue("psd")
	tlsArgs := []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
	c, err := parseFlags(append([]string{"--gossip-key", "AAECAwQFBgcICQoLDA0ODw=="}, tlsArgs...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCServerTLS == nil || c.GRPCServerTLS.ClientAuth != tls.RequireAndVerifyClientCert || c.PeerTLS == nil {
		t.Errorf("gRPC TLS not mutual: %+v", c.GRPCServerTLS)
	}
	if c.HTTPServerTLS != nil || len(c.GossipKey) != 16 {
		t.Errorf("HTTP TLS %v, gossip key %x", c.HTTPServerTLS, c.GossipKey)
	}
	c, err = parseFlags(append([]string{"--http", "0.0.0.0:8000", "--http-tls"}, tlsArgs...), io.Discard)
	if err != nil || c.HTTPServerTLS == nil || c.HTTPServerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("--http-tls: %v, %+v", err, c.HTTPServerTLS)
	}
	if c, err := parseFlags(nil, io.Discard); err != nil || c.GRPCServerTLS != nil || c.GossipKey != nil {
		t.Errorf("defaults: %v, TLS %v, key %x", err, c.GRPCServerTLS, c.GossipKey)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"--http", "0.0.0.0:8000"}, tlsArgs...), "loopback"},
		{[]string{"--http-tls"}, "--http-tls needs"},
		{[]string{"--tls-cert", f.Cert}, "--tls-key, --tls-ca"},
		{[]string{"--gossip-key", "short"}, "--gossip-key"},
		{[]string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", filepath.Join(p.Dir, "none")}, "--tls-ca"},
		{[]string{"--checkpoint-interval", "1m"}, "--checkpoint-interval needs"},
		{[]string{"--checkpoint-keep", "-1"}, "--checkpoint-keep"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	c, err = parseFlags([]string{"--data-dir", "/d"}, io.Discard)
	if err != nil || c.CheckpointDir != "/d/checkpoints" || c.Restore != "latest" {
		t.Errorf("checkpoint defaults: %v, %q, %q", err, c.CheckpointDir, c.Restore)
	}
}
