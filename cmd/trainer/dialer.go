package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/auto"
	grpctransport "github.com/flowps/flowps/transport/grpc"
	"github.com/flowps/flowps/transport/rdma"
)

// newDialer returns the transport dialer for --join: per psd, the RDMA
// transport or gRPC as --transport and --rdma-provider select
// (transport/auto), gRPC with the wire compression --compress names and
// mutual TLS when --tls-* are given (TLS keeps every psd on gRPC: the
// fabric neither encrypts nor authenticates). Each psd's transport and the
// reason are printed to progress when first chosen and when they change.
//
// dataPaths reports how calls to each psd dialed so far travel over gRPC's
// side: its data path over the psd's Unix socket or TCP, or gRPC streams.
func newDialer(cfg *config, logger *slog.Logger, progress io.Writer, members ps.MemberSource) (d ps.Dialer, closeFn func() error, dataPaths func() []grpctransport.DataPath, err error) {
	g := grpctransport.NewDialer(grpctransport.DialerConfig{
		Compression:      cfg.Compress,
		GradientEncoding: cfg.GradEncoding,
		DataPath:         dataPath(cfg.DataPath),
		TLS:              cfg.Security.TLS,
		Logger:           logger.With("component", "grpc"),
	})
	ad, err := auto.NewDialer(auto.Config{
		Mode:     cfg.Transport,
		Provider: cfg.RDMAProvider,
		Secure:   cfg.Security.TLS != nil,
		GRPC:     g,
		RDMA:     rdma.NewDialer(rdma.DialerConfig{Logger: logger.With("component", "rdma")}),
		Peer:     auto.PeerFrom(members),
		Logger:   slog.New(slog.NewTextHandler(progress, nil)).With("component", "transport"),
	})
	if err != nil {
		g.Close()
		return nil, nil, nil, fmt.Errorf("--transport %s --rdma-provider %q: %w", cfg.Transport, cfg.RDMAProvider, err)
	}
	return ad, g.Close, g.DataPaths, nil
}

// dataPath maps --data-path to grpctransport.DialerConfig.DataPath.
func dataPath(flag string) string {
	switch flag {
	case "off":
		return grpctransport.DataPathOff
	case "tcp":
		return grpctransport.DataPathTCP
	}
	return ""
}
