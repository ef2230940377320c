"""test_worker_engine.py -- vantage-worker runs jobs (docs/WORKER.md).

Real redis-server (appendonly yes, appendfsync always), real workers
started here with a configuration file, jobs dispatched through
worker_harness's own framing, and tests/fakes/http_target.py as the vendor:
it records every delivery raw, so the tests count deliveries and read
their headers and times.  Waits are short and scaled by
VANTAGE_TEST_TIMEOUT.
"""

import calendar
import hashlib
import json
import os
import shutil
import signal
import time

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import (T_BODY, T_CORRELATION_ID, T_HEADER,
                            T_IDEMPOTENCY_KEY, T_JOB_ID, T_JOB_STATE,
                            T_JOB_TYPE, T_ORDERING_KEY, T_TENANT)

# the workers keep jobs in the append-only Redis that tests restart
WORKER_REDIS = "redis"
TOL = 0.2


@pytest.fixture
def workers(worker_factory):
    """workers(conf_text, n=1) -> [Worker] (conftest's worker_factory)."""
    return lambda conf, n=1: worker_factory(conf, n=n)


def conf(target, jobs, worker="", targets="", timeout="1s", vt="6500ms"):
    """jobs: {type: "key = value\n..."}; url paths relative to target.
    conf.c wants visibility_timeout above every job timeout + 5 s."""
    text = wh.CONFIG_HEAD \
        + "visibility_timeout = %s\nshutdown_timeout = 1s\n" \
          "ordering_recheck = 200ms\n" % vt + worker + "\n" + targets + "\n"
    for name, body in jobs.items():
        body = body.replace("URL", target.url(""))
        text += "[job %s]\nconnector = http\ntimeout = %s\n%s\n" \
            % (name, timeout, body)
    return text


def dispatch(w, job_type, body=b"{}", tenant="acme", extra=(), fid=1):
    c = w.client()
    r = c.dispatch(fid, [(T_JOB_TYPE, job_type), (T_TENANT, tenant),
                         (T_BODY, body)] + list(extra))
    return r


def accepted(r):
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def job(rc, jid):
    return {k.decode(): v.decode()
            for k, v in rc.hgetall("{vq}:job:" + jid).items()}


def att(rc, jid):
    return [json.loads(a) for a in rc.lrange("{vq}:att:" + jid, 0, -1)]


def wait_state(rc, jid, state, seconds=10):
    vh.wait_for(lambda: job(rc, jid).get("state") == state, seconds,
                interval=0.05, what="job %s %s" % (jid, state))
    return job(rc, jid)


def status(w, jid, tenant="acme"):
    r = w.client().request(wh.JOB_STATUS, 9, [(T_TENANT, tenant),
                                              (T_JOB_ID, jid)])
    return json.loads(r.get(T_JOB_STATE))


def gaps(reqs):
    return [b["time"] - a["time"] for a, b in zip(reqs, reqs[1:])]


def ord_hash(tenant, key):
    return hashlib.sha256(tenant.encode() + b"\0" + key.encode()) \
        .hexdigest()[:32]


def put_job(rc, jid, job_type, body=b"{}", tenant="acme", n=1, entry=True):
    """Writes a job and (entry) its stream entry as DISPATCH does,
    bypassing the worker's own queue connection."""
    p = rc.pipeline(transaction=True)
    p.hset("{vq}:job:" + jid, mapping={
        "type": job_type, "tenant": tenant, "state": "queued",
        "attempts": 0, "created_ms": int(time.time() * 1000),
        "subject": "", "idempotency_key": "", "correlation_id": "c-" + jid,
        "method": "", "uri": "", "headers": "[]", "body": body})
    if entry:
        p.xadd("{vq}:jobs", {"job": jid, "n": n})
    p.incr("{vq}:inflight")
    p.execute()


def logged(w, msg):
    return [o for o in w.log_lines() if o.get("msg") == msg]


def log_time(o):
    """A log line's "ts" (UTC, ms) in seconds since the epoch."""
    return calendar.timegm(time.strptime(o["ts"][:19],
                                         "%Y-%m-%dT%H:%M:%S")) \
        + float(o["ts"][19:23])


# --------------------------------------------------------------------------

def test_delivery_headers_and_status(workers, target, rc):
    w, = workers(conf(target, {"hook": "url = URL/in\nheader = X-Source: "
                               "vantage\nmethod = PUT"}))
    r = dispatch(w, "hook", b'{"a":1}', extra=[
        (T_CORRELATION_ID, "corr-1"),
        (T_HEADER, b"Content-Type\0application/json"),
        (T_HEADER, b"X-Other\0not-passed")])
    jid = accepted(r)
    vh.wait_for(lambda: target.got("/in"), 5, what="delivery")
    st = wait_state(rc, jid, "succeeded")
    time.sleep(0.3)
    got = target.got("/in")
    assert len(got) == 1
    h = got[0]["headers"]
    assert got[0]["method"] == "PUT"
    assert got[0]["body"] == b'{"a":1}'
    assert h["idempotency-key"] == jid
    assert h["x-correlation-id"] == "corr-1"
    assert h["content-type"] == "application/json"
    assert h["x-source"] == "vantage"
    assert "x-other" not in h
    assert st["attempts"] == "1"
    s = status(w, jid)
    assert s["status"] == "succeeded" and s["attempts"] == 1
    assert s["result"]["status"] == 200
    assert rc.get("{vq}:inflight") == b"0"
    assert rc.xlen("{vq}:jobs") == 0
    assert rc.zscore("{vq}:done", jid) is not None
    logs = [json.loads(l) for l in w.log_text().splitlines()
            if l.startswith("{")]
    line = [o for o in logs if o.get("msg") == "attempt"][0]
    assert line["job"] == jid and line["correlation_id"] == "corr-1"
    assert line["attempt"] == "1" and line["outcome"] == "success"


