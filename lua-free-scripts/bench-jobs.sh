#!/usr/bin/env bash
# bench-jobs.sh -- jobs through Vantage: accepted per second by nginx (202s,
# the job durable in Redis), delivered per second to a local HTTP target,
# and the CPU each process spends per 1,000 jobs, under Redis's
# appendfsync always and everysec.  The "jobs" part of bench.sh:
#
#   lua-free-scripts/bench.sh jobs              (or BENCH_SET=jobs bench.sh)
#   JOBS=5000 ROUNDS=1 lua-free-scripts/bench.sh jobs
#   POLICIES=always lua-free-scripts/bench.sh jobs
#
# For every round and every fsync policy (interleaved: always, everysec,
# always, ...), a fresh stack is started, then stopped again:
#   redis-server   AOF on, appendfsync <policy>, no RDB, its own temp dir
#   vantage-worker conf/bench/jobs-worker.conf.in: one http job type
#                  (http.bench) whose url is the target; concurrency 256
#   gateway nginx  conf/bench/jobs-gateway.conf.in: the module,
#                  vantage_tenant bench; vantage_dispatch http.bench;
#   target nginx   conf/bench/jobs-target.conf.in: no module, return 200
# and three phases run on it, after one sanity job and WARM_JOBS warm-up
# jobs, each with JOBS jobs POSTed by h2load --h1 over CONNS keepalive
# connections as fast as the gateway answers:
#   1. accepting alone: the worker runs without its configuration file, so
#      it makes jobs durable in Redis and runs none (main.c);
#   2. draining: the configured worker replaces it and delivers that
#      backlog (warm-up included), timed until the last is in {vq}:done;
#   3. accepting and delivering: h2load posts while the worker delivers,
#      timed from the first request until the last job is in {vq}:done
#      (the worker records it there after the target's 2xx), polled every
#      POLL_MS.  This is the steady state, and the headline figure.
#
# Load tool: wrk cannot POST a body without a Lua script, and Lua is not
# used here, so the load is h2load (Debian's nghttp2-client) in HTTP/1.1
# mode with -d; its text output is parsed.  h2load counts status classes
# (2xx), so every answer is also logged by the gateway (one field,
# buffered) and the 202s are counted exactly from that log after the
# gateway stops; anything but 202 is reported.  The jobs Redis gained in
# the accepting phase are checked against h2load's 2xx ({vq}:inflight).
#
# CPU per 1,000 jobs: utime+stime from /proc/<pid>/stat over each phase,
# for the worker, redis-server, the gateway nginx (master + worker) and
# the target nginx, divided by the jobs of the phase.
#
# Layout.  The method of ../shared/bench pins the system under test to one
# core and the load to the other.  Here the system under test is Vantage
# as deployed: the gateway nginx, vantage-worker and the Redis that makes
# jobs durable, all three on cpu $SUT_CPU.  The load (h2load) and the
# delivery target (which stands for the vendor's servers, elsewhere in
# production) are on cpu $LOAD_CPU with the poller.  So the figures are
# what one core does for everything Vantage needs.  WORKER_CPU and
# REDIS_CPU move those two elsewhere (e.g. REDIS_CPU=1, as the peers'
# Redis shares the load's core), to see what they take from the gateway.
#
# Environment:
#   ROUNDS=2 JOBS=20000 WARM_JOBS=2000 CONNS=50 THREADS=1 CONCURRENCY=256
#   POLICIES="always everysec"  POLL_MS=100  DRAIN_TIMEOUT=180 (seconds)
#   SUT_CPU=0 LOAD_CPU=1 WORKER_CPU=$SUT_CPU REDIS_CPU=$SUT_CPU
#   NGINX=/usr/sbin/nginx MODULE=build/ngx_vantage_module.so
#   WORKER_BIN=build/vantage-worker (both copied into the run directory)
#   WAIT_IDLE=0 (seconds to wait for the machine to be under 10% busy)
#   BENCH_DIR=build/bench  JOBS_GW_PORT=19581 JOBS_TARGET_PORT=19580
#   JOBS_REDIS_PORT=19579
#
# Output: markdown tables on stdout and in $BENCH_DIR/jobs-results.md;
# per-phase figures in $BENCH_DIR/jobs-raw.tsv, per-stack counts (202s,
# target hits, dead jobs) in $BENCH_DIR/jobs-stacks.tsv; logs, h2load outputs and the
# done-count timelines under $BENCH_DIR/jobs-run.  Every process started is
# stopped by a trap on EXIT, INT and TERM.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-2}
JOBS=${JOBS:-20000}
WARM_JOBS=${WARM_JOBS:-2000}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
CONCURRENCY=${CONCURRENCY:-256}
POLICIES=${POLICIES:-always everysec}
POLL_MS=${POLL_MS:-100}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-180}
SUT_CPU=${SUT_CPU:-${GW_CPU:-0}}
LOAD_CPU=${LOAD_CPU:-1}
WORKER_CPU=${WORKER_CPU:-$SUT_CPU}
REDIS_CPU=${REDIS_CPU:-$SUT_CPU}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/ngx_vantage_module.so}
WORKER_BIN=${WORKER_BIN:-$ROOT/build/vantage-worker}
WAIT_IDLE=${WAIT_IDLE:-0}
OUT=${BENCH_DIR:-$ROOT/build/bench}
GW_PORT=${JOBS_GW_PORT:-19581}
TARGET_PORT=${JOBS_TARGET_PORT:-19580}
REDIS_PORT=${JOBS_REDIS_PORT:-19579}
CONF_DIR=$ROOT/conf/bench
PY=/usr/bin/python3
RUN=$OUT/jobs-run
PIDDIR=$RUN/pids
BENCH_TAG=bench-jobs
BENCH_STOP_TRIES=100
# shellcheck source=lua-free-scripts/bench-lib.sh
. "$ROOT/lua-free-scripts/bench-lib.sh"

