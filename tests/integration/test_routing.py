"""test_routing.py -- README's "Routing" section, run as written.

The nginx blocks are read from README.md's Routing section and rendered
into one real nginx with the built module: nothing in them is changed but
each upstream's address (one backend per upstream block, answering with
its own name), the worker's socket and the key file.  So the idioms the
README shows are the ones tested, and they cannot drift apart.

Every answer is checked exactly: which backend answered, with which method,
path and body, or the status and JSON body nginx gave, or the job the real
vantage-worker made durable in a real Redis.  Tokens are minted by PyJWT
against a JWKS file the test writes.
"""

import http.server
import json
import os
import pathlib
import re
import threading
import time

import jwt
import pytest

import vantage_harness as vh
import vantage_tokens as vt


ROOT = pathlib.Path(__file__).resolve().parents[2]
HEX32 = re.compile(r"[0-9a-f]{32}")
STREAM = b"{vq}:jobs"
KID = "routing-1"

UPSTREAMS = (
    "clients_app", "documents_app", "documents_store",
    "holdings_primary", "holdings_replica",
    "portfolios_us", "portfolios_eu",
    "advice_standard", "advice_premium",
    "api_v1", "api_v2",
    "orders_app",
)

# what the README says, replaced by what this machine has
WORKER_SOCKET = "unix:/run/vantage/worker.sock"
KEYS_FILE = "/etc/vantage/jwks.json"

VERSION_ERROR_PATH = {
    "error": "unsupported_version",
    "error_description": "this API has versions v1 and v2"}
VERSION_ERROR_HEADER = {
    "error": "unsupported_version",
    "error_description": "Accept-Version must be v1 or v2"}


# --------------------------------------------------------------------------
# the README's blocks

def routing_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Routing\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def routing_blocks():
    """[(http, server)] for each ```nginx block of the Routing section,
    split at its "# http {}" and "# server {}" lines."""
    blocks = []
    for block in re.findall(r"```nginx\n(.*?)```", routing_section(), re.S):
        parts = {}
        current = None
        for line in block.splitlines(keepends=True):
            if line.strip() in ("# http {}", "# server {}"):
                current = line.strip()[2:-3]
                assert current not in parts, block
                parts[current] = ""
                continue
            assert current is not None, "text before # http {}: " + block
            parts[current] += line
        blocks.append((parts.get("http", ""), parts.get("server", "")))
    return blocks


UPSTREAM_BLOCK = re.compile(
    r"upstream (\w+)(\s*)\{ server [0-9.]+:[0-9]+; \}")


def render(backends, worker_socket, keys_file):
    """The http and server snippets of every block, with only the
    upstreams' addresses, the socket and the key file replaced."""
    http = "".join(b[0] for b in routing_blocks())
    server = "".join(b[1] for b in routing_blocks())
    seen = []

    def upstream(m):
        seen.append(m.group(1))
        return "upstream %s%s{ server %s; }" % (
            m.group(1), m.group(2), backends[m.group(1)].address)

    http = UPSTREAM_BLOCK.sub(upstream, http)
    assert sorted(seen) == sorted(UPSTREAMS)
    assert "upstream" not in UPSTREAM_BLOCK.sub("", http).replace(
        "_upstream", "")
    assert http.count(WORKER_SOCKET) == 1 and http.count(KEYS_FILE) == 1
    http = http.replace(WORKER_SOCKET, "unix:" + worker_socket)
    http = http.replace(KEYS_FILE, keys_file)
    return http, server


# --------------------------------------------------------------------------
# backends that say who they are

class _NamedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        seen = {"backend": self.server.name, "method": self.command,
                "path": self.path,
                "body": body.decode("utf-8", "replace")}
        self.server.seen.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", self.server.name)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, fmt, *args):
        pass


