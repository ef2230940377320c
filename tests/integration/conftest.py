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

After every test, each nginx the test used must have logged no [alert],
no [emerg] and no sanitizer report, and no token the test sent may appear
in its error.log.  @pytest.mark.log_allow("regex", ...) exempts matching
lines for one test.

No redis-server outlives the run: what a fixture did not close is stopped
at session end (and at exit).  A Redis directory is kept, like the nginx
prefixes, once a test has failed or with VANTAGE_KEEP_TMP.
"""

import os
import re
import shutil
import tempfile

import pytest

import vantage_harness as vh


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
