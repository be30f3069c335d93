package grpctransport

import (
	"fmt"
	"unsafe"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/ps/wire"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec we delegate to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// codec is the transport's encoding.CodecV2. Plain protobuf messages go
// through grpc's own proto codec. Tensor frames (frameOut, frameIn) are
// encoded as the very same protobuf bytes as pb.PushFrame / pb.PullFrame,
// but the float32 data is handed to gRPC as a view of the caller's slice
// (no marshalling copy) and decoded straight from gRPC's receive buffers
// into the destination tensor (one copy, which the pooled buffers require).
//
// It is named "proto" because its bytes are protobuf: a client built from
// flowps.proto with stock tools talks to a flowps server.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec {
	return codec{proto: encoding.GetCodecV2("proto")}
}

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frameOut); ok {
		return f.marshal()
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frameIn); ok {
		return f.unmarshal(data)
	}
	return c.proto.Unmarshal(data, v)
}

// Field numbers shared by pb.PushFrame and pb.PullFrame.
const (
	fieldHeader = 1
	fieldOffset = 2
	fieldData   = 3
)

// littleEndian is true on hosts whose float32 memory layout is the wire's.
var littleEndian = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// f32bytes views a float32 slice as bytes, without copying.
func f32bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// swap32 reverses the bytes of every 4-byte word of b (big-endian hosts).
func swap32(b []byte) {
	for i := 0; i+3 < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
}

// frameOut is one outgoing tensor frame: an optional header, the element
// offset of data within the concatenation of all parts' values, and data as
// pieces of the callers' slices. The pieces must stay unmodified until the
// call that sends them returns. With enc bf16 or fp16 the pieces are
// encoded into a pooled buffer that gRPC frees after writing it.
type frameOut struct {
	header proto.Message
	offset int64
	data   [][]float32
	// bufs, when non-nil, says per piece of data which reference-counted
	// buffer it lies in (root nil: none), at byte offset off: marshal then
	// gives gRPC a reference to that window, which keeps the buffer from
	// its pool until gRPC has written the frame.
	bufs []frameBuf
	enc  pb.ValueEncoding
}

// frameBuf locates a piece of frame data in a reference-counted buffer.
type frameBuf struct {
	root mem.Buffer
	off  int
}

// valueBytes is the size of one value on the wire in encoding enc.
func valueBytes(enc pb.ValueEncoding) int {
	if enc == pb.ValueEncoding_VALUE_ENCODING_FLOAT32 {
		return 4
	}
	return 2
}

// appendEncoded16 appends vals, in order, to b in the 2-byte encoding enc
// (bf16 or fp16).
func appendEncoded16(b []byte, enc pb.ValueEncoding, vals [][]float32) ([]byte, error) {
	for _, v := range vals {
		switch enc {
		case pb.ValueEncoding_VALUE_ENCODING_BF16:
			b = wire.EncodeBF16(b, v)
		case pb.ValueEncoding_VALUE_ENCODING_FP16:
			b = wire.EncodeFP16(b, v)
		default:
			return b, fmt.Errorf("grpctransport: unknown value encoding %v", enc)
		}
	}
	return b, nil
}

// checkEncoding accepts the gradient encodings a server decodes.
func checkEncoding(enc pb.ValueEncoding) error {
	switch enc {
	case pb.ValueEncoding_VALUE_ENCODING_FLOAT32, pb.ValueEncoding_VALUE_ENCODING_BF16, pb.ValueEncoding_VALUE_ENCODING_FP16:
		return nil
	}
	return ps.Errorf(ps.ErrInvalidArgument, "unknown gradient encoding %d", int32(enc))
}

