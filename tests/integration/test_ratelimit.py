"""test_ratelimit.py -- the distributed rate limiter (vantage_rate_limit)
against a real redis-server: exact headers and bodies, refill timing, cost,
several limits, JWT-keyed limits, internal redirects and subrequests, dry
run, header modes, the state kept in Redis (checked against a key name and
a GCRA computed here, independently of the module) and configuration
errors.

Every test makes its own key value (a uuid), so that the tests share one
nginx and one Redis without seeing each other's buckets.  Limits that are
not about timing use 1r/m, so that nothing refills while a test runs."""

import hashlib
import random
import re
import time
import uuid

import pytest

import vantage_harness as vh
from jwt_asserts import assert_invalid, assert_missing
from vantage_harness import RESPONDER_SERVER, respond
from vantage_tokens import claims, mint, now


# --------------------------------------------------------------------------
# an independent model: key names and GCRA, from the definitions

KEY_PREFIX = "vantage:rl:{"

US = 1000000
PER = {"s": US, "m": 60 * US, "h": 3600 * US}


def interval_of(rate):
    """"10r/s" -> microseconds between units, rounded up."""
    m = re.fullmatch(r"(\d+)r/([smh])", rate)
    n, period = int(m.group(1)), PER[m.group(2)]
    return -(-period // n)


def key_hash(value):
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def redis_key(value, name, rate, burst):
    return "%s%s}:%s:%d:%d" % (KEY_PREFIX, key_hash(value), name,
                               interval_of(rate), burst)


class Gcra:
    """The bucket as the spec defines it: admitted iff x + c*T <= burst*T
    with x = max(TAT - now, 0); then TAT = now + x + c*T."""

    def __init__(self, rate, burst, cost=1):
        self.T = interval_of(rate)
        self.burst = burst
        self.tau = burst * self.T
        self.cost = cost

    def decide(self, tat, now_us):
        """-> (admitted, new TAT, remaining, reset in us)"""
        x = max(tat - now_us, 0)
        level = x + self.cost * self.T
        if level <= self.tau:
            return True, now_us + level, (self.tau - level) // self.T, level
        level = min(x, self.tau)
        return False, now_us + level, (self.tau - level) // self.T, level


def now_us():
    # CLOCK_REALTIME, the clock the module's TAT is kept in
    return time.time_ns() // 1000


def new_key():
    return uuid.uuid4().hex


def policy(*limits):
    """policy(("default", 3, 1), ...) -> the RateLimit-Policy value"""
    return ", ".join('"%s";q=%d;w=%d' % l for l in limits)


def state(*limits):
    """state(("default", 2, 1), ...) -> the RateLimit value"""
    return ", ".join('"%s";r=%d;t=%d' % l for l in limits)


RL_HEADERS = ("RateLimit", "RateLimit-Policy", "X-RateLimit-Limit",
              "X-RateLimit-Remaining", "X-RateLimit-Reset")


def assert_rl(r, pol, st, status=200, body=None):
    """status, body, and exactly one RateLimit-Policy and RateLimit header
    with these values (and no legacy ones)."""
    assert r.status == status, r
    if body is not None:
        assert r.body == body, r
    assert r.headers.get_list("RateLimit-Policy") == [pol], r
    assert r.headers.get_list("RateLimit") == [st], r
    for h in RL_HEADERS[2:]:
        assert h not in r.headers, r


def refusal_body(name, retry):
    return ('{"error":"rate_limited","error_description":"rate limit '
            '\\"%s\\" exceeded, retry in %d s"}\n' % (name, retry))


def assert_refused(r, name, retry, status=429):
    """The module's own refusal: status, JSON body (byte for byte) and
    Retry-After."""
    assert r.status == status, r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.content == refusal_body(name, retry).encode(), r
    assert r.json == {"error": "rate_limited",
                      "error_description": 'rate limit "%s" exceeded, '
                                           'retry in %d s' % (name, retry)}
    assert r.headers.get_list("Retry-After") == [str(retry)], r


def assert_no_rl_headers(r):
    for h in RL_HEADERS:
        assert h not in r.headers, r


def fast(seq, budget, what, attempts=3):
    """Runs seq() (which uses a fresh key each time) until one run took
    less than budget seconds from its first request to its last answer;
    returns that run's result.  For sequences whose outcome depends on the
    requests being closer together than a 10r/s interval."""
    took = []
    for _ in range(attempts):
        t0 = time.monotonic()
        out = seq()
        took.append(time.monotonic() - t0)
        if took[-1] < budget:
            return out
    pytest.fail("%s: no run within %.0f ms (took %s ms)" % (
        what, budget * 1000, ", ".join("%.0f" % (t * 1000) for t in took)))


# --------------------------------------------------------------------------
# the server

STATUS_SERVER = """
    server {
        listen unix:@PREFIX@/status.sock;
        access_log off;
        location / { return 404 "not here"; }
    }
"""


def loc(path, limits, extra="", body="ok", exact=False):
    return """
        location %s%s {
            %s
            %s
            %s
        }""" % ("= " if exact else "", path,
                "\n            ".join("vantage_rate_limit %s;" % l
                                      for l in limits),
                extra, respond(body))


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, module_redis, keys):
    hs = keys.path("hs.secret")
    n = module_nginx_factory(
        name="ratelimit",
        http=RESPONDER_SERVER + STATUS_SERVER
        # slow builds (valgrind) answer late: the timeout scales as waits do
        + "    vantage_redis %s timeout=%dms;\n"
        % (module_redis.address, int(250 * vh.scale())),
        server="".join([
            loc("/basic/", ["$arg_k rate=10r/s burst=3"]),
            loc("/minute/", ["$arg_k rate=6r/m burst=2"]),
            loc("/refill/", ["$arg_k rate=10r/s burst=2"]),
            loc("/cost/", ["$arg_k rate=1r/m burst=5 cost=2"]),
            loc("/multi/", ["$arg_k name=fast rate=10r/s burst=2",
                            "$arg_k name=slow rate=1r/m burst=5"]),
            loc("/unnamed/", ["$arg_k rate=1r/m burst=4",
                              "$arg_a rate=1r/m burst=2"]),
            loc("/jwt/", ["$vantage_jwt_claim_sub rate=1r/m burst=2"],
                "vantage_jwt on;\n            vantage_jwt_keys %s;" % hs,
                body="ok $vantage_jwt_claim_sub"),
            """
        location /redir/ {
            vantage_rate_limit $http_x_k rate=1r/m burst=2;
            proxy_intercept_errors on;
            error_page 404 = /fallback;
            proxy_pass http://unix:@PREFIX@/status.sock;
        }""",
            loc("/fallback", ["$http_x_k rate=1r/m burst=2"], "internal;",
                body="fallback", exact=True),
            loc("/ep-eq/", ["$http_x_k rate=1r/m burst=1"],
                "error_page 429 = /limited;"),
            loc("/ep-429/", ["$http_x_k rate=1r/m burst=1"],
                "error_page 429 /limited;"),
            loc("/limited", [], "internal;", body="custom limited",
                exact=True),
            loc("/dry/", ["$arg_k rate=1r/m burst=2"],
                "vantage_rate_limit_dry_run on;"),
            loc("/legacy/", ["$arg_k rate=1r/m burst=3"],
                "vantage_rate_limit_headers legacy;"),
            loc("/legacy2/", ["$arg_k name=wide rate=1r/m burst=5",
                              "$arg_k name=narrow rate=1r/m burst=2"],
                "vantage_rate_limit_headers legacy;"),
            loc("/both/", ["$arg_k rate=1r/m burst=3"],
                "vantage_rate_limit_headers both;"),
            loc("/off/", ["$arg_k rate=1r/m burst=1"],
                "vantage_rate_limit_headers off;"),
            loc("/s503/", ["$arg_k rate=1r/m burst=1"],
                "vantage_rate_limit_status 503;"),
            loc("/apikey/", ["$http_x_api_key rate=1r/m burst=2"]),
            loc("/ref/", ["$arg_k rate=20r/s burst=4"]),
            loc("/mirrored/", ["$http_x_k rate=1r/m burst=5"],
                "mirror /m;", body="main"),
            loc("/m", ["$http_x_k rate=1r/m burst=5"], "internal;",
                body="mirror", exact=True),
        ]))

    # every worker holds its Redis connection (2 workers + the probe here)
    probe = module_redis.client()
    vh.wait_for(lambda: len(probe.client_list()) >= 3, 5,
                what="the workers to connect to Redis")
    return n


