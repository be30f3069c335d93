#!/usr/bin/env bash
# Cluster test on Docker: deploy/compose.yaml runs 3 psd (--replicas 2) and
# 2 sync trainers on MNIST, each in its own container with its own address.
# While they train, psd-2 is cut off its network for 20 s (docker network
# disconnect, then connect with the same address) and must come back into
# every view; once training has gone on, psd-1 is killed (docker kill) and
# training must go on without it. The test passes when both trainers exit 0
# with test_accuracy ≥ TARGET.
#
#   scripts/docker-cluster-test.sh
#
# Environment: TARGET (0.93), EPOCHS (3), BATCH (64 per trainer),
# FAULTS (all: cut, then kill; cut or kill: that one only; none: no
# faults), CUT_SECONDS (20), SKIP_BUILD (0;
# 1 reuses the image), FLOWPS_IMAGE (flowps:dev), FLOWPS_NET (172.30.70,
# the /24 of the private network), LOGDIR (where container logs are kept;
# default a fresh temporary directory), TIMEOUT (240 s for the training).
# Needs docker, docker-compose (v1.29 or later), curl and python3.
# Everything it starts is removed on exit (trap), pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${TARGET:-0.93}
export EPOCHS=${EPOCHS:-3} BATCH=${BATCH:-64}
export FLOWPS_IMAGE=${FLOWPS_IMAGE:-flowps:dev} FLOWPS_NET=${FLOWPS_NET:-172.30.70}
FAULTS=${FAULTS:-all}
case $FAULTS in
  all | 1) do_kill=1 do_cut=1 ;;
  kill) do_kill=1 do_cut=0 ;;
  cut) do_kill=0 do_cut=1 ;;
  none | 0) do_kill=0 do_cut=0 ;;
  *) echo "docker-cluster-test: FAULTS=$FAULTS: want all, kill, cut or none" >&2; exit 2 ;;
