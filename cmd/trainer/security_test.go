package main

import (
	"flag"
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
	f, err := p.Issue("trainer")
	if err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*securityFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s := addSecurityFlags(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return s, s.resolve()
	}
	s, err := parse()
	if err != nil || s.TLS != nil || s.GossipKey != nil {
		t.Fatalf("no flags: %+v, %v; want plaintext, no key", s, err)
	}
	s, err = parse("--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA, "--gossip-key", "000102030405060708090a0b0c0d0e0f")
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || len(s.TLS.Certificates) != 1 || s.TLS.RootCAs == nil || len(s.GossipKey) != 16 {
		t.Errorf("resolved %+v", s)
	}
	if _, err := parse("--tls-cert", f.Cert); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("partial TLS flags: %v", err)
	}
	if _, err := parse("--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", filepath.Join(p.Dir, "none.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
}