@pytest.fixture
def rdb(module_redis):
    return module_redis.client()


def tat_of(rdb, key):
    """TAT in microseconds (0 when the key is absent), read with BITFIELD
    and cross-checked against the raw string."""
    # both reads in one MULTI/EXEC: a compensation may come in between
    pipe = rdb.pipeline(transaction=True)
    pipe.execute_command("BITFIELD", key, "GET", "u63", "0")
    pipe.get(key)
    (v,), raw = pipe.execute()
    if raw is None:
        assert v == 0
    else:
        assert len(raw) == 8, raw
        assert int.from_bytes(raw, "big") >> 1 == v
    return v


# the commands the module's Redis adapter sends of its own (on connecting,
# and the circuit breaker's probe): they charge nobody, and one may fall
# into a window that a slow (sanitized) run stretches
ADAPTER_OWN = ("ping", "auth", "select", "hello", "client|setname")


def charged(redis, fn):
    """{command: count} of what reached Redis during fn(), but the
    adapter's own: {} when nothing was decided there."""
    return {c: n for c, n in redis.command_calls(fn).items()
            if c not in ADAPTER_OWN}


def rl_keys(rdb):
    return set(k.decode() for k in rdb.scan_iter(match="vantage:rl:*",
                                                 count=1000))


# --------------------------------------------------------------------------
# 1. exact header values

