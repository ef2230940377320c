# shellcheck shell=bash
# bench-lib.sh -- what bench.sh and bench-jobs.sh share: logging, checks,
# starting processes pinned to a cpu and stopping them all by a trap, and
# reading CPU time from /proc.  Sourced, never run; the caller has set
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
