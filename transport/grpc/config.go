package grpctransport

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc/encoding"
)

// Defaults shared by both sides. They were chosen by BenchmarkPushPull on
// loopback (see doc.go for the figures).
const (
	// DefaultChunkBytes is the tensor data carried by one stream message.
	// Large enough that per-message costs vanish, small enough that the
	// receiver copies one chunk while the next is on the wire.
	DefaultChunkBytes = 1 << 20
	// DefaultWindowBytes is the HTTP/2 stream and connection flow-control
	// window. gRPC's default (64 KiB, grown by BDP estimation) throttles a
	// single large stream on a fast link; a fixed large window lets the
	// sender run ahead by that much.
	DefaultWindowBytes = 16 << 20
	// DefaultBufferBytes is the socket read and write buffer of a
	// connection (gRPC's default is 32 KiB); larger buffers mean fewer
	// system calls per chunk.
	DefaultBufferBytes = 256 << 10
	// DefaultMaxMessageBytes bounds one received message other than tensor
	// data: a header with its row ids, a Create request.
	DefaultMaxMessageBytes = 64 << 20
	// DefaultMaxTensorBytes bounds the tensor data of one Push (server) or
	// Pull response (client), so a peer cannot make us allocate at will.
	DefaultMaxTensorBytes = 4 << 30
	// DefaultStopTimeout is how long Stop waits for calls in flight.
	DefaultStopTimeout = 10 * time.Second
	// DefaultKeepalive is how long a client connection may be silent while
	// calls are in flight before it is pinged, and how long the ping may
	// go unanswered before the connection is declared dead. A partition
	// that drops packets without resetting connections thus fails a call
	// blocked in Pull (a sync barrier may hold it for long) with
	// ps.ErrUnavailable after about twice this, instead of never.
	DefaultKeepalive = 20 * time.Second
	// minKeepalive is gRPC's floor for a client's ping interval.
	minKeepalive = 10 * time.Second
	// serverMinPing is the most frequent ping a Server accepts (gRPC
	// servers close connections that ping more often than their policy).
	serverMinPing = 5 * time.Second
)

// ServerConfig configures a Server. The zero value serves plaintext with the
// defaults above.
type ServerConfig struct {
	// TLS, when non-nil, serves TLS with this configuration; nil serves
	// plaintext.
	TLS *tls.Config
	// Logger receives connection and stop events; nil discards them.
	Logger *slog.Logger
	// ChunkBytes is the tensor data per Pull response message, in bytes
	// (rounded down to whole float32s). Zero means DefaultChunkBytes.
	ChunkBytes int
	// WindowBytes is the HTTP/2 flow-control window per stream and per
	// connection, in bytes. Zero means DefaultWindowBytes; values below
	// 64 KiB are raised to 64 KiB, gRPC's minimum.
	WindowBytes int32
	// ReadBufferBytes and WriteBufferBytes size each connection's socket
	// buffers. Zero means DefaultBufferBytes.
	ReadBufferBytes, WriteBufferBytes int
	// MaxMessageBytes bounds one received message besides tensor chunks.
	// Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxTensorBytes bounds the tensor data of one Push; a larger one fails
	// with ps.ErrTooLarge. Zero means DefaultMaxTensorBytes.
	MaxTensorBytes int64
	// StopTimeout is how long Stop lets calls in flight finish before it
	// cuts them off. Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// DataAddr is where the data path listens (see doc.go, "Data path"):
	// "" means the host Serve's listener is on, at a free port; a
	// HOST:PORT listens there; DataPathOff serves every call over gRPC.
	// The data path uses TLS when TLS is set. Unless it is off, on Linux
	// the same data path is also served on an abstract Unix socket with a
	// random name, announced to clients, which those in this network
	// namespace (the same host, outside containers) use instead of TCP;
	// NoLocalDataPath turns that off.
	DataAddr string
	// NoLocalDataPath serves the data path on TCP only.
	NoLocalDataPath bool
}

// DialerConfig configures a Dialer. The zero value dials plaintext without
// compression, with the defaults above.
type DialerConfig struct {
	// TLS, when non-nil, dials TLS with this configuration; nil dials
	// plaintext.
	TLS *tls.Config
	// Compression names the wire compressor of this client's calls: "" or
	// CompressionNone for none, CompressionS2, CompressionZstd. Servers
	// accept all of them. Tensors of trained float32 weights compress
	// poorly; compression pays only on slow links or sparse gradients.
	Compression string
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// ChunkBytes is the tensor data per Push request message, in bytes.
	// Zero means DefaultChunkBytes.
	ChunkBytes int
	// WindowBytes, ReadBufferBytes, WriteBufferBytes and MaxMessageBytes
	// are as in ServerConfig.
	WindowBytes                       int32
	ReadBufferBytes, WriteBufferBytes int
	MaxMessageBytes                   int
	// MaxTensorBytes bounds the tensor data of one Pull response. Zero
	// means DefaultMaxTensorBytes.
	MaxTensorBytes int64
	// ConnsPerPeer is the number of TCP connections kept to each address;
	// calls are spread over them round-robin. Zero means 1.
	ConnsPerPeer int
	// GradientEncoding is how Push sends gradient values: "" or
	// EncodingFloat32 exactly, 4 bytes each; EncodingBF16 or EncodingFP16
	// rounded (to nearest, ties to even) to 2 bytes each, which halves the
	// bytes of a push. The server widens them back to float32 before the
	// Service sees them, so a gradient arrives as ps/wire's round trip of
	// it: bf16 keeps float32's range with 8 significant bits; fp16 keeps 11
	// bits but turns magnitudes above 65504 into ±Inf (which a server
	// rejects as non-finite unless the variable allows it) and those below
	// about 6e-8 into 0. Pulls are always exact.
	GradientEncoding string
	// DataPath chooses how Pull and Push travel: "" uses a server's data
	// path when it offers one (see doc.go, "Data path"), over the server's
	// Unix socket when this process can reach it and TCP otherwise, and
	// gRPC when there is none; DataPathTCP never uses the Unix socket;
	// DataPathOff always uses gRPC. Compression other than none also
	// keeps calls on gRPC (the data path does not compress).
	DataPath string
	// Keepalive is the ping interval and timeout on connections with calls
	// in flight (see DefaultKeepalive). Zero means DefaultKeepalive; a
	// negative value turns pings off. Values below 10s are raised to 10s,
	// gRPC's floor.
	Keepalive time.Duration
}