def test_exact_headers_burst3_10rps(client):
    def seq():
        k = new_key()
        return [client.get("/basic/x", params={"k": k}) for _ in range(4)]
    rs = fast(seq, 0.09, "4 requests at 10r/s")
    pol = policy(("default", 3, 1))
    for r, left in zip(rs, (2, 1, 0)):
        assert_rl(r, pol, state(("default", left, 1)), body="ok")
        assert "Retry-After" not in r.headers, r
    assert_rl(rs[3], pol, state(("default", 0, 1)), status=429)
    assert_refused(rs[3], "default", 1)


def test_exact_headers_6_per_minute(client):
    k = new_key()
    pol = policy(("default", 2, 20))
    r = client.get("/minute/x", params={"k": k})
    assert_rl(r, pol, state(("default", 1, 10)), body="ok")
    r = client.get("/minute/x", params={"k": k})
    assert_rl(r, pol, state(("default", 0, 20)), body="ok")
    for _ in range(2):
        r = client.get("/minute/x", params={"k": k})
        # TAT - now is just under 20 s; the next unit fits in just under 10
        assert_rl(r, pol, state(("default", 0, 20)), status=429)
        assert_refused(r, "default", 10)


# --------------------------------------------------------------------------
# 2. burst, then refill

@pytest.mark.timing
def test_burst_then_refill(client):
    def get(k):
        t0 = time.monotonic()
        r = client.get("/refill/x", params={"k": k})
        return t0, time.monotonic(), r

    def seq():
        k = new_key()
        # two pass at once, then the bucket is empty
        a = [get(k) for _ in range(3)]
        # more than one interval (100 ms) later exactly one unit is back
        time.sleep(0.12)
        b = [get(k) for _ in range(2)]
        # 2.5 intervals after the last charge the bucket is full again
        time.sleep(0.25)
        c = [get(k) for _ in range(3)]
        return a, b, c

    # The sleeps only ever make the bucket fuller than needed; what must be
    # short is this (with t the first request's start):
    #   a[2] decided before t + 100 ms   (else a unit is back already)
    #   b[1] decided before t + 200 ms   (else a second unit is back)
    #   c[2] decided before c[0] + 100 ms
    for _ in range(3):
        a, b, c = seq()
        if (a[2][1] - a[0][0] < 0.095 and b[1][1] - a[0][0] < 0.195
                and c[2][1] - c[0][0] < 0.095):
            break
    else:
        pytest.fail("the refill sequence never ran in time: %s" % [
            round(x[1] - a[0][0], 3) for x in a + b + c])

    rs = [x[2] for x in a + b + c]
    assert [r.status for r in rs] == [200, 200, 429, 200, 429,
                                      200, 200, 429], rs
    pol = policy(("default", 2, 1))
    assert_rl(rs[0], pol, state(("default", 1, 1)), body="ok")
    assert_rl(rs[1], pol, state(("default", 0, 1)), body="ok")
    assert_refused(rs[2], "default", 1)
    assert_rl(rs[3], pol, state(("default", 0, 1)), body="ok")
    assert_refused(rs[4], "default", 1)
    assert_rl(rs[5], pol, state(("default", 1, 1)), body="ok")
    assert_rl(rs[6], pol, state(("default", 0, 1)), body="ok")
    assert_refused(rs[7], "default", 1)


# --------------------------------------------------------------------------
# 3. keys are independent; an empty key is not limited

