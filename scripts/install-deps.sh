#!/usr/bin/env bash
# Installs what building and testing Gatehouse needs beyond a Rust toolchain: the C
# libraries of the PostgreSQL and SQLite drivers, cargo-nextest, cargo-deny and the test OpenID
# Provider (npm). Idempotent.
set -euo pipefail

missing=()
for package in libpq-dev libsqlite3-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update
  $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# The supply-chain check in .ci/run (deny.toml). Builds from crates.io in about 3 minutes.
if ! cargo deny --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-deny"
  cargo install cargo-deny --locked
fi

# Node.js and npm run two independent implementations the tests check against: the OpenID
# Provider and the Standard Webhooks verifier below.
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs and npm"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update
  $sudo_cmd apt-get install -y --no-install-recommends nodejs npm
fi

# The real OpenID Provider the sign-in tests start (tests/oidc-provider: panva's oidc-provider,
# pinned by its package-lock.json). Needs Node 20.19 or later; reinstalls only when the lock changed.
oidc_dir="$(dirname "$0")/../tests/oidc-provider"
if ! cmp -s "$oidc_dir/package-lock.json" "$oidc_dir/node_modules/.installed-lock.json"; then
  echo "install-deps: installing the test OpenID Provider (npm ci)"
  (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock.json)
fi

# The independent Standard Webhooks verifier the end-to-end webhook tests run (the spec authors'
# JavaScript library, from npm, pinned by tests/webhook-verifier/package-lock.json). Needs Node.js.
verifier="$(cd "$(dirname "$0")/.." && pwd)/tests/webhook-verifier"
if ! [[ -d "$verifier/node_modules/standardwebhooks" ]]; then
  echo "install-deps: installing the webhook verifier (npm standardwebhooks)"
  (cd "$verifier" && npm ci --no-audit --no-fund)
fi