def test_retry_backoff_bounds(workers, target, rc):
    w, = workers(conf(target, {"flaky": "url = URL/flaky\nbackoff_base = "
                               "200ms\nbackoff_cap = 1s\nmax_attempts = 8"}))
    target.script("/flaky", [(503, {}, b"")] * 4)
    jid = accepted(dispatch(w, "flaky"))
    st = wait_state(rc, jid, "succeeded", 15)
    reqs = target.got("/flaky")
    assert len(reqs) == 5
    assert st["attempts"] == "5"
    for n, g in enumerate(gaps(reqs), start=1):
        ceiling = min(1.0, 0.2 * 2 ** (n - 1))
        assert -0.01 <= g <= ceiling + TOL, (n, g, ceiling)
    a = att(rc, jid)
    assert [x["outcome"] for x in a] == ["retry"] * 4 + ["success"]
    assert [x["status"] for x in a] == [503] * 4 + [200]
    assert [x["n"] for x in a] == [1, 2, 3, 4, 5]


def test_retry_after_honoured(workers, target, rc):
    w, = workers(conf(target, {"rl": "url = URL/rl\nbackoff_base = 10ms"}))
    target.script("/rl", [(429, {"Retry-After": "2"}, b"")])
    jid = accepted(dispatch(w, "rl"))
    vh.wait_for(lambda: target.got("/rl"), 5)
    time.sleep(0.3)
    s = status(w, jid)
    assert s["status"] == "retrying" and s["last_error"] == "HTTP 429"
    first = target.got("/rl")[0]["time"] * 1000
    assert 2000 - 300 <= s["next_attempt_ms"] - first <= 3000 + 300
    wait_state(rc, jid, "succeeded", 8)
    g = gaps(target.got("/rl"))[0]
    assert 2.0 - TOL <= g <= 3.0 + TOL, g


def test_permanent_400_dead_at_once_masked(workers, target, rc):
    w, = workers(conf(target, {"bad": "url = URL/bad"}))
    target.default("/bad", (400, {"Content-Type": "application/json"},
                            b'{"error":"invalid","ssn":"123-45-6789",'
                            b'"account":"123456789012","dob":"1980-01-02"}'))
    jid = accepted(dispatch(w, "bad"))
    st = wait_state(rc, jid, "dead")
    time.sleep(0.3)
    assert len(target.got("/bad")) == 1
    assert st["attempts"] == "1" and st["last_status"] == "400"
    a = att(rc, jid)
    assert len(a) == 1
    assert a[0]["status"] == 400 and a[0]["outcome"] == "dead"
    assert a[0]["error"] == "HTTP 400"
    assert a[0]["body"] == ('{"error":"invalid","ssn":"***-**-****",'
                            '"account":"********9012","dob":"**********"}')
    assert rc.zscore("{vq}:dead", jid) is not None
    assert rc.get("{vq}:inflight") == b"0"
    assert "123-45-6789" not in w.log_text()


def test_max_attempts_then_dead(workers, target, rc):
    w, = workers(conf(target, {"down": "url = URL/down\nbackoff_base = 50ms"
                               "\nmax_attempts = 3"}))
    target.default("/down", (500, {}, b"oops"))
    jid = accepted(dispatch(w, "down"))
    st = wait_state(rc, jid, "dead")
    time.sleep(0.5)
    assert len(target.got("/down")) == 3
    assert st["attempts"] == "3"
    assert [x["outcome"] for x in att(rc, jid)] == ["retry", "retry", "dead"]


def test_max_age_then_dead(workers, target, rc):
    # retries start at their due time now: 5 may fail within max_age, and
    # the default breaker would then hold the job for its 30 s cool-down
    w, = workers(conf(target, {"old": "url = URL/old\nbackoff_base = 200ms"
                               "\nbackoff_cap = 200ms\nmax_attempts = 100"
                               "\nmax_age = 700ms\ntarget = old"},
                      targets="[target old]\nbreaker_failures = 1000\n"
                              "breaker_min_calls = 1000\n"))
    target.default("/old", (503, {}, b""))
    jid = accepted(dispatch(w, "old"))
    st = wait_state(rc, jid, "dead")
    got = target.got("/old")
    # full jitter draws each delay from [0, 200 ms]: ten of them fit in
    # 700 ms one time in twenty, thirty practically never
    assert 2 <= len(got) <= 30, len(got)
    # no attempt starts once the job is older than max_age (give or take
    # the promotion's 100 ms and a loaded machine)
    assert got[-1]["time"] - got[0]["time"] <= 0.7 + 0.5, \
        [g["time"] for g in got]
    assert int(st["finished_ms"]) - int(st["created_ms"]) >= 700


