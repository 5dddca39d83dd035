# The secure mode of deploy/local/up (`up --secure`). Sourced by `up` after _lib.sh.
# A single KRaft node with no plaintext listener at all:
#   SASL_SSL   127.0.0.1:$KAFKA_PORT           clients, SCRAM-SHA-512 over TLS
#   INTERNAL   127.0.0.1:$KAFKA_INTERNAL_PORT  inter-broker, mutual TLS (the broker's certificate)
#   CONTROLLER 127.0.0.1:$KAFKA_CONTROLLER_PORT KRaft controller, mutual TLS
# StandardAuthorizer with allow.everyone.if.no.acl.found=false; super users are the broker itself
# and `admin`. One SCRAM user per principal of `casebus acl plan` plus `admin`; each password is
# random and kept in $SEC/users/<name>.password (0600), never printed and never on a command
# line: the users are made once the broker runs, over its mTLS listener as the broker itself
# (deploy/local/secure/scram-users). ACLs are applied afterwards with `casebus acl apply`.
# The broker's data and logs are 0700 folders of 0600 files.
# PostgreSQL: scram-sha-256 for every TCP login (no trust), a random password per role in
# $SEC/pg/<role>.password and a libpq passfile $SEC/pg/<role>.pgpass (both 0600); the DSNs
# printed name the passfile (?passfile=...), never the password. Each service logs in as its own
# least-privilege login (SERVICE_LOGINS in _lib.sh).
# Use a state folder of its own (CASEBUS_STATE_DIR): a plaintext broker's data is refused.

SEC="$STATE/secure"
KAFKA_INTERNAL_PORT="${CASEBUS_KAFKA_INTERNAL_PORT:-$((KAFKA_PORT + 2))}"
CASEBUS_PYTHON="${CASEBUS_PYTHON:-$REPO/.venv/bin/python}"

secure_prepare() {
  local name
  command -v openssl >/dev/null || die "openssl is needed for --secure"
  if [ -f "$KDIR/data/meta.properties" ] && [ "$(cat "$KDIR/mode" 2>/dev/null)" != secure ]; then
    die "$KDIR holds a plaintext broker; give --secure a CASEBUS_STATE_DIR of its own"
  fi
  "$REPO/deploy/local/secure/certs.sh" "$SEC/tls"
  mkdir -p "$SEC/users"
  chmod 700 "$SEC" "$SEC/users"
  [ -x "$CASEBUS_PYTHON" ] || die "--secure needs the project's Python at $CASEBUS_PYTHON (make setup)"
  local users
  users="$(secure_users)" || die "cannot read the ACL plan (casebus acl plan)"
  read -r -a SECURE_USERS <<< "admin $users"
  for name in "${SECURE_USERS[@]}"; do
    if [ ! -s "$SEC/users/$name.password" ]; then
      (umask 077; openssl rand -hex 24 > "$SEC/users/$name.password")
    fi
  done
  echo secure > "$KDIR/mode"
  # Every inbox is in these segments: the broker's owner alone may read them.
  chmod -R go-rwx "$KDIR"
}

# The principals of `casebus acl plan`, space-separated.
secure_users() {
  CASEBUS_PYTHON="$CASEBUS_PYTHON" "$REPO/deploy/local/secure/principals"
}

# Make (or reset) every SCRAM user of SECURE_USERS with the password in its file, as the broker
# itself over the mTLS listener; then wait until `admin` can log in on the SASL_SSL listener.
secure_users_up() {
  local users
  if [ -z "${SECURE_USERS[*]:-}" ]; then
    users="$(secure_users)" || die "cannot read the ACL plan (casebus acl plan)"
    read -r -a SECURE_USERS <<< "admin $users"
  fi
  chmod -R go-rwx "$KDIR"
  log "setting the SCRAM users of ${#SECURE_USERS[@]} principals"
  CASEBUS_PYTHON="$CASEBUS_PYTHON" "$REPO/deploy/local/secure/scram-users" \
    "127.0.0.1:$KAFKA_INTERNAL_PORT" "127.0.0.1:$KAFKA_PORT" "$SEC" "${SECURE_USERS[@]}" \
    || die "could not set the SCRAM users"
}

