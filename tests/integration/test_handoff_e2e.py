"""test_handoff_e2e.py -- jobs from a client through nginx to a vendor.

The whole spine with real parts: clients POST to nginx (the module), which
hands each job to vantage-worker over its socket; workers with a
configuration file run the jobs from Redis (AOF, appendfsync always) and
deliver them to tests/fakes/http_target.py, which records every delivery
raw.  What the issue asks to see is asserted on what the target received
and on what the clients were told:

  - kill -9 of a worker mid-batch, a Redis crash and restart, an nginx
    reload: every job answered 202 is delivered, duplicates stay within
    what was in flight, and a duplicate carries the same Idempotency-Key;
  - Idempotency-Key through nginx: a repeat is the same job, delivered
    once; another body under the same key is 422; tenants do not share
    keys;
  - the in-flight cap: 503 with Retry-After through nginx, nothing stored;
  - GET /jobs/<id> follows a job to succeeded, and shows a retry.
"""

import json
import os
import signal
import threading
import time
import uuid

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh

# timing bounds in real time (reclaim after the visibility timeout)
pytestmark = pytest.mark.timing

# what the failures below make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage worker: "
CONCURRENCY = 4
# the workers keep jobs in the append-only Redis that tests restart
WORKER_REDIS = "redis"


@pytest.fixture
def workers(worker_factory):
    """workers(conf_text, n=1) -> [Worker] started with the file; their
    sockets open to nginx's workers (user nobody).  workers.start(w)
    starts w again the same way."""
    worker_factory.socket_mode = 0o777

    def make(conf, n=1):
        return worker_factory(conf, n=n)

    make.start = worker_factory.start
    return make


def worker_conf(target, job="backoff_base = 100ms\nbackoff_cap = 500ms\n",
                worker="", vt="6500ms"):
    return (wh.CONFIG_HEAD + "visibility_timeout = %s\nshutdown_timeout = 1s\n"
            "concurrency = %d\n%s\n"
            "[job e2e.orders]\nconnector = http\nurl = %s\ntimeout = 1s\n"
            "max_attempts = 20\n%s\n"
            % (vt, CONCURRENCY, worker, target.url("/in"), job))


def gateway(nginx_factory, w, timeout="2s"):
    return nginx_factory(http="""
    vantage_worker unix:%s timeout=%s retry_after=2;
""" % (w.socket_path, timeout), server="""
        vantage_tenant $http_x_tenant;
        location = /orders {
            vantage_dispatch e2e.orders;
        }
        location /jobs/ {
            vantage_jobs;
        }
""")


def post(c, body, tenant="acme", key=None):
    h = {"Content-Type": "application/json", "X-Tenant": tenant}
    if key is not None:
        h["Idempotency-Key"] = key
    return c.request("POST", "/orders", content=body, headers=h)


def deliveries(target):
    """{job id: [bodies]} from what the target received."""
    out = {}
    for r in target.got("/in"):
        out.setdefault(r["headers"].get("idempotency-key"), []) \
            .append(r["body"])
    return out


# --------------------------------------------------------------------------

