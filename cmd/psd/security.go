package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"

	"github.com/flowps/flowps/internal/secure"
)

// securityConfig is psd's security configuration: mutual TLS on gRPC (and
// optionally on HTTP) and the gossip encryption key. parseFlags fills the
// flag fields and calls resolve, which loads the files.
type securityConfig struct {
	// TLSFiles are --tls-cert, --tls-key and --tls-ca.
	TLSFiles secure.Files
	// HTTPTLS is --http-tls: serve the HTTP endpoints with the same mutual
	// TLS as gRPC.
	HTTPTLS bool
	// gossipKeyText is --gossip-key as given.
	gossipKeyText string

	// GRPCServerTLS is what the gRPC server serves with (nil: plaintext).
	GRPCServerTLS *tls.Config
	// PeerTLS is what this psd presents when it dials another psd
	// (replication, migration); nil: plaintext.
	PeerTLS *tls.Config
	// HTTPServerTLS is what the HTTP server serves with (nil: plaintext).
	HTTPServerTLS *tls.Config
	// GossipKey is the memberlist encryption key (nil: none).
	GossipKey []byte
}

func (s *securityConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.TLSFiles.Cert, "tls-cert", "", "PEM certificate of this node; with --tls-key and --tls-ca turns on mutual TLS for gRPC (plaintext is then refused)")
	fs.StringVar(&s.TLSFiles.Key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.TLSFiles.CA, "tls-ca", "", "PEM certificates of the CA that signs every psd's and trainer's certificate")
	fs.BoolVar(&s.HTTPTLS, "http-tls", false, "serve --http with the same mutual TLS as gRPC (needs --tls-*); without it, a TLS-enabled psd serves HTTP only on a loopback address")
	fs.StringVar(&s.gossipKeyText, "gossip-key", "", "gossip encryption key (AES, 16/24/32 bytes) as base64 or hex, or @FILE holding it; nodes without the same key cannot join")
}

// resolve loads the TLS files and the gossip key and checks the HTTP
// endpoint's exposure.
func (s *securityConfig) resolve(httpAddr string) error {
	var err error
	if s.GRPCServerTLS, err = secure.ServerTLS(s.TLSFiles); err != nil {
		return err
	}
	if s.PeerTLS, err = secure.ClientTLS(s.TLSFiles); err != nil {
		return err
	}
	if s.GossipKey, err = secure.ParseGossipKey(s.gossipKeyText); err != nil {
		return err
	}
	switch {
	case s.HTTPTLS && s.GRPCServerTLS == nil:
		return fmt.Errorf("--http-tls needs --tls-cert, --tls-key and --tls-ca")
	case s.HTTPTLS:
		s.HTTPServerTLS = s.GRPCServerTLS.Clone()
	case s.GRPCServerTLS != nil && httpAddr != "" && !secure.IsLoopback(httpAddr):
		return fmt.Errorf("--http %s: with TLS on, the HTTP endpoints (status, metrics, pprof, checkpoint) must bind a loopback address or use --http-tls", httpAddr)
	}
	return nil
}

// httpListener wraps the HTTP listener in TLS when --http-tls is set.
func (s *securityConfig) httpListener(l net.Listener) net.Listener {
	if s.HTTPServerTLS == nil {
		return l
	}
	return tls.NewListener(l, s.HTTPServerTLS)
}
