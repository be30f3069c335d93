package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Errors of the IDX decoder. They are wrapped with the file name and the
// details; match them with errors.Is.
var (
	// ErrFormat reports a malformed IDX header or content: bad magic, an
	// unsupported element type, a zero or oversized dimension, trailing
	// bytes, labels out of range, or images and labels that disagree.
	ErrFormat = errors.New("data: bad IDX file")
	// ErrTruncated reports a file that ends before its header says it should.
	ErrTruncated = errors.New("data: truncated IDX file")
	// ErrNotFound reports a data set that could not be located.
	ErrNotFound = errors.New("data: data set not found")
)

// IDX element type codes (the third byte of the magic number).
const (
	IDXUint8   byte = 0x08
	IDXInt8    byte = 0x09
	IDXInt16   byte = 0x0B
	IDXInt32   byte = 0x0C
	IDXFloat32 byte = 0x0D
	IDXFloat64 byte = 0x0E
)

// Limits the decoder enforces so that a hostile header cannot make it
// allocate without bound.
const (
	// MaxIDXDims is the largest number of dimensions accepted.
	MaxIDXDims = 8
	// MaxIDXBytes is the largest payload accepted (1 GiB).
	MaxIDXBytes = 1 << 30
)

// IDX is a decoded IDX array of unsigned bytes (the only element type MNIST
// uses): Dims from the header, outermost first, and Data row-major with
// len(Data) equal to the product of Dims.
type IDX struct {
	Dims []int
	Data []byte
}

var gzipMagic = []byte{0x1f, 0x8b}

// DecodeIDX decodes an IDX array of uint8 from r. A gzip stream is detected
// by its magic bytes and decompressed. The header is validated strictly:
// the magic must be 0x00 0x00 0x08 n with 1 ≤ n ≤ MaxIDXDims, every
// dimension must be ≥ 1, the payload must fit MaxIDXBytes, the data must be
// complete (ErrTruncated) and nothing may follow it (ErrFormat).
func DecodeIDX(r io.Reader) (*IDX, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(2)
	if err == nil && bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip header: %v", ErrFormat, err)
		}
		defer zr.Close()
		out, err := decodeIDX(bufio.NewReaderSize(zr, 64<<10), "decompressed ")
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	return decodeIDX(br, "")
}

func decodeIDX(r *bufio.Reader, what string) (*IDX, error) {
	var magic [4]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		if n == 0 && err == io.EOF {
			return nil, fmt.Errorf("%w: empty file", ErrTruncated)
		}
		return nil, fmt.Errorf("%w: header has %d of 4 %sbytes of magic number", ErrTruncated, n, what)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, fmt.Errorf("%w: bad magic number %#02x%02x%02x%02x (want 0x0000 then type and rank)",
			ErrFormat, magic[0], magic[1], magic[2], magic[3])
	}
	switch magic[2] {
	case IDXUint8:
	case IDXInt8, IDXInt16, IDXInt32, IDXFloat32, IDXFloat64:
		return nil, fmt.Errorf("%w: element type %#02x is valid IDX but not supported (only uint8, 0x08)", ErrFormat, magic[2])
	default:
		return nil, fmt.Errorf("%w: unknown element type %#02x in magic number", ErrFormat, magic[2])
	}
	rank := int(magic[3])
	if rank < 1 || rank > MaxIDXDims {
		return nil, fmt.Errorf("%w: %d dimensions, want 1 to %d", ErrFormat, rank, MaxIDXDims)
	}
	hdr := make([]byte, 4*rank)
	if n, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("%w: header has %d of %d %sbytes of dimensions", ErrTruncated, n, 4*rank, what)
	}
	dims := make([]int, rank)
	total := int64(1)
	for i := range dims {
		d := binary.BigEndian.Uint32(hdr[4*i:])
		if d == 0 {
			return nil, fmt.Errorf("%w: dimension %d is 0", ErrFormat, i)
		}
		total *= int64(d)
		if total > MaxIDXBytes {
			return nil, fmt.Errorf("%w: dimensions %v make more than %d bytes", ErrFormat, dimsOf(hdr), int64(MaxIDXBytes))
		}
		dims[i] = int(d)
	}
	// Grow the buffer as bytes arrive rather than trusting the header with
	// one large allocation.
	buf := bytes.NewBuffer(make([]byte, 0, min(total, 1<<20)))
	n, err := buf.ReadFrom(io.LimitReader(r, total))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: corrupt data after %d of %d %sbytes of payload: %v", ErrFormat, n, total, what, err)
	}
	if n < total {
		return nil, fmt.Errorf("%w: payload has %d of %d %sbytes (header %d bytes, dimensions %v)",
			ErrTruncated, n, total, what, 4+4*rank, dims)
	}
	if _, err := r.ReadByte(); err == nil {
		return nil, fmt.Errorf("%w: trailing data after %d %sbytes of payload (dimensions %v)", ErrFormat, total, what, dims)
	} else if err != io.EOF {
		return nil, fmt.Errorf("%w: after payload: %v", ErrFormat, err)
	}
	return &IDX{Dims: dims, Data: buf.Bytes()}, nil
}

func dimsOf(hdr []byte) []uint32 {
	out := make([]uint32, len(hdr)/4)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(hdr[4*i:])
	}
	return out
}

// ReadIDXFile decodes the IDX file at path (gzipped or not). Errors name the
// file.
func ReadIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return nil, err
	}
	defer f.Close()
	x, err := DecodeIDX(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return x, nil
}

// EncodeIDX writes x as an uncompressed IDX array of uint8. It checks that
// Dims and Data agree.
func EncodeIDX(w io.Writer, x *IDX) error {
	if len(x.Dims) < 1 || len(x.Dims) > MaxIDXDims {
		return fmt.Errorf("%w: %d dimensions, want 1 to %d", ErrFormat, len(x.Dims), MaxIDXDims)
	}
	total := 1
	hdr := make([]byte, 4+4*len(x.Dims))
	hdr[2], hdr[3] = IDXUint8, byte(len(x.Dims))
	for i, d := range x.Dims {
		if d < 1 || int64(d) > MaxIDXBytes {
			return fmt.Errorf("%w: dimension %d is %d", ErrFormat, i, d)
		}
		total *= d
		binary.BigEndian.PutUint32(hdr[4+4*i:], uint32(d))
	}
	if total != len(x.Data) {
		return fmt.Errorf("%w: dimensions %v need %d bytes, have %d", ErrFormat, x.Dims, total, len(x.Data))
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(x.Data)
	return err
}