def test_connection_closed_is_retried(workers, target, rc):
    w, = workers(conf(target, {"cl": "url = URL/cl\nbackoff_base = 50ms"}))
    target.script("/cl", [("close",)])
    jid = accepted(dispatch(w, "cl"))
    wait_state(rc, jid, "succeeded")
    a = att(rc, jid)
    assert a[0]["outcome"] == "retry" and a[0]["status"] == 0
    assert a[0]["error"]


def test_kill9_mid_batch_redelivers(workers, target, rc):
    ws = workers(conf(target, {"slow": "url = URL/slow"}), n=2)
    target.delay("/slow", 0.5, 0.8)
    ids = [accepted(dispatch(ws[i % 2], "slow", fid=i)) for i in range(12)]
    vh.wait_for(lambda: len(target.got("/slow")) >= 2, 5)
    ws[0].send_signal(signal.SIGKILL)
    ws[0].wait(5)
    # every delivery the dead worker had begun has reached the target now
    at_kill = {r["headers"]["idempotency-key"] for r in target.got("/slow")}
    for jid in ids:
        wait_state(rc, jid, "succeeded", 30)
    keys = [r["headers"]["idempotency-key"] for r in target.got("/slow")]
    assert set(keys) == set(ids)
    # a duplicate is a job whose delivery was under way at the kill, and it
    # is delivered again once, with the same Idempotency-Key
    dup = {k for k in keys if keys.count(k) > 1}
    assert dup <= at_kill, (dup, at_kill)
    assert all(keys.count(k) == 2 for k in dup), keys
    assert all(k in ids for k in keys)
    assert rc.get("{vq}:inflight") == b"0"


def test_redis_restart_with_aof_loses_nothing(workers, target, redis, rc):
    w, = workers(conf(target, {"r": "url = URL/r\ntarget = r\nbackoff_base = 100ms"},
                      targets="[target r]\nbreaker_failures = 1000\n"
                              "breaker_min_calls = 1000\n"))
    target.default("/r", (503, {}, b""))
    ids = [accepted(dispatch(w, "r", fid=i)) for i in range(5)]
    vh.wait_for(lambda: len(target.got("/r")) >= 5, 5)
    redis.stop()
    redis.start()
    target.default("/r", (200, {}, b"{}"))
    rc2 = redis.client()
    for jid in ids:
        wait_state(rc2, jid, "succeeded", 15)
    assert {r["headers"]["idempotency-key"] for r in target.got("/r")} \
        == set(ids)


def test_backoff_longer_than_visibility_no_duplicate(workers, target, rc):
    ws = workers(conf(target, {"b": "url = URL/b\nbackoff_base = 8s\n"
                               "backoff_cap = 8s"}), n=2)
    target.script("/b", [(503, {}, b"")])
    jid = accepted(dispatch(ws[0], "b"))
    wait_state(rc, jid, "succeeded", 15)
    time.sleep(1.5)
    assert len(target.got("/b")) == 2
    assert len(att(rc, jid)) == 2


def test_ordering_across_three_workers(workers, target, rc):
    ws = workers(conf(target, {"o": "url = URL/o\nordering = on\ntarget = o\n"
                               "backoff_base = 50ms"},
                      targets="[target o]\nmax_concurrency = 8\n"), n=3)
    target.delay("/o", 0.0, 0.08)
    target.script("/o", [(503, {}, b"")] * 3)
    ids = []
    for i in range(8):
        for key in ("k1", "k2", "k3"):
            body = json.dumps({"key": key, "seq": i}).encode()
            ids.append(accepted(dispatch(ws[(i + len(key)) % 3], "o", body,
                                         extra=[(T_ORDERING_KEY, key)],
                                         fid=i)))
    for jid in ids:
        wait_state(rc, jid, "succeeded", 40)
    seen = {}
    for r in target.got("/o"):
        b = json.loads(r["body"])
        seen.setdefault(b["key"], []).append(b["seq"])
    for key, seqs in seen.items():
        # a retried head is delivered again before any later job
        dedup = [s for i, s in enumerate(seqs) if i == 0 or s != seqs[i - 1]]
        assert dedup == list(range(8)), (key, seqs)


@pytest.mark.parametrize("on_dead", ["proceed", "block"])
def test_ordering_on_dead(workers, target, rc, on_dead):
    w, = workers(conf(target, {"d": "url = URL/d\nordering = on\n"
                               "on_dead = " + on_dead}))
    target.script("/d", [(400, {}, b"no")])
    first = accepted(dispatch(w, "d", b'{"seq":0}',
                              extra=[(T_ORDERING_KEY, "K")], fid=1))
    second = accepted(dispatch(w, "d", b'{"seq":1}',
                               extra=[(T_ORDERING_KEY, "K")], fid=2))
    wait_state(rc, first, "dead")
    if on_dead == "proceed":
        wait_state(rc, second, "succeeded")
        return
    time.sleep(1.5)
    assert len(target.got("/d")) == 1
    assert job(rc, second)["state"] == "queued"
    # dlq skip, as WORKER.md says: LREM, then wake the new head
    h = ord_hash("acme", "K")
    rc.lrem("{vq}:ord:" + h, 1, first)
    att_n = int(job(rc, second)["attempts"])
    rc.zadd("{vq}:delayed", {"%s:%d" % (second, att_n + 1):
                             int(time.time() * 1000)})
    wait_state(rc, second, "succeeded")
    assert len(target.got("/d")) == 2