class NamedBackend:
    def __init__(self, name):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      _NamedHandler)
        self.server.daemon_threads = True
        self.server.name = name
        self.server.seen = []
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def seen(self):
        return self.server.seen

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def backends():
    made = {name: NamedBackend(name) for name in UPSTREAMS}
    yield made
    for b in made.values():
        b.close()


def hits(backends):
    return sum(len(b.seen) for b in backends.values())


# --------------------------------------------------------------------------
# the gateway: README's blocks, the real worker, a real Redis

@pytest.fixture
def worker_factory(worker_factory):
    worker_factory.socket_mode = 0o777      # nginx's workers run as nobody
    return worker_factory


@pytest.fixture
def gateway(module_available, nginx_factory, backends, worker, keys):
    http, server = render(backends, worker.socket_path, "@PREFIX@/jwks.json")
    n = nginx_factory(http=http, server=server, start=False)
    vh.write_file(os.path.join(n.prefix, "jwks.json"), json.dumps(
        {"keys": [vt.jwk(keys.rsa, kid=KID, alg="RS256")]}))
    n.start()
    return n


@pytest.fixture
def c(gateway, client_for):
    return client_for(gateway)


def token(keys, **claims):
    return vt.mint(keys.rsa, "RS256", vt.claims(**claims),
                   headers={"kid": KID})


def send(c, method, path, body=None, tok=None, headers=None):
    h = dict(headers or {})
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
        c.remember(tok)
    return c.request(method, path, content=body, headers=h)


def answered_by(r, backend, method, path, body=""):
    assert r.status == 200, r
    assert r.headers["x-backend"] == backend, r
    if method != "HEAD":
        assert r.json == {"backend": backend, "method": method,
                          "path": path, "body": body}, r


def assert_version_error(r, expected):
    assert r.status == 400, r
    assert r.headers["content-type"] == "application/json", r
    assert r.json == expected, r
    assert r.body == json.dumps(expected, separators=(",", ":")), r


def job(rc, job_id):
    return rc.hgetall(b"{vq}:job:" + job_id.encode())


def assert_queued(r, rc, job_type, tenant, method, uri, body):
    assert r.status == 202, r
    assert r.headers["content-type"] == "application/json", r
    job_id = r.json["job_id"]
    assert HEX32.fullmatch(job_id), r
    assert r.json == {"job_id": job_id, "status": "queued"}, r
    assert r.headers["content-location"] == "/jobs/" + job_id, r
    h = job(rc, job_id)
    assert h[b"type"] == job_type.encode()
    assert h[b"tenant"] == tenant.encode()
    assert h[b"method"] == method.encode()
    assert h[b"uri"] == uri.encode()
    assert h[b"body"] == body
    assert h[b"subject"] == b"alice"
    return job_id


# --------------------------------------------------------------------------
# the document itself

def test_readme_blocks_are_the_ones_rendered():
    blocks = routing_blocks()
    # the shared part, then one block per idiom, each with a server part
    assert len(blocks) == 8
    assert blocks[0][1] == ""
    assert all(server.strip() for _, server in blocks[1:])
    fake = {n: _Addr(10000 + i) for i, n in enumerate(UPSTREAMS)}
    http, server = render(fake, "/tmp/w.sock", "/tmp/k.json")
    # nothing differs from the README but what render() says it replaces
    assert server == "".join(s for _, s in blocks)
    back = (http.replace("unix:/tmp/w.sock", WORKER_SOCKET)
            .replace("/tmp/k.json", KEYS_FILE))
    assert _strip_addresses(back) == \
        _strip_addresses("".join(h for h, _ in blocks))


class _Addr:
    def __init__(self, port):
        self.address = "127.0.0.1:%d" % port


def _strip_addresses(text):
    return re.sub(r"server [0-9.]+:[0-9]+;", "server ADDR;", text)


# --------------------------------------------------------------------------
# by path

