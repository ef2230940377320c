#!/usr/bin/env bash
# run-demo.sh -- the demo `make run` starts: Debian's nginx with the module
# in front of a stand-in advisor app, the Redis its rate limits and jobs
# share, vantage-worker on its Unix socket running the jobs nginx hands
# over, a stand-in vendor the jobs are delivered to, and an identity
# provider emulator (tests/fakes/idp.py) standing in for Okta, on
# 127.0.0.1, until Ctrl-C.
#
#   make run                                  builds first, then runs this
#   PORT=9080 BACKEND_PORT=9081 lua-free-scripts/run-demo.sh
#
# Everything lives under run/demo in the repository (VANTAGE_DEMO_DIR
# overrides): an RS256 key pair made with openssl (the private key never
# leaves that directory), the rendered nginx.conf and worker.conf, logs and
# pid file; secrets/ (0700) holds the identity provider's client secret
# and an API key, both made afresh at each start.  It mints a demo token
# (exp 1 hour) with Debian's Python and PyJWT, checks that the gateway
# accepts it and refuses a tampered one, that nginx reaches the worker,
# and that /advisor/ takes the emulator's tokens, an opaque token and an
# API key, prints the curl commands and the integration health
# dashboard's URL with an admin token for its Replay buttons, and waits,
# sending a little traffic in the background (jobs to every vendor, a few
# of them failing, and gateway requests) so that the dashboard moves.
# Ctrl-C (or SIGTERM) stops the traffic, nginx gracefully (`nginx -s
# quit`), then the worker (a drain), the identity provider, the vendor and
# Redis, and the script exits 0.
#
# Environment: PORT (8080), BACKEND_PORT (8081), TARGET_PORT (8082, the
# stand-in vendor), REDIS_PORT (8379), IDP_PORT (8443, the identity
# provider), NGINX (/usr/sbin/nginx), MODULE (build/ngx_vantage_module.so),
# VANTAGE_DEMO_DIR (run/demo).
#
# Services are started by start_<name> functions and recorded with
# demo_started, so stop_all stops them in reverse order; Redis, the worker
# and the vendor emulators join the same way when they exist.
# shellcheck disable=SC2317  # stop_*, on_exit, on_signal run from traps
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${VANTAGE_DEMO_DIR:-$ROOT/run/demo}
PORT=${PORT:-8080}
BACKEND_PORT=${BACKEND_PORT:-8081}
TARGET_PORT=${TARGET_PORT:-8082}
REDIS_PORT=${REDIS_PORT:-8379}
IDP_PORT=${IDP_PORT:-8443}
SF_PORT=${SF_PORT:-8444}
HS_PORT=${HS_PORT:-8445}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/ngx_vantage_module.so}
WORKER=${WORKER:-$ROOT/build/vantage-worker}
CTL=$ROOT/build/vantagectl
TARGET=$ROOT/tests/fakes/http_target.py
IDP=$ROOT/tests/fakes/idp.py
SF=$ROOT/tests/fakes/salesforce
HS=$ROOT/tests/fakes/hubspot
CONF_TEMPLATE=$ROOT/conf/vantage-demo.conf.in
PY=/usr/bin/python3

# the claims the demo config requires (conf/vantage-demo.conf.in)
DEMO_ISS=https://idp.vantage.demo/
DEMO_AUD=advisor-api
DEMO_SUB=advisor-1042
# the tenant claim: /jobs/ files jobs under it, and shows only its own
DEMO_TENANT=acme-wealth

# /advisor/ (issue 5): the identity provider's client, known to the
# emulator and to the worker's [idp demo]; the scope the location requires
# (conf/vantage-demo.conf.in) of a JWT, an introspected token and an API
# key alike
IDP_CLIENT=vantage-demo
ADVISOR_SCOPE=advisor.read
IDP_ISSUER=         # read from idp.py's first line
IDP_CA=
IDP_SECRET=         # the client secret's file, under secrets/
API_KEY_FILE=       # the API key's file, under secrets/
OPAQUE_TOKEN=       # an active opaque token, made at each start

# the vendor emulators (issue 6): what their first lines say
SF_INFO=            # tests/fakes/salesforce's JSON line
HS_INFO=            # tests/fakes/hubspot's JSON line
VAULT_KEY=          # the vault's master key file, under secrets/

STARTED=()          # "name:pid", in start order
STOPPING=0
NGINX_PID=


log() { printf 'run-demo: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }


port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }


check_prereqs() {
    local p
    [[ -x $NGINX ]] || die "$NGINX not found (lua-free-scripts/install-deps.sh)"
    [[ -f $MODULE ]] || die "$MODULE not found: build it with 'make module'"
    [[ -x $WORKER ]] || die "$WORKER not found: build it with 'make worker'"
    [[ -x $CTL ]] || die "$CTL not found: build it with 'make ctl'"
    [[ -f $TARGET ]] || die "$TARGET not found"
    [[ -f $IDP ]] || die "$IDP not found"
    [[ -f $CONF_TEMPLATE ]] || die "$CONF_TEMPLATE not found"
    command -v openssl >/dev/null || die "openssl not found"
    command -v curl >/dev/null || die "curl not found"
    command -v redis-server >/dev/null || die "redis-server not found (lua-free-scripts/install-deps.sh)"
    $PY -c 'import jwt, cryptography' 2>/dev/null \
        || die "$PY lacks PyJWT (apt-get install python3-jwt python3-cryptography)"
    [[ $PREFIX != *[[:space:]\;\#\'\"]* ]] \
        || die "demo directory \"$PREFIX\" has characters nginx.conf cannot take"
    for p in "$PORT" "$BACKEND_PORT" "$TARGET_PORT" "$REDIS_PORT" "$IDP_PORT" \
             "$SF_PORT" "$HS_PORT"; do
        port_open "$p" && die "127.0.0.1:$p is already in use (set PORT / BACKEND_PORT / TARGET_PORT / REDIS_PORT / IDP_PORT / SF_PORT / HS_PORT)"
    done
    return 0
}


# Stops an nginx left running by an earlier run of this script that was
# killed hard: only the pid in our pid file, and only if its command line
# still names our demo directory.
stop_leftovers() {
    local pid
    pid=$(cat "$PREFIX/redis/redis.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server
    then
        log "stopping redis-server (pid $pid) left over from an earlier run"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    fi
    [[ -f $PREFIX/nginx.pid ]] || return 0
    pid=$(cat "$PREFIX/nginx.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PREFIX"
    then
        log "stopping nginx (pid $pid) left over from an earlier run"
        kill -QUIT "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PREFIX/nginx.pid"
}


# make_keys: an RSA-2048 key pair for RS256, made once and kept; the private
# key is readable by its owner only and stays in the demo directory
make_keys() {
    local k=$PREFIX/keys
    mkdir -p "$k"
    chmod 700 "$k"
    if [[ ! -s $k/demo-private.pem || ! -s $k/demo-public.pem ]]; then
        log "generating an RSA-2048 key pair in $k"
        (umask 077 && openssl genpkey -algorithm RSA \
            -pkeyopt rsa_keygen_bits:2048 -out "$k/demo-private.pem" 2>/dev/null)
        openssl pkey -in "$k/demo-private.pem" -pubout -out "$k/demo-public.pem"
    fi
    chmod 600 "$k/demo-private.pem"
    chmod 644 "$k/demo-public.pem"
    # nginx's worker processes (user nobody) re-read the public key when it
    # changes, so they need to reach it
    chmod 711 "$k"
}


# make_secrets: secrets/ (0700) with the identity provider's client secret
# and an API key for /advisor/, both new at each start, so no secret is in
# the repository or outlives a run; the key file nginx reads holds only the
# key's hash (vantagectl apikey)
make_secrets() {
    local s=$PREFIX/secrets err
    mkdir -p "$s"
    chmod 700 "$s"
    IDP_SECRET=$s/idp-client-secret
    API_KEY_FILE=$s/advisor-api-key
    # hex: RFC 6749 2.3.1 form-encodes the secret inside Basic, so a "+"
    # or "/" would not survive a plain `curl -u`
    (umask 077 && openssl rand -hex 32 >"$IDP_SECRET")
    chmod 600 "$IDP_SECRET"
    rm -f "$PREFIX/api-keys.json"
    # the key on stdout, into its file; stderr says where it went
    err=$( (umask 077 && "$CTL" apikey create --file "$PREFIX/api-keys.json" \
        --id demo-advisor --tenant "$DEMO_TENANT" --scope "$ADVISOR_SCOPE" \
        >"$API_KEY_FILE") 2>&1 ) || die "vantagectl apikey create: $err"
    OPAQUE_TOKEN=opaque-$(openssl rand -hex 16)
}


render_conf() {
    mkdir -p "$PREFIX/tmp"
    # worker processes run as nobody when nginx starts as root
    chmod 1777 "$PREFIX/tmp"
    # nginx runs a copy of the module: a rebuild rewrites build/'s file in
    # place, which must not happen under a running nginx (SIGBUS); the new
    # file is renamed over the old one so a leftover keeps its own
    cp "$MODULE" "$PREFIX/ngx_vantage_module.so.new"
    mv -f "$PREFIX/ngx_vantage_module.so.new" "$PREFIX/ngx_vantage_module.so"
    # the dashboard (README, Dashboard) served from a copy, as the module
    # is: nginx's workers (user nobody) reach the demo directory
    rm -rf "$PREFIX/dashboard"
    cp -R "$ROOT/dashboard" "$PREFIX/dashboard"
    chmod -R a+rX "$PREFIX/dashboard"
    sed -e "s#@PREFIX@#$PREFIX#g" \
        -e "s#@MODULE@#$PREFIX/ngx_vantage_module.so#g" \
        -e "s#@PORT@#$PORT#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
        -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@IDP_ISSUER@#$IDP_ISSUER#g" \
        -e "s#@HS_APP_ID@#$(json_get "$HS_INFO" private_app.app_id)#g" \
        -e "s#@DEMO_TENANT@#$DEMO_TENANT#g" \
        "$CONF_TEMPLATE" >"$PREFIX/nginx.conf"
}


nginx_cmd() { "$NGINX" -p "$PREFIX/" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log" "$@"; }


# demo_started name pid: records a service for stop_all
demo_started() { STARTED+=("$1:$2"); }


wait_gone() { # pid seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}


# wait_up name pid log check...: waits up to 10 s for the command "check"
# to succeed while the process lives; on failure shows its log and dies
wait_up() {
    local i name=$1 pid=$2 logf=$3
    shift 3
    for ((i = 0; i < 100; i++)); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || { tail -5 "$logf" >&2;
                                        die "$name exited during startup"; }
        sleep 0.1
    done
    die "$name did not come up within 10s (see $logf)"
}


nginx_up() { port_open "$PORT" && port_open "$BACKEND_PORT"; }


start_nginx() {
    local pid
    if ! nginx_cmd -t -q 2>"$PREFIX/nginx-t.log"; then
        cat "$PREFIX/nginx-t.log" >&2
        die "nginx -t failed for $PREFIX/nginx.conf"
    fi
    # its own session, so that Ctrl-C reaches this script only and nginx
    # gets the graceful quit from stop_nginx rather than a fast SIGINT
    setsid "$NGINX" -p "$PREFIX/" -c "$PREFIX/nginx.conf" \
        -e "$PREFIX/error.log" >>"$PREFIX/nginx.out" 2>&1 &
    pid=$!
    NGINX_PID=$pid
    demo_started nginx "$pid"
    wait_up nginx "$pid" "$PREFIX/error.log" nginx_up
    log "nginx (pid $pid) listening on 127.0.0.1:$PORT," \
        "advisor app on 127.0.0.1:$BACKEND_PORT"
}


stop_nginx() { # pid
    kill -0 "$1" 2>/dev/null || return 0
    nginx_cmd -s quit 2>/dev/null || kill -QUIT "$1" 2>/dev/null || true
    if ! wait_gone "$1" 10; then
        log "nginx (pid $1) still running 10s after quit; sending TERM"
        kill -TERM "$1" 2>/dev/null || true
        wait_gone "$1" 5 || kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
}


# start_redis: the Redis the rate limits share, with its append-only file
# in the demo directory, on 127.0.0.1 only
start_redis() {
    local pid d=$PREFIX/redis
    mkdir -p "$d"
    # own session, as nginx: Ctrl-C reaches this script alone, and Redis
    # stops last, after the worker has drained into it
    setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --dir "$d" --appendonly yes --appendfsync always --save '' --daemonize no \
        --pidfile "$d/redis.pid" --logfile "$d/redis.log" >/dev/null 2>&1 &
    pid=$!
    demo_started redis "$pid"
    wait_up redis-server "$pid" "$d/redis.log" port_open "$REDIS_PORT"
    log "redis-server (pid $pid) listening on 127.0.0.1:$REDIS_PORT"
}


# start_target: the stand-in vendor the worker delivers to, on 127.0.0.1;
# one JSON line per request it receives in run/demo/target.log
start_target() {
    local pid
    setsid $PY "$TARGET" --port "$TARGET_PORT" --log "$PREFIX/target.log" \
        >>"$PREFIX/target.out" 2>&1 &
    pid=$!
    demo_started target "$pid"
    wait_up http_target "$pid" "$PREFIX/target.out" port_open "$TARGET_PORT"
    log "stand-in vendor (pid $pid) on 127.0.0.1:$TARGET_PORT," \
        "logging deliveries to $PREFIX/target.log"
}


# start_idp: tests/fakes/idp.py over HTTPS on 127.0.0.1:IDP_PORT, its CA
# and certificate made afresh in run/demo/idp/; it knows the client
# IDP_CLIENT (for /introspect and /token) and the opaque token
# OPAQUE_TOKEN, and prints its issuer and ca_file as one JSON line
start_idp() {
    local pid line out=$PREFIX/idp.out
    # its first line names the opaque token: readable by this user only
    install -m 0600 /dev/null "$out"
    setsid $PY "$IDP" --port "$IDP_PORT" --dir "$PREFIX/idp" \
        --client "$IDP_CLIENT=$IDP_SECRET" \
        --token "$OPAQUE_TOKEN=advisor-2077:$ADVISOR_SCOPE" \
        >"$out" 2>&1 &
    pid=$!
    demo_started idp "$pid"
    wait_up idp.py "$pid" "$out" grep -q '^{' "$out"
    line=$(grep -m1 '^{' "$out")
    IDP_ISSUER=$($PY -c 'import json, sys; print(json.loads(sys.argv[1])["issuer"])' "$line")
    IDP_CA=$($PY -c 'import json, sys; print(json.loads(sys.argv[1])["ca_file"])' "$line")
    [[ $IDP_ISSUER == https://127.0.0.1:* && -s $IDP_CA ]] \
        || die "idp.py said \"$line\"; expected its issuer and ca_file"
    log "identity provider (pid $pid) at $IDP_ISSUER, CA $IDP_CA"
}


# json_get json path...: a member of a JSON line (a.b for nested ones)
json_get() {
    $PY -c 'import json, sys
o = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    o = o[k]
print(o)' "$@"
}


# start_salesforce: tests/fakes/salesforce over HTTPS on 127.0.0.1:SF_PORT,
# an org with a connected app whose JWT bearer key is in run/demo/salesforce/
start_salesforce() {
    local pid out=$PREFIX/salesforce.out
    : >"$out"
    # the Contact has the custom fields the HubSpot mapping writes
    # (conf/mappings/hubspot-contact-to-salesforce.json), the HubSpot id a
    # unique external id; change events come after 2 s of long poll
    # a daily allowance of 15000 API calls, 5200 used: the dashboard's
    # quota bar has something to show
    setsid $PY "$SF" --port "$SF_PORT" --dir "$PREFIX/salesforce" \
        --streaming-timeout 2 --daily-limit 15000 --used 5200 \
        --contact-field MobilePhone --contact-field MailingStreet \
        --contact-field MailingPostalCode --contact-field MailingCountry \
        --contact-field Status__c --contact-field DoNotCall \
        --contact-field Sync_Source__c \
        --contact-field HubSpot_Contact_Id__c:unique \
        >>"$out" 2>&1 &
    pid=$!
    demo_started salesforce "$pid"
    wait_up salesforce "$pid" "$out" grep -q '^{' "$out"
    SF_INFO=$(grep -m1 '^{' "$out")
    log "Salesforce emulator (pid $pid) at $(json_get "$SF_INFO" instance_url)," \
        "org $(json_get "$SF_INFO" org_id)"
}


# start_hubspot: tests/fakes/hubspot over HTTPS on 127.0.0.1:HS_PORT, one
# portal with a private app
start_hubspot() {
    local pid out=$PREFIX/hubspot.out
    : >"$out"
    # the contact properties the Salesforce mapping writes
    # (conf/mappings/salesforce-contact-to-hubspot.json), and the webhook
    # batches signed for nginx's /webhooks/hubspot
    setsid $PY "$HS" --port "$HS_PORT" --dir "$PREFIX/hubspot" \
        --webhook-url "http://127.0.0.1:$PORT/webhooks/hubspot" \
        --webhook-time-scale 0.01 \
        --property mobilephone --property address --property city \
        --property state --property zip --property country \
        --property date_of_birth --property hs_lead_status \
        --property do_not_call --property ssn_masked --property sync_source \
        --property salesforcecontactid:unique \
        >>"$out" 2>&1 &
    pid=$!
    demo_started hubspot "$pid"
    wait_up hubspot "$pid" "$out" grep -q '^{' "$out"
    HS_INFO=$(grep -m1 '^{' "$out")
    log "HubSpot emulator (pid $pid) at $(json_get "$HS_INFO" base_url)," \
        "portal $(json_get "$HS_INFO" portal_id)"
}


# fill_vault: a master key (secrets/, 0600), and the vendor credentials
# sealed under it in Redis (vantagectl vault put): the Salesforce connected
# app's private key and the HubSpot private app's token; worker.conf names
# them, never holds them.  The key is made once and kept, as a deployment
# keeps it: Redis keeps its data across runs (AOF), and a vault sealed
# under an earlier run's key would refuse a new one ("wrong master key")
fill_vault() {
    local err
    VAULT_KEY=$PREFIX/secrets/vault.key
    if [ ! -s "$VAULT_KEY" ]; then
        (umask 077 && openssl rand 32 >"$VAULT_KEY")
    fi
    err=$("$CTL" --redis "127.0.0.1:$REDIS_PORT" vault put sf.demo.jwt-key \
        --replace --key-file "$VAULT_KEY" \
        --from-file "$(json_get "$SF_INFO" jwt_key_file)" 2>&1) \
        || die "vantagectl vault put sf.demo.jwt-key: $err"
    # the token goes to vantagectl on its standard input
    err=$(json_get "$HS_INFO" private_app.token | "$CTL" --redis \
        "127.0.0.1:$REDIS_PORT" vault put hs.demo.token --replace \
        --key-file "$VAULT_KEY" 2>&1) \
        || die "vantagectl vault put hs.demo.token: $err"
    log "vault: sf.demo.jwt-key and hs.demo.token sealed in Redis" \
        "(master key $VAULT_KEY)"
}


# write_worker_conf: run/demo/worker.conf (docs/WORKER.md), checked with
# --check before the worker starts with it
write_worker_conf() {
    local group=""
    # nginx started as root runs its workers as nobody:nogroup, so the
    # socket is given that group; started as another user, its workers are
    # that user, and the worker's own group (the default) is theirs
    if (( EUID == 0 )); then
        group="listen_group       = nogroup"
    fi
    cat >"$PREFIX/worker.conf" <<EOF
# worker.conf -- written by lua-free-scripts/run-demo.sh at each start
[worker]
listen             = unix:$PREFIX/worker.sock
listen_mode        = 0660
$group
redis              = 127.0.0.1:$REDIS_PORT
concurrency        = 8
shutdown_timeout   = 5s        # within run-demo.sh's 10 s before KILL

# /metrics, /healthz, /readyz, and /status, /metrics.json and /admin/
# for the dashboard, which nginx proxies at /vantage/worker/ (the socket
# gets listen_mode and listen_group too)
[metrics]
listen             = unix:$PREFIX/worker-metrics.sock
# POST /admin/dlq/<id>/replay, for the dashboard: nginx asks for an
# admin's token in front of it
admin              = on

# the stand-in vendor (tests/fakes/http_target.py)
[target demo-vendor]
max_concurrency    = 4

# POST /jobs/crm
[job crm.contact]
connector          = http
target             = demo-vendor
url                = http://127.0.0.1:$TARGET_PORT/crm/contacts
header             = X-Source: vantage-demo
timeout            = 5s
max_attempts       = 5
backoff_base       = 1s
backoff_cap        = 30s

# POST /webhooks/echo
[job webhook.echo]
connector          = http
target             = demo-vendor
url                = http://127.0.0.1:$TARGET_PORT/webhooks/echo
timeout            = 5s

# the identity provider emulator (tests/fakes/idp.py) of /advisor/: nginx
# names it by these URLs, the worker fetches its keys and introspects
[idp demo]
discovery          = $IDP_ISSUER
introspection_url  = $IDP_ISSUER/introspect
ca_file            = $IDP_CA
client_id          = $IDP_CLIENT
client_secret_file = $IDP_SECRET
auth               = client_secret_basic
timeout            = 2s        # below vantage_introspect_timeout (3s)

# the vendors (docs/CONNECTORS.md): the emulators stand in for a Salesforce
# org and a HubSpot portal; the secrets are vault names
[vault]
key_file           = $VAULT_KEY

[target salesforce-emulator]
max_concurrency    = 4
ca_file            = $(json_get "$SF_INFO" ca_file)

[connection demo-sf]
vendor             = salesforce
auth               = jwt_bearer
login_url          = $(json_get "$SF_INFO" login_url)
client_id          = $(json_get "$SF_INFO" consumer_key)
username           = $(json_get "$SF_INFO" username)
private_key        = sf.demo.jwt-key
api_version        = $(json_get "$SF_INFO" api_version)
target             = salesforce-emulator

[target hubspot-emulator]
max_concurrency    = 4
ca_file            = $(json_get "$HS_INFO" ca_file)

[connection demo-hs]
vendor             = hubspot
auth               = private_app
token              = hs.demo.token
base_url           = $(json_get "$HS_INFO" base_url)
target             = hubspot-emulator

# POST /integrations/salesforce/contacts: a Contact by its email, kept as
# the external id ExtId__c of the emulator's Contact
[job salesforce.contact.upsert]
connector          = salesforce
connection         = demo-sf
operation          = upsert
object             = Contact
external_id        = ExtId__c
timeout            = 10s
max_attempts       = 6

# POST /integrations/hubspot/contacts: a contact by its email
[job hubspot.contact.upsert]
connector          = hubspot
connection         = demo-hs
operation          = upsert
object             = contacts
id_property        = email
timeout            = 10s
max_attempts       = 6

# Two-way contact sync (docs/CONNECTORS.md).  Salesforce -> HubSpot: each
# ContactChangeEvent is a read of the Contact, its record mapped and
# upserted in HubSpot by email
[subscription contacts]
connection         = demo-sf
channel            = /data/ContactChangeEvent
job                = sync.salesforce.contact.read
tenant             = $DEMO_TENANT
replay             = latest

[job sync.salesforce.contact.read]
connector          = salesforce
connection         = demo-sf
operation          = read
object             = Contact
then               = sync.hubspot.contact.upsert
timeout            = 10s

[job sync.hubspot.contact.upsert]
connector          = hubspot
connection         = demo-hs
operation          = upsert
object             = contacts
id_property        = email
mapping            = $ROOT/conf/mappings/salesforce-contact-to-hubspot.json
timeout            = 10s

# HubSpot -> Salesforce: each webhook event nginx takes at /webhooks/hubspot
# is a read of the contact, its record mapped and upserted in Salesforce by
# the HubSpot id
[job sync.hubspot.contact.read]
connector          = hubspot
connection         = demo-hs
operation          = read
object             = contacts
then               = sync.salesforce.contact.upsert
timeout            = 10s

[job sync.salesforce.contact.upsert]
connector          = salesforce
connection         = demo-sf
operation          = upsert
object             = Contact
external_id        = HubSpot_Contact_Id__c
mapping            = $ROOT/conf/mappings/hubspot-contact-to-salesforce.json
timeout            = 10s
EOF
    "$WORKER" --check "$PREFIX/worker.conf" 2>"$PREFIX/worker-check.log" || {
        cat "$PREFIX/worker-check.log" >&2
        die "vantage-worker --check refused $PREFIX/worker.conf"
    }
}


# start_worker: vantage-worker with run/demo/worker.conf, on
# run/demo/worker.sock, keeping its jobs in the demo's Redis and
# delivering them; its JSON log lines go to run/demo/worker.log
start_worker() {
    local pid sock=$PREFIX/worker.sock
    write_worker_conf
    # own session: it drains on stop_all's TERM, while Redis is still up
    setsid "$WORKER" -c "$PREFIX/worker.conf" >>"$PREFIX/worker.log" 2>&1 &
    pid=$!
    demo_started worker "$pid"
    wait_worker_ready "$pid" "$sock"
    log "vantage-worker (pid $pid) serving $sock ($(worker_listening))"
}


# wait_worker_ready pid socket: waits up to 10 s for PING to answer 200,
# which the worker sends once its queue can take jobs (docs/PROTOCOL.md);
# on failure shows PING's last answer and the log's tail, and dies
wait_worker_ready() {
    local got answer="none (the socket took no PING)"
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        got=$(worker_ping "$2") && return 0
        [[ -n $got ]] && answer=$got
        kill -0 "$1" 2>/dev/null || { tail -5 "$PREFIX/worker.log" >&2;
                                      die "vantage-worker exited during startup"; }
        sleep 0.1
    done
    tail -20 "$PREFIX/worker.log" >&2
    die "vantage-worker not ready within 10s; PING's last answer: $answer (see $PREFIX/worker.log)"
}


# worker_listening: the socket's mode and group, as the worker logged them
worker_listening() {
    $PY - "$PREFIX/worker.log" <<'EOF' 2>/dev/null || echo "see $PREFIX/worker.log"
import json, sys
m = "?"
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if isinstance(o, dict) and o.get("msg") == "listening":
        m = "mode %s, group %s" % (o.get("mode"), o.get("group"))
print(m)
EOF
}


# worker_ping socket: PING (lua-free-scripts/worker-ping); exits 0 on
# STATUS 200, else 1 after printing what came back ("503 the worker is not
# ready: ..."; nothing when no reply came)
worker_ping() {
    $PY "$ROOT/lua-free-scripts/worker-ping" "$1" 2>/dev/null
}


# The vendor emulators (start_salesforce, start_hubspot) are stopped by
# stop_all's TERM, as the stand-in vendor is.


stop_all() {
    local i name pid
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        name=${STARTED[$i]%%:*}
        pid=${STARTED[$i]#*:}
        if declare -F "stop_$name" >/dev/null; then
            "stop_$name" "$pid"
        else
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    done
    STARTED=()
}


on_exit() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop_all
    exit "$rc"
}


on_signal() {
    (( STOPPING )) && return
    STOPPING=1
    log "stopping"
    stop_all
    exit 0
}


# mint_token kind: prints a token signed with the demo private key;
# kind is "valid", "tampered" (the payload's sub changed after signing),
# or "admin" (the scope vantage:admin the dashboard's Replay needs)
mint_token() {
    $PY - "$PREFIX/keys/demo-private.pem" "$1" "$DEMO_ISS" "$DEMO_AUD" \
        "$DEMO_SUB" "$DEMO_TENANT" <<'EOF'
import base64, json, sys, time
import jwt

key_file, kind, iss, aud, sub, tenant = sys.argv[1:7]
now = int(time.time())
claims = {"iss": iss, "aud": aud, "sub": sub, "tenant": tenant,
          "name": "Demo Advisor", "iat": now, "exp": now + 3600}
if kind == "admin":
    claims.update(sub="demo-operator", name="Demo Operator",
                  scope="vantage:admin")
with open(key_file, "rb") as f:
    token = jwt.encode(claims, f.read(), algorithm="RS256")
if kind == "tampered":
    header, _, sig = token.split(".")
    claims["sub"] = "advisor-9999"
    payload = base64.urlsafe_b64encode(
        json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
    token = ".".join([header, payload.decode(), sig])
print(token)
EOF
}


http_status() { # url [token]
    local auth=()
    [[ -n ${2:-} ]] && auth=(-H "Authorization: Bearer $2")
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${auth[@]}" "$1" || true
}


# self_check: the demo shows what it claims, or says so
self_check() {
    local url=$1 good=$2 bad=$3 s ok=1 h
    s=$(http_status "$url" "$good");  [[ $s == 200 ]] || { log "check: valid token got $s, expected 200"; ok=0; }
    s=$(http_status "$url" "$bad");   [[ $s == 401 ]] || { log "check: tampered token got $s, expected 401"; ok=0; }
    s=$(http_status "$url");          [[ $s == 401 ]] || { log "check: no token got $s, expected 401"; ok=0; }
    h=$(curl -s -D - -o /dev/null --max-time 5 -H "Authorization: Bearer $good" "$url" \
        | tr -d '\r' | grep -i '^RateLimit:' || true)
    [[ -n $h ]] || { log "check: no RateLimit header on an accepted request"; ok=0; }
    (( ok )) || die "the gateway does not behave as the demo expects (see $PREFIX/error.log)"
    log "checked: valid token 200 with \"$h\", tampered token 401, no token 401"
}


# jobs_check: nginx reaches the worker through the socket (its permissions
# included) without dispatching anything: a well-formed id that no job has
# is the worker's 404; an unreachable worker would be a 503
jobs_check() {
    local s
    s=$(http_status "http://127.0.0.1:$PORT/jobs/00000000000000000000000000000000" "$1")
    [[ $s == 404 ]] || die "GET /jobs/<id> got $s, expected the worker's 404 (see $PREFIX/error.log and $PREFIX/worker.log)"
    log "checked: nginx reaches vantage-worker (GET /jobs/<unknown id> 404)"
}


# idp_token: an access token from the emulator's /token (client
# credentials, with the scope /advisor/ requires); the secret reaches curl
# on its standard input, not on a command line
idp_token() {
    curl -s --max-time 5 --cacert "$IDP_CA" -K - \
        -d grant_type=client_credentials -d "scope=$ADVISOR_SCOPE" \
        "$IDP_ISSUER/token" <<<"user = \"$IDP_CLIENT:$(cat "$IDP_SECRET")\"" \
        | $PY -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}


# tamper token: the token with its payload's sub changed after signing
tamper() {
    $PY - "$1" <<'EOF'
import base64, json, sys

header, payload, sig = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
claims["sub"] = "intruder"
payload = base64.urlsafe_b64encode(
    json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
print(".".join([header, payload.decode(), sig]))
EOF
}


# auth_answer url [header]: "<status> <X-Auth-Scheme or -> <number of
# WWW-Authenticate lines>"; the header goes to curl on its standard input
auth_answer() {
    local cfg=
    [[ -n ${2:-} ]] && cfg="header = \"$2\""
    curl -s -D - -o /dev/null --max-time 5 -K - "$1" <<<"$cfg" | tr -d '\r' \
        | awk 'NR == 1 { s = $2 }
               tolower($1) == "x-auth-scheme:" { a = $2 }
               tolower($1) == "www-authenticate:" { n++ }
               END { print s, (a == "" ? "-" : a), n + 0 }' || true
}


# advisor_check url token tampered: /advisor/ takes the emulator's JWT
# (verified with the keys the worker fetched), the opaque token (which the
# worker introspects) and the API key, and says which in X-Auth-Scheme; no
# credential and the tampered token get 401 with a Bearer and an ApiKey
# challenge
advisor_check() {
    local url=$1 at=$2 bad=$3 got ok=1 what want header
    while IFS='|' read -r what want header; do
        got=$(auth_answer "$url" "$header")
        [[ $got == "$want" ]] \
            || { log "check: /advisor/ with $what got \"$got\", expected \"$want\""; ok=0; }
    done <<EOF
the provider's token|200 jwt 0|Authorization: Bearer $at
the opaque token|200 introspect 0|Authorization: Bearer $OPAQUE_TOKEN
the API key|200 api_key 0|X-Api-Key: $(cat "$API_KEY_FILE")
no credential|401 - 2|
the tampered token|401 - 2|Authorization: Bearer $bad
EOF
    (( ok )) || die "/advisor/ does not behave as the demo expects (see $PREFIX/error.log and $PREFIX/worker.log)"
    log "checked: /advisor/ takes the provider's token (jwt), an opaque" \
        "token (introspect) and an API key; none and a tampered token 401"
}


# job_state id token: the job's status as GET /jobs/<id> says it
job_state() {
    curl -s --max-time 5 -H "Authorization: Bearer $2" \
        "http://127.0.0.1:$PORT/jobs/$1" \
        | $PY -c 'import json, sys; print(json.load(sys.stdin).get("status"))' \
        2>/dev/null || true
}


# connectors_check token: one contact through each connector, dispatched by
# nginx and written by the worker into the emulator within 15 s
connectors_check() {
    local path body id state i
    for path in salesforce hubspot; do
        if [[ $path == salesforce ]]; then
            body='{"ExtId__c":"demo.check@example.com","Email":"demo.check@example.com","FirstName":"Demo","LastName":"Check"}'
        else
            body='{"email":"demo.check@example.com","firstname":"Demo","lastname":"Check"}'
        fi
        id=$(curl -s --max-time 5 -X POST -H "Authorization: Bearer $1" \
            -H 'Content-Type: application/json' -d "$body" \
            "http://127.0.0.1:$PORT/integrations/$path/contacts" \
            | sed -n 's/.*"job_id":"\([0-9a-f]*\)".*/\1/p')
        [[ -n $id ]] || die "POST /integrations/$path/contacts took no job (see $PREFIX/error.log)"
        for ((i = 0; i < 150; i++)); do
            state=$(job_state "$id" "$1")
            [[ $state == succeeded || $state == dead ]] && break
            sleep 0.1
        done
        [[ $state == succeeded ]] \
            || die "the $path job $id is \"$state\", expected succeeded (see $PREFIX/worker.log)"
    done
    log "checked: a contact upserted in the Salesforce and the HubSpot" \
        "emulators through nginx and the worker's connectors"
}


# xref system id: the id the other system has for it, as the sync recorded
# it in Redis ({vq}:xref:<tenant>:<system>:<id>), or nothing
xref() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" hget \
        "{vq}:xref:$DEMO_TENANT:$1:$2" "$( [[ $1 == salesforce ]] && echo hubspot || echo salesforce)" \
        2>/dev/null || true
}


# ui_write url json: a user's write through an emulator's test hook (as in
# the vendor's own UI, not through Vantage); prints the record's id
ui_write() {
    curl -s --max-time 5 --cacert "$3" -X POST -d "$2" "$1" \
        | $PY -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}


# sync_check: a contact written in Salesforce by a user appears in HubSpot,
# and one written in HubSpot's UI appears in Salesforce, within 20 s each
sync_check() {
    local id other i
    id=$(ui_write "$(json_get "$SF_INFO" instance_url)/_test/ui/Contact" \
        '{"FirstName":"Ada","LastName":"Lovelace","Email":"ada.sync@example.com","Phone":"(415) 555-0100"}' \
        "$(json_get "$SF_INFO" ca_file)") || die "no Contact written in the Salesforce emulator"
    for ((i = 0; i < 200; i++)); do
        other=$(xref salesforce "$id"); [[ -n $other ]] && break; sleep 0.1
    done
    [[ -n $other ]] || die "the Salesforce Contact $id did not reach HubSpot (see $PREFIX/worker.log)"
    SYNC_SF=$id SYNC_SF_HS=$other
    id=$(ui_write "$(json_get "$HS_INFO" base_url)/_test/ui" \
        '{"properties":{"email":"grace.sync@example.com","firstname":"Grace","lastname":"Hopper"}}' \
        "$(json_get "$HS_INFO" ca_file)") || die "no contact written in the HubSpot emulator"
    for ((i = 0; i < 200; i++)); do
        other=$(xref hubspot "$id"); [[ -n $other ]] && break; sleep 0.1
    done
    [[ -n $other ]] || die "the HubSpot contact $id did not reach Salesforce (see $PREFIX/worker.log and $PREFIX/error.log)"
    log "checked: a Contact written in Salesforce ($SYNC_SF) is HubSpot's" \
        "$SYNC_SF_HS, a contact written in HubSpot ($id) is Salesforce's $other"
}


# dashboard_check admin-token: nginx serves the dashboard and the JSON it
# reads (the module's metrics, the worker's through its [metrics] socket),
# and the admin token reaches the worker's replay (a job id nobody has:
# its 404, where a refused token would be a 401 or 403)
dashboard_check() {
    local p s
    for p in dashboard/ metrics.json worker/status worker/metrics.json; do
        s=$(http_status "http://127.0.0.1:$PORT/vantage/$p")
        [[ $s == 200 ]] || die "GET /vantage/$p got $s, expected 200 (see $PREFIX/error.log and $PREFIX/worker.log)"
    done
    s=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
        -H "Authorization: Bearer $1" \
        "http://127.0.0.1:$PORT/vantage/worker/admin/dlq/00000000000000000000000000000000/replay" \
        || true)
    [[ $s == 404 ]] || die "the dashboard's replay with the admin token got $s, expected the worker's 404 (see $PREFIX/error.log)"
    # the probes: nginx's sees Redis, the worker and the keys answer
    for p in healthz readyz vantage/worker/healthz vantage/worker/readyz; do
        s=$(curl -s -o "$PREFIX/probe.out" -w '%{http_code}' \
            "http://127.0.0.1:$PORT/$p" || true)
        [[ $s == 200 ]] || die "/$p answered $s: $(cat "$PREFIX/probe.out")"
    done
    log "checked: the dashboard, its JSON endpoints, the admin replay and" \
        "the health probes answer through nginx"
}


# traffic: what makes the dashboard move, until stop_all's TERM.  Every
# 1.5 s a CRM job for the stand-in vendor and a request to /api/; every
# second round a Salesforce upsert, every third a HubSpot one, which the
# HubSpot emulator now and then is told to refuse: a 503 (retried) every
# 30th round, about 10% of HubSpot's calls, so that it turns degraded now
# and then, and a 400 (a dead letter, which the dashboard's Replay then
# delivers) every 80th; a request without a token every 4th, and a burst
# past /api/'s rate limit every 40th.  It mints a token of its own again
# every 30 minutes (they last an hour).
traffic() {
    local i=0 n tok="" minted=0 hs hs_ca
    local gw=http://127.0.0.1:$PORT
    set +e
    trap - EXIT
    trap 'exit 0' TERM INT HUP
    hs=$(json_get "$HS_INFO" base_url)
    hs_ca=$(json_get "$HS_INFO" ca_file)
    while :; do
        if [[ -z $tok ]] || (( SECONDS - minted > 1800 )); then
            tok=$(mint_token valid)
            minted=$SECONDS
        fi
        i=$((i + 1))
        n=$((i % 500))
        traffic_post "$tok" /jobs/crm \
            "{\"email\":\"client$n@example.com\",\"name\":\"Client $n\"}"
        if (( i % 2 == 0 )); then
            traffic_post "$tok" /integrations/salesforce/contacts \
                "{\"ExtId__c\":\"client$n@example.com\",\"Email\":\"client$n@example.com\",\"FirstName\":\"Client\",\"LastName\":\"No. $n\"}"
        fi
        if (( i % 3 == 0 )); then
            if (( i % 80 == 0 )); then
                hubspot_fail "$hs" "$hs_ca" 400
            elif (( i % 30 == 0 )); then
                hubspot_fail "$hs" "$hs_ca" 503
            fi
            traffic_post "$tok" /integrations/hubspot/contacts \
                "{\"email\":\"client$n@example.com\",\"firstname\":\"Client\",\"lastname\":\"No. $n\"}"
        fi
        http_status "$gw/api/accounts" "$tok" >/dev/null
        if (( i % 4 == 0 )); then
            http_status "$gw/api/accounts" >/dev/null
        fi
        if (( i % 40 == 0 )); then
            for n in $(seq 12); do
                http_status "$gw/api/accounts" "$tok" >/dev/null
            done
        fi
        sleep 1.5
    done
}


# traffic_post token path json: a job through nginx; one line in the log
traffic_post() {
    printf '%s POST %s %s\n' "$(date +%T)" "$2" "$(curl -s -o /dev/null \
        -w '%{http_code}' --max-time 5 -X POST -H "Authorization: Bearer $1" \
        -H 'Content-Type: application/json' -d "$3" \
        "http://127.0.0.1:$PORT$2" || true)"
}


# hubspot_fail base-url ca-file status: the emulator's next contacts call
# answers status (its /_test/fail hook)
hubspot_fail() {
    printf '%s HubSpot told to answer %s once\n' "$(date +%T)" "$3"
    curl -s -o /dev/null --max-time 5 --cacert "$2" -X POST \
        -d "{\"n\":1,\"status\":$3,\"path\":\"/crm/v3/objects/contacts\"}" \
        "$1/_test/fail" || true
}


start_traffic() {
    local pid
    traffic >>"$PREFIX/traffic.log" 2>&1 &
    pid=$!
    demo_started traffic "$pid"
    log "demo traffic (pid $pid) for the dashboard, logged to" \
        "$PREFIX/traffic.log"
}


print_usage() {
    local url=$1 good=$2 bad=$3 adv=$4 advbad=$5 admin=$6
    cat <<EOF

Vantage demo on http://127.0.0.1:$PORT/ (nginx + ngx_vantage_module, RS256)

Demo token (sub=$DEMO_SUB, iss=$DEMO_ISS, aud=$DEMO_AUD, expires in 1 hour):

$good

Accepted (200; the app sees the verified sub as X-Advisor-Id):

  curl -i -H 'Authorization: Bearer $good' $url

Refused (401, no token):

  curl -i $url

Refused (401, tampered: sub changed to advisor-9999 after signing):

  curl -i -H 'Authorization: Bearer $bad' $url

Rate limited per advisor through Redis (5 r/s, burst 10): the eleventh
request of a quick burst gets 429 with Retry-After; watch RateLimit fall:

  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' \\
      -H 'Authorization: Bearer $good' $url; done; echo

Jobs: nginx hands them to vantage-worker ($PREFIX/worker.sock), which
answers once each is durable in Redis, then delivers it to a stand-in
vendor on 127.0.0.1:$TARGET_PORT ($PREFIX/worker.conf). The commands
below use the demo token (tenant claim "$DEMO_TENANT") from a variable:

  TOKEN='$good'

Dispatch a CRM contact (202, the job's id as JSON, Location: /jobs/<id>),
keeping the id in \$id:

  id=\$(curl -si -X POST -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{"email":"jane.doe@example.com","name":"Jane Doe"}' \\
      http://127.0.0.1:$PORT/jobs/crm | tee /dev/stderr \\
      | sed -n 's/.*"job_id":"\([0-9a-f]*\)".*/\1/p'); echo "id=\$id"

Its status ("succeeded" a moment later; "queued" or "running" before):

  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$PORT/jobs/\$id

The same request twice with an Idempotency-Key (a new key each time you
paste this; Redis keeps keys for 24 hours, across runs of the demo): one
job; the second answer carries the same job_id, its status so far and
Idempotent-Replayed: true (a different body under the key gets 422):

  key=demo-\$(date +%s); for i in 1 2; do curl -si -X POST \\
      -H "Authorization: Bearer \$TOKEN" -H "Idempotency-Key: \$key" \\
      -H 'Content-Type: application/json' \\
      -d '{"email":"sam.lee@example.com","name":"Sam Lee"}' \\
      http://127.0.0.1:$PORT/jobs/crm; echo; sleep 1; done

The deliveries the vendor received, one JSON line each (the worker sends
Idempotency-Key: <job id> and the X-Correlation-ID nginx answered with):

  tail -n 3 $PREFIX/target.log

A webhook without a token (tenant "demo", 200 as senders expect); its job
is not the advisor's tenant's, so GET /jobs/<id> with the token is a 404:

  curl -si -X POST -H 'Content-Type: application/json' \\
      -d '{"event":"ping"}' http://127.0.0.1:$PORT/webhooks/echo

The jobs and the queue's health, read from Redis by the operator's tool:

  $CTL --redis 127.0.0.1:$REDIS_PORT jobs list
  $CTL --redis 127.0.0.1:$REDIS_PORT health

Identity provider: tests/fakes/idp.py stands in for Okta at
$IDP_ISSUER (discovery, /jwks, /token, /introspect); vantage-worker
fetches its keys and introspects opaque tokens ([idp demo] of
worker.conf), nginx never calls it. /advisor/ takes a JWT, an opaque
token or an API key, each with scope $ADVISOR_SCOPE, and says which in
X-Auth-Scheme. A token for the client $IDP_CLIENT (client credentials,
expires in 1 hour; the secret is read from its file), kept in \$AT:

  AT=\$(curl -s --cacert $IDP_CA \\
      -u $IDP_CLIENT:\$(cat $IDP_SECRET) \\
      -d grant_type=client_credentials -d scope=$ADVISOR_SCOPE \\
      $IDP_ISSUER/token \\
      | tee /dev/stderr | sed -n 's/.*"access_token": "\([^"]*\)".*/\1/p')

Accepted (200, X-Auth-Scheme: jwt; the app sees sub=$IDP_CLIENT):

  curl -i -H "Authorization: Bearer \$AT" $adv

An opaque token the worker introspects (200, X-Auth-Scheme: introspect;
it too expires in 1 hour):

  curl -i -H 'Authorization: Bearer $OPAQUE_TOKEN' $adv

An API key (200, X-Auth-Scheme: api_key):

  curl -i -H "X-Api-Key: \$(cat $API_KEY_FILE)" $adv

Refused (401, no credential: a Bearer and an ApiKey challenge):

  curl -i $adv

Refused (401, a token of the provider's with sub changed after signing):

  curl -i -H 'Authorization: Bearer $advbad' $adv

Vendors (docs/CONNECTORS.md): emulators of a Salesforce org at
$(json_get "$SF_INFO" instance_url) and a HubSpot portal at
$(json_get "$HS_INFO" base_url). The worker signs in to them with credentials
sealed in its vault (vantagectl vault list), caches the tokens sealed in
Redis, and writes what nginx hands it. A contact upserted in Salesforce by
its external id (201; the job's result names the new Contact's id):

  id=\$(curl -s -X POST -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{"ExtId__c":"ada@example.com","Email":"ada@example.com","FirstName":"Ada","LastName":"Lovelace"}' \\
      http://127.0.0.1:$PORT/integrations/salesforce/contacts \\
      | sed -n 's/.*"job_id":"\([0-9a-f]*\)".*/\1/p'); sleep 1
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$PORT/jobs/\$id

And in HubSpot by its email (batch upsert, one input):

  curl -s -X POST -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{"email":"ada@example.com","firstname":"Ada","lastname":"Lovelace"}' \\
      http://127.0.0.1:$PORT/integrations/hubspot/contacts

Two-way sync: a Contact a user writes in Salesforce (the emulator's
/_test/ui hook stands for Salesforce's UI) reaches HubSpot through its
change event, the worker's subscription and a mapped upsert; one written in
HubSpot's UI reaches Salesforce through HubSpot's signed webhook at nginx's
/webhooks/hubspot. Vantage's own writes do not come back. Try it:

  curl -s --cacert $(json_get "$SF_INFO" ca_file) -X POST \\
      -d '{"FirstName":"Alan","LastName":"Turing","Email":"alan@example.com"}' \\
      $(json_get "$SF_INFO" instance_url)/_test/ui/Contact
  curl -s --cacert $(json_get "$HS_INFO" ca_file) -X POST \\
      -d '{"properties":{"email":"mary@example.com","firstname":"Mary","lastname":"Jackson"}}' \\
      $(json_get "$HS_INFO" base_url)/_test/ui

Then the cross-reference the worker keeps, per tenant (Salesforce id <->
HubSpot id), and the jobs the sync ran:

  redis-cli -p $REDIS_PORT --scan --pattern '{vq}:xref:*'
  $CTL --redis 127.0.0.1:$REDIS_PORT jobs list

The portal's contacts, read with the private app's token from the vault
(it goes to curl on its standard input, not on a command line):

  $CTL --redis 127.0.0.1:$REDIS_PORT vault get hs.demo.token \\
      --key-file $VAULT_KEY | sed 's/^/header = "Authorization: Bearer /; s/\$/"/' \\
      | curl -s -K - --cacert $(json_get "$HS_INFO" ca_file) \\
      "$(json_get "$HS_INFO" base_url)/crm/v3/objects/contacts?properties=email,firstname"

Integration health dashboard (README, Dashboard): every connector's
status, throughput, errors, latency and vendor quota, the queues, the
gateway's requests, recent failures and dead letters, refreshed every 2 s
and kept moving by background traffic (jobs to every vendor, now and then
one that HubSpot refuses, which becomes a dead letter; see traffic.log):

  http://127.0.0.1:$PORT/vantage/dashboard/

Its Replay buttons call the worker's admin endpoint through nginx, which
asks for a token with the scope vantage:admin: paste this one into the
page's "Admin token" field (it stays in that browser tab; expires in 1
hour):

  $admin

Metrics for Prometheus, from nginx and from the worker (through nginx),
and the probes a Kubernetes deployment would use:

  curl -s http://127.0.0.1:$PORT/vantage/metrics
  curl -s http://127.0.0.1:$PORT/vantage/worker/metrics
  curl -s http://127.0.0.1:$PORT/healthz http://127.0.0.1:$PORT/readyz
  curl -s http://127.0.0.1:$PORT/vantage/worker/readyz

Each request's outcome, rate-limit decision, job id and correlation id,
one JSON line each: tail -f $PREFIX/access.json

Files: $PREFIX (nginx.conf, worker.conf, error.log, access.log,
access.json, worker.log, target.log, traffic.log; keys/ holds the demo
private key,
secrets/ the identity provider's client secret and the API key).
Error log: tail -f $PREFIX/error.log

Ctrl-C to stop.
EOF
}


main() {
    local url good bad adv at advbad admin
    check_prereqs
    mkdir -p "$PREFIX"
    stop_leftovers

    trap on_exit EXIT
    trap on_signal INT TERM HUP

    make_keys
    make_secrets
    start_redis
    start_target
    start_idp
    start_salesforce
    start_hubspot
    fill_vault
    render_conf
    start_worker
    start_nginx

    url=http://127.0.0.1:$PORT/api/accounts
    good=$(mint_token valid)
    bad=$(mint_token tampered)
    self_check "$url" "$good" "$bad"
    jobs_check "$good"
    adv=http://127.0.0.1:$PORT/advisor/clients
    at=$(idp_token) || die "no token from $IDP_ISSUER/token (see $PREFIX/idp.out)"
    advbad=$(tamper "$at")
    advisor_check "$adv" "$at" "$advbad"
    connectors_check "$good"
    sync_check
    admin=$(mint_token admin)
    dashboard_check "$admin"
    start_traffic
    print_usage "$url" "$good" "$bad" "$adv" "$advbad" "$admin"

    # wait returns early when a trapped signal arrives; nginx exiting on
    # its own is an error
    wait "$NGINX_PID" || true
    (( STOPPING )) && exit 0
    log "nginx exited unexpectedly (see $PREFIX/error.log)"
    STARTED=()
    exit 1
}


main "$@"