def test_keys_are_independent(client):
    def seq():
        a, b = new_key(), new_key()
        ra = [client.get("/basic/x", params={"k": a}) for _ in range(5)]
        rb = client.get("/basic/x", params={"k": b})
        return ra, rb
    ra, rb = fast(seq, 0.09, "6 requests at 10r/s")
    assert [r.status for r in ra] == [200, 200, 200, 429, 429], ra
    assert_rl(rb, policy(("default", 3, 1)), state(("default", 2, 1)),
              body="ok")


@pytest.mark.parametrize("params", [None, {"k": ""}], ids=["absent", "empty"])
def test_empty_key_is_not_limited(client, module_redis, params):
    def run():
        for _ in range(10):
            r = client.get("/basic/x", params=params)
            assert (r.status, r.body) == (200, "ok"), r
            assert_no_rl_headers(r)
            assert "Retry-After" not in r.headers, r
    # nothing to decide: Redis is not asked
    assert charged(module_redis, run) == {}


# --------------------------------------------------------------------------
# 4. cost

def test_cost(client):
    k = new_key()
    pol = policy(("default", 5, 300))
    r = client.get("/cost/x", params={"k": k})
    assert_rl(r, pol, state(("default", 3, 120)), body="ok")
    r = client.get("/cost/x", params={"k": k})
    assert_rl(r, pol, state(("default", 1, 240)), body="ok")
    r = client.get("/cost/x", params={"k": k})
    # 240 s used of 300: 2 units need 60 s more
    assert_rl(r, pol, state(("default", 1, 240)), status=429)
    assert_refused(r, "default", 60)


# --------------------------------------------------------------------------
# 5. several limits, one refusing

@pytest.mark.timing
def test_several_limits_one_refuses(client, rdb):
    T = interval_of("1r/m")

    def seq():
        k = new_key()
        slow = redis_key(k, "slow", "1r/m", 5)
        rs = [client.get("/multi/x", params={"k": k}) for _ in range(2)]
        before = tat_of(rdb, slow)
        rs.append(client.get("/multi/x", params={"k": k}))
        return k, slow, before, rs
    k, slow, before, rs = fast(seq, 0.09, "3 requests at 10r/s")

    pol = policy(("fast", 2, 1), ("slow", 5, 300))
    assert_rl(rs[0], pol, state(("fast", 1, 1), ("slow", 4, 60)), body="ok")
    assert_rl(rs[1], pol, state(("fast", 0, 1), ("slow", 3, 120)), body="ok")
    # refused by "fast": "slow" reports its state without this request
    assert_rl(rs[2], pol, state(("fast", 0, 1), ("slow", 3, 120)),
              status=429)
    assert_refused(rs[2], "fast", 1)

    # "slow" charged the refused request and got the unit back: its TAT is
    # what it was before (the compensation is asynchronous)
    assert 2 * T - US < before - now_us() <= 2 * T, before
    vh.wait_for(lambda: tat_of(rdb, slow) == before, 2,
                what="the slow TAT to be what it was")
    time.sleep(vh.timeout(0.05))
    assert tat_of(rdb, slow) == before
    assert rdb.exists(redis_key(k, "fast", "10r/s", 2))

    # once "fast" has refilled, "slow" still has 3 units: it was charged
    # by the two admitted requests only
    time.sleep(0.25)
    r = client.get("/multi/x", params={"k": k})
    assert_rl(r, pol, state(("fast", 1, 1), ("slow", 2, 180)), body="ok")
    assert tat_of(rdb, slow) == before + T


def test_unnamed_limits_default_default2(client):
    k, a = new_key(), new_key()
    r = client.get("/unnamed/x", params={"k": k, "a": a})
    assert_rl(r, policy(("default", 4, 240), ("default2", 2, 120)),
              state(("default", 3, 60), ("default2", 1, 60)), body="ok")
    # only the limits whose key is not empty apply, and are listed
    r = client.get("/unnamed/x", params={"a": a})
    assert_rl(r, policy(("default2", 2, 120)), state(("default2", 0, 120)),
              body="ok")
    r = client.get("/unnamed/x", params={"k": k, "a": a})
    assert_rl(r, policy(("default", 4, 240), ("default2", 2, 120)),
              state(("default", 3, 60), ("default2", 0, 120)), status=429)
    assert_refused(r, "default2", 60)


# --------------------------------------------------------------------------
# 6. a claim-keyed limit: refused tokens are never charged

