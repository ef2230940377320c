"""test_observability_e2e.py -- one known sequence, seen by both endpoints.

nginx with the module (JWT, a Redis rate limit, vantage_dispatch) in front
of the real vantage-worker, which delivers to tests/fakes/http_target.py;
nginx proxies the worker's [metrics] Unix socket, as an operator would.
After a sequence of requests whose every outcome is known beforehand, the
module's `vantage_metrics` and the worker's `/metrics` (both through
nginx, both read by the strict parser of prom_text.py) must agree with it
and with each other, to the unit:

  - nginx counted each request by location and status class, each
    authentication outcome, each rate-limit decision and each dispatch;
  - the worker accepted as many jobs as nginx dispatched, and settled each
    on its target as the target answered it (successes, a retried 503,
    a permanent 400 in the dead letters);
  - the access log's JSON lines carry the same outcomes, the job ids the
    202s gave, and the correlation id the worker logged for each attempt.
"""

import json
import os

import httpx
import pytest

import prom_text
import vantage_harness as vh
import worker_harness as wh
from vantage_tokens import claims, mint

SECRET = b"observability-e2e-secret-0123456789abcd"

LOG_FORMAT = ("'{\"uri\":\"$uri\",\"status\":$status,"
              "\"auth\":\"$vantage_auth_method:$vantage_auth_outcome\","
              "\"rl\":\"$vantage_rate_limit\",\"job\":\"$vantage_job_id\","
              "\"rid\":\"$vantage_request_id\"}'")

ALLOW = r"\[info\]"


@pytest.fixture
def short_dir():
    """A short directory for the metrics socket (sun_path is 108 bytes)."""
    d = vh.make_dir("/tmp/vobs-%d" % os.getpid())
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def token(sub, **kw):
    return mint(SECRET, "HS256", claims(sub=sub, tenant="acme", **kw))


