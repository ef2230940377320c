"""test_worker_metrics.py -- vantage-worker's /metrics, /healthz, /readyz.

The worker's [metrics] listener (docs/WORKER.md) scraped with httpx after
a known sequence of DISPATCHes and attempts against
tests/fakes/http_target.py, and the text read by the strict Prometheus
text-format (0.0.4) parser of prom_text.py.
"""

import os
import re
import signal
import stat
import subprocess
import tempfile
import time

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh
from prom_text import ExpositionError, parse, value
from worker_harness import T_BODY, T_JOB_ID, T_JOB_TYPE, T_TENANT


# --------------------------------------------------------------------------
# the strict parser (prom_text.py) against known good and bad texts

GOOD = ('# HELP a_total Things.\n# TYPE a_total counter\n'
        'a_total{x="q\\"\\\\\\n"} 3\n'
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
        'h_sum 3.5\nh_count 2\n')

MALFORMED = [
    ("no-final-newline", GOOD[:-1]),
    ("empty-line", GOOD + "\n"),
    ("missing-type", "a_total 1\n"),
    ("type-after-sample", "# TYPE a counter\na 1\n# HELP a x\n"),
    ("duplicate-series", "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n"),
    ("duplicate-label", "# TYPE a counter\na{x=\"1\",x=\"2\"} 1\n"),
    ("bad-escape", "# TYPE a counter\na{x=\"\\t\"} 1\n"),
    ("unquoted-label", "# TYPE a counter\na{x=1} 1\n"),
    ("trailing-comma", "# TYPE a counter\na{x=\"1\",} 1\n"),
    ("bad-value", "# TYPE a counter\na 1,5\n"),
    ("negative-counter", "# TYPE a counter\na -1\n"),
    ("unknown-type", "# TYPE a meter\na 1\n"),
    ("split-family", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n"
                     "# HELP a again\n"),
    ("non-cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                       "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
    ("no-inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\n"
               "h_count 1\n"),
    ("inf-not-count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n"
                      "h_sum 1\nh_count 2\n"),
    ("no-sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"),
    ("bucket-without-le", "# TYPE h histogram\nh_bucket 1\nh_sum 1\n"
                          "h_count 1\n"),
    ("bad-name", "# TYPE 1a counter\n1a 1\n"),
]


def test_parser_accepts_the_format():
    f = parse(GOOD)
    assert f["a_total"]["help"] == "Things."
    assert value(f, "a_total", x='q"\\\n') == 3
    assert value(f, "h", "h_count") == 2


@pytest.mark.parametrize("text", [t for _, t in MALFORMED],
                         ids=[n for n, _ in MALFORMED])
def test_parser_rejects(text):
    with pytest.raises(ExpositionError):
        parse(text)


# --------------------------------------------------------------------------
# the worker

STREAM = "{vq}:jobs"
FAMILIES = {
    "vantage_worker_dispatch_accepted_total": "counter",
    "vantage_worker_dispatch_refused_total": "counter",
    "vantage_worker_attempts_total": "counter",
    "vantage_worker_retries_total": "counter",
    "vantage_worker_dead_letters_total": "counter",
    "vantage_worker_attempt_duration_seconds": "histogram",
    "vantage_worker_breaker_state": "gauge",
    "vantage_worker_stream_length": "gauge",
    "vantage_worker_stream_pending": "gauge",
    "vantage_worker_stream_oldest_pending_age_seconds": "gauge",
    "vantage_worker_stream_oldest_entry_age_seconds": "gauge",
    "vantage_worker_redis_connected": "gauge",
    "vantage_worker_metrics_series_dropped_total": "counter",
    "vantage_worker_jobs": "gauge",
    "vantage_worker_alerts_total": "counter",
    "vantage_worker_alert_firing": "gauge",
    "vantage_worker_target_attempts_total": "counter",
    "vantage_worker_jobs_total": "counter",
    "vantage_worker_vendor_quota_used": "gauge",
    "vantage_worker_vendor_quota_limit": "gauge",
    "vantage_worker_vendor_quota_ratio": "gauge",
    "vantage_worker_oauth_refreshes_total": "counter",
    "vantage_worker_scheduled_runs_total": "counter",
    "vantage_worker_fetch_total": "counter",
    "vantage_worker_jwks_consecutive_failures": "gauge",
}


def conf(target, port, jobs):
    text = wh.CONFIG_HEAD + "visibility_timeout = 6500ms\n" \
        "shutdown_timeout = 1s\n\n[metrics]\nlisten = 127.0.0.1:%d\n\n" % port
    for name, body in jobs.items():
        text += "[job %s]\nconnector = http\ntimeout = 1s\n%s\n" \
            % (name, body.replace("URL", target.url("")))
    return text


def dispatch(w, job_type, fid=1):
    return w.client().dispatch(fid, [(T_JOB_TYPE, job_type),
                                     (T_TENANT, "acme"), (T_BODY, b"{}")])


def accepted(r):
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def state(rc, jid):
    return (rc.hget("{vq}:job:" + jid, "state") or b"").decode()


def wait_state(rc, jid, want, seconds=10):
    vh.wait_for(lambda: state(rc, jid) == want, seconds, interval=0.05,
                what="job %s %s" % (jid, want))


def get(port, path, method="GET"):
    return httpx.request(method, "http://127.0.0.1:%d%s" % (port, path),
                         timeout=vh.timeout(5))


def scrape(port):
    r = get(port, "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == \
        "text/plain; version=0.0.4; charset=utf-8"
    fams = parse(r.text)
    assert {n: f["type"] for n, f in fams.items()} == FAMILIES
    assert all(f["help"] for f in fams.values())
    return fams


@pytest.fixture
def port():
    return vh.free_port()


def test_counts_after_a_known_sequence(worker_factory, target, rc, port):
    w = worker_factory(conf(target, port, {
        "ok": "url = URL/ok",
        "flaky": "url = URL/flaky\nbackoff_base = 10ms\nbackoff_cap = 20ms",
        "bad": "url = URL/bad"}))
    target.default("/bad", (400, {}, b"no"))

    fams = scrape(port)
    assert value(fams, "vantage_worker_redis_connected") == 1
    assert value(fams, "vantage_worker_metrics_series_dropped_total") == 0

    ok = [accepted(dispatch(w, "ok", fid=i)) for i in range(1, 4)]
    flaky = []
    for i in range(2):     # one at a time: each meets its own 503
        target.script("/flaky", [(503, {}, b"")])
        flaky.append(accepted(dispatch(w, "flaky", fid=10 + i)))
        wait_state(rc, flaky[-1], "succeeded")
    bad = accepted(dispatch(w, "bad", fid=20))
    refused = dispatch(w, "nosuch", fid=21)
    assert refused.status == 400, refused
    for jid in ok:
        wait_state(rc, jid, "succeeded")
    wait_state(rc, bad, "dead")

    fams = scrape(port)
    counters = {
        ("vantage_worker_dispatch_accepted_total", (("type", "ok"),)): 3,
        ("vantage_worker_dispatch_accepted_total", (("type", "flaky"),)): 2,
        ("vantage_worker_dispatch_accepted_total", (("type", "bad"),)): 1,
        ("vantage_worker_dispatch_refused_total", (("status", "400"),)): 1,
        ("vantage_worker_attempts_total",
         (("type", "ok"), ("outcome", "success"))): 3,
        ("vantage_worker_attempts_total",
         (("type", "flaky"), ("outcome", "retry"))): 2,
        ("vantage_worker_attempts_total",
         (("type", "flaky"), ("outcome", "success"))): 2,
        ("vantage_worker_attempts_total",
         (("type", "bad"), ("outcome", "dead"))): 1,
        ("vantage_worker_retries_total", (("reason", "server_error"),)): 2,
        ("vantage_worker_dead_letters_total", (("type", "bad"),)): 1,
        ("vantage_worker_target_attempts_total",
         (("target", "ok"), ("outcome", "success"))): 3,
        ("vantage_worker_target_attempts_total",
         (("target", "flaky"), ("outcome", "retry"))): 2,
        ("vantage_worker_target_attempts_total",
         (("target", "flaky"), ("outcome", "success"))): 2,
        ("vantage_worker_target_attempts_total",
         (("target", "bad"), ("outcome", "dead"))): 1,
        ("vantage_worker_jobs_total",
         (("type", "ok"), ("state", "accepted"))): 3,
        ("vantage_worker_jobs_total",
         (("type", "flaky"), ("state", "accepted"))): 2,
        ("vantage_worker_jobs_total",
         (("type", "bad"), ("state", "accepted"))): 1,
        ("vantage_worker_jobs_total",
         (("type", "ok"), ("state", "succeeded"))): 3,
        ("vantage_worker_jobs_total",
         (("type", "flaky"), ("state", "retrying"))): 2,
        ("vantage_worker_jobs_total",
         (("type", "flaky"), ("state", "succeeded"))): 2,
        ("vantage_worker_jobs_total",
         (("type", "bad"), ("state", "dead"))): 1,
    }
    got = {(n, tuple(sorted(k[1]))): v
           for n in FAMILIES if FAMILIES[n] == "counter"
           for k, v in fams[n]["samples"].items()}
    want = {(n, tuple(sorted(l))): v for (n, l), v in counters.items()}
    want[("vantage_worker_metrics_series_dropped_total", ())] = 0
    assert got == want

    # one latency per call, under the target (the job type without one)
    h = "vantage_worker_attempt_duration_seconds"
    counts = {t: value(fams, h, h + "_count", target=t)
              for t in ("ok", "flaky", "bad")}
    assert counts == {"ok": 3, "flaky": 4, "bad": 1}
    assert sum(counts.values()) == len(target.got())
    for t in counts:
        # ms resolution: a local call may take 0 ms
        assert 0 <= value(fams, h, h + "_sum", target=t) < counts[t] * 1.0
        assert value(fams, h, h + "_bucket", target=t, le="+Inf") \
            == counts[t]
    assert {dict(k[1])["target"]: v for k, v in
            fams["vantage_worker_breaker_state"]["samples"].items()} \
        == {"ok": 0, "flaky": 0, "bad": 0}

    # the stream, sampled: every entry taken and acknowledged
    def drained():
        f = scrape(port)
        return [value(f, "vantage_worker_stream_" + g, stream=STREAM)
                for g in ("length", "pending", "oldest_pending_age_seconds",
                          "oldest_entry_age_seconds")] == [0, 0, 0, 0] \
            and ("vantage_worker_stream_pending",
                 frozenset({"stream": STREAM}.items())) \
            in {(k[0], k[1]) for k in
                f["vantage_worker_stream_pending"]["samples"]}
    vh.wait_for(drained, 5, interval=0.2, what="stream gauges")


def test_stream_gauges_see_a_pending_entry(worker_factory, target, rc,
                                           port):
    """An entry 3 s old that another consumer holds: the worker's engine
    reads only new entries, so until the visibility timeout lets it
    reclaim this one, the stream holds one entry, pending, 3 s old."""
    created = int(time.time() * 1000) - 3000
    rc.xgroup_create(STREAM, "vantage", id="0", mkstream=True)
    rc.xadd(STREAM, {"job": "0" * 32, "n": 1}, id="%d-0" % created)
    assert rc.xreadgroup("vantage", "ghost", {STREAM: ">"}, count=1)
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))

    def sampled():
        f = scrape(port)
        return f if value(f, "vantage_worker_stream_length",
                          stream=STREAM) == 1 else None
    f = vh.wait_for(sampled, 3, interval=0.1, what="stream sampled")
    assert value(f, "vantage_worker_stream_pending", stream=STREAM) == 1
    now = time.time() * 1000
    for g in ("oldest_pending_age_seconds", "oldest_entry_age_seconds"):
        age = value(f, "vantage_worker_stream_" + g, stream=STREAM)
        assert 3 <= age <= (now - created) / 1000 + 0.01, (g, age)