def test_ordering_block_then_replay(workers, target, rc):
    w, = workers(conf(target, {"d": "url = URL/d\nordering = on\n"
                               "on_dead = block"}))
    target.script("/d", [(400, {}, b"no")])
    first = accepted(dispatch(w, "d", b'{"seq":0}',
                              extra=[(T_ORDERING_KEY, "K")], fid=1))
    second = accepted(dispatch(w, "d", b'{"seq":1}',
                               extra=[(T_ORDERING_KEY, "K")], fid=2))
    wait_state(rc, first, "dead")
    time.sleep(1.0)
    assert job(rc, second)["state"] == "queued"
    attempts = int(job(rc, first)["attempts"])
    p = rc.pipeline(transaction=True)
    p.zrem("{vq}:dead", first)
    p.hset("{vq}:job:" + first, "state", "queued")
    p.hdel("{vq}:job:" + first, "next_attempt_ms", "finished_ms")
    p.hincrby("{vq}:job:" + first, "replays", 1)
    p.xadd("{vq}:jobs", {"job": first, "n": attempts + 1})
    p.incr("{vq}:inflight")
    p.execute()
    wait_state(rc, first, "succeeded")
    wait_state(rc, second, "succeeded")
    seqs = [json.loads(r["body"])["seq"] for r in target.got("/d")]
    assert seqs == [0, 0, 1]
    assert job(rc, first)["attempts"] == "2"


def test_idempotency(workers, target, rc):
    w, = workers(conf(target, {"i": "url = URL/i"}))
    key = [(T_IDEMPOTENCY_KEY, "order-1")]
    a = accepted(dispatch(w, "i", b"one", extra=key, fid=1))
    b = dispatch(w, "i", b"one", extra=key, fid=2)
    assert b.status == 202 and b.get(T_JOB_ID).decode() == a
    state = json.loads(b.get(T_JOB_STATE))
    assert state["job_id"] == a
    c = dispatch(w, "i", b"two", extra=key, fid=3)
    assert c.status == 422 and c.error
    d = accepted(dispatch(w, "i", b"one", tenant="other", extra=key, fid=4))
    assert d != a
    wait_state(rc, a, "succeeded")
    wait_state(rc, d, "succeeded")
    e = dispatch(w, "i", b"one", extra=key, fid=5)
    assert e.get(T_JOB_ID).decode() == a
    assert json.loads(e.get(T_JOB_STATE))["status"] == "succeeded"
    time.sleep(0.3)
    assert len(target.got("/i")) == 2


def test_idempotency_claim_in_progress_409(workers, target, rc):
    w, = workers(conf(target, {"i": "url = URL/i"}))
    body = b"x"
    h = ord_hash("acme", "k9")
    sha = hashlib.sha256(body).hexdigest()
    rc.set("{vq}:idem:" + h, "%s %s %d" % ("a" * 32, sha,
                                           int(time.time() * 1000)))
    r = dispatch(w, "i", body, extra=[(T_IDEMPOTENCY_KEY, "k9")])
    assert r.status == 409 and r.retry_after == 1


def test_inflight_cap_503(workers, target, rc):
    w, = workers(conf(target, {"c": "url = URL/c"},
                      worker="inflight_cap = 2\n", timeout="3s", vt="9s"))
    target.default("/c", ("sleep", 2.0))
    accepted(dispatch(w, "c", fid=1))
    accepted(dispatch(w, "c", fid=2))
    keys = set(rc.keys("*"))
    r = dispatch(w, "c", extra=[(T_IDEMPOTENCY_KEY, "z")], fid=3)
    assert r.status == 503 and r.retry_after >= 1
    r = dispatch(w, "c", fid=4)
    assert r.status == 503 and r.retry_after >= 1
    assert set(rc.keys("*")) == keys


def test_unknown_job_type_400(workers, target):
    w, = workers(conf(target, {"c": "url = URL/c"}))
    r = dispatch(w, "nope")
    assert r.status == 400 and r.error == "unknown job type"