need_uints ROUNDS JOBS WARM_JOBS CONNS THREADS CONCURRENCY POLL_MS DRAIN_TIMEOUT SUT_CPU LOAD_CPU \
           WORKER_CPU REDIS_CPU WAIT_IDLE GW_PORT TARGET_PORT REDIS_PORT
(( ROUNDS > 0 && JOBS > 0 && CONNS > 0 && POLL_MS > 0 )) || die "ROUNDS, JOBS, CONNS and POLL_MS must be positive"
for p in $POLICIES; do
  [[ $p == always || $p == everysec || $p == no ]] || die "POLICIES: \"$p\" is not always, everysec or no"
done

# ---------------------------------------------------------------- prerequisites
[[ -x $NGINX ]] || die "$NGINX not found (lua-free-scripts/install-deps.sh)"
need_cmds h2load taskset redis-server redis-cli curl
[[ -f $MODULE ]] || die "$MODULE not found: make all"
[[ -x $WORKER_BIN ]] || die "$WORKER_BIN not found: make all"
for f in jobs-gateway jobs-target jobs-worker; do
  [[ -f $CONF_DIR/$f.conf.in ]] || die "$CONF_DIR/$f.conf.in is missing"
done
ncpu=$(nproc)
for v in SUT_CPU LOAD_CPU WORKER_CPU REDIS_CPU; do
  (( ${!v} < ncpu )) || die "$v must be below $ncpu"
done
[[ $SUT_CPU != "$LOAD_CPU" ]] || log "WARNING: SUT_CPU equals LOAD_CPU: Vantage shares its core with the load"

# ---------------------------------------------------------------- processes
POLLER=
cleanup_hook() { # the done-count poller is no process of STARTED
  if [[ -n $POLLER ]]; then kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; fi
}
trap_cleanup
stop_leftovers

