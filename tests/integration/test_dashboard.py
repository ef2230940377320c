"""test_dashboard.py -- the integration health dashboard in a real browser.

The whole stack as an operator runs it: nginx with the module serving
dashboard/ and the JSON endpoints (README, Dashboard), the real
vantage-worker with a [metrics] socket that nginx proxies, a real
redis-server, tests/fakes/http_target.py and the Salesforce emulator as
the vendors.  After a known sequence (jobs that succeed, one retried, one
that dies on a 400, gateway requests admitted, limited and refused),
headless Chromium (Debian's chromium and chromium-driver, driven by
python3-selenium) loads /vantage/dashboard/, and every number it shows
(the elements with data-metric) must equal what the test reads itself
from the worker's /metrics and the module's /vantage/metrics (parsed by
prom_text's strict parser) and from Redis.  Then Replay on the dead letter:
refused without a token (401) and with a token lacking the admin scope
(403), and, once the vendor is fixed, done with an admin token (PyJWT
mints them all), the job reaching "succeeded" in Redis.  Screenshots go to
build/test-artifacts/dashboard/ (VANTAGE_ARTIFACTS overrides); the test
prints where.
"""

import decimal
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time

import httpx
import jwt
import pytest

import vantage_harness as vh
import worker_harness as wh
from prom_text import parse, value

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402

CHROMIUM = os.environ.get("VANTAGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VANTAGE_CHROMEDRIVER", "/usr/bin/chromedriver")
DASHBOARD = os.path.join(vh.REPO, "dashboard")
CTL = os.path.join(vh.REPO, "build", "vantagectl")
ARTIFACTS = os.environ.get("VANTAGE_ARTIFACTS",
                           os.path.join(vh.REPO, "build", "test-artifacts",
                                        "dashboard"))
SF_API = "62.0"
SF_SECRET = "sf.dash.jwt-key"
SF_DAILY, SF_USED = 5000, 1800
STREAM = "{vq}:jobs"
DASH = "\u2014"


def _browser_missing():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return "%s not found (apt-get install chromium chromium-driver)" \
                % path
    if importlib.util.find_spec("selenium") is None:
        return "python3-selenium is not installed"
    return None


# --------------------------------------------------------------------------
# the browser

