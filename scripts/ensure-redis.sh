#!/usr/bin/env bash
# Makes sure a local Redis answers on 127.0.0.1:6379 (the rate-limit tests use it), starting the
# machine's redis-server if it is installed but stopped, or installing it from Debian's packages.
set -euo pipefail

ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if command -v redis-cli >/dev/null && ready; then
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "Redis is not installed; installing it from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
echo "starting Redis" >&2
mkdir -p /var/lib/redis /var/log/redis
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /var/lib/redis --logfile /var/log/redis/atlas.log
for _ in $(seq 1 40); do
  ready && exit 0
  sleep 0.25
done
echo "Redis did not become ready on 127.0.0.1:6379" >&2
exit 1
