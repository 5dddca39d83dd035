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

# The broker's runtime classpath (and Kafka's own tools'), resolved by Maven from
# deploy/local/kafka/pom.xml into ~/.m2 once, and again when the pom changes.
kafka_classpath() {
  local cp_file="$KDIR/classpath-$KAFKA_VERSION.txt" pom="$REPO/deploy/local/kafka/pom.xml" jar missing=0 sum
  sum="$(sha256sum "$pom" | cut -c1-16)"
  if [ -s "$cp_file" ] && [ "$(cat "$cp_file.pom" 2>/dev/null)" = "$sum" ]; then
    for jar in $(tr ':' ' ' < "$cp_file"); do [ -f "$jar" ] || { missing=1; break; }; done
    [ "$missing" = 0 ] && { cat "$cp_file"; return; }
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka $KAFKA_VERSION from Maven Central"
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka"
  mkdir -p "$KDIR"
  log "resolving Kafka $KAFKA_VERSION and its runtime dependencies into ~/.m2 (once)"
  mvn -q -B -f "$pom" dependency:build-classpath \
      -Dkafka.version="$KAFKA_VERSION" -Dmdep.includeScope=runtime \
      -Dmdep.outputFile="$cp_file.tmp" >&2 || die "Maven could not resolve Kafka $KAFKA_VERSION"
  mv "$cp_file.tmp" "$cp_file"
  echo "$sum" > "$cp_file.pom"
  cat "$cp_file"
}

# Keep the logs of the last few broker starts (server.log.1 the newest): a fault test restarts
# the broker dozens of times, and the one start worth reading is rarely the previous one.
keep_server_log() {
  local logs="$1" n
  [ -f "$logs/server.log" ] || return 0
  for n in 7 6 5 4 3 2 1; do
    [ -f "$logs/server.log.$n" ] && mv -f "$logs/server.log.$n" "$logs/server.log.$((n + 1))"
  done
  mv -f "$logs/server.log" "$logs/server.log.1"
  rm -f "$logs/server.log.prev"
}

# A port inside the kernel's ephemeral range (ip_local_port_range) can be taken, while nothing
# listens on it, by a client connecting to it: the kernel may give the client that very port as
# its own, and the connection reaches itself (a TCP self-connect). Clients reconnect to a broker
# that is down many times a second, so a broker restarted on such a port finds it in use (seen
# in the fault loops on 39092). Refuse such ports up front, naming the range.
refuse_ephemeral_port() {
  local name="$1" port="$2" low high
  read -r low high < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
  if [ "$port" -ge "$low" ] && [ "$port" -le "$high" ]; then
    die "$name=$port lies in this machine's ephemeral port range $low-$high (net.ipv4.ip_local_port_range): a client reconnecting while the server is down can take it (TCP self-connect) and a restart then fails; choose a port below $low"
  fi
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The pid of the broker whose state is in folder $1 (broker 1's is $KDIR), if it runs.
node_pid() {
  local dir="$1" pid
  pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
  # A stale pid file can name a recycled pid: check it really is our broker.
  if pid_alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $dir/server.properties"; then
    echo "$pid"
  fi
}

kafka_pid() { node_pid "$KDIR"; }

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

# Each service's PostgreSQL login as <service>:<group role of bus/migrations/0009_roles.sql
# and 0011_procuratorate_adapter_role.sql>;
# the login user is "<group>_login". The tables' owner ($PG_USER) only migrates and runs
# operator commands: a service that may not alter or truncate a table cannot switch the audit
# log's append-only triggers off. Local trust authentication, so no password; a real
# deployment gives each login a password from its secret store.
SERVICE_LOGINS="router:casebus_router sla:casebus_sla adapter:casebus_adapter procuratorate_adapter:casebus_procuratorate_adapter monitor:casebus_monitor procuratorate:casebus_procuratorate_ro"

print_pg_exports() {
  local base="127.0.0.1:$PG_PORT/$PG_DB" pair
  echo "export CASEBUS_DATABASE_URL=postgresql://$PG_USER@$base"
  for pair in $SERVICE_LOGINS; do
    echo "export CASEBUS_$(printf '%s' "${pair%%:*}" | tr '[:lower:]' '[:upper:]')_DATABASE_URL=postgresql://${pair#*:}_login@$base"
  done
}

# One LOGIN user per service (SERVICE_LOGINS), each in its group role, made by running the
# psql command given as arguments (a superuser's, or one with CREATEROLE); the group is
# made here, powerless as 0009 makes it, when the migrations have not run yet, and the
# migrations grant it its privileges.
ensure_pg_service_logins() {
  local pair group
  for pair in $SERVICE_LOGINS; do
    group="${pair#*:}"
    # (duplicate_object: a migration or another `up` made it a moment ago)
    "$@" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$group') THEN
        BEGIN
          CREATE ROLE \"$group\" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
            NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
      END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${group}_login') THEN
        BEGIN
          CREATE ROLE \"${group}_login\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
            NOBYPASSRLS IN ROLE \"$group\";
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
      END IF;
    END \$\$"
  done
}

print_exports() {
  echo "export CASEBUS_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  print_pg_exports
}

# Brokers 2..N of `up --brokers N` live in $KDIR/node-<i>/ (broker 1 is the one above);
# broker i listens on KAFKA_PORT + 2(i-1), its controller on the port after that.
extra_nodes() { ls -d "$KDIR"/node-* 2>/dev/null || true; }
node_dir() { if [ "$1" = 1 ]; then echo "$KDIR"; else echo "$KDIR/node-$1"; fi; }
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_ctrl_port() { echo $((KAFKA_PORT + 2 * ($1 - 1) + 1)); }

# How many KRaft voters the state dir's Kafka was made with (1 when there is none yet): every
# node's storage is formatted for that quorum, so a state dir keeps its size for good.
cluster_size() {
  local voters
  voters="$(sed -n 's/^controller.quorum.voters=//p' "$KDIR/server.properties" 2>/dev/null || true)"
  if [ -z "$voters" ] || [ ! -f "$KDIR/data/meta.properties" ]; then echo 1; return; fi
  echo "$voters" | tr ',' '\n' | grep -c '@'
}

# Every partition keeps several files open; a test suite makes thousands of partitions.
# Raise the broker's open-file limit as far as this user may (root: to the kernel's cap).
raise_nofile() {
  ulimit -n "$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)" 2>/dev/null \
    || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}
