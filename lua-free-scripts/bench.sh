#!/usr/bin/env bash
# bench.sh -- what JWT validation and Redis rate limiting in
# ngx_vantage_module cost a proxied request, measured as
# /work/shared/bench/run-peers.sh measures its peers.
#
#   lua-free-scripts/bench.sh                     3 rounds x 10 s, about 7 min
#   ROUNDS=1 DURATION=5 lua-free-scripts/bench.sh
#   ONLY=a-plain lua-free-scripts/bench.sh        the baseline alone (no module)
#   ONLY="a-plain v-apikey v-introspect" lua-free-scripts/bench.sh
#                                                 the auth schemes, about 2 min
#   lua-free-scripts/bench.sh jobs                the jobs part instead: jobs
#     accepted and delivered per second through the worker and Redis, and
#     their CPU (lua-free-scripts/bench-jobs.sh; BENCH_SET=jobs does the same)
#   lua-free-scripts/bench.sh connectors          real-time upserts through the
#     Salesforce and HubSpot connectors against the emulators, records/s and
#     the worker's peak RSS (lua-free-scripts/bench-connectors.sh)
#   lua-free-scripts/bench.sh bulk                Salesforce Bulk API 2.0 loads
#     of 5,000 and 50,000 records: records/s, worker CPU and peak RSS
#     (lua-free-scripts/bench-bulk.sh)
#   lua-free-scripts/bench.sh transform           a 2 KB JSON response through
#     vantage_json_transform (five edits) against plain proxy, and the same
#     transform in a jansson micro-benchmark on the gateway's core: added
#     gateway CPU per request vs that floor (lua-free-scripts/bench-transform.sh)
#
# Configs, measured in interleaved rounds (a, v1, v2, v3, a, v1, ...):
#   a-plain          proxy_pass to the backend with upstream keepalive
#   v-rs256-nocache  + vantage_jwt, RS256 (RSA-2048 PEM public key), no cache
#   v-rs256-cache    + vantage_jwt_cache zone=jwt:10m
#   v-es256-nocache  + vantage_jwt, ES256 (P-256 PEM public key), no cache
#   v-apikey         + vantage_api_key, the key in X-Api-Key (a 2-entry file)
#   v-introspect     + vantage_auth introspect: an opaque bearer token,
#                    introspected once through vantage-worker, then every
#                    request a hit in the module's cache (cache=1h)
#   v-rl1            one Redis limit (key: client address)
#   v-rl3            three Redis limits on one location
#   v-rs256-cache-rl1  RS256 with the cache + one limit keyed by the sub claim
#   v-rs256-cache-rl1-nometrics  the same with vantage_metrics_collect off:
#                    the difference to v-rs256-cache-rl1, round by round, is
#                    what the module's metrics cost (every other vantage
#                    config counts them, as the module does by default)
#   v-rl1-breaker    one limit, Redis unreachable: circuit breaker open, the
#                    local shared-memory bucket decides
# The limits are far above the load's rate, so nothing is refused (as in the
# peers' Lua bucket).  redis-server (no persistence) runs on $LOAD_CPU with
# the load; its CPU time per request is reported beside the gateway's.
#
# v-introspect is the warm-cache figure: what a request whose token the
# module has already had introspected costs the gateway.  Only when it is
# selected, three more processes run on $LOAD_CPU, beside the load: the
# identity provider emulator (tests/fakes/idp.py, HTTPS, its own CA), a
# vantage-worker whose [idp] section lists its introspection_url, and the
# worker's own redis-server (its queue needs one; not the limits' Redis,
# whose command count the sanity checks read).  The first valid request is
# introspected (one request at the provider) and the second must not be;
# the provider's count over the warm-ups and measured runs goes into the
# results, where anything above 0 means the cache was not warm.
#
# Layout (the same for every config): the gateway nginx (master + 1 worker)
# is pinned to cpu $GW_CPU; wrk -t1 -c64 and the backend nginx (1 worker,
# answers 200 {"ok":true}) to cpu $LOAD_CPU.  HTTP/1.1 keepalive on both
# legs.  Every measured run follows an unmeasured warm-up run; round 1 is
# preceded by a pre-warm.  wrk's plain text output (--latency) is parsed:
# no wrk Lua script.  Gateway CPU is utime+stime of its master and workers
# (/proc/<pid>/stat) over the measured window.  All of it on 127.0.0.1,
# stopped by a trap on EXIT, INT and TERM.
#
# The shared nginx pieces (main, events, http with the keepalive upstream,
# proxy, backend) are taken from $PEERS_DIR when it exists, so the figures
# compare with /work/shared/bench/PEERS.md; otherwise bench.sh writes its own
# copies of them, identical in content.
#
# Environment:
#   ROUNDS=3 DURATION=10 WARMUP=2 PREWARM=5 CONNS=64 THREADS=1
#   GW_CPU=0 LOAD_CPU=1 NGINX=/usr/sbin/nginx
#   MODULE=build/ngx_vantage_module.so (copied into the run directory, so a
#     rebuild during the run does not change the file under nginx)
#   WORKER_BIN=build/vantage-worker (copied too; for v-introspect only)
#   ONLY="a-plain v-rs256-cache"   a subset of the config ids
#   WAIT_IDLE=0   seconds to wait, before measuring, for the machine to be
#                 under 10% busy (other people's builds and tests)
#   BENCH_DIR=build/bench  BACKEND_PORT=19080  GW_BASE_PORT=19081
#   REDIS_PORT=19379  DEAD_PORT=19378 (nothing may listen there)
#   IDP_PORT=19443  WORKER_REDIS_PORT=19380 (v-introspect only)
#   PEERS_DIR=/work/shared/bench/peers (set it empty for the built-in copies)
#
# Output: a markdown table on stdout and in $BENCH_DIR/results.md; per-run
# figures in $BENCH_DIR/raw.tsv; wrk outputs and logs under $BENCH_DIR/run.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case ${1:-${BENCH_SET:-gateway}} in
  jobs) exec "$ROOT/lua-free-scripts/bench-jobs.sh" ;;
  connectors) exec "$ROOT/lua-free-scripts/bench-connectors.sh" ;;
  bulk) exec "$ROOT/lua-free-scripts/bench-bulk.sh" ;;
  transform) exec "$ROOT/lua-free-scripts/bench-transform.sh" ;;
  gateway) ;;
  *) echo "usage: $0 [gateway|jobs|connectors|bulk|transform]  (or BENCH_SET=...)" >&2; exit 2 ;;
