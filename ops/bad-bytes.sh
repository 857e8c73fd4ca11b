#!/usr/bin/env bash
# The bad-bytes run, long version: for SECONDS (default 300) two attackers send a live
# `naast serve` random bytes, random HTTP/2 frames, gRPC calls carrying mutated requests with
# valid, foreign, garbage or no tokens, frames cut short, a message announcing 4 GiB, a 6 MiB
# message, a 1 MiB header, a CONTINUATION flood and rapid resets, and a third sends HTTP/1.1
# garbage and huge request lines and headers to its FHIR and metrics listeners. A family reads
# its household every 100 ms throughout; every read and every complete call must be answered,
# and at the end the server must still run, stop on SIGTERM and have logged no panic. The test
# command runs 5 s of the same test. Exits non-zero on a failed check; prints its seed.
#
#   ops/bad-bytes.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
NAAST_BAD_BYTES_SECONDS="${1:-300}" NAAST_BAD_BYTES_SEED="${2:-$RANDOM$RANDOM}" \
  cargo nextest run --profile long -p naast-tests --test bad_bytes --no-capture
