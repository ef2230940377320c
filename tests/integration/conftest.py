"""conftest.py -- fixtures for the Vantage integration tests.

  base_dir, pki, backend          session: a 0755 scratch dir, a test CA,
                                  the header-echoing backend
  nginx_factory                   function: nginx_factory(http=, server=,
                                  ...) -> a started Nginx, stopped at
                                  teardown
  module_nginx_factory            the same, one per test module
  transport                       "http" (HTTP/1.1) or "h2" (TLS + HTTP/2)
  client                          Client for the module's `server` fixture
                                  over `transport`
  client_for(nginx)               a Client for any Nginx over `transport`
  redis_server                    function: a started RedisServer (TCP and
                                  unix socket, no auth), closed at teardown
  module_redis                    the same, one per test module
  redis_factory                   function: redis_factory(start=True, **kw)
                                  -> a RedisServer(base_dir, **kw), all
                                  closed at teardown
  worker_bin                      build/vantage-worker; skips when not built
  worker_redis                    the Redis of worker_factory's workers:
                                  redis_server unless a module overrides it
  worker_factory                  function: worker_factory(config=None,
                                  args=(), redis=None, start=True, n=None)
                                  -> a Worker (n given: a list of n), all
                                  stopped at teardown; .socket_mode and
                                  .secrets are per-module options
  worker                          worker_factory(): one started Worker
  rc                              a redis client (bytes) for worker_redis
  target                          tests/fakes/http_target.py's HttpTarget,
                                  the vendor the workers deliver to

After every test, each nginx the test used must have logged no [alert],
no [emerg] and no sanitizer report, and no token the test sent may appear
in its error.log.  @pytest.mark.log_allow("regex", ...) exempts matching
lines for one test.

After every test, each vantage-worker the test made with worker_factory
must have logged no sanitizer report and none of the factory's .secrets;
its log's tail is printed (pytest shows it when the test failed).  No
vantage-worker outlives its test module.

No redis-server outlives the run: what a fixture did not close is stopped
at session end (and at exit).  A Redis directory is kept, like the nginx
prefixes, once a test has failed or with VANTAGE_KEEP_TMP.
"""

import os
import re
import shutil
import sys
import tempfile

import pytest

import vantage_harness as vh
import worker_harness as wh


def pytest_configure(config):
    config.addinivalue_line("markers", "log_allow(*regex): error.log lines "
                            "matching one of these are not a failure")


_session_failed = False


def pytest_runtest_logreport(report):
    global _session_failed
    if report.failed:
        _session_failed = True