// common holds the settings both sides share, with defaults applied.
type common struct {
	chunkElems      int
	window          int32
	readBuf         int
	writeBuf        int
	maxMessageBytes int
	maxTensorBytes  int64
	logger          *slog.Logger
}

func resolveCommon(chunk int, window int32, rbuf, wbuf, maxMsg int, maxTensor int64, logger *slog.Logger) (common, error) {
	c := common{
		chunkElems:      orDefault(chunk, DefaultChunkBytes) / 4,
		window:          int32(orDefault(int(window), DefaultWindowBytes)),
		readBuf:         orDefault(rbuf, DefaultBufferBytes),
		writeBuf:        orDefault(wbuf, DefaultBufferBytes),
		maxMessageBytes: orDefault(maxMsg, DefaultMaxMessageBytes),
		maxTensorBytes:  maxTensor,
		logger:          logger,
	}
	if c.maxTensorBytes == 0 {
		c.maxTensorBytes = DefaultMaxTensorBytes
	}
	if c.logger == nil {
		c.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case chunk < 0 || c.chunkElems < 1:
		return c, fmt.Errorf("grpctransport: ChunkBytes %d must be ≥ 4", chunk)
	case window < 0:
		return c, fmt.Errorf("grpctransport: negative WindowBytes %d", window)
	case rbuf < 0 || wbuf < 0:
		return c, fmt.Errorf("grpctransport: negative buffer size")
	case maxMsg < 0 || maxTensor < 0:
		return c, fmt.Errorf("grpctransport: negative message limit")
	case c.chunkElems*4+4096 > c.maxMessageBytes:
		return c, fmt.Errorf("grpctransport: ChunkBytes %d exceeds MaxMessageBytes %d", chunk, c.maxMessageBytes)
	}
	if c.window < 64<<10 {
		c.window = 64 << 10
	}
	return c, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (c ServerConfig) resolve() (common, error) {
	if c.StopTimeout < 0 {
		return common{}, fmt.Errorf("grpctransport: negative StopTimeout %v", c.StopTimeout)
	}
	return resolveCommon(c.ChunkBytes, c.WindowBytes, c.ReadBufferBytes, c.WriteBufferBytes, c.MaxMessageBytes, c.MaxTensorBytes, c.Logger)
}

// The values of DialerConfig.GradientEncoding.
const (
	EncodingFloat32 = "float32"
	EncodingBF16    = "bf16"
	EncodingFP16    = "fp16"
)

// valueEncoding maps DialerConfig.GradientEncoding to the wire's enum.
func valueEncoding(name string) (pb.ValueEncoding, error) {
	switch name {
	case "", EncodingFloat32:
		return pb.ValueEncoding_VALUE_ENCODING_FLOAT32, nil
	case EncodingBF16:
		return pb.ValueEncoding_VALUE_ENCODING_BF16, nil
	case EncodingFP16:
		return pb.ValueEncoding_VALUE_ENCODING_FP16, nil
	}
	return 0, fmt.Errorf("grpctransport: unknown GradientEncoding %q (want %q, %q or %q)", name, EncodingFloat32, EncodingBF16, EncodingFP16)
}

func (c DialerConfig) resolve() (common, error) {
	if _, err := valueEncoding(c.GradientEncoding); err != nil {
		return common{}, err
	}
	switch c.Compression {
	case "", CompressionNone:
	default:
		if encoding.GetCompressor(c.Compression) == nil {
			return common{}, fmt.Errorf("grpctransport: unknown compression %q", c.Compression)
		}
	}
	switch c.DataPath {
	case "", DataPathOff, DataPathTCP:
	default:
		return common{}, fmt.Errorf("grpctransport: unknown DataPath %q (want \"\", %q or %q)", c.DataPath, DataPathTCP, DataPathOff)
	}
	if c.ConnsPerPeer < 0 {
		return common{}, fmt.Errorf("grpctransport: negative ConnsPerPeer %d", c.ConnsPerPeer)
	}
	return resolveCommon(c.ChunkBytes, c.WindowBytes, c.ReadBufferBytes, c.WriteBufferBytes, c.MaxMessageBytes, c.MaxTensorBytes, c.Logger)
}
