package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/flowps/flowps/ps"
)

// npyMagic starts every .npy file: "\x93NUMPY".
const npyMagic = "\x93NUMPY"

// MaxNPYHeader bounds the header a reader accepts (numpy's own limit for
// format 1.0 is 65535 bytes; 2.0 allows more, which we do not need).
const MaxNPYHeader = 1 << 20

// WriteNPY writes a float32 array of the given shape in numpy's .npy
// format 1.0 ('<f4', C order), its header padded so the data starts at a
// multiple of 64 bytes, as numpy ≥ 1.23 writes it.
func WriteNPY(w io.Writer, shape []int64, data []float32) error {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return ps.Errorf(ps.ErrInvalidArgument, "npy: negative dimension in %v", shape)
		}
		n *= d
	}
	if n != int64(len(data)) {
		return ps.Errorf(ps.ErrShapeMismatch, "npy: shape %v holds %d values, have %d", shape, n, len(data))
	}
	h := npyHeader("<f4", shape)
	if len(h) > math.MaxUint16 {
		return ps.Errorf(ps.ErrTooLarge, "npy: header of %d bytes", len(h))
	}
	var pre [10]byte
	copy(pre[:], npyMagic)
	pre[6], pre[7] = 1, 0
	binary.LittleEndian.PutUint16(pre[8:], uint16(len(h)))
	if _, err := w.Write(pre[:]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, h); err != nil {
		return err
	}
	buf := make([]byte, 0, 64<<10)
	for i := 0; i < len(data); {
		buf = buf[:0]
		for ; i < len(data) && len(buf) < cap(buf); i++ {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(data[i]))
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// npyHeader renders the header dict as numpy does, padded with spaces and
// a newline so that 10+len is a multiple of 64.
func npyHeader(descr string, shape []int64) string {
	var s strings.Builder
	s.WriteString("(")
	for i, d := range shape {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(strconv.FormatInt(d, 10))
	}
	if len(shape) == 1 {
		s.WriteString(",")
	}
	s.WriteString(")")
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, s.String())
	pad := 64 - (10+len(h)+1)%64
	if pad == 64 {
		pad = 0
	}
	return h + strings.Repeat(" ", pad) + "\n"
}

// Array is an array read from a .npy file: its dtype descriptor (such as
// "<f4"), its shape, and its data as raw little-endian bytes in C order.
type Array struct {
	Descr string
	Shape []int64
	Data  []byte
}

// Float32 returns the data of a '<f4' array.
func (a *Array) Float32() ([]float32, error) {
	if a.Descr != "<f4" {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: dtype %s, want <f4", a.Descr)
	}
	out := make([]float32, len(a.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(a.Data[4*i:]))
	}
	return out, nil
}

var (
	reDescr   = regexp.MustCompile(`'descr':\s*'([<>|=][a-zA-Z][0-9]+)'`)
	reFortran = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	reShape   = regexp.MustCompile(`'shape':\s*\(([0-9,\s]*)\)`)
)

// itemSizes are the fixed-size little-endian or byte-order-free dtypes the
// reader accepts.
var itemSizes = map[string]int64{
	"<f4": 4, "<f8": 8, "<f2": 2, "<i8": 8, "<i4": 4, "<i2": 2, "|i1": 1,
	"<u8": 8, "<u4": 4, "<u2": 2, "|u1": 1, "|b1": 1,
}

