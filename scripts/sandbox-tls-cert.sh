#!/bin/sh
# Makes a throwaway certificate authority and a localhost certificate signed by it, for
# `connect-usage sandbox --tls-cert DIR/cert.pem --tls-key DIR/key.pem`.
# Clients trust DIR/ca.pem: SSL_CERT_FILE for connect-usage and Python's ssl,
# REQUESTS_CA_BUNDLE for Python's requests, curl --cacert.
#
# usage: scripts/sandbox-tls-cert.sh DIR   (needs openssl)
set -eu
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=connect-usage sandbox CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out cert.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > cert.ext
openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile cert.ext -out cert.pem 2>/dev/null
rm -f cert.csr cert.ext ca.srl
echo "$dir/cert.pem $dir/key.pem (trust $dir/ca.pem)"
