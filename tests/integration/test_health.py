"""test_health.py -- /healthz and /readyz for Kubernetes probes (issue 8).

nginx with the module (vantage_health live | ready), a real redis-server,
the real vantage-worker and tests/fakes/idp.py as an identity provider.
What is shown:
  - /healthz 200 and /readyz 200 with every check ok, over HTTP/1.1 and
    HTTP/2; HEAD; 405 for other methods; Cache-Control: no-store;
  - a check that is not configured is "not_configured" and does not fail;
  - nginx's Redis stopped: /readyz 503 in every worker process, with the
    redis check failing, then 200 again once it is back (and paused: the
    check's own timeout);
  - the worker stopped (SIGTERM, SIGKILL) or paused: 503 with the worker
    check failing, 200 again once it is back;
  - Redis shared by nginx and the worker stopped: both checks fail, and
    the worker's own /healthz and /readyz, proxied by nginx over the
    worker's Unix metrics socket, flip with it;
  - keys: an identity provider down from the start fails the keys check
    until it is up; a key file that loads is ok, and one whose reload
    failed, or a provider's stale set, is ok but said;
  - a client that goes away while the checks run (HTTP/1.1, HTTP/2);
  - nginx -t errors of vantage_health, and the README's example.

Every body is compared whole, byte for byte, as the module writes it.
"""

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from idp import IdP                              # noqa: E402


# --------------------------------------------------------------------------
# what the module says (one place to follow its wording)

REDIS_NOT_ASKED = ("cannot be asked: no connection, or its circuit breaker "
                   "is open (error.log says why)")
WORKER_UNREACHABLE = "cannot connect to the worker's socket"
WORKER_NOT_READY = ("the worker is not ready: cannot connect to Redis "
                    "(Connection refused)")
KEYS_RELOAD_FAILED = ("1 key file(s) failed their last reload: the keys "
                      "loaded before stay in force")
KEYS_STALE = ("1 identity provider key set(s) are stale: the keys loaded "
              "before stay in force")


def no_answer(ms):
    return "no answer to PING within %d ms" % ms


def keys_missing(missing, total):
    return "%d of %d key sets not loaded yet (error.log says why)" \
        % (missing, total)


def body(status, checks=None, details=None):
    """The module's /readyz body, byte for byte: checks not named are ok;
    details, the reasons by check."""
    out = {"status": status,
           "checks": {"redis": "ok", "worker": "ok", "keys": "ok"}}
    out["checks"].update(checks or {})
    if details:
        out["details"] = {k: details[k] for k in ("redis", "worker", "keys")
                          if k in details}
    return json.dumps(out, separators=(",", ":")) + "\n"


READY = body("ready")
LIVE = '{"status":"ok"}\n'


# --------------------------------------------------------------------------
# fixtures

HEALTH = """
        location = /healthz {
            vantage_health live;
            add_header X-Worker $pid always;
        }
        location = /readyz {
            vantage_health ready;
            add_header X-Worker $pid always;
        }
        location = /readyz-fast {
            vantage_health ready timeout=300ms;
            add_header X-Worker $pid always;
        }
"""


@pytest.fixture
def transport():
    """HTTP/1.1 unless a test asks for more (its transport_)."""
    return "http"


@pytest.fixture
def tmp(base_dir):
    return vh.make_dir(tempfile.mkdtemp(prefix="health-", dir=base_dir))


@pytest.fixture
def jwks_file(tmp, keys):
    """A key file of its own (the tests rewrite it), holding the test
    JWKS."""
    with open(keys.path("jwks.json"), "rb") as f:
        data = f.read()
    return vh.write_file(os.path.join(tmp, "jwks.json"), data)


def key_location(path):
    return """
        location /api/ {
            vantage_jwt on;
            vantage_jwt_keys %s;
            return 204;
        }
""" % path


