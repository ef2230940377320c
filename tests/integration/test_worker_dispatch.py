"""test_worker_dispatch.py -- vantage-worker: its socket server and DISPATCH.

The worker alone (no nginx): frames written with worker_harness's own
encoder over the worker's Unix socket, a real redis-server behind it, and
the replies and Redis contents checked against the increment's spec
(PING, DISPATCH persisted in one MULTI/EXEC, validation, 413/501/503,
framing errors, pipelining, split writes, concurrent connections, Redis
going away and coming back, signals, the command line).
"""

import json
import math
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import (DISPATCH, FETCH, JOB_STATUS, PING, REPLY,
                            T_BODY, T_CORRELATION_ID, T_ERROR, T_HEADER,
                            T_IDEMPOTENCY_KEY, T_JOB_ID, T_JOB_STATE,
                            T_JOB_TYPE, T_METHOD, T_RETRY_AFTER, T_STATUS,
                            T_SUBJECT, T_TENANT, T_URI, OPTIONAL, u32)


HEX32 = re.compile(rb"[0-9a-f]{32}")
STREAM = b"{vq}:jobs"
MINIMAL_KEYS = {b"type", b"tenant", b"state", b"attempts", b"created_ms"}
UNAVAILABLE = "the job queue is unavailable"


def job_key(job_id):
    if isinstance(job_id, str):
        job_id = job_id.encode()
    return b"{vq}:job:" + job_id


def now_ms():
    return time.time() * 1000.0


# --------------------------------------------------------------------------
# fixtures

# --------------------------------------------------------------------------
# helpers

def fields(job_type="http", tenant="acme", extra=()):
    return wh.dispatch_fields(job_type, tenant, extra)


def accepted(reply, fid):
    """Checks a 202 DISPATCH reply and returns its job id (bytes)."""
    assert reply.type == DISPATCH | REPLY, reply
    assert reply.id == fid, reply
    assert reply.status == 202, reply
    assert sorted(reply.tags()) == [T_STATUS, T_JOB_ID, T_JOB_STATE], reply
    job_id = reply.get(T_JOB_ID)
    assert HEX32.fullmatch(job_id), reply
    state = reply.get(T_JOB_STATE)
    assert json.loads(state) == {"job_id": job_id.decode(),
                                 "status": "queued"}, reply
    assert state == b'{"job_id":"%s","status":"queued"}' % job_id, reply
    return job_id


def refused(reply, fid, status, error=None, ftype=DISPATCH):
    assert reply.type == ftype | REPLY, reply
    assert reply.id == fid, reply
    assert reply.status == status, reply
    assert reply.get(T_JOB_ID) is None, reply
    assert reply.error, reply
    if error is not None:
        assert reply.error == error, reply
    return reply


def stream(rc):
    return rc.xrange(STREAM)


def job_keys(rc):
    return sorted(rc.keys(b"{vq}:job:*"))


# --------------------------------------------------------------------------
# 1. PING

@pytest.mark.parametrize("fid", [0x0102030405060708, 2 ** 64 - 1, 0, 1],
                         ids=["0x0102030405060708", "2**64-1", "0", "1"])
def test_ping(worker, fid):
    c = worker.client()
    r = c.ping(fid)
    assert r.type == PING | REPLY == 0x81, r
    assert r.id == fid, r
    assert r.fields == [(T_STATUS, u32(200))], r
    assert r.status == 200


def test_ping_pipelined_keeps_ids(worker):
    c = worker.client()
    ids = [0x0102030405060708, 2 ** 64 - 1, 7, 2 ** 63]
    c.send_raw(b"".join(wh.encode_frame(PING, i) for i in ids))
    got = [c.recv_frame() for _ in ids]
    assert sorted(r.id for r in got) == sorted(ids)
    assert all(r.type == 0x81 and r.status == 200 for r in got), got


NOT_READY = "the worker is not ready: "


