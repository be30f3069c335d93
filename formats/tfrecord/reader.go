package tfrecord

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
)

// ReaderOptions configure a Reader. The zero value auto-detects the
// compression and uses DefaultMaxRecordSize.
type ReaderOptions struct {
	// Compression of the stream; Auto (zero) detects it.
	Compression Compression
	// MaxRecordSize is the largest record length, in bytes, accepted before
	// reading its data; zero means DefaultMaxRecordSize.
	MaxRecordSize int64
	// Name names the stream (a file path) in error messages; may be empty.
	Name string
}

// Reader reads TFRecord records from a stream and verifies both checksums
// of every record. It is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	dec     io.Closer // decompressor, if any
	comp    Compression
	max     int64
	name    string
	index   int64 // index of the next record
	offset  int64 // offset of the next record in the uncompressed stream
	buf     bytes.Buffer
	hdr     [headerLen]byte
	ftr     [footerLen]byte
	err     error // sticky error
	started bool
}

// NewReader returns a Reader of r with default options (compression
// auto-detected). It reads the first bytes of r to detect the compression.
func NewReader(r io.Reader) (*Reader, error) {
	return NewReaderOptions(r, ReaderOptions{})
}

// NewReaderOptions returns a Reader of r configured by opts.
func NewReaderOptions(r io.Reader, opts ReaderOptions) (*Reader, error) {
	rd := &Reader{max: opts.MaxRecordSize, name: opts.Name}
	if rd.max <= 0 {
		rd.max = DefaultMaxRecordSize
	}
	br := bufio.NewReaderSize(r, 64<<10)
	comp := opts.Compression
	if comp == Auto {
		comp = detect(br)
	}
	rd.comp = comp
	switch comp {
	case None:
		rd.br = br
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, rd.errorf("open gzip stream: %w", err)
		}
		rd.dec = zr
		rd.br = bufio.NewReaderSize(zr, 64<<10)
	case Zlib:
		zr, err := zlib.NewReader(br)
		if err != nil {
			return nil, rd.errorf("open zlib stream: %w", err)
		}
		rd.dec = zr
		rd.br = bufio.NewReaderSize(zr, 64<<10)
	default:
		return nil, rd.errorf("unknown compression %d", int(comp))
	}
	return rd, nil
}

// detect chooses the compression of the stream from its first bytes. A valid
// record header (its CRC checks) wins, since a plain record's length bytes
// may look like a gzip or zlib header; an empty stream is None.
func detect(br *bufio.Reader) Compression {
	p, _ := br.Peek(headerLen)
	if len(p) == headerLen && binary.LittleEndian.Uint32(p[8:]) == MaskedCRC(p[:8]) {
		return None
	}
	if len(p) >= 2 && p[0] == 0x1f && p[1] == 0x8b {
		return Gzip
	}
	if len(p) >= 2 && p[0]&0x0f == 8 && p[0]>>4 <= 7 && (uint16(p[0])<<8|uint16(p[1]))%31 == 0 {
		return Zlib
	}
	return None
}

// Compression returns the compression in use (the detected one for Auto).
func (r *Reader) Compression() Compression { return r.comp }

// Index returns the index of the record the next call to Next reads, which
// is also the number of records read so far.
func (r *Reader) Index() int64 { return r.index }

// Next returns the next record's data. The slice is valid until the next
// call to Next. At the clean end of the stream it returns io.EOF; a stream
// that ends inside a record yields an error wrapping ErrTruncated, and a
// checksum mismatch one wrapping ErrCorrupt, both naming the record index and
// its offset in the uncompressed stream. Errors are sticky.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	r.index++
	r.offset += headerLen + int64(len(rec)) + footerLen
	return rec, nil
}

func (r *Reader) next() ([]byte, error) {
	n, err := io.ReadFull(r.br, r.hdr[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, r.recordErr(ErrTruncated, "header has %d of %d bytes", n, headerLen)
		}
		return nil, r.recordErr(err, "read header")
	}
	length := binary.LittleEndian.Uint64(r.hdr[:8])
	if got, want := binary.LittleEndian.Uint32(r.hdr[8:]), MaskedCRC(r.hdr[:8]); got != want {
		return nil, r.recordErr(ErrCorrupt, "length checksum mismatch (stored %#08x, computed %#08x)", got, want)
	}
	if length > uint64(r.max) {
		return nil, r.recordErr(ErrCorrupt, "length %d exceeds the limit of %d bytes", length, r.max)
	}
	// Grow the buffer as data arrives rather than trusting the length, so a
	// short stream cannot make us allocate length bytes up front.
	r.buf.Reset()
	m, err := io.CopyN(&r.buf, r.br, int64(length))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, r.recordErr(ErrTruncated, "data has %d of %d bytes", m, length)
		}
		return nil, r.recordErr(err, "read data")
	}
	n, err = io.ReadFull(r.br, r.ftr[:])
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, r.recordErr(ErrTruncated, "data checksum has %d of %d bytes", n, footerLen)
		}
		return nil, r.recordErr(err, "read data checksum")
	}
	data := r.buf.Bytes()
	if got, want := binary.LittleEndian.Uint32(r.ftr[:]), MaskedCRC(data); got != want {
		return nil, r.recordErr(ErrCorrupt, "data checksum mismatch (stored %#08x, computed %#08x, %d bytes)", got, want, length)
	}
	return data, nil
}

// All returns an iterator over the remaining records and a final error, if
// any (io.EOF is not reported). Each record is valid only during its
// iteration step.
func (r *Reader) All() iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

// Close releases the decompressor, if any. It does not close the underlying
// reader.
func (r *Reader) Close() error {
	if r.dec != nil {
		return r.dec.Close()
	}
	return nil
}

func (r *Reader) recordErr(sentinel error, format string, args ...any) error {
	where := fmt.Sprintf("record %d at offset %d", r.index, r.offset)
	if r.comp == Gzip || r.comp == Zlib {
		where += " (uncompressed)"
	}
	if r.name != "" {
		where = r.name + ": " + where
	}
	return fmt.Errorf("%s: %s: %w", where, fmt.Sprintf(format, args...), sentinel)
}

func (r *Reader) errorf(format string, args ...any) error {
	prefix := "tfrecord: "
	if r.name != "" {
		prefix += r.name + ": "
	}
	return fmt.Errorf("%s%w", prefix, fmt.Errorf(format, args...))
}