class Stack:
    """nginx (and the worker it talks to) with the health locations."""

    def __init__(self, nginx, worker, client_for):
        self.nginx = nginx
        self.worker = worker
        self.client = client_for(nginx)
        self._client_for = client_for

    def get(self, path, transport=None, **kw):
        c = self.client if transport is None \
            else self._client_for(self.nginx, transport)
        return c.get(path, **kw)

    def everywhere(self, path, want, seconds=20):
        """Polls path over new connections until every nginx worker
        process has answered want, (status, body), on its last request;
        returns one such answer.  Fails with the answers seen last."""
        pids = set(self.nginx.workers())
        good = {}
        last = {}

        def check():
            r = self.client.get(path, new_connection=True)
            pid = int(r.headers["X-Worker"])
            last[pid] = (r.status, r.body)
            if (r.status, r.body) == want:
                good[pid] = r
            else:
                good.pop(pid, None)
            return set(good) == pids

        try:
            vh.wait_for(check, seconds, interval=0.05,
                        what="%s to answer %r in every process" % (path, want))
        except TimeoutError as e:
            raise AssertionError("%s; last answers by pid: %r"
                                 % (e, last)) from None
        return next(iter(good.values()))


@pytest.fixture
def stack(module_available, nginx_factory, worker_factory, client_for,
          jwks_file):
    """stack(redis=<RedisServer or None>, worker=True, config=None,
    server="", http="") -> a Stack: a worker (config: its file's text),
    then an nginx with HEALTH, vantage_redis (when redis), vantage_worker
    (when worker) and a location with a key file (keys=True)."""
    worker_factory.socket_mode = 0o777

    def make(redis=None, worker=True, config=None, server="", http="",
             keys=True, processes=2):
        w = worker_factory(config) if worker else None
        conf = ""
        if redis is not None:
            conf += "    vantage_redis %s;\n" % redis.address
        if w is not None:
            conf += "    vantage_worker unix:%s;\n" % w.socket_path
        n = nginx_factory(name="health", worker_processes=processes,
                          http=conf + http,
                          server=HEALTH + (key_location(jwks_file)
                                           if keys else "") + server)
        return Stack(n, w, client_for)

    return make


@pytest.fixture
def nginx_redis(redis_factory):
    """A Redis for nginx alone (the worker has worker_redis): stopping it
    fails nginx's redis check and nothing else."""
    return redis_factory(name="nginx-redis")


def assert_json(r, status, text):
    assert (r.status, r.body) == (status, text), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("Cache-Control") == ["no-store"], r


# --------------------------------------------------------------------------
# all up

@pytest.mark.parametrize("transport_", ["http", "h2"])
def test_live_and_ready(stack, nginx_redis, transport_):
    s = stack(redis=nginx_redis)
    for _ in range(4):
        r = s.get("/healthz", transport_, new_connection=True)
        assert_json(r, 200, LIVE)
        r = s.get("/readyz", transport_, new_connection=True)
        assert_json(r, 200, READY)
        assert r.headers["Content-Length"] == str(len(READY))
    s.everywhere("/readyz", (200, READY))
    s.everywhere("/readyz-fast", (200, READY))


@pytest.mark.parametrize("transport_", ["http", "h2"])
def test_methods(stack, nginx_redis, transport_):
    s = stack(redis=nginx_redis)
    c = s._client_for(s.nginx, transport_)
    not_allowed = json.dumps({
        "error": "method_not_allowed",
        "error_description": "health checks are read with GET or HEAD"},
        separators=(",", ":")) + "\n"
    for path in ("/healthz", "/readyz"):
        r = c.get(path, method="HEAD")
        assert (r.status, r.body) == (200, ""), r
        assert r.headers["Content-Type"] == "application/json", r
        assert r.headers["Cache-Control"] == "no-store", r
        for method in ("POST", "PUT", "DELETE"):
            r = c.request(method, path, content=b"{}")
            assert_json(r, 405, not_allowed)
            assert r.headers["Allow"] == "GET, HEAD", r
        # a query string changes nothing
        assert_json(c.get(path + "?verbose=1"), 200,
                    LIVE if path == "/healthz" else READY)


def test_not_configured(stack):
    """No vantage_redis, no vantage_worker, no key: nothing to ask, and
    nothing failing."""
    s = stack(worker=False, keys=False)
    r = s.get("/readyz")
    assert_json(r, 200, body("ready", {"redis": "not_configured",
                                       "worker": "not_configured",
                                       "keys": "not_configured"}))


# --------------------------------------------------------------------------
# Redis

