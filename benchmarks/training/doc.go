// Command training measures training throughput of the flowps trainer in
// three setups and of PyTorch in a fourth, in one invocation, on 127.0.0.1:
//
//	local   trainer --local                       (in-process parameter server)
//	1ps-1tr 1 psd + 1 trainer  (--join, gRPC)
//	2ps-2tr 2 psd + 2 trainers (--join, gRPC, --workers 2)
//	pytorch PyTorch on one thread, the same model, batch, epochs and lr
//
// The pytorch row is the outside baseline, measured in the same run: the
// embedded torch_baseline.py trains the mlp (or logreg) model with plain
// SGD (lr 0.1, PyTorch's default initialisation, which trainer's --init
// torch copies) and times the steps as the trainer does. It runs with
// torch.set_num_threads(1) and OPENBLAS_NUM_THREADS=1: Debian's
// python3-torch multiplies through OpenBLAS, which otherwise keeps its own
// two threads whatever torch is told (measured here: 33,000 examples/s on
// two cores against 22,900 on one). It needs /usr/bin/python3 with torch
// (apt-get install python3-torch) or $FLOWPS_PYTHON; without it the row is
// skipped with a note, unless --setups names it.
//
// Every setup trains the same model (--model, default mlp) at the same
// per-trainer batch (--batch, default 128) on the same data (--data,
// default mnist) in the same consistency mode (--mode, default sync) for
// the same number of epochs. A trainer's epoch is its share of the
// training set, so the two trainers of 2ps-2tr together cover the same
// examples as the single trainer of the other setups, with twice the
// global batch per step (2×B: the trainers' gradients are averaged).
//
// Usage:
//
//	go run ./benchmarks/training [--model mlp] [--batch 128] [--epochs 1] [--json]
//	make bench-training
//
// It builds psd and trainer with the build tags scripts/detect-tags.sh
// prints into a temporary directory (or uses --bin DIR), starts psd with
// --profile local and --replicas 1 (change with --replicas), runs each
// trainer, reads the final JSON line it prints on stdout, and prints one
// table row per setup:
//
//   - ex/s per trainer: each trainer's examples_per_sec (examples over its
//     train_seconds; data loading and evaluation excluded), the mean over
//     the setup's trainers;
//   - aggregate ex/s: the sum over the setup's trainers;
//   - ratio: aggregate over the local setup's;
//   - ex/CPU-s: examples trained over the CPU time (user+system) of every
//     process of the setup (trainers and psd), from their rusage. On a
//     loaded machine wall-clock throughput measures the load as much as
//     the code; CPU time does not, so this column and its ratio are the
//     ones to compare when the load average is above the core count. It
//     includes the trainers' data loading and test-set evaluation;
//   - compute / pull / push / wait: where a trainer's train time goes, as
//     a percentage of train_seconds (cmd/trainer: train = compute + pull +
//     wait; wait is the part of the steps' pulls the servers held at the
//     sync barrier, as they report it). Push is the summed time inside
//     push calls, which overlap backprop and each other, so it is not part
//     of the sum and can exceed 100%.
//
// --profile-trainer DIR does not print the table: it runs the trainer's
// step loop inside this process (cmd/trainer has no profiling flag)
// against an in-process server, against one psd, and against a fresh psd
// with runtime.SessionConfig.SplitPulls, saving CPU profiles of the
// trainer loop and of the psd in DIR and printing the runtime's per-step
// statistics (wall, kernels, pull, push, idle). Build it with the openblas
// tag (go run -tags openblas ./benchmarks/training) to profile the same
// kernels as the trainer binary.
//
// With 2 cores, 2 psd and 2 trainers share the cores that --local has to
// itself: the aggregate of 2ps-2tr against local is then a test of how
// much the parameter-server path costs, not of scaling.
//
// --json prints the rows (and every trainer's metrics) as one JSON
// document instead of the table.
// --pprof DIR saves a CPU profile of every psd during each distributed
// setup (from its /debug/pprof/profile). Child processes are killed when
// the program ends, however it ends.
package main
