package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"unsafe"

	"github.com/flowps/flowps/ps/wire"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// codec turns a float32 tensor into wire bytes and back. Lossless codecs
// give back exactly what they got; lossy ones an approximation (top-k: a
// sparse tensor, the rest kept in its residual).
type codec interface {
	name() string
	lossy() bool
	// encode appends the wire form of src to dst.
	encode(dst []byte, src []float32) ([]byte, error)
	// decode writes the tensor of n values that b encodes into dst
	// (len(dst) == n).
	decode(dst []float32, b []byte) error
}

// newCodec builds a fresh codec for a tensor whose rows hold rowSize
// values (top-k codecs hold per-tensor state, so each tensor gets its
// own).
func newCodec(name string, rowSize int) (codec, error) {
	switch name {
	case "none":
		return rawCodec{}, nil
	case "s2":
		return &s2Codec{}, nil
	case "zstd":
		return newZstd()
	case "bf16":
		return halfCodec{n: "bf16", enc: wire.EncodeBF16, dec: wire.DecodeBF16}, nil
	case "fp16":
		return halfCodec{n: "fp16", enc: wire.EncodeFP16, dec: wire.DecodeFP16}, nil
	case "bf16+zstd":
		z, err := newZstd()
		if err != nil {
			return nil, err
		}
		return &chainCodec{first: halfCodec{n: "bf16", enc: wire.EncodeBF16, dec: wire.DecodeBF16}, zstd: z}, nil
	case "topk1%":
		return newTopK(name, 0.01)
	case "topk10%":
		return newTopK(name, 0.10)
	case "toprows1%":
		return newTopRows(name, 0.01, rowSize)
	case "toprows10%":
		return newTopRows(name, 0.10, rowSize)
	}
	return nil, fmt.Errorf("unknown codec %q (want one of %v)", name, allCodecs)
}

// allCodecs lists every codec in table order.
var allCodecs = []string{"none", "s2", "zstd", "bf16", "fp16", "bf16+zstd", "topk1%", "topk10%", "toprows1%", "toprows10%"}

// f32bytes views float32s as their little-endian bytes (amd64/arm64).
func f32bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// rawCodec is float32 little-endian: what flowps's gRPC transport sends.
type rawCodec struct{}

func (rawCodec) name() string { return "none" }
func (rawCodec) lossy() bool  { return false }
func (rawCodec) encode(dst []byte, src []float32) ([]byte, error) {
	return append(dst, f32bytes(src)...), nil
}
func (rawCodec) decode(dst []float32, b []byte) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("raw: %d bytes for %d values", len(b), len(dst))
	}
	copy(f32bytes(dst), b)
	return nil
}

// s2Codec is S2's stream format with one goroutine, as flowps's gRPC
// compressor "s2" writes it.
type s2Codec struct {
	w *s2.Writer
	r *s2.Reader
}

func (*s2Codec) name() string { return "s2" }
func (*s2Codec) lossy() bool  { return false }

func (c *s2Codec) encode(dst []byte, src []float32) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if c.w == nil {
		c.w = s2.NewWriter(buf, s2.WriterConcurrency(1))
	} else {
		c.w.Reset(buf)
	}
	if _, err := c.w.Write(f32bytes(src)); err != nil {
		return nil, err
	}
	if err := c.w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c *s2Codec) decode(dst []float32, b []byte) error {
	if c.r == nil {
		c.r = s2.NewReader(bytes.NewReader(b))
	} else {
		c.r.Reset(bytes.NewReader(b))
	}
	if _, err := io.ReadFull(c.r, f32bytes(dst)); err != nil {
		return fmt.Errorf("s2: %w", err)
	}
	return nil
}

// zstdCodec is zstd at its fastest level with one goroutine, as flowps's
// gRPC compressor "zstd" is configured.
type zstdCodec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newZstd() (*zstdCodec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return &zstdCodec{enc: enc, dec: dec}, nil
}

func (*zstdCodec) name() string { return "zstd" }
func (*zstdCodec) lossy() bool  { return false }
func (c *zstdCodec) encode(dst []byte, src []float32) ([]byte, error) {
	return c.enc.EncodeAll(f32bytes(src), dst), nil
}
func (c *zstdCodec) decode(dst []float32, b []byte) error {
	out, err := c.dec.DecodeAll(b, f32bytes(dst)[:0])
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	if len(out) != 4*len(dst) || (len(out) > 0 && &out[0] != &f32bytes(dst)[0]) {
		return fmt.Errorf("zstd: decoded %d bytes, want %d", len(out), 4*len(dst))
	}
	return nil
}

// halfCodec is a 16-bit float encoding from package wire.
type halfCodec struct {
	n   string
	enc func([]byte, []float32) []byte
	dec func([]float32, []byte) ([]float32, error)
}