func (f *frameOut) marshal() (mem.BufferSlice, error) {
	var hb []byte
	if f.header != nil {
		var err error
		if hb, err = proto.Marshal(f.header); err != nil {
			return nil, err
		}
	}
	n := 0
	for _, d := range f.data {
		n += valueBytes(f.enc) * len(d)
	}
	prefix := make([]byte, 0, len(hb)+3*protowire.SizeVarint(uint64(len(hb)+n))+8)
	if f.header != nil {
		prefix = protowire.AppendTag(prefix, fieldHeader, protowire.BytesType)
		prefix = protowire.AppendBytes(prefix, hb)
	}
	if f.offset != 0 {
		prefix = protowire.AppendTag(prefix, fieldOffset, protowire.VarintType)
		prefix = protowire.AppendVarint(prefix, uint64(f.offset))
	}
	if n > 0 {
		prefix = protowire.AppendTag(prefix, fieldData, protowire.BytesType)
		prefix = protowire.AppendVarint(prefix, uint64(n))
	}
	out := make(mem.BufferSlice, 0, 1+len(f.data))
	out = append(out, mem.SliceBuffer(prefix))
	if f.enc != pb.ValueEncoding_VALUE_ENCODING_FLOAT32 && n > 0 {
		h := sharedPool.Get(n)
		b, err := appendEncoded16((*h)[:0], f.enc, f.data)
		if err != nil {
			sharedPool.Put(h)
			return nil, err
		}
		*h = b
		return append(out, mem.NewBuffer(h, sharedPool)), nil
	}
	for i, d := range f.data {
		if len(d) == 0 {
			continue
		}
		b := f32bytes(d)
		if !littleEndian {
			b = append([]byte(nil), b...)
			swap32(b)
		} else if i < len(f.bufs) && f.bufs[i].root != nil {
			fb := f.bufs[i]
			out = append(out, fb.root.Slice(fb.off, fb.off+len(b)))
			continue
		}
		out = append(out, mem.SliceBuffer(b))
	}
	return out, nil
}

// frameIn receives the frames of one tensor stream. The first frame's
// header is decoded into header, then onHeader returns the destination for
// the concatenated values, as consecutive segments (one backing array, or
// the callers' own buffers part by part), and may set enc from the header;
// each frame's data is copied (or, with enc bf16 or fp16, widened) into
// the segments from value next on.
type frameIn struct {
	header    proto.Message
	onHeader  func() ([][]float32, error)
	maxHeader int
	enc       pb.ValueEncoding

	gotHeader bool
	err       error
	dst       segments
	next      int64
}

// segments is the destination of a tensor stream: the concatenation of
// segs, total values, filled in order.
type segments struct {
	segs  [][]float32
	total int64
	i     int // segment being filled
	off   int // values of it filled
}

func newSegments(segs [][]float32) segments {
	d := segments{segs: segs}
	for _, s := range segs {
		d.total += int64(len(s))
	}
	return d
}

// take returns the next window of at most n values to fill and marks it
// filled. The caller checks that n values remain.
func (d *segments) take(n int) []float32 {
	for d.off == len(d.segs[d.i]) {
		d.i, d.off = d.i+1, 0
	}
	s := d.segs[d.i]
	k := min(n, len(s)-d.off)
	w := s[d.off : d.off+k : d.off+k]
	d.off += k
	return w
}

// errFrame marks malformed tensor frames.
var errFrame = fmt.Errorf("%w: malformed frame", ps.ErrInvalidArgument)

// unmarshal decodes one frame. It reports a malformed frame in f.err and
// returns nil, because gRPC would turn any codec error into a bare
// codes.Internal status, sent by gRPC itself before the handler could send
// the ps code; the receiver checks f.err after every RecvMsg. Once f.err is
// set, later frames are ignored.
func (f *frameIn) unmarshal(data mem.BufferSlice) error {
	if f.err == nil {
		f.err = f.decode(data)
	}
	return nil
}

func (f *frameIn) decode(data mem.BufferSlice) error {
	c := cursor{bufs: data, rem: data.Len()}
	var offset int64
	for c.rem > 0 {
		tag, err := c.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		switch {
		case num == fieldHeader && typ == protowire.BytesType:
			if f.gotHeader {
				return fmt.Errorf("%w: second header", errFrame)
			}
			n, err := c.length()
			if err != nil {
				return err
			}
			if f.maxHeader > 0 && n > f.maxHeader {
				return fmt.Errorf("%w: header of %d bytes exceeds %d", errFrame, n, f.maxHeader)
			}
			hb := make([]byte, n)
			if err := c.read(hb); err != nil {
				return err
			}
			if err := proto.Unmarshal(hb, f.header); err != nil {
				return fmt.Errorf("%w: header: %v", errFrame, err)
			}
			f.gotHeader = true
			segs, err := f.onHeader()
			if err != nil {
				return err
			}
			f.dst = newSegments(segs)
		case num == fieldOffset && typ == protowire.VarintType:
			v, err := c.varint()
			if err != nil {
				return err
			}
			offset = int64(v)
		case num == fieldData && typ == protowire.BytesType:
			n, err := c.length()
			if err != nil {
				return err
			}
			vb := valueBytes(f.enc)
			switch {
			case !f.gotHeader:
				return fmt.Errorf("%w: data before header", errFrame)
			case offset != f.next:
				return fmt.Errorf("%w: data at offset %d, want %d", errFrame, offset, f.next)
			case n%vb != 0:
				return fmt.Errorf("%w: %d data bytes is not a whole number of %d-byte values", errFrame, n, vb)
			case int64(n/vb) > f.dst.total-f.next:
				return fmt.Errorf("%w: %d values at offset %d overflow the %d announced", errFrame, n/vb, f.next, f.dst.total)
			}
			for left := n / vb; left > 0; {
				dst := f.dst.take(left)
				if vb == 4 {
					b := f32bytes(dst)
					if err := c.read(b); err != nil {
						return err
					}
					if !littleEndian {
						swap32(b)
					}
				} else if err := c.widen16(dst, f.enc); err != nil {
					return err
				}
				left -= len(dst)
				f.next += int64(len(dst))
			}
			offset = f.next
		default:
			if err := c.skip(typ); err != nil {
				return err
			}
		}
	}
	return nil
}

