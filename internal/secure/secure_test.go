package secure

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake serves one TLS connection with srv and dials it with cli (nil:
// plaintext); it returns the client's error or, when the client got through,
// the server's.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			srvErr <- err
			return
		}
		_, err = io.WriteString(tc, "ok")
		srvErr <- err
	}()
	conn, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if cli == nil {
		conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		buf := make([]byte, 2)
		io.ReadFull(conn, buf)
		return <-srvErr
	}
	cli = cli.Clone()
	cli.ServerName = "127.0.0.1" // gRPC sets it from the address it dials
	tc := tls.Client(conn, cli)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// TLS 1.3 reports a rejected client certificate on the first read.
	buf := make([]byte, 2)
	if _, err := io.ReadFull(tc, buf); err != nil {
		return err
	}
	return <-srvErr
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p, err := NewPKI(filepath.Join(dir, "good"))
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := NewPKI(filepath.Join(dir, "rogue"))
	if err != nil {
		t.Fatal(err)
	}
	srvFiles, _ := p.Issue("psd")
	cliFiles, _ := p.Issue("trainer")
	rogueFiles, _ := rogue.Issue("trainer")
	srv, err := ServerTLS(srvFiles)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ClientTLS(cliFiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, srv, cli); err != nil {
		t.Fatalf("valid client: %v", err)
	}
	noCert := cli.Clone()
	noCert.Certificates = nil
	if err := handshake(t, srv, noCert); err == nil {
		t.Error("client without certificate got through")
	}
	// A certificate from another CA, trusting the right server CA.
	wrong, _ := ClientTLS(Files{Cert: rogueFiles.Cert, Key: rogueFiles.Key, CA: p.CA})
	if err := handshake(t, srv, wrong); err == nil {
		t.Error("client with a certificate from another CA got through")
	}
	// A client that does not trust the server's CA.
	distrust, _ := ClientTLS(Files{Cert: cliFiles.Cert, Key: cliFiles.Key, CA: rogue.CA})
	if err := handshake(t, srv, distrust); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client trusting another CA: %v, want a certificate error", err)
	}
	if err := handshake(t, srv, nil); err == nil {
		t.Error("plaintext client got through")
	}
}

func TestFilesErrors(t *testing.T) {
	if c, err := ServerTLS(Files{}); c != nil || err != nil {
		t.Errorf("empty files: %v, %v; want nil, nil", c, err)
	}
	_, err := ServerTLS(Files{Cert: "a.pem"})
	if err == nil || !strings.Contains(err.Error(), "--tls-key, --tls-ca") {
		t.Errorf("partial files: %v", err)
	}
	dir := t.TempDir()
	p, _ := NewPKI(dir)
	f, _ := p.Issue("x")
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := ClientTLS(Files{Cert: f.Cert, Key: f.Key, CA: bad}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
	if _, err := ClientTLS(Files{Cert: f.Cert, Key: f.Cert, CA: f.CA}); err == nil {
		t.Error("certificate as key accepted")
	}
	if _, err := ClientTLS(Files{Cert: f.Cert, Key: f.Key, CA: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing CA accepted")
	}
}

func TestParseGossipKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(key[:16])+"\n"), 0o600)
	for _, tc := range []struct {
		in   string
		want []byte
		err  string
	}{
		{"", nil, ""},
		{base64.StdEncoding.EncodeToString(key), key, ""},
		{base64.RawURLEncoding.EncodeToString(key[:24]), key[:24], ""},
		{hex.EncodeToString(key[:16]), key[:16], ""},
		{"@" + file, key[:16], ""},
		{"@" + filepath.Join(dir, "nope"), nil, "no such file"},
		{base64.StdEncoding.EncodeToString(key[:10]), nil, "10 bytes"},
		{"!!not a key!!", nil, "neither base64 nor hex"},
	} {
		got, err := ParseGossipKey(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseGossipKey(%q) = %v, want error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseGossipKey(%q) = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8000": true, "localhost:1": true, "[::1]:80": true,
		"0.0.0.0:8000": false, ":8000": false, "10.1.2.3:80": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}