for p in "$GW_PORT" "$TARGET_PORT" "$REDIS_PORT"; do
  port_open "$p" && die "127.0.0.1:$p is already in use (set JOBS_GW_PORT / JOBS_TARGET_PORT / JOBS_REDIS_PORT)"
done

# ---------------------------------------------------------------- files
rm -rf "$RUN"
mkdir -p "$RUN"/{pids,logs,bin} "$OUT"
cp "$MODULE" "$RUN/bin/ngx_vantage_module.so"
cp "$WORKER_BIN" "$RUN/bin/vantage-worker"
MODULE_SHA=$(sha256sum "$RUN/bin/ngx_vantage_module.so" | cut -c1-12)
WORKER_SHA=$(sha256sum "$RUN/bin/vantage-worker" | cut -c1-12)
printf '{"order":12345,"customer":"bench-customer-1","amount":"99.95","items":[{"sku":"A-1","qty":2}]}' \
  >"$RUN/body.json"
BODY_BYTES=$(stat -c %s "$RUN/body.json")

render() { # src dst dir
  sed -e "s#@MODULE@#$RUN/bin/ngx_vantage_module.so#g" -e "s#@WORKER_SOCK@#$3/worker.sock#g" \
      -e "s#@GW_PORT@#$GW_PORT#g" -e "s#@TARGET_PORT@#$TARGET_PORT#g" \
      -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@CONCURRENCY@#$CONCURRENCY#g" "$1" >"$2"
}

RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
done_count() { "${RCLI[@]}" zcard '{vq}:done' 2>/dev/null || echo -1; }
dead_count() { "${RCLI[@]}" zcard '{vq}:dead' 2>/dev/null || echo -1; }

# ---------------------------------------------------------------- one stack
declare -A PID
start_stack() { # policy dir
  local policy=$1 d=$2 n
  mkdir -p "$d"/{redis,gw/conf,gw/logs,gw/tmp,target/conf,target/logs,target/tmp}
  chmod -R a+rwX "$d/gw/tmp" "$d/target/tmp"
  # nginx's workers run as nobody: the socket's directory must be searchable
  # (the worker makes the socket itself 0666)
  chmod 755 "$d"

  start_bg "redis-$policy" "$REDIS_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly yes --appendfsync "$policy" --daemonize no --protected-mode yes \
    --dir "$d/redis" --logfile "$d/redis/redis.log" --unixsocket '' --databases 1 --maxclients 4096
  PID[redis]=$LAST_PID
  wait_ready "[[ \$(${RCLI[*]} ping 2>/dev/null) == PONG ]]" "${PID[redis]}" redis
  n=$("${RCLI[@]}" config get appendfsync | tail -1)
  [[ $n == "$policy" ]] || die "redis reports appendfsync $n, not $policy"

  render "$CONF_DIR/jobs-target.conf.in" "$d/target/conf/nginx.conf" "$d"
  start_bg "target-$policy" "$LOAD_CPU" "$NGINX" -p "$d/target/" -e "$d/target/logs/error.log" \
    -c "$d/target/conf/nginx.conf"
  PID[target]=$LAST_PID
  wait_ready "port_open $TARGET_PORT" "${PID[target]}" "target nginx"

  # first a worker without a configuration file: it makes jobs durable
  # but runs none (main.c), so that accepting is measured alone
  render "$CONF_DIR/jobs-worker.conf.in" "$d/worker.conf" "$d"
  "$RUN/bin/vantage-worker" --check "$d/worker.conf" >/dev/null 2>"$RUN/logs/worker-check.err" \
    || die "worker config refused: $(cat "$RUN/logs/worker-check.err")"
  start_bg "worker-serve-$policy" "$WORKER_CPU" "$RUN/bin/vantage-worker" \
    --listen "unix:$d/worker.sock" --redis "127.0.0.1:$REDIS_PORT"
  PID[worker]=$LAST_PID
  wait_ready "$PY $ROOT/lua-free-scripts/worker-ping $d/worker.sock >/dev/null" "${PID[worker]}" \
    "vantage-worker (serve only)" "did not answer PING 200"
  # without a file the socket keeps the default 0660: nginx's workers run
  # as nobody (the configured worker below sets listen_mode instead)
  chmod 0666 "$d/worker.sock"

  render "$CONF_DIR/jobs-gateway.conf.in" "$d/gw/conf/nginx.conf" "$d"
  "$NGINX" -t -q -p "$d/gw/" -e "$d/gw/logs/error.log" -c "$d/gw/conf/nginx.conf" \
    >"$RUN/logs/gw-$policy.test" 2>&1 || { cat "$RUN/logs/gw-$policy.test" >&2; die "nginx -t failed for the gateway"; }
  start_bg "gw-$policy" "$SUT_CPU" "$NGINX" -p "$d/gw/" -e "$d/gw/logs/error.log" -c "$d/gw/conf/nginx.conf"
  PID[gw]=$LAST_PID
  wait_ready "port_open $GW_PORT" "${PID[gw]}" "gateway nginx"
}

