// Package wire holds lossy wire encodings for gradients and weights: the
// 16-bit floating-point formats bfloat16 and IEEE 754 half precision, and
// top-k sparsification with error feedback. It knows nothing of transports;
// a transport (or a benchmark simulating one) encodes before sending and
// decodes after receiving.
//
// # 16-bit floats
//
// EncodeBF16 and EncodeFP16 append two little-endian bytes per float32 to
// a byte slice; DecodeBF16 and DecodeFP16 append the float32s back. Both
// round to nearest, ties to even. bfloat16 keeps float32's exponent range
// (8 bits) and 8 significant bits, so it never overflows and its relative
// error is at most 2⁻⁸ (0.39 %); half keeps 11 significant bits (relative
// error ≤ 2⁻¹¹, 0.049 %) but only magnitudes up to 65504 (larger ones
// become ±Inf) and, below 2⁻¹⁴, loses precision in subnormals down to
// 2⁻²⁴ (smaller ones become ±0). NaN stays NaN (quieted), ±Inf stays ±Inf.
//
//	buf := wire.EncodeBF16(nil, grad)        // 2 bytes per value
//	back, err := wire.DecodeBF16(nil, buf)   // err: odd byte count
//
// Reuse buffers by passing dst[:0]; dst never aliases src.
//
// # Top-k with error feedback
//
// A TopK keeps, per tensor, the residual of what it did not send. Each
// Compress adds the new gradient to the residual, sends the k entries of
// largest magnitude (k = ⌈Ratio·n⌉, at least 1) and keeps the rest for the
// next call, so no gradient mass is lost, only delayed (Stich et al. 2018,
// "Sparsified SGD with memory"). Use one TopK per variable and per trainer;
// it is not safe for concurrent use.
//
//	tk, err := wire.NewTopK(0.01)
//	idx, vals, err := tk.Compress(grad)      // sorted indices, their values
//	msg, err := wire.EncodeSparse(nil, idx, vals) // delta-varint indices + float32s
//	// receiver:
//	idx, vals, err = wire.DecodeSparse(msg, n)
//	err = wire.ScatterAdd(dense, idx, vals)
//
// TopKRows does the same by whole rows, ranked by L2 norm; what it returns
// (row ids and the rows' values) is a ps sparse push (PushPart.Rows and
// Grad) as it stands, so it travels over every transport unchanged:
//
//	tr, err := wire.NewTopKRows(0.1, rowSize)
//	rows, vals, err := tr.Compress(grad)
//	part := ps.PushPart{Key: key, Rows: rows, Grad: vals} // copy if kept
//
// The slices Compress returns are reused by the next call. Decoders check
// everything a peer could get wrong (lengths, index range and order) and
// return errors wrapping ps.ErrInvalidArgument; they never panic.
package wire