// ReadNPY reads a .npy file (format 1.0, 2.0 or 3.0) holding a C-order
// array of a fixed-size little-endian dtype. It checks the magic, the
// header and that the data is exactly the size the shape says, reading at
// most limit data bytes (limit ≤ 0: no bound). Errors wrap
// ps.ErrInvalidArgument.
func ReadNPY(r io.Reader, limit int64) (*Array, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: short preamble: %v", err)
	}
	if string(pre[:6]) != npyMagic {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: bad magic")
	}
	var hlen uint32
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: short header length: %v", err)
		}
		hlen = uint32(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: short header length: %v", err)
		}
		hlen = binary.LittleEndian.Uint32(b[:])
	default:
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: format version %d.%d", pre[6], pre[7])
	}
	if hlen > MaxNPYHeader {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: header of %d bytes", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: short header: %v", err)
	}
	h := string(hb)
	if !strings.HasPrefix(strings.TrimSpace(h), "{") || !strings.HasSuffix(strings.TrimSpace(h), "}") {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: header is not a dict")
	}
	a := &Array{}
	m := reDescr.FindStringSubmatch(h)
	if m == nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: header without a supported 'descr'")
	}
	a.Descr = m[1]
	item, ok := itemSizes[a.Descr]
	if !ok {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: unsupported dtype %s", a.Descr)
	}
	if m := reFortran.FindStringSubmatch(h); m == nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: header without 'fortran_order'")
	} else if m[1] == "True" {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: Fortran-order arrays are not supported")
	}
	m = reShape.FindStringSubmatch(h)
	if m == nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: header without a 'shape' tuple")
	}
	n := item
	for _, f := range strings.Split(m[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.ParseInt(f, 10, 64)
		if err != nil || d < 0 {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: dimension %q", f)
		}
		if d > 0 && n > math.MaxInt64/d {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: shape %s overflows", m[1])
		}
		n *= d
		a.Shape = append(a.Shape, d)
	}
	if limit > 0 && n > limit {
		return nil, ps.Errorf(ps.ErrTooLarge, "npy: %d data bytes, limit %d", n, limit)
	}
	// Read without trusting n for the allocation: grow as data arrives.
	var buf bytes.Buffer
	got, err := io.Copy(&buf, io.LimitReader(r, n+1))
	if err != nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: data: %v", err)
	}
	if got != n {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npy: %d data bytes, shape %v of %s needs %d", got, a.Shape, a.Descr, n)
	}
	a.Data = buf.Bytes()
	return a, nil
}

// NPZWriter writes arrays into a .npz archive (a zip of .npy files, stored
// uncompressed as numpy.savez does).
type NPZWriter struct {
	z     *zip.Writer
	names map[string]bool
}

// NewNPZWriter starts an archive on w.
func NewNPZWriter(w io.Writer) *NPZWriter {
	return &NPZWriter{z: zip.NewWriter(w), names: map[string]bool{}}
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)

// NPZKey returns the key under which numpy.load shows a variable: its name,
// or, for a name that could escape a directory when unzipped (empty, "..",
// a leading "/" or odd bytes), its escaped form.
func NPZKey(name string) string {
	if safeName.MatchString(name) && !strings.Contains(name, "..") && !strings.Contains(name, "//") {
		return name
	}
	return escapeName(name)
}

// Add writes one float32 array under NPZKey(name).
func (z *NPZWriter) Add(name string, shape []int64, data []float32) error {
	key := NPZKey(name)
	if z.names[key] {
		return ps.Errorf(ps.ErrInvalidArgument, "npz: two arrays named %s", key)
	}
	z.names[key] = true
	w, err := z.z.CreateHeader(&zip.FileHeader{Name: key + ".npy", Method: zip.Store})
	if err != nil {
		return err
	}
	return WriteNPY(w, shape, data)
}

// Close finishes the archive (it does not close the underlying writer).
func (z *NPZWriter) Close() error { return z.z.Close() }

// ReadNPZ reads every array of a .npz archive, keyed by file name without
// ".npy", reading at most limit data bytes per array (≤ 0: no bound).
func ReadNPZ(r io.ReaderAt, size, limit int64) (map[string]*Array, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "npz: %v", err)
	}
	out := map[string]*Array{}
	for _, f := range zr.File {
		key, ok := strings.CutSuffix(f.Name, ".npy")
		if !ok {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npz: member %q is not a .npy file", f.Name)
		}
		if _, dup := out[key]; dup {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npz: member %q twice", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, ps.Errorf(ps.ErrInvalidArgument, "npz: %s: %v", f.Name, err)
		}
		a, err := ReadNPY(rc, limit)
		if err == nil {
			// Reading to the end makes archive/zip check the CRC-32.
			var extra [1]byte
			if n, rerr := rc.Read(extra[:]); n > 0 {
				err = ps.Errorf(ps.ErrInvalidArgument, "npz: %s: trailing data", f.Name)
			} else if rerr != nil && rerr != io.EOF {
				err = ps.Errorf(ps.ErrInvalidArgument, "npz: %s: %v", f.Name, rerr)
			}
		}
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("npz: %s: %w", f.Name, err)
		}
		out[key] = a
	}
	return out, nil
}