def test_breaker_and_per_target_concurrency(workers, target, rc):
    w, = workers(conf(target, {
        "a": "url = URL/a\ntarget = ta\nbackoff_base = 50ms\n"
             "max_attempts = 20",
        "b": "url = URL/b\ntarget = tb"},
        targets="[target ta]\nbreaker_failures = 3\nbreaker_cooldown = 30s\n"
                "[target tb]\nmax_concurrency = 2\n"))
    target.default("/a", (503, {}, b""))
    target.delay("/b", 0.1, 0.1)
    for i in range(4):
        accepted(dispatch(w, "a", fid=i))
    t0 = time.time()
    ids = [accepted(dispatch(w, "b", fid=100 + i)) for i in range(10)]
    for jid in ids:
        wait_state(rc, jid, "succeeded", 10)
    took = time.time() - t0
    # 10 jobs of 0.1 s, 2 at a time: 0.5 s, plus deferrals' 1 s at most
    assert took < 3.0, took
    assert target.max_concurrent("/b") == 2
    # 3 failures open it; attempts already out then (a retry promoted at
    # its due time may be one) still end, but none starts afterwards
    opened = logged(w, "circuit breaker opened")
    assert opened
    at = log_time(opened[0])
    reqs = target.got("/a")
    assert 3 <= len(reqs) <= 3 + 3, len(reqs)
    assert all(r["time"] <= at + 0.005 for r in reqs), \
        [r["time"] - at for r in reqs]


def test_sigterm_releases_to_another_worker(workers, target, rc):
    a, = workers(conf(target, {"s": "url = URL/s"}, timeout="10s",
                      vt="16s"))
    target.script("/s", [("sleep", 5.0), ("sleep", 5.0)])
    ids = [accepted(dispatch(a, "s", fid=i)) for i in range(2)]
    vh.wait_for(lambda: len(target.got("/s")) == 2, 5)
    b, = workers(conf(target, {"s": "url = URL/s"}, timeout="10s",
                      vt="16s"))
    t0 = time.time()
    a.send_signal(signal.SIGTERM)
    assert a.wait(5) == 0
    assert time.time() - t0 < 1.0 + 0.8
    for jid in ids:
        wait_state(rc, jid, "succeeded", 5)
    assert len(target.got("/s")) == 4
    assert "shutdown_timeout" in a.log_text()


def test_retention_trims_done(workers, target, rc):
    w, = workers(conf(target, {"r": "url = URL/r"},
                      worker="done_retention = 500ms\n"
                             "idempotency_window = 500ms\n"))
    jid = accepted(dispatch(w, "r"))
    wait_state(rc, jid, "succeeded")
    vh.wait_for(lambda: not rc.exists("{vq}:job:" + jid), 3,
                what="retention")
    assert not rc.exists("{vq}:att:" + jid)
    assert rc.zscore("{vq}:done", jid) is None


def test_wrong_redis_password_logged_and_retried(base_dir, redis_factory,
                                                 target):
    """The engine checks AUTH's reply on every connection it makes: when
    Redis's password changes under a running worker (main.c checks it only
    at start), a refused password is logged, nothing else is sent on that
    connection, and the engine tries again with a growing wait."""
    if not wh.worker_available():
        pytest.skip("worker not built")
    r = redis_factory(password="right-pass-1")
    pw = os.path.join(base_dir, "redis-pw-%d" % os.getpid())
    with open(pw, "w") as f:
        f.write("right-pass-1\n")
    text = ("[worker]\nlisten = {listen}\nredis = {redis}\n"
            "redis_password_file = %s\nvisibility_timeout = 6500ms\n"
            "[job j]\nconnector = http\ntimeout = 1s\nurl = %s\n"
            % (pw, target.url("/j")))
    w = wh.Worker(base_dir, r.address, config=text)
    refused = "Redis refused the engine's password: taking no job"
    try:
        w.start()
        rc = r.client()
        rc.config_set("requirepass", "rotated-pass-2")
        rc.client_kill_filter(_type="normal", skipme=True)
        vh.wait_for(lambda: len([o for o in logged(w, refused)
                                 if o.get("connection") == "writer"]) >= 2,
                    8, what="two refusals of the writer's password")
        refusals = [o for o in logged(w, refused)
                    if o.get("connection") == "writer"]
        assert all("WRONGPASS" in o["reason"] for o in refusals), refusals
        # nothing sent behind a refused AUTH: no NOAUTH from XGROUP CREATE
        assert not logged(w, "cannot create the consumer group")
        assert not [o for o in logged(w, "XREADGROUP failed")
                    if "NOAUTH" in o.get("reason", "")]
        ts = [log_time(o) for o in refusals]
        assert ts[1] - ts[0] >= 0.45, ts
        # the queue's own connection is refused as well: PING says so
        why = "the worker is not ready: Redis refused the password"
        p = vh.wait_for(lambda: (lambda p: p if p is not None
                                 and p.error == why else None)(
                                     w.ping_reply()), 5,
                        what="PING 503, the password refused")
        assert (p.status, p.retry_after) == (503, 1), p
        # the password comes back: the engine picks it up alone
        rc.config_set("requirepass", "right-pass-1")
        jid = "e" * 32
        put_job(rc, jid, "j")
        wait_state(rc, jid, "succeeded", 40)
        assert logged(w, "engine reconnected to Redis")
        assert "right-pass-1" not in w.log_text()
    finally:
        w.close(keep=True)
        os.unlink(pw)


