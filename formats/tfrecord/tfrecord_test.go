package tfrecord

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testdata = "../../testdata/"

func readAll(t testing.TB, r *Reader) [][]byte {
	t.Helper()
	var out [][]byte
	for rec, err := range r.All() {
		if err != nil {
			t.Fatalf("record %d: %v", len(out), err)
		}
		out = append(out, append([]byte(nil), rec...))
	}
	return out
}

func openFile(t testing.TB, path string) *Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := NewReaderOptions(f, ReaderOptions{Name: path})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func encode(t testing.TB, opts WriterOptions, recs ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The Spark connector's part file and Hadoop's gzipped copy of it hold the
// same five records; re-encoding them reproduces the Java writer's bytes.
func TestSparkConnectorFiles(t *testing.T) {
	plain := openFile(t, testdata+"ecosystem_hadoop_part-m-00000.tfrecord")
	if plain.Compression() != None {
		t.Fatalf("plain file detected as %v", plain.Compression())
	}
	recs := readAll(t, plain)
	if len(recs) != 5 {
		t.Fatalf("got %d records, want 5", len(recs))
	}
	gz := openFile(t, testdata+"ecosystem_hadoop_part-m-00000.tfrecord.gz")
	if gz.Compression() != Gzip {
		t.Fatalf("gzip file detected as %v", gz.Compression())
	}
	grecs := readAll(t, gz)
	if len(grecs) != 5 {
		t.Fatalf("gzip: got %d records, want 5", len(grecs))
	}
	for i := range recs {
		if !bytes.Equal(recs[i], grecs[i]) {
			t.Errorf("record %d differs between plain and gzip", i)
		}
	}
	raw, err := os.ReadFile(testdata + "ecosystem_hadoop_part-m-00000.tfrecord")
	if err != nil {
		t.Fatal(err)
	}
	if got := encode(t, WriterOptions{}, recs...); !bytes.Equal(got, raw) {
		t.Errorf("re-encoded records differ from the Java writer's file")
	}
	// Our gzip output reads back the same.
	r, err := NewReader(bytes.NewReader(encode(t, WriterOptions{Compression: Gzip}, recs...)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Compression() != Gzip || len(readAll(t, r)) != 5 {
		t.Errorf("own gzip stream not read back")
	}
}

func TestLingvoFraming(t *testing.T) {
	raw, err := os.ReadFile(testdata + "lingvo_en_fr.tfrecord")
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, openFile(t, testdata+"lingvo_en_fr.tfrecord"))
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	total := 0
	for _, r := range recs {
		total += headerLen + len(r) + footerLen
	}
	if total != len(raw) {
		t.Errorf("records cover %d bytes, file has %d", total, len(raw))
	}
	if got := encode(t, WriterOptions{}, recs...); !bytes.Equal(got, raw) {
		t.Errorf("re-encoded records differ from TensorFlow's file")
	}
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	recs := [][]byte{{}, []byte("a"), big, []byte("last")}
	for _, c := range []Compression{None, Gzip, Zlib} {
		t.Run(c.String(), func(t *testing.T) {
			stream := encode(t, WriterOptions{Compression: c}, recs...)
			for _, rc := range []Compression{Auto, c} {
				r, err := NewReaderOptions(bytes.NewReader(stream), ReaderOptions{Compression: rc})
				if err != nil {
					t.Fatal(err)
				}
				if r.Compression() != c {
					t.Errorf("reader with %v: compression %v, want %v", rc, r.Compression(), c)
				}
				got := readAll(t, r)
				if len(got) != len(recs) {
					t.Fatalf("got %d records, want %d", len(got), len(recs))
				}
				for i := range recs {
					if !bytes.Equal(got[i], recs[i]) {
						t.Errorf("record %d differs", i)
					}
				}
				if r.Index() != int64(len(recs)) {
					t.Errorf("Index() = %d", r.Index())
				}
				if _, err := r.Next(); err != io.EOF {
					t.Errorf("after the end: %v, want io.EOF", err)
				}
			}
		})
	}
}

func TestEmptyStream(t *testing.T) {
	r, err := NewReader(bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
}

// A plain record whose length bytes look like a gzip or zlib header is still
// read as plain, because its header checksum holds.
func TestDetectPrefersValidHeader(t *testing.T) {
	for _, n := range []int{0x8b1f, 0x9c78, 0x0178} {
		stream := encode(t, WriterOptions{}, make([]byte, n))
		r, err := NewReader(bytes.NewReader(stream))
		if err != nil {
			t.Fatal(err)
		}
		if r.Compression() != None {
			t.Errorf("length %#x: detected %v", n, r.Compression())
		}
		if got := readAll(t, r); len(got) != 1 || len(got[0]) != n {
			t.Errorf("length %#x: bad read", n)
		}
	}
}

func threeRecords(t testing.TB) ([]byte, []int) {
	recs := [][]byte{[]byte("first record"), []byte("second"), []byte("the third one")}
	stream := encode(t, WriterOptions{}, recs...)
	offs := []int{0}
	for _, r := range recs {
		offs = append(offs, offs[len(offs)-1]+headerLen+len(r)+footerLen)
	}
	return stream, offs
}

func TestCorruptChecksums(t *testing.T) {
	stream, offs := threeRecords(t)
	cases := []struct {
		name string
		pos  int // byte to flip
		want string
	}{
		{"length", offs[1] + 0, "length checksum mismatch"},
		{"length crc", offs[1] + 9, "length checksum mismatch"},
		{"data", offs[1] + headerLen + 2, "data checksum mismatch"},
		{"data crc", offs[2] - 1, "data checksum mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := append([]byte(nil), stream...)
			bad[c.pos] ^= 0x40
			r, err := NewReaderOptions(bytes.NewReader(bad), ReaderOptions{Compression: None, Name: "x.tfrecord"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Next(); err != nil {
				t.Fatalf("record 0: %v", err)
			}
			_, err = r.Next()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			wantWhere := fmt.Sprintf("x.tfrecord: record 1 at offset %d", offs[1])
			if !strings.Contains(err.Error(), wantWhere) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q / %q", err, wantWhere, c.want)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("error not sticky: %v", err2)
			}
		})
	}
	// The same corruption inside a gzip stream is found too.
	bad := append([]byte(nil), stream...)
	bad[offs[2]+headerLen] ^= 1
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bad)
	zw.Close()
	r, err := NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, err = range r.All() {
		if err != nil {
			break
		}
		n++
	}
	if n != 2 || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "record 2") {
		t.Errorf("gzip: %d records then %v", n, err)
	}
}

// Cutting the stream anywhere yields the whole records before the cut, then
// io.EOF at a record boundary or ErrTruncated inside a record.
func TestTruncated(t *testing.T) {
	stream, offs := threeRecords(t)
	for cut := 0; cut < len(stream); cut++ {
		for _, c := range []Compression{None, Gzip} {
			in := stream[:cut]
			if c == Gzip {
				var gz bytes.Buffer
				zw := gzip.NewWriter(&gz)
				zw.Write(stream)
				zw.Close()
				// Cut the compressed stream proportionally; count whole
				// records from what the reader returns.
				in = gz.Bytes()[:cut*gz.Len()/len(stream)]
			}
			r, err := NewReaderOptions(bytes.NewReader(in), ReaderOptions{Compression: c})
			if err != nil {
				if c == Gzip {
					continue // a cut inside the gzip header
				}
				t.Fatal(err)
			}
			var n int
			for {
				_, err = r.Next()
				if err != nil {
					break
				}
				n++
			}
			if c == None {
				boundary := -1
				whole := 0
				for i, o := range offs {
					if o <= cut {
						whole = i
					}
					if o == cut {
						boundary = i
					}
				}
				if n != whole {
					t.Errorf("cut %d: %d records, want %d", cut, n, whole)
				}
				if boundary >= 0 {
					if err != io.EOF {
						t.Errorf("cut %d at a boundary: %v, want io.EOF", cut, err)
					}
				} else if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), fmt.Sprintf("record %d at offset %d", whole, offs[whole])) {
					t.Errorf("cut %d: %v, want ErrTruncated naming record %d", cut, err, whole)
				}
			} else if err == io.EOF || !errors.Is(err, ErrTruncated) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("gzip cut %d: %d records then %v, want truncation", cut, n, err)
			}
		}
	}
}

