#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: PostgreSQL on 127.0.0.1:5432
# (and Redis on 127.0.0.1:6379 when installed). Starts them when they are down; never
# assumes. Honours TEST_DATABASE_URL: when it points elsewhere, that server is the
# caller's business and is only checked.
set -euo pipefail

pg_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "ensure-services: $name did not come up" >&2
  return 1
}

if command -v pg_isready >/dev/null 2>&1 && pg_isready -d "$pg_url" >/dev/null 2>&1; then
  echo "ensure-services: PostgreSQL is up"
elif [[ "$pg_url" == *"@127.0.0.1:5432"* || "$pg_url" == *"@localhost:5432"* ]] && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "ensure-services: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_isready -d "$pg_url"
else
  echo "ensure-services: PostgreSQL is not reachable at $pg_url; install and start it (Debian: apt-get install postgresql) or set TEST_DATABASE_URL" >&2
  exit 1
fi

if command -v redis-server >/dev/null 2>&1; then
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "ensure-services: Redis is up"
  else
    echo "ensure-services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
  fi
fi
