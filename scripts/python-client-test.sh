#!/usr/bin/env bash
# Runs the Python example client (clients/python/flowps_client.py) against
# real psd on 127.0.0.1: generates the Python stubs from
# transport/grpc/pb/flowps.proto into a temporary directory (never
# committed), starts two psd, then twice (a 4×3 variable in one partition; a
# 2000×300 one in 8 partitions spread over both psd, whose 1.2-2.4 MB
# tensors travel in several 1 MiB frames) creates a variable, pulls it,
# pushes a gradient, pulls again and checks the SGD update and an error
# code.
#
#   scripts/python-client-test.sh
#
# Needs a python3 with grpcio, protobuf and grpc_tools (Debian:
# apt-get install python3-grpcio python3-grpc-tools python3-protobuf).
# Environment: PYTHON (the interpreter; default the first python3 on PATH
# or /usr/bin/python3 that imports them), PORT_BASE (17600).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
P=${PORT_BASE:-17600}
WORK=$(mktemp -d -t flowps-py.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ $rc = 0 ] && rm -rf "$WORK" || echo "python-client-test: failed (exit $rc); psd logs in $WORK" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${PYTHON:-}" ]; then
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import grpc, grpc_tools, google.protobuf' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
[ -n "${PYTHON:-}" ] || { echo "python-client-test: no python3 with grpcio and grpc_tools (apt-get install python3-grpcio python3-grpc-tools)" >&2; exit 1; }

"$PYTHON" -m grpc_tools.protoc -I transport/grpc/pb --python_out="$WORK" --grpc_python_out="$WORK" \
  transport/grpc/pb/flowps.proto
go build -o "$WORK/psd" ./cmd/psd

for i in 0 1; do
  join=""; [ $i = 1 ] && join="--join 127.0.0.1:$((P+1))"
  # shellcheck disable=SC2086
  "$WORK/psd" --id py-ps-$i --listen 127.0.0.1:$((P+10*i)) --gossip 127.0.0.1:$((P+10*i+1)) \
    --http 127.0.0.1:$((P+10*i+2)) --profile local $join 2>"$WORK/psd-$i.log" &
  pids+=($!)
done
# Poll until the first psd sees both.
for i in $(seq 1 100); do
  n=$(curl -sf "http://127.0.0.1:$((P+2))/status" 2>/dev/null | "$PYTHON" -c \
    'import json,sys; print(sum(m["role"] == "ps" for m in json.load(sys.stdin)["members"]))' 2>/dev/null || true)
  [ "${n:-0}" = 2 ] && break
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { cat "$WORK"/psd-*.log >&2; exit 1; }; done
  [ "$i" = 100 ] && { echo "python-client-test: the two psd did not see each other" >&2; exit 1; }
  sleep 0.1
done

run() {
  PYTHONPATH="$WORK:clients/python" "$PYTHON" clients/python/flowps_client.py \
    --status "http://127.0.0.1:$((P+2))" "$@" | tee "$WORK/out.txt"
  grep -qx ok "$WORK/out.txt"
}
run --var python/small --rows 4 --cols 3
run --var python/large --rows 2000 --cols 300 --max-partition-bytes 300000
grep -q "in 8 partitions" "$WORK/out.txt"
grep -q "hosted by: 127.0.0.1:$P, 127.0.0.1:$((P+10))" "$WORK/out.txt"
echo "python-client-test: PASS"