esac
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PREWARM=${PREWARM:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
GW_CPU=${GW_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/ngx_vantage_module.so}
WORKER_BIN=${WORKER_BIN:-$ROOT/build/vantage-worker}
ONLY=${ONLY:-}
WAIT_IDLE=${WAIT_IDLE:-0}
OUT=${BENCH_DIR:-$ROOT/build/bench}
BACKEND_PORT=${BACKEND_PORT:-19080}
GW_BASE_PORT=${GW_BASE_PORT:-19081}
REDIS_PORT=${REDIS_PORT:-19379}
DEAD_PORT=${DEAD_PORT:-19378}
IDP_PORT=${IDP_PORT:-19443}
WORKER_REDIS_PORT=${WORKER_REDIS_PORT:-19380}
PEERS_DIR=${PEERS_DIR-/work/shared/bench/peers}
PY=/usr/bin/python3
RUN=$OUT/run
PIDDIR=$RUN/pids
BENCH_TAG=bench
BENCH_STOP_TRIES=50
# shellcheck source=lua-free-scripts/bench-lib.sh
. "$ROOT/lua-free-scripts/bench-lib.sh"

# id | token wrk sends | location body | http body
RL='rate=1000000r/s burst=1000000'
CONFIGS_ALL=(
  "a-plain|none||"
  "v-rs256-nocache|rs256|vantage_jwt on; vantage_jwt_keys @KEYS@/rs256-public.pem; vantage_jwt_algorithms RS256;|"
  "v-rs256-cache|rs256|vantage_jwt on; vantage_jwt_keys @KEYS@/rs256-public.pem; vantage_jwt_algorithms RS256; vantage_jwt_cache zone=jwt:10m;|"
  "v-es256-nocache|es256|vantage_jwt on; vantage_jwt_keys @KEYS@/es256-public.pem; vantage_jwt_algorithms ES256;|"
  "v-rl1|none|vantage_rate_limit \$binary_remote_addr $RL;|vantage_redis 127.0.0.1:@REDIS_PORT@;"
  "v-rl3|none|vantage_rate_limit \$binary_remote_addr $RL name=a; vantage_rate_limit \$binary_remote_addr rate=900000r/s burst=900000 name=b; vantage_rate_limit \$server_port $RL name=c;|vantage_redis 127.0.0.1:@REDIS_PORT@;"
  "v-rs256-cache-rl1|rs256|vantage_jwt on; vantage_jwt_keys @KEYS@/rs256-public.pem; vantage_jwt_algorithms RS256; vantage_jwt_cache zone=jwt:10m; vantage_rate_limit \$vantage_jwt_claim_sub $RL;|vantage_redis 127.0.0.1:@REDIS_PORT@;"
  "v-rs256-cache-rl1-nometrics|rs256|vantage_jwt on; vantage_jwt_keys @KEYS@/rs256-public.pem; vantage_jwt_algorithms RS256; vantage_jwt_cache zone=jwt:10m; vantage_rate_limit \$vantage_jwt_claim_sub $RL;|vantage_redis 127.0.0.1:@REDIS_PORT@; vantage_metrics_collect off;"
  "v-apikey|apikey|vantage_api_key on; vantage_api_keys @KEYS@/api-keys.json;|"
  "v-introspect|opaque|vantage_auth introspect; vantage_introspect @IDP_URL@/introspect cache=1h;|vantage_worker unix:@WORKER_SOCK@;"
  "v-rl1-breaker|none|vantage_rate_limit \$binary_remote_addr $RL;|vantage_redis 127.0.0.1:@DEAD_PORT@ breaker_cooldown=1h;"
)

CONFIGS=()
for c in "${CONFIGS_ALL[@]}"; do
  id=${c%%|*}
  [[ -z $ONLY || " $ONLY " == *" $id "* ]] && CONFIGS+=("$c")
done
[[ ${#CONFIGS[@]} -gt 0 ]] || die "ONLY=\"$ONLY\" selects no config"
NEED_MODULE=0
for c in "${CONFIGS[@]}"; do [[ $c == v-* ]] && NEED_MODULE=1; done

NEED_REDIS=0
for c in "${CONFIGS[@]}"; do [[ $c == *@REDIS_PORT@* ]] && NEED_REDIS=1; done
# the provider emulator, vantage-worker and the worker's Redis
NEED_IDP=0
for c in "${CONFIGS[@]}"; do [[ $c == *@IDP_URL@* ]] && NEED_IDP=1; done

need_uints ROUNDS DURATION WARMUP PREWARM CONNS THREADS GW_CPU LOAD_CPU BACKEND_PORT GW_BASE_PORT \
           REDIS_PORT DEAD_PORT IDP_PORT WORKER_REDIS_PORT WAIT_IDLE
(( ROUNDS > 0 && DURATION > 0 )) || die "ROUNDS and DURATION must be positive"

# ---------------------------------------------------------------- prerequisites
[[ -x $NGINX ]] || die "$NGINX not found (lua-free-scripts/install-deps.sh)"
need_cmds wrk curl taskset redis-server redis-cli
$PY -c 'import jwt, cryptography' 2>/dev/null \
  || die "$PY lacks PyJWT/cryptography (apt-get install python3-jwt python3-cryptography)"
if (( NEED_MODULE )); then
  [[ -f $MODULE ]] || die "$MODULE not found: 'make module', or ONLY=a-plain for the baseline alone"
fi
if (( NEED_IDP )); then
  [[ -x $WORKER_BIN ]] || die "$WORKER_BIN not found: 'make worker' (v-introspect needs it)"
  [[ -f $ROOT/tests/fakes/idp.py ]] || die "$ROOT/tests/fakes/idp.py is missing"
fi
ncpu=$(nproc)
(( GW_CPU < ncpu && LOAD_CPU < ncpu )) || die "GW_CPU/LOAD_CPU must be below $ncpu"
[[ $GW_CPU != "$LOAD_CPU" ]] || log "WARNING: GW_CPU equals LOAD_CPU: the gateway shares its core with the load"

# ---------------------------------------------------------------- processes
trap_cleanup
stop_leftovers

ports=("$BACKEND_PORT" "$REDIS_PORT" "$DEAD_PORT")
(( NEED_IDP )) && ports+=("$IDP_PORT" "$WORKER_REDIS_PORT")
for ((i = 0; i < ${#CONFIGS[@]}; i++)); do ports+=($((GW_BASE_PORT + i))); done
for p in "${ports[@]}"; do
  port_open "$p" && die "127.0.0.1:$p is already in use (set BACKEND_PORT / GW_BASE_PORT)"
done

# ---------------------------------------------------------------- files
rm -rf "$RUN"
mkdir -p "$RUN"/{pids,logs,keys,common,gw,idp} "$OUT"
# nginx's workers run as nobody: the worker's socket's directory must be
# searchable (the worker makes the socket itself 0666)
chmod 755 "$RUN/idp"
IDP_URL=https://127.0.0.1:$IDP_PORT
WORKER_SOCK=$RUN/idp/worker.sock
COMMON=$RUN/common
KEYS=$RUN/keys

if (( NEED_MODULE )); then
  cp "$MODULE" "$RUN/ngx_vantage_module.so"
  MODULE_RUN=$RUN/ngx_vantage_module.so
  MODULE_SHA=$(sha256sum "$MODULE_RUN" | cut -c1-12)
fi
if (( NEED_IDP )); then
  cp "$WORKER_BIN" "$RUN/vantage-worker"
  WORKER_SHA=$(sha256sum "$RUN/vantage-worker" | cut -c1-12)
fi

# The shared pieces: the peers' files when present, else these copies of them.
if common_pieces common/http.conf backend.conf; then
  PIECES="$PEERS_DIR (common/*.conf, backend.conf)"
  cp "$PEERS_DIR/backend.conf" "$COMMON/backend.conf.in"
else
  backend_template "" "" "            default_type application/json;
            return 200 '{\"ok\":true}';" >"$COMMON/backend.conf.in"
fi
log "shared nginx pieces: $PIECES"

RENDER_SED=(-e "s#@KEYS@#$KEYS#g"
            -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@DEAD_PORT@#$DEAD_PORT#g"
            -e "s#@IDP_URL@#$IDP_URL#g" -e "s#@WORKER_SOCK@#$WORKER_SOCK#g")
render_common

# ---------------------------------------------------------------- keys and tokens
# RSA-2048 and P-256 key pairs, the valid tokens wrk sends (exp 2100-01-01,
# as the peers' tokens), and the refused ones the sanity checks send.
$PY - "$KEYS" <<'PYEOF'
import os, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

out = sys.argv[1]
FAR = 4102444800
now = int(time.time())
claims = {"iss": "vbench", "sub": "bench-client-1", "aud": "vbench-api",
          "iat": now, "exp": FAR, "scope": "read"}

def pem_pair(key):
    priv = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub

def w(name, data):
    with open(os.path.join(out, name), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)

rs_priv, rs_pub = pem_pair(rsa.generate_private_key(65537, 2048))
rs_other, _ = pem_pair(rsa.generate_private_key(65537, 2048))
es_priv, es_pub = pem_pair(ec.generate_private_key(ec.SECP256R1()))
es_other, _ = pem_pair(ec.generate_private_key(ec.SECP256R1()))
w("rs256-public.pem", rs_pub)
w("es256-public.pem", es_pub)

tokens = {
    "rs256": jwt.encode(claims, rs_priv, algorithm="RS256"),
    "es256": jwt.encode(claims, es_priv, algorithm="ES256"),
    "rs256-badsig": jwt.encode(claims, rs_other, algorithm="RS256"),
    "es256-badsig": jwt.encode(claims, es_other, algorithm="ES256"),
    "rs256-expired": jwt.encode(dict(claims, exp=now - 3600), rs_priv, algorithm="RS256"),
    "es256-expired": jwt.encode(dict(claims, exp=now - 3600), es_priv, algorithm="ES256"),
    "hs256": jwt.encode(claims, "vbenchHS256secretKey0123456789abcdefABCDEF", algorithm="HS256"),
    "garbage": "abc.def.ghi",
}
for name, tok in tokens.items():
    w(name + ".jwt", tok)

# API keys as vantagectl makes them (vk_<id>_<32 random bytes, base64url>),
# the file holding their SHA-256; "apikey-badsig" has the valid key's id
# and another secret, "apikey-expired" an entry that expired an hour ago
import base64, hashlib, json, secrets
def api_key(kid):
    return "vk_%s_%s" % (kid, base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode().rstrip("="))
ak = {"apikey": api_key("bench-1"), "apikey-badsig": api_key("bench-1"),
      "apikey-expired": api_key("bench-old")}
entries = [
    {"id": "bench-1", "tenant": "vbench", "scopes": ["read"],
     "sha256": hashlib.sha256(ak["apikey"].encode()).hexdigest()},
    {"id": "bench-old", "tenant": "vbench", "expires": now - 3600,
     "sha256": hashlib.sha256(ak["apikey-expired"].encode()).hexdigest()},
]
w("api-keys.json", json.dumps({"keys": entries}))
for name, key in ak.items():
    w(name + ".jwt", key)

# opaque tokens for introspection: "opaque" active at the provider until
# 2100, "opaque-expired" active with an exp an hour ago, "opaque-badsig"
# unknown to it (so {"active": false}); and the worker's client secret
def opaque():
    return "vbo_" + secrets.token_urlsafe(32)
for name in ("opaque", "opaque-badsig", "opaque-expired"):
    w(name + ".jwt", opaque())
w("idp-client-secret", secrets.token_urlsafe(24) + "\n")

jwt.decode(tokens["rs256"], rs_pub, algorithms=["RS256"], audience="vbench-api")
jwt.decode(tokens["es256"], es_pub, algorithms=["ES256"], audience="vbench-api")
PYEOF
chmod 755 "$KEYS"; chmod 644 "$KEYS"/*
chmod 600 "$KEYS/idp-client-secret"

token_for() { [[ $1 == none ]] && return 0; cat "$KEYS/$1.jwt"; }
# the header that carries a token of a config: API keys go in X-Api-Key
auth_header() { # token-name token
  if [[ $1 == apikey* ]]; then echo "X-Api-Key: $2"; else echo "Authorization: Bearer $2"; fi
}

# ---------------------------------------------------------------- start
log "run dir: $RUN"
log "backend nginx on 127.0.0.1:$BACKEND_PORT (cpu $LOAD_CPU)"
start_nginx backend "$LOAD_CPU" "$COMMON/backend.conf.in" "$BACKEND_PORT"

REDIS_PID=
RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
if (( NEED_REDIS )); then
  log "redis-server on 127.0.0.1:$REDIS_PORT (cpu $LOAD_CPU, no persistence)"
  mkdir -p "$RUN/redis"
  start_bg redis "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --daemonize no --protected-mode yes --dir "$RUN/redis" \
    --logfile "$RUN/logs/redis.log" --unixsocket '' --databases 1 --maxclients 1000
  REDIS_PID=$LAST_PID
  wait_port "$REDIS_PORT" "$REDIS_PID" redis
fi
redis_cmds() {
  (( NEED_REDIS )) || { echo 0; return; }
  "${RCLI[@]}" info stats 2>/dev/null | awk -F: '/^total_commands_processed/{print $2+0}'
}

# /introspect requests the provider emulator has received (its /_counts)
introspections() {
  curl -sf --max-time 5 --cacert "$RUN/idp/ca.pem" "$IDP_URL/_counts" \
    | $PY -c 'import json, sys; print(json.load(sys.stdin).get("/introspect", 0))'
}

if (( NEED_IDP )); then
  log "identity provider emulator on $IDP_URL (cpu $LOAD_CPU)"
  start_bg idp "$LOAD_CPU" "$PY" "$ROOT/tests/fakes/idp.py" --port "$IDP_PORT" --dir "$RUN/idp" \
    --token "$(cat "$KEYS/opaque.jwt")=bench-client-1:read:4102444800" \
    --token "$(cat "$KEYS/opaque-expired.jwt")=bench-client-1:read:$(( $(date +%s) - 3600 ))" \
    --client "vantage-bench=$KEYS/idp-client-secret"
  wait_ready "introspections >/dev/null 2>&1" "$LAST_PID" "the identity provider emulator" \
    "did not answer $IDP_URL/_counts"

  log "worker's redis-server on 127.0.0.1:$WORKER_REDIS_PORT (cpu $LOAD_CPU, no persistence)"
  mkdir -p "$RUN/worker-redis"
  start_bg worker-redis "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$WORKER_REDIS_PORT" \
    --save '' --appendonly no --daemonize no --protected-mode yes --dir "$RUN/worker-redis" \
    --logfile "$RUN/logs/worker-redis.log" --unixsocket '' --databases 1 --maxclients 1000
  wait_port "$WORKER_REDIS_PORT" "$LAST_PID" "worker's redis"

  # the worker calls only what its own file lists, with its own secret:
  # the section's introspection_url is the URL of vantage_introspect
  cat >"$RUN/idp/worker.conf" <<EOF
# vantage-worker for v-introspect (written by lua-free-scripts/bench.sh)
[worker]
listen             = unix:$WORKER_SOCK
listen_mode        = 0666
redis              = 127.0.0.1:$WORKER_REDIS_PORT
consumer           = bench-introspect
shutdown_timeout   = 2s

[idp bench]
introspection_url  = $IDP_URL/introspect
ca_file            = $RUN/idp/ca.pem
client_id          = vantage-bench
client_secret_file = $KEYS/idp-client-secret
auth               = client_secret_basic
timeout            = 2s
EOF
  "$RUN/vantage-worker" --check "$RUN/idp/worker.conf" >/dev/null 2>"$RUN/logs/worker-check.err" \
    || die "worker config refused: $(cat "$RUN/logs/worker-check.err")"
  log "vantage-worker on unix:$WORKER_SOCK (cpu $LOAD_CPU)"
  start_bg worker "$LOAD_CPU" "$RUN/vantage-worker" -c "$RUN/idp/worker.conf"
  wait_ready "$PY $ROOT/lua-free-scripts/worker-ping $WORKER_SOCK >/dev/null" "$LAST_PID" \
    vantage-worker "did not answer PING 200 on $WORKER_SOCK"
fi

declare -A GW_PID GW_PORT GW_TOKEN
IDS=()
for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
  IFS='|' read -r id tok body hbody <<<"${CONFIGS[$i]}"
  gw_template "$id" "$body" "$hbody" >"$RUN/gw/$id.conf.in"
  port=$((GW_BASE_PORT + i))
  log "gateway $id on 127.0.0.1:$port (cpu $GW_CPU)"
  start_nginx "gw/$id" "$GW_CPU" "$RUN/gw/$id.conf.in" "$port"
  GW_PID[$id]=$LAST_PID; GW_PORT[$id]=$port; GW_TOKEN[$id]=$tok
  IDS+=("$id")
done

# ---------------------------------------------------------------- sanity checks
http_code() { # url [token [token-name]]  -> status; body in $RUN/logs/curl.body
  local auth=()
  [[ -n ${2:-} ]] && auth=(-H "$(auth_header "${3:-}" "$2")")
  curl -s --max-time 5 -o "$RUN/logs/curl.body" -w '%{http_code}' "${auth[@]}" "$1" || true
}

log "sanity checks"
code=$(http_code "http://127.0.0.1:$BACKEND_PORT/")
[[ $code == 200 ]] || die "backend answered $code"
for id in "${IDS[@]}"; do
  url=http://127.0.0.1:${GW_PORT[$id]}/
  tok=$(token_for "${GW_TOKEN[$id]}")
  # twice: the second request of a cache config is answered from the cache
  r0=$(redis_cmds)
  [[ $id != v-introspect ]] || i0=$(introspections)
  for n in 1 2; do
    code=$(http_code "$url" "$tok" "${GW_TOKEN[$id]}")
    body=$(cat "$RUN/logs/curl.body")
    [[ $code == 200 && $body == '{"ok":true}' ]] \
      || die "$id: valid request #$n got $code '$body' (see $RUN/gw/$id/logs/error.log)"
    if [[ $id == v-introspect ]]; then
      # the first is introspected, the second is the cache's
      i1=$(introspections)
      (( i1 - i0 == 1 )) \
        || die "$id: after valid request #$n the provider had $((i1 - i0)) introspection request(s), not 1"
    fi
  done
  # the second INFO counts the first
  r1=$(( $(redis_cmds) - NEED_REDIS ))
  if [[ $id == v-*rl* ]]; then
    auth=()
    [[ -n $tok ]] && auth=(-H "$(auth_header "${GW_TOKEN[$id]}" "$tok")")
    curl -s --max-time 5 -o /dev/null -D "$RUN/logs/curl.headers" "${auth[@]}" "$url" || true
    grep -qi '^RateLimit: ' "$RUN/logs/curl.headers" \
      || die "$id: no RateLimit header in the response (see $RUN/logs/curl.headers)"
    if [[ $id == *breaker ]]; then
      [[ $r1 == "$r0" ]] || die "$id: Redis saw $((r1 - r0)) commands with its breaker open"
    else
      (( r1 - r0 >= 2 )) || die "$id: Redis saw no command for two requests"
    fi
    log "  $id: RateLimit header present, Redis saw $((r1 - r0)) commands"
    # the three requests so far are counted, unless collection is off
    m=$(curl -s --max-time 5 "${url}vantage/metrics" \
        | awk '/^vantage_http_requests_total\{location="\/",class="2xx"\} / { print $2 }')
    if [[ $id == *nometrics ]]; then
      [[ -z $m || $m == 0 ]] || die "$id: metrics counted $m requests with collection off"
    else
      [[ $m == 3 ]] || die "$id: vantage_metrics counted '$m' 2xx requests at /, not 3"
    fi
    log "  $id: vantage_metrics counted ${m:-none}"
  else
    [[ $r1 == "$r0" ]] || die "$id: Redis saw $((r1 - r0)) commands from a config without limits"
  fi
  if [[ $id == v-* && ${GW_TOKEN[$id]} != none ]]; then
    a=${GW_TOKEN[$id]}
    if [[ $a == rs256 ]]; then other=es256; else other=rs256; fi
    for bad in "$a-badsig" none garbage "$a-expired" "$other" hs256; do
      btok=""; [[ $bad == none ]] || btok=$(token_for "$bad")
      code=$(http_code "$url" "$btok" "$a")
      [[ $code == 401 ]] || die "$id: token '$bad' got $code, expected 401"
    done
    if [[ $id == v-introspect ]]; then
      log "  $id ok: 200 for the active token (twice, introspected once), 401 for an unknown token, no token, garbage, an expired one, $other, hs256"
    else
      log "  $id ok: 200 for the valid token (twice), 401 for a wrong signature, no token, garbage, expired, $other, hs256"
    fi
  else
    log "  $id ok: 200"
  fi
done

# ---------------------------------------------------------------- measuring
run_wrk() { # id seconds outfile
  local tok hdr=()
  tok=$(token_for "${GW_TOKEN[$1]}")
  [[ -n $tok ]] && hdr=(-H "$(auth_header "${GW_TOKEN[$1]}" "$tok")")
  wrk_port "${GW_PORT[$1]}" "$2" "$3" "${hdr[@]}"
}

# (cpu$GW_CPU busy well above gw CPU % is foreign load)
wait_idle

RAW=$OUT/raw.tsv
printf 'round\tid\trps\tp50_us\tp99_us\trequests\tnon2xx\tsock_err\tgw_cpu_us\tgw_cpu_pct\tredis_cpu_us\tcpu%s_busy_pct\tcpu%s_busy_pct\n' \
  "$GW_CPU" "$LOAD_CPU" >"$RAW"

log "measuring: ${#IDS[@]} configs x $ROUNDS rounds x (${WARMUP}s warm-up + ${DURATION}s), wrk -t$THREADS -c$CONNS;" \
    "about $(( (PREWARM + ${#IDS[@]} * ROUNDS * (WARMUP + DURATION + 1)) / 60 + 1 )) min"
# The sanity checks have had the token introspected and cached (and the
# warm-up runs come after them): from here on the provider should see none.
INTRO0=0
if (( NEED_IDP )); then INTRO0=$(introspections); fi
(( PREWARM == 0 )) || run_wrk "${IDS[0]}" "$PREWARM" "$RUN/logs/wrk-prewarm.txt" || true
for ((r = 1; r <= ROUNDS; r++)); do
  for id in "${IDS[@]}"; do
    warm_up "$id" "$r"
    rc0=$(pid_ticks "$REDIS_PID")
    measure_run "$id" "$RUN/logs/wrk-$id-r$r.txt"
    rc1=$(pid_ticks "$REDIS_PID")
    redis_us=$(awk -v d=$((rc1 - rc0)) -v hz="$CLK_TCK" -v req="$req" \
      'BEGIN { printf "%.2f\n", d / hz * 1e6 / req }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$id" "$rps" "$p50" "$p99" \
      "$req" "$non2xx" "$sock" "$cpu_us" "$cpu_pct" "$redis_us" "$gb" "$lb" >>"$RAW"
    log "  round $r $(printf '%-16s %9.0f req/s  p50 %5dus  p99 %5dus  gw %5.1f%% %6.1fus/req  cpu%s %5.1f%%  errors %d/%d' \
      "$id" "$rps" "$p50" "$p99" "$cpu_pct" "$cpu_us" "$LOAD_CPU" "$lb" "$non2xx" "$sock")"
  done
done

if (( NEED_IDP )); then
  INTRO1=$(introspections)
  log "introspection requests at the provider: $((INTRO1 - INTRO0)) during the warm-ups and measured runs, $INTRO1 in all"
  (( INTRO1 == INTRO0 )) || log "WARNING: v-introspect's cache was not warm: the provider was asked $((INTRO1 - INTRO0)) time(s) while measuring"
fi

for id in "${IDS[@]}"; do
  [[ $id == *breaker ]] && continue    # its connection failures are the point
  warn_error_lines "$id"
done

# ---------------------------------------------------------------- summary
{
  meta_head "$(openssl version | awk '{print $1, $2}')"
  if (( NEED_MODULE )); then
    echo "module: $MODULE (sha256 $MODULE_SHA..., built $(date -u -r "$MODULE" '+%Y-%m-%d %H:%M UTC'))"
  fi
  if (( NEED_IDP )); then
    echo "worker: $WORKER_BIN (sha256 $WORKER_SHA..., built $(date -u -r "$WORKER_BIN" '+%Y-%m-%d %H:%M UTC'))"
  fi
  echo "layout: gateway (master + 1 worker) on cpu $GW_CPU; wrk -t$THREADS and backend nginx (1 worker) on cpu $LOAD_CPU"
  if (( NEED_IDP )); then
    echo "v-introspect: the provider emulator (tests/fakes/idp.py), vantage-worker and its redis-server on cpu $LOAD_CPU too"
    if (( INTRO1 == INTRO0 )); then warm="so every v-introspect request measured was a cache hit"
    else warm="**so the cache was not warm**"; fi
    echo "introspection requests at the provider: $((INTRO1 - INTRO0)) during the warm-ups and measured runs," \
         "$warm ($INTRO1 in all: one for the valid token, the rest for the sanity checks' refused tokens)"
  fi
  echo "load: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, ${WARMUP}s warm-up before each run, $ROUNDS interleaved round(s); shared pieces: $PIECES"
} >"$OUT/meta.txt"

PYTHONPATH=$ROOT/lua-free-scripts $PY -B - "$RAW" "$OUT/meta.txt" "$OUT/results.md" <<'PYEOF'
import sys
from bench_report import Runs, med

raw, meta, outp = sys.argv[1:4]
R = Runs(raw, meta)
order, by, base, busy, out = R.order, R.by, R.base, R.busy, R.out

out.append("| config | req/s (median) | min–max | vs a-plain | p50 ms | p99 ms | "
           "gw CPU µs/req | added gw CPU µs/req vs a-plain | "
           "added p99 ms | redis CPU µs/req | gw CPU % | "
           + R.busy_header() + " | errors |")
out.append("|" + "---|" * (12 + len(busy)))
for cid in order:
    rs = by[cid]
    head, errs = R.row_head(cid)
    paired = [r for r in rs if r["round"] in base]
    added = [float(r["gw_cpu_us"]) - float(base[r["round"]]["gw_cpu_us"])
             for r in paired]
    p99add = [(int(r["p99_us"]) - int(base[r["round"]]["p99_us"])) / 1000
              for r in paired]
    out.append(
        head
        + ((f"{med(added):+.1f}" if cid != "a-plain" else "0")
           if added else "n/a") + " | "
        + ((f"{med(p99add):+.2f}" if cid != "a-plain" else "0")
           if p99add else "n/a") + " | "
        f"{med(float(r['redis_cpu_us']) for r in rs):.2f} | "
        f"{med(float(r['gw_cpu_pct']) for r in rs):.0f} | "
        + R.busy_cells(rs) + errs)
out.append("")
out.append(
    "Medians over the rounds. vs a-plain and added gw CPU are taken per "
    "round against the a-plain run of the same round, then the median. "
    "gw CPU µs/req = gateway utime+stime (master + worker) over the "
    "measured window / requests completed; redis CPU µs/req the same for "
    "redis-server. a-plain gets no token; the "
    "vantage configs get the same valid token on every request (so the "
    "cache configs, v-rs256-cache and v-introspect, are all hits after the "
    "first). errors = non-2xx/3xx "
    "responses + socket errors, all rounds. cpuN busy % is the whole core, "
    "whoever used it.")
pair = ("v-rs256-cache-rl1", "v-rs256-cache-rl1-nometrics")
if all(p in by for p in pair):
    off = {r["round"]: float(r["gw_cpu_us"]) for r in by[pair[1]]}
    diff = [float(r["gw_cpu_us"]) - off[r["round"]]
            for r in by[pair[0]] if r["round"] in off]
    out.append("")
    out.append(
        "metrics overhead (%s minus %s, per round, median of %d): "
        "%+.2f µs of gateway CPU per request (rounds: %s)"
        % (pair[0], pair[1], len(diff), med(diff),
           ", ".join("%+.2f" % d for d in diff)))
R.write(outp)
PYEOF
log "results: $OUT/results.md; per run: $RAW; wrk outputs and logs: $RUN"