@pytest.fixture
def browser():
    """Headless Chromium at 1280x800; skips when it is not installed."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--window-size=1280,800", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                         options=opts)
    d.set_script_timeout(vh.timeout(10))
    try:
        yield d
    finally:
        d.quit()


def artifacts_dir():
    return vh.make_dir(ARTIFACTS)


SHOTS = []


def screenshot(d, name, full=False):
    """Saves a PNG under ARTIFACTS (the whole page when full) and prints
    where; the test names them all again at its end."""
    path = os.path.join(artifacts_dir(), name)
    if full:
        size = d.get_window_size()
        h = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(1280, h + 140)
        d.save_screenshot(path)
        d.set_window_size(size["width"], size["height"])
    else:
        d.execute_script("window.scrollTo(0, 0)")   # the banners
        d.save_screenshot(path)
    print("dashboard screenshot: %s" % path)
    SHOTS.append(path)
    return path


# every data-metric element: (metric, ((attribute, value), ...)) -> text
PAGE_METRICS = """
var out = [];
document.querySelectorAll('[data-metric]').forEach(function (e) {
    var labels = [];
    Array.prototype.forEach.call(e.attributes, function (a) {
        if (a.name.indexOf('data-') === 0 && a.name !== 'data-metric'
            && a.name !== 'data-null' && a.name !== 'data-replay'
            && a.name !== 'data-http-status') {
            labels.push([a.name.slice(5), a.value]);
        }
    });
    labels.sort();
    out.push([e.getAttribute('data-metric'), labels, e.textContent]);
});
return out;
"""


def page_metrics(d):
    """{(metric, ((label, value), ...)): text} of what the page shows."""
    out = {}
    for m, labels, text in d.execute_script(PAGE_METRICS):
        key = (m, tuple(tuple(x) for x in labels))
        assert key not in out, "two elements for %r" % (key,)
        out[key] = text
    return out


def page_attr(d, selector, attr):
    return d.execute_script(
        "var e = document.querySelector(arguments[0]);"
        "return e ? e.getAttribute(arguments[1]) : null;", selector, attr)


def polled(d):
    return d.execute_script("return document.body.getAttribute("
                            "'data-polled')")


def wait_next_poll(d, seconds=10):
    """Waits for a poll to complete after this call."""
    before = polled(d)
    vh.wait_for(lambda: polled(d) not in (None, before), seconds,
                interval=0.05, what="the dashboard's next poll")


def js_errors(d):
    """What the console says about scripts and the CSP (network errors of
    the endpoints are the page's business and shown in its banner)."""
    return [e for e in d.get_log("browser")
            if e.get("source") in ("javascript", "security")
            or "Content Security Policy" in e.get("message", "")]


# --------------------------------------------------------------------------
# the numbers, as the page formats them (dashboard.js, fmt*)

def fixed(v, digits):
    """Number.prototype.toFixed(): the exact binary value rounded, ties
    away from zero (the values here are never negative)."""
    q = decimal.Decimal(1).scaleb(-digits)
    return str(decimal.Decimal(v).quantize(q, decimal.ROUND_HALF_UP))


def fmt_count(v):
    return DASH if v is None else str(int(round(v)))


def fmt_ms(v):
    return DASH if v is None else fixed(v * 1000, 1)


def fmt_percent(v):
    return DASH if v is None else fixed(v * 100, 1)


def fmt_seconds(v):
    return DASH if v is None else fixed(v, 1)


def histogram_quantile(q, buckets):
    """Prometheus's histogram_quantile() over [(le, cumulative count)]
    sorted by le and ending at +Inf: linear within the bucket, the lowest
    bucket starting at 0, the +Inf bucket answered with the highest finite
    bound; None without observations."""
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    le, c = buckets[i]
    if le == math.inf:
        return buckets[-2][0]
    lo, before = (0.0, 0) if i == 0 else buckets[i - 1]
    if c == before:
        return le
    return lo + (le - lo) * (rank - before) / (c - before)


def buckets_of(fams, family, **labels):
    """[(le, cumulative)] of one histogram series."""
    want = set(labels.items())
    out = []
    for (sname, ls), v in fams[family]["samples"].items():
        d = dict(ls)
        if sname == family + "_bucket" and \
                set((k, x) for k, x in ls if k != "le") == want:
            out.append((math.inf if d["le"] == "+Inf" else float(d["le"]),
                        v))
    return sorted(out)


def series(fams, family):
    """[(labels dict, value)] of a counter or gauge family (none when the
    family is absent)."""
    if family not in fams:
        return []
    return [(dict(ls), v) for (_, ls), v in fams[family]["samples"].items()]


def key(metric, **labels):
    return (metric, tuple(sorted(labels.items())))


def expected_page(wfams, gfams, rc, quota_targets):
    """What the page must show, from the scrapes and Redis alone."""
    want = {}
    attempts = {}
    for l, v in series(wfams, "vantage_worker_target_attempts_total"):
        attempts.setdefault(l["target"], {"success": 0, "retry": 0,
                                          "dead": 0})[l["outcome"]] = v
    breakers = {l["target"]: v for l, v in
                series(wfams, "vantage_worker_breaker_state")}
    h = "vantage_worker_attempt_duration_seconds"
    for t, a in attempts.items():
        for o in ("success", "retry", "dead"):
            want[key("attempts." + o, target=t)] = fmt_count(a[o])
        total = sum(a.values())
        rate = (a["retry"] + a["dead"]) / total if total else 0
        want[key("error_rate", target=t)] = fmt_percent(rate)
        status = ("breaker_open" if breakers.get(t) == 2 else
                  "degraded" if breakers.get(t) == 1 or rate >= 0.1 else
                  "healthy")
        want[key("status", target=t)] = \
            {"healthy": "healthy", "degraded": "degraded",
             "breaker_open": "breaker open"}[status]
        want[key("breaker", target=t)] = \
            {0: "closed", 1: "half-open", 2: "open"}[breakers.get(t, 0)]
        b = buckets_of(wfams, h, target=t)
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            want[key("latency." + name, target=t)] = \
                fmt_ms(histogram_quantile(q, b) if b else None)
        quota = [(l["window"], l) for l, _ in
                 series(wfams, "vantage_worker_vendor_quota_limit")
                 if l["target"] == t]
        if not quota:
            want[key("quota.none", target=t)] = "None reported."
        for w, l in quota:
            used = value(wfams, "vantage_worker_vendor_quota_used", **l)
            limit = value(wfams, "vantage_worker_vendor_quota_limit", **l)
            want[key("quota.used", target=t, window=w)] = fmt_count(used)
            want[key("quota.limit", target=t, window=w)] = fmt_count(limit)
            want[key("quota.share", target=t, window=w)] = \
                fmt_percent(used / limit if limit else None)
    assert set(t for t, _ in quota_targets) <= set(attempts)

    for l, v in series(wfams, "vantage_worker_stream_length"):
        s = l["stream"]
        want[key("queue.length", stream=s)] = fmt_count(v)
        want[key("queue.pending", stream=s)] = fmt_count(
            value(wfams, "vantage_worker_stream_pending", stream=s))
        for g in ("oldest_pending", "oldest_entry"):
            want[key("queue.%s_seconds" % g, stream=s)] = fmt_seconds(
                value(wfams, "vantage_worker_stream_%s_age_seconds" % g,
                      stream=s))
    want[key("delayed")] = fmt_count(rc.zcard("{vq}:delayed"))
    want[key("dead_letters")] = fmt_count(rc.zcard("{vq}:dead"))
    for jid in rc.zrange("{vq}:dead", 0, -1):
        jid = jid.decode()
        want[key("dead.attempts", **{"job-id": jid})] = \
            fmt_count(rc.llen("{vq}:att:" + jid))

    by_class = {c: 0 for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}
    for l, v in series(gfams, "vantage_http_requests_total"):
        if not l["location"].startswith("/vantage/"):
            by_class[l["class"]] += v
    for c, v in by_class.items():
        want[key("gateway.requests", **{"class": c})] = fmt_count(v)
    auth = {"ok": 0, "refused": 0}
    for l, v in series(gfams, "vantage_auth_total"):
        auth["ok" if l["outcome"] == "ok" else "refused"] += v
    for o, v in auth.items():
        want[key("gateway.auth", outcome=o)] = fmt_count(v)
    decisions = {d: 0 for d in ("admitted", "limited", "dry_run",
                                "fallback")}
    for l, v in series(gfams, "vantage_ratelimit_decisions_total"):
        decisions[l["decision"]] += v
    for dd, v in decisions.items():
        want[key("gateway.ratelimit", decision=dd)] = fmt_count(v)

    states = ("accepted", "succeeded", "retrying", "dead", "replayed")
    jobs = {}
    for l, v in series(wfams, "vantage_worker_jobs_total"):
        jobs.setdefault(l["type"], dict.fromkeys(states, 0))[l["state"]] += v
    for t, by in jobs.items():
        for s in states:
            want[key("jobs", type=t, state=s)] = fmt_count(by[s])
    return want


# metrics the comparison leaves to the test's own checks
NOT_COMPARED = ("last_updated", "redis", "replay.result")


def compare(d, read):
    """Waits (a few polls) for the page to show what read() -> (want)
    says, then asserts it, naming every difference."""
    diff = [None]

    def same():
        want = read()
        got = {k: v for k, v in page_metrics(d).items()
               if k[0] not in NOT_COMPARED}
        diff[0] = {k: (got.get(k), want.get(k))
                   for k in set(got) | set(want) if got.get(k) != want.get(k)}
        return not diff[0]

    try:
        vh.wait_for(same, 10, interval=0.3, what="the page to match")
    except TimeoutError:
        pass
    assert not diff[0], "page != endpoints (shown, expected):\n" + \
        "\n".join("%r: %r" % kv for kv in sorted(diff[0].items()))


# --------------------------------------------------------------------------
# the stack

def worker_conf(target, sf, vault_key, metrics_sock):
    return wh.CONFIG_HEAD + """\
listen_mode = 0666
visibility_timeout = 20s
shutdown_timeout = 1s

[metrics]
listen = unix:%(msock)s
admin = on

[vault]
key_file = %(vault_key)s

[target crm]
max_concurrency = 4

[target ledger]
max_concurrency = 4

[target sf]
ca_file = %(sf_ca)s
connect_timeout = 2s

[connection dash-sf]
vendor = salesforce
auth = jwt_bearer
login_url = %(sf_login)s
client_id = %(sf_client)s
username = %(sf_user)s
private_key = %(secret)s
api_version = %(api)s
target = sf

[job crm.contact]
connector = http
target = crm
url = %(url)s/crm
timeout = 2s

[job ledger.post]
connector = http
target = ledger
url = %(url)s/ledger/post
timeout = 2s
backoff_base = 50ms
backoff_cap = 100ms

[job ledger.close]
connector = http
target = ledger
url = %(url)s/ledger/close
timeout = 2s
max_attempts = 3

[job sf.upsert]
connector = salesforce
connection = dash-sf
operation = upsert
object = Contact
external_id = ExtId__c
timeout = 5s
""" % {"msock": metrics_sock, "vault_key": vault_key, "sf_ca": sf.ca_file,
       "sf_login": sf.login_url, "sf_client": sf.consumer_key,
       "sf_user": sf.username, "secret": SF_SECRET, "api": SF_API,
       "url": target.url("")}


def gateway_conf(w, msock, keys, redis, backend):
    key_file = keys.path("hs.secret")
    http = """
    vantage_redis %s;
    vantage_worker unix:%s timeout=5s;
""" % (redis.address, w.socket_path)
    server = """
        vantage_jwt_keys       %(keys)s;
        vantage_jwt_algorithms HS256;

        location /api/ {
            vantage_jwt         on;
            vantage_rate_limit  $vantage_jwt_claim_sub rate=1r/m burst=3;
            proxy_pass          http://%(backend)s;
        }

        location = /jobs/crm {
            vantage_tenant    acme;
            vantage_dispatch  crm.contact;
        }

        location = /jobs/ledger/post {
            vantage_tenant    acme;
            vantage_dispatch  ledger.post;
        }

        location = /jobs/ledger/close {
            vantage_tenant    acme;
            vantage_dispatch  ledger.close;
        }

        location = /jobs/sf {
            vantage_tenant    acme;
            vantage_dispatch  sf.upsert;
        }

        # the dashboard, as README's Dashboard section writes it
        location /vantage/dashboard/ {
            alias  %(dashboard)s/;
            # whether or not http {} includes mime.types
            types {
                text/html               html;
                text/css                css;
                application/javascript  js;
                image/svg+xml           svg;
            }
        }

        location = /vantage/metrics.json {
            vantage_metrics  json;
        }

        location = /vantage/metrics {
            vantage_metrics;
        }

        location /vantage/worker/ {
            proxy_pass  http://unix:%(msock)s:/;
        }

        location /vantage/worker/admin/ {
            vantage_jwt          on;
            vantage_jwt_require  scope vantage:admin;
            proxy_pass           http://unix:%(msock)s:/admin/;
        }
""" % {"keys": key_file, "backend": backend.address, "dashboard": DASHBOARD,
       "msock": msock}
    return http, server


def token(keys, **claims):
    """An HS256 token from PyJWT, valid for ten minutes."""
    now = int(time.time())
    c = {"sub": "ops-1", "iat": now, "exp": now + 600}
    c.update(claims)
    return jwt.encode(c, keys.hs, algorithm="HS256")


def ctl(redis, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VANTAGE_")}
    p = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       capture_output=True, env=env, timeout=vh.timeout(20))
    assert p.returncode == 0, p.stderr.decode()


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki, api_version=SF_API, daily_limit=SF_DAILY)
    s.set_limit(used=SF_USED)
    yield s
    s.stop()
    assert s.internal_errors == []


