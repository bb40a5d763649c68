#!/usr/bin/env bash
# Property-based fuzzing of the running API against its own contract (openapi.json) with
# Schemathesis: tens of thousands of generated requests, valid and invalid, checked for
# server errors (5xx), undocumented status codes, responses that break their schema, wrong
# content types and wrong `Allow` headers. Not part of `make test`: it needs PyPI once and
# takes minutes. Usage: scripts/api-fuzz.sh [seconds per engine, default 300]; API_FUZZ_PHASES
# picks the Schemathesis phases (default examples,coverage,fuzzing,stateful); API_FUZZ_ENGINES
# the databases, run one after the other (default "sqlite postgres").
#
# The server runs from a debug build on a throwaway database (a SQLite file, or a fresh database
# on the PostgreSQL server of TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432,
# dropped afterwards) with limits and lockout off (the fuzzer would trip them, which the test
# suite already covers) and a bootstrap admin. The calls are authorised as that admin by
# scripts/api-fuzz-hooks.py, which signs in again every 2 s, so the fuzzer revoking its own
# session (logout, sign-out everywhere) does not leave the rest of the run unauthenticated.
# Output: target/api-fuzz/<engine>/.
set -euo pipefail

budget="${1:-300}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/api-fuzz"
venv="$work/venv"
port="${API_FUZZ_PORT:-18080}"
base="http://127.0.0.1:$port"
password="an unguessable fuzzing passphrase 7"

mkdir -p "$work"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

cargo build --quiet -p gatehouse-server --bin gatehouse
pg_server="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
overall=0

fuzz() {
engine="$1"
run="$work/$engine"
rm -rf "$run" && mkdir -p "$run/run"
case "$engine" in
  sqlite) database_url="sqlite://$run/run/gatehouse.db" ;;
  postgres)
    pg_database="gatehouse_api_fuzz_$$"
    psql -q "$pg_server/postgres" -c "DROP DATABASE IF EXISTS $pg_database" -c "CREATE DATABASE $pg_database"
    database_url="$pg_server/$pg_database" ;;
  *) echo "api-fuzz: unknown engine $engine (sqlite or postgres)" >&2; return 2 ;;
esac
APP_ENV=development \
  APP__DATABASE__URL="$database_url" \
  APP__SERVER__PORT="$port" \
  APP__PUBLIC__BASE_URL="$base" \
  APP__STORAGE__AVATAR_DIR="$run/run/avatars" \
  APP__MAIL__OUTBOX_DIR="$run/run/mail" \
  APP__RATE_LIMIT__ENABLED=false \
  APP__AUTH__LOCKOUT_THRESHOLD=1000000 \
  APP__AUTH__REQUIRE_VERIFIED_EMAIL=false \
  APP__BOOTSTRAP__ADMIN_EMAIL=root@example.com \
  APP__BOOTSTRAP__ADMIN_PASSWORD="$password" \
  APP__LOG__FORMAT=json \
  "$root/target/debug/gatehouse" serve >"$run/run/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 30); do
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
  sleep 1
done

# `positive_data_acceptance` is left out: opaque tokens and cursors the server did not issue
# are valid by their schema and rightly refused. /users/{id} is left out so the fuzzer does
# not delete or disable the admin whose token it uses.
status=0
cp "$root/scripts/api-fuzz-hooks.py" "$run/api_fuzz_hooks.py"
# Schemathesis keeps its cache (.schemathesis/) in the working directory; the hooks module is
# imported from it.
(cd "$run" && PYTHONPATH="$run" SCHEMATHESIS_HOOKS=api_fuzz_hooks \
  API_FUZZ_BASE="$base" API_FUZZ_EMAIL=root@example.com API_FUZZ_PASSWORD="$password" \
  "$venv/bin/schemathesis" run "$root/openapi.json" --url "$base" \
  --checks all --exclude-checks positive_data_acceptance \
  --phases "${API_FUZZ_PHASES:-examples,coverage,fuzzing,stateful}" --max-time "$budget" --seed 1 \
  --exclude-path-regex '^/api/v1/users/\{id\}$' \
  --report junit --report-dir "$run/report") | tee "$run/schemathesis.log" || status=$?

kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
trap - EXIT
if [[ "$engine" == postgres ]]; then
  psql -q "$pg_server/postgres" -c "DROP DATABASE IF EXISTS $pg_database WITH (FORCE)" || true
fi
echo
echo "[$engine] responses by status (server log):"
grep -o '"status":[0-9]*' "$run/run/server.log" | sort | uniq -c | sed 's/"status"://'
if grep -q '"status":5' "$run/run/server.log"; then
  echo "api-fuzz [$engine]: the server answered 5xx; see $run/run/server.log" >&2
  status=1
fi
return "$status"
}

for engine in ${API_FUZZ_ENGINES:-sqlite postgres}; do
  fuzz "$engine" || overall=1
done
exit "$overall"
