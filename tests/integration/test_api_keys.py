"""test_api_keys.py -- API keys: vantage_api_keys, vantage_api_key_from,
vantage_auth, scopes through vantage_jwt_require, variables, reload of the
key file without an nginx reload, nginx -t errors, rate limits by key id.

Keys are made by the real vantagectl; their hashes in the file are checked
against Python's hashlib, and the entries vantagectl refuses to make (an
expired key) are written here with hashlib.  Every key sent is remembered
by the client, so the log guard fails a test whose key reached error.log.
Each test runs over HTTP/1.1 and over HTTP/2 with TLS.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import time

import pytest

import vantage_harness as vh
from vantage_harness import RESPONDER_SERVER, header_values, respond
from vantage_tokens import claims, mint


CTL = os.environ.get("VANTAGECTL", os.path.join(vh.REPO, "build",
                                                "vantagectl"))
KEY_RE = re.compile(r"^vk_([A-Za-z0-9.-]+)_([A-Za-z0-9_-]{43})$")


# --------------------------------------------------------------------------
# keys

def ctl(*args, check=True):
    if not os.access(CTL, os.X_OK):
        pytest.skip("vantagectl not built: %s (run make ctl)" % CTL)
    env = {k: v for k, v in os.environ.items() if k != "VANTAGE_REDIS"}
    # no Redis is listening on this address: the commands must not need it
    env["VANTAGE_REDIS"] = "127.0.0.1:1"
    p = subprocess.run([CTL] + list(args), capture_output=True, text=True,
                       timeout=vh.timeout(10), env=env)
    if check:
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


def create(path, key_id, tenant, *scopes, expires=None):
    """A key made by vantagectl; its hash in the file checked here."""
    args = ["apikey", "create", "--file", path, "--id", key_id,
            "--tenant", tenant]
    for s in scopes:
        args += ["--scope", s]
    if expires:
        args += ["--expires", expires]
    p = ctl(*args)
    key = p.stdout.strip()
    m = KEY_RE.match(key)
    assert m and m.group(1) == key_id, p.stdout
    secret = base64.urlsafe_b64decode(m.group(2) + "=")
    assert len(secret) == 32
    # the key is printed, never written: the file has its hash alone
    with open(path) as f:
        text = f.read()
    assert key not in text and m.group(2) not in text
    entry = [e for e in json.loads(text)["keys"] if e["id"] == key_id][0]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["tenant"] == tenant and entry["scopes"] == list(scopes)
    return key


def add_entry(path, key_id, tenant, **fields):
    """An entry vantagectl would not write (an expired key): by hand."""
    key = "vk_%s_%s" % (key_id, base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode().rstrip("="))
    with open(path) as f:
        doc = json.load(f)
    doc["keys"].append(dict(id=key_id, tenant=tenant, sha256=hashlib.sha256(
        key.encode()).hexdigest(), **fields))
    vh.write_file(path, json.dumps(doc), atomic=True)
    return key


def fake_key(key_id="a1"):
    """The shape of a real key, known to no file."""
    return "vk_%s_%s" % (key_id, base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode().rstrip("="))


# --------------------------------------------------------------------------
# the responses

def www(realm="vantage", error=None, reason=None, schemes=("ApiKey",),
        failed="ApiKey"):
    out = []
    for s in schemes:
        v = '%s realm="%s"' % (s, realm)
        if error and s == failed:
            v += ', error="%s", error_description="%s"' % (
                error, reason.replace('"', "'"))
        out.append(v)
    return out


def assert_refused(r, status, error, reason, **kw):
    assert (r.status, r.json) == (status, {"error": error,
                                           "error_description": reason}), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("WWW-Authenticate") == www(
        error=error, reason=reason, **kw), r


def assert_missing(r, reason="no API key in the request", **kw):
    assert (r.status, r.json) == (401, {"error": "missing_token",
                                        "error_description": reason}), r
    assert r.headers.get_list("WWW-Authenticate") == www(**kw), r


def assert_ok(r, body):
    assert (r.status, r.body) == (200, body), r
    assert "WWW-Authenticate" not in r.headers, r


# --------------------------------------------------------------------------
# one nginx for most tests

@pytest.fixture(scope="module")
def akeys(base_dir):
    d = vh.make_dir(os.path.join(base_dir, "apikeys"))
    path = os.path.join(d, "keys.json")
    k = {
        "a1": create(path, "a1", "acme", "accounts:read", "accounts:write"),
        # a second key of the tenant: rotation
        "a2": create(path, "a2", "acme", "accounts:read",
                     expires="2099-12-31T00:00:00Z"),
        "b1": create(path, "b1", "globex"),
        "d1": create(path, "d1", "acme", "accounts:read"),
    }
    ctl("apikey", "disable", "--file", path, "--id", "d1")
    k["e1"] = add_entry(path, "e1", "acme", scopes=["accounts:read"],
                        expires="2020-01-01T00:00:00Z")
    k["e2"] = add_entry(path, "e2", "acme", expires=int(time.time()) - 5)
    k["path"] = path
    return k


BODY = "ok $vantage_api_key_id $vantage_api_key_tenant [$vantage_api_key_scopes]"


def loc(path, extra="", body=BODY, keys="@KEYS@"):
    return f"""
        location {path} {{
            vantage_api_key on;
            vantage_api_keys {keys};
            {extra}
            {respond(body)}
        }}"""


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, akeys, keys, backend):
    hs = keys.path("hs.secret")
    locations = [
        loc("/k/"),
        loc("/scope/", "vantage_jwt_require scope accounts:write;"),
        loc("/tenant/", "vantage_jwt_require tenant acme;"),
        loc("/issuer/", "vantage_jwt_require iss https://idp.example.com/;"),
        loc("/roles/", "vantage_jwt_require roles admin;"),
        loc("/query/", "vantage_api_key_from query=api_key;"),
        loc("/two/", "vantage_api_key_from header=X-Key query=key;"),
        loc("/realm/", 'vantage_jwt_realm "partners";'),
        f"""
        location /auth/ {{
            vantage_auth api_key;
            vantage_api_keys @KEYS@;
            {respond(BODY)}
        }}
        location /proxy/ {{
            vantage_auth api_key;
            vantage_api_keys @KEYS@;
            proxy_set_header X-Tenant $vantage_api_key_tenant;
            proxy_set_header X-Key-Id $vantage_api_key_id;
            proxy_pass http://{backend.address};
        }}
        location /any/ {{
            vantage_auth any;
            vantage_jwt_keys {hs};
            vantage_api_keys @KEYS@;
            {respond("sub=$vantage_jwt_claim_sub key=$vantage_api_key_id")}
        }}
        location /any-scope/ {{
            vantage_auth any;
            vantage_jwt_keys {hs};
            vantage_api_keys @KEYS@;
            vantage_jwt_require scope accounts:write;
            {respond("sub=$vantage_jwt_claim_sub key=$vantage_api_key_id")}
        }}
        location /jwt-only/ {{
            vantage_auth jwt;
            vantage_jwt_keys {hs};
            vantage_api_keys @KEYS@;
            {respond("sub=$vantage_jwt_claim_sub")}
        }}
        location /claim-header/ {{
            vantage_auth any;
            vantage_jwt_keys {hs};
            vantage_api_keys @KEYS@;
            vantage_jwt_claim_header sub X-Advisor-Id;
            proxy_pass http://{backend.address};
        }}
        location /open/ {{
            {respond("open [$vantage_api_key_id]")}
        }}
        """,
    ]
    return module_nginx_factory(
        name="apikeys", http=RESPONDER_SERVER,
        server="\n".join(locations).replace("@KEYS@", akeys["path"]))


def send(client, path, key, header="X-Api-Key", **kw):
    client.remember(key)
    headers = dict(kw.pop("headers", {}))
    headers[header] = key
    return client.get(path, headers=headers, **kw)


# --------------------------------------------------------------------------
# accepted, refused

def test_valid_key(client, akeys):
    assert_ok(send(client, "/k/x", akeys["a1"]),
              "ok a1 acme [accounts:read accounts:write]")
    assert_ok(send(client, "/k/x", akeys["b1"]), "ok b1 globex []")


def test_two_keys_of_one_tenant_both_valid(client, akeys):
    assert_ok(send(client, "/k/x", akeys["a1"]),
              "ok a1 acme [accounts:read accounts:write]")
    assert_ok(send(client, "/k/x", akeys["a2"]),
              "ok a2 acme [accounts:read]")


def test_missing_key(client):
    assert_missing(client.get("/k/x"))
    assert_missing(client.get("/k/x", headers={"X-Api-Key": ""}))
    # a bearer token is not an API key
    assert_missing(client.get("/k/x", token=fake_key()))


def test_wrong_key(client, akeys, server):
    mark = server.log_size()
    for key in (fake_key(), fake_key("zz"), akeys["a1"][:-1],
                akeys["a1"] + "A", akeys["a1"].upper(), "x" * 16,
                "k" * 1025):
        r = send(client, "/k/x", key)
        assert_refused(r, 401, "invalid_token", "invalid API key")
    log = server.log_since(mark)
    assert log.count("vantage api key: key refused (invalid_token): "
                     '"invalid API key", client: 127.0.0.1, uri: "/k/x"') \
        == 7, log


def test_expired_key(client, akeys, server):
    mark = server.log_size()
    for k in ("e1", "e2"):
        r = send(client, "/k/x", akeys[k])
        assert_refused(r, 401, "invalid_token", "the API key has expired")
    assert 'vantage api key: key "e1" refused (invalid_token): "the API ' \
        'key has expired"' in server.log_since(mark)


def test_disabled_key(client, akeys):
    assert_refused(send(client, "/k/x", akeys["d1"]), 401, "invalid_token",
                   "the API key is disabled")


def test_realm(client, akeys):
    assert_refused(send(client, "/realm/x", fake_key()), 401,
                   "invalid_token", "invalid API key", realm="partners")
    assert_missing(client.get("/realm/x"), realm="partners")


# --------------------------------------------------------------------------
# vantage_jwt_require applies to the key

def test_scope_required(client, akeys):
    assert_ok(send(client, "/scope/x", akeys["a1"]),
              "ok a1 acme [accounts:read accounts:write]")
    for k in ("a2", "b1"):
        assert_refused(send(client, "/scope/x", akeys[k]), 403,
                       "insufficient_scope", 'claim "scope" not accepted')


def test_tenant_required(client, akeys):
    assert_ok(send(client, "/tenant/x", akeys["a2"]),
              "ok a2 acme [accounts:read]")
    assert_refused(send(client, "/tenant/x", akeys["b1"]), 403,
                   "insufficient_scope", 'claim "tenant" not accepted')


def test_issuer_does_not_bind_a_key(client, akeys):
    assert_ok(send(client, "/issuer/x", akeys["b1"]), "ok b1 globex []")


def test_claim_a_key_lacks(client, akeys):
    assert_refused(send(client, "/roles/x", akeys["a1"]), 403,
                   "insufficient_scope", 'claim "roles" not accepted')


def test_expiry_checked_before_scope(client, akeys):
    assert_refused(send(client, "/scope/x", akeys["e1"]), 401,
                   "invalid_token", "the API key has expired")


# --------------------------------------------------------------------------
# where the key comes from

def test_key_from_query(client, akeys):
    client.remember(akeys["a1"])
    assert_ok(client.get("/query/x", params={"api_key": akeys["a1"]}),
              "ok a1 acme [accounts:read accounts:write]")
    # percent-encoded as a client library may send it
    enc = akeys["b1"].replace("_", "%5F").replace("-", "%2D")
    assert_ok(client.get("/query/x?api_key=" + enc), "ok b1 globex []")
    # only the query argument is looked at here
    assert_missing(send(client, "/query/x", akeys["a1"]))
    assert_refused(client.get("/query/x", params={"api_key": fake_key()}),
                   401, "invalid_token", "invalid API key")


def test_key_from_two_sources_in_order(client, akeys):
    assert_ok(send(client, "/two/x", akeys["a1"], header="X-Key"),
              "ok a1 acme [accounts:read accounts:write]")
    client.remember(akeys["b1"])
    assert_ok(client.get("/two/x", params={"key": akeys["b1"]}),
              "ok b1 globex []")
    # the first source present decides
    r = send(client, "/two/x", akeys["b1"], header="X-Key",
             params={"key": fake_key()})
    assert_ok(r, "ok b1 globex []")
    r = send(client, "/two/x", fake_key(), header="X-Key",
             params={"key": akeys["b1"]})
    assert_refused(r, 401, "invalid_token", "invalid API key")
    assert_missing(send(client, "/two/x", akeys["a1"]))


def test_vantage_auth_api_key(client, akeys):
    assert_ok(send(client, "/auth/x", akeys["a2"]),
              "ok a2 acme [accounts:read]")
    assert_missing(client.get("/auth/x"))


# --------------------------------------------------------------------------
# what the upstream sees

def test_tenant_and_id_forwarded_key_not(client, akeys):
    r = send(client, "/proxy/x", akeys["a1"],
             headers={"X-Api-Key-Other": "kept"})
    assert r.status == 200, r
    echo = json.loads(r.body)
    assert header_values(echo, "x-tenant") == ["acme"]
    assert header_values(echo, "x-key-id") == ["a1"]
    assert header_values(echo, "x-api-key") == []
    assert header_values(echo, "x-api-key-other") == ["kept"]
    assert akeys["a1"] not in r.body


def test_variables_empty_without_a_key(client):
    assert_ok(client.get("/open/x"), "open []")


# --------------------------------------------------------------------------
# vantage_auth any

def test_any_accepts_a_jwt_or_a_key(client, akeys, keys):
    assert_ok(client.get("/any/x", token=mint(keys.hs, "HS256",
                                              claims(sub="bob"))),
              "sub=bob key=")
    assert_ok(send(client, "/any/x", akeys["a1"]), "sub= key=a1")


def test_any_missing_names_both_schemes(client):
    assert_missing(client.get("/any/x"),
                   reason="no bearer token or API key in the request",
                   schemes=("Bearer", "ApiKey"))


def test_any_refusal_names_the_failed_scheme(client, akeys, keys):
    r = client.get("/any/x", token=mint(keys.hs_other, "HS256"))
    assert_refused(r, 401, "invalid_token", "signature verification failed",
                   schemes=("Bearer", "ApiKey"), failed="Bearer")
    r = send(client, "/any/x", akeys["e1"])
    assert_refused(r, 401, "invalid_token", "the API key has expired",
                   schemes=("Bearer", "ApiKey"), failed="ApiKey")
    # a key sent decides, whatever token comes with it
    r = send(client, "/any/x", fake_key(),
             headers={"Authorization": "Bearer " + mint(keys.hs, "HS256")})
    assert_refused(r, 401, "invalid_token", "invalid API key",
                   schemes=("Bearer", "ApiKey"), failed="ApiKey")


def test_any_one_require_for_both(client, akeys, keys):
    ok = mint(keys.hs, "HS256", claims(sub="bob", scope="accounts:write"))
    assert_ok(client.get("/any-scope/x", token=ok), "sub=bob key=")
    assert_ok(send(client, "/any-scope/x", akeys["a1"]), "sub= key=a1")
    r = client.get("/any-scope/x", token=mint(keys.hs, "HS256"))
    assert_refused(r, 403, "insufficient_scope", 'claim "scope" not accepted',
                   schemes=("Bearer", "ApiKey"), failed="Bearer")
    r = send(client, "/any-scope/x", akeys["a2"])
    assert_refused(r, 403, "insufficient_scope", 'claim "scope" not accepted',
                   schemes=("Bearer", "ApiKey"), failed="ApiKey")


def test_jwt_only_ignores_keys(client, akeys):
    r = send(client, "/jwt-only/x", akeys["a1"])
    assert (r.status, r.headers.get_list("WWW-Authenticate")) == \
        (401, ['Bearer realm="vantage"']), r


def test_client_claim_header_removed_for_a_key(client, akeys):
    r = send(client, "/claim-header/x", akeys["a1"],
             headers={"X-Advisor-Id": "forged"})
    assert r.status == 200, r
    assert header_values(json.loads(r.body), "x-advisor-id") == []


# --------------------------------------------------------------------------
# the file changes: every worker process follows, no nginx reload

def _reloaded_by(n, mark, path):
    pids = set(re.findall(r"\[notice\] (\d+)#\d+: vantage api key: key file "
                          r'"%s" reloaded' % re.escape(path),
                          n.log_since(mark)))
    return {int(p) for p in pids}


def test_revoke_and_rotate_without_reload(module_available, nginx_factory,
                                          client_for, base_dir):
    d = vh.make_dir(os.path.join(base_dir, "apikeys-reload-%s"
                                 % secrets.token_hex(4)))
    path = os.path.join(d, "keys.json")
    old = create(path, "old", "acme", "accounts:read")
    new = create(path, "new", "acme", "accounts:read")
    n = nginx_factory(name="apikeys-reload", worker_processes=2,
                      http=RESPONDER_SERVER
                      + "    vantage_jwt_keys_check_interval 100ms;\n",
                      server=loc("/k/", keys=path))
    c = client_for(n)
    workers = set(n.workers())
    assert len(workers) == 2
    for key, kid in ((old, "old"), (new, "new")):
        for _ in range(4):
            assert_ok(send(c, "/k/x", key, new_connection=True),
                      "ok %s acme [accounts:read]" % kid)

    mark = n.log_size()
    ctl("apikey", "revoke", "--file", path, "--id", "old")
    vh.wait_for(lambda: _reloaded_by(n, mark, path) == workers, 5,
                what="both workers to reload the key file")
    assert "reloaded, 1 keys" in n.log_since(mark)
    # new connections spread over both workers
    for _ in range(8):
        assert_refused(send(c, "/k/x", old, new_connection=True), 401,
                       "invalid_token", "invalid API key")
        assert_ok(send(c, "/k/x", new, new_connection=True),
                  "ok new acme [accounts:read]")
    assert set(n.workers()) == workers

    # a file nginx cannot load is logged, and the keys in force stay
    mark = n.log_size()
    vh.write_file(path, '{"keys": [{"id": "new"}]}', atomic=True)
    vh.wait_for(lambda: n.log_since(mark).count("not reloaded") >= 2, 5,
                what="both workers to refuse the bad file")
    log = n.log_since(mark)
    assert '[error]' in log and 'entry 1 (id "new"): "sha256" must be 64 ' \
        'hex digits; the keys loaded before stay in force' in log, log
    assert_ok(send(c, "/k/x", new, new_connection=True),
              "ok new acme [accounts:read]")

    # fixed: a third key works, and the second goes on working
    os.unlink(path)
    third = create(path, "third", "acme")
    mark = n.log_size()
    vh.wait_for(lambda: _reloaded_by(n, mark, path) == workers, 5,
                what="both workers to reload the fixed file")
    for _ in range(4):
        assert_ok(send(c, "/k/x", third, new_connection=True),
                  "ok third acme []")
        assert_refused(send(c, "/k/x", new, new_connection=True), 401,
                       "invalid_token", "invalid API key")


# --------------------------------------------------------------------------
# a limit keyed by the key id

def test_rate_limit_by_key_id(module_available, nginx_factory, client_for,
                              redis_server, akeys):
    n = nginx_factory(
        name="apikeys-rl", http=RESPONDER_SERVER
        + "    vantage_redis %s timeout=%dms;\n"
        % (redis_server.address, int(250 * vh.scale())),
        server=loc("/rl/", "vantage_rate_limit $vantage_api_key_id "
                   "rate=1r/m burst=2;", body="ok $vantage_api_key_id",
                   keys=akeys["path"]))
    c = client_for(n)
    statuses = [send(c, "/rl/x", akeys["a1"]).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    # the other key of the tenant has a bucket of its own
    assert_ok(send(c, "/rl/x", akeys["a2"]), "ok a2")
    # a refused key is never charged
    for _ in range(3):
        assert send(c, "/rl/x", fake_key()).status == 401
    # the bucket's name hashes the key id, never the key
    keys = sorted(k.decode() for k in redis_server.client().keys("*"))
    assert keys == sorted("vantage:rl:{%s}:default:60000000:2"
                          % hashlib.sha256(i.encode()).hexdigest()[:32]
                          for i in ("a1", "a2")), keys


# --------------------------------------------------------------------------
# nginx -t

@pytest.fixture
def check(module_available, nginx_factory):
    def run(server="", http=""):
        n = nginx_factory(name="apikeys-t", start=False, http=http,
                          server=server)
        rc, out = n.test_config()
        assert not vh.problem_lines(out.replace("[emerg]", "")), out
        return rc, out
    return run


def test_valid_configuration(check, akeys):
    rc, out = check(server=f"""
        vantage_api_keys {akeys["path"]};
        vantage_api_key_from header=X-Key query=key;
        location / {{
            vantage_auth api_key;
            vantage_tenant $vantage_api_key_tenant;
            return 204;
        }}
        location /b/ {{
            vantage_api_key on;
            return 204;
        }}""")
    assert rc == 0, out


@pytest.mark.parametrize("doc, problem", [
    ("not json", "invalid JSON at line 1"),
    ('{"keys": {}}', 'not a JSON object with one member, "keys", an array'),
    ('{"keys": [{"id": "a", "sha256": "%s", "tenant": "t"}, '
     '{"id": "b", "sha256": "abc", "tenant": "t"}]}' % ("0" * 64),
     'entry 2 (id "b"): "sha256" must be 64 hex digits'),
    ('{"keys": [{"id": "a", "sha256": "%s", "tenant": "t", "expire": 1}]}'
     % ("0" * 64), 'entry 1 (id "a"): unknown member "expire"'),
    ('{"keys": [{"id": "a", "sha256": "%s", "tenant": "t"}, '
     '{"id": "a", "sha256": "%s", "tenant": "t"}]}' % ("0" * 64, "1" * 64),
     'entry 2: id "a" is also the id of entry 1'),
], ids=["json", "shape", "sha256", "unknown-member", "duplicate-id"])
def test_bad_key_file(check, base_dir, doc, problem):
    path = vh.write_file(os.path.join(base_dir, "bad-keys-%s.json"
                                      % secrets.token_hex(4)), doc)
    rc, out = check(server=loc("/", keys=path))
    vh.assert_one_emerg(rc, out, 'vantage_api_keys "%s": %s' % (path, problem))


@pytest.mark.parametrize("server, texts", [
    ("location / { vantage_api_key on; return 204; }",
     ['API key authentication is on but no "vantage_api_keys" applies']),
    ("location / { vantage_auth any; return 204; }",
     ['"vantage_auth any" but no authenticator is configured here']),
    ("location / { vantage_auth any; vantage_jwt on; vantage_api_keys @K@; "
     "return 204; }",
     ['"vantage_auth any" conflicts with "vantage_jwt", "vantage_api_key" '
      'or "vantage_auth" in the same block']),
    ("vantage_api_keys /nonexistent/keys.json;",
     ['vantage_api_keys "/nonexistent/keys.json": cannot open']),
    ("vantage_api_key_from cookie=k;",
     ['invalid parameter "cookie=k"']),
    ("vantage_api_key_from header=;", ['invalid name in "header="']),
    ("vantage_api_key_from header=Authorization;",
     ["the Authorization header carries bearer tokens"]),
    ("vantage_auth basic;", ['invalid value "basic"']),
    ("vantage_auth any jwt;", ['invalid value "any"']),
    ("vantage_jwt on; vantage_auth api_key;",
     ['"vantage_auth" directive conflicts with "vantage_jwt", '
      '"vantage_api_key" or another "vantage_auth" in the same block']),
    ("vantage_auth jwt; vantage_api_key on;",
     ['"vantage_api_key" directive is duplicate']),
], ids=["no-file", "any-without-sources", "any-and-jwt", "missing-file",
        "from-param", "from-empty", "from-authorization", "auth-value",
        "auth-any-jwt", "auth-after-jwt", "api-key-after-auth"])
def test_configuration_errors(check, akeys, server, texts):
    rc, out = check(server=server.replace("@K@", akeys["path"]))
    vh.assert_one_emerg(rc, out, *texts)