# PostgreSQL's roles: the superuser, the tables' owner and each service's login.
secure_pg_roles() {
  local pair
  echo postgres "$PG_USER"
  for pair in $SERVICE_LOGINS; do echo "${pair#*:}_login"; done
}

# A random password and a libpq passfile per role, 0600 in a 0700 folder; psql here reads the
# superuser's passfile (PGPASSFILE), never a password in its arguments.
secure_pg_secrets() {
  local role
  mkdir -p "$SEC/pg"
  chmod 700 "$SEC" "$SEC/pg"
  for role in $(secure_pg_roles); do
    if [ ! -s "$SEC/pg/$role.password" ]; then
      (umask 077; openssl rand -hex 24 > "$SEC/pg/$role.password")
    fi
    (umask 077; printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$role" \
      "$(cat "$SEC/pg/$role.password")" > "$SEC/pg/$role.pgpass")
  done
  export PGPASSFILE="$SEC/pg/postgres.pgpass"
}

# initdb with scram-sha-256 for TCP and peer for the local socket; the superuser's password
# comes from a file the server's user may read for the moment initdb runs.
secure_initdb() {
  local bindir="$1" pwfile="$PGDIR/initdb.pw"
  log "initdb into $PGDIR/data (scram-sha-256)"
  (umask 077; cat "$SEC/pg/postgres.password" > "$pwfile")
  [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
  as_pg_user "$bindir/initdb" -D "$PGDIR/data" -U postgres --auth-local=peer \
    --auth-host=scram-sha-256 --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    >/dev/null 2>"$PGDIR/initdb.log" \
    || { rm -f "$pwfile"; cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  printf "password_encryption = 'scram-sha-256'\n" >> "$PGDIR/data/postgresql.conf"
}

# Give each role its password (stored as a SCRAM verifier). The statements go to psql on its
# standard input, not its command line.
secure_pg_passwords() {
  local role
  for role in $(secure_pg_roles); do
    printf 'ALTER ROLE "%s" PASSWORD '"'"'%s'"'"';\n' "$role" "$(cat "$SEC/pg/$role.password")"
  done | "$(pg_bindir)/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -f - >/dev/null || die "could not set the PostgreSQL passwords"
}

write_secure_kafka_config() {
  (umask 077; cat > "$KDIR/server.properties" <<PROPS
# Generated by deploy/local/up --secure; edits are overwritten on the next run. Holds the
# keystore password: mode 0600, never in git.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,INTERNAL://127.0.0.1:$KAFKA_INTERNAL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,INTERNAL://127.0.0.1:$KAFKA_INTERNAL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$SEC/tls/broker.p12
ssl.keystore.password=$(cat "$SEC/tls/keystore.password")
ssl.key.password=$(cat "$SEC/tls/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$SEC/tls/ca.crt
listener.name.internal.ssl.client.auth=required
listener.name.controller.ssl.client.auth=required
ssl.enabled.protocols=TLSv1.3,TLSv1.2
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:CN=casebus-broker
allow.everyone.if.no.acl.found=false
log.dirs=$KDIR/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  )
}

print_secure_exports() {
  echo "export CASEBUS_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "export CASEBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
  echo "export CASEBUS_KAFKA_CA_FILE=$SEC/tls/ca.crt"
  echo "export CASEBUS_KAFKA_SASL_USERNAME=admin"
  echo "export CASEBUS_KAFKA_SASL_PASSWORD_FILE=$SEC/users/admin.password"
  echo "export CASEBUS_KAFKA_USERS_DIR=$SEC/users"
  # The same DSNs as plaintext mode, each naming its role's passfile.
  local line role
  print_pg_exports | while IFS= read -r line; do
    role="${line#*://}"
    role="${role%%@*}"
    echo "$line?passfile=$SEC/pg/$role.pgpass"
  done
}