def test_ping_503_until_redis_is_up(worker_factory, redis_factory):
    """A worker started before its Redis: PING says why it takes no work,
    and turns 200 once the queue's connection has checked Redis."""
    r = redis_factory(start=False)
    w = worker_factory(redis=r.address, start=False)
    w.wait_ready = False
    worker_factory.start(w)
    # the queue's first connection has failed (the reason is set with
    # this line, in the same callback)
    vh.wait_for(lambda: any(o.get("msg") == "cannot connect to Redis"
                            for o in w.log_lines()), 5,
                what="the queue's failed connection")
    for fid in (1, 2):
        p = w.client().ping(fid)
        assert (p.type, p.id) == (PING | REPLY, fid), p
        assert p.fields == [
            (T_STATUS, u32(503)),
            (T_ERROR, (NOT_READY + "cannot connect to Redis (Connection "
                       "refused)").encode()),
            (T_RETRY_AFTER, u32(1))], p
    refused(w.client().dispatch(3, fields()), 3, 503, UNAVAILABLE)

    r.start()
    p = w.wait_ping(200, seconds=5)
    assert p.fields == [(T_STATUS, u32(200))], p
    # 200 means what it says: a DISPATCH is taken at once
    accepted(w.client().dispatch(4, fields()), 4)
    assert '"msg":"Redis keeps every job"' in w.log_text()


def test_worker_start_says_why_it_is_not_ready(worker_factory, redis_factory):
    """The harness waits for PING 200; when it does not come, its error
    shows the last answer and the worker's log."""
    r = redis_factory(start=False)
    w = worker_factory(redis=r.address, start=False)
    with pytest.raises(RuntimeError) as e:
        w.start(seconds=1.5)
    msg = str(e.value)
    assert "vantage-worker did not answer PING with 200 within" in msg, msg
    assert ("the last answer: 503 'the worker is not ready: cannot connect "
            "to Redis (Connection refused)'") in msg, msg
    assert '"msg":"cannot connect to Redis"' in msg, msg
    assert not w.running()


def test_ping_503_while_redis_is_away(worker, redis_server):
    assert worker.client().ping(1).status == 200
    redis_server.stop()

    def not_ready():
        p = worker.ping_reply()
        return p if p is not None and p.status == 503 else None

    p = vh.wait_for(not_ready, 5, what="PING 503")
    assert p.error in (NOT_READY + "the connection to Redis was lost",
                       NOT_READY + "cannot connect to Redis (Connection "
                       "refused)"), p
    assert p.retry_after == 1, p
    redis_server.restart()
    assert worker.wait_ping(200, seconds=5).status == 200
    accepted(worker.client().dispatch(2, fields()), 2)


