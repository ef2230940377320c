# shellcheck shell=bash
# bench-lib.sh -- what the bench scripts share: logging, checks, starting
# processes pinned to a cpu and stopping them all by a trap, reading CPU
# time from /proc, and (bench.sh, bench-transform.sh) the gateway's nginx
# pieces and wrk runs.  Sourced, never run; the caller has set
# -Eeuo pipefail and, before calling these, sets:
#   BENCH_TAG          the name in the log lines' prefix
#   RUN                the run directory (leftovers are recognised by it)
#   PIDDIR             where start_bg writes a pid file a process
#   BENCH_STOP_TRIES   tenths of a second stop_pid waits after TERM (100)
# and may define cleanup_hook, run by the EXIT trap before the processes
# are stopped.

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_TAG" -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_uints() { # VAR...: each a non-negative integer
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not \"${!v}\""
  done
}

need_cmds() { # cmd...: each on PATH
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "$cmd not found (lua-free-scripts/install-deps.sh)"
  done
}

# ---------------------------------------------------------------- processes
STARTED=()    # "pid:name", in start order

stop_pid() { # pid name
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${BENCH_STOP_TRIES:-100}; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$2 (pid $pid) did not stop on TERM; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_all() { # stops what is in STARTED, last started first
  local i e
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    e=${STARTED[$i]}
    stop_pid "${e%%:*}" "${e#*:}"
    wait "${e%%:*}" 2>/dev/null || true
    rm -f "$PIDDIR/${e#*:}.pid"
  done
  STARTED=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if declare -F cleanup_hook >/dev/null; then cleanup_hook; fi
  local n=${#STARTED[@]}
  stop_all
  (( n == 0 )) || log "stopped $n process(es)"
  exit "$rc"
}

trap_cleanup() { # every process started is stopped on EXIT, INT and TERM
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Leftovers of a run that was killed hard: only pids from our pid files whose
# command line still names our run directory.
stop_leftovers() {
  local f pid
  [[ -d $PIDDIR ]] || return 0
  for f in "$PIDDIR"/*.pid; do
    [[ -e $f ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
       && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN"; then
      log "stopping leftover $(basename "$f" .pid) (pid $pid) from an earlier run"
      stop_pid "$pid" "$(basename "$f" .pid)"
    fi
    rm -f "$f"
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() { # test-command pid name [what it did not do] [where to look]
  local i
  for ((i = 0; i < 100; i++)); do
    eval "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup (see ${5:-$RUN/logs})"
    sleep 0.1
  done
  die "$3 ${4:-was not ready} within 10s"
}

wait_port() { # port pid name
  wait_ready "port_open $1" "$2" "$3" "did not open 127.0.0.1:$1" "$RUN/logs and its error.log"
}

LAST_PID=
start_bg() { # name cpu cmd...  (the command stays in the foreground; sets LAST_PID)
  local name=$1 cpu=$2 f; shift 2
  f=${name//\//_}
  taskset -c "$cpu" "$@" >"$RUN/logs/$f.out" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID:$f")
  echo "$LAST_PID" >"$PIDDIR/$f.pid"
}

# ---------------------------------------------------------------- CPU time
# shellcheck disable=SC2034  # the callers' arithmetic uses it
CLK_TCK=$(getconf CLK_TCK)
pid_ticks() { # pid (may be empty) -> utime+stime of that process alone (0 when gone)
  [[ -n $1 && -r /proc/$1/stat ]] || { echo 0; return; }
  # fields 14 and 15, counted after the ")" that ends the command name
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}
tree_ticks() { # master pid -> utime+stime of it and its children
  local p t=0 pids
  mapfile -t pids < <(ps -o pid= --ppid "$1" | tr -d ' ')
  for p in "$1" "${pids[@]}"; do
    [[ -n $p ]] || continue
    t=$(( t + $(pid_ticks "$p") ))
  done
  echo "$t"
}
cpu_jiffies() { # N -> "busy total" of cpuN
  awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}

# Someone else's compile or test on the same two cores shows up here, and in
# the cpuN busy columns.
machine_busy() { # -> % of all CPUs busy over one second
  local b0 t0 b1 t1
  read -r b0 t0 < <(awk '/^cpu /{t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat)
  sleep 1
  read -r b1 t1 < <(awk '/^cpu /{t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat)
  echo $(( t1 > t0 ? 100 * (b1 - b0) / (t1 - t0) : 0 ))
}

wait_idle() { # waits up to WAIT_IDLE s for the machine to be under 10% busy; sets idle_busy
  local deadline
  idle_busy=$(machine_busy)
  if (( idle_busy >= 10 && WAIT_IDLE > 0 )); then
    log "the machine is ${idle_busy}% busy; waiting up to ${WAIT_IDLE}s for it to quieten (WAIT_IDLE)"
    deadline=$(( SECONDS + WAIT_IDLE ))
    while (( idle_busy >= 10 && SECONDS < deadline )); do sleep 4; idle_busy=$(machine_busy); done
  fi
  (( idle_busy < 10 )) || log "WARNING: the machine is ${idle_busy}% busy before the load starts: figures will be noisy"
}

host_line() { # -> "host: ..." for a results header
  echo "host: $(nproc) CPU(s), $(awk -F: '/model name/ {sub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
}

# ---------------------------------------------------------------- gateway nginx
# What bench.sh and bench-transform.sh share to start a backend nginx and
# one gateway nginx a config, from the peers' pieces or built-in copies of
# them.  These use, besides the above: COMMON (where the pieces go), PEERS_DIR,
# NGINX, BACKEND_PORT, MODULE_RUN (may be unset), and RENDER_SED, an array of
# further sed options render_tmpl applies (may be empty).

# the script that sourced this file, as the rendered files name it
BENCH_SCRIPT=lua-free-scripts/${BASH_SOURCE[-1]##*/}
RENDER_SED=()

peers_have() { # file...: each present under $PEERS_DIR (never when it is empty)
  local f
  [[ -n $PEERS_DIR ]] || return 1
  for f in "$@"; do [[ -f $PEERS_DIR/$f ]] || return 1; done
}

# The http settings both nginx pieces start with, each line prefixed with $1.
http_basics() { # [indent]
  local l
  while IFS= read -r l; do printf '%s%s\n' "${1:-}" "$l"; done <<'EOF'
access_log off;
keepalive_requests 1000000;
keepalive_timeout 75s;
client_body_temp_path tmp/body;
proxy_temp_path       tmp/proxy;
fastcgi_temp_path     tmp/fastcgi;
uwsgi_temp_path       tmp/uwsgi;
scgi_temp_path        tmp/scgi;
EOF
}

# main, events, http and proxy .conf.in in $COMMON: the peers' copies when
# $PEERS_DIR has the files named, else built-in copies identical in content.
# Sets PIECES, said in the results; returns 1 for the built-in copies.
# shellcheck disable=SC2034  # PIECES is the caller's
common_pieces() { # peers-file...
  local f
  if peers_have "$@"; then
    PIECES="$PEERS_DIR (common/*.conf)"
    for f in main events http proxy; do
      cp "$PEERS_DIR/common/$f.conf" "$COMMON/$f.conf.in"
    done
    return 0
  fi
  PIECES="${BENCH_SCRIPT##*/}'s built-in copies"
  cat >"$COMMON/main.conf.in" <<'EOF'
worker_processes 1;
daemon off;
pid logs/nginx.pid;
error_log logs/error.log warn;
worker_rlimit_nofile 20000;
EOF
  cat >"$COMMON/events.conf.in" <<'EOF'
worker_connections 4096;
use epoll;
EOF
  {
    http_basics
    cat <<'EOF'

upstream vbench_backend {
    server 127.0.0.1:@BACKEND_PORT@;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
}
EOF
  } >"$COMMON/http.conf.in"
  cat >"$COMMON/proxy.conf.in" <<'EOF'
proxy_pass http://vbench_backend;
proxy_http_version 1.1;
proxy_set_header Connection "";
EOF
  return 1
}

# A backend template on stdout: the peers' backend.conf with its own
# comment line, http lines and location body (each line indented already).
backend_template() { # comment http-lines location-lines
  [[ -z $1 ]] || echo "# $1"
  cat <<'EOF'
include @PEERS@/common/main.conf;
events { include @PEERS@/common/events.conf; }
http {
EOF
  http_basics '    '
  [[ -z $2 ]] || printf '%s\n' "$2"
  cat <<'EOF'
    server {
        listen 127.0.0.1:@BACKEND_PORT@ backlog=4096;
        location / {
EOF
  printf '%s\n' "$3"
  cat <<'EOF'
        }
    }
}
EOF
}

render_tmpl() { # src dst [gw_port]
  sed -e "s#@PEERS@#$RUN/peers#g" -e "s#@RUN@#$RUN#g" \
      -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" -e "s#@GW_PORT@#${3:-0}#g" \
      -e "s#@MODULE@#${MODULE_RUN:-}#g" "${RENDER_SED[@]}" "$1" >"$2"
}

# The peers' templates include "@PEERS@/common/<name>.conf": render the
# pieces so that this path resolves to $COMMON.
render_common() {
  local f
  mkdir -p "$RUN/peers"
  ln -s "$COMMON" "$RUN/peers/common"
  for f in main events http proxy; do render_tmpl "$COMMON/$f.conf.in" "$COMMON/$f.conf"; done
}

# A gateway template on stdout: the peers' a-plain, with the module loaded
# for a v-* config, the http lines and the location's directives
# (";"-separated) before the proxy.
gw_template() { # id location-body [http-body]
  if [[ $1 == v-* ]]; then echo "load_module @MODULE@;"; fi
  cat <<EOF
# $1 (rendered by $BENCH_SCRIPT)
include @PEERS@/common/main.conf;
events { include @PEERS@/common/events.conf; }
http {
    include @PEERS@/common/http.conf;
EOF
  [[ -z ${3:-} ]] || echo "    $3"
  cat <<EOF
    server {
        listen 127.0.0.1:@GW_PORT@ backlog=4096;
        location / {
EOF
  local d directives
  IFS=';' read -r -a directives <<<"$2"
  for d in "${directives[@]}"; do
    d=${d#"${d%%[![:space:]]*}"}
    [[ -n $d ]] && echo "            $d;"
  done
  cat <<'EOF'
            include @PEERS@/common/proxy.conf;
        }
EOF
  # the module's metrics, as an operator would have them (never hit while
  # measuring; bench.sh's sanity checks read them)
  if [[ $1 == v-* ]]; then
    echo "        location = /vantage/metrics { vantage_metrics; }"
  fi
  cat <<'EOF'
    }
}
EOF
}

start_nginx() { # name cpu template port   (sets LAST_PID)
  local name=$1 cpu=$2 tmpl=$3 port=$4 pfx=$RUN/$1 f=${1//\//_}
  mkdir -p "$pfx"/{conf,logs,tmp}
  chmod -R a+rwX "$pfx/tmp"
  render_tmpl "$tmpl" "$pfx/conf/nginx.conf" "$port"
  if ! "$NGINX" -t -q -p "$pfx/" -e "$pfx/logs/error.log" -c "$pfx/conf/nginx.conf" \
       >"$RUN/logs/$f.test" 2>&1; then
    cat "$RUN/logs/$f.test" >&2
    die "nginx -t failed for $name ($pfx/conf/nginx.conf)"
  fi
  start_bg "$name" "$cpu" "$NGINX" -p "$pfx/" -e "$pfx/logs/error.log" -c "$pfx/conf/nginx.conf"
  wait_port "$port" "$LAST_PID" "$name"
}

# ---------------------------------------------------------------- wrk
# wrk's text output -> "rps p50_us p99_us requests non2xx sockerr"
parse_wrk() {
  awk '
    function us(v,   n) {
      n = v + 0
      if (v ~ /us$/) return n
      if (v ~ /ms$/) return n * 1000
      if (v ~ /m$/)  return n * 60e6
      if (v ~ /s$/)  return n * 1e6
      return n
    }
    /^ +50%/                  { p50 = us($2) }
    /^ +99%/                  { p99 = us($2) }
    / requests in /           { req = $1 }
    /^Requests\/sec:/         { rps = $2 }
    /Non-2xx or 3xx/          { non2xx = $NF }
    /^ +Socket errors:/       { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
    END {
      if (rps == "" || p50 == "" || p99 == "" || req == "") exit 1
      printf "%s %d %d %d %d %d\n", rps, p50, p99, req, non2xx + 0, sock + 0
    }'
}

wrk_port() { # port seconds outfile [wrk option...]: on $LOAD_CPU
  local port=$1 secs=$2 out=$3
  shift 3
  timeout --kill-after=5 $((secs + 30)) taskset -c "$LOAD_CPU" \
    wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency --timeout 5s "$@" \
        "http://127.0.0.1:$port/" >"$out" 2>&1
}

# The unmeasured warm-up run (WARMUP s) before round r's measured run of
# id, and half a second for the gateway to settle.
warm_up() { # id r
  (( WARMUP == 0 )) || run_wrk "$1" "$WARMUP" "$RUN/logs/wrk-$1-r$2-warmup.txt" || true
  sleep 0.5
}

# One measured run of the caller's run_wrk (id seconds outfile) for
# $DURATION s, with the gateway's CPU (its master GW_PID[id]) and the busy
# share of $GW_CPU and $LOAD_CPU over it.  Sets rps p50 p99 req non2xx sock
# (parse_wrk's) and cpu_us (gateway µs a request), cpu_pct (of one core), gb
# and lb (% busy of the two cores, whoever used them).
# shellcheck disable=SC2034  # what it sets is the caller's
measure_run() { # id outfile
  local id=$1 out=$2 n0 n1 c0 c1 g0 gt0 g1 gt1 l0 lt0 l1 lt1
  n0=$(date +%s%N); c0=$(tree_ticks "${GW_PID[$id]}")
  read -r g0 gt0 < <(cpu_jiffies "$GW_CPU"); read -r l0 lt0 < <(cpu_jiffies "$LOAD_CPU")
  run_wrk "$id" "$DURATION" "$out" || die "wrk failed for $id (see $out)"
  n1=$(date +%s%N); c1=$(tree_ticks "${GW_PID[$id]}")
  read -r g1 gt1 < <(cpu_jiffies "$GW_CPU"); read -r l1 lt1 < <(cpu_jiffies "$LOAD_CPU")
  read -r rps p50 p99 req non2xx sock < <(parse_wrk <"$out") \
    || die "cannot parse wrk's output for $id (see $out)"
  (( req > 0 )) || die "$id: wrk completed no request (see $out)"
  read -r cpu_us cpu_pct gb lb < <(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" \
    -v ns=$((n1 - n0)) -v req="$req" -v gb=$((g1 - g0)) -v gt=$((gt1 - gt0)) \
    -v lb=$((l1 - l0)) -v lt=$((lt1 - lt0)) 'BEGIN {
      s = d / hz
      printf "%.2f %.1f %.1f %.1f\n", s * 1e6 / req, 100 * s / (ns / 1e9),
             (gt > 0 ? 100 * gb / gt : 0), (lt > 0 ? 100 * lb / lt : 0) }')
}

warn_error_lines() { # id: says how many error lines the gateway id logged
  local n
  n=$(grep -cE '\[(error|crit|alert|emerg)\]' "$RUN/gw/$1/logs/error.log" || true)
  [[ $n == 0 ]] || log "WARNING: $1: $n error lines in $RUN/gw/$1/logs/error.log"
}

meta_head() { # library-version -> the results' first lines: date, host, software
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  host_line
  echo "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //'); wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'); $1"
}