def state(rc, jid):
    return (rc.hget("{vq}:job:" + jid, "state") or b"").decode()


def wait_state(rc, jid, want, seconds=15):
    vh.wait_for(lambda: state(rc, jid) == want, seconds, interval=0.05,
                what="job %s %s (now %r)" % (jid, want, state(rc, jid)))


def atts(rc, jid):
    return [json.loads(a) for a in rc.lrange("{vq}:att:" + jid, 0, -1)]


# --------------------------------------------------------------------------

def test_dashboard_shows_the_stack_and_replays(
        browser, worker_factory, worker_redis, rc, target, sf, keys,
        backend, nginx_factory, base_dir, capsys):
    d = browser
    del SHOTS[:]

    # -- the stack
    vault_key = os.path.join(vh.make_dir(os.path.join(base_dir, "dash")),
                             "vault-%d.key" % os.getpid())
    vh.write_file(vault_key, os.urandom(32), mode=0o600)
    ctl(worker_redis, "vault", "put", SF_SECRET, "--replace", "--key-file",
        vault_key, "--from-file", sf.jwt_key_file)
    worker_factory.socket_mode = 0o777
    w = worker_factory(start=False, config="")
    msock = os.path.join(os.path.dirname(w.socket_path), "m.sock")
    w.write_config(worker_conf(target, sf, vault_key, msock))
    worker_factory.start(w)
    http, server = gateway_conf(w, msock, keys, worker_redis, backend)
    n = nginx_factory(http=http, server=server)
    url = "http://127.0.0.1:%d" % n.http_port
    gw = httpx.Client(base_url=url, timeout=vh.timeout(10))
    wk = httpx.Client(transport=httpx.HTTPTransport(uds=msock),
                      base_url="http://worker", timeout=vh.timeout(10))

    # -- a known sequence: jobs through nginx ...
    bad_body = b'{"error": "<img src=x onerror=alert(1)> ledger closed"}'
    target.default("/ledger/close", (400, {"Content-Type":
                                           "application/json"}, bad_body))
    target.script("/ledger/post", [(503, {}, b"")])

    def job(path, body):
        r = gw.post(path, content=json.dumps(body),
                    headers={"Content-Type": "application/json"})
        assert r.status_code == 202, (path, r.status_code, r.text)
        return r.json()["job_id"]

    crm = [job("/jobs/crm", {"n": i}) for i in range(4)]
    post = job("/jobs/ledger/post", {"amount": 10})
    wait_state(rc, post, "succeeded")
    dead = job("/jobs/ledger/close", {"ledger": "2024"})
    sfj = job("/jobs/sf", {"ExtId__c": "ada@example.com",
                           "Email": "ada@example.com", "LastName": "Lovelace"})
    for jid in crm + [sfj]:
        wait_state(rc, jid, "succeeded")
    wait_state(rc, dead, "dead")

    # ... and gateway requests: three admitted, one limited, two refused
    good = token(keys, scope="accounts:read")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for i in range(4):
        r = gw.get("/api/accounts", headers={"Authorization":
                                             "Bearer " + good})
        assert r.status_code == (200 if i < 3 else 429), (i, r.text)
    assert gw.get("/api/accounts").status_code == 401
    assert gw.get("/api/accounts", headers={
        "Authorization": "Bearer " + forged}).status_code == 401

    # the endpoints say what happened, before the page is asked
    def scrape_worker():
        r = wk.get("/metrics")
        assert r.status_code == 200, r.text
        return parse(r.text)

    def scrape_gateway():
        r = gw.get("/vantage/metrics")
        assert r.status_code == 200, r.text
        return parse(r.text)

    wf = scrape_worker()
    att = "vantage_worker_target_attempts_total"
    assert {(dict(l)["target"], dict(l)["outcome"]): v for (_, l), v in
            wf[att]["samples"].items()} == {
        ("crm", "success"): 4, ("ledger", "retry"): 1,
        ("ledger", "success"): 1, ("ledger", "dead"): 1,
        ("sf", "success"): 1}
    assert value(wf, "vantage_worker_vendor_quota_limit", target="sf",
                 window="daily") == SF_DAILY
    gf = scrape_gateway()
    assert {(l["location"], l["class"]): v for l, v in
            series(gf, "vantage_http_requests_total") if v} == {
        ("/api/", "2xx"): 3, ("/api/", "4xx"): 3, ("/jobs/crm", "2xx"): 4,
        ("/jobs/ledger/post", "2xx"): 1, ("/jobs/ledger/close", "2xx"): 1,
        ("/jobs/sf", "2xx"): 1}
    assert {(l["method"], l["outcome"]): v for l, v in
            series(gf, "vantage_auth_total") if v} == {
        ("jwt", "ok"): 4, ("jwt", "missing"): 1, ("jwt", "bad_signature"): 1}
    assert {l["decision"]: v for l, v in
            series(gf, "vantage_ratelimit_decisions_total") if v} == {
        "admitted": 3, "limited": 1}

    # -- the page, its files with their types
    for f, ctype in (("", "text/html"), ("index.html", "text/html"),
                     ("dashboard.js", "application/javascript"),
                     ("dashboard.css", "text/css"),
                     ("favicon.svg", "image/svg+xml")):
        r = gw.get("/vantage/dashboard/" + f)
        assert (r.status_code, r.headers["content-type"]) == (200, ctype), f
    d.get(url + "/vantage/dashboard/?interval=0.5")
    vh.wait_for(lambda: d.execute_script(
        "return document.querySelectorAll('.card').length") == 3, 15,
        interval=0.1, what="the connector cards")
    assert d.title == "Vantage integration health"
    assert d.execute_script("return getComputedStyle(document.querySelector("
                            "'header')).backgroundColor") == \
        "rgb(36, 41, 47)"                # the stylesheet applies
    assert d.execute_script("return document.documentElement.scrollWidth"
                            " <= window.innerWidth"), "horizontal scrolling"

    def read():
        return expected_page(scrape_worker(), scrape_gateway(), rc,
                             [("sf", "daily")])
    compare(d, read)

    shown = page_metrics(d)
    assert shown[key("redis")] == "connected"
    assert shown[key("quota.share", target="sf", window="daily")] == \
        fixed(100 * value(scrape_worker(), "vantage_worker_vendor_quota_used",
                          target="sf", window="daily") / SF_DAILY, 1)
    assert shown[key("status", target="ledger")] == \
        "degraded"                       # 2 of 3 attempts failed
    assert shown[key("dead_letters")] == "1"
    assert d.execute_script("return document.getElementById('banners')"
                            ".children.length") == 0

    # the charts: one line per target, 30 minutes of 10 s buckets
    lines = d.execute_script(
        "return Array.from(document.querySelectorAll("
        "'#chart-throughput polyline')).map(function (p) {"
        "return [p.getAttribute('data-target'),"
        " p.getAttribute('points').split(' ').length]; });")
    assert sorted(lines) == [["crm", 180], ["ledger", 180], ["sf", 180]]

    # recent failures: the retry and the death, as the attempts say, and
    # the vendor's text shown as text
    rows = d.execute_script(
        "return Array.from(document.querySelectorAll("
        "'#failures tbody tr')).map(function (tr) {"
        "return [tr.getAttribute('data-job-id')].concat("
        "Array.from(tr.cells).map(function (c) { return c.textContent; }),"
        "[tr.querySelectorAll('td:last-child *').length]); });")
    by_job = {r[0]: r for r in rows}
    assert set(by_job) == {post, dead}
    for jid, outcome, n_att in ((post, "retry", 0), (dead, "dead", 0)):
        a = atts(rc, jid)[n_att]
        assert by_job[jid][2:7] == ["ledger", rc.hget(
            "{vq}:job:" + jid, "type").decode(), outcome,
            str(a["status"]) if a.get("status") else DASH,
            a["error"] or DASH], by_job[jid]
        assert by_job[jid][7] == 0       # no element made of vendor text
    assert d.find_elements("css selector", "img") == []
    screenshot(d, "dashboard.png", full=True)
    screenshot(d, "dashboard-1280x800.png")

    # -- replay: no token (401), a token without the admin scope (403) ...
    row = "#dead tr[data-job-id='%s']" % dead
    result = "[data-metric='replay.result'][data-job-id='%s']" % dead

    def replay_answer(status):
        d.find_element("css selector", row + " button.replay").click()
        vh.wait_for(lambda: page_attr(d, result, "data-http-status") ==
                    str(status)
                    and page_attr(d, result, "data-replay") == "error",
                    10, interval=0.05, what="replay answered %d" % status)
        return d.find_element("css selector", result).text

    def use_token(t):
        box = d.find_element("id", "admin-token")
        box.send_keys(t)
        d.find_element("id", "token-save").click()
        assert box.get_attribute("value") == ""
        assert d.find_element("id", "token-state").text == \
            "An admin token is set for this tab."

    assert replay_answer(401).startswith("401 missing_token")
    reader = token(keys, scope="accounts:read vantage:read")
    use_token(reader)
    assert replay_answer(403).startswith("403 insufficient_scope")
    assert state(rc, dead) == "dead"
    assert len(atts(rc, dead)) == 1

    # ... and, the vendor fixed, an admin token: replayed, then succeeded
    target.default("/ledger/close", (200, {}, b'{"ok":true}'))
    admin = token(keys, scope="vantage:admin")
    use_token(admin)
    d.find_element("css selector", row + " button.replay").click()
    vh.wait_for(lambda: page_attr(d, result, "data-replay") == "replayed",
                10, interval=0.05, what="replay succeeded")
    assert d.find_element("css selector", result).text == \
        "replayed: queued (replays 1)"
    wait_state(rc, dead, "succeeded")
    assert rc.zcard("{vq}:dead") == 0

    # the row stays, saying so, after the job left the dead letters
    wait_next_poll(d)
    vh.wait_for(lambda: page_metrics(d).get(key("dead_letters")) == "0", 10,
                interval=0.1, what="no dead letter shown")
    assert d.find_element("css selector", result).text == \
        "replayed: queued (replays 1)"
    assert d.find_element("css selector", row + " button.replay") \
        .get_attribute("disabled") == "true"
    compare(d, read)
    screenshot(d, "dashboard-replayed.png", full=True)

    # the token stayed in the tab: not in the URL, not in nginx's logs
    assert d.execute_script("return sessionStorage.getItem("
                            "'vantage.dashboard.admin_token')") == admin
    assert admin not in d.current_url
    for log in (n.error_log, os.path.join(n.prefix, "access.log")):
        with open(log) as f:
            text = f.read()
        for t in (good, reader, admin):
            assert t not in text, "a token in %s" % log
    assert js_errors(d) == []

    # -- the worker stops: a banner names its endpoints, the gateway's
    # numbers stay
    w.stop()
    vh.wait_for(lambda: d.execute_script(
        "return document.querySelectorAll('#banners [data-endpoint]')"
        ".length") == 2, 15, interval=0.1, what="the worker's banners")
    text = d.find_element("id", "banners").text
    assert "/vantage/worker/status" in text
    assert "/vantage/worker/metrics.json" in text
    assert "/vantage/metrics.json" not in text
    assert page_metrics(d)[key("redis")] == "unknown"
    g = expected_page({}, scrape_gateway(), rc, [])
    shown = page_metrics(d)
    for k, v in g.items():
        if k[0].startswith("gateway."):
            assert shown[k] == v, k
    screenshot(d, "dashboard-worker-down.png")
    assert js_errors(d) == []
    gw.close()
    wk.close()
    with capsys.disabled():
        print("\ntest_dashboard: screenshots in %s: %s"
              % (ARTIFACTS, ", ".join(os.path.basename(p) for p in SHOTS)))


