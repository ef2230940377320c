"""test_transform.py -- JSON bodies rewritten and masked at the edge:
vantage_json_transform (request and response), vantage_mask and
vantage_transform_max_body, through the real nginx and the built module.

The upstream here is a small server of the test's own that answers with
exactly the bytes a test asks for: with a Content-Length, chunked in
several writes, gzip-compressed whatever the request asked for, in an
encoding nobody can decode, or cut short.  It records what nginx sent it,
so that a request transform is checked where it lands.  Every expected
body is computed here, in Python, from the input and the mapping's
meaning, not read back from the module.
"""

import gzip
import http.server
import json
import os
import re
import threading
import time
import zlib

import pytest

import vantage_harness as vh
from vantage_tokens import claims, mint


# five operations, the benchmark's too: rename, remove, type conversion,
# masking and an added constant
EDIT_MAP = {
    "name": "client-v1-to-v2",
    "from": "advisor.client.v1",
    "to": "advisor.client.v2",
    "mode": "edit",
    "fields": [
        {"rename": "/client/first_name", "to": "/client/firstName"},
        {"remove": "/internal"},
        {"to": "/client/balance", "from": "/client/balance",
         "type": "number"},
        {"to": "/client/ssn", "from": "/client/ssn", "mask": "last4"},
        {"to": "/api_version", "constant": "v2"},
    ],
}

# a projection: only what it names is kept
PROJECT_MAP = {
    "name": "contact-in",
    "from": "app.contact",
    "to": "crm.contact",
    "fields": [
        {"to": "Email", "from": "email", "required": True,
         "transform": ["trim", "lowercase"]},
        {"to": "LastName", "from": "last", "default": "[not provided]"},
        {"to": "Source", "constant": "edge"},
    ],
}

CLIENT = {
    "client": {"id": "c-17", "first_name": "Ana", "last_name": "Lima",
               "balance": "1250.75", "ssn": "123-45-6789",
               "tags": ["a", "b"]},
    "internal": {"shard": 3, "debug": True},
    "advisor": "Grace",
}

LOG_TF = r"\[error\] .*vantage transform: "


def edited(doc):
    """EDIT_MAP applied in Python, independently of the engine."""
    d = json.loads(json.dumps(doc))
    c = d["client"]
    if "first_name" in c:
        c["firstName"] = c.pop("first_name")
    d.pop("internal", None)
    if "balance" in c:
        c["balance"] = float(c["balance"]) if "." in c["balance"] \
            else int(c["balance"])
    if "ssn" in c:
        digits = sum(ch.isalnum() for ch in c["ssn"])
        out, seen = [], 0
        for ch in c["ssn"]:
            if ch.isalnum():
                seen += 1
                out.append(ch if digits >= 8 and seen > digits - 4 else "*")
            else:
                out.append(ch)
        c["ssn"] = "".join(out)
    d["api_version"] = "v2"
    return d


# --------------------------------------------------------------------------
# the upstream

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        up = self.server.owner
        up.seen.append({"method": self.command, "path": self.path,
                        "headers": {k.lower(): v
                                    for k, v in self.headers.items()},
                        "body": body})
        spec = up.routes.get(self.path.split("?")[0])
        if spec is None:
            spec = {"body": json.dumps({"echo": True}).encode()}
        status = spec.get("status", 200)
        data = spec["body"]
        mode = spec.get("mode", "length")
        ctype = spec.get("type", "application/json")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("ETag", '"abc"')
        if mode.startswith("gzip"):
            data = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
        elif mode == "deflate":
            data = zlib.compress(data)
            self.send_header("Content-Encoding", "deflate")
        elif mode == "br":
            self.send_header("Content-Encoding", "br")
        elif mode == "badgzip":
            data = gzip.compress(data)[:-12] + b"\0" * 12
            self.send_header("Content-Encoding", "gzip")
        if mode.endswith("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, len(data) // 5)
            for i in range(0, len(data), step):
                part = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = _serve

    def log_message(self, fmt, *args):
        pass


class Upstream:
    def __init__(self):
        self.routes = {}
        self.seen = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      _Handler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, path, body, **kw):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.routes[path] = dict(body=body, **kw)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream():
    u = Upstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def maps(base_dir):
    d = vh.make_dir(os.path.join(base_dir, "transform-maps"))
    out = {}
    for name, m in (("edit", EDIT_MAP), ("project", PROJECT_MAP)):
        out[name] = os.path.join(d, name + ".json")
        with open(out[name], "w") as f:
            json.dump(m, f)
    return out