def test_listening_socket_log_and_stale_socket(worker_factory):
    w = worker_factory(start=False)
    # a stale socket file: bound, then the listener went away
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(w.socket_path)
    s.close()
    assert stat.S_ISSOCK(os.stat(w.socket_path).st_mode)
    w.start()
    st = os.stat(w.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    # listen_mode's default; without -c there is no other
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert w.client().ping(9).status == 200
    lines = [l for l in w.log_text().splitlines() if l.strip()]
    assert lines, "nothing logged"
    logged = []
    for l in lines:
        obj = json.loads(l)        # every line is a JSON object
        assert isinstance(obj, dict) and "level" in obj and "msg" in obj, l
        logged.append(obj)
    assert any(o.get("msg") == "listening" and
               o.get("socket") == w.socket_path for o in logged), lines


# --------------------------------------------------------------------------
# 2-4. DISPATCH persisted

def test_dispatch_minimal(worker, rc):
    c = worker.client()
    fid = 0x0102030405060708
    t0 = math.floor(now_ms())
    r = c.dispatch(fid, fields("http", "acme"))
    t1 = math.ceil(now_ms())
    job_id = accepted(r, fid)

    h = rc.hgetall(job_key(job_id))
    assert set(h) == MINIMAL_KEYS, h
    assert h[b"type"] == b"http"
    assert h[b"tenant"] == b"acme"
    assert h[b"state"] == b"queued"
    assert h[b"attempts"] == b"0"
    assert re.fullmatch(rb"[0-9]+", h[b"created_ms"]), h
    assert t0 <= int(h[b"created_ms"]) <= t1, (t0, h[b"created_ms"], t1)

    entries = stream(rc)
    assert len(entries) == 1, entries
    assert entries[0][1] == {b"job": job_id, b"n": b"1"}, entries
    assert job_keys(rc) == [job_key(job_id)]


def test_dispatch_full(worker, rc):
    body = b"\x00binary\xff\x00\xfe" + bytes(range(256)) + b"\x00"
    headers = [(b"X-Tag", b"a"),
               (b"Content-Type", b"application/octet-stream"),
               (b"X-Tag", b"b"),
               (b"X-Quote", b'say "hi" \\ ok'),
               (b"X-Empty", b"")]
    extra = [(T_SUBJECT, "user-42@example.com"),
             (T_IDEMPOTENCY_KEY, "idem-7f3a-0001"),
             (T_CORRELATION_ID, "corr-abc-123"),
             (T_METHOD, "POST"),
             (T_URI, "/v1/jobs/http?x=1&y=%20z")]
    extra += [(T_HEADER, n + b"\x00" + v) for n, v in headers]
    extra.append((T_BODY, body))
    c = worker.client()
    r = c.dispatch(77, fields("salesforce.contact.upsert", "acme-eu_1",
                              extra))
    job_id = accepted(r, 77)

    h = rc.hgetall(job_key(job_id))
    assert set(h) == MINIMAL_KEYS | {
        b"subject", b"idempotency_key", b"correlation_id", b"method",
        b"uri", b"body", b"headers"}, sorted(h)
    assert h[b"type"] == b"salesforce.contact.upsert"
    assert h[b"tenant"] == b"acme-eu_1"
    assert h[b"state"] == b"queued"
    assert h[b"attempts"] == b"0"
    assert h[b"subject"] == b"user-42@example.com"
    assert h[b"idempotency_key"] == b"idem-7f3a-0001"
    assert h[b"correlation_id"] == b"corr-abc-123"
    assert h[b"method"] == b"POST"
    assert h[b"uri"] == b"/v1/jobs/http?x=1&y=%20z"
    assert h[b"body"] == body
    assert json.loads(h[b"headers"]) == [[n.decode(), v.decode()]
                                         for n, v in headers], h[b"headers"]

    entries = stream(rc)
    assert [e[1] for e in entries] == [
        {b"job": job_id, b"n": b"1"}]


def test_dispatch_no_headers_no_headers_field(worker, rc):
    c = worker.client()
    job_id = accepted(c.dispatch(5, fields(extra=[(T_BODY, b"{}")])), 5)
    h = rc.hgetall(job_key(job_id))
    assert set(h) == MINIMAL_KEYS | {b"body"}, h
    assert h[b"body"] == b"{}"


def test_dispatch_one_mib_body(worker, rc):
    body = os.urandom(1 << 20)
    c = worker.client()
    r = c.dispatch(3, fields(extra=[(T_BODY, body)]), seconds=10)
    job_id = accepted(r, 3)
    got = rc.hget(job_key(job_id), b"body")
    assert len(got) == len(body)
    assert got == body
    assert rc.xlen(STREAM) == 1


def test_dispatch_limits_accepted(worker, rc):
    """The longest job type and tenant, every allowed byte in them."""
    job_type = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._-")
    job_type = (job_type * 3)[:128]
    tenant = "".join(chr(c) for c in range(0x21, 0x7f))
    tenant = (tenant * 2)[:128]
    c = worker.client()
    job_id = accepted(c.dispatch(11, fields(job_type, tenant)), 11)
    h = rc.hgetall(job_key(job_id))
    assert h[b"type"] == job_type.encode()
    assert h[b"tenant"] == tenant.encode()
    assert stream(rc)[0][1] == {b"job": job_id, b"n": b"1"}


def test_dispatch_tenant_with_space(worker, rc):
    """A space is printable ASCII."""
    c = worker.client()
    job_id = accepted(c.dispatch(12, fields("http", "acme corp")), 12)
    assert rc.hget(job_key(job_id), b"tenant") == b"acme corp"


def test_dispatch_ids_differ(worker, rc):
    c = worker.client()
    ids = [accepted(c.dispatch(i, fields()), i) for i in range(1, 6)]
    assert len(set(ids)) == 5
    # one entry each, in the order the jobs were accepted
    assert [e[1][b"job"] for e in stream(rc)] == ids


def test_dispatch_over_redis_unix_socket(worker_factory, redis_server, rc):
    w = worker_factory(redis="unix:" + redis_server.unix_path)
    job_id = accepted(w.client().dispatch(4, fields()), 4)
    assert rc.hget(job_key(job_id), b"state") == b"queued"
    assert rc.xlen(STREAM) == 1


# --------------------------------------------------------------------------
# 5. validation

BAD_REQUESTS = [
    ("no-job-type", [(T_TENANT, "acme")]),
    ("no-tenant", [(T_JOB_TYPE, "http")]),
    ("no-fields", []),
    ("empty-job-type", [(T_JOB_TYPE, ""), (T_TENANT, "acme")]),
    ("empty-tenant", [(T_JOB_TYPE, "http"), (T_TENANT, "")]),
    ("job-type-space", [(T_JOB_TYPE, "http x"), (T_TENANT, "acme")]),
    ("job-type-slash", [(T_JOB_TYPE, "a/b"), (T_TENANT, "acme")]),
    ("job-type-129", [(T_JOB_TYPE, "a" * 129), (T_TENANT, "acme")]),
    ("tenant-129", [(T_JOB_TYPE, "http"), (T_TENANT, "t" * 129)]),
    ("tenant-control-char", [(T_JOB_TYPE, "http"), (T_TENANT, b"ac\x01me")]),
    ("tenant-newline", [(T_JOB_TYPE, "http"), (T_TENANT, b"acme\n")]),
    ("tenant-nul", [(T_JOB_TYPE, "http"), (T_TENANT, b"acme\x00")]),
    ("tenant-del", [(T_JOB_TYPE, "http"), (T_TENANT, b"acme\x7f")]),
    ("tenant-non-ascii", [(T_JOB_TYPE, "http"), (T_TENANT, b"acm\xc3\xa9")]),
    ("header-without-nul", fields(extra=[(T_HEADER, b"X-A: 1")])),
    ("job-type-repeated", fields(extra=[(T_JOB_TYPE, "http")])),
    ("tenant-repeated", fields(extra=[(T_TENANT, "acme")])),
    ("body-repeated", fields(extra=[(T_BODY, b"a"), (T_BODY, b"b")])),
    ("uri-repeated", fields(extra=[(T_URI, "/a"), (T_URI, "/b")])),
    ("status-in-request", fields(extra=[(T_STATUS, u32(200))])),
    ("job-id-in-request", fields(extra=[(T_JOB_ID, "0" * 32)])),
    ("unknown-tag-99", fields(extra=[(99, b"x")])),
]


@pytest.mark.parametrize("case", [b[1] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
def test_dispatch_invalid_400(worker, rc, case):
    before = rc.dbsize()
    c = worker.client()
    r = c.dispatch(0x0102030405060708, case)
    refused(r, 0x0102030405060708, 400)
    assert r.get(T_JOB_STATE) is None, r
    assert rc.dbsize() == before
    assert rc.xlen(STREAM) == 0
    assert job_keys(rc) == []
    # the frame was refused, not the connection
    assert c.ping(2).status == 200
    job_id = accepted(c.dispatch(3, fields()), 3)
    assert rc.xlen(STREAM) == 1
    assert job_keys(rc) == [job_key(job_id)]


def test_dispatch_unknown_optional_tag_ignored(worker, rc):
    c = worker.client()
    r = c.dispatch(21, fields(extra=[(OPTIONAL | 99, b"ignore me")]))
    job_id = accepted(r, 21)
    assert set(rc.hgetall(job_key(job_id))) == MINIMAL_KEYS
    assert rc.xlen(STREAM) == 1


# --------------------------------------------------------------------------
# 6. not implemented yet

@pytest.mark.parametrize("ftype", [FETCH], ids=["fetch"])
def test_not_implemented_501(worker, rc, ftype):
    c = worker.client()
    r = c.request(ftype, 0x0102030405060708, [])
    assert r.type == ftype | REPLY, r
    assert r.id == 0x0102030405060708, r
    assert r.status == 501, r
    assert r.error == "not implemented", r
    assert rc.dbsize() == 0
    assert c.ping(5).status == 200


# --------------------------------------------------------------------------
# 7-8. framing errors

def test_frame_too_large_413_then_closed(worker_factory, rc):
    w = worker_factory(args=["--max-frame", "1000"])
    c = w.client()
    c.send_raw(wh.encode_header(DISPATCH, 0x0102030405060708, 1001))
    r = c.recv_frame()
    assert r.type == DISPATCH | REPLY, r
    assert r.id == 0x0102030405060708, r
    assert r.status == 413, r
    assert r.error == "frame too large", r
    assert c.closed_by_peer() == b""
    assert rc.dbsize() == 0
    # the worker itself goes on
    assert w.client().ping(1).status == 200


def test_frame_at_max_frame_accepted(worker_factory, rc):
    w = worker_factory(args=["--max-frame", "1000"])
    # 10 + 10 + 6 + 974 bytes of fields: exactly the limit
    f = fields(extra=[(T_BODY, b"\xab" * 974)])
    assert len(wh.encode_fields(f)) == 1000
    job_id = accepted(w.client().dispatch(8, f), 8)
    assert rc.hget(job_key(job_id), b"body") == b"\xab" * 974


@pytest.mark.parametrize("magic,version", [(b"XW", 1), (b"VX", 1),
                                           (b"VW", 2), (b"VW", 0)],
                         ids=["magic-XW", "magic-VX", "version-2",
                              "version-0"])
def test_bad_magic_or_version_closes_silently(worker, rc, magic, version):
    c = worker.client()
    c.send_raw(wh.encode_frame(PING, 1, (), magic=magic, version=version))
    assert c.closed_by_peer() == b""
    # also with a DISPATCH behind the bad header: nothing persisted
    c2 = worker.client()
    c2.send_raw(wh.encode_frame(DISPATCH, 2, fields(), magic=magic,
                                version=version))
    assert c2.closed_by_peer() == b""
    assert rc.dbsize() == 0
    assert worker.client().ping(3).status == 200


def test_bad_magic_after_good_frame(worker):
    c = worker.client()
    assert c.ping(1).status == 200
    c.send_raw(wh.encode_frame(PING, 2, (), magic=b"XW"))
    assert c.closed_by_peer() == b""


# --------------------------------------------------------------------------
# 9-11. pipelining, split writes, concurrency

def test_pipelined_dispatches(worker, rc):
    n = 50
    base = 0x0102030405060700
    c = worker.client()
    c.send_raw(b"".join(
        wh.encode_frame(DISPATCH, base + i,
                        fields(extra=[(T_CORRELATION_ID, "c%d" % i)]))
        for i in range(n)))
    replies = {}
    for _ in range(n):
        r = c.recv_frame(seconds=5)
        assert r.id not in replies, r
        replies[r.id] = r
    assert set(replies) == {base + i for i in range(n)}
    jobs = {}
    for i in range(n):
        jobs[i] = accepted(replies[base + i], base + i)
    assert len(set(jobs.values())) == n
    assert rc.xlen(STREAM) == n
    assert {e[1][b"job"] for e in stream(rc)} == set(jobs.values())
    # each reply names the job its own request made
    for i, job_id in jobs.items():
        assert rc.hget(job_key(job_id), b"correlation_id") == b"c%d" % i


def test_split_writes_byte_by_byte(worker, rc):
    frame = wh.encode_frame(DISPATCH, 0x0102030405060708,
                            fields(extra=[(T_HEADER, b"X-A\x00v"),
                                          (T_BODY, b"\x00\x01split\xff")]))
    c = worker.client()
    pauses = {1, 3, 8, 15, 16, 20, 30, len(frame) - 1}
    for i in range(len(frame)):
        c.sock.sendall(frame[i:i + 1])
        if i in pauses:
            time.sleep(0.01)
    job_id = accepted(c.recv_frame(), 0x0102030405060708)
    h = rc.hgetall(job_key(job_id))
    assert h[b"body"] == b"\x00\x01split\xff"
    assert json.loads(h[b"headers"]) == [["X-A", "v"]]

    # a frame and the start of the next in one write, the rest later
    a = wh.encode_frame(DISPATCH, 10, fields())
    b = wh.encode_frame(DISPATCH, 11, fields("other", "acme"))
    c.sock.sendall(a + b[:20])
    time.sleep(0.02)
    c.sock.sendall(b[20:])
    got = {r.id: r for r in (c.recv_frame(), c.recv_frame())}
    assert set(got) == {10, 11}
    accepted(got[10], 10)
    accepted(got[11], 11)
    assert rc.xlen(STREAM) == 3


def test_concurrent_connections(worker, rc):
    threads, per = 8, 20
    results = [[] for _ in range(threads)]
    errors = []
    start = threading.Barrier(threads)

    def run(t):
        try:
            with wh.FrameClient(worker.socket_path, seconds=5) as c:
                start.wait(vh.timeout(5))
                for i in range(per):
                    fid = (t << 32) | i
                    r = c.dispatch(fid, fields(extra=[
                        (T_CORRELATION_ID, "t%d-%d" % (t, i))]), seconds=5)
                    results[t].append((fid, r))
        except Exception as e:
            errors.append("thread %d: %r" % (t, e))

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(vh.timeout(20))
    assert not any(t.is_alive() for t in ts), "threads still running"
    assert not errors, errors
    job_ids = set()
    for t in range(threads):
        assert len(results[t]) == per
        for fid, r in results[t]:
            job_ids.add(accepted(r, fid))
    assert len(job_ids) == threads * per
    assert rc.xlen(STREAM) == threads * per
    assert {e[1][b"job"] for e in stream(rc)} == job_ids


# --------------------------------------------------------------------------
# 12. Redis unavailable

def test_redis_stopped_503_then_recovers(worker, redis_server):
    c = worker.client()
    accepted(c.dispatch(1, fields()), 1)     # connected and working
    redis_server.stop()

    t = time.monotonic()
    r = c.dispatch(2, fields(), seconds=5)
    elapsed = time.monotonic() - t
    refused(r, 2, 503, UNAVAILABLE)
    assert r.retry_after == 1, r
    assert elapsed < vh.timeout(2.5), "503 after %.2fs" % elapsed
    # and again, still down (a reconnect attempt in between must not hang)
    time.sleep(0.3)
    t = time.monotonic()
    r = c.dispatch(3, fields(), seconds=5)
    elapsed = time.monotonic() - t
    refused(r, 3, 503, UNAVAILABLE)
    assert r.retry_after == 1, r
    assert elapsed < vh.timeout(2.5), "503 after %.2fs" % elapsed

    redis_server.restart()
    deadline = time.monotonic() + vh.timeout(3)
    fid = 100
    statuses = []
    while True:
        fid += 1
        r = c.dispatch(fid, fields("after.restart", "acme"), seconds=5)
        statuses.append(r.status)
        if r.status == 202:
            break
        refused(r, fid, 503, UNAVAILABLE)
        assert time.monotonic() < deadline, \
            "still %r after Redis came back" % statuses
        time.sleep(0.05)
    job_id = accepted(r, fid)
    rc = redis_server.client()
    h = rc.hgetall(job_key(job_id))
    assert h[b"type"] == b"after.restart"
    assert h[b"state"] == b"queued"
    # nothing from the 503s was recorded (Redis saves nothing: only the
    # job accepted after the restart is there)
    assert rc.xlen(STREAM) == 1
    assert job_keys(rc) == [job_key(job_id)]
    # new connections work too
    accepted(worker.client().dispatch(5, fields()), 5)


def test_redis_error_reply_503(worker, rc):
    rc.config_set("maxmemory-policy", "noeviction")
    rc.config_set("maxmemory", "1")
    try:
        r = worker.client().dispatch(1, fields(extra=[(T_BODY, b"x" * 100)]))
        refused(r, 1, 503, UNAVAILABLE)
        assert r.retry_after == 1, r
        assert rc.exists(STREAM) == 0
        assert job_keys(rc) == []
    finally:
        rc.config_set("maxmemory", "0")
    job_id = accepted(worker.client().dispatch(2, fields()), 2)
    assert rc.xlen(STREAM) == 1
    assert job_keys(rc) == [job_key(job_id)]


# --------------------------------------------------------------------------
# 13. signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0_and_removes_socket(worker, sig):
    assert os.path.exists(worker.socket_path)
    worker.send_signal(sig)
    assert worker.wait(5) == 0, worker.log_tail()
    assert not os.path.exists(worker.socket_path)


def test_sigterm_with_open_connection(worker, rc):
    c = worker.client()
    accepted(c.dispatch(1, fields()), 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(5) == 0, worker.log_tail()
    assert not os.path.exists(worker.socket_path)
    assert c.closed_by_peer() == b""


# --------------------------------------------------------------------------
# 14. command line

def _bad_args(tmp, redis):
    sock = os.path.join(tmp, "w.sock")
    return [
        ("listen-without-unix-prefix", ["--listen", sock, "--redis", redis]),
        ("listen-tcp", ["--listen", "127.0.0.1:9", "--redis", redis]),
        ("missing-redis", ["--listen", "unix:" + sock]),
        ("missing-listen", ["--redis", redis]),
        ("max-frame-not-a-number", ["--listen", "unix:" + sock,
                                    "--redis", redis, "--max-frame", "abc"]),
        ("unknown-option", ["--listen", "unix:" + sock, "--redis", redis,
                            "--no-such-option"]),
    ]


BAD_ARG_IDS = [n for n, _ in _bad_args("/x", "127.0.0.1:1")]


@pytest.mark.parametrize("which", BAD_ARG_IDS)
def test_bad_command_line_exit_2(worker_bin, base_dir, redis_server, which):
    tmp = vh.make_dir(tempfile.mkdtemp(prefix="worker-args-", dir=base_dir))
    args = dict(_bad_args(tmp, redis_server.address))[which]
    try:
        p = subprocess.run([worker_bin] + args, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=vh.timeout(5))
    except subprocess.TimeoutExpired:
        pytest.fail("vantage-worker %s did not exit" % " ".join(args))
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "no message on stderr"
    assert os.listdir(tmp) == []          # no socket left behind


# --------------------------------------------------------------------------
# 15. a Redis that may evict keys would lose accepted jobs silently

def test_refuses_to_start_on_an_evicting_redis(worker_factory, rc):
    rc.config_set("maxmemory-policy", "allkeys-lru")
    w = worker_factory(start=False)
    w.spawn()
    assert w.wait(vh.timeout(5)) == 1
    text = w.log_text()
    assert "refusing to start: Redis may evict accepted jobs" in text, text
    assert '"maxmemory_policy":"allkeys-lru"' in text, text
    assert not os.path.exists(w.socket_path), w.socket_path
    assert stream(rc) == []


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru"])
def test_starts_on_a_redis_that_keeps_jobs(worker_factory, rc, policy):
    rc.config_set("maxmemory-policy", policy)
    w = worker_factory()
    accepted(w.client().dispatch(1, fields()), 1)
    assert '"maxmemory_policy":"%s"' % policy in w.log_text()


def test_takes_no_job_after_the_policy_turns_evicting(worker, rc):
    c = worker.client()
    accepted(c.dispatch(1, fields()), 1)
    rc.config_set("maxmemory-policy", "allkeys-random")
    # the worker checks on every connection: make it reconnect
    rc.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    def refusing():
        return "Redis may evict accepted jobs" in worker.log_text()

    vh.wait_for(refusing, vh.timeout(5), what="the policy logged")
    p = worker.client().ping(1)
    assert (p.status, p.error, p.retry_after) == \
        (503, "the worker is not ready: Redis's maxmemory-policy "
         "allkeys-random may evict accepted jobs", 1), p
    n = len(stream(rc))
    for fid in range(2, 7):
        refused(worker.client().dispatch(fid, fields()), fid, 503,
                "the job queue is unavailable")
    assert len(stream(rc)) == n

    # mended: the worker asks again by itself within 5 s
    rc.config_set("maxmemory-policy", "noeviction")

    def accepting():
        r = worker.client().dispatch(9, fields())
        return r.status == 202

    vh.wait_for(accepting, vh.timeout(8), interval=0.1,
                what="jobs taken again")


# --------------------------------------------------------------------------
# 16. JOB_STATUS: a tenant's view of its jobs

def test_job_status_of_a_queued_job(worker, rc):
    c = worker.client()
    t0 = now_ms()
    job_id = accepted(c.dispatch(1, fields(job_type="http.post",
                                           tenant="acme")), 1)
    r = c.request(JOB_STATUS, 2, [(T_TENANT, "acme"), (T_JOB_ID, job_id)])
    assert r.type == JOB_STATUS | REPLY and r.id == 2, r
    assert r.status == 200, r
    assert r.get(T_JOB_ID) == job_id, r
    state = json.loads(r.get(T_JOB_STATE))
    assert int(t0) <= state.pop("created_ms") <= now_ms(), r
    assert state == {"job_id": job_id.decode(), "type": "http.post",
                     "status": "queued", "attempts": 0,
                     "next_attempt_ms": None, "last_error": None,
                     "result": None}, r


def test_job_status_reflects_the_hash(worker, rc):
    c = worker.client()
    job_id = accepted(c.dispatch(1, fields()), 1)
    rc.hset(job_key(job_id), mapping={"state": "retrying", "attempts": "3",
                                      "next_attempt_ms": "1800000000000",
                                      "last_error": "HTTP 503 \"busy\""})
    r = c.request(JOB_STATUS, 2, [(T_TENANT, "acme"), (T_JOB_ID, job_id)])
    state = json.loads(r.get(T_JOB_STATE))
    assert (state["status"], state["attempts"], state["next_attempt_ms"],
            state["last_error"]) == ("retrying", 3, 1800000000000,
                                     'HTTP 503 "busy"'), r


@pytest.mark.parametrize("tenant,job", [
    ("other", None),                 # another tenant's job
    ("acme", "0" * 32),              # no such job
    ("acme", "ABCDEF" + "0" * 26),   # not lowercase hex
    ("acme", "0" * 31),              # too short
])
def test_job_status_404(worker, rc, tenant, job):
    c = worker.client()
    job_id = accepted(c.dispatch(1, fields()), 1)
    r = c.request(JOB_STATUS, 2, [(T_TENANT, tenant),
                                  (T_JOB_ID, job if job else job_id)])
    refused(r, 2, 404, "no such job", ftype=JOB_STATUS)
    assert r.get(T_JOB_STATE) is None, r


def test_job_status_needs_a_tenant(worker, rc):
    r = worker.client().request(JOB_STATUS, 3, [(T_JOB_ID, "0" * 32)])
    refused(r, 3, 400, ftype=JOB_STATUS)


def test_job_status_when_redis_is_down(worker, redis_server):
    c = worker.client()
    job_id = accepted(c.dispatch(1, fields()), 1)
    redis_server.stop()
    r = worker.client().request(JOB_STATUS, 2, [(T_TENANT, "acme"),
                                                (T_JOB_ID, job_id)])
    refused(r, 2, 503, "the job queue is unavailable", ftype=JOB_STATUS)
    assert r.retry_after == 1, r
