// Package secure builds the TLS configurations and the gossip key that psd,
// the trainer and flowctl share, so every binary applies the same rules.
//
// Mutual TLS: every gRPC server (psd) presents a certificate signed by the
// cluster's CA and demands one from each client; every client (trainer,
// psd dialing a peer, flowctl) presents its own and checks the server's
// against the same CA. With a TLS configuration in place a plaintext
// connection fails its handshake: there is no fallback.
//
//	srv, err := secure.ServerTLS(secure.Files{Cert: "psd.pem", Key: "psd-key.pem", CA: "ca.pem"})
//	cli, err := secure.ClientTLS(secure.Files{Cert: "trainer.pem", Key: "trainer-key.pem", CA: "ca.pem"})
//
// A certificate must name the address peers dial: an IP SAN for 127.0.0.1
// or the host's address, or a DNS SAN for its host name. ClientTLS checks
// the server's name as Go's crypto/tls does (the host part of HOST:PORT).
//
// Gossip encryption: ParseGossipKey accepts a 16, 24 or 32-byte AES key
// written as base64 or hex, or "@PATH" naming a file that holds it (so the
// key does not show in `ps`). Nodes with another key cannot join.
//
// For tests and quick starts, NewPKI writes a throw-away CA with server and
// client certificates for 127.0.0.1 and localhost; it is generated at run
// time, never committed.
package secure
