// Command compress is flowps's compression study: it trains the MNIST MLP
// (784-256-128-10, package models) --local-style, one worker with plain SGD
// on an in-memory store, with every gradient passed through a wire codec
// (encode → decode), and measures on the REAL gradients and weights of
// that training what each codec costs and saves:
//
//   - none: float32 little-endian, what the gRPC transport sends;
//   - s2, zstd: klauspost/compress, configured as flowps's gRPC
//     compressors of the same names (lossless);
//   - bf16, fp16: 16-bit floats from package ps/wire (lossy), and
//     bf16+zstd;
//   - topk1%, topk10%: top-k sparsification with error feedback
//     (ps/wire.TopK, residual kept on the trainer), sent as
//     wire.EncodeSparse;
//   - toprows1%, toprows10%: top-k by rows (ps/wire.TopKRows), the form of
//     a ps sparse push.
//
// Usage:
//
//	go run ./benchmarks/compress                      # MNIST, 3 epochs, ~5-6 minutes on 2 busy cores
//	go run ./benchmarks/compress --seeds 1,2,3 --json out.jsonl
//	go run ./benchmarks/compress --data synthetic --epochs 1   # quick
//
// The first table gives, per tensor set (gradients captured at --capture
// steps of the uncompressed run, and its final weights) and codec: bytes
// on the wire, encode and decode CPU milliseconds per MB of float32 on one
// thread (the thread's own CPU clock, so other load on the machine
// matters little; medians of --reps), the relative error ‖decoded − raw‖ /
// ‖raw‖, and the link speed below which the codec saves time on a serial
// transfer: saved bytes / (encode + decode CPU time). The second table
// gives the test accuracy after each epoch with each lossy codec against
// the uncompressed run of the same seed (lossless codecs train exactly as
// none, so they are not trained). README.md holds measured results and
// when each codec pays off.
package main
