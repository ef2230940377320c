"""test_worker_status.py -- the worker's /metrics.json, /status and replay.

The worker's [metrics] listener (docs/WORKER.md, "Metrics and health")
after known sequences of jobs against tests/fakes/http_target.py, the
Salesforce and HubSpot emulators and the identity provider emulator:
/metrics.json is compared family by family with /metrics as the strict
parser of prom_text.py reads it; /status's numbers with /metrics', with
Redis read here, and its percentiles with a histogram_quantile() written
here from Prometheus' definition; POST /admin/dlq/<id>/replay against
the job hashes and the target's deliveries.
"""

import json
import math
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh
from prom_text import parse, value
from worker_harness import (FETCH, REPLY, T_BODY, T_CORRELATION_ID, T_HEADER,
                            T_FETCH_KIND, T_IDP, T_JOB_ID, T_JOB_TYPE,
                            T_TENANT, T_TOKEN)

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))

# the append-only Redis: test_redis_down restarts it and reads it again
WORKER_REDIS = "redis"
STREAM = "{vq}:jobs"
CTL = os.path.join(vh.REPO, "build", "vantagectl")


# --------------------------------------------------------------------------
# helpers

def conf(target, port, jobs, targets="", admin="on"):
    text = wh.CONFIG_HEAD + "visibility_timeout = 6500ms\n" \
        "shutdown_timeout = 1s\n\n[metrics]\nlisten = 127.0.0.1:%d\n" \
        "admin = %s\n\n%s\n" % (port, admin, targets)
    for name, body in jobs.items():
        text += "[job %s]\nconnector = http\ntimeout = 1s\n%s\n" \
            % (name, body.replace("URL", target.url("")))
    return text


def dispatch(w, job_type, fid=1, corr=None, body=b"{}", headers=()):
    fields = [(T_JOB_TYPE, job_type), (T_TENANT, "acme"), (T_BODY, body)]
    fields += [(T_HEADER, h) for h in headers]
    if corr is not None:
        fields.append((T_CORRELATION_ID, corr))
    r = w.client().dispatch(fid, fields)
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def job(rc, jid):
    return {k.decode(): v.decode()
            for k, v in rc.hgetall("{vq}:job:" + jid).items()}


def wait_state(rc, jid, want, seconds=10):
    vh.wait_for(lambda: job(rc, jid).get("state") == want, seconds,
                interval=0.05, what="job %s %s (now %r)"
                % (jid, want, job(rc, jid).get("state")))
    return job(rc, jid)


def request(port, path, method="GET"):
    return httpx.request(method, "http://127.0.0.1:%d%s" % (port, path),
                         timeout=vh.timeout(10))


def scrape(port):
    r = request(port, "/metrics")
    assert r.status_code == 200, r.text
    return parse(r.text)


def status(port):
    r = request(port, "/status")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def replay(port, jid, method="POST"):
    return request(port, "/admin/dlq/%s/replay" % jid, method)


def counter(fams, family, **labels):
    """A counter's value, 0 when the series is not there yet."""
    key = (family, frozenset(labels.items()))
    return fams[family]["samples"].get(key, 0)


def json_as_text(doc):
    """/metrics.json in prom_text.parse()'s form: histograms as their
    _bucket (le a float), _sum and _count samples."""
    fams = {}
    for f in doc["metrics"]:
        samples = {}
        for s in f["samples"]:
            labels = s["labels"]
            if f["type"] != "histogram":
                samples[(f["name"], frozenset(labels.items()))] = s["value"]
                continue
            base = frozenset(labels.items())
            samples[(f["name"] + "_sum", base)] = s["sum"]
            samples[(f["name"] + "_count", base)] = s["count"]
            for le, n in s["buckets"]:
                le = math.inf if le == "+Inf" else le
                samples[(f["name"] + "_bucket",
                         base | {("le", le)})] = n
        assert f["name"] not in fams, f["name"]
        fams[f["name"]] = {"type": f["type"], "help": f["help"],
                           "samples": samples}
    return fams


