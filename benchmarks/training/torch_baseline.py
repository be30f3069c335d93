"""PyTorch baseline for benchmarks/training (the "pytorch" setup).

Trains the same model as `trainer --local` (mlp 784-256-128-10 with ReLU,
or logreg 784-10) on MNIST IDX files with plain SGD, timing only the
training steps (forward, backward, optimizer) like the trainer's
examples_per_sec; gathering a batch is timed apart, as the trainer's
data_seconds is. Prints one JSON line in the trainer's format on stdout.

    python3 torch_baseline.py --data DIR [--model mlp] [--batch 128]
        [--epochs 1] [--lr 0.1] [--threads 1] [--seed 1]

--threads sets torch's intra-op threads; the BLAS library's own threads
(OpenBLAS in Debian's python3-torch) follow OPENBLAS_NUM_THREADS, which the
benchmark sets to the same number.
"""
import argparse
import gzip
import json
import struct
import sys
import time


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = f.read()
    magic = struct.unpack(">I", b[:4])[0]
    dims = struct.unpack(">" + "I" * (magic & 0xFF), b[4 : 4 + 4 * (magic & 0xFF)])
    return b[4 + 4 * len(dims) :], dims


def load(d, images, labels, torch):
    import os

    def pick(name):
        for n in (name + ".gz", name):
            if os.path.exists(os.path.join(d, n)):
                return os.path.join(d, n)
        raise SystemExit(f"torch_baseline: {name}(.gz) not found in {d}")

    xb, xd = read_idx(pick(images))
    yb, _ = read_idx(pick(labels))
    x = torch.frombuffer(bytearray(xb), dtype=torch.uint8).reshape(xd[0], -1).float() / 255.0
    y = torch.frombuffer(bytearray(yb), dtype=torch.uint8).long()
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="mlp", choices=["mlp", "logreg"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    xtr, ytr = load(a.data, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", torch)
    xte, yte = load(a.data, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", torch)
    load_s = time.perf_counter() - t0
    nn = torch.nn
    if a.model == "mlp":
        m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        m = nn.Linear(784, 10)
    opt = torch.optim.SGD(m.parameters(), lr=a.lr)
    lossf = nn.CrossEntropyLoss()
    n = xtr.shape[0]
    steps = examples = 0
    train_s = data_s = 0.0
    loss_sum = 0.0
    g = torch.Generator().manual_seed(a.seed)
    for _ in range(a.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - a.batch + 1, a.batch):
            d0 = time.perf_counter()
            idx = perm[i : i + a.batch]
            x, y = xtr[idx], ytr[idx]
            s0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = lossf(m(x), y)
            loss.backward()
            opt.step()
            s1 = time.perf_counter()
            data_s += s0 - d0
            train_s += s1 - s0
            loss_sum += loss.item()
            steps += 1
            examples += a.batch
    with torch.no_grad():
        acc = (m(xte).argmax(1) == yte).float().mean().item()
    print(json.dumps({
        "model": a.model, "data": "mnist", "mode": "local", "optimizer": "sgd", "lr": a.lr,
        "workers": 1, "rank": 0, "batch": a.batch, "epochs": a.epochs, "steps": steps,
        "examples": examples, "train_loss": loss_sum / max(1, steps), "test_accuracy": acc,
        "examples_per_sec": examples / train_s, "train_seconds": train_s,
        "compute_seconds": train_s, "pull_seconds": 0, "push_seconds": 0, "wait_seconds": 0,
        "data_seconds": data_s, "load_seconds": load_s, "torch_version": torch.__version__,
        "threads": a.threads,
    }))


if __name__ == "__main__":
    sys.exit(main())