h2load_run() { # n outfile
  timeout --kill-after=5 $(( 120 + $1 / 200 )) taskset -c "$LOAD_CPU" \
    h2load --h1 -n "$1" -c "$CONNS" -t "$THREADS" -d "$RUN/body.json" \
      -H 'Content-Type: application/json' "http://127.0.0.1:$GW_PORT/jobs/bench" >"$2" 2>&1
}

# h2load's text output -> "secs rps total succeeded failed errored timeout s2xx s3xx s4xx s5xx mean_ms max_ms"
parse_h2load() {
  awk '
    function ms(v,   n) {
      n = v + 0
      if (v ~ /us$/) return n / 1000
      if (v ~ /ms$/) return n
      if (v ~ /s$/)  return n * 1000
      return n
    }
    /^finished in /     { secs = $3 + 0; if ($3 ~ /ms,?$/) secs /= 1000; rps = $4 + 0 }
    /^requests: /       { tot = $2; succ = $8; fail = $10; err = $12; tmo = $14 }
    /^status codes: /   { s2 = $3; s3 = $5; s4 = $7; s5 = $9 }
    /^time for request:/ { mean = ms($6); max = ms($5) }
    END {
      if (secs == "" || tot == "") exit 1
      printf "%s %s %d %d %d %d %d %d %d %d %d %.2f %.2f\n", secs, rps, tot, succ, fail, err, tmo,
             s2, s3, s4, s5, mean, max
    }'
}

# Waits until {vq}:done holds target jobs; the done count and the time are
# logged every POLL_MS into file.  Returns nonzero on DRAIN_TIMEOUT.
wait_done() { # target file
  local deadline=$(( SECONDS + DRAIN_TIMEOUT )) d
  while :; do
    d=$(done_count)
    printf '%s %s\n' "$(date +%s%N)" "$d" >>"$2"
    (( d >= $1 )) && return 0
    (( SECONDS < deadline )) || return 1
    sleep "$(awk -v m="$POLL_MS" 'BEGIN { printf "%.3f", m / 1000 }')"
  done
}

poller() { # file  (background: the done count every POLL_MS, until killed)
  local s
  s=$(awk -v m="$POLL_MS" 'BEGIN { printf "%.3f", m / 1000 }')
  while :; do
    printf '%s %s\n' "$(date +%s%N)" "$(done_count)" >>"$1"
    sleep "$s"
  done
}

