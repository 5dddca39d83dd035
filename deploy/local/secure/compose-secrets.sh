#!/usr/bin/env bash
# Make the secrets of deploy/compose.secure.yaml once, on the host (openssl, and Java's keytool
# for the brokers' truststore). Usage: compose-secrets.sh [<dir>] (default .casebus/compose-secure
# in the checkout, which git ignores). Idempotent: what exists is kept.
# Writes, every file mode 0600 in 0700 folders:
#   <dir>/tls/      the CA and the brokers' certificate (certs.sh, SAN kafka-1..3 and 127.0.0.1)
#   <dir>/broker/   what each broker mounts at /etc/kafka/secrets: broker.p12 and
#                   keystore.password (its TLS identity, User:CN=casebus-broker, a super user),
#                   truststore.p12 and truststore.password (the CA, for the mTLS listeners),
#                   kafka_server_jaas.conf (SCRAM on the client listener; it holds no secret)
#   <dir>/users/    one random password per principal of `casebus acl plan`, and admin's
#   <dir>/ca.crt    what clients trust: CASEBUS_KAFKA_CA_FILE
# The apache/kafka image runs as uid 1000: on Linux, a host user of another uid gives the
# container the files with `sudo chown -R 1000 <dir>/broker <dir>/users` (they stay 0600).
# Nothing here prints a password.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dir="${1:-$repo/.casebus/compose-secure}"
umask 077
mkdir -p "$dir/broker" "$dir/users"
chmod 700 "$dir" "$dir/broker" "$dir/users"

"$here/certs.sh" "$dir/tls" "DNS:kafka-1,DNS:kafka-2,DNS:kafka-3"
cp "$dir/tls/broker.p12" "$dir/tls/keystore.password" "$dir/broker/"
cp "$dir/tls/ca.crt" "$dir/ca.crt"
if [ ! -s "$dir/broker/truststore.p12" ]; then
  cp "$dir/tls/keystore.password" "$dir/broker/truststore.password"
  # A trusted-certificate entry Java accepts: keytool writes one; openssl >= 3.2 can too.
  if command -v keytool >/dev/null; then
    keytool -importcert -noprompt -alias casebus-ca -file "$dir/tls/ca.crt" -storetype PKCS12 \
      -keystore "$dir/broker/truststore.p12" -storepass:file "$dir/broker/truststore.password" \
      > /dev/null 2>&1 || { echo "keytool could not write the truststore" >&2; exit 1; }
  else
    openssl pkcs12 -export -nokeys -in "$dir/tls/ca.crt" -jdktrust anyExtendedKeyUsage \
      -out "$dir/broker/truststore.p12" -passout "file:$dir/broker/truststore.password" \
      || { echo "need Java's keytool or openssl >= 3.2 for the truststore" >&2; exit 1; }
  fi
fi
printf '%s\n' 'KafkaServer {' '  org.apache.kafka.common.security.scram.ScramLoginModule required;' \
  '};' > "$dir/broker/kafka_server_jaas.conf"

for name in admin $("$here/principals"); do
  [ -s "$dir/users/$name.password" ] || openssl rand -hex 24 > "$dir/users/$name.password"
done
chmod 600 "$dir"/broker/* "$dir"/users/* "$dir/ca.crt"
echo "secrets for deploy/compose.secure.yaml are in $dir"
