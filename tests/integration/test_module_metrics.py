"""test_module_metrics.py -- the module's metrics (vantage_metrics) and the
access log's variables (issue 8).

nginx with the module, a real redis-server (rate limits, webhook replays,
the worker's queue) and the real vantage-worker (dispatch); for
introspection and key sets, tests/fakes/idp.py behind the worker.  Tokens
come from PyJWT, webhook signatures from Python's hmac, API keys' hashes
from hashlib.  Every scrape goes through httpx and the strict parser of
prom_text.py.  What is shown:

  - a known sequence of requests gives exact counts per label set in
    every family: requests by location (a regex location by its pattern,
    a named one, "= /x" as "/x") and status class, authentication
    outcomes of JWTs and API keys, JWT cache hits and misses, rate-limit
    decisions, Redis round trips (one per rate-limited request and per
    webhook replay check), dispatches and their latency, webhook
    verifications;
  - the JSON mirror holds the same families with the same values;
  - with two worker processes the sum is exact;
  - counts survive a reload that keeps the locations, and start from zero
    when the locations change; when old workers still draining hold every
    slot, a new one counts in the shared slot, exactly all the same;
  - dry runs, the fallback without Redis, Redis errors and the breaker;
  - a hundred tokens, keys and client addresses add no series;
  - introspection results and outcomes (the negative cache too), and key
    sets' age and refresh failures, the query string not in the label;
  - vantage_metrics_collect off counts nothing and the endpoint answers;
  - nginx -t messages for bad arguments;
  - the README's JSON log_format, rendered verbatim: each line parses and
    holds the exact outcome, decision, correlation id and job id (the one
    the 202 gave, and Redis holds).
"""

import base64
import hashlib
import hmac
import http.server
import json
import math
import os
import re
import secrets
import sys
import tempfile
import threading
import time

import httpx
import jwt
import pytest

import prom_text
import vantage_harness as vh
import worker_harness as wh
from vantage_tokens import claims, mint


SECRET = b"module-metrics-secret-0123456789abcdef"
OTHER_SECRET = b"not-the-secret-of-the-gateway-0123456"
DS_SECRET = "ds-metrics-secret-3c1f7a"

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STREAM = b"{vq}:jobs"

# every family of the contract, in the order the module writes them
FAMILIES = [
    ("vantage_http_requests_total", "counter"),
    ("vantage_auth_total", "counter"),
    ("vantage_jwt_cache_total", "counter"),
    ("vantage_jwks_age_seconds", "gauge"),
    ("vantage_jwks_refresh_failures_total", "counter"),
    ("vantage_introspection_total", "counter"),
    ("vantage_ratelimit_decisions_total", "counter"),
    ("vantage_redis_rtt_seconds", "histogram"),
    ("vantage_redis_errors_total", "counter"),
    ("vantage_redis_breaker_state", "gauge"),
    ("vantage_dispatch_seconds", "histogram"),
    ("vantage_dispatch_total", "counter"),
    ("vantage_webhook_verifications_total", "counter"),
]

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

# the pairs of vantage_auth_total that can occur (README, Metrics)
AUTH_PAIRS = {
    "jwt": ("ok", "missing", "malformed", "bad_signature", "expired",
            "not_yet_valid", "unknown_key", "alg_not_allowed",
            "claim_refused", "unavailable", "error"),
    "introspection": ("ok", "missing", "malformed", "expired",
                      "not_yet_valid", "claim_refused", "inactive",
                      "unavailable", "error"),
    "api_key": ("ok", "missing", "malformed", "unknown_key", "expired",
                "disabled", "claim_refused", "error"),
}

WEBHOOK_OUTCOMES = ("ok", "replayed", "missing", "malformed", "mismatch",
                    "stale", "future", "error")

# what the failure tests make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage (worker|jwt|redis)"


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def transport():
    """HTTP/1.1: what is counted does not depend on the transport."""
    return "http"


@pytest.fixture
def workers(worker_factory):
    """Workers whose socket nginx's workers (user nobody) open."""
    worker_factory.socket_mode = 0o777
    worker_factory.secrets = (DS_SECRET,)
    return worker_factory


def token(sub="alice", secret=SECRET, **kw):
    return mint(secret, "HS256", claims(sub=sub, **kw))


def api_key(key_id):
    return "vk_%s_%s" % (key_id, base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode().rstrip("="))


def key_entry(key_id, key, **fields):
    return dict(id=key_id, tenant="acme",
                sha256=hashlib.sha256(key.encode()).hexdigest(), **fields)


def ds_signature(body, secret=DS_SECRET):
    return base64.b64encode(hmac.new(secret.encode(), body,
                                     hashlib.sha256).digest()).decode()


def write_files(n, keys=()):
    """The JWT key set, the API key file and DocuSign's secret, in n's
    prefix."""
    jwk = {"kty": "oct", "k": vh.b64url(SECRET), "alg": "HS256"}
    vh.write_file(os.path.join(n.prefix, "hs.jwk"),
                  json.dumps({"keys": [jwk]}))
    vh.write_file(os.path.join(n.prefix, "keys.json"),
                  json.dumps({"keys": list(keys)}))
    vh.write_file(os.path.join(n.prefix, "ds.secret"), DS_SECRET + "\n")


