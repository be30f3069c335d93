#!/usr/bin/env bash
# The README's main job: 2 psd and 2 trainers on 127.0.0.1 train the MNIST
# MLP (784-256-128-10) in sync mode, print the test accuracy, and shut
# everything down. Override with environment variables:
#   EPOCHS=1 BATCH=64 (per trainer) LR=0.1 MODEL=mlp PORT_BASE=17000 BIN=bin
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-64}
LR=${LR:-0.1}
MODEL=${MODEL:-mlp}
P=${PORT_BASE:-17000}
LOGS=$(mktemp -d -t flowps-demo.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for bin in psd trainer; do
  [ -x "$BIN/$bin" ] || { echo "demo: $BIN/$bin not built; run make build" >&2; exit 1; }
done

echo "demo: starting psd-0 and psd-1 (logs in $LOGS)"
"$BIN/psd" --id psd-0 --listen 127.0.0.1:$((P+0)) --gossip 127.0.0.1:$((P+10)) --http 127.0.0.1:$((P+20)) \
  --profile local --data-dir "$LOGS/psd-0" 2>"$LOGS/psd-0.log" & pids+=($!)
"$BIN/psd" --id psd-1 --listen 127.0.0.1:$((P+1)) --gossip 127.0.0.1:$((P+11)) --http 127.0.0.1:$((P+21)) \
  --profile local --data-dir "$LOGS/psd-1" --join 127.0.0.1:$((P+10)) 2>"$LOGS/psd-1.log" & pids+=($!)

# Wait until both see both (polling /status).
for i in $(seq 1 100); do
  n=$(curl -sf http://127.0.0.1:$((P+21))/status 2>/dev/null | grep -c '"role": "ps"' || true)
  [ "${n:-0}" -ge 2 ] && break
  sleep 0.1
  if [ "$i" = 100 ]; then echo "demo: psd cluster did not form; see $LOGS" >&2; exit 1; fi
done
echo "demo: cluster formed; starting 2 trainers ($MODEL, sync, batch $BATCH each, $EPOCHS epochs)"

tpids=()
for r in 0 1; do
  "$BIN/trainer" --join 127.0.0.1:$((P+10)) --model "$MODEL" --data mnist --mode sync --workers 2 --rank $r \
    --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --optimizer sgd --seed 1 \
    >"$LOGS/trainer-$r.json" 2> >(if [ $r = 0 ]; then tee "$LOGS/trainer-$r.log" >&2; else cat >"$LOGS/trainer-$r.log"; fi) &
  tpids+=($!); pids+=($!)
done
status=0
for pid in "${tpids[@]}"; do wait "$pid" || status=$?; done
if [ $status -ne 0 ]; then
  echo "demo: a trainer failed (exit $status); logs in $LOGS" >&2
  tail -n 5 "$LOGS"/trainer-*.log >&2
  exit $status
fi
for r in 0 1; do
  echo "demo: trainer $r: $(tail -n 1 "$LOGS/trainer-$r.json")"
done
acc=$(tail -n 1 "$LOGS/trainer-0.json" | sed -n 's/.*"test_accuracy": *\([0-9.]*\).*/\1/p')
echo "demo: test accuracy $acc after $EPOCHS epochs (2 psd, 2 trainers, sync)"