func TestMaxRecordSize(t *testing.T) {
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint64(hdr[:8], 1<<40)
	binary.LittleEndian.PutUint32(hdr[8:], MaskedCRC(hdr[:8]))
	r, err := NewReader(bytes.NewReader(hdr[:]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("got %v", err)
	}
	// A valid length beyond the data is a truncation, found without
	// allocating the claimed size.
	binary.LittleEndian.PutUint64(hdr[:8], 100<<20)
	binary.LittleEndian.PutUint32(hdr[8:], MaskedCRC(hdr[:8]))
	r, _ = NewReader(bytes.NewReader(append(hdr[:], "short"...)))
	if _, err := r.Next(); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "data has 5 of 104857600 bytes") {
		t.Fatalf("got %v", err)
	}
	r, _ = NewReaderOptions(bytes.NewReader(encode(t, WriterOptions{}, make([]byte, 100))), ReaderOptions{MaxRecordSize: 99})
	if _, err := r.Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MaxRecordSize 99, record of 100: %v", err)
	}
}

func TestWriterClosed(t *testing.T) {
	w, err := NewWriter(io.Discard, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]byte("x")); !errors.Is(err, ErrClosedWriter) {
		t.Errorf("write after close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosedWriter) {
		t.Errorf("second close: %v", err)
	}
	if _, err := NewWriter(io.Discard, WriterOptions{Compression: Compression(9)}); err == nil {
		t.Errorf("unknown compression accepted")
	}
}