# ---------------------------------------------------------------- measuring
start_engine() { # policy dir  (replaces the serve-only worker by a configured one)
  local e i
  stop_pid "${PID[worker]}" "worker-serve-$1"
  wait "${PID[worker]}" 2>/dev/null || true
  for ((i = 0; i < ${#STARTED[@]}; i++)); do
    e=${STARTED[$i]}
    [[ ${e%%:*} == "${PID[worker]}" ]] && unset 'STARTED[i]'
  done
  STARTED=("${STARTED[@]}")
  rm -f "$PIDDIR/worker-serve-$1.pid" "$2/worker.sock"
  start_bg "worker-$1" "$WORKER_CPU" "$RUN/bin/vantage-worker" -c "$2/worker.conf"
  PID[worker]=$LAST_PID
  wait_ready "$PY $ROOT/lua-free-scripts/worker-ping $2/worker.sock >/dev/null" "${PID[worker]}" \
    vantage-worker "did not answer PING 200"
}

snap() { # -> "ns worker redis gw target sutBusy sutTotal loadBusy loadTotal" (ticks, jiffies)
  local sb st lb lt
  read -r sb st < <(cpu_jiffies "$SUT_CPU"); read -r lb lt < <(cpu_jiffies "$LOAD_CPU")
  echo "$(date +%s%N) $(pid_ticks "${PID[worker]}") $(pid_ticks "${PID[redis]}")" \
       "$(tree_ticks "${PID[gw]}") $(tree_ticks "${PID[target]}") $sb $st $lb $lt"
}

# two snaps and a job count -> "secs worker redis gw target sutBusy% loadBusy%" (CPU in ms per 1,000 jobs)
cost() {
  awk -v hz="$CLK_TCK" -v n="$3" -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    k = n > 0 ? n / 1000 : 1; ms = 1000 / hz
    printf "%.3f %.1f %.1f %.1f %.1f %.0f %.0f\n", (y[1] - x[1]) / 1e9,
      (y[2] - x[2]) * ms / k, (y[3] - x[3]) * ms / k, (y[4] - x[4]) * ms / k, (y[5] - x[5]) * ms / k,
      (y[7] > x[7] ? 100 * (y[6] - x[6]) / (y[7] - x[7]) : 0),
      (y[9] > x[9] ? 100 * (y[8] - x[8]) / (y[9] - x[9]) : 0) }'
}

inflight() { "${RCLI[@]}" get '{vq}:inflight' 2>/dev/null | awk '{print $1 + 0}'; }

wait_idle
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

RAW=$OUT/jobs-raw.tsv
printf 'round\tpolicy\tphase\tjobs\tsecs\taccepted_per_s\tn2xx\th2load_failed\tmean_ms\tmax_ms\tdelivered\tdeliver_s\tdelivered_per_s\twhile_accept_per_s\tworker_ms_per_kjob\tredis_ms_per_kjob\tgw_ms_per_kjob\ttarget_ms_per_kjob\tsut_busy_pct\tload_busy_pct\n' >"$RAW"
STACKS=$OUT/jobs-stacks.tsv
printf 'round\tpolicy\tstatus_lines\tn202\tnon202\ttarget_200\tdead\tgw_errors\tidle_busy_pct\n' >"$STACKS"

log "run dir: $RUN; layout: gateway nginx cpu $SUT_CPU, worker cpu $WORKER_CPU, redis cpu $REDIS_CPU;" \
    "h2load, target nginx and the poller cpu $LOAD_CPU"
log "load: h2load --h1 -c$CONNS -t$THREADS, $JOBS jobs a phase (after $WARM_JOBS warm-up jobs), $ROUNDS round(s) x { $POLICIES }"

# accept phase: h2load, then "secs rps n2xx failed mean_ms max_ms"
accept() { # n outfile
  local secs rps tot succ fail errd tmo s2 s3 s4 s5 mean max
  h2load_run "$1" "$2" || log "WARNING: h2load exited nonzero (see $2)"
  read -r secs rps tot succ fail errd tmo s2 s3 s4 s5 mean max < <(parse_h2load <"$2") \
    || die "cannot parse h2load's output (see $2)"
  (( s2 > 0 )) || die "h2load got no 2xx (see $2 and the gateway's error.log)"
  (( s2 == $1 )) || log "WARNING: $(( $1 - s2 )) of $1 requests got no 2xx (see $2)"
  echo "$secs $(awk -v n="$s2" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }') $s2 $(( fail + errd + tmo )) $mean $max"
}

row() { printf '%s' "$1"; shift; printf '\t%s' "$@"; printf '\n'; }

for ((r = 1; r <= ROUNDS; r++)); do
  for policy in $POLICIES; do
    d=$RUN/r$r-$policy
    idle=$(machine_busy)
    log "round $r, appendfsync $policy (machine ${idle}% busy before): starting redis, target, worker (serve only), gateway"
    start_stack "$policy" "$d"

    # sanity: one job, accepted and durable
    code=$(curl -s --max-time 10 -o "$d/sanity.body" -w '%{http_code}' -H 'Content-Type: application/json' \
      --data-binary @"$RUN/body.json" "http://127.0.0.1:$GW_PORT/jobs/bench" || true)
    [[ $code == 202 ]] || die "the sanity job got $code '$(cat "$d/sanity.body")' (see $d/gw/logs/error.log)"
    (( WARM_JOBS == 0 )) || accept "$WARM_JOBS" "$d/h2load-warmup.txt" >/dev/null
    queued=$(inflight)
    sleep 0.5

    # 1. accepting alone: the worker makes jobs durable and runs none
    a=$(snap)
    read -r secs acc n2 failed mean max < <(accept "$JOBS" "$d/h2load-accept.txt")
    b=$(snap)
    q=$(( $(inflight) - queued ))
    (( q == n2 )) || log "WARNING: Redis holds $q new jobs for $n2 2xx answers"
    read -r _ wms rms gms tms sb lb < <(cost "$a" "$b" "$n2")
    row "$r" "$policy" accept "$JOBS" "$secs" "$acc" "$n2" "$failed" "$mean" "$max" 0 "" "" "" \
        "$wms" "$rms" "$gms" "$tms" "$sb" "$lb" >>"$RAW"
    log "  accept only:  $acc jobs/s ($n2 2xx, $failed failed, mean $mean ms)  CPU ms/1k jobs: worker $wms redis $rms gw $gms  cpu$SUT_CPU $sb%"

    # 2. draining that backlog: the configured worker takes over
    backlog=$(inflight)
    a=$(snap)
    t0=$(date +%s%N)
    start_engine "$policy" "$d"
    wait_done "$backlog" "$d/drain.timeline" || log "WARNING: drain: only $(done_count) of $backlog jobs done within ${DRAIN_TIMEOUT}s"
    b=$(snap)
    dn=$(done_count)
    read -r dsec wms rms gms tms sb lb < <(cost "$a" "$b" "$dn")
    dps=$(awk -v n="$dn" -v s="$dsec" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
    row "$r" "$policy" drain "$backlog" "" "" "" "" "" "" "$dn" "$dsec" "$dps" "" \
        "$wms" "$rms" "$gms" "$tms" "$sb" "$lb" >>"$RAW"
    log "  drain:        $dps jobs/s ($dn jobs in ${dsec}s, worker start included)  CPU ms/1k jobs: worker $wms redis $rms target $tms  cpu$SUT_CPU $sb%"
    sleep 0.5

    # 3. accepting and delivering at once: from the first request until the
    # last job of the phase is done
    base=$(done_count)
    timeline=$d/mixed.timeline
    : >"$timeline"
    taskset -c "$LOAD_CPU" bash -c "$(declare -f poller done_count); RCLI=(${RCLI[*]}); POLL_MS=$POLL_MS; poller $timeline" &
    POLLER=$!
    a=$(snap)
    read -r secs acc n2 failed mean max < <(accept "$JOBS" "$d/h2load-mixed.txt")
    done1=$(( $(done_count) - base ))
    kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; POLLER=
    wait_done $(( base + n2 )) "$timeline" || log "WARNING: only $(( $(done_count) - base )) of $n2 jobs done within ${DRAIN_TIMEOUT}s"
    b=$(snap)
    done2=$(( $(done_count) - base ))
    read -r dsec wms rms gms tms sb lb < <(cost "$a" "$b" "$done2")
    read -r dps wa < <(awk -v n="$done2" -v s="$dsec" -v d1="$done1" -v as="$secs" \
      'BEGIN { printf "%.0f %.0f\n", (s > 0 ? n / s : 0), (as > 0 ? d1 / as : 0) }')
    row "$r" "$policy" mixed "$JOBS" "$secs" "$acc" "$n2" "$failed" "$mean" "$max" "$done2" "$dsec" "$dps" "$wa" \
        "$wms" "$rms" "$gms" "$tms" "$sb" "$lb" >>"$RAW"
    log "  mixed:        accepted $acc jobs/s ($n2 2xx, $failed failed, mean $mean ms), delivered $dps jobs/s" \
        "(while accepting $wa/s)  CPU ms/1k jobs: worker $wms redis $rms gw $gms target $tms  cpu$SUT_CPU $sb%"

    dead=$(dead_count)
    "${RCLI[@]}" info commandstats >"$d/redis-commandstats.txt" 2>/dev/null || true
    "${RCLI[@]}" info persistence >"$d/redis-persistence.txt" 2>/dev/null || true
    stop_all   # flushes the buffered logs
    nlog=$(wc -l <"$d/gw/logs/status.log")
    n202=$(grep -c '^202$' "$d/gw/logs/status.log" || true)
    t200=$(grep -c '^200$' "$d/target/logs/access.log" || true)
    # the worker's replacement and its stop close the gateway's connections
    # on purpose: those lines are expected
    errs=$(grep -E '\[(error|crit|alert|emerg)\]' "$d/gw/logs/error.log" \
      | grep -cv 'vantage worker: connection to .* closed by the worker' || true)
    row "$r" "$policy" "$nlog" "$n202" "$(( nlog - n202 ))" "$t200" "$dead" "$errs" "$idle" >>"$STACKS"
    (( nlog == n202 )) || log "WARNING: $(( nlog - n202 )) answers other than 202 (see $d/gw/logs/status.log)"
    (( errs == 0 )) || log "WARNING: $errs error lines in $d/gw/logs/error.log"
    (( dead == 0 )) || log "WARNING: $dead jobs dead-lettered"
    log "  stack: $n202 x 202 of $nlog answers; the target got $t200 requests; $dead dead"
  done
done

# ---------------------------------------------------------------- summary
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average before: $LOAD_BEFORE"
  host_line
  echo "software: nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'); $(redis-server --version | awk '{print $1, $2, $3}'); h2load $(h2load --version | awk '{print $2}')"
  echo "module sha256 $MODULE_SHA..., worker sha256 $WORKER_SHA..."
  echo "layout: gateway nginx (master + 1 worker) on cpu $SUT_CPU, vantage-worker on cpu $WORKER_CPU, redis-server on cpu $REDIS_CPU; h2load, target nginx and the done-count poller on cpu $LOAD_CPU"
  echo "load: h2load --h1 -c$CONNS -t$THREADS -d <${BODY_BYTES}-byte JSON>, $JOBS jobs a run after $WARM_JOBS warm-up jobs; worker concurrency $CONCURRENCY; $ROUNDS round(s) x { $POLICIES }, a fresh stack each run"
} >"$OUT/jobs-meta.txt"

$PY - "$RAW" "$STACKS" "$OUT/jobs-meta.txt" "$OUT/jobs-results.md" "$SUT_CPU" <<'PYEOF'
import csv, statistics, sys

raw, stacks, meta, outp, sut = sys.argv[1:6]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
st = list(csv.DictReader(open(stacks), delimiter="\t"))
order = list(dict.fromkeys(r["policy"] for r in rows))
med = statistics.median

def col(policy, phase, key):
    return [float(r[key]) for r in rows
            if r["policy"] == policy and r["phase"] == phase and r[key] != ""]

def mm(v, fmt="{:,.0f}"):
    if not v:
        return "n/a", "n/a"
    return fmt.format(med(v)), fmt.format(min(v)) + "–" + fmt.format(max(v))

out = [open(meta).read().rstrip(), ""]
out.append("| appendfsync | accepted/s, accepting and delivering | min–max | "
           "delivered/s, same run | min–max | accepted/s, accepting alone | "
           "min–max | drain/s of a backlog | min–max | mean ms to 202 | "
           "non-202 | dead | runs |")
out.append("|" + "---|" * 13)
for p in order:
    a, ar = mm(col(p, "mixed", "accepted_per_s"))
    dl, dr = mm(col(p, "mixed", "delivered_per_s"))
    aa, aar = mm(col(p, "accept", "accepted_per_s"))
    dd, ddr = mm(col(p, "drain", "delivered_per_s"))
    ms, _ = mm(col(p, "mixed", "mean_ms"), "{:.1f}")
    sp = [r for r in st if r["policy"] == p]
    bad = sum(int(r["non202"]) for r in sp) + sum(
        int(r["h2load_failed"]) for r in rows
        if r["policy"] == p and r["h2load_failed"] != "")
    out.append(f"| {p} | {a} | {ar} | {dl} | {dr} | {aa} | {aar} | {dd} | "
               f"{ddr} | {ms} | {bad} | {sum(int(r['dead']) for r in sp)} | "
               f"{len(sp)} |")
out.append("")
out.append(f"CPU time in ms per 1,000 jobs (= µs per job), medians; cpu{sut} "
           "busy % is the whole core, whoever used it:")
out.append("")
out.append("| appendfsync | phase | worker | Redis | gateway nginx | "
           "Vantage total | target nginx | "
           f"cpu{sut} busy % |")
out.append("|" + "---|" * 8)
names = {"mixed": "accepting and delivering", "accept": "accepting alone",
         "drain": "draining a backlog"}
for p in order:
    for ph in ("mixed", "accept", "drain"):
        w = col(p, ph, "worker_ms_per_kjob")
        if not w:
            continue
        rd = col(p, ph, "redis_ms_per_kjob")
        g = col(p, ph, "gw_ms_per_kjob")
        t = col(p, ph, "target_ms_per_kjob")
        b = col(p, ph, "sut_busy_pct")
        out.append(f"| {p} | {names[ph]} | {med(w):.1f} | {med(rd):.1f} | "
                   f"{med(g):.1f} | {med(w) + med(rd) + med(g):.1f} | "
                   f"{med(t):.1f} | {med(b):.0f} |")
out.append("")
out.append(
    "Accepting and delivering: h2load posts the jobs while the worker "
    "delivers them; accepted/s = 2xx / h2load's duration; delivered/s = "
    "jobs / time from the first request until the last of them is in "
    "{vq}:done (the target answered and the worker recorded it). "
    "Accepting alone: the worker runs without a configuration file, so it "
    "makes jobs durable and runs none. Draining: the configured worker then "
    "replaces it and delivers that backlog (its start-up included). "
    "non-202 = answers other than 202 in the gateway's status log plus "
    "h2load's failed requests; dead = dead-lettered jobs.")
noisy = [f"r{r['round']} {r['policy']} ({r['idle_busy_pct']}%)" for r in st
         if int(r["idle_busy_pct"]) >= 10]
if noisy:
    out.append("")
    out.append("**Noisy:** the machine was 10% busy or more just before: "
               + ", ".join(noisy) + ".")
txt = "\n".join(out) + "\n"
open(outp, "w").write(txt)
print(txt)
PYEOF
log "results: $OUT/jobs-results.md; per run: $RAW; logs and h2load outputs: $RUN"
