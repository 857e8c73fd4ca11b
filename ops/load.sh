#!/usr/bin/env bash
# The load generator, long version: `naast serve` (authentication, consent, the audit log and
# encryption on, as deployed) on a fresh data directory, and `naast load` in a process of its own
# against it over gRPC: writers of notes, logbook entries, goals and agreements, timeline readers
# and live subscribers over many households. Prints the JSON figures of `naast load` (throughput,
# latency percentiles, errors, the server's memory and CPU), then stops the server with SIGTERM
# and runs `naast verify`. Exits non-zero when a call failed, a subscriber missed an entry, the
# server logged a panic or the log does not verify.
#
#   ops/load.sh [SECONDS] [HOUSEHOLDS]      (60 s over 200 households unless told)
#   WRITERS=16 READERS=8 SUBSCRIBERS=32 NAAST_BIN=target/release/naast ops/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
households="${2:-200}"
bin="${NAAST_BIN:-target/release/naast}"
if [ ! -x "$bin" ]; then
  cargo build --release --bin naast
  bin=target/release/naast
fi

dir="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# One principal drives all the load, so its rate and stream limits are lifted; everything else
# is as deployed.
printf '[limits]\ncalls_per_second = 1000000\ncall_burst = 1000000\nstreams_per_caller = 100000\n' > "$dir/naast.toml"
"$bin" serve --dev --listen 127.0.0.1:0 --data-dir "$dir/data" --config "$dir/naast.toml" \
  > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 300); do
  grep -q '^naast listening on ' "$dir/out" && break
  sleep 0.1
done
address="$(sed -n 's/^naast listening on //p' "$dir/out")"
token="$(sed -n 's/^naast dev token ouder //p' "$dir/out")"
if [ -z "$address" ] || [ -z "$token" ]; then
  echo "ops/load.sh: the server did not start:" >&2
  cat "$dir/err" >&2
  exit 1
fi

status=0
NAAST_TOKEN="$token" "$bin" load --server "http://$address" --server-pid "$pid" \
  --seconds "$seconds" --households "$households" \
  --writers "${WRITERS:-16}" --readers "${READERS:-8}" --subscribers "${SUBSCRIBERS:-32}" \
  || status=$?

kill -TERM "$pid"
wait "$pid" || { echo "ops/load.sh: the server did not stop cleanly" >&2; status=1; }
pid=""
if grep -q 'panicked' "$dir/err"; then
  echo "ops/load.sh: the server panicked:" >&2
  grep -A3 'panicked' "$dir/err" >&2
  status=1
fi
"$bin" verify --dev --data-dir "$dir/data" >&2 || status=1
exit "$status"