def test_path_prefix_and_regex_locations(c, backends):
    for path, backend in (
            ("/clients/42", "clients_app"),
            ("/clients/42/documentsx", "clients_app"),
            ("/clients/42/documents", "documents_app"),
            ("/clients/42/documents/7", "documents_app"),
            # the first regex in the file wins: the narrower one
            ("/clients/42/documents/statement.pdf", "documents_store"),
            ("/clients/42/statement.pdf", "documents_store"),
            ("/clients/42/documents/statement.pdf/meta", "documents_app"),
            # ^~: no regex takes over
            ("/clients/archive/2019/q4.pdf", "clients_app"),
            ("/clients/archive/42/documents", "clients_app")):
        answered_by(c.get(path), backend, "GET", path)


# --------------------------------------------------------------------------
# by method

def test_reads_to_the_replica_writes_to_the_primary(c):
    answered_by(c.get("/holdings/7?as_of=2026-01-31"), "holdings_replica",
                "GET", "/holdings/7?as_of=2026-01-31")
    answered_by(c.get("/holdings/7", method="HEAD"), "holdings_replica",
                "HEAD", "/holdings/7")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        body = '{"qty": 5}' if method != "DELETE" else ""
        r = send(c, method, "/holdings/7", body=body.encode() or None)
        answered_by(r, "holdings_primary", method, "/holdings/7", body)


# --------------------------------------------------------------------------
# by header

def test_header_selects_the_region(c):
    for headers, backend in (({}, "portfolios_us"),
                             ({"X-Region": "eu"}, "portfolios_eu"),
                             ({"X-Region": "EU"}, "portfolios_eu"),
                             ({"X-Region": "us"}, "portfolios_us"),
                             ({"X-Region": "eu-west"}, "portfolios_us"),
                             ({"X-Region": ""}, "portfolios_us")):
        r = c.get("/portfolios/p-1", headers=headers)
        answered_by(r, backend, "GET", "/portfolios/p-1")


# --------------------------------------------------------------------------
# by claim

def test_claim_selects_the_upstream(c, keys):
    premium = token(keys, tier="premium")
    answered_by(c.get("/advice/plan/3", token=premium), "advice_premium",
                "GET", "/advice/plan/3")
    for t in (token(keys, tier="standard"), token(keys, tier="Premium-x"),
              token(keys)):
        answered_by(c.get("/advice/plan/3", token=t), "advice_standard",
                    "GET", "/advice/plan/3")


def test_no_verified_token_reaches_neither_upstream(c, keys, backends):
    before = hits(backends)
    r = c.get("/advice/plan/3")
    assert r.status == 401, r
    assert r.json["error"] == "missing_token", r
    forged = vt.mint(keys.rsa2, "RS256", vt.claims(tier="premium"),
                     headers={"kid": KID})
    r = c.get("/advice/plan/3", token=forged)
    assert r.status == 401, r
    assert r.json["error"] == "invalid_token", r
    expired = token(keys, tier="premium", exp=vt.now() - 60)
    r = c.get("/advice/plan/3", token=expired)
    assert r.status == 401, r
    assert r.json["error"] == "invalid_token", r
    # and a header claiming the tier does nothing
    r = c.get("/advice/plan/3", headers={"X-Tier": "premium"})
    assert r.status == 401, r
    assert hits(backends) == before


# --------------------------------------------------------------------------
# API versions

def test_version_in_the_path(c):
    answered_by(c.get("/api/v1/accounts/7?fields=all"), "api_v1", "GET",
                "/accounts/7?fields=all")
    answered_by(c.get("/api/v2/accounts/7?fields=all"), "api_v2", "GET",
                "/accounts/7?fields=all")
    # the path's version wins over the header
    answered_by(c.get("/api/v1/accounts/7",
                      headers={"Accept-Version": "v2"}),
                "api_v1", "GET", "/accounts/7")
    r = send(c, "POST", "/api/v1/accounts", body=b'{"name": "x"}')
    answered_by(r, "api_v1", "POST", "/accounts", '{"name": "x"}')