// Flush makes every record written so far readable, even mid-gzip-stream.
func TestFlushGzip(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, WriterOptions{Compression: Gzip})
	w.Write([]byte("one"))
	w.Write([]byte("two"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"one", "two"} {
		rec, err := r.Next()
		if err != nil || string(rec) != want {
			t.Fatalf("record %d: %q, %v", i, rec, err)
		}
	}
	w.Close()
}

func writeFile(t testing.TB, path string, c Compression, recs ...string) {
	t.Helper()
	w, err := Create(path, WriterOptions{Compression: c})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenPatterns(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "part-00001.gz"), Gzip, "c", "d")
	writeFile(t, filepath.Join(dir, "part-00000"), None, "a", "b")
	writeFile(t, filepath.Join(dir, "part-00002"), Zlib, "e")
	os.WriteFile(filepath.Join(dir, "_SUCCESS"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, ".part-00000.crc"), []byte("junk"), 0o644)
	os.Mkdir(filepath.Join(dir, "part-sub"), 0o755)

	read := func(pattern string) string {
		t.Helper()
		m, err := Open(pattern)
		if err != nil {
			t.Fatalf("Open(%q): %v", pattern, err)
		}
		defer m.Close()
		var s []string
		for rec, err := range m.All() {
			if err != nil {
				t.Fatalf("Open(%q): %v", pattern, err)
			}
			s = append(s, string(rec)+"@"+filepath.Base(m.File()))
		}
		return strings.Join(s, " ")
	}
	if got, want := read(dir), "a@part-00000 b@part-00000 c@part-00001.gz d@part-00001.gz e@part-00002"; got != want {
		t.Errorf("directory: %q, want %q", got, want)
	}
	if got, want := read(filepath.Join(dir, "part-0000[12]*")), "c@part-00001.gz d@part-00001.gz e@part-00002"; got != want {
		t.Errorf("glob: %q, want %q", got, want)
	}
	if got, want := read(filepath.Join(dir, "part-00001.gz")), "c@part-00001.gz d@part-00001.gz"; got != want {
		t.Errorf("file: %q, want %q", got, want)
	}
	// A directory without part-* files falls back to its other files.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "train.tfrecord"), None, "x")
	os.WriteFile(filepath.Join(other, "_SUCCESS"), nil, 0o644)
	if got := read(other); got != "x@train.tfrecord" {
		t.Errorf("directory without part files: %q", got)
	}
	for _, p := range []string{filepath.Join(dir, "nothing*"), filepath.Join(dir, "missing"), t.TempDir()} {
		if _, err := Open(p); !errors.Is(err, ErrNoFiles) {
			t.Errorf("Open(%q): %v, want ErrNoFiles", p, err)
		}
	}
	if _, err := Open("[bad"); err == nil {
		t.Errorf("bad glob accepted")
	}
	recs, err := ReadAll(dir)
	if err != nil || len(recs) != 5 {
		t.Errorf("ReadAll: %d records, %v", len(recs), err)
	}
}

func TestOpenCorruptNamesFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "part-0"), None, "a")
	stream, _ := threeRecords(t)
	stream[len(stream)-1] ^= 1
	os.WriteFile(filepath.Join(dir, "part-1"), stream, 0o644)
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var n int
	for _, err = range m.All() {
		if err != nil {
			break
		}
		n++
	}
	if n != 3 || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Join(dir, "part-1")+": record 2 at offset") {
		t.Errorf("%d records then %v", n, err)
	}
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"ecosystem_hadoop_part-m-00000.tfrecord", "ecosystem_hadoop_part-m-00000.tfrecord.gz", "lingvo_en_fr.tfrecord"} {
		if b, err := os.ReadFile(testdata + name); err == nil {
			f.Add(b)
		}
	}
	stream, _ := threeRecords(f)
	f.Add(stream)
	f.Add(encode(f, WriterOptions{Compression: Zlib}, []byte("z")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewReaderOptions(bytes.NewReader(in), ReaderOptions{MaxRecordSize: 1 << 20})
		if err != nil {
			return
		}
		var recs [][]byte
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) && r.Compression() == None {
					t.Fatalf("plain stream: unexpected error kind %v", err)
				}
				return
			}
			recs = append(recs, append([]byte(nil), rec...))
		}
		// A plain stream read to its end is exactly its records re-framed.
		if r.Compression() == None {
			if got := encode(t, WriterOptions{}, recs...); !bytes.Equal(got, in) {
				t.Fatalf("re-framed %d records differ from the input", len(recs))
			}
		}
	})
}