def scrape(n, path):
    r = httpx.get(n.base_url("http") + path, timeout=vh.timeout(10),
                  trust_env=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == \
        "text/plain; version=0.0.4; charset=utf-8"
    return prom_text.parse(r.text)


def series(fams, family):
    """{frozenset of labels: value} of a family, zero series left out."""
    return {labels: v for (name, labels), v in
            fams[family]["samples"].items() if name == family and v}


def L(**kw):
    return frozenset(kw.items())


def test_a_known_sequence_counted_alike_by_nginx_and_the_worker(
        worker_factory, target, rc, redis, nginx_factory, short_dir):
    msock = os.path.join(short_dir, "m.sock")
    worker_factory.socket_mode = 0o777
    w = worker_factory(wh.CONFIG_HEAD + (
        "listen_mode = 0777\nvisibility_timeout = 6500ms\n"
        "shutdown_timeout = 1s\n\n"
        "[metrics]\nlisten = unix:%s\n\n"
        "[job e2e.ok]\nconnector = http\nurl = %s\ntimeout = 1s\n"
        "backoff_base = 50ms\nbackoff_cap = 100ms\n\n"
        "[job e2e.bad]\nconnector = http\nurl = %s\ntimeout = 1s\n"
        % (msock, target.url("/ok"), target.url("/bad"))))
    target.script("/ok", [(503, {}, b"")])          # one retry, then 200s
    target.default("/bad", (400, {"Content-Type": "application/json"},
                            b'{"error":"rejected"}'))

    n = nginx_factory(http="""
    vantage_redis %s timeout=2s;
    vantage_worker unix:%s timeout=5s;
    log_format e2e escape=json %s;
""" % (redis.address, w.socket_path, LOG_FORMAT), server="""
        access_log @PREFIX@/e2e.log e2e;
        location /orders/ {
            vantage_jwt on;
            vantage_jwt_keys @PREFIX@/hs.jwk;
            vantage_rate_limit $vantage_jwt_claim_sub rate=1r/m burst=4;
            vantage_tenant $vantage_jwt_claim_tenant;
            location = /orders/ok { vantage_dispatch e2e.ok; }
            location = /orders/bad { vantage_dispatch e2e.bad; }
        }
        location = /vantage/metrics {
            access_log off;
            vantage_metrics;
        }
        location /vantage/worker/ {
            access_log off;
            proxy_pass http://unix:%s:/;
        }
""" % msock, start=False)
    vh.write_file(os.path.join(n.prefix, "hs.jwk"), json.dumps(
        {"keys": [{"kty": "oct", "k": vh.b64url(SECRET), "alg": "HS256"}]}))
    n.start()

    c = httpx.Client(base_url=n.base_url("http"), timeout=vh.timeout(10),
                     trust_env=False)
    alice, bob = token("alice"), token("bob")
    expired = token("carol", iat=1, exp=2)
    sent = []                       # (path, token, correlation id, status)
    plan = [("/orders/ok", alice, 202), ("/orders/ok", alice, 202),
            ("/orders/ok", alice, 202), ("/orders/bad", alice, 202),
            ("/orders/ok", alice, 429),      # alice's burst of 4 is spent
            ("/orders/ok", bob, 202),
            ("/orders/ok", None, 401), ("/orders/ok", expired, 401),
            ("/orders/ok", "not.a.token", 401)]
    jobs = {}
    for i, (path, tok, want) in enumerate(plan):
        h = {"Content-Type": "application/json", "X-Request-Id": "e2e-%d" % i}
        if tok is not None:
            h["Authorization"] = "Bearer " + tok
        r = c.post(path, content=b'{"n":%d}' % i, headers=h)
        assert r.status_code == want, (i, r.status_code, r.text)
        if want == 202:
            jobs["e2e-%d" % i] = r.json()["job_id"]
        sent.append((path, want))
    c.close()

    def state(jid):
        return rc.hget("{vq}:job:" + jid, "state")

    vh.wait_for(lambda: all(state(j) in (b"succeeded", b"dead")
                            for j in jobs.values()),
                20, what="every job settled")
    assert {cid: state(j) for cid, j in jobs.items()} == {
        "e2e-0": b"succeeded", "e2e-1": b"succeeded", "e2e-2": b"succeeded",
        "e2e-3": b"dead", "e2e-5": b"succeeded"}

    # ---------------------------------------------------------------- nginx
    m = scrape(n, "/vantage/metrics")
    assert series(m, "vantage_http_requests_total") == {
        L(**{"location": "/orders/ok", "class": "2xx"}): 4,
        L(**{"location": "/orders/bad", "class": "2xx"}): 1,
        L(**{"location": "/orders/ok", "class": "4xx"}): 4}
    assert series(m, "vantage_auth_total") == {
        L(method="jwt", outcome="ok"): 6,
        L(method="jwt", outcome="missing"): 1,
        L(method="jwt", outcome="expired"): 1,
        L(method="jwt", outcome="malformed"): 1}
    assert series(m, "vantage_ratelimit_decisions_total") == {
        L(decision="admitted"): 5, L(decision="limited"): 1}
    assert series(m, "vantage_dispatch_total") == {L(outcome="accepted"): 5}
    assert m["vantage_dispatch_seconds"]["samples"][
        ("vantage_dispatch_seconds_count", frozenset())] == 5
    # one Redis round trip per rate-limited request, and no error
    assert m["vantage_redis_rtt_seconds"]["samples"][
        ("vantage_redis_rtt_seconds_count", frozenset())] == 6
    assert series(m, "vantage_redis_errors_total") == {}

    # --------------------------------------------------------------- worker
    wm = scrape(n, "/vantage/worker/metrics")
    assert series(wm, "vantage_worker_dispatch_accepted_total") == {
        L(type="e2e.ok"): 4, L(type="e2e.bad"): 1}
    # the same five jobs, as nginx counted them
    assert sum(series(wm, "vantage_worker_dispatch_accepted_total")
               .values()) == series(m, "vantage_dispatch_total")[
                   L(outcome="accepted")]
    assert series(wm, "vantage_worker_attempts_total") == {
        L(type="e2e.ok", outcome="retry"): 1,
        L(type="e2e.ok", outcome="success"): 4,
        L(type="e2e.bad", outcome="dead"): 1}
    assert series(wm, "vantage_worker_dead_letters_total") == {
        L(type="e2e.bad"): 1}
    assert series(wm, "vantage_worker_jobs_total") == {
        L(type="e2e.ok", state="accepted"): 4,
        L(type="e2e.bad", state="accepted"): 1,
        L(type="e2e.ok", state="retrying"): 1,
        L(type="e2e.ok", state="succeeded"): 4,
        L(type="e2e.bad", state="dead"): 1}
    hist = wm["vantage_worker_attempt_duration_seconds"]["samples"]
    assert sum(v for (name, _), v in hist.items()
               if name.endswith("_count")) == 6
    # what the target saw: six attempts, each with its job's key
    got = target.got()
    assert len(got) == 6
    assert sorted(r["headers"]["idempotency-key"] for r in got) == sorted(
        [jobs["e2e-0"], jobs["e2e-1"], jobs["e2e-2"], jobs["e2e-5"],
         jobs["e2e-3"]] + [jobs["e2e-0"]])

    # ----------------------------------------------------------------- logs
    lines = [json.loads(x) for x in vh.wait_for(
        lambda: (lambda t: t if len(t) >= len(plan) else None)(
            open(os.path.join(n.prefix, "e2e.log"))
            .read().splitlines()), 5, what="the access log's lines")]
    assert [(x["uri"], x["status"], x["auth"], x["rl"]) for x in lines] == [
        ("/orders/ok", 202, "jwt:ok", "admitted"),
        ("/orders/ok", 202, "jwt:ok", "admitted"),
        ("/orders/ok", 202, "jwt:ok", "admitted"),
        ("/orders/bad", 202, "jwt:ok", "admitted"),
        ("/orders/ok", 429, "jwt:ok", "limited"),
        ("/orders/ok", 202, "jwt:ok", "admitted"),
        ("/orders/ok", 401, "jwt:missing", ""),
        ("/orders/ok", 401, "jwt:expired", ""),
        ("/orders/ok", 401, "jwt:malformed", "")]
    assert [x["rid"] for x in lines] == ["e2e-%d" % i
                                         for i in range(len(plan))]
    assert {x["rid"]: x["job"] for x in lines if x["job"]} == jobs
    # the worker's JSON lines carry the same correlation ids
    attempts = [o for o in w.log_lines() if o.get("msg") == "attempt"]
    assert sorted((o["correlation_id"], o["job"]) for o in attempts) == \
        sorted([("e2e-0", jobs["e2e-0"])] * 2
               + [(cid, jobs[cid]) for cid in ("e2e-1", "e2e-2", "e2e-3",
                                               "e2e-5")])
