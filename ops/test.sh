#!/usr/bin/env bash
# Runs every test of naast on a fresh machine: installs what the tests need, builds the binaries
# the end-to-end tests start as real processes, then runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc
