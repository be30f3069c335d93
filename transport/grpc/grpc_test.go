package grpctransport

import (
	"net"
	"testing"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/transporttest"
)

// serve starts a server for svc on a loopback port.
func serve(t testing.TB, svc ps.Service, cfg ServerConfig) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(svc, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	var once bool
	stop := func() {
		if once {
			return
		}
		once = true
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func harness(name string, dcfg DialerConfig) transporttest.Harness {
	return transporttest.Harness{
		Name: name,
		Serve: func(t *testing.T, svc ps.Service) (string, func()) {
			return serve(t, svc, ServerConfig{})
		},
		Dialer: func(t *testing.T) ps.Dialer {
			d := NewDialer(dcfg)
			t.Cleanup(func() { d.Close() })
			return d
		},
	}
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, harness("grpc", DialerConfig{}))
	// Every call over the data path (the default dialer's first calls to
	// a server go over gRPC while it dials the data path).
	h := harness("datapath", DialerConfig{})
	h.Dialer = func(t *testing.T) ps.Dialer {
		d := NewDialer(DialerConfig{})
		d.dataSyncDial = true
		t.Cleanup(func() { d.Close() })
		return d
	}
	transporttest.Run(t, h)
}
