#!/usr/bin/env bash
# bench-bulk.sh -- the Salesforce Bulk API 2.0 connector (sf_bulk.c): a
# bulk_upsert of SIZES records (5,000 and 50,000) read from a Redis list
# of pages of 100, end to end against the Salesforce emulator, and what it
# costs the worker:
#
#   lua-free-scripts/bench-bulk.sh
#   SIZES="5000 50000 100000" ROUNDS=2 lua-free-scripts/bench-bulk.sh
#
# For each round and size a fresh vantage-worker is started (so its peak
# RSS is that load's alone) against one redis-server and one emulator:
#   redis-server   no persistence, its own temp dir
#   emulator       tests/fakes/salesforce in lua-free-scripts/bench-bulk.py,
#                  its Contact.ExtId__c indexed (its own upsert scans every
#                  record: tests/fakes/sf_extid_index.py); TLS, JWT bearer
#   vantage-worker a [vault] holding the emulator's JWT key (put with
#                  build/vantagectl), one [connection], [job sf.bulk.upsert]
# bench-bulk.py load writes the pages, hands the job over the worker's
# socket and waits for {vq}:job:<id> to finish.  Reported per load:
#   records/s      records / (dispatch .. the job's finished_ms): the whole
#                  lifecycle (create, streamed upload, the emulator's
#                  processing, polling at 0.5 s doubling, the results read
#                  back), so the emulator's own speed is in it
#   worker CPU     utime+stime of the worker over the load, ms per 1,000
#                  records: what the connector itself costs
#   peak RSS       VmHWM of the worker (/proc/<pid>/status) after the load
# and the peak RSS difference between the largest and the smallest size:
# a streamed load should not grow with its size (the design's bound is
# 10 MiB between 5,000 and 50,000).
#
# Layout, as ../shared/bench pins its systems under test: the worker alone
# on cpu $SUT_CPU; Redis, the emulator (the vendor, elsewhere in
# production) and the driver on cpu $LOAD_CPU.
#
# Environment:
#   SIZES="5000 50000" ROUNDS=1 PAGE=100 SUT_CPU=0 LOAD_CPU=1
#   WORKER_BIN=build/vantage-worker CTL_BIN=build/vantagectl
#   BENCH_DIR=build/bench BULK_REDIS_PORT=19589 BULK_SF_PORT=19588
#   WAIT_IDLE=0 (seconds to wait for the machine to be under 10% busy)
#
# Output: a markdown table on stdout and in $BENCH_DIR/bulk-results.md,
# one line per load in $BENCH_DIR/bulk-raw.tsv; logs under
# $BENCH_DIR/bulk-run.  Every process started is stopped by a trap on
# EXIT, INT and TERM.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${SIZES:-5000 50000}
ROUNDS=${ROUNDS:-1}
PAGE=${PAGE:-100}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WAIT_IDLE=${WAIT_IDLE:-0}
WORKER_BIN=${WORKER_BIN:-$ROOT/build/vantage-worker}
CTL_BIN=${CTL_BIN:-$ROOT/build/vantagectl}
BENCH_DIR=${BENCH_DIR:-$ROOT/build/bench}
REDIS_PORT=${BULK_REDIS_PORT:-19589}
SF_PORT=${BULK_SF_PORT:-19588}
PY=/usr/bin/python3

BENCH_TAG=bench-bulk
RUN=$BENCH_DIR/bulk-run
PIDDIR=$RUN/pids
# shellcheck source=bench-lib.sh
. "$ROOT/lua-free-scripts/bench-lib.sh"

need_uints ROUNDS PAGE SUT_CPU LOAD_CPU WAIT_IDLE REDIS_PORT SF_PORT
for n in $SIZES; do [[ $n =~ ^[0-9]+$ ]] || die "SIZES: \"$n\" is not a number"; done
need_cmds taskset redis-server redis-cli
[[ -x $WORKER_BIN ]] || die "$WORKER_BIN not built (make worker)"
[[ -x $CTL_BIN ]] || die "$CTL_BIN not built (make ctl)"

trap_cleanup
mkdir -p "$RUN" "$PIDDIR"
stop_leftovers
rm -rf "${RUN:?}/logs" "$RUN/redis" "$RUN/sf" "$RUN/worker"
mkdir -p "$RUN/logs" "$RUN/redis" "$RUN/sf" "$RUN/worker"
for p in "$REDIS_PORT" "$SF_PORT"; do
  port_open "$p" && die "127.0.0.1:$p is already in use (BULK_REDIS_PORT / BULK_SF_PORT)"
done

wait_idle

log "redis-server on 127.0.0.1:$REDIS_PORT (cpu $LOAD_CPU)"
start_bg redis "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
  --save '' --appendonly no --dir "$RUN/redis" --maxmemory-policy noeviction
REDIS_PID=$LAST_PID
wait_port "$REDIS_PORT" "$REDIS_PID" redis-server

log "Salesforce emulator on 127.0.0.1:$SF_PORT (cpu $LOAD_CPU)"
start_bg emulator "$LOAD_CPU" "$PY" "$ROOT/lua-free-scripts/bench-bulk.py" \
  emulator --dir "$RUN/sf" --port "$SF_PORT"
