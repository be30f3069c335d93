package checkpoint

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flowps/flowps/ps"
)

// partMagic starts every partition file; the last byte is the version of
// this framing.
var partMagic = [8]byte{'F', 'L', 'P', 'S', 'C', 'K', 'P', 1}

const partOverhead = 8 + 8 + 4 // magic, payload length, CRC-32C

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxPartBytes bounds the payload of one partition file a reader accepts
// (ps partitions are at most a few hundred MiB with every optimizer slot).
const MaxPartBytes = 16 << 30

// PartEntry describes one partition file of a checkpoint.
type PartEntry struct {
	Key     ps.PartKey  `json:"key"`
	Rows    ps.RowRange `json:"rows"`
	Version int64       `json:"version"`
	// File is the file's name inside the checkpoint directory.
	File string `json:"file"`
	// Bytes is the file's size and SHA256 the hex SHA-256 of its contents.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// PartFile is the file name of a partition: the variable name with every
// byte outside [A-Za-z0-9_-] written as %XX (so "/" and "." cannot form a
// path), a dot, the index, ".part".
func PartFile(k ps.PartKey) string {
	return escapeName(k.Var) + "." + strconv.Itoa(k.Index) + ".part"
}

func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// EncodePart frames a partition state as a partition file's bytes: the
// magic "FLPSCKP\x01", the payload length (u64 LE), the payload
// (ps.PartitionState.MarshalBinary), and the CRC-32C (Castagnoli) of the
// payload (u32 LE).
func EncodePart(st *ps.PartitionState) ([]byte, error) {
	payload, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, partOverhead+len(payload))
	out = append(out, partMagic[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(payload)))
	out = append(out, payload...)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(payload, castagnoli))
	return out, nil
}

// DecodePart checks a partition file's framing and checksum and decodes
// its state. Errors wrap ps.ErrInvalidArgument.
func DecodePart(b []byte) (*ps.PartitionState, error) {
	if len(b) < partOverhead || [8]byte(b[:8]) != partMagic {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "partition file: bad magic")
	}
	n := binary.LittleEndian.Uint64(b[8:])
	if n > MaxPartBytes || n != uint64(len(b)-partOverhead) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "partition file: payload of %d bytes, file holds %d", n, len(b)-partOverhead)
	}
	payload := b[16 : 16+n]
	want := binary.LittleEndian.Uint32(b[16+n:])
	if got := crc32.Checksum(payload, castagnoli); got != want {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "partition file: CRC-32C %08x, trailer says %08x", got, want)
	}
	return unmarshalState(payload)
}

// unmarshalState decodes a partition state, turning a panic of the decoder
// into an error: a file whose CRC matches may still have been crafted, and
// a psd must not crash on what it reads at restore. (As of this writing,
// ps.PartitionState.UnmarshalBinary panics on lengths whose byte count
// overflows; see FuzzPartitionStateUnmarshal.)
func unmarshalState(payload []byte) (st *ps.PartitionState, err error) {
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, ps.Errorf(ps.ErrInvalidArgument, "partition file: corrupt state: %v", r)
		}
	}()
	st = new(ps.PartitionState)
	if err := st.UnmarshalBinary(payload); err != nil {
		return nil, fmt.Errorf("partition file: %w", err)
	}
	return st, nil
}

// WritePart writes st into dir atomically and returns its entry.
func WritePart(dir string, st *ps.PartitionState) (PartEntry, error) {
	b, err := EncodePart(st)
	if err != nil {
		return PartEntry{}, err
	}
	name := PartFile(st.Key())
	if err := WriteFileAtomic(filepath.Join(dir, name), b); err != nil {
		return PartEntry{}, err
	}
	sum := sha256.Sum256(b)
	return PartEntry{Key: st.Key(), Rows: st.Rows, Version: st.Version, File: name,
		Bytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// ReadPart reads the partition file e names in dir, checking its size,
// SHA-256 and CRC, and that it holds the partition e says.
func ReadPart(dir string, e PartEntry) (*ps.PartitionState, error) {
	if e.File != PartFile(e.Key) {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "checkpoint entry %s names file %q, want %q", e.Key, e.File, PartFile(e.Key))
	}
	path := filepath.Join(dir, e.File)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != e.Bytes {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "%s: %d bytes, manifest says %d", path, fi.Size(), e.Bytes)
	}
	b := make([]byte, e.Bytes)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != e.SHA256 {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "%s: SHA-256 differs from the manifest", path)
	}
	st, err := DecodePart(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Key() != e.Key || st.Version != e.Version || st.Rows != e.Rows {
		return nil, ps.Errorf(ps.ErrInvalidArgument, "%s holds %s v%d rows %v, manifest says %s v%d rows %v",
			path, st.Key(), st.Version, st.Rows, e.Key, e.Version, e.Rows)
	}
	return st, nil
}

// WriteFileAtomic writes b to path so that path holds either its old
// contents or all of b, also across a crash: it writes a temporary file in
// the same directory, fsyncs it, renames it over path, and fsyncs the
// directory.
func WriteFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
