"""test_ratelimit_failures.py -- the rate limiter when Redis fails.

Redis stopped, paused (SIGSTOP), slowed past the timeout (DEBUG SLEEP),
killed, absent at startup; AUTH (requirepass, ACL user, wrong password),
SELECT, a unix socket; a client leaving while its Redis reply is pending;
a graceful reload.  Each test runs its own nginx, mostly with one worker
process (the circuit breaker is per worker) and short Redis timeouts, and
uses key values of its own (a uuid), so that no Redis or local bucket is
shared between tests.

Every Redis key is computed as the module names it (see the spec):
    vantage:rl:{<first 32 hex of SHA-256(key value)>}:<name>:<T>:<burst>
and "Redis decided" is shown by the key existing in Redis or, stronger, by
a bucket state written into Redis directly that the local fallback (whose
buckets start full) cannot know.  Limit keys travel in a request header
(X-Token-Key), except in the test of query-string keys.

The last tests replace Redis by ScriptedRedis, a RESP server that answers
when the test says, to time the module's per-call timeouts exactly and to
deliver a reply together with the end of the connection.
"""

import hashlib
import math
import os
import re
import signal
import socket
import ssl
import threading
import time
import uuid

import h2.config
import h2.connection
import h2.events
import pytest

import vantage_harness as vh

# timeouts, breaker cool-downs and "answered within" bounds in real time:
# valgrind's slowdown turns them into other failures
pytestmark = pytest.mark.timing


# what the failures below make the module log on purpose ([error]/[warn]:
# not failures for the log guard anyway, which rejects [alert]/[emerg];
# the patterns are level-anchored so that they never excuse an [alert])
ALLOW = (r"\[(?:error|warn)\] .*vantage redis: ",
         r"\[(?:error|warn)\] .*vantage ratelimit: ")

BREAKER_OPEN = r"\[error\] .*vantage redis: circuit breaker open for %d ms " \
               r"after \d+ failures of %s"
BREAKER_CLOSED = r"\[warn\] .*vantage redis: %s answers again, circuit " \
                 r"breaker closed"
NO_ANSWER = r"\[error\] .*vantage redis: %s did not answer within %d ms"

RATELIMIT = re.compile(r'^"([A-Za-z0-9_.-]+)";r=(\d+);t=(\d+)$')
POLICY = re.compile(r'^"([A-Za-z0-9_.-]+)";q=(\d+);w=(\d+)$')

# a request the fallback decides must not wait for Redis: well under the
# 100 ms Redis timeout the tests configure
FAST = 0.06

# the limit key comes from a request header, out of the request line that
# nginx adds to every error.log line of a request (see
# test_closed_policy_does_not_log_the_query_string for $arg_ keys)
KEY_HEADER = "X-Token-Key"
KEY_VAR = "$http_x_token_key"

RATE = "1r/m"           # no refill during a test: T = 60 s
T_1RM = 60 * 1000 * 1000
BURST = 3


# --------------------------------------------------------------------------
# helpers

def fresh(tag):
    """A key value no other test (or run) uses; long enough for the log
    guard to check that it never reaches error.log."""
    return "%s-%s" % (tag, uuid.uuid4().hex)


def interval_us(rate):
    n, unit = re.fullmatch(r"(\d+)r/([smh])", rate).groups()
    period = {"s": 1, "m": 60, "h": 3600}[unit] * 1000000
    return -(-period // int(n))


def redis_key(value, rate=RATE, burst=BURST, name="default"):
    h = hashlib.sha256(value.encode()).hexdigest()[:32]
    return ("vantage:rl:{%s}:%s:%d:%d"
            % (h, name, interval_us(rate), burst)).encode()


def now_us():
    return time.time_ns() // 1000


def redis_directive(address, timeout="100ms", connect_timeout="200ms",
                    failures=2, cooldown="500ms", extra=""):
    return ("    vantage_redis %s timeout=%s connect_timeout=%s "
            "breaker_failures=%d breaker_cooldown=%s%s;\n"
            % (address, timeout, connect_timeout, failures, cooldown,
               (" " + extra) if extra else ""))


def limited_locations(policies=("local",), rate=RATE, burst=BURST,
                      key=KEY_VAR):
    """One location /<policy>/ per on_error policy, limited by key."""
    out = ""
    for p in policies:
        out += f"""
        location /{p}/ {{
            vantage_rate_limit {key} rate={rate} burst={burst};
            vantage_rate_limit_on_error {p};
            {vh.respond("ok")}
        }}"""
    return out


def make_nginx(nginx_factory, name, address, policies=("local",),
               workers=1, **redis_kw):
    return nginx_factory(
        name=name, worker_processes=workers,
        http=vh.RESPONDER_SERVER + redis_directive(address, **redis_kw),
        server=limited_locations(policies))


def get(client, path, key, **kw):
    """A request limited by key: sent in the X-Token-Key header (the
    Client remembers it, and the log guard checks that it never reaches
    error.log)."""
    return client.get(path, headers={KEY_HEADER: key}, **kw)


def timed_get(client, path, key, **kw):
    t0 = time.monotonic()
    r = get(client, path, key, **kw)
    return r, time.monotonic() - t0


def ratelimit(r):
    """(name, remaining, reset) of the RateLimit header (one limit)."""
    v = r.headers.get("ratelimit")
    assert v is not None, "no RateLimit header: %r" % r
    m = RATELIMIT.match(v)
    assert m, v
    return m.group(1), int(m.group(2)), int(m.group(3))


def assert_policy(r, burst=BURST, rate=RATE):
    v = r.headers.get("ratelimit-policy")
    assert v is not None, "no RateLimit-Policy header: %r" % r
    m = POLICY.match(v)
    assert m, v
    assert m.group(1) == "default"
    assert int(m.group(2)) == burst
    assert int(m.group(3)) == math.ceil(burst * interval_us(rate) / 1e6)


def assert_refused(r, remaining=0):
    assert r.status == 429, r
    assert r.json and r.json["error"] == "rate_limited", r
    assert int(r.headers["retry-after"]) >= 1
    assert_policy(r)
    assert ratelimit(r)[1] == remaining


def fast(dt):
    return dt < vh.timeout(FAST)


def check_local_burst(client, path="/local/", tag="local", burst=BURST):
    """A fresh key: burst admitted (remaining counting down), then 429;
    none of them waits for Redis.  Returns the key value."""
    k = fresh(tag)
    for i in range(burst):
        r, dt = timed_get(client, path, k)
        assert r.status == 200, r
        assert r.body == "ok"
        assert_policy(r)
        assert ratelimit(r)[1] == burst - 1 - i, r
        assert fast(dt), "request %d took %.3f s" % (i, dt)
    r, dt = timed_get(client, path, k)
    assert_refused(r)
    assert fast(dt), "refusal took %.3f s" % dt
    return k


def check_open(client, burst=BURST):
    k = fresh("open")
    for i in range(burst + 2):
        r, dt = timed_get(client, "/open/", k)
        assert r.status == 200, r
        assert_policy(r)
        assert "ratelimit" not in r.headers, r
        assert "retry-after" not in r.headers, r
        assert fast(dt), "request %d took %.3f s" % (i, dt)


def check_closed(client, cooldown_ms):
    for i in range(2):
        r, dt = timed_get(client, "/closed/", fresh("closed"))
        assert r.status == 503, r
        assert r.json == {"error": "rate_limit_unavailable",
                          "error_description":
                              "the rate limiter cannot decide now"}, r
        assert r.headers["retry-after"] == str(-(-cooldown_ms // 1000)), r
        assert "ratelimit" not in r.headers, r
        assert fast(dt), "request %d took %.3f s" % (i, dt)


def set_tat(rc, key, tat, burst=BURST, rate=RATE):
    """Writes a bucket state into Redis as the module would keep it."""
    rc.execute_command("BITFIELD", key, "SET", "u63", "0", str(tat))
    rc.pexpire(key, -(-burst * interval_us(rate) // 1000))


def get_tat(rc, key):
    return rc.execute_command("BITFIELD", key, "GET", "u63", "0")[0]


def check_redis_decides(client, redis, path="/local/", burst=BURST):
    """The decision comes from Redis: a key whose Redis bucket holds one
    unit (the local fallback would have it full) is admitted with r=0,
    then refused; and a fresh key's request creates its Redis key."""
    rc = redis.client()
    k = fresh("state")
    key = redis_key(k)
    set_tat(rc, key, now_us() + (burst - 1) * T_1RM)
    r = get(client, path, k)
    assert r.status == 200, r
    assert ratelimit(r)[1] == 0, r
    r = get(client, path, k)
    assert_refused(r)
    k = fresh("state")
    r = get(client, path, k)
    assert r.status == 200 and ratelimit(r)[1] == burst - 1, r
    assert rc.exists(redis_key(k)) == 1
    assert 0 < rc.pttl(redis_key(k)) <= burst * T_1RM // 1000


def redis_used(client, redis, path="/local/"):
    """One request on a fresh key; whether it created the key in Redis."""
    k = fresh("poll")
    r = get(client, path, k)
    assert r.status == 200, r
    try:
        return redis.client().exists(redis_key(k)) == 1
    except Exception:           # redis not up yet
        return False


def wait_redis_used(client, redis, seconds, path="/local/"):
    t0 = time.monotonic()
    vh.wait_for(lambda: redis_used(client, redis, path), seconds,
                interval=0.05, what="nginx to use Redis again")
    return time.monotonic() - t0


def log_has(nginx, offset, regex):
    return re.search(regex, nginx.log_since(offset)) is not None


def wait_log(nginx, offset, regex, seconds, drive=None):
    def check():
        if drive is not None:
            drive()
        return log_has(nginx, offset, regex)
    vh.wait_for(check, seconds, interval=0.06, what="error.log: " + regex)


def redis_sockets(port):
    """(every loopback TCP connection from or to port, the bytes and
    connections waiting on Redis's side) from /proc/net/tcp: a paused Redis
    reads and accepts nothing, so anything sent to it, and any new
    connection, changes this."""
    pairs, waiting = set(), 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, queues = fields[1:5]
            lport = int(local.split(":")[1], 16)
            rport = int(remote.split(":")[1], 16)
            if port in (lport, rport):
                pairs.add((local, remote))
            if lport == port:
                # unread bytes; for the listener, unaccepted connections
                waiting += int(queues.split(":")[1], 16)
    return sorted(pairs), waiting


# --------------------------------------------------------------------------
# 1. Redis stopped mid-run: each on_error policy, then Redis back

@pytest.mark.log_allow(*ALLOW)
def test_redis_stopped_each_policy_then_back(module_available, nginx_factory,
                                             client_for, redis_server):
    cooldown = 1200             # Retry-After: 2 (rounded up)
    addr = redis_server.address
    n = make_nginx(nginx_factory, "rl-stop", addr,
                   policies=("local", "open", "closed"),
                   cooldown="%dms" % cooldown)
    c = client_for(n)
    rc = redis_server.client()

    # Redis up: every policy limits through Redis
    for p in ("local", "open", "closed"):
        k = fresh(p)
        r = get(c, "/%s/" % p, k)
        assert r.status == 200, r
        assert_policy(r)
        assert ratelimit(r)[1] == BURST - 1, r
        assert rc.exists(redis_key(k)) == 1, p

    mark = n.log_size()
    redis_server.stop()

    # at once (the connection lost, reconnections refused)...
    check_local_burst(c)
    check_open(c)
    check_closed(c, cooldown)

    # ... and with the breaker open
    wait_log(n, mark, BREAKER_OPEN % (cooldown, re.escape(addr)), 2,
             drive=lambda: get(c, "/open/", fresh("drive")))
    check_local_burst(c)
    check_open(c)
    check_closed(c, cooldown)

    # the same port again: picked up without a reload
    redis_server.restart()
    wait_redis_used(c, redis_server, cooldown / 1000 + 1.5)
    assert log_has(n, mark, BREAKER_CLOSED % re.escape(addr))
    check_redis_decides(c, redis_server, "/local/")
    check_redis_decides(c, redis_server, "/open/")
    r = get(c, "/closed/", fresh("closed"))
    assert r.status == 200 and ratelimit(r)[1] == BURST - 1, r


# --------------------------------------------------------------------------
# 2. the breaker: once open, nothing waits for (or reaches) Redis

@pytest.mark.log_allow(*ALLOW)
def test_breaker_fails_fast_while_redis_paused(module_available,
                                               nginx_factory, client_for,
                                               redis_server):
    cooldown = 1000
    addr = redis_server.address
    n = make_nginx(nginx_factory, "rl-pause", addr,
                   cooldown="%dms" % cooldown)
    c = client_for(n)
    assert redis_used(c, redis_server)

    mark = n.log_size()
    redis_server.pause()
    try:
        # each request waits out the 100 ms timeout until the breaker has
        # seen 2 failures; a request during the 50 ms reconnection backoff
        # fails fast, so they are spaced past it
        slow = []
        opened = None
        for i in range(6):
            t0 = time.monotonic()
            r, dt = timed_get(c, "/local/", fresh("slow"))
            assert r.status == 200 and ratelimit(r)[1] == BURST - 1, r
            if dt >= 0.09:
                slow.append(dt)
            if log_has(n, mark, BREAKER_OPEN % (cooldown, re.escape(addr))):
                opened = t0         # at the latest
                break
            time.sleep(0.08)
        assert opened is not None, "the breaker did not open:\n" + \
            n.log_since(mark)
        assert len(slow) == 2, slow
        # about the 100 ms timeout each (not the 200 ms connect_timeout)
        assert all(d < vh.timeout(0.1 + 0.06) for d in slow), \
            "waits of %s s for a 100 ms timeout" % ["%.3f" % d for d in slow]
        assert len(re.findall(NO_ANSWER % (re.escape(addr), 100),
                              n.log_since(mark))) == 2

        # open: 20 requests, none waits, nothing reaches Redis
        before = redis_sockets(redis_server.port)
        times = []
        for i in range(20):
            r, dt = timed_get(c, "/local/", fresh("fast"))
            assert r.status == 200, r
            assert ratelimit(r)[1] == BURST - 1, r
            times.append(dt)
        after = redis_sockets(redis_server.port)
        elapsed = time.monotonic() - opened
        assert elapsed < cooldown / 1000, \
            "too slow to observe the open breaker (%.2f s)" % elapsed
        # none waits out the 100 ms timeout, and they are fast as a rule
        # (a single slow one on a loaded machine is not the breaker's doing)
        assert max(times) < vh.timeout(0.09), ["%.4f" % d for d in times]
        assert sorted(times)[len(times) // 2] < vh.timeout(0.02), \
            ["%.4f" % d for d in times]
        # the slow requests' commands wait unread: the measure sees sends
        assert before[1] > 0, before
        assert before == after, (before, after)
    finally:
        redis_server.resume()

    wait_redis_used(c, redis_server, cooldown / 1000 + 1.5)
    assert log_has(n, mark, BREAKER_CLOSED % re.escape(addr))
    check_redis_decides(c, redis_server)


# --------------------------------------------------------------------------
# 3. Redis slower than the timeout (DEBUG SLEEP)

@pytest.mark.log_allow(*ALLOW)
def test_redis_slower_than_timeout(module_available, nginx_factory,
                                   client_for, redis_server):
    addr = redis_server.address
    n = make_nginx(nginx_factory, "rl-sleep", addr)
    c = client_for(n)
    assert redis_used(c, redis_server)
    mark = n.log_size()

    sleeper = redis_server.debug_sleep(vh.timeout(0.6))
    try:
        r, dt = timed_get(c, "/local/", fresh("sleep"))
        assert r.status == 200, r
        assert_policy(r)
        assert ratelimit(r)[1] == BURST - 1, r
        assert dt < vh.timeout(0.35), dt
        assert sleeper.is_alive(), "DEBUG SLEEP ended too early to tell"
    finally:
        sleeper.join(vh.timeout(5))
    assert sleeper.error is None and sleeper.result == b"OK", \
        (sleeper.result, sleeper.error)
    assert log_has(n, mark, NO_ANSWER % (re.escape(addr), 100))

    # one failure: the breaker stayed closed, the next requests reconnect
    took = wait_redis_used(c, redis_server, 1)
    assert took < vh.timeout(0.5), took
    check_redis_decides(c, redis_server)
    assert not log_has(n, mark, r"circuit breaker open")


# --------------------------------------------------------------------------
# 4. Redis killed (SIGKILL) under traffic, then restarted

@pytest.mark.log_allow(*ALLOW)
def test_redis_killed_and_restarted(module_available, nginx_factory,
                                    client_for, redis_server):
    addr = redis_server.address
    n = make_nginx(nginx_factory, "rl-kill", addr, workers=2)
    workers = n.workers()
    c = client_for(n)
    assert redis_used(c, redis_server)
    mark = n.log_size()

    stop = threading.Event()
    seen = []
    errors = []
    bg = client_for(n)

    def traffic():
        while not stop.is_set():
            try:
                r = get(bg, "/local/", fresh("bg"))
                seen.append((r.status, "ratelimit" in r.headers))
            except Exception as e:      # noqa: BLE001 (reported below)
                errors.append(repr(e))
            time.sleep(0.005)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        time.sleep(0.1)
        redis_server.kill()
        time.sleep(0.2)
        check_local_burst(c)
        # both workers in fallback (requests on new connections spread)
        for i in range(4):
            r = get(c, "/local/", fresh("spread"), new_connection=True)
            assert r.status == 200 and ratelimit(r)[1] == BURST - 1, r
        redis_server.start()
        # both workers come back: 5 in a row on new connections use Redis
        ok = [0]

        def all_back():
            k = fresh("back")
            r = get(c, "/local/", k, new_connection=True)
            assert r.status == 200, r
            ok[0] = ok[0] + 1 if redis_server.client().exists(
                redis_key(k)) else 0
            return ok[0] >= 5
        vh.wait_for(all_back, 0.5 + 2, interval=0.02,
                    what="both workers to use Redis again")
        # five in a row on new connections can all land on one worker; the
        # worker behind c's kept connection is the one checked below
        vh.wait_for(lambda: redis_used(c, redis_server), 0.5 + 2,
                    interval=0.02, what="c's worker to use Redis again")
    finally:
        stop.set()
        t.join(vh.timeout(5))
    assert not errors, errors[:5]
    assert len(seen) > 20
    assert all(s == (200, True) for s in seen), \
        [s for s in seen if s != (200, True)][:5]
    assert n.workers() == workers, "a worker died"
    assert log_has(n, mark, r"vantage redis: connection to %s (?:closed by "
                   r"Redis|lost|failed)" % re.escape(addr))
    check_redis_decides(c, redis_server)


# --------------------------------------------------------------------------
# 5. nothing listening at startup, Redis started later

@pytest.mark.log_allow(*ALLOW)
def test_connection_refused_at_startup(module_available, nginx_factory,
                                       client_for, redis_factory):
    redis = redis_factory(start=False, unix=False)
    assert not vh.port_open(redis.port)
    addr = redis.address
    n = make_nginx(nginx_factory, "rl-refused", addr,
                   policies=("local", "closed"))
    assert n.running()
    c = client_for(n)
    check_local_burst(c)
    check_closed(c, 500)
    assert log_has(n, 0, r"\[error\] .*vantage redis: connect to %s failed: "
                   r"Connection refused" % re.escape(addr))
    # the breaker opens, and its probe finds Redis still absent
    wait_log(n, 0, BREAKER_OPEN % (500, re.escape(addr)), 2,
             drive=lambda: get(c, "/local/", fresh("drive")))
    wait_log(n, 0, r"\[warn\] .*vantage redis: %s still failing, circuit "
             r"breaker open for another 500 ms" % re.escape(addr), 2)
    check_local_burst(c)
    check_closed(c, 500)

    redis.start()
    wait_redis_used(c, redis, 0.5 + 1.5)
    assert log_has(n, 0, BREAKER_CLOSED % re.escape(addr))
    check_redis_decides(c, redis)
    r = get(c, "/closed/", fresh("closed"))
    assert r.status == 200, r


# --------------------------------------------------------------------------
# 6. AUTH

def password_file(base_dir, secret, newline="\n"):
    d = vh.make_dir(os.path.join(base_dir, "rl-secrets"))
    return vh.write_file(os.path.join(d, uuid.uuid4().hex), secret + newline,
                         mode=0o600)


def check_limits_through(client, redis, burst=BURST):
    k = fresh("auth")
    for i in range(burst):
        r = get(client, "/local/", k)
        assert r.status == 200 and ratelimit(r)[1] == burst - 1 - i, r
    assert_refused(get(client, "/local/", k))
    rc = redis.client()
    assert rc.exists(redis_key(k)) == 1
    # burst units charged in Redis: the TAT is about now + burst*T
    assert abs(get_tat(rc, redis_key(k)) - (now_us() + burst * T_1RM)) \
        < 5 * 1000 * 1000


@pytest.mark.parametrize("transport", ["http"])
def test_auth_requirepass(module_available, nginx_factory, client_for,
                          redis_factory, base_dir):
    secret = "rl-pw-" + uuid.uuid4().hex
    redis = redis_factory(password=secret, unix=False)
    n = make_nginx(nginx_factory, "rl-auth", redis.address,
                   extra="password_file=" + password_file(base_dir, secret))
    c = client_for(n)
    check_limits_through(c, redis)
    check_redis_decides(c, redis)
    assert secret not in n.log_since(0)


@pytest.mark.parametrize("transport", ["http"])
@pytest.mark.parametrize("how", ["wrong", "acl-wrong", "missing"])
@pytest.mark.log_allow(*ALLOW)
def test_auth_refused_falls_back(module_available, nginx_factory, client_for,
                                 redis_factory, base_dir, how):
    secret = "rl-pw-" + uuid.uuid4().hex
    wrong = "rl-wrong-" + uuid.uuid4().hex
    if how == "acl-wrong":
        redis = redis_factory(user="vantage", password=secret, unix=False)
        extra = "user=vantage password_file=" + password_file(base_dir, wrong)
    else:
        redis = redis_factory(password=secret, unix=False)
        extra = "" if how == "missing" else \
            "password_file=" + password_file(base_dir, wrong)
    addr = redis.address
    n = make_nginx(nginx_factory, "rl-badauth", addr, extra=extra)
    c = client_for(n)
    k = check_local_burst(c)
    # and the breaker opens on these failures
    wait_log(n, 0, BREAKER_OPEN % (500, re.escape(addr)), 2,
             drive=lambda: get(c, "/local/", fresh("drive")))
    check_local_burst(c)
    log = n.log_since(0)
    if how == "missing":
        # Redis 7 answers an unauthenticated client's long command (the
        # BITFIELD) with a protocol error and closes the connection; when
        # the error and the close are read together, the module reports
        # only the close (the error reply it read is not processed)
        assert re.search(r'\[error\] .*vantage redis: (?:%s answered "(?:'
                         r'NOAUTH |ERR Protocol error: unauthenticated)|'
                         r'connection to %s closed by Redis)'
                         % (re.escape(addr), re.escape(addr)), log), log
    else:
        assert re.search(r'\[error\] .*vantage redis: %s answered '
                         r'"WRONGPASS ' % re.escape(addr), log), log
        assert re.search(r"\[error\] .*vantage redis: AUTH refused by %s, "
                         r"closing the connection" % re.escape(addr), log), log
    assert secret not in log
    assert wrong not in log
    assert redis.client().exists(redis_key(k)) == 0
    assert redis.client().dbsize() == 0


@pytest.mark.parametrize("transport", ["http"])
def test_auth_acl_user(module_available, nginx_factory, client_for,
                       redis_factory, base_dir):
    secret = "rl-acl-" + uuid.uuid4().hex
    redis = redis_factory(user="vantage", password=secret, unix=False)
    n = make_nginx(nginx_factory, "rl-acl", redis.address,
                   extra="user=vantage password_file="
                   + password_file(base_dir, secret, newline="\r\n"))
    c = client_for(n)
    check_limits_through(c, redis)
    assert secret not in n.log_since(0)
    assert not log_has(n, 0, r"vantage redis: ")


# --------------------------------------------------------------------------
# 7. db=

@pytest.mark.parametrize("transport", ["http"])
def test_select_db(module_available, nginx_factory, client_for,
                   redis_server):
    n = make_nginx(nginx_factory, "rl-db", redis_server.address,
                   extra="db=3")
    c = client_for(n)
    k = fresh("db")
    r = get(c, "/local/", k)
    assert r.status == 200 and ratelimit(r)[1] == BURST - 1, r
    db3 = redis_server.client(db=3)
    db0 = redis_server.client(db=0)
    assert db3.exists(redis_key(k)) == 1
    assert db0.exists(redis_key(k)) == 0
    assert db0.dbsize() == 0
    # the bucket in db 3 is the one deciding
    k = fresh("db")
    set_tat(db3, redis_key(k), now_us() + BURST * T_1RM)
    assert_refused(get(c, "/local/", k))
    assert not log_has(n, 0, r"vantage redis: ")


# --------------------------------------------------------------------------
# 8. unix socket

@pytest.mark.parametrize("transport", ["http"])
def test_unix_socket(module_available, nginx_factory, client_for,
                     redis_factory):
    redis = redis_factory(socket_perm="777")
    n = make_nginx(nginx_factory, "rl-unix", "unix:" + redis.unix_path)
    c = client_for(n)
    check_limits_through(c, redis)
    check_redis_decides(c, redis)
    assert not log_has(n, 0, r"vantage redis: ")


@pytest.mark.parametrize("transport", ["http"])
@pytest.mark.log_allow(*ALLOW)
def test_unix_socket_not_reachable_by_workers(module_available,
                                              nginx_factory, client_for,
                                              redis_factory):
    # 0700: the workers (nobody) may not connect: the fallback decides
    redis = redis_factory(socket_perm="700")
    name = "unix:" + redis.unix_path
    n = make_nginx(nginx_factory, "rl-unix-denied", name)
    c = client_for(n)
    k = check_local_burst(c)
    assert log_has(n, 0, r"\[error\] .*vantage redis: connect to %s failed: "
                   r"Permission denied" % re.escape(name))
    assert redis.client().exists(redis_key(k)) == 0


# --------------------------------------------------------------------------
# 9. the client leaves while the Redis reply is pending

def h2_connect(nginx):
    ctx = ssl.create_default_context(cafile=nginx.pki.ca_file)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", nginx.tls_port),
                                   timeout=vh.timeout(5))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def h2_request(s, conn, path, key):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                            (":authority", "localhost"), (":path", path),
                            (KEY_HEADER.lower(), key)],
                      end_stream=True)
    s.sendall(conn.data_to_send())
    return sid


def h2_response(s, conn, sid):
    """(status, headers dict) of stream sid, read to its end."""
    status, headers, ended = None, {}, False
    while not ended:
        data = s.recv(65536)
        assert data, "connection closed"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and \
                    ev.stream_id == sid:
                headers = {k.decode(): v.decode() for k, v in ev.headers}
                status = int(headers[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and \
                    ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and \
                    ev.stream_id == sid:
                raise AssertionError("stream %d reset" % sid)
        out = conn.data_to_send()
        if out:
            s.sendall(out)
    return status, headers


def abandon(nginx, transport, path, key, how):
    """Sends a request, and after 50 ms goes away: closes the connection,
    or (h2, how == "reset") resets the stream and returns the still open
    (socket, h2 connection)."""
    if transport == "http":
        s = socket.create_connection(("127.0.0.1", nginx.http_port),
                                     timeout=vh.timeout(5))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s: %s\r\n\r\n"
                  % (path.encode(), KEY_HEADER.encode(), key.encode()))
        time.sleep(0.05)
        s.close()
        return None
    s, conn = h2_connect(nginx)
    sid = h2_request(s, conn, path, key)
    time.sleep(0.05)
    if how == "reset":
        conn.reset_stream(sid)
        s.sendall(conn.data_to_send())
        return s, conn
    s.close()
    return None


@pytest.mark.parametrize("transport,how", [("http", "close"),
                                           ("h2", "close"), ("h2", "reset")])
@pytest.mark.parametrize("then", ["reply", "timeout"])
@pytest.mark.log_allow(*ALLOW)
def test_client_leaves_while_reply_pending(module_available, nginx_factory,
                                           client_for, redis_server,
                                           transport, how, then):
    """then=reply: Redis answers after the client left (the reply of a
    cancelled call); then=timeout: the timeout fires for it."""
    timeout = "1000ms" if then == "reply" else "150ms"
    addr = redis_server.address
    n = make_nginx(nginx_factory, "rl-cancel", addr, timeout=timeout,
                   failures=3)
    workers = n.workers()
    c = client_for(n)
    assert redis_used(c, redis_server)
    mark = n.log_size()
    access = os.path.join(n.prefix, "access.log")

    k = fresh("gone")
    path = "/local/" + fresh("gone")
    redis_server.pause()
    try:
        kept = abandon(n, transport, path, k, how)
        # the request is gone (access.log: 499) while Redis still has it
        vh.wait_for(lambda: re.search(r'"GET %s HTTP/[12.0]+" 499 ' % path,
                                      vh._read(access)),
                    2, what="the abandoned request to be logged")
        time.sleep(0.05 if then == "reply" else 0.25)
    finally:
        redis_server.resume()

    if then == "reply":
        # the late reply arrives for nobody; the bucket was charged
        vh.wait_for(lambda: redis_server.client().exists(redis_key(k)),
                    2, what="the abandoned request's key")
        assert not log_has(n, mark, NO_ANSWER % (re.escape(addr), 1000))
    else:
        assert log_has(n, mark, NO_ANSWER % (re.escape(addr), 150))

    if kept is not None:
        # the HTTP/2 connection whose stream was reset still serves
        s, conn = kept
        try:
            k2 = fresh("same-conn")
            sid = h2_request(s, conn, "/local/", k2)
            status, headers = h2_response(s, conn, sid)
            assert status == 200, headers
            assert RATELIMIT.match(headers["ratelimit"]), headers
        finally:
            s.close()

    wait_redis_used(c, redis_server, 2)
    check_redis_decides(c, redis_server)
    for i in range(5):
        r = get(c, "/local/", fresh("after"),
                  new_connection=True)
        assert r.status == 200, r
    assert n.workers() == workers, "a worker died"
    assert not log_has(n, mark, r"exited on signal")


# --------------------------------------------------------------------------
# 10. a graceful reload keeps the buckets (they live in Redis)

@pytest.mark.log_allow(*ALLOW)
def test_reload_keeps_redis_state(module_available, nginx_factory,
                                  client_for, redis_server):
    burst = 2
    n = nginx_factory(
        name="rl-reload", worker_processes=1,
        http=vh.RESPONDER_SERVER + redis_directive(redis_server.address),
        server=limited_locations(("local",), burst=burst))
    c = client_for(n)
    k = fresh("reload")
    for i in range(burst):
        r = get(c, "/local/", k)
        assert r.status == 200 and ratelimit(r)[1] == burst - 1 - i, r
    # an idle HTTP/2 connection holds an exiting worker for nginx's
    # lingering_timeout (5 s, nginx itself, not the module): closed first
    c.close()
    old, new = n.reload(wait_old_exit=True)
    assert set(old).isdisjoint(new)
    r = get(c, "/local/", k, new_connection=True)
    assert r.status == 429, r
    assert r.json["error"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert ratelimit(r)[1] == 0
    assert redis_server.client().exists(
        redis_key(k, burst=burst)) == 1
    # a fresh key still gets its burst after the reload, through Redis
    k = fresh("reload")
    r = get(c, "/local/", k, new_connection=True)
    assert r.status == 200 and ratelimit(r)[1] == burst - 1, r
    assert redis_server.client().exists(redis_key(k, burst=burst)) == 1
    assert not log_has(n, 0, r"vantage redis: ")


# --------------------------------------------------------------------------
# the limit key's raw value stays out of error.log, also when it comes from
# the query string (which nginx puts in every request's log lines)

@pytest.mark.parametrize("transport", ["http"])
@pytest.mark.log_allow(*ALLOW)
def test_closed_policy_does_not_log_the_query_string(module_available,
                                                     nginx_factory,
                                                     client_for):
    # nothing listens on the Redis port: every decision falls back
    n = nginx_factory(
        name="rl-qs", worker_processes=1,
        http=vh.RESPONDER_SERVER
        + redis_directive("127.0.0.1:%d" % vh.free_port()),
        server=limited_locations(("local", "closed"), key="$arg_k"))
    c = client_for(n)
    refused = fresh("qs-local")
    for i in range(BURST):
        assert c.get("/local/", params={"k": refused}).status == 200
    assert_refused(c.get("/local/", params={"k": refused}))
    unavailable = fresh("qs-closed")
    r = c.get("/closed/", params={"k": unavailable})
    assert r.status == 503, r
    log = n.log_since(0)
    assert re.search(r'limit "default" exceeded by key "%s"'
                     % redis_key(refused).decode()[12:44], log), log
    assert refused not in log
    assert re.search(r"Redis unavailable and \"vantage_rate_limit_on_error\" "
                     r"is closed", log), log
    assert unavailable not in log, \
        "the raw key value is in error.log:\n" + "\n".join(
            line for line in log.splitlines() if unavailable in line)


# --------------------------------------------------------------------------
# each call's timeout runs from its own deadline: a scripted Redis

class ScriptedRedis:
    """A RESP server on loopback that answers the module's commands in
    order but holds each reply until the test's schedule releases it:
    release(n) gives the release time (time.monotonic()) of the n-th
    BITFIELD's replies (its PEXPIRE's included), None to hold them until
    a later call sets held ones free (see on_bitfield).  BITFIELD replies
    say x = `x`, admitted."""

    def __init__(self, x, on_bitfield, close_after_reply=False):
        self.x = x
        self.on_bitfield = on_bitfield
        self.close_after_reply = close_after_reply
        self.bitfields = []             # arrival times
        self.accepted = 0
        self.cond = threading.Condition()
        self.out = []                   # [reply bytes, release time|None]
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                self.accepted += 1
            threading.Thread(target=self._read, args=(conn,),
                             daemon=True).start()
            threading.Thread(target=self._write, args=(conn,),
                             daemon=True).start()

    @staticmethod
    def _commands(buf):
        """Parses complete RESP arrays off buf: (commands, rest)."""
        cmds = []
        while True:
            if not buf.startswith(b"*") or b"\r\n" not in buf:
                return cmds, buf
            head, rest = buf.split(b"\r\n", 1)
            args = []
            for _ in range(int(head[1:])):
                if b"\r\n" not in rest:
                    return cmds, buf
                blen, after = rest.split(b"\r\n", 1)
                n = int(blen[1:])
                if len(after) < n + 2:
                    return cmds, buf
                args.append(after[:n])
                rest = after[n + 2:]
            cmds.append(args)
            buf = rest

    def _read(self, conn):
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            cmds, buf = self._commands(buf + data)
            with self.cond:
                for args in cmds:
                    name = args[0].upper()
                    if name == b"BITFIELD":
                        self.bitfields.append(time.monotonic())
                        self.release = self.on_bitfield(self,
                                                        len(self.bitfields))
                        reply = b"*5\r\n:%d\r\n:0\r\n:0\r\n:0\r\n:0\r\n" \
                            % self.x
                    elif name == b"PEXPIRE":
                        # the last reply of a request's pipeline
                        reply = b":1\r\n"
                        if self.close_after_reply:
                            reply = (reply, "close")
                    elif name == b"PING":
                        reply = b"+PONG\r\n"
                    else:
                        reply = b"+OK\r\n"
                    self.out.append([reply, self.release])
                self.cond.notify_all()

    def free_held(self, at):
        """Called from on_bitfield: sets the held replies free at `at`."""
        for item in self.out:
            if item[1] is None:
                item[1] = at

    def release_all(self):
        """From the test: sends every held reply now."""
        with self.cond:
            self.free_held(time.monotonic())
            self.cond.notify_all()

    def _write(self, conn):
        while not self.closed:
            with self.cond:
                if not self.out or self.out[0][1] is None:
                    self.cond.wait(0.01)
                    continue
                reply, at = self.out[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self.cond.wait(min(wait, 0.01))
                    continue
                self.out.pop(0)
            close = isinstance(reply, tuple)
            try:
                conn.sendall(reply[0] if close else reply)
                if close:
                    # the reply and the end of the connection together
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    return
            except OSError:
                return

    def close(self):
        self.closed = True
        self.lsock.close()


@pytest.fixture
def scripted_redis():
    made = []

    def make(*a, **kw):
        r = ScriptedRedis(*a, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("transport", ["http"])
@pytest.mark.log_allow(*ALLOW)
def test_reply_timeout_runs_from_each_calls_deadline(module_available,
                                                     nginx_factory,
                                                     client_for,
                                                     scripted_redis):
    """Call A at 0 ms, call B at 100 ms on the same connection, timeout
    200 ms.  Redis answers A when B arrives (100 ms) and B at 250 ms:
    within B's deadline (300 ms), so both are Redis's decisions and
    nothing times out."""

    def schedule(redis, n):
        now = time.monotonic()
        if n == 1:
            return None                 # A: held until B comes
        if n == 2:
            redis.free_held(now)        # A answered now, B 150 ms later
            return now + 0.15
        return now

    # x = (burst - 1) * T: the bucket Redis reports has one unit left, so
    # a Redis decision says r=0 where the (full) local fallback says r=2
    fake = scripted_redis((BURST - 1) * T_1RM, schedule)
    n = make_nginx(nginx_factory, "rl-deadline", fake.address,
                   timeout="200ms", connect_timeout="1s", failures=3)
    vh.wait_for(lambda: fake.accepted >= 1, 2, what="the worker to connect")
    ca, cb = client_for(n), client_for(n)
    out = {}

    def call_a():
        out["a"] = timed_get(ca, "/local/", fresh("deadline-a"))

    ta = threading.Thread(target=call_a)
    ta.start()
    vh.wait_for(lambda: len(fake.bitfields) >= 1, 2, interval=0.001,
                what="call A to reach Redis")
    time.sleep(0.1 - (time.monotonic() - fake.bitfields[0]))
    rb, dtb = timed_get(cb, "/local/", fresh("deadline-b"))
    ta.join(vh.timeout(5))
    ra, dta = out["a"]

    log = n.log_since(0)
    assert len(fake.bitfields) == 2, fake.bitfields
    assert ra.status == 200 and ratelimit(ra)[1] == 0, ra
    assert not re.search(r"did not answer", log), \
        "call B (%.3f s old) timed out at call A's deadline:\n%s" % (
            dtb, "\n".join(line for line in log.splitlines()
                           if "vantage" in line))
    assert rb.status == 200 and ratelimit(rb)[1] == 0, \
        "call B was decided by the fallback: %r" % rb
    assert 0.12 < dtb < vh.timeout(0.2), dtb


@pytest.mark.parametrize("transport", ["http"])
@pytest.mark.log_allow(*ALLOW)
def test_reply_read_with_the_close_is_used(module_available, nginx_factory,
                                           client_for, scripted_redis):
    """Redis answers and closes the connection at once (as it does after
    an error such as "max number of clients reached", or a CLIENT KILL):
    the reply read before the end of the connection still decides.  The
    worker is stopped (SIGSTOP) while the reply and the close arrive, so
    that it reads both in one go."""
    fake = scripted_redis((BURST - 1) * T_1RM, lambda redis, n: None,
                          close_after_reply=True)
    n = make_nginx(nginx_factory, "rl-reply-close", fake.address,
                   timeout="2s", connect_timeout="1s", failures=3)
    vh.wait_for(lambda: fake.accepted >= 1, 2, what="the worker to connect")
    [worker] = n.workers()
    c = client_for(n)
    out = {}
    t = threading.Thread(
        target=lambda: out.update(r=get(c, "/local/", fresh("reply-close"))))
    t.start()
    try:
        vh.wait_for(lambda: fake.bitfields, 2, interval=0.001,
                    what="the request's BITFIELD")
        os.kill(worker, signal.SIGSTOP)
        try:
            fake.release_all()
            time.sleep(0.1)             # the reply and the FIN are queued
        finally:
            os.kill(worker, signal.SIGCONT)
    finally:
        t.join(vh.timeout(5))
    r = out["r"]
    assert len(fake.bitfields) == 1
    assert r.status == 200, r
    assert ratelimit(r)[1] == 0, \
        "Redis's reply was dropped, the fallback decided: %r\n%s" % (
            r, "\n".join(line for line in n.log_since(0).splitlines()
                         if "vantage" in line))