esac
CUT_SECONDS=${CUT_SECONDS:-20}
TIMEOUT=${TIMEOUT:-240}
CUT=psd-2  # disconnected for CUT_SECONDS, then reconnected
KILL=psd-1 # killed for good
PROJECT=flowpsci$$
NET=${PROJECT}_flowps
LOGDIR=${LOGDIR:-$(mktemp -d -t flowps-docker.XXXXXX)}
mkdir -p "$LOGDIR"
compose() { docker-compose -f deploy/compose.yaml -p "$PROJECT" "$@"; }
log() { printf '%s docker-cluster-test: %s\n' "$(date +%T)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
t0=$(date +%s)

declare -A cids=() # service → container id, filled by remember_cids
cut_off=""         # the container id while it is disconnected
declare -A ip=([psd-0]=$FLOWPS_NET.10 [psd-1]=$FLOWPS_NET.11 [psd-2]=$FLOWPS_NET.12)

cleanup() {
  local rc=$? s c
  set +e
  # Reconnect a psd left cut off, so that `down` can remove the network.
  if [ -n "$cut_off" ]; then
    docker network connect --ip "${ip[$CUT]}" "$NET" "$cut_off" >/dev/null 2>&1
  fi
  for s in psd-0 psd-1 psd-2 trainer-0 trainer-1; do
    c=${cids[$s]:-}
    [ -n "$c" ] && docker logs "$c" >"$LOGDIR/$s.out" 2>"$LOGDIR/$s.log"
  done
  if [ $rc != 0 ]; then
    for s in trainer-0 trainer-1; do
      [ -s "$LOGDIR/$s.log" ] && { log "last lines of $s's stderr:"; tail -n 3 "$LOGDIR/$s.log" >&2; }
    done
  fi
  compose down -v --remove-orphans >/dev/null 2>&1
  log "logs in $LOGDIR; total $(( $(date +%s) - t0 )) s; exit $rc"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# psd_status IP prints "<ps members in view> <highest partition version>"
# from the psd's /status, or nothing when it does not answer.
psd_status() {
  local body
  body=$(curl -sf --max-time 2 "http://$1:8000/status" 2>/dev/null) || return 0
  if command -v jq >/dev/null; then
    jq -r '"\([.members[]? | select(.role == "ps")] | length) \([.partitions[]?.version] | max // 0)"' <<<"$body" 2>/dev/null || true
  else
    python3 -c '
import json, sys
s = json.load(sys.stdin)
ps = [m for m in s.get("members") or [] if m.get("role") == "ps"]
vs = [p.get("version", 0) for p in s.get("partitions") or []]
print(len(ps), max(vs, default=0))' <<<"$body" 2>/dev/null || true
  fi
}

# wait_for SECONDS WHAT CMD...: polls CMD every 0.5 s until it succeeds.
# Once the trainers run, it fails at once if both have exited.
wait_for() {
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || fail "$what: not within ${limit} s"
    if [ -n "${cids[trainer-0]:-}" ] && ! trainers_running; then
      fail "$what: both trainers exited first"
    fi
    sleep 0.5
  done
}

# sees N IP: the psd at IP has exactly N psd (itself included) in view.
sees() { local s; s=$(psd_status "$2"); [ -n "$s" ] && [ "${s%% *}" -eq "$1" ]; }
# version_above V: some reachable psd hosts a partition past version V.
version_above() {
  local n v
  for h in "${ip[@]}"; do
    read -r n v <<<"$(psd_status "$h")" || true
    [ -n "${v:-}" ] && [ "$v" -gt "$1" ] && return 0
  done
  return 1
}
max_version() {
  local best=0 n v
  for h in "${ip[@]}"; do
    read -r n v <<<"$(psd_status "$h")" || true
    [ -n "${v:-}" ] && [ "$v" -gt "$best" ] && best=$v
  done
  echo "$best"
}
# cid SERVICE prints the service's container id; docker-compose is slow to
# ask, so remember_cids asks once, in this shell, after `up`.
remember_cids() {
  local s
  for s in "$@"; do
    cids[$s]=$(compose ps -q "$s")
    [ -n "${cids[$s]}" ] || fail "no container for $s"
  done
}
cid() { echo "${cids[$1]}"; }
trainers_running() {
  local s
  for s in trainer-0 trainer-1; do
    [ "$(docker inspect -f '{{.State.Running}}' "$(cid $s)")" = true ] && return 0
  done
  return 1
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building $FLOWPS_IMAGE"
  IMAGE=$FLOWPS_IMAGE scripts/docker-build.sh >/dev/null
fi

log "starting psd-0, psd-1, psd-2 on $FLOWPS_NET.0/24 (project $PROJECT)"
compose up -d psd-0 psd-1 psd-2 >"$LOGDIR/compose-up.log" 2>&1 || { cat "$LOGDIR/compose-up.log" >&2; fail "docker-compose up"; }
remember_cids psd-0 psd-1 psd-2
for s in psd-0 psd-1 psd-2; do
  wait_for 30 "$s sees 3 psd" sees 3 "${ip[$s]}"
done
log "cluster formed: every psd sees 3 psd"

log "starting trainer-0 and trainer-1 (mlp, sync, 2 workers, $EPOCHS epochs, batch $BATCH each)"
compose up -d trainer-0 trainer-1 >>"$LOGDIR/compose-up.log" 2>&1 || { cat "$LOGDIR/compose-up.log" >&2; fail "docker-compose up trainers"; }
remember_cids trainer-0 trainer-1
wait_for 90 "training starts (a partition past version 20)" version_above 20
log "training started: version $(max_version)"

# The cut comes first and the kill after the cluster has healed, so that
# each fault leaves a majority of the psd: psd refuses to serve from a view
# without a majority of the last stable membership (ps.ReplicationConfig.
# StableAfter, 3 s), and after a kill the stable membership is the two
# survivors, of which a cut would leave one.
settle_after=0 # epoch second before which the cluster is not yet settled
settled() { [ "$(date +%s)" -ge "$settle_after" ] && version_above "$1"; }
if [ $do_cut = 1 ]; then
  log "disconnecting $CUT from $NET for $CUT_SECONDS s"
  cut_off=$(cid $CUT)
  docker network disconnect "$NET" "$cut_off"
  sleep "$CUT_SECONDS" # the fault's length, not a wait for a condition
  docker network connect --ip "${ip[$CUT]}" "$NET" "$cut_off"
  cut_off=""
  log "reconnected $CUT at ${ip[$CUT]}; version $(max_version)"
  wait_for 60 "the reconnected $CUT is back in psd-0's view" sees 3 "${ip[psd-0]}"
  wait_for 60 "$CUT sees psd-0 and psd-1 again" sees 3 "${ip[$CUT]}"
  v=$(max_version)
  # Let the healed view become the stable membership (StableAfter, twice).
  settle_after=$(( $(date +%s) + 6 ))
  log "$CUT is back in the cluster; waiting for training to go on past version $((v + 20))"
  wait_for 60 "training goes on after the cut healed (past version $((v + 20)))" settled $((v + 20))
  log "training went on: version $(max_version)"
fi
if [ $do_kill = 1 ]; then
  trainers_running || log "note: the trainers finished before the kill; raise EPOCHS to overlap it"
  log "killing $KILL"
  docker kill "$(cid $KILL)" >/dev/null
  wait_for 30 "psd-0 drops the killed $KILL from its view" sees 2 "${ip[psd-0]}"
  v=$(max_version)
  log "psd-0 sees 2 psd; waiting for training to go on past version $((v + 20))"
  wait_for 60 "training resumes after $KILL was killed (past version $((v + 20)))" version_above $((v + 20))
  log "training resumed: version $(max_version)"
fi

log "waiting (at most $TIMEOUT s) for the trainers to finish"
end=$(( $(date +%s) + TIMEOUT ))
while trainers_running; do
  [ "$(date +%s)" -lt "$end" ] || fail "trainers still running after $TIMEOUT s"
  sleep 1
done

status=0
for s in trainer-0 trainer-1; do
  c=$(cid $s)
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  line=$(docker logs "$c" 2>/dev/null | tail -n 1)
  acc=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["test_accuracy"])' 2>/dev/null || echo "")
  if [ "$code" != 0 ] || [ -z "$acc" ]; then
    log "$s exited $code; last lines of its stderr:"
    docker logs "$c" 2>&1 >/dev/null | tail -n 8 >&2
    status=1
    continue
  fi
  if python3 -c "import sys; sys.exit(0 if float('$acc') >= float('$TARGET') else 1)"; then
    log "$s: exit 0, test_accuracy $acc ≥ $TARGET"
  else
    log "$s: exit 0 but test_accuracy $acc < target $TARGET"
    status=1
  fi
done
[ $status = 0 ] || fail "training did not complete at the target accuracy"
faults=none
[ $do_cut = 1 ] && faults="cut $CUT off for $CUT_SECONDS s"
[ $do_kill = 1 ] && faults="${faults#none}${faults:+; }killed $KILL"
log "PASS (faults: ${faults#; })"
