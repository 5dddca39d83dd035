#!/usr/bin/env bash
# Make a private CA and a broker certificate for the local secure Kafka, with openssl.
# Usage: certs.sh <dir> [extra SANs, e.g. DNS:kafka-1,DNS:kafka-2]. Idempotent: what exists is
# kept (a new SAN list needs a new dir). Writes, all mode 0600 in a 0700 dir:
#   ca.key ca.crt          the CA (ca.crt is what clients trust)
#   broker.key broker.crt  the broker's key and certificate (CN=casebus-broker,
#                          SAN 127.0.0.1, localhost and the extra SANs), signed by the CA
#   broker.p12             the same as a PKCS#12 keystore for Kafka
#   keystore.password      its random password
# The broker certificate is also the broker's client certificate on its own mTLS listeners
# (inter-broker and controller), so its principal is User:CN=casebus-broker.
set -euo pipefail
dir="${1:?usage: certs.sh <dir> [extra SANs]}"
sans="IP:127.0.0.1,DNS:localhost${2:+,$2}"
command -v openssl >/dev/null || { echo "openssl is needed for --secure" >&2; exit 1; }
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
if [ ! -s ca.crt ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -keyout ca.key -out ca.crt \
    -subj "/CN=casebus local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi
if [ ! -s broker.p12 ]; then
  openssl req -newkey rsa:3072 -sha256 -nodes -keyout broker.key -out broker.csr \
    -subj "/CN=casebus-broker" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$sans" > broker.ext
  openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
    -extfile broker.ext -out broker.crt 2>/dev/null
  openssl rand -hex 24 > keystore.password
  openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker \
    -out broker.p12 -passout "file:keystore.password"
  rm -f broker.csr broker.ext
fi
chmod 600 ./*
