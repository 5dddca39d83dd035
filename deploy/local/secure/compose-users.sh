#!/usr/bin/env bash
# The one-shot `kafka-users` service of deploy/compose.secure.yaml, in the apache/kafka image:
# create one SCRAM-SHA-512 user per password file in $USERS (the principals of `casebus acl
# plan`, and admin). It connects on the brokers' mutual-TLS listener with the broker's own
# certificate (User:CN=casebus-broker, a super user): no SCRAM user has to exist first.
# Settings (env): CASEBUS_SECRETS (/etc/kafka/secrets), CASEBUS_USERS (/casebus/users),
# CASEBUS_INTERNAL_BOOTSTRAP (kafka-1:9092,kafka-2:9092,kafka-3:9092), KAFKA_BIN (/opt/kafka/bin).
# Prints user names only. Each password is on kafka-configs' command line inside this
# short-lived container only; it is never written to a log or to the compose file.
set -euo pipefail
secrets="${CASEBUS_SECRETS:-/etc/kafka/secrets}"
users="${CASEBUS_USERS:-/casebus/users}"
bootstrap="${CASEBUS_INTERNAL_BOOTSTRAP:-kafka-1:9092,kafka-2:9092,kafka-3:9092}"
bin="${KAFKA_BIN:-/opt/kafka/bin}"
umask 077
conf="$(mktemp)"
trap 'rm -f "$conf"' EXIT
store_pw="$(cat "$secrets/keystore.password")"
trust_pw="$(cat "$secrets/truststore.password")"
cat > "$conf" <<PROPS
security.protocol=SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$secrets/broker.p12
ssl.keystore.password=$store_pw
ssl.key.password=$store_pw
ssl.truststore.type=PKCS12
ssl.truststore.location=$secrets/truststore.p12
ssl.truststore.password=$trust_pw
PROPS
found=0
for file in "$users"/*.password; do
  [ -s "$file" ] || continue
  found=1
  name="$(basename "$file" .password)"
  # The brokers may still be electing a controller: try for about two minutes.
  for attempt in $(seq 1 60); do
    if "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$conf" \
        --alter --entity-type users --entity-name "$name" \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "$file")]" > /dev/null 2>&1; then
      echo "SCRAM-SHA-512 user $name"
      continue 2
    fi
    sleep 2
  done
  echo "could not create SCRAM user $name (are the brokers up?)" >&2
  exit 1
done
[ "$found" = 1 ] || { echo "no password files in $users" >&2; exit 1; }
