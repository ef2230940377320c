#!/usr/bin/env bash
# bench-transform.sh -- what vantage_json_transform costs a proxied 2 KB JSON
# response (issue 7), against plain proxy and against the floor of any
# jansson-based transform, all in one run:
#
#   lua-free-scripts/bench.sh transform           3 rounds x 10 s, about 1 min
#   ROUNDS=1 DURATION=3 lua-free-scripts/bench-transform.sh
#
# Configs, measured in interleaved rounds (a, v, a, v, ...), each with a
# warm-up run before its measured run:
#   a-plain      proxy_pass to the backend with upstream keepalive (the
#                peers' proxy.conf and http.conf)
#   v-transform  the same + vantage_json_transform response with the
#                five-operation edit of conf/bench/transform-5ops.json
#                (a rename, a remove, a string to number, a last4 mask
#                and a constant)
# The backend nginx answers every request with conf/bench/transform-2k.json
# (2,041 bytes compact and a newline, a static file: Content-Type application/json,
# Content-Length).  The module reads a body it transforms unbuffered and
# holds the header back until it has rewritten it: that is part of what
# v-transform costs, as in production.
#
# After each round, tests/bench/microbench_transform (make
# build/bench/microbench_transform) runs pinned to the gateway's core: the
# same body through json_loadb, vc_map_apply_doc and json_dump_callback
# with the module's flags, in thread CPU time, median of MICRO_RUNS batches
# of 10 ms; it checks its output against
# conf/bench/transform-2k.expected.json first.  The target: the gateway's
# added CPU per request (v-transform - a-plain, same round) at most
# $TARGET (1.5) times that figure, the limit a jansson-based transform can
# reach.
#
# Sanity checks before measuring: the backend and a-plain return the body
# unchanged; v-transform returns JSON equal to the expected document
# (api_version "v2", no "internal", client.firstName, the ssn masked to
# its last four, the balance a number), as application/json.
#
# Layout, as bench.sh: the gateway nginx (master + 1 worker) pinned to cpu
# $GW_CPU; wrk -t1 -c64 and the backend nginx (1 worker) to cpu $LOAD_CPU;
# HTTP/1.1 keepalive on both legs.  Gateway CPU is utime+stime of its
# master and worker (/proc/<pid>/stat) over the measured window.  All of
# it on 127.0.0.1, stopped by a trap on EXIT, INT and TERM.
#
# Environment:
#   ROUNDS=3 DURATION=10 WARMUP=2 PREWARM=5 CONNS=64 THREADS=1
#   GW_CPU=0 LOAD_CPU=1 NGINX=/usr/sbin/nginx MICRO_RUNS=21 TARGET=1.5
#   MODULE=build/ngx_vantage_module.so
#   MICROBENCH=build/bench/microbench_transform (both copied into the run
#     directory, so a rebuild during the run changes nothing under it)
#   WAIT_IDLE=0   seconds to wait for the machine to be under 10% busy
#   BENCH_DIR=build/bench  TF_BACKEND_PORT=19180  TF_GW_BASE_PORT=19181
#     (a-plain 19181, v-transform 19182)
#   PEERS_DIR=/work/shared/bench/peers (set it empty for built-in copies)
#
# Output: a markdown table on stdout and in $BENCH_DIR/results-transform.md;
# per-run figures in $BENCH_DIR/raw-transform.tsv (wrk runs) and
# $BENCH_DIR/micro-transform.tsv (one micro-benchmark per round); wrk
# outputs and logs under $BENCH_DIR/transform-run.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PREWARM=${PREWARM:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
MICRO_RUNS=${MICRO_RUNS:-21}
TARGET=${TARGET:-1.5}
MODULE=${MODULE:-$ROOT/build/ngx_vantage_module.so}
MICROBENCH=${MICROBENCH:-$ROOT/build/bench/microbench_transform}
WAIT_IDLE=${WAIT_IDLE:-0}
OUT=${BENCH_DIR:-$ROOT/build/bench}
BACKEND_PORT=${TF_BACKEND_PORT:-19180}
GW_BASE_PORT=${TF_GW_BASE_PORT:-19181}
PEERS_DIR=${PEERS_DIR-/work/shared/bench/peers}
PY=/usr/bin/python3
RUN=$OUT/transform-run
PIDDIR=$RUN/pids
BENCH_TAG=bench-transform
BENCH_STOP_TRIES=50
# shellcheck source=lua-free-scripts/bench-lib.sh
. "$ROOT/lua-free-scripts/bench-lib.sh"

