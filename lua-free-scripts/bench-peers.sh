#!/usr/bin/env bash
# bench-peers.sh -- ngx_vantage_module beside the Lua and njs peers, in the
# same rounds, by ../shared/bench/run-peers.sh (its method and its report).
#
#   lua-free-scripts/bench-peers.sh            a-plain, the Lua HS256 + Redis
#                                              bucket and Lua bucket peers, and
#                                              conf/bench/*.conf.in
#   ONLY="" lua-free-scripts/bench-peers.sh    every peer as well (about 10 min)
#
# The configs in conf/bench/ are rendered into build/bench-peers/ with the
# absolute path of a copy of the built module; run-peers.sh replaces its own
# placeholders (@GW_PORT@, @REDIS_PORT@, @HS256_SECRET_FILE@, ...) and sends
# the HS256 token (VANTAGE_TOKEN=hs256).  Other settings of run-peers.sh
# (ROUNDS, DURATION, ...) pass through.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_SCRIPT=${PEERS_SCRIPT:-/work/shared/bench/run-peers.sh}
MODULE=${MODULE:-$ROOT/build/ngx_vantage_module.so}
OUT=$ROOT/build/bench-peers

[[ -f $PEERS_SCRIPT ]] || { echo "bench-peers: $PEERS_SCRIPT not found" >&2; exit 1; }
[[ -f $MODULE ]] || { echo "bench-peers: $MODULE not found: make module" >&2; exit 1; }

mkdir -p "$OUT"
cp "$MODULE" "$OUT/ngx_vantage_module.so.new"
mv -f "$OUT/ngx_vantage_module.so.new" "$OUT/ngx_vantage_module.so"

confs=()
for f in "$ROOT"/conf/bench/*.conf.in; do
    c=$OUT/$(basename "$f" .in)
    sed "s#@VANTAGE_MODULE@#$OUT/ngx_vantage_module.so#g" "$f" >"$c"
    confs+=("$c")
done

export ONLY=${ONLY-a-plain c-lua-hs256-bucket e-lua-bucket}
export VANTAGE_TOKEN=${VANTAGE_TOKEN:-hs256}
export VANTAGE_CONF
VANTAGE_CONF=$(IFS=,; echo "${confs[*]}")
exec bash "$PEERS_SCRIPT"