def test_healthz_readyz_follow_redis(worker_factory, worker_redis, target,
                                     port):
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    r = get(port, "/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert r.headers["content-type"] == "application/json"
    r = get(port, "/readyz")
    assert (r.status_code, r.json()) == \
        (200, {"status": "ready", "redis": "connected",
               "configuration": "loaded"})

    worker_redis.stop()
    vh.wait_for(lambda: get(port, "/readyz").status_code == 503, 10,
                interval=0.1, what="readyz 503")
    r = get(port, "/readyz")
    body = r.json()
    assert body["status"] == "not_ready"
    assert len(body["reasons"]) == 1 and \
        body["reasons"][0].startswith("redis: "), body
    assert get(port, "/healthz").status_code == 200
    assert value(scrape(port), "vantage_worker_redis_connected") == 0

    worker_redis.start()
    vh.wait_for(lambda: get(port, "/readyz").status_code == 200, 15,
                interval=0.1, what="readyz 200 again")
    assert get(port, "/healthz").status_code == 200
    assert value(scrape(port), "vantage_worker_redis_connected") == 1


def test_paths_and_methods(worker_factory, target, port):
    worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    r = get(port, "/nope")
    assert (r.status_code, r.json()) == (404, {"error": "not found"})
    for path in ("/metrics", "/healthz", "/readyz"):
        r = get(port, path, "POST")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert r.json() == {"error": "method not allowed"}
        r = get(port, path, "HEAD")
        assert r.status_code == 200 and r.content == b""
    assert get(port, "/metrics?x=1").status_code == 200


def test_reload_keeps_the_listener(worker_factory, target, port):
    """SIGHUP with another [metrics] listen: the old one stays in force
    until a restart, and the log says so."""
    w = worker_factory(conf(target, port, {"ok": "url = URL/ok"}))
    other = vh.free_port()
    w.write_config(conf(target, other, {"ok": "url = URL/ok"}))
    os.kill(w.pid, signal.SIGHUP)
    line = vh.wait_for(lambda: next((o for o in w.log_lines() if o.get("msg")
                                     == "configuration reloaded"), None),
                       5, what="reload logged")
    assert line["restart_needed"] == "metrics.listen"
    assert get(port, "/healthz").status_code == 200
    assert not vh.port_open(other)


def test_unix_socket(worker_factory, target, base_dir):
    d = tempfile.mkdtemp(prefix="vwm-", dir="/tmp")
    path = os.path.join(d, "m.sock")
    text = conf(target, 1, {"ok": "url = URL/ok"}).replace(
        "listen = 127.0.0.1:1", "listen = unix:" + path)
    w = worker_factory(text)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as c:
        r = c.get("http://worker/readyz", timeout=vh.timeout(5))
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert parse(c.get("http://worker/metrics").text)
    w.stop()
    assert not os.path.exists(path)
    os.rmdir(d)


# --------------------------------------------------------------------------
# --check

BAD = [
    ("not-numeric", "listen = localhost:9100",
     'listen: "localhost:9100": the address must be a numeric IPv4 address '
     "or an IPv6 one in [brackets]"),
    ("no-port", "listen = 127.0.0.1",
     'listen: "127.0.0.1" is neither <address>:<port> nor unix:<path>'),
    ("port-zero", "listen = 127.0.0.1:0",
     'listen: "127.0.0.1:0": the port must be 1 to 65535'),
    ("port-big", "listen = 127.0.0.1:65536",
     'listen: "127.0.0.1:65536": the port must be 1 to 65535'),
    ("bare-ipv6", "listen = ::1:9100",
     'listen: "::1:9100": the address must be a numeric IPv4 address '
     "or an IPv6 one in [brackets]"),
    ("empty-unix", "listen = unix:",
     'listen: "unix:": the path is empty or longer than 107 bytes'),
    ("unknown-key", "port = 9100", "port: unknown key in [metrics]"),
    ("admin-not-a-flag", "admin = yes", 'admin: "yes" is not on or off'),
]


def check(worker_bin, text, tmp):
    path = os.path.join(tmp, "worker.conf")
    vh.write_file(path, text, mode=0o644)
    return subprocess.run([worker_bin, "--check", "worker.conf"], cwd=tmp,
                          capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=vh.timeout(10))


HEAD = "[worker]\nlisten = unix:/run/vantage/w.sock\nredis = 127.0.0.1:6379\n"


@pytest.fixture
def tmp(base_dir):
    return vh.make_dir(tempfile.mkdtemp(prefix="worker-metrics-",
                                        dir=base_dir))


@pytest.mark.parametrize("line,err", [(l, e) for _, l, e in BAD],
                         ids=[n for n, _, _ in BAD])
def test_check_invalid(worker_bin, tmp, line, err):
    p = check(worker_bin, HEAD + "[metrics]\n" + line + "\n", tmp)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: worker.conf:5: %s\n" % err)


@pytest.mark.parametrize("text,err", [
    ("[metrics]\n", "worker.conf:4: listen: missing in [metrics]"),
    ("[metrics x]\nlisten = 127.0.0.1:9100\n",
     "worker.conf:4: [metrics x]: [metrics] takes no name"),
    ("[metrics]\nlisten = 127.0.0.1:9100\n[metrics]\n",
     "worker.conf:6: [metrics]: duplicate section, first at line 4"),
], ids=["missing-listen", "named", "duplicate"])
def test_check_invalid_section(worker_bin, tmp, text, err):
    p = check(worker_bin, HEAD + text, tmp)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: %s\n" % err)


@pytest.mark.parametrize("listen", ["127.0.0.1:9100", "0.0.0.0:1",
                                    "[::1]:65535", "unix:/run/vantage/m.sock"])
def test_check_valid(worker_bin, tmp, listen):
    p = check(worker_bin, HEAD + "[metrics]\nlisten = %s\n" % listen, tmp)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: worker.conf: configuration is valid\n")


def test_worker_md_example_passes_check(worker_bin, tmp):
    """docs/WORKER.md's [metrics] block (fenced as conf, not ini: the ini
    blocks there make up one file that test_worker_config.py checks)."""
    with open(os.path.join(vh.REPO, "docs", "WORKER.md")) as f:
        block, = re.findall(r"^```conf\n(\[metrics\]\n.*?)^```", f.read(),
                            re.M | re.S)
    p = check(worker_bin, HEAD + block, tmp)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: worker.conf: configuration is valid\n")