@pytest.mark.log_allow(ALLOW_WORKER, r"\[error\] .*vantage worker: .*")
def test_crash_restart_and_reload_lose_nothing(workers, target, redis, rc,
                                               nginx_factory):
    target.delay("/in", 0.02, 0.15)          # jobs are in flight at a kill
    a, b = workers(worker_conf(target), n=2)
    n = gateway(nginx_factory, a)
    total, threads = 120, 4
    accepted = {}                            # seq -> job id
    refused = []
    lock = threading.Lock()
    progress = [0]

    def client(offset):
        c = vh.Client(n, "http")
        try:
            for seq in range(offset, total, threads):
                body = json.dumps({"seq": seq}).encode()
                key = "order-%d" % seq
                # a client retries a 503 with the same Idempotency-Key
                for _ in range(200):
                    try:
                        r = post(c, body, key=key)
                    except httpx.TransportError:
                        # a keep-alive connection closed by the reload
                        c.close()
                        continue
                    if r.status == 202:
                        with lock:
                            accepted[seq] = r.json["job_id"]
                            progress[0] += 1
                        break
                    # 409: a retry while the first try's claim is fresh
                    assert r.status in (503, 409), r
                    assert r.headers["retry-after"], r
                    with lock:
                        refused.append(seq)
                    time.sleep(0.05)
        finally:
            c.close()

    ts = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()

    def reached(k):
        vh.wait_for(lambda: progress[0] >= k, 30, interval=0.01,
                    what="%d accepted" % k)

    reached(total // 4)
    a.send_signal(signal.SIGKILL)            # mid-batch: jobs in flight
    assert a.wait(5) is not None
    workers.start(a)                         # a new consumer name (pid)

    reached(total // 2)
    redis.kill()                             # a crash; AOF, fsync always
    redis.start()

    reached(3 * total // 4)
    n.reload()

    for t in ts:
        t.join(vh.timeout(60))
    assert sorted(accepted) == list(range(total))

    ids = set(accepted.values())
    assert len(ids) == total                 # no two seqs share a job

    # the dead consumer's entries are reclaimed after the visibility timeout
    def all_delivered():
        got = deliveries(target)
        return ids <= set(got)

    vh.wait_for(all_delivered, 40, interval=0.2,
                what="every accepted job delivered")

    got = deliveries(target)
    for seq, jid in accepted.items():
        bodies = got[jid]
        # duplicates are the same job: same key, same body
        assert set(bodies) == {json.dumps({"seq": seq}).encode()}, jid
    dup = sum(len(v) - 1 for k, v in got.items() if k in ids)
    # at most what the killed worker held, plus what both held when Redis
    # went away under their outcome transactions
    assert dup <= 3 * CONCURRENCY, dup
    # nothing reached the target that nobody was told was accepted
    assert set(got) <= ids, set(got) - ids

    vh.wait_for(lambda: all(rc.hget("{vq}:job:" + j, "state") ==
                            b"succeeded" for j in ids), 20, interval=0.2,
                what="every job succeeded")
    assert int(rc.get("{vq}:inflight")) == 0


def test_idempotency_key_through_nginx(workers, target, rc, nginx_factory,
                                       client_for):
    a, = workers(worker_conf(target))
    n = gateway(nginx_factory, a)
    c = client_for(n)
    key = "pay-" + uuid.uuid4().hex

    first = post(c, b'{"amount": 10}', key=key)
    assert first.status == 202, first
    jid = first.json["job_id"]
    assert "idempotent-replayed" not in first.headers

    again = post(c, b'{"amount": 10}', key=key)
    assert again.status == 202, again
    assert again.json["job_id"] == jid
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"].endswith("/jobs/" + jid)
    assert again.json["status"] in ("queued", "running", "succeeded")

    other = post(c, b'{"amount": 99}', key=key)
    assert other.status == 422, other
    assert other.json["error"] == "idempotency_key_reused"

    tenant2 = post(c, b'{"amount": 10}', key=key, tenant="globex")
    assert tenant2.status == 202, tenant2
    assert tenant2.json["job_id"] != jid

    vh.wait_for(lambda: len(target.got("/in")) >= 2, 10, interval=0.05,
                what="two deliveries")
    time.sleep(0.5)                          # nothing more comes
    got = deliveries(target)
    assert sorted(got) == sorted([jid, tenant2.json["job_id"]])
    assert got[jid] == [b'{"amount": 10}']
    assert rc.xlen("{vq}:jobs") <= 2


def test_inflight_cap_through_nginx(workers, target, rc, nginx_factory,
                                    client_for):
    target.default("/in", ("sleep", 3.0))
    a, = workers(worker_conf(target, worker="inflight_cap = 3\n"))
    n = gateway(nginx_factory, a)
    c = client_for(n)
    for i in range(3):
        r = post(c, b'{"n": %d}' % i)
        assert r.status == 202, r
    before = len(rc.keys("{vq}:job:*"))
    r = post(c, b'{"n": 3}')
    assert r.status == 503, r
    assert r.json["error"] == "temporarily_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert len(rc.keys("{vq}:job:*")) == before
    assert rc.xlen("{vq}:jobs") <= 3


def test_job_status_through_nginx_follows_a_retry(workers, target, rc,
                                                  nginx_factory, client_for):
    # Retry-After: 1 puts the next attempt 1 to 2 s later, long enough to
    # see "retrying" (full jitter alone may retry within milliseconds)
    target.script("/in", [(503, {"Retry-After": "1"}, b'{"error":"busy"}')])
    a, = workers(worker_conf(target))
    n = gateway(nginx_factory, a)
    c = client_for(n)
    r = post(c, b'{"x": 1}')
    jid = r.json["job_id"]
    h = {"X-Tenant": "acme"}

    def state():
        return c.request("GET", "/jobs/" + jid, headers=h).json

    s = vh.wait_for(lambda: (lambda j: j if j["status"] == "retrying"
                             else None)(state()), 5, interval=0.02,
                    what="retrying")
    assert s["attempts"] == 1
    assert s["last_error"], s
    assert s["next_attempt_ms"] - s["created_ms"] >= 1000, s     # Retry-After

    s = vh.wait_for(lambda: (lambda j: j if j["status"] == "succeeded"
                             else None)(state()), 10, interval=0.05,
                    what="succeeded")
    assert s["attempts"] == 2
    assert s["result"]["status"] == 200, s
    assert len(target.got("/in")) == 2


# --------------------------------------------------------------------------
# dead letters, replayed and skipped with the real vantagectl

CTL = os.path.join(vh.REPO, "build", "vantagectl")


def ctl(redis, *args):
    import subprocess
    r = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def wait_job(rc, jid, state, seconds=10):
    vh.wait_for(lambda: rc.hget("{vq}:job:" + jid, "state") ==
                state.encode(), seconds, interval=0.05,
                what="job %s %s" % (jid, state))


def test_dead_letter_replayed_by_vantagectl(workers, target, redis, rc,
                                            nginx_factory, client_for):
    if not os.access(CTL, os.X_OK):
        pytest.skip("vantagectl not built")
    target.script("/in", [(400, {"Content-Type": "application/json"},
                           b'{"error":"invalid ssn 123-45-6789"}')])
    a, = workers(worker_conf(target))
    n = gateway(nginx_factory, a)
    c = client_for(n)
    jid = post(c, b'{"client": 7}').json["job_id"]
    wait_job(rc, jid, "dead")

    code, out, err = ctl(redis, "--json", "dlq", "show", jid)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == jid
    assert shown["in_dead_letters"] is True
    assert shown["fields"]["state"] == "dead"
    assert [(h["n"], h["outcome"], h["status"]) for h in shown["history"]] \
        == [(1, "dead", 400)]
    # the vendor's body is kept, with the SSN masked
    assert "invalid ssn" in shown["history"][0]["body"]
    assert "123-45-6789" not in out

    code, out, err = ctl(redis, "dlq", "replay", jid)
    assert code == 0, err
    wait_job(rc, jid, "succeeded")
    bodies = [r["body"] for r in target.got("/in")]
    assert bodies == [b'{"client": 7}'] * 2
    keys = {r["headers"]["idempotency-key"] for r in target.got("/in")}
    assert keys == {jid}                      # the same id, kept
    assert rc.hget("{vq}:job:" + jid, "replays") == b"1"
    assert rc.llen("{vq}:att:" + jid) == 2    # the history kept and grown
    s = c.request("GET", "/jobs/" + jid, headers={"X-Tenant": "acme"}).json
    assert s["status"] == "succeeded"
    assert int(rc.get("{vq}:inflight")) == 0


def ordered_gateway(nginx_factory, w):
    return nginx_factory(http="""
    vantage_worker unix:%s;
""" % w.socket_path, server="""
        vantage_tenant $http_x_tenant;
        location = /orders {
            vantage_dispatch_ordering_key $http_x_record_id;
            vantage_dispatch e2e.orders;
        }
""")


def post_ordered(c, rec, seq):
    body = json.dumps({"rec": rec, "seq": seq}).encode()
    r = c.request("POST", "/orders", content=body,
                  headers={"X-Tenant": "acme", "X-Record-Id": rec,
                           "Content-Type": "application/json"})
    assert r.status == 202, r
    return r.json["job_id"]


def test_ordering_through_nginx(workers, target, rc, nginx_factory):
    target.delay("/in", 0.0, 0.05)
    ws = workers(worker_conf(target, job="ordering = on\non_dead = block\n"
                             "backoff_base = 100ms\nbackoff_cap = 300ms\n"),
                 n=2)
    n = ordered_gateway(nginx_factory, ws[0])
    c = vh.Client(n, "http")
    # two records, ten updates each, interleaved, over two workers
    ids = {}
    for seq in range(10):
        for rec in ("A", "B"):
            ids[(rec, seq)] = post_ordered(c, rec, seq)
    c.close()
    vh.wait_for(lambda: all(rc.hget("{vq}:job:" + ids[("A", s)], "state")
                            == b"succeeded" for s in range(10)), 20,
                interval=0.1, what="record A done")
    vh.wait_for(lambda: all(rc.hget("{vq}:job:" + ids[("B", s)], "state")
                            == b"succeeded" for s in range(10)), 20,
                interval=0.1, what="record B done")
    seen = {}
    for r in target.got("/in"):
        b = json.loads(r["body"])
        seen.setdefault(b["rec"], []).append(b["seq"])
    for rec, seqs in seen.items():
        assert seqs == list(range(10)), (rec, seqs)


def test_on_dead_block_then_vantagectl_skip(workers, target, redis, rc,
                                           nginx_factory):
    if not os.access(CTL, os.X_OK):
        pytest.skip("vantagectl not built")
    target.script("/in", [(422, {}, b'{"error":"rejected"}')])
    w, = workers(worker_conf(target, job="ordering = on\non_dead = block\n"))
    n = ordered_gateway(nginx_factory, w)
    c = vh.Client(n, "http")
    ids = [post_ordered(c, "R", seq) for seq in range(4)]
    c.close()
    wait_job(rc, ids[0], "dead")
    time.sleep(1.0)                           # the key stays blocked
    assert len(target.got("/in")) == 1
    assert [rc.hget("{vq}:job:" + j, "state") for j in ids[1:]] == \
        [b"queued"] * 3

    code, out, err = ctl(redis, "dlq", "skip", ids[0])
    assert code == 0, err
    for j in ids[1:]:
        wait_job(rc, j, "succeeded")
    seqs = [json.loads(r["body"])["seq"] for r in target.got("/in")]
    assert seqs == [0, 1, 2, 3]
    assert rc.hget("{vq}:job:" + ids[0], "state") == b"dead"