def test_retries_promoted_at_their_due_time(workers, target, rc):
    """The promotion timer sleeps until the earliest due member, not a
    fixed 100 ms tick: a retry starts within a few ms of next_attempt_ms.
    A member added by someone else is still seen within the 100 ms cap."""
    w, = workers(conf(target, {"p": "url = URL/p\ntarget = p\n"
                               "backoff_base = 80ms\nbackoff_cap = 80ms\n"
                               "max_attempts = 20"},
                      targets="[target p]\nbreaker_failures = 1000\n"
                              "breaker_min_calls = 1000\n"))
    target.script("/p", [(503, {}, b"")] * 12)
    jid = accepted(dispatch(w, "p"))
    dues = {}
    deadline = time.monotonic() + vh.timeout(20)
    while time.monotonic() < deadline:
        st, n, due = rc.hmget("{vq}:job:" + jid, "state", "attempts",
                              "next_attempt_ms")
        if st == b"retrying":
            dues[int(n) + 1] = int(due)
        if st == b"succeeded":
            break
        time.sleep(0.002)
    assert job(rc, jid)["state"] == "succeeded"
    reqs = target.got("/p")
    assert len(reqs) == 13
    late = [reqs[n - 1]["time"] * 1000 - due for n, due in dues.items()]
    assert len(late) >= 8, dues
    assert min(late) >= -5, late                 # never early
    assert max(late) <= 200, late
    assert sum(late) / len(late) < 30, late     # a 100 ms tick: ~50
    for n, g in enumerate(gaps(reqs), start=1):
        assert -0.01 <= g <= 0.08 + TOL, (n, g)
    # another worker's member: no nearer wake-up, seen within the cap
    other = "d" * 32
    put_job(rc, other, "p", entry=False)
    due = int(time.time() * 1000) + 30
    rc.zadd("{vq}:delayed", {other + ":1": due})
    wait_state(rc, other, "succeeded", 5)
    lag = target.got("/p")[-1]["time"] * 1000 - due
    assert -5 <= lag <= 100 + 200, lag


def test_idle_consumers_removed_deleted_entries_logged(workers, target, rc):
    """After a reclaim, consumers with nothing pending and idle for 10
    visibility timeouts leave the group; entries deleted from the stream
    while pending (XAUTOCLAIM's third element) are logged, not run."""
    # no job type: visibility_timeout may be short, so 10 x is 3 s
    w, = workers(wh.CONFIG_HEAD + "visibility_timeout = 300ms\n")
    vh.wait_for(lambda: rc.exists("{vq}:jobs"), 5, what="the group")
    rc.xgroup_createconsumer("{vq}:jobs", "vantage", "ghost-old")
    # a ghost that held an entry that was then deleted, in one
    # transaction so that the worker's own read never sees it
    eid = "%d-0" % (time.time() * 1000 + 1000)
    p = rc.pipeline(transaction=True)
    p.xadd("{vq}:jobs", {"job": "f" * 32, "n": 1}, id=eid)
    p.xclaim("{vq}:jobs", "vantage", "ghost-del", 0, [eid], force=True,
             justid=True)
    p.xdel("{vq}:jobs", eid)
    p.execute()
    assert rc.xpending("{vq}:jobs", "vantage")["pending"] == 1
    vh.wait_for(lambda: logged(w, "reclaim met entries deleted from the "
                               "stream: no longer pending"), 5,
                what="the deleted entry")
    assert rc.xpending("{vq}:jobs", "vantage")["pending"] == 0
    time.sleep(1.5)
    rc.xgroup_createconsumer("{vq}:jobs", "vantage", "ghost-new")
    vh.wait_for(lambda: {o["consumer"] for o in logged(
        w, "removed an idle consumer")} >= {"ghost-old", "ghost-del"}, 8,
        what="the idle consumers removed")
    names = {c["name"].decode() for c in
             rc.xinfo_consumers("{vq}:jobs", "vantage")}
    assert "ghost-old" not in names and "ghost-del" not in names
    assert "ghost-new" in names
    assert [n for n in names if n.endswith(":%d" % w.pid)], names
    assert all(o["pending"] == "0"
               for o in logged(w, "removed an idle consumer"))


def test_breaker_opening_releases_runs_waiting_in_memory(workers, target,
                                                         rc):
    """A run waiting in memory for a slot of a target whose breaker opens
    goes back to delayed (due when a probe may go) rather than waiting for
    a slot that no attempt will ever free."""
    w, = workers(conf(target, {"w": "url = URL/w\ntarget = tw\n"
                               "max_attempts = 1"},
                      targets="[target tw]\nmax_concurrency = 1\n"
                              "breaker_failures = 1\nbreaker_cooldown = 1s\n"))
    target.delay("/w", 0.3, 0.3)
    target.script("/w", [(503, {}, b"")])
    # the first fails and is dead at once: no later attempt of this target
    # frees a slot for the second, which waits in memory meanwhile
    first = accepted(dispatch(w, "w", fid=1))
    second = accepted(dispatch(w, "w", fid=2))
    wait_state(rc, first, "dead", 5)
    wait_state(rc, second, "succeeded", 6)
    assert target.max_concurrent("/w") == 1
    assert rc.get("{vq}:inflight") == b"0"
    assert "circuit breaker opened" in w.log_text()
    assert "circuit breaker closed" in w.log_text()