def test_jwt_refused_tokens_not_charged(client, keys, module_redis, rdb):
    sub, other = "user-" + new_key(), "user-" + new_key()
    forged = [
        mint(keys.hs_other, "HS256", claims(sub=sub)),
        mint(keys.hs, "HS256", claims(sub=sub, iat=now() - 7200,
                                      exp=now() - 3600)),
        None,
    ]
    before = rl_keys(rdb)

    def attempts():
        for _ in range(2):
            r = client.get("/jwt/x", token=forged[0])
            assert_invalid(r, "signature verification failed")
            assert_no_rl_headers(r)
            r = client.get("/jwt/x", token=forged[1])
            assert_invalid(r, "token expired")
            assert_no_rl_headers(r)
            r = client.get("/jwt/x")
            assert_missing(r)
            assert_no_rl_headers(r)

    assert charged(module_redis, attempts) == {}
    new = rl_keys(rdb) - before
    assert not new, new
    assert not rdb.exists(redis_key(sub, "default", "1r/m", 2))

    pol = policy(("default", 2, 120))
    good = lambda s: mint(keys.hs, "HS256", claims(sub=s, jti=new_key()))
    r = client.get("/jwt/x", token=good(sub))
    assert_rl(r, pol, state(("default", 1, 60)), body="ok " + sub)
    r = client.get("/jwt/x", token=good(sub))
    assert_rl(r, pol, state(("default", 0, 120)), body="ok " + sub)
    r = client.get("/jwt/x", token=good(sub))
    assert_rl(r, pol, state(("default", 0, 120)), status=429)
    assert_refused(r, "default", 60)
    # the bucket is the subject's, not the token's or the client's
    r = client.get("/jwt/x", token=good(other))
    assert_rl(r, pol, state(("default", 1, 60)), body="ok " + other)
    assert rdb.exists(redis_key(sub, "default", "1r/m", 2))


# --------------------------------------------------------------------------
# 7. internal redirects: one charge per request; error_page for 429

def test_internal_redirect_charged_once(client, rdb):
    k = new_key()
    client.remember(k)
    pol = policy(("default", 2, 120))
    h = {"X-K": k}
    r = client.get("/redir/x", headers=h)
    assert_rl(r, pol, state(("default", 1, 60)), body="fallback")
    r = client.get("/redir/x", headers=h)
    assert_rl(r, pol, state(("default", 0, 120)), body="fallback")
    r = client.get("/redir/x", headers=h)
    assert_rl(r, pol, state(("default", 0, 120)), status=429)
    assert_refused(r, "default", 60)
    # Redis agrees: two units charged in all
    tat = tat_of(rdb, redis_key(k, "default", "1r/m", 2))
    assert 120 * US - US < tat - now_us() <= 120 * US


@pytest.mark.parametrize("path,status", [("/ep-eq/x", 200),
                                         ("/ep-429/x", 429)])
def test_error_page_for_429(client, path, status):
    k = new_key()
    client.remember(k)
    pol = policy(("default", 1, 60))
    r = client.get(path, headers={"X-K": k})
    assert_rl(r, pol, state(("default", 0, 60)), body="ok")
    r = client.get(path, headers={"X-K": k})
    # the error_page target answered, with the limiter's headers
    assert_rl(r, pol, state(("default", 0, 60)), status=status,
              body="custom limited")
    assert r.headers["Content-Type"].startswith("text/plain"), r
    # the Retry-After set with the refusal stays, once
    assert r.headers.get_list("Retry-After") == ["60"], r


# --------------------------------------------------------------------------
# 8. dry run

def test_dry_run(client, server):
    k = new_key()
    mark = server.log_size()
    pol = policy(("default", 2, 120))
    rs = [client.get("/dry/x", params={"k": k}) for _ in range(5)]
    assert_rl(rs[0], pol, state(("default", 1, 60)), body="ok")
    for r in rs[1:]:
        assert_rl(r, pol, state(("default", 0, 120)), body="ok")
        assert "Retry-After" not in r.headers, r
    log = vh.wait_for(lambda: (lambda t: t if t.count(key_hash(k)) >= 3
                               else None)(server.log_since(mark)),
                      2, what="the dry-run lines")
    lines = [l for l in log.splitlines() if key_hash(k) in l]
    assert len(lines) == 3, lines
    for l in lines:
        assert re.search(r'\[error\] .*vantage ratelimit: dry run, limit '
                         r'"default" exceeded by key "%s", client: '
                         r'127\.0\.0\.1, uri: "/dry/x"' % key_hash(k), l), l
    assert k not in log


