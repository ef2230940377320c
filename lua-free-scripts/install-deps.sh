#!/usr/bin/env bash
# install-deps.sh -- install the Debian packages Vantage builds, tests and
# runs with; only what is missing, and silently when nothing is.
#
#   lua-free-scripts/install-deps.sh          everything (build, test, run)
#   VANTAGE_DEPS_QUIET=0 ...                  say what is already there too
set -euo pipefail

packages=(
    # build: the module against Debian's nginx, the worker, the unit tests
    build-essential clang nginx nginx-dev libpcre2-dev zlib1g-dev
    libssl-dev openssl libjwt-dev libjansson-dev libhiredis-dev
    libcurl4-openssl-dev libevent-dev libcmocka-dev libxml2-dev
    # test and run: real servers and Debian's Python with its packages
    redis-server curl wrk valgrind procps
    # the jobs benchmark's load: h2load POSTs a body without a Lua script
    nghttp2-client
    python3 python3-pytest python3-jwt python3-cryptography python3-redis
    python3-httpx python3-h2
    # an independent E.164 implementation for the mapping engine's phones
    python3-phonenumbers
    # the dashboard test: a real browser, headless, driven by Selenium
    chromium chromium-driver python3-selenium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    [ "${VANTAGE_DEPS_QUIET:-1}" = 1 ] || echo "install-deps: nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
else
    sudo=
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The nginx package starts a system nginx on port 80 where an init system
# runs; policy-rc.d keeps package installs from starting services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
    $sudo chmod +x $policy
    created_policy=1
fi
trap '[ $created_policy = 1 ] && $sudo rm -f $policy' EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
