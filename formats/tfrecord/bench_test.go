package tfrecord

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkReader reads 3,136-byte records (an MNIST image as float_list)
// from memory, plain and gzipped; throughput counts uncompressed bytes.
func BenchmarkReader(b *testing.B) {
	rec := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 392)
	recs := make([][]byte, 1000)
	for i := range recs {
		recs[i] = rec
	}
	for _, c := range []Compression{None, Gzip} {
		stream := encode(b, WriterOptions{Compression: c}, recs...)
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(recs) * (len(rec) + headerLen + footerLen)))
			for b.Loop() {
				r, err := NewReader(bytes.NewReader(stream))
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := r.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkWriter(b *testing.B) {
	rec := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 392)
	b.SetBytes(int64(len(rec) + headerLen + footerLen))
	w, _ := NewWriter(io.Discard, WriterOptions{})
	for b.Loop() {
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
}
