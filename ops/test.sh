#!/usr/bin/env bash
# Runs every test of naast on a fresh machine: installs what the tests need, builds the binaries
# the end-to-end tests start as real processes, then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

# The gRPC contract must pass buf's lint (buf comes from npm, pinned in proto/package-lock.json).
(cd proto && npm install --no-audit --no-fund --loglevel=error && npx --no-install buf lint)

# A real OpenID provider (oidc-provider on Node) issues the tokens of the auth tests.
(cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)

# A second, independent FHIR validator (Medplum's, on Node) checks what the FHIR facade serves;
# Medplum's FHIR router on Node is the real FHIR server the push tests write to.
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

# A real browser for the web timeline's tests: Debian's Chromium and its matching chromedriver
# (driven by Python selenium, installed below; axe-core comes with tests/node).
# PostgreSQL from Debian's packages for the event log's second engine: each test starts a
# throwaway cluster of its own in a temporary directory (tests/pgcluster), on a Unix socket
# (and, for the TLS tests, on a loopback port).
packages=()
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  packages+=(chromium chromium-driver)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  packages+=(postgresql)
fi
# The openssl tool makes the certificates of the cluster that takes TLS connections only.
if ! command -v openssl >/dev/null; then
  packages+=(openssl)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo_if_needed=""
  if [ "$(id -u)" != 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -q "${packages[@]}"
fi

# An independent gRPC client (Python grpcio) is one of the end-to-end tests; Python selenium
# drives the browser.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/python/requirements.txt

cargo build --workspace --bins

# The systemd unit must be one systemd accepts (checked with its ExecStart on the binary just
# built; machines without systemd skip it, saying so).
if command -v systemd-analyze >/dev/null; then
  unit_dir="$(mktemp -d)"
  sed "s#/usr/local/bin/naast#$PWD/target/debug/naast#" ops/naast.service > "$unit_dir/naast.service"
  # Unknown or misspelt settings are only warned about: any word from verify fails the check.
  verdict="$(systemd-analyze verify "$unit_dir/naast.service" 2>&1)" || { echo "$verdict" >&2; exit 1; }
  rm -r "$unit_dir"
  if [ -n "$verdict" ]; then
    echo "ops/naast.service: $verdict" >&2
    exit 1
  fi
else
  echo "ops/test.sh: systemd-analyze missing; the systemd unit is not checked" >&2
fi
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc
