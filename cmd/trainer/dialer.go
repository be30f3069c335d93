package main

import (
	"log/slog"

	"github.com/flowps/flowps/ps"
	grpctransport "github.com/flowps/flowps/transport/grpc"
)

// newDialer returns the transport dialer for --join: gRPC, with the wire
// compression --compress names and mutual TLS when --tls-* are given.
func newDialer(cfg *config, logger *slog.Logger) (ps.Dialer, func() error, error) {
	d := grpctransport.NewDialer(grpctransport.DialerConfig{
		Compression: cfg.Compress,
		TLS:         cfg.Security.TLS,
		Logger:      logger.With("component", "grpc"),
	})
	return d, d.Close, nil
}