def test_attempt_log_lines_complete_and_free_of_secrets(workers, target, rc,
                                                        base_dir):
    """Every attempt logs one line with job, correlation id, attempt,
    outcome, status, duration and target; no line holds a secret_header's
    value or an SSN of the job's body, even when the vendor echoes both
    back in its error body (which is kept masked in {vq}:att)."""
    secret = "Bearer s3cr3t-T0KEN-%d" % os.getpid()
    path = os.path.join(base_dir, "echo-secret-%d" % os.getpid())
    with open(path, "w") as f:
        f.write(secret + "\n")
    try:
        w, = workers(conf(target, {"e": "url = URL/echo\ntarget = te\n"
                                   "secret_header = Authorization %s\n"
                                   "backoff_base = 50ms" % path},
                          targets="[target te]\n"))
        target.script("/echo", [("echo", 503)])
        target.default("/echo", ("echo", 422))
        body = b'{"name":"Ann","ssn":"123-45-6789"}'
        jid = accepted(dispatch(w, "e", body, extra=[
            (T_CORRELATION_ID, "corr-echo")]))
        wait_state(rc, jid, "dead")
        reqs = target.got("/echo")
        assert len(reqs) == 2
        assert reqs[0]["headers"]["authorization"] == secret
        time.sleep(0.2)
        lines = logged(w, "attempt")
        assert [(o["attempt"], o["outcome"], o["status"]) for o in lines] \
            == [("1", "retry", "503"), ("2", "dead", "422")]
        for o in lines:
            assert o["job"] == jid and o["correlation_id"] == "corr-echo"
            assert o["target"] == "te"
            assert 0 <= int(o["ms"]) < 5000
        text = w.log_text()
        assert secret not in text and "s3cr3t" not in text
        assert "123-45-6789" not in text
        kept = [a["body"] for a in att(rc, jid)]
        assert all("s3cr3t" not in b and "123-45-6789" not in b
                   for b in kept), kept
        assert all("***-**-****" in b for b in kept), kept
    finally:
        os.unlink(path)


class ValgrindWorker(wh.Worker):
    """The worker under valgrind's memcheck: an error, or a definite leak
    at exit, makes it exit with 99."""

    def command(self):
        return ["valgrind", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--error-exitcode=99",
                "--num-callers=30"] + super().command()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("valgrind"), reason="no valgrind")
def test_engine_under_valgrind(base_dir, redis, target):
    """A few jobs of every kind (two successes, a retry then a success, a
    dead letter, an ordered pair), then SIGTERM: the worker drains and
    exits 0 under memcheck, with no error and no definite leak."""
    if not wh.worker_available():
        pytest.skip("worker not built")
    text = conf(target, {"ok": "url = URL/ok",
                         "flaky": "url = URL/flaky\nbackoff_base = 50ms",
                         "bad": "url = URL/bad",
                         "ord": "url = URL/ord\nordering = on"},
                timeout="2s", vt="8s")
    target.script("/flaky", [(503, {}, b"")])
    target.default("/bad", (400, {}, b'{"ssn":"123-45-6789"}'))
    w = ValgrindWorker(base_dir, redis.address, config=text)
    rc = redis.client()
    try:
        w.start(seconds=60)
        ids = [accepted(dispatch(w, "ok", fid=1, body=b"1")),
               accepted(dispatch(w, "ok", fid=2, body=b"2")),
               accepted(dispatch(w, "flaky", fid=3)),
               accepted(dispatch(w, "bad", fid=4))]
        ordered = [accepted(dispatch(w, "ord", b'{"seq":%d}' % i, fid=5 + i,
                                     extra=[(T_ORDERING_KEY, "K")]))
                   for i in range(2)]
        for jid in ids[:3] + ordered:
            wait_state(rc, jid, "succeeded", 60)
        wait_state(rc, ids[3], "dead", 60)
        assert [json.loads(r["body"])["seq"]
                for r in target.got("/ord")] == [0, 1]
        assert len(target.got("/flaky")) == 2
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        code = w.wait(60)
        took = time.monotonic() - t0
        log = w.log_text()
        assert code == 0, (code, log[-6000:])
        assert "Memcheck" in log and "ERROR SUMMARY: 0 errors" in log, \
            log[-6000:]
        assert "drained" in log
        # the idle drain ends when the blocked XREADGROUP returns (1 s),
        # not at shutdown_timeout's end, even under valgrind's slowdown
        assert took < 10, took
        assert "definitely lost" not in log, log[-6000:]
        assert "Invalid read" not in log and "uninitialised" not in log
    finally:
        w.close(keep=True)


