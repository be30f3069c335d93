package secure

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
)

// Files names the PEM files of one node's TLS identity.
type Files struct {
	// Cert is the node's certificate chain (PEM), Key its private key.
	Cert, Key string
	// CA holds the PEM certificates of the authorities that sign every
	// node's and client's certificate.
	CA string
}

// Enabled reports whether any file is set; a partial set is an error that
// ServerTLS and ClientTLS report.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

func (f Files) check() error {
	var missing []string
	if f.Cert == "" {
		missing = append(missing, "--tls-cert")
	}
	if f.Key == "" {
		missing = append(missing, "--tls-key")
	}
	if f.CA == "" {
		missing = append(missing, "--tls-ca")
	}
	if len(missing) > 0 {
		return fmt.Errorf("mutual TLS needs --tls-cert, --tls-key and --tls-ca together; missing %s", strings.Join(missing, ", "))
	}
	return nil
}

func (f Files) load() (tls.Certificate, *x509.CertPool, error) {
	if err := f.check(); err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", f.Cert, f.Key, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.CA)
	}
	return cert, pool, nil
}

// ServerTLS returns the configuration of a server that demands and verifies
// a client certificate signed by f.CA (mutual TLS), TLS 1.2 or newer. nil
// with a nil error means f is empty: serve plaintext.
func ServerTLS(f Files) (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientTLS returns the configuration of a client that presents f's
// certificate and verifies the server's against f.CA. nil with a nil error
// means f is empty: dial plaintext.
func ClientTLS(f Files) (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}, nil
}

// ParseGossipKey decodes a gossip encryption key: "" means none; "@PATH"
// reads the key text from a file; the text is base64 (standard or URL
// alphabet, padded or not) or hex, and must decode to 16, 24 or 32 bytes
// (AES-128, -192, -256).
func ParseGossipKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	what := "--gossip-key"
	if path, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		s = strings.TrimSpace(string(b))
		what += " file " + path
	}
	var key []byte
	if b, err := hex.DecodeString(s); err == nil && validKeyLen(len(b)) {
		key = b
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				key = b
				break
			}
		}
	}
	if key == nil {
		return nil, fmt.Errorf("%s: neither base64 nor hex", what)
	}
	if !validKeyLen(len(key)) {
		return nil, fmt.Errorf("%s: %d bytes, want 16, 24 or 32", what, len(key))
	}
	return key, nil
}

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// IsLoopback reports whether the host of HOST:PORT is a loopback address
// or "localhost". A wildcard or empty host (every interface) is not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
