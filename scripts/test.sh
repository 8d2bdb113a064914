#!/usr/bin/env bash
# The whole test suite from a fresh clone: dependencies, build, a private test stack
# (its own ports and data folder, so a running dev stack is untouched), node --test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/ensure-deps.sh
# Chromium for the browser test (apt, when root); never fatal: without it that test skips.
bash scripts/ensure-chromium.sh || true

export STACK_DIR="${STACK_DIR:-$ROOT/.data/test-stack}"
export STACK_REDIS_PORT="${STACK_REDIS_PORT:-6391}"
export STACK_PG_PORT="${STACK_PG_PORT:-5441}"
export STACK_DB="${STACK_DB:-geoflux_test}"
# Not `eval "$(…)"`: eval of an empty output succeeds, so a failed stack.sh would be let pass
# (and what follows would run against default URLs). Its reasons are on stderr already.
stack_env="$(bash scripts/stack.sh up)" || { echo "[test] the local stack did not come up (see above)" >&2; exit 1; }
eval "$stack_env"
export TEST_REDIS_URL="$REDIS_URL" TEST_DATABASE_URL="$DATABASE_URL"
unset REDIS_URL DATABASE_URL
if [ "${KEEP_STACK:-0}" != 1 ]; then trap 'bash scripts/stack.sh down' EXIT; fi

mkdir -p test-output
# Test files run one at a time (they start gateways and workers of their own).
# Only *.test.js files (Node 20's runner would also run every file of a directory given to it).
if [ -z "${TEST_FILES:-}" ]; then TEST_FILES="$(find dist/test -name '*.test.js' | sort | tr '\n' ' ')"; fi
# shellcheck disable=SC2086
node --test --test-concurrency=1 --test-timeout=300000 $TEST_FILES
