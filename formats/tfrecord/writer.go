package tfrecord

import (
	"bufio"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrClosedWriter reports a write to a closed Writer.
var ErrClosedWriter = errors.New("tfrecord: writer closed")

// WriterOptions configure a Writer. The zero value writes plain records.
type WriterOptions struct {
	// Compression of the whole stream: None (or Auto, the zero value), Gzip
	// or Zlib.
	Compression Compression
	// Level is the compression level (compress/flate's levels); zero means
	// the default level.
	Level int
}

// Writer writes TFRecord records. It is not safe for concurrent use.
type Writer struct {
	w     io.Writer      // where framed records go (buffer or compressor)
	bw    *bufio.Writer  // buffer over the destination
	comp  io.WriteCloser // compressor, if any
	file  io.Closer      // file owned by the writer (Create)
	hdr   [headerLen]byte
	ftr   [footerLen]byte
	n     int64 // records written
	close bool
}

// NewWriter returns a Writer that writes records to w. Close must be called
// to flush buffered data and finish the compressed stream; it does not close
// w.
func NewWriter(w io.Writer, opts WriterOptions) (*Writer, error) {
	wr := &Writer{bw: bufio.NewWriterSize(w, 64<<10)}
	level := opts.Level
	switch opts.Compression {
	case Auto, None:
		wr.w = wr.bw
	case Gzip:
		if level == 0 {
			level = gzip.DefaultCompression
		}
		zw, err := gzip.NewWriterLevel(wr.bw, level)
		if err != nil {
			return nil, fmt.Errorf("tfrecord: gzip writer: %w", err)
		}
		wr.comp, wr.w = zw, zw
	case Zlib:
		if level == 0 {
			level = zlib.DefaultCompression
		}
		zw, err := zlib.NewWriterLevel(wr.bw, level)
		if err != nil {
			return nil, fmt.Errorf("tfrecord: zlib writer: %w", err)
		}
		wr.comp, wr.w = zw, zw
	default:
		return nil, fmt.Errorf("tfrecord: unknown compression %d", int(opts.Compression))
	}
	return wr, nil
}

// Create creates (or truncates) the file at path and returns a Writer that
// owns it: Close closes the file.
func Create(path string, opts WriterOptions) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("tfrecord: %w", err)
	}
	w, err := NewWriter(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.file = f
	return w, nil
}

// Write appends one record holding data.
func (w *Writer) Write(data []byte) error {
	if w.close {
		return ErrClosedWriter
	}
	binary.LittleEndian.PutUint64(w.hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(w.hdr[8:], MaskedCRC(w.hdr[:8]))
	binary.LittleEndian.PutUint32(w.ftr[:], MaskedCRC(data))
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return fmt.Errorf("tfrecord: write record %d: %w", w.n, err)
	}
	if _, err := w.w.Write(data); err != nil {
		return fmt.Errorf("tfrecord: write record %d: %w", w.n, err)
	}
	if _, err := w.w.Write(w.ftr[:]); err != nil {
		return fmt.Errorf("tfrecord: write record %d: %w", w.n, err)
	}
	w.n++
	return nil
}

// Count returns the number of records written.
func (w *Writer) Count() int64 { return w.n }

// Flush writes buffered records to the destination. With compression, the
// compressor is flushed too (a sync flush), so a reader sees every record
// written so far.
func (w *Writer) Flush() error {
	if w.close {
		return ErrClosedWriter
	}
	if f, ok := w.comp.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("tfrecord: flush: %w", err)
		}
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("tfrecord: flush: %w", err)
	}
	return nil
}

// Close finishes the stream, flushes it, and closes the file if the Writer
// was made by Create. Closing twice returns ErrClosedWriter.
func (w *Writer) Close() error {
	if w.close {
		return ErrClosedWriter
	}
	w.close = true
	var errs []error
	if w.comp != nil {
		errs = append(errs, w.comp.Close())
	}
	errs = append(errs, w.bw.Flush())
	if w.file != nil {
		errs = append(errs, w.file.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tfrecord: close: %w", err)
	}
	return nil
}