# --------------------------------------------------------------------------
# 9. header modes, refusal status

def test_headers_legacy(client):
    k = new_key()
    r = client.get("/legacy/x", params={"k": k})
    assert (r.status, r.body) == (200, "ok"), r
    assert "RateLimit" not in r.headers and \
        "RateLimit-Policy" not in r.headers, r
    assert [r.headers.get_list(h) for h in RL_HEADERS[2:]] == \
        [["3"], ["2"], ["60"]], r
    r = client.get("/legacy/x", params={"k": k})
    assert [r.headers.get_list(h) for h in RL_HEADERS[2:]] == \
        [["3"], ["1"], ["120"]], r


def test_headers_legacy_least_remaining(client):
    k = new_key()
    r = client.get("/legacy2/x", params={"k": k})
    assert r.status == 200, r
    assert "RateLimit" not in r.headers, r
    # "narrow" has 1 left, "wide" 4: the X- trio is narrow's
    assert [r.headers.get_list(h) for h in RL_HEADERS[2:]] == \
        [["2"], ["1"], ["60"]], r


def test_headers_both(client):
    k = new_key()
    r = client.get("/both/x", params={"k": k})
    assert (r.status, r.body) == (200, "ok"), r
    assert r.headers.get_list("RateLimit-Policy") == \
        [policy(("default", 3, 180))], r
    assert r.headers.get_list("RateLimit") == [state(("default", 2, 60))], r
    assert [r.headers.get_list(h) for h in RL_HEADERS[2:]] == \
        [["3"], ["2"], ["60"]], r


def test_headers_off(client):
    k = new_key()
    r = client.get("/off/x", params={"k": k})
    assert (r.status, r.body) == (200, "ok"), r
    assert_no_rl_headers(r)
    r = client.get("/off/x", params={"k": k})
    assert_no_rl_headers(r)
    assert_refused(r, "default", 60)


def test_refusal_status_503(client):
    k = new_key()
    pol = policy(("default", 1, 60))
    r = client.get("/s503/x", params={"k": k})
    assert_rl(r, pol, state(("default", 0, 60)), body="ok")
    r = client.get("/s503/x", params={"k": k})
    assert_rl(r, pol, state(("default", 0, 60)), status=503)
    assert_refused(r, "default", 60, status=503)


# --------------------------------------------------------------------------
# 10. the state in Redis

def test_redis_key_ttl_and_tat(client, rdb):
    k = new_key()
    key = redis_key(k, "default", "10r/s", 3)
    assert key == "vantage:rl:{%s}:default:100000:3" % \
        hashlib.sha256(k.encode()).hexdigest()[:32]
    t0 = now_us()
    r = client.get("/basic/x", params={"k": k})
    t1 = now_us()
    assert r.status == 200, r
    pttl = rdb.pttl(key)
    tat = tat_of(rdb, key)
    assert 0 < pttl <= 300, pttl
    # TAT = now + T, now being when nginx decided: between t0 and t1
    assert t0 + 100000 - 1000 <= tat <= t1 + 100000 + 1000, (t0, tat, t1)
    # no other key for this value
    assert [x for x in rl_keys(rdb) if key_hash(k) in x] == [key]


def test_raw_key_value_never_stored_or_logged(client, server, rdb):
    api_key = "ak_live_" + new_key()
    client.remember(api_key)
    mark = server.log_size()
    h = {"X-Api-Key": api_key}
    rs = [client.get("/apikey/x", headers=h) for _ in range(3)]
    assert [r.status for r in rs] == [200, 200, 429], rs
    key = redis_key(api_key, "default", "1r/m", 2)
    assert rdb.exists(key)
    names = [n for n in rdb.scan_iter(count=1000)]
    assert names, names
    assert not [n for n in names if api_key.encode() in n
                or api_key[8:].encode() in n], names
    # nor in any value of ours
    assert api_key.encode() not in rdb.get(key)
    # the refusal was logged, by hash only
    log = vh.wait_for(lambda: (lambda t: t if key_hash(api_key) in t
                               else None)(server.log_since(mark)),
                      2, what="the refusal's log line")
    assert 'limit "default" exceeded by key "%s"' % key_hash(api_key) in log
    assert api_key not in log
    assert api_key[8:] not in log


# --------------------------------------------------------------------------
# 11. a reference GCRA, driven by random gaps