MAPPING=$ROOT/conf/bench/transform-5ops.json
BODY=$ROOT/conf/bench/transform-2k.json
EXPECTED=$ROOT/conf/bench/transform-2k.expected.json

# id | location body
CONFIGS=(
  "a-plain|"
  "v-transform|vantage_json_transform response @RUN@/transform-5ops.json;"
)

need_uints ROUNDS DURATION WARMUP PREWARM CONNS THREADS GW_CPU LOAD_CPU MICRO_RUNS \
           BACKEND_PORT GW_BASE_PORT WAIT_IDLE
(( ROUNDS > 0 && DURATION > 0 && MICRO_RUNS > 0 )) \
  || die "ROUNDS, DURATION and MICRO_RUNS must be positive"
[[ $TARGET =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "TARGET must be a number, not \"$TARGET\""

# ---------------------------------------------------------------- prerequisites
[[ -x $NGINX ]] || die "$NGINX not found (lua-free-scripts/install-deps.sh)"
need_cmds wrk curl taskset
[[ -f $MODULE ]] || die "$MODULE not found: 'make module'"
[[ -x $MICROBENCH ]] || die "$MICROBENCH not found: 'make build/bench/microbench_transform'"
for f in "$MAPPING" "$BODY" "$EXPECTED"; do [[ -f $f ]] || die "$f is missing"; done
ncpu=$(nproc)
(( GW_CPU < ncpu && LOAD_CPU < ncpu )) || die "GW_CPU/LOAD_CPU must be below $ncpu"
[[ $GW_CPU != "$LOAD_CPU" ]] || log "WARNING: GW_CPU equals LOAD_CPU: the gateway shares its core with the load"

# ---------------------------------------------------------------- processes
trap_cleanup
stop_leftovers

ports=("$BACKEND_PORT")
for ((i = 0; i < ${#CONFIGS[@]}; i++)); do ports+=($((GW_BASE_PORT + i))); done
for p in "${ports[@]}"; do
  port_open "$p" && die "127.0.0.1:$p is already in use (set TF_BACKEND_PORT / TF_GW_BASE_PORT)"
done

# ---------------------------------------------------------------- files
rm -rf "$RUN"
mkdir -p "$RUN"/{pids,logs,common,gw,www} "$OUT"
COMMON=$RUN/common

cp "$MODULE" "$RUN/ngx_vantage_module.so"
MODULE_RUN=$RUN/ngx_vantage_module.so
MODULE_SHA=$(sha256sum "$MODULE_RUN" | cut -c1-12)
cp "$MICROBENCH" "$RUN/microbench_transform"
cp "$MAPPING" "$RUN/transform-5ops.json"
cp "$BODY" "$RUN/www/transform-2k.json"
cp "$EXPECTED" "$RUN/transform-2k.expected.json"
# nginx's workers run as nobody
chmod 755 "$RUN" "$RUN/www"
chmod 644 "$RUN/transform-5ops.json" "$RUN/www/transform-2k.json"
BODY_LEN=$(stat -c %s "$RUN/www/transform-2k.json")

# The shared pieces: the peers' files when present, else copies of them.
common_pieces common/http.conf common/proxy.conf || true
log "shared nginx pieces: $PIECES"

# The backend: the peers' settings, answering with the 2 KB body.
backend_template "backend (rendered by $BENCH_SCRIPT)" \
  "    open_file_cache max=16 inactive=1h;" \
  "            root @RUN@/www;
            default_type application/json;
            etag off;
            try_files /transform-2k.json =500;" >"$COMMON/backend.conf.in"

render_common

log "run dir: $RUN"
log "backend nginx on 127.0.0.1:$BACKEND_PORT (cpu $LOAD_CPU), a $BODY_LEN-byte body"
start_nginx backend "$LOAD_CPU" "$COMMON/backend.conf.in" "$BACKEND_PORT"

declare -A GW_PID GW_PORT
IDS=()
for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
  IFS='|' read -r id body <<<"${CONFIGS[$i]}"
  gw_template "$id" "$body" >"$RUN/gw/$id.conf.in"
  port=$((GW_BASE_PORT + i))
  log "gateway $id on 127.0.0.1:$port (cpu $GW_CPU)"
  start_nginx "gw/$id" "$GW_CPU" "$RUN/gw/$id.conf.in" "$port"
  GW_PID[$id]=$LAST_PID; GW_PORT[$id]=$port
  IDS+=("$id")
done

# ---------------------------------------------------------------- sanity checks
fetch() { # url name -> status; body in $RUN/logs/<name>.body, headers in .headers
  curl -s --max-time 5 -o "$RUN/logs/$2.body" -D "$RUN/logs/$2.headers" \
       -w '%{http_code}' "$1" || true
}

# same_json got want: equal as JSON (member order aside); says how not
same_json() {
  $PY - "$1" "$2" <<'PYEOF'
import json, sys

try:
    got = json.load(open(sys.argv[1]))
except ValueError as e:
    print("not JSON (%s)" % e)
    sys.exit(1)
want = json.load(open(sys.argv[2]))
if got == want:
    sys.exit(0)
c = got.get("client", {}) if isinstance(got, dict) else {}
print("api_version %r, internal %s, firstName %s, first_name %s, ssn %r, balance %r"
      % (got.get("api_version") if isinstance(got, dict) else None,
         "present" if isinstance(got, dict) and "internal" in got else "absent",
         "present" if "firstName" in c else "absent",
         "present" if "first_name" in c else "absent",
         c.get("ssn"), c.get("balance")))
sys.exit(1)
PYEOF
}

log "sanity checks"
code=$(fetch "http://127.0.0.1:$BACKEND_PORT/" backend)
[[ $code == 200 ]] || die "backend answered $code"
cmp -s "$RUN/logs/backend.body" "$RUN/www/transform-2k.json" \
  || die "backend: the body is not conf/bench/transform-2k.json"
grep -qi '^Content-Type: application/json' "$RUN/logs/backend.headers" \
  || die "backend: no Content-Type application/json (see $RUN/logs/backend.headers)"

for id in "${IDS[@]}"; do
  url=http://127.0.0.1:${GW_PORT[$id]}/
  for n in 1 2; do
    code=$(fetch "$url" "$id")
    [[ $code == 200 ]] \
      || die "$id: request #$n got $code (see $RUN/logs/$id.body and $RUN/gw/$id/logs/error.log)"
    grep -qi '^Content-Type: application/json' "$RUN/logs/$id.headers" \
      || die "$id: no Content-Type application/json (see $RUN/logs/$id.headers)"
    if [[ $id == a-plain ]]; then
      cmp -s "$RUN/logs/$id.body" "$RUN/www/transform-2k.json" \
        || die "$id: the body is not the backend's, unchanged"
    else
      why=$(same_json "$RUN/logs/$id.body" "$RUN/transform-2k.expected.json") \
        || die "$id: the body is not the expected transform: $why (see $RUN/logs/$id.body)"
    fi
  done
  if [[ $id == a-plain ]]; then
    log "  $id ok: 200, the $BODY_LEN-byte body unchanged (twice)"
  else
    log "  $id ok: 200, the expected transform (twice): $(stat -c %s "$RUN/logs/$id.body") bytes," \
        "api_version v2, no internal, client.firstName, ssn masked, balance a number"
  fi
done

# the micro-benchmark checks its own output before it times anything
"$RUN/microbench_transform" "$RUN/transform-5ops.json" "$RUN/www/transform-2k.json" \
  "$RUN/transform-2k.expected.json" 1 >"$RUN/logs/micro-check.txt" 2>&1 \
  || die "microbench_transform: $(tail -n 1 "$RUN/logs/micro-check.txt")"
log "  microbench_transform ok: $(head -n 1 "$RUN/logs/micro-check.txt")"

# ---------------------------------------------------------------- measuring
run_wrk() { # id seconds outfile
  wrk_port "${GW_PORT[$1]}" "$2" "$3"
}

wait_idle

RAW=$OUT/raw-transform.tsv
MICRO=$OUT/micro-transform.tsv
printf 'round\tid\trps\tp50_us\tp99_us\trequests\tnon2xx\tsock_err\tgw_cpu_us\tgw_cpu_pct\tcpu%s_busy_pct\tcpu%s_busy_pct\n' \
  "$GW_CPU" "$LOAD_CPU" >"$RAW"
printf 'round\tfull_ns\tjansson_ns\tcpu%s_busy_pct\n' "$GW_CPU" >"$MICRO"

log "measuring: ${#IDS[@]} configs x $ROUNDS rounds x (${WARMUP}s warm-up + ${DURATION}s), wrk -t$THREADS -c$CONNS," \
    "then microbench_transform on cpu $GW_CPU; about $(( (PREWARM + ROUNDS * (${#IDS[@]} * (WARMUP + DURATION + 1) + 2)) / 60 + 1 )) min"
(( PREWARM == 0 )) || run_wrk "${IDS[0]}" "$PREWARM" "$RUN/logs/wrk-prewarm.txt" || true
for ((r = 1; r <= ROUNDS; r++)); do
  for id in "${IDS[@]}"; do
    warm_up "$id" "$r"
    measure_run "$id" "$RUN/logs/wrk-$id-r$r.txt"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$id" "$rps" "$p50" "$p99" \
      "$req" "$non2xx" "$sock" "$cpu_us" "$cpu_pct" "$gb" "$lb" >>"$RAW"
    log "  round $r $(printf '%-12s %9.0f req/s  p50 %5dus  p99 %5dus  gw %5.1f%% %6.1fus/req  cpu%s %5.1f%%  errors %d/%d' \
      "$id" "$rps" "$p50" "$p99" "$cpu_pct" "$cpu_us" "$LOAD_CPU" "$lb" "$non2xx" "$sock")"
  done

  # the floor, on the gateway's core while the gateway is idle
  out=$RUN/logs/micro-r$r.txt
  read -r g0 gt0 < <(cpu_jiffies "$GW_CPU")
  taskset -c "$GW_CPU" "$RUN/microbench_transform" "$RUN/transform-5ops.json" \
    "$RUN/www/transform-2k.json" "$RUN/transform-2k.expected.json" "$MICRO_RUNS" >"$out" 2>&1 \
    || die "microbench_transform failed (see $out)"
  read -r g1 gt1 < <(cpu_jiffies "$GW_CPU")
  full='' jns=''
  read -r full jns < <(awk '$1 == "transform_ns" {print $2, $3}' "$out") || true
  [[ -n $jns ]] || die "cannot parse microbench_transform's output (see $out)"
  gb=$(awk -v b=$((g1 - g0)) -v t=$((gt1 - gt0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * b / t : 0) }')
  printf '%s\t%s\t%s\t%s\n' "$r" "$full" "$jns" "$gb" >>"$MICRO"
  log "  round $r $(printf '%-12s %9.1f us/transform (jansson alone %.1f us)' micro \
    "$(awk -v n="$full" 'BEGIN { print n / 1000 }')" "$(awk -v n="$jns" 'BEGIN { print n / 1000 }')")"
done

for id in "${IDS[@]}"; do
  warn_error_lines "$id"
done

# ---------------------------------------------------------------- summary
{
  meta_head "jansson $(pkg-config --modversion jansson 2>/dev/null || echo '?')"
  echo "module: $MODULE (sha256 $MODULE_SHA..., built $(date -u -r "$MODULE" '+%Y-%m-%d %H:%M UTC'))"
  echo "body: conf/bench/transform-2k.json, $BODY_LEN bytes; mapping: conf/bench/transform-5ops.json (rename, remove, to number, mask last4, constant)"
  echo "layout: gateway (master + 1 worker) on cpu $GW_CPU; wrk -t$THREADS and backend nginx (1 worker) on cpu $LOAD_CPU; microbench_transform on cpu $GW_CPU after each round"
  echo "load: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, ${WARMUP}s warm-up before each run, $ROUNDS interleaved round(s); shared pieces: $PIECES"
} >"$OUT/meta-transform.txt"

PYTHONPATH=$ROOT/lua-free-scripts $PY -B - "$RAW" "$MICRO" "$OUT/meta-transform.txt" "$OUT/results-transform.md" "$TARGET" <<'PYEOF'
import csv, sys
from bench_report import Runs, med

raw, micro, meta, outp, target = sys.argv[1:6]
target = float(target)
mics = {m["round"]: m for m in csv.DictReader(open(micro), delimiter="\t")}
R = Runs(raw, meta)
rows, order, by, base, busy, out = R.rows, R.order, R.by, R.base, R.busy, R.out

out.append("| config | req/s (median) | min–max | vs a-plain | p50 ms | p99 ms | "
           "gw CPU µs/req | gw CPU % | " + R.busy_header() + " | errors |")
out.append("|" + "---|" * (9 + len(busy)))
for cid in order:
    rs = by[cid]
    head, errs = R.row_head(cid)
    out.append(head + f"{med(float(r['gw_cpu_pct']) for r in rs):.0f} | "
               + R.busy_cells(rs) + errs)

# per round: added = v-transform - a-plain, against that round's micro figure
added, micro_us, jansson_us, ratio = [], [], [], []
for r in by.get("v-transform", []):
    b, m = base.get(r["round"]), mics.get(r["round"])
    if b is None or m is None:
        continue
    a = float(r["gw_cpu_us"]) - float(b["gw_cpu_us"])
    u = float(m["full_ns"]) / 1000
    added.append(a)
    micro_us.append(u)
    jansson_us.append(float(m["jansson_ns"]) / 1000)
    ratio.append(a / u)

out.append("")
out.append("| added gw CPU µs/req (v-transform − a-plain) | micro-benchmark µs/transform "
           "(jansson alone) | added / micro | target |")
out.append("|---|---|---|---|")
if ratio:
    verdict = "met" if med(ratio) <= target else "**not met**"
    out.append(f"| {med(added):+.1f} | {med(micro_us):.1f} ({med(jansson_us):.1f}) | "
               f"{med(ratio):.2f} | ≤ {target:g}: {verdict} |")
else:
    out.append("| n/a | n/a | n/a | n/a |")
out.append("")
out.append(
    "Medians over the rounds. vs a-plain, added gw CPU and added / micro are "
    "taken per round (against the a-plain run and the micro-benchmark of the "
    "same round), then the median. gw CPU µs/req = gateway utime+stime "
    "(master + worker) over the measured window / requests completed. The "
    "micro-benchmark (tests/bench/microbench_transform.c) is json_loadb + "
    "vc_map_apply_doc + json_dump_callback + free of the same body with the "
    "module's flags, in thread CPU time, median of its batches; jansson alone "
    "is the same without the map. errors = non-2xx/3xx responses + socket "
    "errors, all rounds. cpuN busy % is the whole core, whoever used it.")
out.append("")
out.append("Per round (req/s, gw CPU µs/req; micro µs):")
out.append("")
out.append("| round | " + " | ".join(order) + " | micro |")
out.append("|---|" + "---|" * (len(order) + 1))
for rd in sorted({r["round"] for r in rows}, key=int):
    cells = []
    for cid in order:
        x = [r for r in by[cid] if r["round"] == rd]
        cells.append(f"{float(x[0]['rps']):,.0f}, {float(x[0]['gw_cpu_us']):.1f}"
                     if x else "n/a")
    m = mics.get(rd)
    cells.append(f"{float(m['full_ns']) / 1000:.1f}" if m else "n/a")
    out.append(f"| {rd} | " + " | ".join(cells) + " |")

R.write(outp)
PYEOF
log "results: $OUT/results-transform.md; per run: $RAW, $MICRO; wrk outputs and logs: $RUN"