@pytest.fixture(scope="session")
def base_dir():
    d = vh.make_dir(tempfile.mkdtemp(prefix="vantage-it-"))
    yield d
    if _session_failed or os.environ.get("VANTAGE_KEEP_TMP"):
        print("\nvantage: test prefixes kept in %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(base_dir):
    return vh.TestPKI(os.path.join(base_dir, "pki"))


@pytest.fixture(scope="session")
def backend():
    b = vh.EchoBackend()
    yield b
    b.close()


@pytest.fixture(scope="session")
def module_available():
    """The module's path; skips the test when it is not built."""
    path = vh.module_path()
    if not os.path.exists(path):
        pytest.skip("module not built: %s (run make module)" % path)
    return path


class _Factory:
    def __init__(self, base_dir, pki):
        self.base_dir = base_dir
        self.pki = pki
        self.instances = []

    def __call__(self, http="", server="", start=True, **kw):
        n = vh.Nginx(self.base_dir, self.pki, http=http, server=server, **kw)
        self.instances.append(n)
        if start:
            n.start()
        return n

    def close(self):
        problems = []
        for n in self.instances:
            offset = getattr(n, "_checked_to", 0)
            n.stop()
            if n in vh.LIVE:
                vh.LIVE.remove(n)
            problems += ["%s: %s" % (n.prefix, p)
                         for p in n.log_problems(offset)]
        return problems


@pytest.fixture
def nginx_factory(base_dir, pki):
    f = _Factory(base_dir, pki)
    yield f
    # the log itself is checked by _log_guard, which runs after this
    for n in f.instances:
        n.stop()


@pytest.fixture(scope="module")
def module_nginx_factory(base_dir, pki):
    f = _Factory(base_dir, pki)
    yield f
    problems = f.close()
    assert not problems, \
        "error.log at shutdown:\n" + "\n".join(problems)


@pytest.fixture(params=vh.TRANSPORTS)
def transport(request):
    return request.param


_clients = []


@pytest.fixture
def client_for(transport):
    made = []

    def make(nginx, transport=transport):
        c = vh.Client(nginx, transport)
        made.append(c)
        _clients.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(server, client_for):
    """A Client for the test module's `server` fixture."""
    return client_for(server)


@pytest.fixture(autouse=True)
def _log_guard(request):
    """Checks the error.log of every nginx alive during the test."""
    before = {id(n): n.log_size() for n in vh.LIVE}
    nclients = len(_clients)
    yield
    allow = []
    for m in request.node.iter_markers("log_allow"):
        allow += [re.compile(a) for a in m.args]
    tokens = []
    for c in _clients[nclients:]:
        tokens += c.sent_tokens
    del _clients[nclients:]
    failures = []
    for n in list(vh.LIVE):
        offset = before.get(id(n), 0)
        problems = [p for p in n.log_problems(offset)
                    if not any(a.search(p) for a in allow)]
        failures += ["%s: %s" % (n.error_log, p) for p in problems]
        text = n.log_since(offset) if os.path.exists(n.error_log) else ""
        failures += ["%s: token logged: %s" % (n.error_log, t)
                     for t in vh.leaked_tokens(text, tokens)]
        n._checked_to = n.log_size()
        if not n.running():
            vh.LIVE.remove(n)
    assert not failures, "error.log check failed:\n" + "\n".join(failures)


@pytest.fixture(scope="session")
def keys(base_dir):
    """Test keys and their files (vantage_tokens.Keys)."""
    import vantage_tokens
    return vantage_tokens.Keys(os.path.join(base_dir, "keys"))



# --------------------------------------------------------------------------
# Redis

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    left = vh.stop_all_redis()
    if left:
        print("\nvantage: stopped %d redis-server(s) left running: %s"
              % (len(left), ", ".join(r.address for r in left)))


class _RedisFactory:
    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.instances = []

    def __call__(self, start=True, **kw):
        r = vh.RedisServer(self.base_dir, **kw)
        self.instances.append(r)
        if start:
            r.start()
        return r

    def close(self):
        for r in self.instances:
            r.close(keep=_session_failed)


@pytest.fixture
def redis_server(base_dir):
    """A started RedisServer, closed at teardown."""
    r = vh.RedisServer(base_dir)
    try:
        yield r.start()
    finally:
        r.close(keep=_session_failed)


@pytest.fixture(scope="module")
def module_redis(base_dir):
    """A started RedisServer shared by the tests of one module."""
    r = vh.RedisServer(base_dir, name="module-redis")
    try:
        yield r.start()
    finally:
        r.close(keep=_session_failed)


@pytest.fixture
def redis_factory(base_dir):
    """redis_factory(start=True, **kw): more RedisServers (kw as for
    RedisServer), all closed at teardown."""
    f = _RedisFactory(base_dir)
    yield f
    f.close()


# --------------------------------------------------------------------------
# vantage-worker

WORKER_LOG_FORBIDDEN = re.compile(
    r"AddressSanitizer|LeakSanitizer|runtime error:")


@pytest.fixture(scope="module", autouse=True)
def _no_worker_left():
    yield
    left = wh.stop_all_workers()
    assert not left, "workers left running: %r" % left


@pytest.fixture
def worker_bin():
    if not wh.worker_available():
        pytest.skip("worker not built: %s (run make worker)"
                    % wh.worker_path())
    return wh.worker_path()


@pytest.fixture
def redis(redis_factory):
    """A RedisServer with the append-only file on, as jobs are kept in
    production: for the tests that restart Redis and count what survives."""
    return redis_factory(appendonly=True)


@pytest.fixture
def worker_redis(request):
    """The RedisServer worker_factory's workers use unless told another
    address: redis_server, or the fixture a module names in WORKER_REDIS
    (e.g. "redis", the append-only one)."""
    return request.getfixturevalue(getattr(request.module, "WORKER_REDIS",
                                           "redis_server"))


class _WorkerFactory:
    """worker_factory(config=None, args=(), redis=None, start=True, n=None):
    a Worker (config: the text of its file, with {listen} and {redis};
    redis: an address instead of worker_redis's), started unless start is
    False; with n, a list of n of them.

    Options a module sets on the fixture's value:
      socket_mode   chmod'ed on the socket after each start (0o777: nginx's
                    workers, user nobody, connect to it)
      secrets       strings that must never appear in a worker's log
    """

    def __init__(self, base_dir, redis):
        self.base_dir = base_dir
        self.redis = redis
        self.socket_mode = None
        self.secrets = ()
        self.instances = []

    def __call__(self, config=None, args=(), redis=None, start=True,
                 n=None):
        made = []
        for _ in range(1 if n is None else n):
            w = wh.Worker(self.base_dir, redis or self.redis.address, args,
                          config=config)
            self.instances.append(w)
            if start:
                self.start(w)
            made.append(w)
        return made[0] if n is None else made

    def start(self, w):
        """Starts w (again: after it exited, or was killed) and opens its
        socket to socket_mode."""
        w.start()
        if self.socket_mode is not None:
            os.chmod(w.socket_path, self.socket_mode)
        return w

    def close(self):
        """Stops every worker (keeping its directory for base_dir's fate)
        and prints its log's tail; returns what its log must not hold."""
        problems = []
        for w in self.instances:
            w.close(keep=True)
            text = w.log_text()
            print(w.log_tail())
            problems += ["%s: %s" % (w.log_file, l)
                         for l in text.splitlines()
                         if WORKER_LOG_FORBIDDEN.search(l)]
            problems += ["%s: a secret was logged: %r" % (w.log_file, s)
                         for s in self.secrets if s in text]
        return problems


@pytest.fixture
def worker_factory(base_dir, worker_redis, worker_bin):
    f = _WorkerFactory(base_dir, worker_redis)
    yield f
    problems = f.close()
    assert not problems, "worker log:\n" + "\n".join(problems)


@pytest.fixture
def worker(worker_factory):
    """A started Worker against worker_redis."""
    return worker_factory()


@pytest.fixture
def rc(worker_redis):
    """A redis client (bytes) for worker_redis."""
    return worker_redis.client()


@pytest.fixture
def target():
    """An HttpTarget (tests/fakes/http_target.py) on a free port, closed at
    teardown."""
    _fakes_on_path()
    from http_target import HttpTarget
    t = HttpTarget()
    yield t
    t.close()


# --------------------------------------------------------------------------
# the vendor emulators and a vault key, for the worker's metrics and alert
# tests (test_worker_status.py, test_alerting.py); the connector tests keep
# their own, which take other options

@pytest.fixture
def vault_key(tmp_path):
    """A fresh 32-byte vault master key file (0600); skips without
    vantagectl, which seals the secrets under it."""
    ctl = os.environ.get("VANTAGECTL",
                         os.path.join(vh.REPO, "build", "vantagectl"))
    if not os.access(ctl, os.X_OK):
        pytest.skip("vantagectl not built: %s (run make ctl)" % ctl)
    path = str(tmp_path / "vault.key")
    vh.write_file(path, os.urandom(32), mode=0o600)
    return path


def _fakes_on_path():
    fakes = os.path.join(vh.REPO, "tests", "fakes")
    if fakes not in sys.path:
        sys.path.insert(0, fakes)


@pytest.fixture
def sf(pki):
    """The Salesforce emulator (tests/fakes/salesforce), API 62.0."""
    _fakes_on_path()
    from salesforce import Salesforce
    s = Salesforce(pki=pki, api_version="62.0")
    yield s
    s.stop()
    assert s.internal_errors == []


@pytest.fixture
def hs(pki):
    """The HubSpot emulator (tests/fakes/hubspot)."""
    _fakes_on_path()
    from hubspot import HubSpot
    h = HubSpot(pki=pki)
    yield h
    h.stop()
    assert not h.internal_errors, h.internal_errors