def test_entry_without_job_and_type_removed_by_reload(workers, target, rc):
    """An entry whose job hash is gone is acknowledged, deleted and logged,
    and leaves no hash behind.  A job whose type a SIGHUP removed is not
    lost: it is dead at once with a clear error, kept for a replay."""
    w, = workers(conf(target, {"keep": "url = URL/k", "gone": "url = URL/g"}))
    ghost = "a" * 32
    rc.xadd("{vq}:jobs", {"job": ghost, "n": 1})
    vh.wait_for(lambda: logged(w, "entry names no job: dropped"), 5,
                what="the dropped entry")
    vh.wait_for(lambda: rc.xlen("{vq}:jobs") == 0, 5)
    assert not rc.exists("{vq}:job:" + ghost)
    assert rc.xpending("{vq}:jobs", "vantage")["pending"] == 0
    # the type goes; a job of it was already accepted
    path = w.config_file
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[:text.index("[job gone]")])
    w.send_signal(signal.SIGHUP)
    vh.wait_for(lambda: logged(w, "configuration reloaded"), 5)
    jid = "b" * 32
    put_job(rc, jid, "gone")
    st = wait_state(rc, jid, "dead")
    assert st["last_error"] == "no configuration for this job type"
    assert rc.zscore("{vq}:dead", jid) is not None
    assert rc.get("{vq}:inflight") == b"0"
    assert not target.got("/g")


def test_max_age_while_the_breaker_is_open(workers, target, rc):
    # two failures open the breaker for 30 s; max_age ends long before
    w, = workers(conf(target, {"brk": "url = URL/brk\nbackoff_base = 100ms"
                               "\nbackoff_cap = 100ms\nmax_attempts = 100"
                               "\nmax_age = 1500ms\ntarget = t_brk"},
                      targets="[target t_brk]\nbreaker_failures = 2\n"
                              "breaker_cooldown = 30s\n"))
    target.default("/brk", (503, {}, b""))
    jid = accepted(dispatch(w, "brk"))
    st = wait_state(rc, jid, "dead", seconds=6)
    assert len(target.got("/brk")) == 2         # no attempt while open
    age = int(st["finished_ms"]) - int(st["created_ms"])
    assert 1500 <= age <= 1500 + 1200, age
    last = att(rc, jid)[-1]
    assert last["outcome"] == "dead"
    assert "circuit breaker" in last["error"]


# --------------------------------------------------------------------------
# a target's connection: proxy, connect timeout

class _ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1 (absolute-form request targets,
    RFC 9112 3.2.2) that records each request line and relays it."""

    def __init__(self):
        import http.server
        import urllib.request

        proxy = self
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def relay(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                proxy.seen.append((self.command, self.path))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection",
                                                "connection", "host")}
                req = urllib.request.Request(self.path, data=body,
                                             headers=headers,
                                             method=self.command)
                opener = urllib.request.build_opener(
                    urllib.request.ProxyHandler({}))
                try:
                    with opener.open(req, timeout=5) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = relay

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        import threading
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forward_proxy():
    p = _ForwardProxy()
    yield p
    p.close()


def test_target_proxy(workers, target, rc, forward_proxy):
    """proxy = <url>: the job goes through it, in absolute form."""
    w, = workers(conf(target, {"viaproxy": "url = URL/px\ntarget = px"},
                      targets="[target px]\nproxy = %s\n" % forward_proxy.url))
    jid = accepted(dispatch(w, "viaproxy", b'{"p":1}'))
    wait_state(rc, jid, "succeeded")
    assert forward_proxy.seen == [("POST", target.url("/px"))]
    got = target.got("/px")
    assert len(got) == 1 and got[0]["body"] == b'{"p":1}'


def test_target_proxy_none_ignores_the_environment(workers, target, rc,
                                                   monkeypatch):
    """proxy = none: straight to the target, though http_proxy names a
    proxy that is not there (which a target without the key obeys)."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:%d" % vh.free_port())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    w, = workers(conf(target, {
        "direct": "url = URL/direct\ntarget = direct",
        "envproxy": "url = URL/env\nbackoff_base = 10s\nmax_attempts = 2"},
        targets="[target direct]\nproxy = none\n"))
    jid = accepted(dispatch(w, "direct"))
    wait_state(rc, jid, "succeeded")
    assert len(target.got("/direct")) == 1
    jid = accepted(dispatch(w, "envproxy", fid=2))
    vh.wait_for(lambda: att(rc, jid), 5, what="the first attempt")
    a = att(rc, jid)[0]
    assert (a["outcome"], a["status"]) == ("retry", 0), a
    assert target.got("/env") == []


def test_target_connect_timeout(workers, target, rc):
    """connect_timeout bounds the connection alone: a listener whose
    backlog is full never completes the handshake, and the attempt ends
    after connect_timeout, well before the job's timeout."""
    import socket
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    port = lsn.getsockname()[1]
    fill = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fill.append(s)
        time.sleep(0.2)
        w, = workers(conf(target, {
            "stuck": "url = http://127.0.0.1:%d/x\ntarget = stuck\n"
                     "backoff_base = 10s\nmax_attempts = 2" % port},
            targets="[target stuck]\nconnect_timeout = 300ms\n",
            timeout="4s", vt="9500ms"))
        jid = accepted(dispatch(w, "stuck"))
        vh.wait_for(lambda: att(rc, jid), 5, what="the first attempt")
        a = att(rc, jid)[0]
        assert (a["outcome"], a["status"]) == ("retry", 0), a
        assert a["error"] == "no connection within 300 ms " \
            "(connect_timeout)", a
        assert a["ms"] < 2000, a
    finally:
        for s in fill:
            s.close()
        lsn.close()
