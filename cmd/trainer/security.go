package main

import (
	"crypto/tls"
	"flag"

	"github.com/flowps/flowps/internal/secure"
)

// securityFlags are the trainer's security flags: the mutual-TLS identity it
// presents to every psd and the gossip encryption key. They mirror psd's
// flags of the same names.
//
// Wiring (in config.go and cluster.go): call addSecurityFlags on the flag
// set before parsing and resolve after; put TLS into
// grpctransport.DialerConfig.TLS and GossipKey into
// sharding.MembershipConfig.SecretKey.
type securityFlags struct {
	Files         secure.Files
	gossipKeyText string

	// TLS is the dialer's client configuration after resolve; nil means
	// plaintext.
	TLS *tls.Config
	// GossipKey is the memberlist encryption key after resolve; nil means
	// none.
	GossipKey []byte
}

// addSecurityFlags registers --tls-cert, --tls-key, --tls-ca and
// --gossip-key on fs and returns where their values land.
func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	s := &securityFlags{}
	fs.StringVar(&s.Files.Cert, "tls-cert", "", "PEM client certificate presented to psd (mutual TLS); needs --tls-key and --tls-ca")
	fs.StringVar(&s.Files.Key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.Files.CA, "tls-ca", "", "PEM certificates of the CA that signed the psd certificates")
	fs.StringVar(&s.gossipKeyText, "gossip-key", "", "gossip encryption key of the cluster (base64 or hex, 16/24/32 bytes, or @FILE)")
	return s
}

// resolve loads the TLS files and decodes the gossip key.
func (s *securityFlags) resolve() error {
	var err error
	if s.TLS, err = secure.ClientTLS(s.Files); err != nil {
		return err
	}
	s.GossipKey, err = secure.ParseGossipKey(s.gossipKeyText)
	return err
}