def test_make_install_dashboard(base_dir):
    """make install puts the page where README's alias points, and make
    uninstall takes it away again."""
    dest = vh.make_dir(os.path.join(base_dir, "dash-install-%d" % os.getpid()))

    def make(*args):
        p = subprocess.run(["make", "-C", vh.REPO, "DESTDIR=" + dest]
                           + list(args), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=vh.timeout(60))
        assert p.returncode == 0, p.stdout + p.stderr

    make("install-dashboard")
    where = dest + "/usr/local/share/vantage/dashboard"
    files = sorted(os.listdir(DASHBOARD))
    assert {"index.html", "dashboard.js", "dashboard.css"} <= set(files)
    assert sorted(os.listdir(where)) == files
    for f in files:
        with open(os.path.join(where, f), "rb") as a, \
                open(os.path.join(DASHBOARD, f), "rb") as b:
            assert a.read() == b.read(), f
        assert os.stat(os.path.join(where, f)).st_mode & 0o777 == 0o644
    make("uninstall")
    assert not os.path.exists(dest + "/usr/local/share/vantage")


def test_readme_locations_pass_nginx_t(nginx_factory, keys):
    """README's Dashboard locations, as written, are a valid server {}
    (with the keys its admin location verifies tokens with)."""
    with open(os.path.join(vh.REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index("\n## Dashboard\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.search(r"```nginx\n# server \{\}\n(.*?)```", section,
                      re.S).group(1)
    assert "vantage_jwt_require  scope vantage:admin;" in block
    n = nginx_factory(server="vantage_jwt_keys %s;\n%s"
                      % (keys.path("hs.secret"), block), start=False)
    rc, out = n.test_config()
    assert rc == 0, out