def get(n, path, tok=None, headers=None, method="GET", content=None,
        local_address=None):
    """One request on a connection of its own; an httpx.Response."""
    h = dict(headers or {})
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
    kw = {}
    if local_address:
        kw["transport"] = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(base_url=n.base_url("http"), timeout=vh.timeout(10),
                      trust_env=False, **kw) as c:
        return c.request(method, path, headers=h, content=content)


def scrape(n, path="/metrics"):
    """The text exposition, parsed strictly: {family: ...}."""
    r = get(n, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == TEXT_TYPE
    assert r.headers["cache-control"] == "no-store"
    fams = prom_text.parse(r.text)
    assert [(name, fams[name]["type"]) for name in fams] == FAMILIES, \
        list(fams)
    for name in fams:
        assert fams[name]["help"], name
    return fams


def scrape_json(n, path="/metrics.json"):
    r = get(n, path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def val(fams, family, sample=None, **labels):
    """A series' value; the series must be there (unlike prom_text.value,
    which says 0 for an absent one)."""
    key = (sample or family, frozenset(labels.items()))
    assert key in fams[family]["samples"], (family, labels)
    return fams[family]["samples"][key]


def counts(fams, family, label):
    """{label value: count} of a family with one label."""
    return {dict(k[1])[label]: v for k, v in fams[family]["samples"].items()}


def pairs(fams, family, a, b):
    """{(label a, label b): count} of a family with two labels."""
    out = {}
    for (_, labels), v in fams[family]["samples"].items():
        d = dict(labels)
        assert set(d) == {a, b}, d
        out[(d[a], d[b])] = v
    return out


def requests_by(fams):
    """{(location, class): count}, every series."""
    return pairs(fams, "vantage_http_requests_total", "location", "class")


def nonzero(d):
    return {k: v for k, v in d.items() if v}


def histogram(fams, family):
    """(count, sum, [(le, cumulative)]) of a histogram without labels."""
    f = fams[family]["samples"]
    buckets = sorted((float(dict(l)["le"]), v) for (s, l), v in f.items()
                     if s == family + "_bucket")
    return (f[(family + "_count", frozenset())],
            f[(family + "_sum", frozenset())], buckets)


def normalize_text(fams):
    """{family: (type, help, {(sample, labels with le as a float): v})}."""
    out = {}
    for name, f in fams.items():
        samples = {}
        for (s, labels), v in f["samples"].items():
            d = dict(labels)
            if "le" in d:
                d["le"] = float(d["le"])
            samples[(s, frozenset(d.items()))] = v
        out[name] = (f["type"], f["help"], samples)
    return out


def normalize_json(doc):
    """The JSON mirror in normalize_text()'s shape."""
    assert set(doc) == {"metrics"}, doc.keys()
    out = {}
    for f in doc["metrics"]:
        assert set(f) == {"name", "type", "help", "samples"}, f
        assert f["name"] not in out, f["name"]
        samples = {}
        for s in f["samples"]:
            labels = s["labels"]
            if f["type"] != "histogram":
                assert set(s) == {"labels", "value"}, s
                samples[(f["name"], frozenset(labels.items()))] = s["value"]
                continue
            assert set(s) == {"labels", "count", "sum", "buckets"}, s
            assert s["buckets"][-1][0] == "+Inf", s
            for le, c in s["buckets"]:
                le = math.inf if le == "+Inf" else float(le)
                samples[(f["name"] + "_bucket",
                         frozenset(dict(labels, le=le).items()))] = c
            samples[(f["name"] + "_sum", frozenset(labels.items()))] = \
                s["sum"]
            samples[(f["name"] + "_count", frozenset(labels.items()))] = \
                s["count"]
        out[f["name"]] = (f["type"], f["help"], samples)
    return out


def log_lines(path, n, seconds=5):
    """The first n lines of an access log, each parsed as JSON; waits for
    them (a line is written once the response has gone)."""
    def ready():
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        return lines if len(lines) >= n else None
    lines = vh.wait_for(ready, seconds, what="%d lines in %s" % (n, path))
    return [json.loads(line) for line in lines]


def readme_log_block():
    """The nginx block of README.md's "## Logs" section, as it is."""
    with open(os.path.join(vh.REPO, "README.md")) as f:
        text = f.read()
    start = text.index("\n## Logs\n")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```nginx\n(.*?)```", text[start:end], re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


# --------------------------------------------------------------------------
# the gateway of most tests

# a JWT location that dispatches, its tenant from the token
ORDERS = """
        location = /orders {
            vantage_jwt on;
            vantage_jwt_keys @PREFIX@/hs.jwk;
            vantage_tenant $vantage_jwt_claim_tenant;
            vantage_dispatch orders.create;
        }
"""


def gateway_conf(w, redis, backend):
    """http and server snippets: a JWT location with a cache and a rate
    limit, an API key location, a dispatch location, a DocuSign webhook,
    a regex, a named and an exact location, and the two endpoints."""
    http = f"""
    vantage_redis {redis.address} timeout=2s;
    vantage_worker unix:{w.socket_path} timeout=5s;
"""
    server = f"""
        location /api/ {{
            vantage_jwt on;
            vantage_jwt_keys @PREFIX@/hs.jwk;
            vantage_jwt_cache zone=mmjwt:1m;
            vantage_rate_limit $vantage_jwt_claim_sub rate=1r/m burst=3;
            proxy_pass http://{backend.address};
        }}
        location /keys/ {{
            vantage_auth api_key;
            vantage_api_keys @PREFIX@/keys.json;
            proxy_pass http://{backend.address};
        }}
{ORDERS}        location = /hooks/docusign {{
            vantage_webhook_verify docusign secret_file=@PREFIX@/ds.secret;
            vantage_tenant acme;
            vantage_dispatch docusign.connect status=200;
        }}
        location ~ ^/re[0-9]+$ {{
            return 204;
        }}
        location /redir/ {{
            error_page 418 = @teapot;
            return 418;
        }}
        location @teapot {{
            return 200 "named\\n";
        }}
        location = /exact {{
            return 200 "exact\\n";
        }}
        location = /metrics {{
            vantage_metrics;
        }}
        location = /metrics.json {{
            vantage_metrics json;
        }}
"""
    return http, server


KEYS = {"good": api_key("good"), "old": api_key("old"),
        "off": api_key("off")}


def start_gateway(nginx_factory, w, redis, backend, worker_processes=1,
                  http_extra=""):
    http, server = gateway_conf(w, redis, backend)
    n = nginx_factory(http=http + http_extra, server=server, start=False,
                      worker_processes=worker_processes)
    write_files(n, [key_entry("good", KEYS["good"]),
                    key_entry("old", KEYS["old"], expires=1000000000),
                    key_entry("off", KEYS["off"], disabled=True)])
    return n.start()


@pytest.fixture
def gateway(nginx_factory, workers, redis_server, backend):
    w = workers()
    return start_gateway(nginx_factory, w, redis_server, backend)


def run_sequence(n, rc):
    """The known sequence; returns the dispatched jobs' ids."""
    alice = token("alice", tenant="acme")

    # /api/: the same token four times against a burst of 3
    assert [get(n, "/api/x", alice).status_code for _ in range(4)] == \
        [200, 200, 200, 429]
    assert get(n, "/api/x", token("alice", OTHER_SECRET)).status_code == 401
    assert get(n, "/api/x", token(exp=vh_now() - 100,
                                  iat=vh_now() - 400)).status_code == 401
    assert get(n, "/api/x").status_code == 401
    assert get(n, "/api/x", "abc").status_code == 401
    assert get(n, "/api/x", token(nbf=vh_now() + 600)).status_code == 401

    # /keys/
    for key, status in ((KEYS["good"], 200), (api_key("nobody"), 401),
                        (KEYS["old"], 401), (KEYS["off"], 401),
                        (None, 401)):
        h = {"X-Api-Key": key} if key else {}
        assert get(n, "/keys/x", headers=h).status_code == status

    # /orders: a job, then its idempotent repeat
    h = {"Content-Type": "application/json", "Idempotency-Key": "order-1"}
    r1 = get(n, "/orders", alice, h, "POST", b'{"order": 1}')
    r2 = get(n, "/orders", alice, h, "POST", b'{"order": 1}')
    assert (r1.status_code, r2.status_code) == (202, 202), (r1.text, r2.text)
    assert r1.json()["job_id"] == r2.json()["job_id"]
    assert r2.headers["idempotent-replayed"] == "true"

    # DocuSign: verified, its replay, a wrong signature, none
    body = b'{"envelopeId": "e-1", "status": "completed"}'
    sig = {"X-DocuSign-Signature-1": ds_signature(body),
           "Content-Type": "application/json"}
    r3 = get(n, "/hooks/docusign", None, sig, "POST", body)
    assert r3.status_code == 200, r3.text
    r = get(n, "/hooks/docusign", None, sig, "POST", body)
    assert (r.status_code, r.content) == (200, b'{"status":"duplicate"}\n')
    bad = dict(sig, **{"X-DocuSign-Signature-1":
                       ds_signature(body, "another-secret")})
    assert get(n, "/hooks/docusign", None, bad, "POST",
               body).status_code == 401
    assert get(n, "/hooks/docusign", None,
               {"Content-Type": "application/json"}, "POST",
               body).status_code == 401

    # nginx's own kinds of locations
    assert get(n, "/re7").status_code == 204
    assert get(n, "/redir/x").text == "named\n"
    assert get(n, "/exact").text == "exact\n"
    assert get(n, "/nowhere").status_code == 404

    jobs = [r1.json()["job_id"], r3.json()["job_id"]]
    for job_id in jobs:
        assert rc.exists(b"{vq}:job:" + job_id.encode()) == 1
    return jobs


def vh_now():
    return int(time.time())


# what run_sequence() makes of each family
EXPECTED_REQUESTS = {
    ("/api/", "2xx"): 3, ("/api/", "4xx"): 6,
    ("/keys/", "2xx"): 1, ("/keys/", "4xx"): 4,
    ("/orders", "2xx"): 2,
    ("/hooks/docusign", "2xx"): 2, ("/hooks/docusign", "4xx"): 2,
    ("^/re[0-9]+$", "2xx"): 1,
    ("@teapot", "2xx"): 1,
    ("/exact", "2xx"): 1,
    ("", "4xx"): 1,
}

EXPECTED_AUTH = {
    ("jwt", "ok"): 6, ("jwt", "bad_signature"): 1, ("jwt", "expired"): 1,
    ("jwt", "missing"): 1, ("jwt", "malformed"): 1,
    ("jwt", "not_yet_valid"): 1,
    ("api_key", "ok"): 1, ("api_key", "unknown_key"): 1,
    ("api_key", "expired"): 1, ("api_key", "disabled"): 1,
    ("api_key", "missing"): 1,
}


def auth_by(fams):
    return pairs(fams, "vantage_auth_total", "method", "outcome")


def webhook_by(fams):
    return pairs(fams, "vantage_webhook_verifications_total", "profile",
                 "outcome")


# --------------------------------------------------------------------------
# exact counts

@pytest.mark.log_allow(r"\[info\]")
def test_known_sequence_exact_counts(gateway, rc):
    n = gateway
    jobs = run_sequence(n, rc)
    fams = scrape(n)

    # every location has its five classes, at zero until counted
    locations = {"", "/api/", "/keys/", "/orders", "/hooks/docusign",
                 "^/re[0-9]+$", "/redir/", "@teapot", "/exact", "/metrics",
                 "/metrics.json"}
    req = requests_by(fams)
    assert set(req) == {(loc, c) for loc in locations for c in CLASSES}
    assert nonzero(req) == EXPECTED_REQUESTS

    auth = auth_by(fams)
    assert set(auth) == {(m, o) for m, os_ in AUTH_PAIRS.items()
                         for o in os_}
    assert nonzero(auth) == EXPECTED_AUTH

    assert counts(fams, "vantage_jwt_cache_total", "result") == \
        {"hit": 3, "miss": 5}
    assert counts(fams, "vantage_ratelimit_decisions_total", "decision") == \
        {"admitted": 3, "limited": 1, "dry_run": 0, "fallback": 0}
    assert counts(fams, "vantage_introspection_total", "result") == \
        {"cache_hit": 0, "active": 0, "inactive": 0, "error": 0}
    assert counts(fams, "vantage_redis_errors_total", "kind") == \
        {"connect": 0, "timeout": 0, "lost": 0, "error_reply": 0}
    assert val(fams, "vantage_redis_breaker_state") == 0
    assert counts(fams, "vantage_dispatch_total", "outcome") == \
        {"accepted": 2, "replayed": 1, "refused_4xx": 0, "refused_5xx": 0,
         "unavailable": 0, "timeout": 0}

    hooks = webhook_by(fams)
    assert len(hooks) == 3 * len(WEBHOOK_OUTCOMES) + 5
    assert nonzero(hooks) == {("docusign", "ok"): 1,
                              ("docusign", "replayed"): 1,
                              ("docusign", "mismatch"): 1,
                              ("docusign", "missing"): 1}

    # no key set source: the families are there, without samples
    assert fams["vantage_jwks_age_seconds"]["samples"] == {}
    assert fams["vantage_jwks_refresh_failures_total"]["samples"] == {}

    # one Redis round trip per rate-limited request and per replay check
    count, total, buckets = histogram(fams, "vantage_redis_rtt_seconds")
    assert count == 4 + 2
    assert [le for le, _ in buckets][:3] == [0.0001, 0.00025, 0.0005]
    assert buckets[-1] == (math.inf, count)
    assert 0 < total < count * 2.0
    # loopback: every call well within a second
    assert dict(buckets)[1.0] == count

    count, total, buckets = histogram(fams, "vantage_dispatch_seconds")
    assert count == 3
    assert buckets[-1] == (math.inf, 3)
    assert 0 < total < 3 * 5.0

    # the scrape itself is counted once answered
    again = scrape(n)
    assert nonzero(requests_by(again)) == {**EXPECTED_REQUESTS,
                                           ("/metrics", "2xx"): 1}
    assert len(jobs) == 2


@pytest.mark.log_allow(r"\[info\]")
def test_json_mirror_equals_text(gateway, rc):
    n = gateway
    run_sequence(n, rc)
    doc = scrape_json(n)
    fams = scrape(n)
    assert [f["name"] for f in doc["metrics"]] == [f for f, _ in FAMILIES]
    mirror = normalize_json(doc)
    text = normalize_text(fams)
    # the text was scraped after the JSON: one request more, there
    key = ("vantage_http_requests_total",
           frozenset({"location": "/metrics.json", "class": "2xx"}.items()))
    assert text["vantage_http_requests_total"][2][key] == 1
    assert mirror["vantage_http_requests_total"][2][key] == 0
    text["vantage_http_requests_total"][2][key] = 0
    for name, _ in FAMILIES:
        assert mirror[name] == text[name], name


def test_methods_other_than_get_and_head(gateway):
    n = gateway
    r = get(n, "/metrics", method="HEAD")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == TEXT_TYPE
    for path in ("/metrics", "/metrics.json"):
        r = get(n, path, method="POST", content=b"x=1")
        assert r.status_code == 405, r
        assert r.headers["allow"] == "GET, HEAD"
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        assert r.json() == {"error": "method_not_allowed",
                            "error_description":
                                "metrics are read with GET or HEAD"}
    fams = scrape(n)
    assert val(fams, "vantage_http_requests_total", location="/metrics",
               **{"class": "4xx"}) == 1
    assert val(fams, "vantage_http_requests_total",
               location="/metrics.json", **{"class": "4xx"}) == 1
    assert val(fams, "vantage_http_requests_total", location="/metrics",
               **{"class": "2xx"}) == 1


# --------------------------------------------------------------------------
# several processes, reloads

def simple_server(extra=""):
    return """
        location /p/ {
            add_header X-Worker $pid always;
            return 200 "p\\n";
        }
        location = /metrics {
            vantage_metrics;
        }
""" + extra


def p_count(fams, location="/p/"):
    return val(fams, "vantage_http_requests_total", location=location,
               **{"class": "2xx"})


def test_two_processes_sum_exactly(nginx_factory):
    n = nginx_factory(server=simple_server(), worker_processes=2)
    workers = set(n.workers())
    assert len(workers) == 2
    seen, sent = {}, 0
    while sent < 400 and not all(seen.get(w, 0) >= 5 for w in workers):
        r = get(n, "/p/")
        assert r.status_code == 200
        pid = int(r.headers["x-worker"])
        seen[pid] = seen.get(pid, 0) + 1
        sent += 1
    assert set(seen) == workers, (seen, workers)

    # a request is counted once its response has gone: wait for the last
    fams = vh.wait_for(lambda: (lambda f: f if p_count(f) >= sent else None)(
        scrape(n)), 5, what="%d requests counted" % sent)
    assert p_count(fams) == sent
    # nothing else was counted anywhere
    assert sum(nonzero(requests_by(fams)).values()) == sent + \
        p_count(fams, "/metrics")


def test_counts_survive_reload_and_reset_on_new_locations(nginx_factory):
    n = nginx_factory(server=simple_server(), worker_processes=2)
    for _ in range(7):
        assert get(n, "/p/").status_code == 200
    fams = vh.wait_for(lambda: (lambda f: f if p_count(f) == 7 else None)(
        scrape(n)), 5, what="7 requests counted")
    scrapes = 1 + p_count(fams, "/metrics")

    # the same locations: the same zone, the counts go on
    old, new = n.reload(wait_old_exit=True)
    assert not set(old) & set(new)
    fams = scrape(n)
    assert p_count(fams) == 7
    assert p_count(fams, "/metrics") == scrapes
    for _ in range(3):
        assert get(n, "/p/").status_code == 200
    fams = vh.wait_for(lambda: (lambda f: f if p_count(f) == 10 else None)(
        scrape(n)), 5, what="10 requests counted")

    # `nginx -s reload` itself, once more: still there
    n.reload(wait_old_exit=True, signaller=True)
    assert p_count(scrape(n)) == 10

    # another location: a new zone, counting from zero, nothing misfiled
    n.write_conf(server=simple_server("""
        location /q/ {
            return 200 "q\\n";
        }
"""))
    n.reload(wait_old_exit=True)
    fams = scrape(n)
    assert p_count(fams) == 0
    assert p_count(fams, "/q/") == 0
    assert sum(requests_by(fams).values()) == 0
    assert get(n, "/q/").status_code == 200
    fams = vh.wait_for(lambda: (lambda f: f if p_count(f, "/q/") else None)(
        scrape(n)), 5, what="/q/ counted")
    assert (p_count(fams), p_count(fams, "/q/")) == (0, 1)


def test_collect_off_counts_nothing(nginx_factory, workers, redis_server,
                                    backend, rc):
    w = workers()
    n = start_gateway(nginx_factory, w, redis_server, backend,
                      http_extra="    vantage_metrics_collect off;\n")
    run_sequence(n, rc)
    fams = scrape(n)
    for name, kind in FAMILIES:
        for key, v in fams[name]["samples"].items():
            assert v == 0, (name, key)
    assert histogram(fams, "vantage_redis_rtt_seconds")[0] == 0
    # the JSON endpoint answers all the same
    doc = scrape_json(n)
    assert [f["name"] for f in doc["metrics"]] == [f for f, _ in FAMILIES]


class _Hold(http.server.BaseHTTPRequestHandler):
    """Answers once the test releases it: keeps an nginx worker busy."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.arrived.release()
        self.server.release.wait(vh.timeout(30))
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"held\n")

    def log_message(self, fmt, *args):
        pass


def test_shared_slot_when_draining_workers_hold_every_slot(nginx_factory):
    hold = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hold)
    hold.daemon_threads = True
    hold.arrived = threading.Semaphore(0)
    hold.release = threading.Event()
    threading.Thread(target=hold.serve_forever, daemon=True).start()
    n = nginx_factory(server=simple_server("""
        location /hold/ {
            proxy_pass http://127.0.0.1:%d;
        }
""" % hold.server_address[1]), worker_processes=1)
    held = []
    try:
        # one worker: 2 * 1 + 2 slots; four reloads leave four old
        # workers, each kept by a request, and the fifth finds none free
        for _ in range(4):
            t = threading.Thread(target=get, args=(n, "/hold/"), daemon=True)
            t.start()
            held.append(t)
            assert hold.arrived.acquire(timeout=vh.timeout(10))
            mark = n.log_size()
            _, new = n.reload()
            # the old ones have closed their listening sockets: the next
            # request goes to the new one
            vh.wait_for(lambda: n.workers() == new, 10,
                        what="the old workers to stop accepting")
        vh.wait_for(lambda: "vantage metrics: no free slot among 4, this "
                    "process counts with atomic adds" in n.log_since(mark),
                    5, what="the notice of the shared slot")
        assert len(n.workers(include_shutting_down=True)) == 5
        for _ in range(10):
            assert get(n, "/p/").status_code == 200
    finally:
        hold.release.set()
        for t in held:
            t.join(vh.timeout(10))
        hold.shutdown()
        hold.server_close()
    # the old ones answered, counted in their own slots, and exit
    vh.wait_for(lambda: len(n.workers(include_shutting_down=True)) == 1,
                10, what="the draining workers to exit")
    fams = scrape(n)
    assert (p_count(fams), p_count(fams, "/hold/")) == (10, 4)
    # slots given back: the next worker has one of its own again
    mark = n.log_size()
    n.reload(wait_old_exit=True)
    assert "no free slot" not in n.log_since(mark)
    assert (p_count(scrape(n)), p_count(scrape(n), "/hold/")) == (10, 4)


@pytest.mark.log_allow(r"\[info\]",
                       r"\[(error|warn)\] .*vantage (redis|ratelimit)")
def test_dry_run_fallback_redis_errors_and_breaker(nginx_factory,
                                                   redis_server):
    # static files: content after the rate limiter's phase ("return" is
    # answered before it)
    n = nginx_factory(http="""
    vantage_redis %s timeout=1s breaker_failures=2 breaker_cooldown=60s;
""" % redis_server.address, server="""
        location /dry/ {
            vantage_rate_limit $http_x_client rate=1r/m burst=1;
            vantage_rate_limit_dry_run on;
        }
        location /rl/ {
            vantage_rate_limit $http_x_client rate=1r/m burst=100;
        }
        location = /metrics {
            vantage_metrics;
        }
""", worker_processes=1, start=False)
    for d in ("dry", "rl"):
        vh.make_dir(os.path.join(n.html, d))
        vh.write_file(os.path.join(n.html, d, "index.html"), d + "\n")
    n.start()
    who = {"X-Client": "c-1"}

    assert [get(n, "/dry/", headers=who).status_code
            for _ in range(3)] == [200, 200, 200]
    assert get(n, "/rl/", headers=who).status_code == 200
    assert get(n, "/rl/").status_code == 200       # no key: no limit
    fams = scrape(n)
    assert counts(fams, "vantage_ratelimit_decisions_total", "decision") == \
        {"admitted": 2, "limited": 0, "dry_run": 2, "fallback": 0}
    assert histogram(fams, "vantage_redis_rtt_seconds")[0] == 4
    assert val(fams, "vantage_redis_breaker_state") == 0

    # Redis goes: every decision is the fallback's (shared memory), the
    # failures are counted and open the breaker
    redis_server.stop()
    for _ in range(5):
        assert get(n, "/rl/", headers=who).status_code == 200
    fams = scrape(n)
    assert counts(fams, "vantage_ratelimit_decisions_total", "decision") == \
        {"admitted": 2, "limited": 0, "dry_run": 2, "fallback": 5}
    assert histogram(fams, "vantage_redis_rtt_seconds")[0] == 4
    errors = counts(fams, "vantage_redis_errors_total", "kind")
    assert errors["connect"] + errors["lost"] >= 2, errors
    assert errors["timeout"] == errors["error_reply"] == 0, errors
    assert val(fams, "vantage_redis_breaker_state") == 1
    assert nonzero(requests_by(fams)) == {("/dry/", "2xx"): 3,
                                          ("/rl/", "2xx"): 7,
                                          ("/metrics", "2xx"): 1}


# --------------------------------------------------------------------------
# cardinality

def series(fams):
    return {name: set(f["samples"]) for name, f in fams.items()}


@pytest.mark.log_allow(r"\[info\]")
def test_many_tokens_keys_and_addresses_add_no_series(gateway):
    n = gateway
    get(n, "/api/x", token("first"))
    before = scrape(n)
    subs = ["sub-%d-%s" % (i, secrets.token_hex(4)) for i in range(100)]
    keys = [api_key("k%d" % i) for i in range(100)]
    for i, sub in enumerate(subs):
        assert get(n, "/api/x", token(sub, tenant="t-%d" % i),
                   local_address="127.0.0.%d" % (i + 2)).status_code == 200
    for key in keys:
        assert get(n, "/keys/x",
                   headers={"X-Api-Key": key}).status_code == 401
    after = scrape(n)
    assert series(after) == series(before)
    assert counts(after, "vantage_ratelimit_decisions_total",
                  "decision")["admitted"] == 101
    # nor does any of them appear as a label value
    r = get(n, "/metrics").text
    for s in subs[:5] + keys[:5] + ["127.0.0.5"]:
        assert s not in r


# --------------------------------------------------------------------------
# introspection and key sets

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from idp import IdP                                      # noqa: E402

CLIENT_SECRET = "s3cr3t-client+/="


@pytest.fixture
def idp(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="mm-idp-", dir=base_dir))
    p = IdP(pki=pki, directory=d)
    yield p
    p.stop()


@pytest.mark.log_allow(r"\[info\]", ALLOW_WORKER, r"\[warn\] .*vantage jwt")
def test_introspection_and_key_sets(nginx_factory, workers, idp, backend,
                                    base_dir):
    active = "opq-active-" + secrets.token_urlsafe(24)
    inactive = "opq-inactive-" + secrets.token_urlsafe(24)
    idp.add_token(active, sub="advisor-1", scope="read")
    idp.add_token(inactive, active=False)
    d = vh.make_dir(tempfile.mkdtemp(prefix="mm-secret-", dir=base_dir))
    secret_file = vh.write_file(os.path.join(d, "client-secret"),
                                CLIENT_SECRET + "\n", mode=0o644)
    workers.secrets = (CLIENT_SECRET, active, inactive)
    w = workers(wh.CONFIG_HEAD + """
[idp main]
discovery = %s
introspection_url = %s/introspect
client_id = vantage
client_secret_file = %s
ca_file = %s
min_refresh = 1s
timeout = 5s
""" % (idp.url, idp.url, secret_file, idp.ca_file))
    # a key set the worker knows nothing of: every fetch fails
    bogus = "https://127.0.0.1:9/keys"
    n = nginx_factory(http="    vantage_worker unix:%s timeout=5s;\n"
                      % w.socket_path, server=f"""
        location /intro/ {{
            vantage_auth introspect;
            vantage_introspect {idp.url}/introspect negative=60s;
            proxy_pass http://{backend.address};
        }}
        location /jwt/ {{
            vantage_auth jwt;
            vantage_jwt_discovery {idp.url};
            proxy_pass http://{backend.address};
        }}
        location /bogus/ {{
            vantage_auth jwt;
            vantage_jwt_jwks_url {bogus}?key=s3cr3t-in-query;
            proxy_pass http://{backend.address};
        }}
        location = /metrics {{
            vantage_metrics;
        }}
""", worker_processes=1)

    assert get(n, "/intro/x", active).status_code == 200
    assert get(n, "/intro/x", active).status_code == 200
    assert get(n, "/intro/x", inactive).status_code == 401
    assert get(n, "/intro/x", inactive).status_code == 401
    assert get(n, "/intro/x").status_code == 401
    assert idp.introspected(active) == 1 and idp.introspected(inactive) == 1

    kid = idp.kids()[0]
    jt = jwt.encode(claims(iss=idp.issuer), idp.private_key(kid),
                    algorithm="RS256", headers={"kid": kid})
    assert get(n, "/jwt/x", jt).status_code == 200

    fams = vh.wait_for(
        lambda: (lambda f: f if val(
            f, "vantage_jwks_refresh_failures_total", source=bogus) >= 1
            else None)(scrape(n)), 10, what="a failed fetch counted")

    assert counts(fams, "vantage_introspection_total", "result") == \
        {"cache_hit": 2, "active": 1, "inactive": 1, "error": 0}
    assert nonzero(auth_by(fams)) == {
        ("introspection", "ok"): 2, ("introspection", "inactive"): 2,
        ("introspection", "missing"): 1, ("jwt", "ok"): 1}

    # the provider's set: young, never failed; the bogus one: no age
    ages = counts(fams, "vantage_jwks_age_seconds", "source")
    assert set(ages) == {idp.url}
    assert 0 <= ages[idp.url] <= 60
    failures = counts(fams, "vantage_jwks_refresh_failures_total", "source")
    assert set(failures) == {idp.url, bogus}
    assert failures[idp.url] == 0
    assert "s3cr3t-in-query" not in get(n, "/metrics").text


# --------------------------------------------------------------------------
# the access log: the README's JSON format, verbatim

@pytest.mark.log_allow(r"\[info\]")
def test_readme_json_log_format(nginx_factory, workers, redis_server,
                                backend, rc):
    block = readme_log_block()
    assert "log_format vantage_json escape=json" in block
    w = workers()
    n = nginx_factory(http=f"""
    vantage_redis {redis_server.address} timeout=2s;
    vantage_worker unix:{w.socket_path} timeout=5s;
{block}
""", server=f"""
        location /api/ {{
            vantage_jwt on;
            vantage_jwt_keys @PREFIX@/hs.jwk;
            vantage_rate_limit $vantage_jwt_claim_sub rate=1r/m burst=1;
            proxy_pass http://{backend.address};
        }}
{ORDERS}        location = /open {{
            return 200 "open\\n";
        }}
""", start=False)
    write_files(n)
    vh.make_dir(os.path.join(n.prefix, "logs"))
    n.start()

    alice = token("bob", tenant="acme")
    ids = ["req-%d-%s" % (i, secrets.token_hex(6)) for i in range(5)]
    sent = [
        get(n, "/api/a?x=1", alice, {"X-Request-Id": ids[0]}),
        get(n, "/api/a", token("bob", OTHER_SECRET),
            {"X-Request-Id": ids[1]}),
        get(n, "/api/a", alice, {"X-Request-Id": ids[2]}),
        get(n, "/orders", alice, {"X-Request-Id": ids[3],
                                  "Content-Type": "application/json"},
            "POST", b'{"order": 9}'),
        get(n, "/open", headers={"X-Request-Id": ids[4]}),
    ]
    assert [r.status_code for r in sent] == [200, 401, 429, 202, 200]
    job_id = sent[3].json()["job_id"]
    assert rc.exists(b"{vq}:job:" + job_id.encode()) == 1

    lines = log_lines(os.path.join(n.prefix, "logs", "vantage.json"), 5)
    by_id = {line["request_id"]: line for line in lines}
    assert sorted(by_id) == sorted(ids)

    want = [
        ("GET", "/api/a", 200, "jwt", "ok", "admitted", ""),
        ("GET", "/api/a", 401, "jwt", "bad_signature", "", ""),
        ("GET", "/api/a", 429, "jwt", "ok", "limited", ""),
        ("POST", "/orders", 202, "jwt", "ok", "", job_id),
        ("GET", "/open", 200, "", "", "", ""),
    ]
    for rid, (method, uri, status, am, ao, rl, job) in zip(ids, want):
        line = by_id[rid]
        assert (line["method"], line["uri"], line["status"],
                line["auth_method"], line["auth_outcome"],
                line["rate_limit"], line["job_id"]) == \
            (method, uri, status, am, ao, rl, job), line
        assert isinstance(line["request_time"], (int, float))
        assert isinstance(line["bytes_sent"], int) and line["bytes_sent"] > 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d",
                            line["time"]), line
    # the proxied one has an upstream time, the others none
    assert re.fullmatch(r"\d+\.\d{3}", by_id[ids[0]]["upstream_time"])
    assert by_id[ids[4]]["upstream_time"] == ""
    # the job in Redis carries the same correlation id
    assert rc.hget(b"{vq}:job:" + job_id.encode(),
                   b"correlation_id") == ids[3].encode()


# --------------------------------------------------------------------------
# nginx -t

@pytest.mark.parametrize("http,server,texts", [
    ("", "location = /m { vantage_metrics xml; }",
     ('"vantage_metrics": invalid format "xml", use prometheus or json',)),
    ("", "location = /m { vantage_metrics prometheus json; }",
     ('invalid number of arguments in "vantage_metrics" directive',)),
    ("", "vantage_metrics;",
     ('"vantage_metrics" directive is not allowed here',)),
    ("", "location = /m { vantage_metrics; vantage_metrics json; }",
     ('"vantage_metrics" directive is duplicate',)),
    ("", "location = /m { vantage_metrics; proxy_pass http://127.0.0.1:9; }",
     ('"vantage_metrics" conflicts with another handler of location "/m"',)),
    ("", "location = /m { proxy_pass http://127.0.0.1:9; vantage_metrics; }",
     ('"vantage_metrics" directive conflicts with another handler of the '
      'location',)),
    ("", "location = /m { vantage_dispatch x.y; vantage_metrics; }",
     ('"vantage_metrics" directive conflicts with another handler',)),
    ("vantage_metrics_collect maybe;", "",
     ('invalid value "maybe" in "vantage_metrics_collect" directive, it '
      'must be "on" or "off"',)),
    ("", "location / { vantage_metrics_collect off; }",
     ('"vantage_metrics_collect" directive is not allowed here',)),
    ("vantage_metrics_collect on; vantage_metrics_collect off;", "",
     ('"vantage_metrics_collect" directive is duplicate',)),
])
def test_nginx_t_messages(nginx_factory, http, server, texts):
    n = nginx_factory(http=http, server=server, start=False)
    rc, out = n.test_config()
    vh.assert_one_emerg(rc, out, *texts)


def test_nginx_t_accepts_the_documented_examples(nginx_factory):
    n = nginx_factory(http="    vantage_metrics_collect off;\n", server="""
        location = /vantage/metrics {
            allow 127.0.0.1;
            deny all;
            vantage_metrics;
        }
        location = /vantage/metrics.json { vantage_metrics json; }
        location = /prom { vantage_metrics prometheus; }
""", start=False)
    rc, out = n.test_config()
    assert rc == 0, out
