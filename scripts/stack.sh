#!/usr/bin/env bash
# The local stack: private Redis (AOF on) and PostgreSQL + PostGIS + pg_partman on loopback,
# with their data in a folder of the project. Installs the Debian packages when missing.
#
#   scripts/stack.sh up       start (idempotent), wait until both answer, run migrations
#   scripts/stack.sh down     stop both cleanly
#   scripts/stack.sh status   say what runs where
#   scripts/stack.sh env      print REDIS_URL=… and DATABASE_URL=… (eval-able)
#
# Settings (environment):
#   STACK_DIR        data folder             (default: <project>/.data/stack)
#   STACK_REDIS_PORT Redis port on 127.0.0.1 (default: 6390)
#   STACK_PG_PORT    PostgreSQL port         (default: 5440)
#   STACK_DB         database name           (default: geoflux)
#   REDIS_URL / DATABASE_URL   when set, that service is used as it is and not started here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$ROOT/.data/stack}"
# Absolute: redis-server changes into --dir before it opens --logfile, and pg_ctl runs as postgres.
mkdir -p "$STACK_DIR" && STACK_DIR="$(cd "$STACK_DIR" && pwd)"
REDIS_PORT="${STACK_REDIS_PORT:-6390}"
PG_PORT="${STACK_PG_PORT:-5440}"
DB="${STACK_DB:-geoflux}"
EXTERNAL_REDIS="${REDIS_URL:-}"
EXTERNAL_PG="${DATABASE_URL:-}"

# Output is informational: a closed stderr (start.sh ignores SIGPIPE) must not stop a shutdown halfway.
say() { printf '[stack] %s\n' "$*" >&2 || true; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

redis_url() { echo "${EXTERNAL_REDIS:-redis://127.0.0.1:$REDIS_PORT}"; }
pg_url() { echo "${EXTERNAL_PG:-postgres://postgres@127.0.0.1:$PG_PORT/$DB}"; }

# ---------------------------------------------------------------- packages
pg_bindir() {
  for v in ${PG_MAJOR:-15 16 17 18}; do
    if [ -x "/usr/lib/postgresql/$v/bin/postgres" ]; then echo "/usr/lib/postgresql/$v/bin"; return 0; fi
  done
  return 1
}

# The PostgreSQL major to install: PG_MAJOR, else the distribution's default (what its
# `postgresql` package depends on: 15 on Debian 12, 16 on Ubuntu 24.04, 17 on Debian 13), else 15.
pg_default_major() {
  if [ -n "${PG_MAJOR:-}" ]; then echo "$PG_MAJOR"; return; fi
  local v
  v="$(apt-cache depends postgresql 2>/dev/null | sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1 || true)"
  echo "${v:-15}"
}

missing_packages() {
  local missing=()
  if [ -z "$EXTERNAL_REDIS" ]; then
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
  fi
  if [ -z "$EXTERNAL_PG" ]; then
    local bin v
    if bin="$(pg_bindir)"; then
      v="$(basename "$(dirname "$bin")")"
    else
      v="$(pg_default_major)"
      missing+=("postgresql-$v")
    fi
    [ -f "/usr/share/postgresql/$v/extension/postgis.control" ] || missing+=("postgresql-$v-postgis-3")
    [ -f "/usr/share/postgresql/$v/extension/pg_partman.control" ] || missing+=("postgresql-$v-partman")
    command -v psql >/dev/null || missing+=("postgresql-client-$v")
  fi
  echo "${missing[@]:-}"
}

ensure_packages() {
  local missing
  missing="$(missing_packages)"
  [ -z "$missing" ] && return 0
  if ! command -v apt-get >/dev/null; then
    die "missing: $missing. This is not a Debian/Ubuntu machine: install Redis 7 and PostgreSQL 15 or newer with PostGIS 3 and pg_partman yourself, or point REDIS_URL and DATABASE_URL at running ones."
  fi
  local SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      die "missing packages: $missing. Run as root, or: sudo apt-get update && sudo apt-get install -y $missing"
    fi
  fi
  say "installing: $missing (apt-get)"
  # One apt at a time, even when several stacks come up together.
  (
    flock 9
    missing="$(missing_packages)"
    [ -z "$missing" ] && exit 0
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    # Again with fresh package lists: the distribution's PostgreSQL major is known only now.
    missing="$(missing_packages)"
    [ -z "$missing" ] && exit 0
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  ) 9>/tmp/geoflux-apt.lock || die "apt-get install $missing failed (see above)"
}

# ---------------------------------------------------------------- redis
# Ready = PONG, not just an answer: while Redis loads its AOF after a restart it answers every
# command (PING included) with a LOADING error, and redis-cli still exits 0. A large AOF (up to
# the 1 GB rewrite threshold) takes a while: up to 120 s while it answers, 10 s without answer.
redis_wait_ready() {
  local silent=0 reply
  for _ in $(seq 1 1200); do
    reply="$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)"
    [ "$reply" = PONG ] && { say "$1"; return; }
    if [ -n "$reply" ]; then silent=0; else silent=$((silent + 1)); fi
    [ "$silent" -ge 100 ] && break
    sleep 0.1
  done
  die "redis did not become ready; see $STACK_DIR/redis/redis.log"
}
redis_up() {
  [ -n "$EXTERNAL_REDIS" ] && { redis_wait_external; return; }
  mkdir -p "$STACK_DIR/redis"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis_ours || die "port $REDIS_PORT answers as another Redis (data folder: $(redis_dir || echo unknown)), not this stack's ($STACK_DIR/redis): stop it, or choose another STACK_REDIS_PORT"
    redis_wait_ready "redis already running on :$REDIS_PORT"
    return
  fi
  # Sharded Pub/Sub (the rooms' adapter) and XAUTOCLAIM (the workers) need Redis 7.
  local rv
  rv="$(redis-server --version | sed -n 's/.* v=\([0-9][0-9]*\)\..*/\1/p')"
  if [ -n "$rv" ] && [ "$rv" -lt 7 ]; then
    die "Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') is too old: geoflux needs Redis 7 (sharded Pub/Sub). Install Redis 7 (e.g. from packages.redis.io) or point REDIS_URL at one."
  fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STACK_DIR/redis" \
    --appendonly yes --appendfsync everysec --save '' --auto-aof-rewrite-min-size 1gb \
    --daemonize yes --pidfile "$STACK_DIR/redis/redis.pid" --logfile "$STACK_DIR/redis/redis.log" \
    --maxclients 50000 >/dev/null || true # e.g. the port still held by a Redis shutting down: the wait below decides
  redis_wait_ready "redis up on 127.0.0.1:$REDIS_PORT (AOF on)"
}

redis_wait_external() {
  command -v redis-cli >/dev/null || { say "using REDIS_URL as given"; return; }
  redis-cli -u "$EXTERNAL_REDIS" ping >/dev/null 2>&1 || die "REDIS_URL=$EXTERNAL_REDIS does not answer"
  say "using external redis $EXTERNAL_REDIS"
}

# The Redis on REDIS_PORT is this stack's when its data folder is STACK_DIR/redis (another
# checkout's or a test run's stack on the same port is neither reused nor shut down).
redis_dir() { redis-cli -p "$REDIS_PORT" config get dir 2>/dev/null | sed -n 2p; }
redis_ours() {
  local dir; dir="$(redis_dir)"
  [ -n "$dir" ] && [ -d "$STACK_DIR/redis" ] && [ "$dir" = "$(cd "$STACK_DIR/redis" && pwd -P)" ]
}

redis_down() {
  [ -n "$EXTERNAL_REDIS" ] && return
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    if ! redis_ours; then say "redis on :$REDIS_PORT is not this stack's (data folder: $(redis_dir || echo unknown)): left running"; return; fi
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    say "redis stopped"
  fi
}

# ---------------------------------------------------------------- postgres
# PostgreSQL refuses to run as root: as root, it runs as the 'postgres' user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_dirs() {
  PGDATA="$STACK_DIR/pg/data"
  PGLOG="$STACK_DIR/pg/postgres.log"
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$STACK_DIR/pg"
    chown postgres:postgres "$STACK_DIR/pg"
    if ! runuser -u postgres -- test -w "$STACK_DIR/pg"; then
      # The project sits where the postgres user cannot reach (e.g. under /root): keep the
      # cluster in a private folder outside and leave a link in the data folder.
      local alt="/var/lib/geoflux/$(echo -n "$STACK_DIR" | md5sum | cut -c1-12)"
      mkdir -p "$alt"; chown postgres:postgres "$alt"
      PGDATA="$alt/data"; PGLOG="$alt/postgres.log"
      ln -sfn "$alt" "$STACK_DIR/pg-cluster"
    fi
  else
    mkdir -p "$STACK_DIR/pg"
  fi
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; }

pg_up() {
  [ -n "$EXTERNAL_PG" ] && { say "using external postgres"; return; }
  local bin; bin="$(pg_bindir)" || die "PostgreSQL binaries not found"
  pg_dirs
  if pg_ready; then
    local theirs ours
    theirs="$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc 'SHOW data_directory' postgres 2>/dev/null || true)"
    ours="$(cd "$PGDATA" 2>/dev/null && pwd -P || echo "$PGDATA")"
    [ -n "$theirs" ] && [ -d "$theirs" ] && theirs="$(cd "$theirs" && pwd -P)"
    [ -n "$theirs" ] && [ "$theirs" = "$ours" ] || die "port $PG_PORT answers as another PostgreSQL (data folder: ${theirs:-unknown}), not this stack's ($PGDATA): stop it, or choose another STACK_PG_PORT"
    say "postgres already running on :$PG_PORT"
  else
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
      say "initdb $PGDATA"
      as_pg mkdir -p "$PGDATA"
      as_pg "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null 2>&1 \
        || as_pg "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    fi
    # No Unix socket (unix_socket_directories=''): everything here connects to 127.0.0.1, and
    # pg_ctl passes -o through /bin/sh, so a socket folder under the project split on a space in
    # its path, and a deep one exceeded the 107-byte socket path limit; postgres then refused to start.
    as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 start -o \
      "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300 -c shared_buffers=256MB -c max_wal_size=2GB -c log_min_messages=warning" >/dev/null \
      || die "postgres did not start; see $PGLOG"
    say "postgres up on 127.0.0.1:$PG_PORT ($(basename "$(dirname "$bin")"))"
  fi
  for _ in $(seq 1 100); do pg_ready && break; sleep 0.1; done
  pg_ready || die "postgres does not answer on :$PG_PORT"
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='$DB'" postgres | grep -q 1; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE \"$DB\"" postgres >/dev/null
    say "created database $DB"
  fi
}

pg_down() {
  [ -n "$EXTERNAL_PG" ] && return
  local bin; bin="$(pg_bindir)" || return 0
  pg_dirs
  if [ -f "$PGDATA/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    say "postgres stopped"
  fi
}

migrate() {
  if [ -f "$ROOT/dist/src/store/pg/migrate-cli.js" ]; then
    DATABASE_URL="$(pg_url)" REDIS_URL="$(redis_url)" LOG_PRETTY=false LOG_LEVEL=warn \
      node "$ROOT/dist/src/store/pg/migrate-cli.js" >&2 || die "migrations failed"
    say "migrations applied"
  else
    say "no build yet (npm run build): migrations run when gateway/worker start"
  fi
}

print_env() {
  echo "REDIS_URL=$(redis_url)"
  echo "DATABASE_URL=$(pg_url)"
}

case "${1:-}" in
  up)
    ensure_packages
    redis_up
    pg_up
    [ "${STACK_SKIP_MIGRATE:-}" = 1 ] || migrate
    print_env
    ;;
  down)
    redis_down
    pg_down
    ;;
  status)
    if [ -z "$EXTERNAL_REDIS" ] && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then echo "redis:    up   $(redis_url)"; elif [ -n "$EXTERNAL_REDIS" ]; then echo "redis:    external $(redis_url)"; else echo "redis:    down"; fi
    if [ -z "$EXTERNAL_PG" ] && pg_ready; then echo "postgres: up   $(pg_url)"; elif [ -n "$EXTERNAL_PG" ]; then echo "postgres: external $(pg_url)"; else echo "postgres: down"; fi
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
