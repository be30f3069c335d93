// Package tfrecord reads and writes TFRecord files, TensorFlow's framing of
// binary records (usually serialized tf.train.Example messages).
//
// Each record is stored as
//
//	uint64 length (little-endian)
//	uint32 masked CRC32C of the 8 length bytes
//	byte   data[length]
//	uint32 masked CRC32C of data
//
// where the mask is ((c>>15)|(c<<17)) + 0xa282ead8 over the Castagnoli CRC.
// A compressed file (TensorFlow's GZIP or ZLIB options, Hadoop's GzipCodec)
// compresses the whole stream, not each record.
//
// Reading verifies both checksums of every record; errors wrap ErrCorrupt or
// ErrTruncated and name the file, record index and byte offset:
//
//	r, err := tfrecord.NewReader(f) // plain, gzip or zlib: detected
//	if err != nil { ... }
//	for rec, err := range r.All() {
//		if err != nil { return err }
//		ex, err := example.Decode(rec) // rec is reused by the next record
//		...
//	}
//
// Open reads a whole data set: a file, a directory of part-* files (what
// Spark's connector writes) or a glob such as "data/train-*.tfrecord.gz";
// each file's compression is detected on its own:
//
//	m, err := tfrecord.Open("data/train")
//	defer m.Close()
//	for rec, err := range m.All() { ... }
//
// Writing:
//
//	w, err := tfrecord.Create("out.tfrecord.gz", tfrecord.WriterOptions{Compression: tfrecord.Gzip})
//	for _, rec := range recs {
//		if err := w.Write(rec); err != nil { ... }
//	}
//	err = w.Close() // finishes the gzip stream and closes the file
//
// Readers and Writers are not safe for concurrent use.
package tfrecord