@pytest.mark.timing
def test_redis_stops_and_comes_back(stack, nginx_redis):
    s = stack(redis=nginx_redis)
    s.everywhere("/readyz", (200, READY))

    nginx_redis.stop()
    down = body("not_ready", {"redis": "unreachable"},
                {"redis": REDIS_NOT_ASKED})
    r = s.everywhere("/readyz", (503, down))
    assert_json(r, 503, down)
    # liveness does not depend on Redis
    assert_json(s.get("/healthz"), 200, LIVE)
    # each process says why it is not ready
    assert re.search(r"\[info\] \d+#\d+: \*\d+ vantage health: not ready: "
                     + re.escape(down.rstrip("\n")), s.nginx.log_since(0))

    t = time.monotonic()
    nginx_redis.start()
    s.everywhere("/readyz", (200, READY), seconds=15)
    # the breaker's cooldown (2s) and a reconnection, not more
    assert time.monotonic() - t < vh.timeout(10)


@pytest.mark.timing
def test_redis_paused_the_checks_timeout(stack, nginx_redis):
    """Redis takes the connection but answers nothing: the adapter's own
    timeout (250ms) is the answer, or the check's (timeout=300ms and a
    Redis timeout above it: the check's)."""
    s = stack(redis=nginx_redis, http="",
              server="""
        location = /readyz-100 {
            vantage_health ready timeout=100ms;
            add_header X-Worker $pid always;
        }
""")
    s.everywhere("/readyz", (200, READY))
    nginx_redis.pause()
    try:
        r = s.get("/readyz-100", new_connection=True)
        assert_json(r, 503, body("not_ready", {"redis": "unreachable"},
                                 {"redis": no_answer(100)}))
    finally:
        nginx_redis.resume()
    s.everywhere("/readyz", (200, READY), seconds=15)


# --------------------------------------------------------------------------
# the worker

@pytest.mark.timing
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGTERM", "SIGKILL"])
def test_worker_stops_and_comes_back(stack, nginx_redis, worker_factory,
                                     sig):
    s = stack(redis=nginx_redis)
    s.everywhere("/readyz", (200, READY))

    s.worker.stop(sig)
    down = body("not_ready", {"worker": "unreachable"},
                {"worker": WORKER_UNREACHABLE})
    s.everywhere("/readyz", (503, down))
    assert_json(s.get("/readyz", "h2"), 503, down)
    assert_json(s.get("/healthz"), 200, LIVE)

    worker_factory.start(s.worker)
    s.everywhere("/readyz", (200, READY), seconds=15)
    assert_json(s.get("/readyz", "h2"), 200, READY)


@pytest.mark.timing
def test_worker_paused_the_checks_timeout(stack, nginx_redis):
    s = stack(redis=nginx_redis)
    s.everywhere("/readyz", (200, READY))
    s.worker.send_signal(signal.SIGSTOP)
    try:
        for path, ms in (("/readyz-fast", 300), ("/readyz", 1000)):
            t = time.monotonic()
            r = s.get(path, new_connection=True)
            took = time.monotonic() - t
            assert_json(r, 503, body("not_ready", {"worker": "unreachable"},
                                     {"worker": no_answer(ms)}))
            assert ms / 1000 <= took + 0.05 < ms / 1000 + vh.timeout(2)
    finally:
        s.worker.send_signal(signal.SIGCONT)
    s.everywhere("/readyz", (200, READY))


@pytest.mark.timing
@pytest.mark.parametrize("transport_", ["http", "h2"])
def test_client_gone_mid_check(stack, nginx_redis, transport_):
    """The worker paused, so the PING waits: the client goes away, and the
    pending calls do nothing when they end (the sanitizer build shows a
    use after free; error.log an alert)."""
    s = stack(redis=nginx_redis, processes=1)
    s.everywhere("/readyz", (200, READY))
    mark = s.nginx.log_size()
    s.worker.send_signal(signal.SIGSTOP)
    try:
        h2 = transport_ == "h2"
        for _ in range(3):
            with httpx.Client(base_url=s.nginx.base_url(transport_),
                              http1=not h2, http2=h2,
                              verify=s.nginx.pki.ssl_context if h2 else False,
                              timeout=0.2, trust_env=False) as c:
                with pytest.raises(httpx.TimeoutException):
                    c.get("/readyz")
        vh.wait_for(lambda: s.nginx.log_since(mark).count(
            "client prematurely closed connection") >= 3, 5,
            what="nginx to see the clients go")
        # past the check's timeout: its timer went with the requests
        time.sleep(1.2)
    finally:
        s.worker.send_signal(signal.SIGCONT)
    assert "vantage health" not in s.nginx.log_since(mark)
    s.everywhere("/readyz", (200, READY))


