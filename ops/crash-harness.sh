#!/usr/bin/env bash
# The crash harness, long version: `naast serve` with authentication, the audit log and
# encryption on, under writers and a live subscriber, SIGKILLed at random moments ROUNDS times
# (default 100) and restarted; after each round `naast verify` passes, every acknowledged note is
# on its timeline once and has its audit record; at the end the views equal a replay. The test
# command runs 10 rounds of the same test. Exits non-zero on the first failed check.
#
#   ops/crash-harness.sh [ROUNDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
NAAST_CRASH_ROUNDS="${1:-100}" NAAST_CRASH_SEED="${2:-$RANDOM$RANDOM}" \
  cargo nextest run --profile long -p naast-tests --test crash_rounds --no-capture
