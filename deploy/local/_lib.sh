# Shared by deploy/local/{up,down,status}. Sourced, not executed.
# State lives under $CASEBUS_STATE_DIR (default: <repo>/.casebus), never in git.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CASEBUS_STATE_DIR:-$REPO/.casebus}"
KAFKA_VERSION="${CASEBUS_KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${CASEBUS_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CASEBUS_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP="${CASEBUS_KAFKA_HEAP:-1g}"
PG_PORT="${CASEBUS_PG_PORT:-15432}"
PG_DB="${CASEBUS_PG_DB:-casebus}"
PG_USER="${CASEBUS_PG_USER:-casebus}"

KDIR="$STATE/kafka"
PGDIR="$STATE/pg"

log() { printf '[casebus local] %s\n' "$*" >&2; }
die() { printf '[casebus local] error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

kafka_pid() {
  local pid
  pid="$(cat "$KDIR/kafka.pid" 2>/dev/null || true)"
  # A stale pid file can name a recycled pid: check it really is our broker.
  if pid_alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $KDIR/server.properties"; then
    echo "$pid"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PostgreSQL refuses to run as root; as root we run it as the 'postgres' system user.
pg_bindir() {
  local d
  if [ -n "${CASEBUS_PG_BINDIR:-}" ]; then echo "$CASEBUS_PG_BINDIR"; return; fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$d" ] && command -v pg_ctl >/dev/null; then d="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"; fi
  echo "$d"
}

as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() {
  local bindir
  bindir="$(pg_bindir)"
  [ -n "$bindir" ] && [ -f "$PGDIR/data/PG_VERSION" ] && as_pg_user "$bindir/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1
}

print_exports() {
  echo "export CASEBUS_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "export CASEBUS_DATABASE_URL=postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
}

# Brokers 2..N of `up --brokers N` live in $KDIR/node-<i>/ (broker 1 is the one above).
extra_nodes() { ls -d "$KDIR"/node-* 2>/dev/null || true; }

node_pid() {
  local dir="$1" pid
  pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
  if pid_alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $dir/server.properties"; then
    echo "$pid"
  fi
}

stop_pid() {
  local pid="$1" what="$2"
  log "stopping $what (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do pid_alive "$pid" || break; sleep 0.5; done
  if pid_alive "$pid"; then log "$what did not stop in 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
}