def test_version_from_accept_version(c):
    for value, backend in ((None, "api_v2"), ("1", "api_v1"),
                           ("v1", "api_v1"), ("V1", "api_v1"),
                           ("2", "api_v2"), ("v2", "api_v2")):
        headers = {} if value is None else {"Accept-Version": value}
        r = c.get("/api/accounts/7?fields=all", headers=headers)
        answered_by(r, backend, "GET", "/accounts/7?fields=all")
    r = send(c, "PUT", "/api/accounts/7", body=b'{"name": "y"}',
             headers={"Accept-Version": "1"})
    answered_by(r, "api_v1", "PUT", "/accounts/7", '{"name": "y"}')


def test_unknown_version_is_a_json_400(c, backends):
    before = hits(backends)
    for value in ("3", "v3", "1.0", "latest", "v1, v2"):
        r = c.get("/api/accounts/7", headers={"Accept-Version": value})
        assert_version_error(r, VERSION_ERROR_HEADER)
    # JSON whatever the URI's extension
    r = c.get("/api/index.html", headers={"Accept-Version": "9"})
    assert_version_error(r, VERSION_ERROR_HEADER)
    for path in ("/api/v3/accounts/7", "/api/v0/", "/api/v10/index.html"):
        assert_version_error(c.get(path), VERSION_ERROR_PATH)
    r = send(c, "POST", "/api/v3/accounts", body=b"{}")
    assert_version_error(r, VERSION_ERROR_PATH)
    assert hits(backends) == before


# --------------------------------------------------------------------------
# to the worker or to an upstream

ASYNC = {"Prefer": "respond-async", "Content-Type": "application/json"}


def test_async_writes_become_jobs(c, keys, rc, backends):
    t = token(keys, tenant="firm-9")
    before = hits(backends)
    r = send(c, "POST", "/orders/new?src=app", body=b'{"qty": 3}', tok=t,
             headers=ASYNC)
    assert_queued(r, rc, "orders.submit", "firm-9", "POST",
                  "/orders/new?src=app", b'{"qty": 3}')
    r = send(c, "PATCH", "/orders/5", body=b'{"qty": 4}', tok=t,
             headers={"Prefer": "return=minimal, respond-async"})
    assert_queued(r, rc, "orders.submit", "firm-9", "PATCH", "/orders/5",
                  b'{"qty": 4}')
    assert hits(backends) == before
    assert rc.xlen(STREAM) == 2


def test_everything_else_is_proxied(c, keys, rc):
    t = token(keys, tenant="firm-9")
    answered_by(c.get("/orders/5", token=t), "orders_app", "GET",
                "/orders/5")
    # a read asking for async is still a read
    answered_by(c.get("/orders/5", token=t, headers=ASYNC), "orders_app",
                "GET", "/orders/5")
    r = send(c, "POST", "/orders/new", body=b'{"qty": 3}', tok=t)
    answered_by(r, "orders_app", "POST", "/orders/new", '{"qty": 3}')
    r = send(c, "DELETE", "/orders/5", tok=t, headers=ASYNC)
    answered_by(r, "orders_app", "DELETE", "/orders/5")
    r = send(c, "POST", "/orders/new", body=b"{}", tok=t,
             headers={"Prefer": "return=representation"})
    answered_by(r, "orders_app", "POST", "/orders/new", "{}")
    assert rc.xlen(STREAM) == 0


