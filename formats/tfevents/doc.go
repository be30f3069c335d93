// Package tfevents writes and reads TensorBoard event files.
//
// An event file is a TFRecord file (package tfrecord) of serialized
// tensorflow.Event messages, named so that TensorBoard finds it:
// events.out.tfevents.<10-digit Unix seconds>.<host>.<pid>.<n>. Its first
// Event carries file_version "brain.Event:2"; the others carry a step and a
// Summary of tagged values.
//
// Writing scalars for TensorBoard:
//
//	w, err := tfevents.NewWriter(logdir, tfevents.WriterOptions{})
//	if err != nil { ... }
//	defer w.Close()
//	w.Scalar("loss/train", step, loss)
//	w.Scalars(step, map[string]float32{"accuracy/test": acc, "learning_rate": lr})
//	w.Flush() // e.g. at the end of each epoch
//
// Scalars are written as TF1 simple_value, or with WriterOptions.TensorForm
// as TF2 writes them (a rank-0 DT_FLOAT tensor with plugin "scalars");
// TensorBoard shows both. A Writer is safe for concurrent use. Events are
// buffered and written out by Flush, Close, or the first write after
// FlushInterval has passed; there is no background goroutine.
//
// Reading reports both scalar forms alike (Value.IsScalar, Value.Scalar),
// including TF2 tensors stored in tensor_content or float_val, of DT_FLOAT,
// DT_DOUBLE, DT_INT32 or DT_INT64:
//
//	evs, err := tfevents.ReadFile(path)
//	series := tfevents.Scalars(evs) // tag → points (step, wall time, value)
//
// Other summaries (histograms, images, audio, text) are returned as values of
// KindOther with their tag and plugin; graphs and log messages are skipped.
package tfevents
