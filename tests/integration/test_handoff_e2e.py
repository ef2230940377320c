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
import re
import signal
import sys
import threading
import time
import uuid

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from http_target import HttpTarget          # noqa: E402

# timing bounds in real time (reclaim after the visibility timeout)
pytestmark = pytest.mark.timing

LOG_FORBIDDEN = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")
# what the failures below make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage worker: "
CONCURRENCY = 4


@pytest.fixture
def target():
    t = HttpTarget()
    yield t
    t.close()


@pytest.fixture
def redis(redis_factory):
    return redis_factory(appendonly=True)


@pytest.fixture
def rc(redis):
    return redis.client()


@pytest.fixture
def workers(base_dir, redis):
    """workers(conf_text, n=1) -> [Worker] started with the file; their
    sockets open to nginx's workers (user nobody)."""
    if not wh.worker_available():
        pytest.skip("worker not built")
    made = []

    def make(conf, n=1):
        out = []
        for _ in range(n):
            w = wh.Worker(base_dir, redis.address)
            path = os.path.join(w.dir, "worker.conf")
            with open(path, "w") as f:
                f.write(conf.replace(
                    "[worker]\n", "[worker]\nlisten = unix:%s\nredis = %s\n"
                    % (w.socket_path, redis.address), 1))
            w.args = ["-c", path]
            made.append(w)
            out.append(start(w))
        return out

    yield make
    problems = []
    for w in made:
        w.close(keep=True)
        print(w.log_tail())
        problems += [l for l in w.log_text().splitlines()
                     if LOG_FORBIDDEN.search(l)]
    assert not problems, problems


def start(w):
    w.proc = None
    w.start()
    os.chmod(w.socket_path, 0o777)
    return w


def worker_conf(target, job="backoff_base = 100ms\nbackoff_cap = 500ms\n",
                worker="", vt="6500ms"):
    return ("[worker]\nvisibility_timeout = %s\nshutdown_timeout = 1s\n"
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
    start(a)                                 # a new consumer name (pid)

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
    target.script("/in", [(503, {}, b'{"error":"busy"}')])
    a, = workers(worker_conf(target, job="backoff_base = 1s\n"
                                         "backoff_cap = 1s\n"))
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
    assert s["next_attempt_ms"] >= time.time() * 1000 - 1000

    s = vh.wait_for(lambda: (lambda j: j if j["status"] == "succeeded"
                             else None)(state()), 10, interval=0.05,
                    what="succeeded")
    assert s["attempts"] == 2
    assert s["result"]["status"] == 200, s
    assert len(target.got("/in")) == 2