def text_le_as_float(fams):
    out = {}
    for name, f in fams.items():
        samples = {}
        for (sname, labels), v in f["samples"].items():
            labels = frozenset((k, float(x) if k == "le" else x)
                               for k, x in labels)
            samples[(sname, labels)] = v
        out[name] = dict(f, samples=samples)
    return out


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile() (promql/quantile.go) over
    [(upper_bound, cumulative_count)], +Inf last."""
    buckets = sorted(buckets)
    count = buckets[-1][1]
    if count == 0:
        return None
    rank = q * count
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    start, below = (0.0, 0) if b == 0 else buckets[b - 1]
    end, c = buckets[b]
    return start + (end - start) * ((rank - below) / (c - below))


def latency_buckets(fams, target):
    h = "vantage_worker_attempt_duration_seconds"
    return [(float(dict(l)["le"]), v)
            for (n, l), v in fams[h]["samples"].items()
            if n == h + "_bucket" and dict(l)["target"] == target]


def stream_gauges(fams):
    """The four stream gauges as sampled; None for one not sampled yet
    (prom_text.value() would say 0)."""
    return [fams["vantage_worker_stream_" + g]["samples"].get(
                ("vantage_worker_stream_" + g,
                 frozenset({"stream": STREAM}.items())))
            for g in ("length", "pending", "oldest_pending_age_seconds",
                      "oldest_entry_age_seconds")]


def logged(w, msg):
    return [l for l in w.log_lines() if l.get("msg") == msg]


@pytest.fixture
def port():
    return vh.free_port()


# --------------------------------------------------------------------------
# a known sequence: successes, a retry then success, a permanent failure

@pytest.fixture
def sequence(worker_factory, target, rc, port):
    w = worker_factory(conf(target, port, {
        "ok": "url = URL/ok",
        "flaky": "url = URL/flaky\nbackoff_base = 10ms\nbackoff_cap = 20ms",
        "bad": "url = URL/bad"}))
    target.default("/bad", (400, {}, b"no"))
    target.script("/flaky", [(503, {}, b"")])
    jobs = {"ok": [dispatch(w, "ok", fid=i) for i in range(1, 4)],
            "flaky": dispatch(w, "flaky", fid=10),
            "bad": dispatch(w, "bad", fid=20, corr="corr-bad-1")}
    for jid in jobs["ok"]:
        wait_state(rc, jid, "succeeded")
    wait_state(rc, jobs["flaky"], "succeeded")
    wait_state(rc, jobs["bad"], "dead")
    # the stream sampled empty: nothing moves between two scrapes
    vh.wait_for(lambda: stream_gauges(scrape(port)) == [0, 0, 0, 0], 5,
                interval=0.1, what="the stream sampled empty")
    return w, jobs


def test_metrics_json_mirrors_the_text(sequence, port):
    r = request(port, "/metrics.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    assert list(doc) == ["metrics"]
    got = json_as_text(doc)
    want = text_le_as_float(scrape(port))
    assert list(got) == list(want)
    for name in want:
        assert got[name] == want[name], name
    # what the sequence made is there, not only zeros
    assert counter(want, "vantage_worker_target_attempts_total",
                   target="flaky", outcome="retry") == 1
    h = request(port, "/metrics.json", "HEAD")
    assert h.status_code == 200 and h.content == b""


def test_status_after_the_sequence(sequence, port, rc):
    w, jobs = sequence
    before = int(time.time() * 1000)
    st = status(port)
    fams = scrape(port)
    after = int(time.time() * 1000)

    assert list(st) == ["generated_ms", "redis", "connectors", "history",
                        "queues", "delayed", "dead_letters",
                        "recent_failures", "dead"]
    assert before - 1000 <= st["generated_ms"] <= after
    assert st["redis"] == "connected"

    # per target, the counters' numbers
    conns = {c["target"]: c for c in st["connectors"]}
    assert [c["target"] for c in st["connectors"]] == ["bad", "flaky", "ok"]
    for t, c in conns.items():
        assert c["connector"] == "http"
        assert c["breaker"] == "closed"
        assert c["quota"] == []
        assert c["attempts"] == {
            o: counter(fams, "vantage_worker_target_attempts_total",
                       target=t, outcome=o)
            for o in ("success", "retry", "dead")}
    assert conns["ok"]["attempts"] == {"success": 3, "retry": 0, "dead": 0}
    assert conns["flaky"]["attempts"] == {"success": 1, "retry": 1,
                                          "dead": 0}
    assert conns["bad"]["attempts"] == {"success": 0, "retry": 0, "dead": 1}
    assert (conns["ok"]["error_rate"], conns["ok"]["status"]) == \
        (0, "healthy")
    assert (conns["flaky"]["error_rate"], conns["flaky"]["status"]) == \
        (0.5, "degraded")
    assert (conns["bad"]["error_rate"], conns["bad"]["status"]) == \
        (1, "degraded")

    # percentiles as Prometheus computes them from the same buckets
    for t, c in conns.items():
        buckets = latency_buckets(fams, t)
        for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            want = histogram_quantile(q, buckets)
            assert c["latency_seconds"][key] == pytest.approx(want,
                                                              abs=1e-12)
            # within the bucket the rank falls in
            rank = q * buckets[-1][1]
            lo = max([b for b, n in sorted(buckets) if n < rank] + [0])
            hi = min(b for b, n in buckets if n >= rank)
            assert lo <= c["latency_seconds"][key] <= hi

    # history: 10 s buckets whose sums are the attempts
    for t in conns:
        rows = [h for h in st["history"] if h["target"] == t]
        assert rows
        assert sum(h["attempts"] for h in rows) == \
            sum(conns[t]["attempts"].values())
        assert sum(h["errors"] for h in rows) == \
            conns[t]["attempts"]["retry"] + conns[t]["attempts"]["dead"]
        for h in rows:
            assert h["t_ms"] % 10000 == 0
            assert before - 60000 <= h["t_ms"] <= after
    assert [h["t_ms"] for h in st["history"]] == \
        sorted(h["t_ms"] for h in st["history"])

    # the stream, as the sampler's gauges say
    q, = st["queues"]
    assert q["stream"] == STREAM
    assert [q["length"], q["pending"], q["oldest_pending_seconds"],
            q["oldest_entry_seconds"]] == stream_gauges(fams) == [0, 0, 0, 0]

    # what Redis holds, read here on our own
    assert st["delayed"] == rc.zcard("{vq}:delayed") == 0
    assert st["dead_letters"] == rc.zcard("{vq}:dead") == 1
    died = rc.zscore("{vq}:dead", jobs["bad"])
    assert st["dead"] == [{"job_id": jobs["bad"], "type": "bad",
                           "target": "bad", "last_error": "HTTP 400",
                           "died_ms": int(died), "attempts": 1}]

    # the failed attempts, newest first
    fails = st["recent_failures"]
    assert sorted((f["job_id"], f["type"], f["target"], f["outcome"],
                   f["status"], f["error"]) for f in fails) == sorted(
        [(jobs["bad"], "bad", "bad", "dead", 400, "HTTP 400"),
         (jobs["flaky"], "flaky", "flaky", "retry", 503, "HTTP 503")])
    assert fails[0]["at_ms"] >= fails[1]["at_ms"]
    for f in fails:
        assert before - 60000 <= f["at_ms"] <= after
        a = json.loads(rc.lrange("{vq}:att:" + f["job_id"], 0, 0)[0])
        assert a["error"] == f["error"] and a["status"] == f["status"]

    h = request(port, "/status", "HEAD")
    assert h.status_code == 200 and h.content == b""


def test_recent_failures_hold_the_masked_error(worker_factory, target, rc,
                                                port):
    """The error of a failed attempt is the masked text the engine
    stores as last_error, never what the vendor sent in clear."""
    w = worker_factory(conf(target, port, {"echo": "url = URL/echo\n"
                                           "max_attempts = 1"}))
    target.default("/echo", (422, {}, b"bad"))
    jid = dispatch(w, "echo", body=b'{"email":"ada@example.com"}')
    j = wait_state(rc, jid, "dead")
    st = status(port)
    assert st["recent_failures"][0]["error"] == j["last_error"] == "HTTP 422"
    assert st["dead"][0]["last_error"] == j["last_error"]
    assert "ada@example.com" not in json.dumps(st)


# --------------------------------------------------------------------------
# the admin replay

@pytest.fixture
def dead_job(worker_factory, target, rc, port):
    """(worker, job id): a job of type fix dead at its one attempt (a
    400), whose target then answers 200."""
    w = worker_factory(conf(target, port, {"fix": "url = URL/fix\n"
                                           "max_attempts = 1"}))
    target.default("/fix", (400, {}, b"no"))
    jid = dispatch(w, "fix", corr="corr-replay-7")
    wait_state(rc, jid, "dead")
    assert len(target.got("/fix")) == 1
    target.default("/fix", (200, {}, b"{}"))
    return w, jid


def test_replay(dead_job, target, rc, port):
    # the target is mended; the job runs again from the stream
    w, jid = dead_job
    r = replay(port, jid)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"job_id": jid, "state": "queued", "replays": 1}
    j = wait_state(rc, jid, "succeeded")
    assert j["replays"] == "1" and j["attempts"] == "2"
    assert rc.zscore("{vq}:dead", jid) is None
    assert len(target.got("/fix")) == 2

    lines = logged(w, "dead letter replayed")
    assert len(lines) == 1
    assert (lines[0]["level"], lines[0]["job"], lines[0]["correlation_id"],
            lines[0]["attempt"], lines[0]["replays"]) == \
        ("info", jid, "corr-replay-7", "2", "1")

    fams = scrape(port)
    assert counter(fams, "vantage_worker_jobs_total", type="fix",
                   state="replayed") == 1
    assert counter(fams, "vantage_worker_jobs_total", type="fix",
                   state="dead") == 1
    assert counter(fams, "vantage_worker_jobs_total", type="fix",
                   state="succeeded") == 1

    # no longer dead: 409, with its state
    r = replay(port, jid)
    assert r.status_code == 409
    assert r.json()["error"] == "not_dead"
    assert r.json()["job_id"] == jid and r.json()["state"] == "succeeded"

    # no such job
    r = replay(port, "0123456789abcdef" * 2)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert r.json()["job_id"] == "0123456789abcdef" * 2

    # the method
    for m in ("GET", "PUT", "DELETE", "HEAD"):
        r = replay(port, jid, m)
        assert r.status_code == 405, m
        assert r.headers["allow"] == "POST"
        if m != "HEAD":
            assert r.json() == {"error": "method not allowed"}

    # not a job id
    for bad in ("xyz", jid.upper(), jid + "0", jid[:-1], "%30" * 32, ""):
        r = replay(port, bad)
        assert r.status_code == 400, bad
        assert r.json()["error"] == "bad_request"

    # another path under /admin/
    for path in ("/admin/", "/admin/dlq/%s" % jid,
                 "/admin/dlq/%s/replay/x" % jid, "/admin/dlq/%s/skip" % jid):
        r = request(port, path, "POST")
        assert (r.status_code, r.json()) == (404, {"error": "not found"})

    # nothing else was replayed
    assert len(logged(w, "dead letter replayed")) == 1


def test_replay_refused_unless_admin_is_on(worker_factory, target, rc,
                                           port):
    """Without [metrics] admin = on, /admin/ is refused whoever asks, and
    the dead job stays dead; the rest of the listener answers."""
    w = worker_factory(conf(target, port, {"fix": "url = URL/fix\n"
                                           "max_attempts = 1"},
                            admin="off"))
    target.default("/fix", (400, {}, b"no"))
    jid = dispatch(w, "fix")
    wait_state(rc, jid, "dead")
    for method in ("POST", "GET"):
        r = replay(port, jid, method)
        assert (r.status_code, r.json()) == (403, {
            "error": "admin endpoints are off: [metrics] admin = on"}), r
        assert r.headers["cache-control"] == "no-store"
    time.sleep(0.3)
    assert job(rc, jid)["state"] == "dead"
    assert rc.zscore("{vq}:dead", jid) is not None
    assert len(target.got("/fix")) == 1
    assert logged(w, "dead letter replayed") == []
    assert request(port, "/status").status_code == 200


def test_concurrent_replays_one_wins(dead_job, target, rc, port):
    w, jid = dead_job
    go = threading.Barrier(2)
    out = []

    def one():
        with httpx.Client() as c:
            go.wait()
            out.append(c.post("http://127.0.0.1:%d/admin/dlq/%s/replay"
                              % (port, jid), timeout=vh.timeout(10)))

    ts = [threading.Thread(target=one) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(r.status_code for r in out) == [200, 409], \
        [(r.status_code, r.text) for r in out]
    loser = next(r for r in out if r.status_code == 409).json()
    assert loser["error"] == "not_dead"
    wait_state(rc, jid, "succeeded")
    assert job(rc, jid)["replays"] == "1"
    time.sleep(0.5)
    assert len(target.got("/fix")) == 2
    assert len(logged(w, "dead letter replayed")) == 1


def test_replay_finishes_a_crashed_replay(dead_job, rc, port):
    """A replayer that died between its ZREM and its EXEC left the job
    dead but out of {vq}:dead: after the pause the hash still says dead
    with the same replay count, and the replay goes ahead."""
    w, jid = dead_job
    assert rc.zrem("{vq}:dead", jid) == 1
    t = time.monotonic()
    r = replay(port, jid)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t >= 0.9
    assert r.json() == {"job_id": jid, "state": "queued", "replays": 1}
    wait_state(rc, jid, "succeeded")


def test_replay_without_redis(worker_factory, worker_redis, target, port):
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    worker_redis.stop()
    vh.wait_for(lambda: request(port, "/readyz").status_code == 503, 10,
                interval=0.1, what="readyz 503")
    r = replay(port, "0123456789abcdef" * 2)
    assert r.status_code == 503
    assert r.json()["error"] == "redis_unavailable"
    worker_redis.start()


# --------------------------------------------------------------------------
# status: breaker open, Redis down

def test_breaker_open(worker_factory, target, rc, port):
    """Two failures in a row open [target down]'s breaker (conf.c:
    breaker_failures), for its 30 s cool-down."""
    w = worker_factory(conf(
        target, port, {"down": "url = URL/down\ntarget = down\n"
                               "max_attempts = 1",
                       "ok": "url = URL/ok"},
        targets="[target down]\nbreaker_failures = 2\n"
                "breaker_cooldown = 30s\n"))
    target.default("/down", (503, {}, b""))
    for i in range(2):
        wait_state(rc, dispatch(w, "down", fid=i + 1), "dead")
    wait_state(rc, dispatch(w, "ok", fid=9), "succeeded")
    vh.wait_for(lambda: logged(w, "circuit breaker opened"), 5,
                what="breaker opened")
    st = status(port)
    conns = {c["target"]: c for c in st["connectors"]}
    assert (conns["down"]["status"], conns["down"]["breaker"]) == \
        ("breaker_open", "open")
    assert conns["down"]["attempts"] == {"success": 0, "retry": 0,
                                         "dead": 2}
    assert (conns["ok"]["status"], conns["ok"]["breaker"]) == \
        ("healthy", "closed")
    assert value(scrape(port), "vantage_worker_breaker_state",
                 target="down") == 2
    # a job for it now is held back, not attempted
    held = dispatch(w, "down", fid=20)
    vh.wait_for(lambda: job(rc, held).get("held") is not None
                or rc.zcard("{vq}:delayed") == 1, 5,
                what="the job held back")
    st = status(port)
    assert st["delayed"] == 1
    assert len(target.got("/down")) == 2


def test_redis_down(worker_factory, worker_redis, target, rc, port):
    w = worker_factory(conf(target, port, {"bad": "url = URL/bad"}))
    target.default("/bad", (400, {}, b"no"))
    jid = dispatch(w, "bad")
    wait_state(rc, jid, "dead")
    up = status(port)
    assert up["dead_letters"] == 1

    worker_redis.stop()
    vh.wait_for(lambda: request(port, "/readyz").status_code == 503, 10,
                interval=0.1, what="readyz 503")
    t = time.monotonic()
    st = status(port)
    assert time.monotonic() - t < 2
    assert st["redis"] == "disconnected"
    assert (st["delayed"], st["dead_letters"], st["dead"]) == \
        (None, None, None)
    # what the worker holds in memory is still there
    assert st["connectors"] == up["connectors"]
    assert st["recent_failures"] == up["recent_failures"]
    assert st["history"] == up["history"]

    worker_redis.start()
    vh.wait_for(lambda: status(port)["redis"] == "connected", 15,
                interval=0.2, what="connected again")
    st = status(port)
    assert st["dead_letters"] == 1 and st["dead"][0]["job_id"] == jid


def test_paths_and_methods(worker_factory, target, port):
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    for path in ("/status", "/metrics.json"):
        r = request(port, path, "POST")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
    assert request(port, "/status/x").status_code == 404
    assert request(port, "/status?x=1").status_code == 200


# --------------------------------------------------------------------------
# vendor quotas and token refreshes: the Salesforce and HubSpot emulators

def ctl(redis, *args, stdin=None):
    p = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       input=stdin, capture_output=True,
                       timeout=vh.timeout(20))
    assert p.returncode == 0, p.stderr.decode()


def test_salesforce_quota_and_token_refreshes(sf, vault_key, worker_factory,
                                              worker_redis, rc, port):
    ctl(worker_redis, "vault", "put", "sf.key", "--key-file", vault_key,
        "--from-file", sf.jwt_key_file)
    w = worker_factory(
        wh.CONFIG_HEAD + "visibility_timeout = 20s\nshutdown_timeout = 1s\n"
        "\n[metrics]\nlisten = 127.0.0.1:%d\n"
        "\n[vault]\nkey_file = %s\n"
        "\n[target sf]\nca_file = %s\n"
        "\n[connection acme-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
        "login_url = %s\nclient_id = %s\nusername = %s\n"
        "private_key = sf.key\napi_version = 62.0\ntarget = sf\n"
        "\n[job sf.create]\nconnector = salesforce\nconnection = acme-sf\n"
        "operation = create\nobject = Contact\ntimeout = 5s\n"
        % (port, vault_key, sf.ca_file, sf.login_url, sf.consumer_key,
           sf.username))
    sf.set_limit(daily=5000, used=17)
    hdrs = [b"Content-Type\0application/json"]
    jid = dispatch(w, "sf.create", body=b'{"LastName":"Lovelace"}',
                   headers=hdrs)
    wait_state(rc, jid, "succeeded")

    fams = scrape(port)
    q = {"target": "sf", "window": "daily"}
    assert value(fams, "vantage_worker_vendor_quota_used", **q) == 18
    assert value(fams, "vantage_worker_vendor_quota_limit", **q) == 5000
    assert value(fams, "vantage_worker_vendor_quota_ratio", **q) == \
        18 / 5000
    assert counter(fams, "vantage_worker_oauth_refreshes_total",
                   connection="acme-sf", outcome="success") == 1
    sf_conn = next(c for c in status(port)["connectors"]
                   if c["target"] == "sf")
    assert sf_conn["connector"] == "salesforce"
    assert sf_conn["quota"] == [{"window": "daily", "used": 18,
                                 "limit": 5000}]

    # the token is refused (401): a new grant, the call sent again
    sf.expire_tokens()
    jid = dispatch(w, "sf.create", fid=2, body=b'{"LastName":"Hopper"}',
                   headers=hdrs)
    wait_state(rc, jid, "succeeded")
    fams = scrape(port)
    assert counter(fams, "vantage_worker_oauth_refreshes_total",
                   connection="acme-sf", outcome="success") == 2
    assert sf.count("/services/oauth2/token") == 2
    # the 401 and the 201 each said so: 18, then 19 of 5000
    assert value(fams, "vantage_worker_vendor_quota_used", **q) == 19

    # the endpoint refuses the credentials: counted as refused
    sf.expire_tokens()
    sf.fail_next(1, 400, path="/services/oauth2/token",
                 body={"error": "invalid_grant",
                       "error_description": "expired authorization code"})
    jid = dispatch(w, "sf.create", fid=3, body=b'{"LastName":"Noether"}',
                   headers=hdrs)
    wait_state(rc, jid, "dead")
    fams = scrape(port)
    assert counter(fams, "vantage_worker_oauth_refreshes_total",
                   connection="acme-sf", outcome="refused") == 1
    assert counter(fams, "vantage_worker_oauth_refreshes_total",
                   connection="acme-sf", outcome="success") == 2


def test_hubspot_quota(hs, vault_key, worker_factory, worker_redis, rc,
                       port):
    ctl(worker_redis, "vault", "put", "hs.pat", "--key-file", vault_key,
        stdin=hs.token.encode())
    worker_factory.secrets = (hs.token,)
    w = worker_factory(
        wh.CONFIG_HEAD + "visibility_timeout = 20s\nshutdown_timeout = 1s\n"
        "\n[metrics]\nlisten = 127.0.0.1:%d\n"
        "\n[vault]\nkey_file = %s\n"
        "\n[target hs]\nca_file = %s\n"
        "\n[connection hs]\nvendor = hubspot\nauth = private_app\n"
        "token = hs.pat\nbase_url = %s\ntarget = hs\n"
        "\n[job hs.create]\nconnector = hubspot\nconnection = hs\n"
        "operation = create\nobject = contacts\ntimeout = 5s\n"
        % (port, vault_key, hs.ca_file, hs.url))
    hs.limits.configure("private", daily=1000, burst=40, interval_ms=10000,
                        secondly=10)
    hs.limits.reset()
    jid = dispatch(w, "hs.create",
                   body=b'{"properties":{"email":"ada@example.com"}}',
                   headers=[b"Content-Type\0application/json"])
    wait_state(rc, jid, "succeeded")
    assert hs.count("/crm/v3/objects/contacts") == 1

    fams = scrape(port)
    got = {w: (value(fams, "vantage_worker_vendor_quota_used", target="hs",
                     window=w),
               value(fams, "vantage_worker_vendor_quota_limit", target="hs",
                     window=w),
               value(fams, "vantage_worker_vendor_quota_ratio", target="hs",
                     window=w))
           for w in ("daily", "burst", "secondly")}
    assert got == {"daily": (1, 1000, 1 / 1000), "burst": (1, 40, 1 / 40),
                   "secondly": (1, 10, 1 / 10)}
    hs_conn = next(c for c in status(port)["connectors"]
                   if c["target"] == "hs")
    assert hs_conn["connector"] == "hubspot"
    assert hs_conn["quota"] == [
        {"window": "daily", "used": 1, "limit": 1000},
        {"window": "burst", "used": 1, "limit": 40},
        {"window": "secondly", "used": 1, "limit": 10}]
    # a private app's token comes from the vault: no token endpoint
    assert not [k for k in fams["vantage_worker_oauth_refreshes_total"]
                ["samples"]]


# --------------------------------------------------------------------------
# FETCH for nginx: the identity provider emulator

def fetch(w, kind="jwks", token=None):
    fields = [(T_IDP, "main"), (T_FETCH_KIND, kind)]
    if token is not None:
        fields.append((T_TOKEN, token))
    with wh.FrameClient(w.socket_path) as c:
        r = c.request(FETCH, 7, fields, 5.0)
    assert r.type == FETCH | REPLY, r
    return r


def test_fetch_counters(worker_factory, pki, base_dir, port):
    from idp import IdP
    d = vh.make_dir(os.path.join(base_dir, "status-idp-%d" % os.getpid()))
    idp = IdP(pki=pki, directory=d, max_age=300,
              clients={"vantage": "s3cr3t-status"})
    secret = vh.write_file(os.path.join(d, "secret"), "s3cr3t-status\n",
                           mode=0o600)
    idp.add_token("tok-active-1", sub="advisor-1")
    worker_factory.secrets = ("s3cr3t-status", "tok-active-1")
    try:
        idp.fail("/jwks", "500")
        w = worker_factory(
            wh.CONFIG_HEAD + "\n[metrics]\nlisten = 127.0.0.1:%d\n"
            "\n[idp main]\ndiscovery = %s\n"
            "introspection_url = %s/introspect\nca_file = %s\n"
            "client_id = vantage\nclient_secret_file = %s\n"
            "min_refresh = 1s\ntimeout = 1s\n"
            % (port, idp.url, idp.url, idp.ca_file, secret))
        source = "https://127.0.0.1:%d/" % idp.port

        def fetches(kind, outcome):
            return counter(scrape(port), "vantage_worker_fetch_total",
                           kind=kind, outcome=outcome)

        def failures():
            return value(scrape(port),
                         "vantage_worker_jwks_consecutive_failures",
                         source=source)

        # the key set fails: discovery ok, jwks http_error, 1 in a row
        assert fetch(w).status == 502
        assert (fetches("discovery", "ok"), fetches("jwks", "http_error"),
                failures()) == (1, 1, 1)
        # asked again at once: answered from memory, nothing fetched
        assert fetch(w).status == 502
        assert fetches("jwks", "http_error") == 1
        # after the 1 s backoff, the next FETCH asks again: 2 in a row
        time.sleep(1.1)
        assert fetch(w).status == 502
        assert (fetches("discovery", "ok"), fetches("jwks", "http_error"),
                failures()) == (2, 2, 2)

        # the provider mends: a success resets the run
        idp.up()
        time.sleep(2.1)
        assert fetch(w).status == 200
        assert (fetches("discovery", "ok"), fetches("jwks", "ok"),
                failures()) == (3, 1, 0)
        assert idp.count("/jwks") == 3

        # introspection: its own kind
        r = fetch(w, "introspect", token="tok-active-1")
        assert r.status == 200, r
        assert fetches("introspection", "ok") == 1

        fams = scrape(port)
        assert {dict(k[1])["kind"]: v for k, v in
                fams["vantage_worker_fetch_total"]["samples"].items()
                if dict(k[1])["outcome"] == "ok"} == \
            {"discovery": 3, "jwks": 1, "introspection": 1}
    finally:
        idp.stop()


def test_scheduled_runs_family_is_declared(worker_factory, target, port):
    """No [schedule] exists yet: the family is declared, with no series,
    so that dashboards and alerts can name it before it has samples."""
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    f = scrape(port)["vantage_worker_scheduled_runs_total"]
    assert f["type"] == "counter" and f["samples"] == {}