@pytest.fixture(scope="module")
def server(module_nginx_factory, upstream, maps, keys, module_available):
    up = "http://127.0.0.1:%d" % upstream.port
    return module_nginx_factory(server=f"""
        location /edit/ {{
            vantage_json_transform response {maps['edit']};
            proxy_pass {up};
        }}
        location /small/ {{
            vantage_json_transform response {maps['edit']};
            vantage_transform_max_body 4k;
            proxy_pass {up};
        }}
        location /in/ {{
            vantage_json_transform request {maps['project']};
            vantage_transform_max_body 4k;
            proxy_pass {up};
        }}
        location /masked/ {{
            vantage_jwt on;
            vantage_jwt_keys {keys.path('hs.secret')};
            vantage_jwt_algorithms HS256;
            vantage_mask /client/ssn /accounts/*/number=last4 dob
                         scope=pii:read;
            proxy_pass {up};
        }}
        location /masked-pattern/ {{
            vantage_mask ssn account;
            proxy_pass {up};
        }}
        location /both/ {{
            vantage_json_transform response {maps['edit']};
            vantage_mask /client/last_name;
            proxy_pass {up};
        }}
""")


def no_compression(client_headers=None):
    return dict(client_headers or {})


# --------------------------------------------------------------------------
# responses

def test_response_edit_exact(client, upstream):
    upstream.route("/edit/client", CLIENT)
    r = client.get("/edit/client")
    assert r.status == 200, r
    assert r.json == edited(CLIENT)
    assert r.json["client"]["ssn"] == "***-**-6789"
    assert r.json["client"]["balance"] == 1250.75
    assert list(r.json) == ["client", "advisor", "api_version"]
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["content-type"] == "application/json"
    assert "etag" not in r.headers
    assert "content-encoding" not in r.headers


def test_response_numbers_keep_their_text(client, upstream):
    body = (b'{"client": {"first_name": "Ana", "balance": "1234.56"}, '
            b'"amount": 1234.56, "rate": 0.1, "units": 12, '
            b'"big": 9007199254740993, "tiny": 1e-7}')
    upstream.route("/edit/numbers", body)
    r = client.get("/edit/numbers")
    assert r.status == 200, r
    assert r.content == (b'{"client":{"balance":1234.56,"firstName":"Ana"},'
                         b'"amount":1234.56,"rate":0.1,"units":12,'
                         b'"big":9007199254740993,"tiny":1e-7,'
                         b'"api_version":"v2"}')


def test_response_chunked(client, upstream):
    upstream.route("/edit/chunked", CLIENT, mode="chunked")
    r = client.get("/edit/chunked")
    assert r.status == 200, r
    assert r.json == edited(CLIENT)
    assert r.headers["content-length"] == str(len(r.content))


