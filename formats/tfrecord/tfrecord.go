package tfrecord

import (
	"errors"
	"hash/crc32"
)

// Sentinel errors. Errors returned by this package wrap one of them with the
// file name (when known), record index and byte offset.
var (
	// ErrCorrupt reports a record whose length or data checksum does not
	// match, or a length beyond the reader's limit.
	ErrCorrupt = errors.New("tfrecord: corrupt record")
	// ErrTruncated reports a stream that ends inside a record.
	ErrTruncated = errors.New("tfrecord: truncated record")
	// ErrNoFiles reports a pattern that names no record files.
	ErrNoFiles = errors.New("tfrecord: no files")
)

// Compression is the whole-stream compression of a record file.
type Compression int

// The compressions. Auto is only meaningful for reading.
const (
	// Auto detects the compression from the first bytes of the stream: a
	// valid TFRecord header means None, else the gzip magic means Gzip,
	// else a zlib header means Zlib.
	Auto Compression = iota
	// None is plain TFRecord framing.
	None
	// Gzip is a gzip stream (TensorFlow's "GZIP", Hadoop's GzipCodec).
	Gzip
	// Zlib is a zlib stream (TensorFlow's "ZLIB").
	Zlib
)

// String returns the name TensorFlow uses for the compression type.
func (c Compression) String() string {
	switch c {
	case Auto:
		return "AUTO"
	case None:
		return "NONE"
	case Gzip:
		return "GZIP"
	case Zlib:
		return "ZLIB"
	}
	return "Compression(?)"
}

// headerLen is the length of the framing before a record's data: a u64
// length and the masked CRC of those 8 bytes. A record's footer is the 4-byte
// masked CRC of the data.
const (
	headerLen = 12
	footerLen = 4
)

// DefaultMaxRecordSize is the largest record a Reader accepts when its
// options leave MaxRecordSize zero: 256 MiB, far above any sane Example,
// so a corrupt length cannot make a reader allocate without bound.
const DefaultMaxRecordSize = 256 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC returns the masked CRC32C of b, the checksum TFRecord stores.
func MaskedCRC(b []byte) uint32 {
	return mask(crc32.Checksum(b, castagnoli))
}

func mask(c uint32) uint32 {
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}