func (c halfCodec) name() string { return c.n }
func (halfCodec) lossy() bool    { return true }
func (c halfCodec) encode(dst []byte, src []float32) ([]byte, error) {
	return c.enc(dst, src), nil
}
func (c halfCodec) decode(dst []float32, b []byte) error {
	if len(b) != 2*len(dst) {
		return fmt.Errorf("%s: %d bytes for %d values", c.n, len(b), len(dst))
	}
	_, err := c.dec(dst[:0], b)
	return err
}

// chainCodec is a 16-bit encoding followed by zstd.
type chainCodec struct {
	first halfCodec
	zstd  *zstdCodec
	tmp   []byte
}

func (c *chainCodec) name() string { return c.first.n + "+zstd" }
func (*chainCodec) lossy() bool    { return true }
func (c *chainCodec) encode(dst []byte, src []float32) ([]byte, error) {
	c.tmp = c.first.enc(c.tmp[:0], src)
	return c.zstd.enc.EncodeAll(c.tmp, dst), nil
}
func (c *chainCodec) decode(dst []float32, b []byte) error {
	var err error
	c.tmp, err = c.zstd.dec.DecodeAll(b, c.tmp[:0])
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	return c.first.decode(dst, c.tmp)
}

// topkCodec sends the top k of (residual + gradient) as a sparse vector
// (wire.EncodeSparse); decoding writes a dense tensor, zero elsewhere.
type topkCodec struct {
	n  string
	tk *wire.TopK
}

func newTopK(name string, ratio float64) (*topkCodec, error) {
	tk, err := wire.NewTopK(ratio)
	if err != nil {
		return nil, err
	}
	return &topkCodec{n: name, tk: tk}, nil
}

func (c *topkCodec) name() string { return c.n }
func (*topkCodec) lossy() bool    { return true }
func (c *topkCodec) encode(dst []byte, src []float32) ([]byte, error) {
	idx, vals, err := c.tk.Compress(src)
	if err != nil {
		return nil, err
	}
	return wire.EncodeSparse(dst, idx, vals)
}
func (c *topkCodec) decode(dst []float32, b []byte) error {
	idx, vals, err := wire.DecodeSparse(b, len(dst))
	if err != nil {
		return err
	}
	clear(dst)
	return wire.ScatterAdd(dst, idx, vals)
}

// topRowsCodec sends the rows of largest norm of (residual + gradient),
// as a ps sparse push would carry them: row ids (here as delta varints;
// flowps's protobuf header packs them as varints too) and the rows'
// float32 values.
type topRowsCodec struct {
	n       string
	rowSize int
	tk      *wire.TopKRows
	idx     []int32
}

func newTopRows(name string, ratio float64, rowSize int) (*topRowsCodec, error) {
	tk, err := wire.NewTopKRows(ratio, rowSize)
	if err != nil {
		return nil, err
	}
	return &topRowsCodec{n: name, rowSize: rowSize, tk: tk}, nil
}

func (c *topRowsCodec) name() string { return c.n }
func (*topRowsCodec) lossy() bool    { return true }
func (c *topRowsCodec) encode(dst []byte, src []float32) ([]byte, error) {
	rows, vals, err := c.tk.Compress(src)
	if err != nil {
		return nil, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(rows)))
	prev := int64(-1)
	for _, r := range rows {
		dst = binary.AppendUvarint(dst, uint64(r-prev-1))
		prev = r
	}
	return append(dst, f32bytes(vals)...), nil
}
func (c *topRowsCodec) decode(dst []float32, b []byte) error {
	if len(dst)%c.rowSize != 0 {
		return fmt.Errorf("%s: %d values are not rows of %d", c.n, len(dst), c.rowSize)
	}
	nrows := len(dst) / c.rowSize
	count, w := binary.Uvarint(b)
	if w <= 0 || count > uint64(nrows) {
		return fmt.Errorf("%s: bad row count", c.n)
	}
	b = b[w:]
	c.idx = c.idx[:0]
	prev := int64(-1)
	for range count {
		gap, w := binary.Uvarint(b)
		if w <= 0 || gap >= uint64(nrows) || prev+1+int64(gap) >= int64(nrows) {
			return fmt.Errorf("%s: bad row id", c.n)
		}
		b = b[w:]
		prev += 1 + int64(gap)
		c.idx = append(c.idx, int32(prev))
	}
	if len(b) != 4*int(count)*c.rowSize {
		return fmt.Errorf("%s: %d value bytes for %d rows of %d", c.n, len(b), count, c.rowSize)
	}
	clear(dst)
	for j, r := range c.idx {
		copy(f32bytes(dst[int(r)*c.rowSize:(int(r)+1)*c.rowSize]), b[4*j*c.rowSize:4*(j+1)*c.rowSize])
	}
	return nil
}

// relError is ‖a − b‖ / ‖b‖.
func relError(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