def test_response_gzip_inflated(client, upstream):
    upstream.route("/edit/gz", CLIENT, mode="gzip")
    r = client.get("/edit/gz", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200, r
    assert "content-encoding" not in r.headers
    assert r.json == edited(CLIENT)
    # and the upstream was asked for an uncompressed body
    assert "accept-encoding" not in upstream.seen[-1]["headers"]


@pytest.mark.parametrize("mode", ["gzip-chunked", "deflate"])
def test_response_compressed_variants(client, upstream, mode):
    doc = dict(CLIENT, padding=["x" * 50] * 40)
    upstream.route("/edit/" + mode, doc, mode=mode)
    r = client.get("/edit/" + mode)
    assert r.status == 200, r
    assert "content-encoding" not in r.headers
    assert r.json == edited(doc)


@pytest.mark.log_allow(LOG_TF)
def test_response_unknown_encoding_is_502(client, upstream, server):
    upstream.route("/edit/br", CLIENT, mode="br")
    before = server.log_size()
    r = client.get("/edit/br")
    assert r.status == 502
    assert r.json == {
        "error": "bad_gateway",
        "error_description": "the upstream's response is compressed in a "
                             "way that could not be decoded"}
    assert "content-encoding" not in r.headers
    assert re.search(r'Content-Encoding "br", which cannot be decoded',
                     server.log_since(before))


@pytest.mark.log_allow(LOG_TF)
def test_response_corrupt_gzip_is_502(client, upstream):
    upstream.route("/edit/badgz", CLIENT, mode="badgzip")
    r = client.get("/edit/badgz")
    assert r.status == 502
    assert r.json["error"] == "bad_gateway"


@pytest.mark.log_allow(LOG_TF)
@pytest.mark.parametrize("mode", ["length", "chunked", "gzip"])
def test_response_size_cap(client, upstream, server, mode):
    big = dict(CLIENT, padding="y" * 5000)
    upstream.route("/small/big-" + mode, big, mode=mode)
    before = server.log_size()
    r = client.get("/small/big-" + mode)
    assert r.status == 502
    assert r.json == {
        "error": "bad_gateway",
        "error_description": "the upstream's response is larger than this "
                             "endpoint transforms"}
    assert "upstream response body is over vantage_transform_max_body " \
        "4096, answered 502" in server.log_since(before)
    # under the cap it goes through
    upstream.route("/small/ok-" + mode, CLIENT, mode=mode)
    r = client.get("/small/ok-" + mode)
    assert r.status == 200
    assert r.json == edited(CLIENT)


def test_response_invalid_json_is_502(client, upstream, server):
    upstream.route("/edit/broken", b'{"client": {"first_name": "Ana",')
    before = server.log_size()
    r = client.get("/edit/broken")
    assert r.status == 502
    assert r.json == {"error": "bad_gateway",
                      "error_description": "the upstream's response is not "
                                           "valid JSON"}
    assert re.search(r"\[info\] .*vantage transform: response body is not "
                     r"JSON at line 1, column \d+", server.log_since(before))


def test_response_empty_json_body_passes(client, upstream):
    upstream.route("/edit/empty", b"", status=201)
    r = client.get("/edit/empty")
    assert r.status == 201, r
    assert r.content == b""
    assert r.headers["content-length"] == "0"


def test_response_not_json_passes_untouched(client, upstream):
    upstream.route("/edit/text", b"plain text, not JSON",
                   type="text/plain")
    r = client.get("/edit/text")
    assert r.status == 200
    assert r.content == b"plain text, not JSON"
    assert r.headers["etag"] == '"abc"'


def test_response_error_status_not_mapped(client, upstream):
    err = {"error": "not_found", "internal": 1}
    upstream.route("/edit/missing", err, status=404)
    r = client.get("/edit/missing")
    assert r.status == 404
    assert r.json == err


def test_response_json_suffix_type(client, upstream):
    upstream.route("/edit/problem", CLIENT,
                   type="application/vnd.advisor+json; charset=utf-8")
    r = client.get("/edit/problem")
    assert r.status == 200
    assert json.loads(r.content) == edited(CLIENT)


def test_head_has_no_length(client, upstream):
    upstream.route("/edit/head", CLIENT)
    r = client.get("/edit/head", method="HEAD")
    assert r.status == 200
    assert r.content == b""
    assert "content-length" not in r.headers


# --------------------------------------------------------------------------
# requests

def test_request_projection_exact(client, upstream):
    r = client.request("POST", "/in/contacts",
                       content=json.dumps({"email": " Ana@Example.COM ",
                                           "last": "Lima", "ssn": "x"}),
                       headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    seen = upstream.seen[-1]
    expect = {"Email": "ana@example.com", "LastName": "Lima",
              "Source": "edge"}
    assert json.loads(seen["body"]) == expect
    assert seen["headers"]["content-length"] == str(len(seen["body"]))
    assert "transfer-encoding" not in seen["headers"]


def test_request_chunked_body(client, upstream, transport):
    if transport == "h2":
        pytest.skip("a chunked body is HTTP/1.1's")

    def parts():
        yield b'{"email": "b@'
        yield b'example.com"}'

    r = client.request("POST", "/in/chunked", content=parts(),
                       headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    seen = upstream.seen[-1]
    assert json.loads(seen["body"]) == {"Email": "b@example.com",
                                        "LastName": "[not provided]",
                                        "Source": "edge"}
    assert seen["headers"]["content-length"] == str(len(seen["body"]))


def test_request_invalid_json_is_400(client, upstream):
    n = len(upstream.seen)
    r = client.request("POST", "/in/contacts", content=b'{"email": ',
                       headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert r.json == {"error": "invalid_json",
                      "error_description": "the body is not valid JSON"}
    assert len(upstream.seen) == n


def test_request_refused_by_mapping_is_422(client, upstream, server):
    n = len(upstream.seen)
    before = server.log_size()
    r = client.request("POST", "/in/contacts",
                       content=json.dumps({"last": "Lima"}),
                       headers={"Content-Type": "application/json"})
    assert r.status == 422
    assert r.json == {"error": "transform_failed",
                      "error_description": "the body does not fit this "
                                           "endpoint's mapping"}
    assert len(upstream.seen) == n
    assert 'fields[0] (Email): required' in server.log_since(before)


def test_request_not_json_is_415(client, upstream):
    n = len(upstream.seen)
    r = client.request("POST", "/in/contacts", content=b"email=a",
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert r.status == 415
    assert r.json["error"] == "unsupported_media_type"
    assert len(upstream.seen) == n


def test_request_over_cap_is_413(client, upstream, transport):
    n = len(upstream.seen)
    body = json.dumps({"email": "a@b.c", "pad": "z" * 5000}).encode()
    r = client.request("POST", "/in/contacts", content=body,
                       headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert r.json["error"] == "payload_too_large"
    if transport == "http":
        def parts():
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000]
        r = client.request("POST", "/in/contacts", content=parts(),
                           headers={"Content-Type": "application/json"})
        assert r.status == 413
        assert r.json["error"] == "payload_too_large"
    assert len(upstream.seen) == n


def test_request_without_body_passes(client, upstream):
    r = client.get("/in/contacts")
    assert r.status == 200
    assert upstream.seen[-1]["method"] == "GET"
    assert upstream.seen[-1]["body"] == b""


# --------------------------------------------------------------------------
# masking

ACCOUNTS = {
    "client": {"name": "Ana", "ssn": "123-45-6789",
               "date_of_birth": "1980-01-02"},
    "accounts": [{"number": "000123456789", "type": "ira"},
                 {"number": "987654321012", "type": "brokerage"}],
    "note": "routing 021000021, ssn 987-65-4321",
}


def test_mask_without_scope(client, upstream, keys):
    upstream.route("/masked/a", ACCOUNTS)
    r = client.get("/masked/a", token=mint(keys.hs, "HS256"))
    assert r.status == 200, r
    assert r.json == {
        "client": {"name": "Ana", "ssn": "***-**-****",
                   "date_of_birth": "**********"},
        "accounts": [{"number": "********6789", "type": "ira"},
                     {"number": "********1012", "type": "brokerage"}],
        "note": "routing 021000021, ssn 987-65-4321",
    }


@pytest.mark.parametrize("claim", [
    {"scope": "accounts:read pii:read"},
    {"scp": ["pii:read"]},
])
def test_mask_lifted_by_scope(client, upstream, keys, claim):
    upstream.route("/masked/b", ACCOUNTS)
    r = client.get("/masked/b", token=mint(keys.hs, "HS256",
                                            claims(**claim)))
    assert r.status == 200, r
    assert r.json == ACCOUNTS


@pytest.mark.parametrize("claim", [
    {"scope": "pii:readonly"},
    {"scope": "pii"},
    {"scp": ["pii:read:x"]},
])
def test_mask_scope_exact_match(client, upstream, keys, claim):
    upstream.route("/masked/c", ACCOUNTS)
    r = client.get("/masked/c", token=mint(keys.hs, "HS256",
                                            claims(**claim)))
    assert r.json["client"]["ssn"] == "***-**-****"


def test_mask_error_bodies_too(client, upstream, keys):
    upstream.route("/masked/err", {"error": "conflict",
                                   "client": {"ssn": "123-45-6789"}},
                   status=409)
    r = client.get("/masked/err", token=mint(keys.hs, "HS256"))
    assert r.status == 409
    assert r.json == {"error": "conflict", "client": {"ssn": "***-**-****"}}


def test_mask_patterns_in_every_string(client, upstream):
    upstream.route("/masked-pattern/x", ACCOUNTS)
    r = client.get("/masked-pattern/x")
    assert r.status == 200
    assert r.json == {
        "client": {"name": "Ana", "ssn": "***-**-****",
                   "date_of_birth": "1980-01-02"},
        "accounts": [{"number": "********6789", "type": "ira"},
                     {"number": "********1012", "type": "brokerage"}],
        "note": "routing *****0021, ssn ***-**-****",
    }


def test_transform_then_mask(client, upstream):
    upstream.route("/both/x", CLIENT)
    r = client.get("/both/x")
    expect = edited(CLIENT)
    expect["client"]["last_name"] = "****"
    assert r.json == expect


# --------------------------------------------------------------------------
# configuration

@pytest.mark.parametrize("snippet,message", [
    ("vantage_json_transform sideways {edit};",
     '"vantage_json_transform": "sideways" is neither "request" nor '
     '"response"'),
    ("vantage_json_transform response /nonexistent/m.json;",
     '"vantage_json_transform": /nonexistent/m.json: '),
    ("vantage_json_transform response {bad};",
     '"vantage_json_transform": {bad}: unknown member "feilds"'),
    ("vantage_json_transform response {edit};\n"
     "vantage_json_transform response {edit};",
     '"vantage_json_transform": a response transform is already set here'),
    ("vantage_mask /a ssn2;",
     '"vantage_mask": "ssn2" is neither a JSON pointer ("/...") nor one of '
     'ssn, account, routing, dob, pii'),
    ("vantage_mask scope=pii:read;",
     '"vantage_mask" names nothing to mask'),
    ('vantage_mask /a "scope=a b";',
     '"vantage_mask": "scope=a b" is not a scope'),
    ("vantage_mask /a=sideways;",
     '"vantage_mask": vantage_mask: fields[0] (/a): unknown mask '
     '"sideways"'),
    ("vantage_transform_max_body 0;",
     '"vantage_transform_max_body" must be between 1 byte and 64m'),
])
def test_config_errors(nginx_factory, maps, base_dir, snippet, message):
    bad = os.path.join(base_dir, "transform-maps", "bad.json")
    with open(bad, "w") as f:
        json.dump({"name": "x", "from": "a", "to": "b", "feilds": []}, f)
    text = snippet.format(edit=maps["edit"], bad=bad)
    n = nginx_factory(server="location / { %s return 204; }" % text,
                      start=False)
    rc, out = n.test_config()
    assert rc == 1
    assert message.format(bad=bad) in out, out


# --------------------------------------------------------------------------
# a request transform before vantage_dispatch: the job holds the result

@pytest.fixture
def dispatch_gateway(nginx_factory, worker_factory, maps):
    # nginx's workers run as nobody: they must be able to connect
    worker_factory.socket_mode = 0o777
    w = worker_factory()
    return nginx_factory(
        http="vantage_worker unix:%s timeout=2s;" % w.socket_path,
        server=f"""
        location = /hooks/contacts {{
            vantage_tenant acme;
            vantage_json_transform request {maps['project']};
            vantage_dispatch http.orders;
        }}
""")


def test_request_transform_before_dispatch(dispatch_gateway, client_for, rc):
    c = client_for(dispatch_gateway)
    r = c.request("POST", "/hooks/contacts",
                  content=json.dumps({"email": "C@Example.com",
                                      "last": "Diaz", "ssn": "123-45-6789"}),
                  headers={"Content-Type": "application/json"})
    assert r.status == 202, r
    job = rc.hgetall(b"{vq}:job:" + r.json["job_id"].encode())
    assert json.loads(job[b"body"]) == {"Email": "c@example.com",
                                        "LastName": "Diaz",
                                        "Source": "edge"}

    # refused before any job is made
    n = rc.xlen(b"{vq}:jobs")
    r = c.request("POST", "/hooks/contacts", content=b"[1,",
                  headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert r.json["error"] == "invalid_json"
    assert rc.xlen(b"{vq}:jobs") == n
