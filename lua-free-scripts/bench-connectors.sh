#!/usr/bin/env bash
# bench-connectors.sh -- real-time upserts through the worker's Salesforce
# and HubSpot connectors against the vendor emulators: records per second,
# the calls and 429s the emulators saw, and the worker's peak RSS.
#
#   lua-free-scripts/bench-connectors.sh
#   RECORDS=5000 lua-free-scripts/bench-connectors.sh
#
# The stack and the loads are tests/bench/connectors_bench.py's (its
# docstring): the worker and Redis on cpu SUT_CPU, the load and the
# emulators, which stand for the vendors' servers, on LOAD_CPU, as
# ../shared/bench pins the system under test and its load apart.  The
# emulators are Python, so the figures bound what the worker is asked to
# do; the "no limits" row is the worker's own pace against them.
#
# Environment: RECORDS=2000 SUT_CPU=0 LOAD_CPU=1 BENCH_DIR=build/bench
# Output: a markdown table on stdout and in $BENCH_DIR/connectors-results.md
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECORDS=${RECORDS:-2000}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${BENCH_DIR:-$ROOT/build/bench}

for v in RECORDS SUT_CPU LOAD_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a number" >&2; exit 2; }
done
[[ -x $ROOT/build/vantage-worker && -x $ROOT/build/vantagectl ]] \
    || { echo "build/vantage-worker and build/vantagectl: make worker ctl" >&2; exit 1; }

mkdir -p "$OUT"
{
    printf '# Connectors: real-time upserts (%s)\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf 'host: %s, %s cpus; worker %s\n\n' "$(uname -n)" "$(nproc)" \
        "$(sha256sum "$ROOT/build/vantage-worker" | cut -c1-12)"
    /usr/bin/python3 "$ROOT/tests/bench/connectors_bench.py" \
        --records "$RECORDS" --sut-cpu "$SUT_CPU" --load-cpu "$LOAD_CPU"
} | tee "$OUT/connectors-results.md"
