package grpctransport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/transport/grpc/pb"
	"github.com/flowps/flowps/transport/transporttest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func TestConformanceVariants(t *testing.T) {
	if testing.Short() {
		t.Skip("variants run without -short")
	}
	for name, cfg := range map[string]DialerConfig{
		"s2":                 {Compression: CompressionS2},
		"zstd":               {Compression: CompressionZstd},
		"smallchunks-3conns": {ChunkBytes: 4100, ConnsPerPeer: 3, DataPath: DataPathOff},
		"nodatapath":         {DataPath: DataPathOff},
	} {
		h := harness(name, cfg)
		h.LargeBytes = 8<<20 + 12
		transporttest.Run(t, h)
	}
	// The data path over TLS.
	stls, ctls := selfSigned(t)
	h := harness("tls", DialerConfig{TLS: ctls})
	h.Serve = func(t *testing.T, svc ps.Service) (string, func()) { return serve(t, svc, ServerConfig{TLS: stls}) }
	h.LargeBytes = 8<<20 + 12
	transporttest.Run(t, h)
}

// selfSigned returns server and client TLS configs for 127.0.0.1.
func selfSigned(t *testing.T) (*tls.Config, *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "flowps-test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func TestTLS(t *testing.T) {
	stls, ctls := selfSigned(t)
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		return &ps.PushResponse{Versions: []int64{int64(len(r.Parts[0].Grad))}}, nil
	}}
	addr, _ := serve(t, fake, ServerConfig{TLS: stls})
	ctx := context.Background()

	d := NewDialer(DialerConfig{TLS: ctls})
	defer d.Close()
	svc, err := d.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Grad: make([]float32, 3<<20)}}})
	if err != nil || resp.Versions[0] != 3<<20 {
		t.Fatalf("push over TLS: %v, %v", resp, err)
	}
	waitDataPath(t, svc) // over TLS too
	resp, err = svc.Push(ctx, &ps.PushRequest{Parts: []ps.PushPart{{Grad: make([]float32, 3<<20)}}})
	if err != nil || resp.Versions[0] != 3<<20 {
		t.Fatalf("push over the TLS data path: %v, %v", resp, err)
	}

	// A plaintext client cannot talk to a TLS server; it fails, it does not hang.
	plain := NewDialer(DialerConfig{})
	defer plain.Close()
	psvc, _ := plain.Dial(ctx, addr)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := psvc.Pull(cctx, &ps.PullRequest{}); !errors.Is(err, ps.ErrUnavailable) {
		t.Errorf("plaintext call to a TLS server: %v, want ps.ErrUnavailable", err)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []DialerConfig{{Compression: "lz5"}, {ChunkBytes: -1}, {ConnsPerPeer: -2}, {ChunkBytes: 1 << 30}} {
		if _, err := NewDialer(cfg).Dial(ctx, "127.0.0.1:1"); err == nil {
			t.Errorf("Dial with %+v succeeded", cfg)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := NewServer(&transporttest.Fake{}, ServerConfig{StopTimeout: -1}).Serve(lis); err == nil {
		t.Errorf("Serve with a negative StopTimeout succeeded")
	}
}

func TestDialerSharesAndClosesConnections(t *testing.T) {
	addr, _ := serve(t, &transporttest.Fake{}, ServerConfig{})
	ctx := context.Background()
	d := NewDialer(DialerConfig{})
	a, _ := d.Dial(ctx, addr)
	b, _ := d.Dial(ctx, addr)
	if a.(*client).p != b.(*client).p {
		t.Fatalf("two dials of one address do not share connections")
	}
	a.Close()
	if _, err := b.Pull(ctx, &ps.PullRequest{}); err != nil {
		t.Errorf("pull after the other service closed: %v", err)
	}
	b.Close()
	d.mu.Lock()
	n := len(d.peers)
	d.mu.Unlock()
	if n != 0 {
		t.Errorf("%d peers cached after every service closed", n)
	}
	c, _ := d.Dial(ctx, addr)
	d.Close()
	if _, err := c.Pull(ctx, &ps.PullRequest{}); !errors.Is(err, ps.ErrClosed) {
		t.Errorf("pull after Dialer.Close: %v, want ps.ErrClosed", err)
	}
	if _, err := d.Dial(ctx, addr); !errors.Is(err, ps.ErrClosed) {
		t.Errorf("Dial after Dialer.Close: %v, want ps.ErrClosed", err)
	}
	d.Close()
}

func TestStopTimeoutCutsBlockedCalls(t *testing.T) {
	entered := make(chan struct{})
	fake := &transporttest.Fake{PullFunc: func(ctx context.Context, _ *ps.PullRequest) (*ps.PullResponse, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	addr, stop := serve(t, fake, ServerConfig{StopTimeout: 50 * time.Millisecond})
	d := NewDialer(DialerConfig{})
	defer d.Close()
	svc, _ := d.Dial(context.Background(), addr)
	errc := make(chan error, 1)
	go func() { _, err := svc.Pull(context.Background(), &ps.PullRequest{}); errc <- err }()
	<-entered
	start := time.Now()
	stop()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Stop took %v with a 50ms timeout", d)
	}
	if err := <-errc; !errors.Is(err, ps.ErrUnavailable) {
		t.Errorf("pull cut by Stop: %v, want ps.ErrUnavailable", err)
	}
}

// rawPush sends frames with the stock protobuf codec, as a client generated
// from flowps.proto by anyone would, and returns the mapped error.
func rawPush(t *testing.T, addr string, frames ...*pb.PushFrame) (*pb.PushResponse, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := context.Background()
	stream, err := pb.NewParameterServerClient(cc).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := stream.Send(f); err != nil {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	return resp, fromStatus(ctx, "push", addr, err)
}

func le(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		u := math.Float32bits(x)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}

func TestStockProtobufClientAndBadFrames(t *testing.T) {
	var got *ps.PushRequest
	fake := &transporttest.Fake{PushFunc: func(_ context.Context, r *ps.PushRequest) (*ps.PushResponse, error) {
		got = r
		return &ps.PushResponse{Versions: []int64{7}}, nil
	}}
	addr, _ := serve(t, fake, ServerConfig{MaxTensorBytes: 1 << 20})
	hdr := func(n ...int64) *pb.PushHeader {
		h := &pb.PushHeader{ClientId: "stock"}
		for _, k := range n {
			h.Parts = append(h.Parts, &pb.PushPartHeader{HasGrad: true, NumValues: k})
		}
		return h
	}
	// A valid push from a stock client, split into frames by hand.
	resp, err := rawPush(t, addr,
		&pb.PushFrame{Header: hdr(2, 1), Data: le(1, 2)},
		&pb.PushFrame{Offset: 2, Data: le(-3)})
	if err != nil || resp.Versions[0] != 7 {
		t.Fatalf("stock client push: %v, %v", resp, err)
	}
	if got.ClientID != "stock" || len(got.Parts) != 2 || got.Parts[0].Grad[1] != 2 || got.Parts[1].Grad[0] != -3 {
		t.Errorf("server got %+v", got)
	}

	bad := map[string]struct {
		frames []*pb.PushFrame
		want   error
	}{
		"no header":          {[]*pb.PushFrame{{Data: le(1)}}, ps.ErrInvalidArgument},
		"empty stream":       {nil, ps.ErrInvalidArgument},
		"two headers":        {[]*pb.PushFrame{{Header: hdr(1)}, {Header: hdr(1)}}, ps.ErrInvalidArgument},
		"gap":                {[]*pb.PushFrame{{Header: hdr(2), Data: le(1)}, {Offset: 2, Data: le(1)}}, ps.ErrInvalidArgument},
		"odd bytes":          {[]*pb.PushFrame{{Header: hdr(2), Data: []byte{1, 2, 3}}}, ps.ErrInvalidArgument},
		"overflow":           {[]*pb.PushFrame{{Header: hdr(1), Data: le(1, 2)}}, ps.ErrInvalidArgument},
		"short":              {[]*pb.PushFrame{{Header: hdr(3), Data: le(1, 2)}}, ps.ErrInvalidArgument},
		"negative size":      {[]*pb.PushFrame{{Header: hdr(-1)}}, ps.ErrInvalidArgument},
		"over MaxTensorSize": {[]*pb.PushFrame{{Header: hdr(1 << 40)}}, ps.ErrTooLarge},
	}
	for name, c := range bad {
		if _, err := rawPush(t, addr, c.frames...); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestFrameEncodingIsProtobuf(t *testing.T) {
	h := &pb.PullHeader{Parts: []*pb.PartValuesHeader{{Version: 3, HasValues: true, NumValues: 5}}}
	f := &frameOut{header: h, offset: 0, data: [][]float32{{1, 2}, {}, {3, 4, 5}}}
	bs, err := f.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m pb.PullFrame
	if err := proto.Unmarshal(bs.Materialize(), &m); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m.Header, h) || !bytes.Equal(m.Data, le(1, 2, 3, 4, 5)) {
		t.Errorf("decoded %v", &m)
	}
	// And back, with the data split over awkward buffer boundaries and the
	// fields in another order than ours.
	wire, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.PullFrame{Offset: 0, Data: le(1, 2, 3, 4, 5), Header: h})
	var split mem.BufferSlice
	for i := 0; i < len(wire); i += 3 {
		split = append(split, mem.SliceBuffer(wire[i:min(i+3, len(wire))]))
	}
	in := &frameIn{header: &pb.PullHeader{}}
	// Into two segments, as a pull decodes into the caller's buffers.
	a, b := make([]float32, 2), make([]float32, 3)
	in.onHeader = func() ([][]float32, error) { return [][]float32{a, b}, nil }
	if err := in.unmarshal(split); err != nil || in.err != nil {
		t.Fatal(err, in.err)
	}
	if in.next != 5 || a[0] != 1 || a[1] != 2 || b[0] != 3 || b[2] != 5 {
		t.Errorf("decoded %v %v (next %d)", a, b, in.next)
	}
}

// FuzzFrameDecode feeds arbitrary bytes to the frame decoder: it must return
// errors, never panic or write out of bounds.
func FuzzFrameDecode(f *testing.F) {
	good, _ := proto.Marshal(&pb.PushFrame{Header: &pb.PushHeader{Parts: []*pb.PushPartHeader{{NumValues: 2, HasGrad: true}}}, Data: le(1, 2)})
	f.Add(good, 1)
	bf16, _ := proto.Marshal(&pb.PushFrame{Header: &pb.PushHeader{Encoding: pb.ValueEncoding_VALUE_ENCODING_BF16,
		Parts: []*pb.PushPartHeader{{NumValues: 3, HasGrad: true}}}, Data: []byte{1, 2, 3, 4, 5, 6}})
	f.Add(bf16, 3)
	f.Add([]byte{0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f}, 2)
	f.Add([]byte{0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 4)
	f.Add([]byte{0x0b, 0x0c}, 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		var bs mem.BufferSlice
		if split < 1 {
			split = 1
		}
		for i := 0; i < len(data); i += split {
			bs = append(bs, mem.SliceBuffer(data[i:min(i+split, len(data))]))
		}
		in := &frameIn{header: &pb.PushHeader{}, maxHeader: 1 << 16}
		in.onHeader = func() ([][]float32, error) {
			// As handler.Push: any encoding the header names, checked.
			if in.enc = in.header.(*pb.PushHeader).GetEncoding(); in.enc < 0 || in.enc > pb.ValueEncoding_VALUE_ENCODING_FP16 {
				return nil, ps.Errorf(ps.ErrInvalidArgument, "unknown gradient encoding %d", int32(in.enc))
			}
			_, backing, err := pushFromHeader(in.header.(*pb.PushHeader), 1<<20)
			return [][]float32{backing}, err
		}
		if err := in.unmarshal(bs); err != nil {
			t.Fatalf("unmarshal returned %v; errors belong in frameIn.err", err)
		}
		if err := in.err; err != nil && !strings.Contains(err.Error(), "ps:") {
			t.Errorf("error %v does not name a ps sentinel", err)
		}
	})
}
