// Package example decodes and encodes tf.train.Example, TensorFlow's record
// of named features, with hand-written protobuf wire parsing (no generated
// code).
//
// An Example maps feature names to a Feature, which holds one list: a
// bytes_list, a float_list or an int64_list. Decode accepts packed and
// unpacked lists, merges repeated messages and skips unknown fields as any
// protobuf parser does; Encode writes packed lists in sorted key order, the
// same bytes TensorFlow's and the Spark connector's writers produce for
// single-feature records.
//
//	e, err := example.Decode(rec) // rec from a tfrecord.Reader
//	if err != nil { ... }         // wraps ErrMalformed
//	pixels, err := e.Floats("image")
//	label, err := e.Int64s("label") // wraps ErrFeature if missing or not int64
//
//	e := example.New()
//	e.Set("image", example.FloatFeature(pixels...))
//	e.Set("label", example.Int64Feature(7))
//	err = w.Write(e.Encode()) // w a *tfrecord.Writer
//
// For training data, ReadDense loads a whole TFRecord data set (a file, a
// directory of part-* files or a glob; plain or gzip) into fixed-size
// float32 inputs and int64 labels, taking the inputs from a float_list, an
// int64_list or a one-value bytes_list of raw uint8 pixels:
//
//	d, err := example.ReadDense("mnist/train-*.tfrecord.gz", example.DenseOptions{
//		FeatureKey: "image", LabelKey: "label", Dim: 784,
//	})
//	// d.X holds d.N()×d.Dim inputs, d.Labels one label each.
//
// WriteImages is the converse, a TFRecord converter for image data sets such
// as MNIST: one Example per image with the image as a float_list (exact) or
// a bytes_list of raw bytes (four times smaller) and the label as an
// int64_list.
//
// Decoded Examples own their memory. An Example is not safe for concurrent
// modification.
package example
