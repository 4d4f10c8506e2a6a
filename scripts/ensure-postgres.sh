#!/usr/bin/env bash
# Makes sure the local PostgreSQL answers on 127.0.0.1:5432, starting the machine's cluster if it is
# installed but stopped, or installing it from Debian's packages when it is missing.
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
  exit 0
fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "PostgreSQL is not installed; installing it from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$ver/main/pg_hba.conf
  # Local development and tests: trust loopback connections, as on this machine kind.
  sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/; s/^(local\s+all\s+all\s+)\S+/\1trust/' "$conf"
fi
ver=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL $ver" >&2
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
for _ in $(seq 1 60); do
  ready && exit 0
  sleep 0.5
done
echo "PostgreSQL did not become ready on 127.0.0.1:5432" >&2
exit 1