def test_against_reference_gcra(client, rdb, transport):
    g = Gcra("20r/s", 4)
    k = new_key()
    key = redis_key(k, "default", "20r/s", 4)
    rng = random.Random(4242 + (transport == "h2"))
    admitted = certain = 0
    stamps = []
    ref_tat, ref_admitted = 0, 0
    for i in range(30):
        tat = tat_of(rdb, key)
        ts = now_us()
        r = client.get("/ref/x", params={"k": k})
        te = now_us()
        after = tat_of(rdb, key)
        assert r.status in (200, 429), r
        ok = r.status == 200
        admitted += ok
        stamps.append((ts, te))

        # nginx decided at some now in [ts, te]; admitting is monotonic
        # in now, so the outcome is known unless the bracket straddles
        # the boundary
        lo, hi = g.decide(tat, ts), g.decide(tat, te)
        if lo[0] or not hi[0]:
            certain += 1
            assert ok == lo[0], (i, tat, ts, te, r)
        if ok:
            assert lo[1] - 1 <= after <= hi[1] + 1, (i, tat, after, ts, te)
        else:
            # a refusal leaves the TAT as it was
            assert after == tat, (i, tat, after)
            assert r.headers["Retry-After"] == "1", r
        m = re.fullmatch(r'"default";r=(\d+);t=(\d+)',
                         r.headers.get("RateLimit", ""))
        assert m, r
        assert min(lo[2], hi[2]) <= int(m.group(1)) <= max(lo[2], hi[2]), \
            (i, r, lo, hi)
        assert int(m.group(2)) == 1, r
        assert r.headers["RateLimit-Policy"] == policy(("default", 4, 1)), r

        # the reference on its own, at the middle of each bracket
        adm, ref_tat, _, _ = g.decide(ref_tat, (ts + te) // 2)
        ref_admitted += adm
        time.sleep(rng.uniform(0, 0.05))

    elapsed = stamps[-1][1] - stamps[0][0]
    assert admitted <= 4 + elapsed // g.T + 1, (admitted, elapsed)
    assert admitted >= ref_admitted - 1, (admitted, ref_admitted)
    assert certain >= 15, certain
    # the sequence did exercise both outcomes
    assert 4 < admitted < 30, admitted


# --------------------------------------------------------------------------
# 13. subrequests are not charged

def test_mirror_subrequest_not_charged(client, module_redis, rdb):
    k = new_key()
    client.remember(k)
    h = {"X-K": k}
    pol = policy(("default", 5, 300))
    key = redis_key(k, "default", "1r/m", 5)
    T = interval_of("1r/m")

    t0 = now_us()
    r = client.get("/mirrored/x", headers=h)
    t1 = now_us()
    assert_rl(r, pol, state(("default", 4, 60)), body="main")
    r = client.get("/mirrored/x", headers=h)
    assert_rl(r, pol, state(("default", 3, 120)), body="main")

    out = []

    def one():
        out.append(client.get("/mirrored/x", headers=h))
        # let the mirror subrequest finish
        time.sleep(vh.timeout(0.2))

    # one request, its mirror included: one decision in Redis
    calls = module_redis.command_calls(one)
    assert_rl(out[0], pol, state(("default", 2, 180)), body="main")
    assert calls.get("bitfield") == 1 and calls.get("pexpire") == 1, calls
    # three units in all: TAT is the first decision's time + 3 T
    tat = tat_of(rdb, key)
    assert t0 + 3 * T - 1000 <= tat <= t1 + 3 * T + 1000, (t0, tat, t1)


# --------------------------------------------------------------------------
# 12. configuration errors (nginx -t; no server, no transport)

@pytest.fixture
def check(module_available, nginx_factory):
    def run(http="", server=""):
        n = nginx_factory(name="rl-t", start=False, http=http, server=server)
        rc, out = n.test_config()
        assert not vh.problem_lines(out.replace("[emerg]", "")), out
        return rc, out
    return run


def _emerg(out, directive, text):
    lines = [l for l in out.splitlines() if "[emerg]" in l]
    assert len(lines) == 1, out
    assert '"%s"' % directive in lines[0], out
    assert text in lines[0], out
    assert re.search(r"nginx\.conf:\d+$", lines[0]), out
    assert "test failed" in out, out


def _limit_loc(*directives):
    return "\n        location / {\n%s\n            return 204;\n        }" % \
        "\n".join("            %s;" % d for d in directives)


def test_valid_configuration(check):
    rc, out = check(
        http="vantage_redis 127.0.0.1:6379 db=2 connect_timeout=500ms "
             "timeout=100ms breaker_failures=5 breaker_cooldown=3s;\n"
             "vantage_rate_limit_zone 2m;",
        server=_limit_loc(
            "vantage_rate_limit $arg_k rate=10r/s burst=3",
            "vantage_rate_limit $arg_k rate=100r/h burst=10 cost=10",
            "vantage_rate_limit $arg_k rate=5r/m burst=3 name=other.one_2",
            "vantage_rate_limit_status 503",
            "vantage_rate_limit_headers both",
            "vantage_rate_limit_dry_run on",
            "vantage_rate_limit_log_level warn",
            "vantage_rate_limit_on_error closed"))
    assert rc == 0, out
    assert "test is successful" in out, out


@pytest.mark.parametrize("limit,text", [
    ("$arg_k rate=10r/s burst=3 cost=4",
     "cost is larger than burst: no request could pass"),
    ("$arg_k burst=3", '"rate=" is missing'),
    ("$arg_k rate=10r/s", '"burst=" is missing'),
    ("$arg_k rate=10r/x burst=3",
     'rate must be written as <n>r/s, <n>r/m or <n>r/h in "rate=10r/x"'),
    ("$arg_k rate=10/s burst=3",
     'rate must be written as <n>r/s, <n>r/m or <n>r/h in "rate=10/s"'),
    ("$arg_k rate=0r/s burst=3", 'rate must be positive'),
    ("$arg_k rate=10r/s burst=0", 'invalid parameter "burst=0"'),
    ("$arg_k rate=10r/s burst=3 colour=red",
     'unknown parameter "colour=red"'),
    ("$arg_k rate=10r/s burst=3 name=a:b", 'name "a:b" may only hold'),
], ids=["cost>burst", "no-rate", "no-burst", "rate-10r/x", "rate-10/s",
        "rate-0", "burst-0", "unknown", "name-colon"])
def test_rate_limit_errors(check, limit, text):
    rc, out = check(server=_limit_loc("vantage_rate_limit " + limit))
    assert rc != 0, out
    _emerg(out, "vantage_rate_limit", text)


def test_duplicate_limit_name(check):
    rc, out = check(server=_limit_loc(
        "vantage_rate_limit $arg_k rate=10r/s burst=3 name=a",
        "vantage_rate_limit $arg_j rate=1r/m burst=3 name=a"))
    assert rc != 0, out
    _emerg(out, "vantage_rate_limit", 'another limit here is named "a"')
    # an unnamed second limit is "default2": naming a third so clashes
    rc, out = check(server=_limit_loc(
        "vantage_rate_limit $arg_k rate=10r/s burst=3",
        "vantage_rate_limit $arg_j rate=1r/m burst=3",
        "vantage_rate_limit $arg_i rate=1r/m burst=3 name=default2"))
    assert rc != 0, out
    _emerg(out, "vantage_rate_limit",
           'another limit here is named "default2"')


def test_redis_user_without_password_file(check):
    rc, out = check(http="vantage_redis 127.0.0.1:6379 user=app;")
    assert rc != 0, out
    _emerg(out, "vantage_redis", '"user=" needs "password_file="')


def test_redis_twice(check):
    rc, out = check(http="vantage_redis 127.0.0.1:6379;\n"
                         "vantage_redis 127.0.0.1:6380;")
    assert rc != 0, out
    _emerg(out, "vantage_redis", "is duplicate")


def test_redis_unknown_parameter(check):
    rc, out = check(http="vantage_redis 127.0.0.1:6379 pool=4;")
    assert rc != 0, out
    _emerg(out, "vantage_redis", 'unknown parameter "pool=4"')


@pytest.mark.parametrize("value", ["200", "399", "600"])
def test_rate_limit_status_out_of_range(check, value):
    rc, out = check(server=_limit_loc(
        "vantage_rate_limit $arg_k rate=10r/s burst=3",
        "vantage_rate_limit_status " + value))
    assert rc != 0, out
    _emerg(out, "vantage_rate_limit_status", "between 400 and 599")


@pytest.mark.parametrize("value", ["400", "599"])
def test_rate_limit_status_bounds_accepted(check, value):
    rc, out = check(server=_limit_loc(
        "vantage_rate_limit $arg_k rate=10r/s burst=3",
        "vantage_rate_limit_status " + value))
    assert rc == 0, out