def test_orders_need_a_token_either_way(c, keys, rc, backends):
    before = hits(backends)
    for headers in (ASYNC, {}):
        r = send(c, "POST", "/orders/new", body=b"{}", headers=headers)
        assert r.status == 401, r
        assert r.json["error"] == "missing_token", r
    r = send(c, "POST", "/orders/new", body=b"{}", headers=ASYNC,
             tok=vt.mint(keys.rsa2, "RS256", vt.claims(tenant="firm-9"),
                         headers={"kid": KID}))
    assert r.status == 401, r
    assert r.json["error"] == "invalid_token", r
    # verified, but no tenant claim: no job
    r = send(c, "POST", "/orders/new", body=b"{}", headers=ASYNC,
             tok=token(keys))
    assert r.status == 403, r
    assert r.json["error"] == "forbidden", r
    assert hits(backends) == before
    assert rc.xlen(STREAM) == 0


def test_claim_chooses_the_job_type(c, keys, rc, backends):
    before = hits(backends)
    body = b'{"email": "a@example.com"}'
    for claims, job_type in (({"tier": "premium"}, "crm.contact.priority"),
                             ({"tier": "standard"}, "crm.contact"),
                             ({}, "crm.contact")):
        r = send(c, "POST", "/integrations/contacts", body=body,
                 tok=token(keys, tenant="firm-9", **claims),
                 headers={"Content-Type": "application/json"})
        assert_queued(r, rc, job_type, "firm-9", "POST",
                      "/integrations/contacts", body)
    assert rc.xlen(STREAM) == 3

    r = send(c, "POST", "/integrations/contacts", body=body)
    assert r.status == 401, r
    r = send(c, "POST", "/integrations/contacts", body=body,
             tok=token(keys, tier="premium"))
    assert r.status == 403, r
    assert r.json["error"] == "forbidden", r
    # the named locations dispatch writes only
    r = c.get("/integrations/contacts",
              token=token(keys, tenant="firm-9", tier="premium"))
    assert r.status == 405, r
    assert r.headers["allow"] == "POST, PUT, PATCH", r
    assert rc.xlen(STREAM) == 3
    assert hits(backends) == before


# --------------------------------------------------------------------------
# the traps the README warns about, shown to be real (this configuration is
# the test's own, not the README's)

@pytest.mark.log_allow(r"\[error\] .*no resolver defined to resolve "
                       r"portfolios_mars")
def test_the_traps_are_real(module_available, nginx_factory, backends,
                            client_for, keys):
    prem, std = backends["advice_premium"], backends["advice_standard"]
    http = f"""
    upstream trap_premium  {{ server {prem.address}; }}
    upstream trap_standard {{ server {std.address}; }}
    map $vantage_jwt_claim_tier $trap_sticky {{
        premium trap_premium;
        default trap_standard;
    }}
    map $vantage_jwt_claim_tier $trap_volatile {{
        volatile;
        premium trap_premium;
        default trap_standard;
    }}
    map $http_x_region $trap_region {{
        mars    portfolios_mars;
        default trap_standard;
    }}
    vantage_jwt_keys @PREFIX@/jwks.json;
"""
    server = """
        location /sticky/ {
            vantage_jwt on;
            if ($trap_sticky) { }
            proxy_pass http://$trap_sticky;
        }
        location /volatile/ {
            vantage_jwt on;
            if ($trap_volatile) { }
            proxy_pass http://$trap_volatile;
        }
        location /region/ {
            proxy_pass http://$trap_region;
        }
"""
    n = nginx_factory(http=http, server=server, start=False)
    vh.write_file(os.path.join(n.prefix, "jwks.json"), json.dumps(
        {"keys": [vt.jwk(keys.rsa, kid=KID, alg="RS256")]}))
    n.start()
    c = client_for(n)
    premium = token(keys, tier="premium")
    # a map computed in the rewrite phase saw no claim, and kept that
    answered_by(c.get("/sticky/x", token=premium), "advice_standard", "GET",
                "/sticky/x")
    answered_by(c.get("/volatile/x", token=premium), "advice_premium",
                "GET", "/volatile/x")
    # a value that names no upstream block is a host name to resolve
    assert c.get("/region/x", headers={"X-Region": "mars"}).status == 502
    answered_by(c.get("/region/x"), "advice_standard", "GET", "/region/x")
