package grpctransport

import (
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// Compressor names for DialerConfig.Compression. Both are registered with
// gRPC when this package is imported, so any server built with it accepts
// them.
const (
	CompressionNone = "none"
	CompressionS2   = "s2"
	CompressionZstd = "zstd"
)

func init() {
	encoding.RegisterCompressor(&s2Compressor{})
	encoding.RegisterCompressor(&zstdCompressor{})
}

// s2Compressor is klauspost/compress's S2 (a faster Snappy) as a gRPC
// compressor, with pooled writers and readers.
type s2Compressor struct {
	writers, readers sync.Pool
}

func (*s2Compressor) Name() string { return CompressionS2 }

func (c *s2Compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	sw, _ := c.writers.Get().(*s2.Writer)
	if sw == nil {
		sw = s2.NewWriter(w, s2.WriterConcurrency(1))
	} else {
		sw.Reset(w)
	}
	return &s2Writer{Writer: sw, pool: &c.writers}, nil
}

type s2Writer struct {
	*s2.Writer
	pool *sync.Pool
}

func (w *s2Writer) Close() error {
	err := w.Writer.Close()
	w.Writer.Reset(nil)
	w.pool.Put(w.Writer)
	return err
}

func (c *s2Compressor) Decompress(r io.Reader) (io.Reader, error) {
	sr, _ := c.readers.Get().(*s2.Reader)
	if sr == nil {
		sr = s2.NewReader(r)
	} else {
		sr.Reset(r)
	}
	return &s2Reader{Reader: sr, pool: &c.readers}, nil
}

// s2Reader returns its decoder to the pool at the end of the stream.
type s2Reader struct {
	*s2.Reader
	pool *sync.Pool
}

func (r *s2Reader) Read(p []byte) (int, error) {
	if r.Reader == nil {
		return 0, io.EOF
	}
	n, err := r.Reader.Read(p)
	if err == io.EOF {
		r.Reader.Reset(nil)
		r.pool.Put(r.Reader)
		r.Reader = nil
	}
	return n, err
}

// zstdCompressor is klauspost/compress's zstd at its fastest level as a
// gRPC compressor, with pooled encoders and decoders.
type zstdCompressor struct {
	writers, readers sync.Pool
}

func (*zstdCompressor) Name() string { return CompressionZstd }

func (c *zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	zw, _ := c.writers.Get().(*zstd.Encoder)
	if zw == nil {
		var err error
		zw, err = zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
	} else {
		zw.Reset(w)
	}
	return &zstdWriter{Encoder: zw, pool: &c.writers}, nil
}

type zstdWriter struct {
	*zstd.Encoder
	pool *sync.Pool
}

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	w.Encoder.Reset(nil)
	w.pool.Put(w.Encoder)
	return err
}

func (c *zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	zr, _ := c.readers.Get().(*zstd.Decoder)
	if zr == nil {
		var err error
		zr, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
	} else if err := zr.Reset(r); err != nil {
		return nil, err
	}
	return &zstdReader{Decoder: zr, pool: &c.readers}, nil
}

// zstdReader returns its decoder to the pool at the end of the stream.
type zstdReader struct {
	*zstd.Decoder
	pool *sync.Pool
}

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.Decoder == nil {
		return 0, io.EOF
	}
	n, err := r.Decoder.Read(p)
	if err == io.EOF {
		r.Decoder.Reset(nil)
		r.pool.Put(r.Decoder)
		r.Decoder = nil
	}
	return n, err
}