SF_PID=$LAST_PID
wait_ready "grep -q login_url '$RUN/logs/emulator.out'" "$SF_PID" emulator \
  "printed no URLs"
sf_get() { "$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' \
  "$RUN/logs/emulator.out" "$1"; }
LOGIN_URL=$(sf_get login_url)
CA_FILE=$(sf_get ca_file)
CONSUMER_KEY=$(sf_get consumer_key)
JWT_KEY=$(sf_get jwt_key_file)
USERNAME=$(sf_get username)

KEY_FILE=$RUN/worker/vault.key
head -c 32 /dev/urandom >"$KEY_FILE"
chmod 600 "$KEY_FILE"
"$CTL_BIN" --redis "127.0.0.1:$REDIS_PORT" vault put sf.bench.jwt-key \
  --key-file "$KEY_FILE" --from-file "$JWT_KEY" >/dev/null \
  || die "vantagectl vault put failed"

SOCK=$RUN/worker/w.sock
CONF=$RUN/worker/worker.conf
cat >"$CONF" <<CONF
[worker]
listen = unix:$SOCK
redis = 127.0.0.1:$REDIS_PORT
visibility_timeout = 60s
shutdown_timeout = 2s

[vault]
key_file = $KEY_FILE

[target sf]
ca_file = $CA_FILE
connect_timeout = 5s

[connection bench-sf]
vendor = salesforce
auth = jwt_bearer
login_url = $LOGIN_URL
client_id = $CONSUMER_KEY
username = $USERNAME
private_key = sf.bench.jwt-key
api_version = 62.0
target = sf

[job sf.bulk.upsert]
connector = salesforce
connection = bench-sf
operation = bulk_upsert
object = Contact
external_id = ExtId__c
timeout = 30s
max_attempts = 1
CONF

RAW=$BENCH_DIR/bulk-raw.tsv
printf 'round\trecords\tseconds\trecords_s\tworker_cpu_ms\tcpu_ms_per_1k\tvmhwm_kib\tstate\n' >"$RAW"
declare -A HWM RATE CPUK

for ((round = 1; round <= ROUNDS; round++)); do
  for n in $SIZES; do
    rm -f "$SOCK"
    start_bg "worker-$round-$n" "$SUT_CPU" "$WORKER_BIN" -c "$CONF"
    WPID=$LAST_PID
    wait_ready "'$ROOT/lua-free-scripts/worker-ping' '$SOCK' >/dev/null 2>&1" \
      "$WPID" vantage-worker "did not answer PING"
    t0=$(pid_ticks "$WPID")
    out=$("$PY" "$ROOT/lua-free-scripts/bench-bulk.py" load \
      --redis "127.0.0.1:$REDIS_PORT" --socket "$SOCK" --records "$n" \
      --page "$PAGE") || die "the $n-record load failed: $out"
    t1=$(pid_ticks "$WPID")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$WPID/status")
    stop_pid "$WPID" "worker-$round-$n"
    secs=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$out")
    state=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); r=d["result"]; print(d["state"], r["succeeded"], r["failed"])' "$out")
    cpu_ms=$(( (t1 - t0) * 1000 / CLK_TCK ))
    rate=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    cpuk=$(awk -v c="$cpu_ms" -v n="$n" 'BEGIN { printf "%.1f", c * 1000 / n }')
    log "round $round: $n records in ${secs}s ($rate/s), worker ${cpu_ms} ms CPU, VmHWM ${hwm} KiB ($state)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$n" "$secs" "$rate" \
      "$cpu_ms" "$cpuk" "$hwm" "$state" >>"$RAW"
    # every round's figures, and the largest peak per size
    RATE[$n]="${RATE[$n]:+${RATE[$n]}, }$rate"
    CPUK[$n]="${CPUK[$n]:+${CPUK[$n]}, }$cpuk"
    (( ${HWM[$n]:-0} >= hwm )) || HWM[$n]=$hwm
  done
done

read -r -a sizes <<<"$SIZES"
small=${sizes[0]}
large=${sizes[${#sizes[@]} - 1]}
{
  echo "## bulk_upsert from a Redis list of pages of $PAGE ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  host_line
  echo "layout: vantage-worker on cpu $SUT_CPU; redis-server, the emulator and the driver on cpu $LOAD_CPU; $ROUNDS round(s)"
  echo
  echo "records/s runs from the dispatch to the job's finished_ms, the emulator's"
  echo "processing and the poll's 0.5 s doubling backoff included; one figure per round"
  echo
  echo "| records | records/s (end to end) | worker CPU ms / 1,000 records | worker peak RSS (VmHWM, largest) |"
  echo "|---:|---:|---:|---:|"
  for n in $SIZES; do
    echo "| $n | ${RATE[$n]} | ${CPUK[$n]} | ${HWM[$n]} KiB |"
  done
  echo
  echo "peak RSS difference, $large vs $small records: $(( HWM[$large] - HWM[$small] )) KiB"
} | tee "$BENCH_DIR/bulk-results.md"
