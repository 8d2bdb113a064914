#!/usr/bin/env bash
# The main job: the whole local system on the embedded default.
#   stack (Redis + PostGIS, installed with apt when missing) + gateway + worker + simulator.
# Ctrl-C (or SIGTERM, or a hangup) stops everything cleanly; a second one (1 s or more later) stops it at once.
# Settings: PORT (8080), SIM_VEHICLES (200), and every variable of the README's configuration table.
set -euo pipefail
# A closed terminal or output pipe must not kill this script before it stops what it started:
# with SIGPIPE ignored a write to it fails instead (and is let pass), and hangup cleans up.
trap '' PIPE
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/ensure-deps.sh
# What the user gave (external services, left alone by stack.sh); stack.sh up sets both below.
GIVEN_REDIS_URL="${REDIS_URL:-}"
GIVEN_DATABASE_URL="${DATABASE_URL:-}"
# Not `eval "$(…)"`: eval of an empty output succeeds, so a failed stack.sh would be let pass
# (and what follows would run against default URLs). Its reasons are on stderr already.
stack_env="$(bash scripts/stack.sh up)" || { echo "[start] the local stack did not come up (see above)" >&2; exit 1; }
eval "$stack_env"
export REDIS_URL DATABASE_URL
export PORT="${PORT:-8080}"
mkdir -p .data/logs

pids=()
stopping=0
stop_started_us=0
cleanup() {
  stop_started_us=${EPOCHREALTIME//[.,]/}
  # Once stopping, another Ctrl-C (or TERM, HUP) makes the children exit at once: for each it
  # is a second signal. Under `npm start` one Ctrl-C arrives twice, from the terminal and
  # forwarded by npm, milliseconds apart: only a signal a second or more after the first counts.
  # Inline, with its own loop variable: a trap runs inside this function's loop below (and a
  # trap calling a function with locals from inside a function trips a bash bug).
  trap 'if (( ${EPOCHREALTIME//[.,]/} - stop_started_us >= 1000000 )); then for q in "${pids[@]}"; do kill -INT "$q" 2>/dev/null || true; done; fi' INT TERM HUP
  trap - EXIT
  stopping=1
  echo "[start] stopping…" >&2 || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # A trapped signal ends `wait` early: wait again until the process is gone.
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do wait "$p" 2>/dev/null || true; done; done
  # With the exported URLs, stack.sh would take our own local services for external ones and keep them.
  if [ "${KEEP_STACK:-0}" != 1 ]; then REDIS_URL="$GIVEN_REDIS_URL" DATABASE_URL="$GIVEN_DATABASE_URL" bash scripts/stack.sh down; fi
}
trap cleanup INT TERM HUP EXIT

# Each child in its own session (setsid): a terminal's Ctrl-C or hangup reaches this script
# alone, which stops every child with one SIGTERM. Sent to them too, the group's SIGINT and then
# our SIGTERM made a second signal, and a second signal exits at once, skipping the graceful stop.
setsid node dist/src/main.js > .data/logs/gateway.log 2>&1 & pids+=($!)
setsid node dist/workers/main.js > .data/logs/worker.log 2>&1 & pids+=($!)

# The readiness probe runs on node, which is there anyway (curl is not: nothing here installs
# it and a minimal Debian lacks it). 2xx = ready.
gateway_ready() {
  node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
    "http://127.0.0.1:$PORT/readyz"
}
for _ in $(seq 1 100); do
  if gateway_ready; then break; fi
  sleep 0.2
done
gateway_ready || { echo "[start] gateway did not become ready; see .data/logs/gateway.log" >&2; tail -20 .data/logs/gateway.log >&2; exit 1; }

if [ -f dist/src/sim/cli.js ]; then
  setsid node dist/src/sim/cli.js --url "ws://127.0.0.1:$PORT" --vehicles "${SIM_VEHICLES:-200}" > .data/logs/simulator.log 2>&1 & pids+=($!)
fi

cat >&2 <<MSG || true

  geoflux is running
    live map      http://127.0.0.1:$PORT/
    readiness     http://127.0.0.1:$PORT/readyz
    metrics       http://127.0.0.1:$PORT/metrics
    logs          .data/logs/{gateway,worker,simulator}.log
    REDIS_URL     $REDIS_URL
    DATABASE_URL  $DATABASE_URL
  Ctrl-C stops everything (KEEP_STACK=1 leaves Redis/PostgreSQL running).

MSG
if [ -n "${START_EXIT_AFTER:-}" ]; then sleep "$START_EXIT_AFTER"; exit 0; fi
wait -n "${pids[@]}" || true
# Ctrl-C lands here too (after cleanup): only a process that died by itself is worth a word.
[ "$stopping" = 1 ] || echo "[start] a process exited; see .data/logs" >&2 || true