# --------------------------------------------------------------------------
# Redis shared by nginx and the worker; the worker's own endpoints

WORKER_READY = '{"status":"ready","redis":"connected",' \
    '"configuration":"loaded"}'
WORKER_NOT_READY_BODY = '{"status":"not_ready","reasons":["redis: ' \
    'cannot connect to Redis (Connection refused)"]}'


@pytest.fixture
def short_dir():
    """A directory under /tmp, for a Unix socket's short path."""
    d = vh.make_dir(tempfile.mkdtemp(prefix="vwh-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timing
def test_shared_redis_stops_both_flip(stack, worker_redis, short_dir):
    """The deployment's usual shape: one Redis.  nginx's /readyz fails
    both checks, and the worker's /readyz (its [metrics] on a Unix socket,
    proxied by nginx) fails too; /healthz stays 200 on both sides."""
    msock = os.path.join(short_dir, "m.sock")
    config = (wh.CONFIG_HEAD + "listen_mode = 0777\n\n[metrics]\n"
              "listen = unix:%s\n" % msock)
    s = stack(redis=worker_redis, config=config, server="""
        location /vantage/worker/ {
            proxy_pass http://unix:%s:/;
            add_header X-Worker $pid always;
        }
""" % msock)
    assert os.stat(msock).st_mode & 0o777 == 0o777
    s.everywhere("/readyz", (200, READY))
    r = s.get("/vantage/worker/readyz")
    assert (r.status, r.body) == (200, WORKER_READY), r
    assert r.headers["Cache-Control"] == "no-store"
    r = s.get("/vantage/worker/healthz")
    assert (r.status, r.body) == (200, '{"status":"ok"}'), r

    worker_redis.stop()
    down = body("not_ready", {"redis": "unreachable", "worker": "not_ready"},
                {"redis": REDIS_NOT_ASKED, "worker": WORKER_NOT_READY})
    s.everywhere("/readyz", (503, down))
    s.everywhere("/vantage/worker/readyz", (503, WORKER_NOT_READY_BODY))
    r = s.get("/vantage/worker/readyz", "h2")
    assert (r.status, r.body) == (503, WORKER_NOT_READY_BODY), r
    assert r.headers["Content-Type"] == "application/json"
    r = s.get("/vantage/worker/healthz")
    assert (r.status, r.body) == (200, '{"status":"ok"}'), r
    assert_json(s.get("/healthz"), 200, LIVE)

    worker_redis.start()
    s.everywhere("/readyz", (200, READY), seconds=20)
    s.everywhere("/vantage/worker/readyz", (200, WORKER_READY))


# --------------------------------------------------------------------------
# keys

def idp_config(idp):
    return (wh.CONFIG_HEAD + "\n[idp main]\njwks_url = %s/jwks\n"
            "ca_file = %s\nmin_refresh = 1s\ntimeout = 5s\n"
            % (idp.url, idp.ca_file))


def idp_location(idp):
    return """
        location /jwt/ {
            vantage_jwt on;
            vantage_jwt_jwks_url %s/jwks;
            return 204;
        }
""" % idp.url


@pytest.fixture
def idp(pki, tmp):
    p = IdP(pki=pki, directory=vh.make_dir(os.path.join(tmp, "idp")))
    yield p
    p.stop()


@pytest.mark.timing
def test_keys_identity_provider_down_then_up(stack, nginx_redis, idp):
    idp.stop()
    s = stack(redis=nginx_redis, config=idp_config(idp),
              server=idp_location(idp))
    down = body("not_ready", {"keys": "not_loaded"},
                {"keys": keys_missing(1, 2)})
    s.everywhere("/readyz", (503, down))
    assert_json(s.get("/healthz"), 200, LIVE)
    # the same as the provider's set is not fetched
    for _ in range(3):
        assert s.get("/readyz", new_connection=True).status == 503

    idp.start()
    s.everywhere("/readyz", (200, READY), seconds=30)


@pytest.mark.timing
def test_keys_stale_set_is_ready_but_said(stack, nginx_redis, idp):
    idp.max_age = 1
    s = stack(redis=nginx_redis, config=idp_config(idp),
              server=idp_location(idp), keys=False)
    s.everywhere("/readyz", (200, READY))
    idp.stop()
    stale = body("ready", details={"keys": KEYS_STALE})
    s.everywhere("/readyz", (200, stale))
    idp.start()
    s.everywhere("/readyz", (200, READY), seconds=30)


def test_keys_file_reload_failed_is_ready_but_said(stack, nginx_redis,
                                                   jwks_file):
    s = stack(redis=nginx_redis,
              http="    vantage_jwt_keys_check_interval 100ms;\n")
    s.everywhere("/readyz", (200, READY))
    with open(jwks_file, "rb") as f:
        good = f.read()
    mark = s.nginx.log_size()
    vh.write_file(jwks_file, "not a key set", atomic=True)
    vh.wait_for(lambda: s.nginx.log_since(mark).count("not reloaded") >= 2,
                10, what="both processes to refuse the new file")
    said = body("ready", details={"keys": KEYS_RELOAD_FAILED})
    s.everywhere("/readyz", (200, said))
    vh.write_file(jwks_file, good, atomic=True)
    s.everywhere("/readyz", (200, READY))


# --------------------------------------------------------------------------
# nginx -t

@pytest.fixture
def check(module_available, nginx_factory):
    def run(server):
        n = nginx_factory(name="health-t", start=False, server=server)
        return n.test_config()
    return run


@pytest.mark.parametrize("server,texts", [
    ("location = /r { vantage_health; }",
     ['invalid number of arguments in "vantage_health" directive']),
    ("location = /r { vantage_health ready timeout=1s x; }",
     ['invalid number of arguments in "vantage_health" directive']),
    ("location = /r { vantage_health alive; }",
     ['"vantage_health": invalid check "alive" (live or ready)']),
    ("location = /r { vantage_health live timeout=1s; }",
     ['"vantage_health live" takes no parameters (it asks nothing): '
      '"timeout=1s"']),
    ("location = /r { vantage_health ready wait=1s; }",
     ['"vantage_health": invalid parameter "wait=1s" (timeout=<time>)']),
    ("location = /r { vantage_health ready timeout=0; }",
     ['"vantage_health": invalid "timeout=0" (a time from 1ms to 60s)']),
    ("location = /r { vantage_health ready timeout=61s; }",
     ['"vantage_health": invalid "timeout=61s" (a time from 1ms to 60s)']),
    ("location = /r { vantage_health ready timeout=soon; }",
     ['"vantage_health": invalid "timeout=soon" (a time from 1ms to 60s)']),
    ("location = /r { vantage_health live; vantage_health ready; }",
     ['"vantage_health" directive is duplicate']),
    ("vantage_health live;",
     ['"vantage_health" directive is not allowed here']),
], ids=["no-argument", "three-arguments", "bad-check", "live-timeout",
        "bad-parameter", "zero-timeout", "long-timeout", "bad-timeout",
        "duplicate", "server-context"])
def test_configuration_errors(check, server, texts):
    rc, out = check(server)
    vh.assert_one_emerg(rc, out, *texts)


def test_valid_configuration(check):
    rc, out = check("location = /a { vantage_health live; }\n"
                    "location = /b { vantage_health ready timeout=250ms; }\n"
                    "location = /c { vantage_health ready timeout=60s; }\n")
    assert rc == 0, out


def test_readme_example_passes(check):
    """README's "Health checks" nginx block, as written."""
    with open(os.path.join(vh.REPO, "README.md")) as f:
        text = f.read()
    start = text.index("\n## Health checks")
    section = text[start:text.index("\n## ", start + 1)]
    block, = re.findall(r"```nginx\n(.*?)```", section, re.S)
    rc, out = check(block)
    assert rc == 0, out