// cursor reads protobuf wire data spread over a mem.BufferSlice without
// materializing it.
type cursor struct {
	bufs mem.BufferSlice
	i    int // current buffer
	off  int // offset in it
	rem  int // bytes left overall
}

var errShort = fmt.Errorf("%w: truncated", errFrame)

func (c *cursor) byte() (byte, error) {
	for c.rem > 0 {
		b := c.bufs[c.i].ReadOnlyData()
		if c.off < len(b) {
			x := b[c.off]
			c.off++
			c.rem--
			return x, nil
		}
		c.i, c.off = c.i+1, 0
	}
	return 0, errShort
}

func (c *cursor) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := c.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: varint overflow", errFrame)
}

func (c *cursor) length() (int, error) {
	v, err := c.varint()
	if err != nil {
		return 0, err
	}
	if v > uint64(c.rem) {
		return 0, errShort
	}
	return int(v), nil
}

// read copies len(dst) bytes to dst.
func (c *cursor) read(dst []byte) error {
	if len(dst) > c.rem {
		return errShort
	}
	for len(dst) > 0 {
		b := c.bufs[c.i].ReadOnlyData()[c.off:]
		n := copy(dst, b)
		dst = dst[n:]
		c.off += n
		c.rem -= n
		if n == len(b) {
			c.i, c.off = c.i+1, 0
		}
	}
	return nil
}

// widen16 reads len(dst) little-endian 16-bit values of encoding enc (bf16
// or fp16) and widens them into dst. A value may straddle two buffers.
func (c *cursor) widen16(dst []float32, enc pb.ValueEncoding) error {
	if 2*len(dst) > c.rem {
		return errShort
	}
	one := wire.BF16ToFloat32
	decode := wire.DecodeBF16
	if enc == pb.ValueEncoding_VALUE_ENCODING_FP16 {
		one, decode = wire.FP16ToFloat32, wire.DecodeFP16
	}
	for len(dst) > 0 {
		b := c.bufs[c.i].ReadOnlyData()[c.off:]
		if len(b) == 1 { // a value split across buffers
			lo, err := c.byte()
			if err != nil {
				return err
			}
			hi, err := c.byte()
			if err != nil {
				return err
			}
			dst[0] = one(uint16(lo) | uint16(hi)<<8)
			dst = dst[1:]
			continue
		}
		k := min(len(b)/2, len(dst))
		// decode appends into dst's own storage: its capacity suffices.
		if _, err := decode(dst[:0:k], b[:2*k]); err != nil {
			return fmt.Errorf("%w: %v", errFrame, err)
		}
		dst = dst[k:]
		c.off += 2 * k
		c.rem -= 2 * k
		if c.off == len(c.bufs[c.i].ReadOnlyData()) {
			c.i, c.off = c.i+1, 0
		}
	}
	return nil
}

func (c *cursor) advance(n int) error {
	if n > c.rem {
		return errShort
	}
	for n > 0 {
		b := c.bufs[c.i].ReadOnlyData()[c.off:]
		k := min(n, len(b))
		n -= k
		c.off += k
		c.rem -= k
		if k == len(b) {
			c.i, c.off = c.i+1, 0
		}
	}
	return nil
}

// skip skips a field value of an unknown field.
func (c *cursor) skip(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := c.varint()
		return err
	case protowire.Fixed32Type:
		return c.advance(4)
	case protowire.Fixed64Type:
		return c.advance(8)
	case protowire.BytesType:
		n, err := c.length()
		if err != nil {
			return err
		}
		return c.advance(n)
	}
	return fmt.Errorf("%w: unsupported wire type %d", errFrame, typ)
}
