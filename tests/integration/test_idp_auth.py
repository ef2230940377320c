"""test_idp_auth.py -- tokens checked against identity providers (issue 5).

nginx with the module, the real vantage-worker (a configuration file with
[idp] sections, a real redis-server behind it) and tests/fakes/idp.py as
the OpenID Connect provider over HTTPS, its certificate from the
harness's test CA, which the worker is given as ca_file.  nginx never
calls the provider: it sends FETCH to the worker naming the provider by
the URL of its directive, so every count below is taken at the provider.

What is shown:
  - key sets from discovery and from a jwks_url, fetched at start-up;
    a token's iss selects the source; $vantage_jwt_keys_age;
  - rotation with no valid token refused while the provider publishes a
    new key, signs with it, then retires the old one;
  - a flood of unknown kids costs at most one key-set fetch per refetch
    interval, with one worker process or two; requests that meet a new
    kid while its refetch runs wait for it;
  - a reload's new processes, and a worker that starts after nginx;
  - the provider down, answering 500 or garbage after the first load:
    the cached keys go on verifying, and nginx warns that they are stale;
  - a provider whose certificate is not trusted: no keys, 503;
  - the first fetch waited for (vantage_jwt_keys_wait), or 503;
  - introspection of opaque tokens (RFC 7662): claims to variables and
    headers, positive and negative caching, failures (503, or 401 with
    vantage_introspect_failure), its timeout, scope refusals, a past
    exp, the client's authentication as the provider saw it;
  - vantage_auth any with a JWT, an opaque token and an API key in one
    location; the challenges; $vantage_auth_scheme;
  - nginx -t errors of the new directives.

What the module answers is spelled once, in the constants below, so the
tests follow the module's wording from one place.
"""

import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import vantage_harness as vh
import worker_harness as wh
from vantage_harness import header_values
from vantage_tokens import claims, mint

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from idp import IdP, WELL_KNOWN                  # noqa: E402


# --------------------------------------------------------------------------
# what the module says (one place to follow its wording)

KEYS_NOT_YET = "the identity provider's keys are not available yet"
ISSUER_NOT_ACCEPTED = "the token's issuer is not accepted here"
UNKNOWN_KID = "unknown key id"
BAD_SIGNATURE = "signature verification failed"
NOT_ACTIVE = "the token is not active"
CHECK_FAILED = "the token could not be checked: "      # + the cause
CHECK_FAILED_401 = "the token could not be checked"     # failure 401
SCOPE_REFUSED = 'claim "scope" not accepted'
MISSING_BEARER = "no bearer token in the request"
MISSING_ANY = "no bearer token or API key in the request"
INVALID_KEY = "invalid API key"
EXPIRED_KEY = "the API key has expired"

# the worker's reason when TLS fails (docs/PROTOCOL.md, FETCH errors)
UNREACHABLE = "cannot reach the identity provider"

CLIENT_ID = "vantage"
CLIENT_SECRET = "s3cr3t-client+/="           # the emulator's default client

# opaque tokens: no dots, so not three base64url segments
OPAQUE = {name: "opq-%s-%s" % (name, secrets.token_urlsafe(24))
          for name in ("active", "inactive", "reader", "noexp", "short",
                       "custom", "unknown", "slow", "down")}

# the time bounds below are loose on purpose: they show which side of a
# timeout a request ended on, never how fast anything is
SLACK = 2.0


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def transport():
    """HTTP/1.1 unless a test asks for more (client_for(n, "h2"))."""
    return "http"


@pytest.fixture
def tmp(base_dir):
    return vh.make_dir(tempfile.mkdtemp(prefix="idp-auth-", dir=base_dir))


@pytest.fixture
def secret_file(tmp):
    return vh.write_file(os.path.join(tmp, "client-secret"),
                         CLIENT_SECRET + "\n", mode=0o600)


@pytest.fixture
def idp_factory(pki, tmp):
    """idp_factory(**kw) -> a started IdP (certificate from the harness's
    CA unless untrusted=True) knowing the OPAQUE tokens; all stopped at
    teardown."""
    made = []

    def make(**kw):
        d = vh.make_dir(tempfile.mkdtemp(prefix="idp-", dir=tmp))
        p = IdP(pki=pki, directory=d, **kw)
        p.add_token(OPAQUE["active"], sub="advisor-42", scope="read write",
                    client_id="advisor-app")
        p.add_token(OPAQUE["inactive"], active=False)
        p.add_token(OPAQUE["reader"], sub="reader-7", scope="read",
                    client_id="reports")
        p.add_token(OPAQUE["noexp"], sub="svc-1", scope="write", exp=False)
        p.add_token(OPAQUE["custom"], sub="advisor-9", scope="read",
                    tenant="acme")
        p.add_token(OPAQUE["slow"], sub="slow-1")
        p.add_token(OPAQUE["down"], sub="down-1")
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def idp(idp_factory):
    return idp_factory()


def idp_section(name, idp, secret_file=None, source="discovery",
                introspection=True, auth=None, ca_file=None,
                extra="min_refresh = 1s\ntimeout = 5s\n"):
    """An [idp] section of the worker's file whose URLs are the ones the
    module's directives name: discovery = the issuer, jwks_url = <url>/jwks,
    introspection_url = <url>/introspect."""
    out = "\n[idp %s]\n" % name
    if source == "discovery":
        out += "discovery = %s\n" % idp.url
    elif source == "jwks_url":
        out += "jwks_url = %s/jwks\n" % idp.url
    if introspection:
        out += ("introspection_url = %s/introspect\n" % idp.url
                + "client_id = %s\n" % CLIENT_ID
                + "client_secret_file = %s\n" % secret_file)
        if auth:
            out += "auth = %s\n" % auth
    out += "ca_file = %s\n" % (ca_file or idp.ca_file)
    return out + extra


class Stack:
    """One vantage-worker and one nginx talking to it."""

    def __init__(self, nginx, worker, client_for):
        self.nginx = nginx
        self.worker = worker
        self._client_for = client_for
        self.client = client_for(nginx)

    def get(self, path, token=None, **kw):
        return self.client.get(path, token=token, **kw)

    def new_client(self, transport="http"):
        return self._client_for(self.nginx, transport)

    def log(self, mark=0):
        return self.nginx.log_since(mark)


@pytest.fixture
def stack(module_available, nginx_factory, worker_factory, client_for):
    """stack(sections, server, http="", worker_processes=2,
    worker_opts="") -> a Stack: a worker with the [idp] sections, then an
    nginx whose http{} has the responder, `vantage_worker unix:<socket>
    <worker_opts>` and http, and whose server{} is server."""
    worker_factory.socket_mode = 0o777
    worker_factory.secrets = (CLIENT_SECRET,) + tuple(OPAQUE.values())

    def make(sections, server, http="", worker_processes=2, worker_opts="",
             name="idp-auth"):
        w = worker_factory(wh.CONFIG_HEAD + "".join(sections))
        n = nginx_factory(
            name=name, worker_processes=worker_processes,
            http=vh.RESPONDER_SERVER
            + "    vantage_worker unix:%s%s;\n" % (w.socket_path,
                                                   worker_opts) + http,
            server=server)
        return Stack(n, w, client_for)

    return make


# --------------------------------------------------------------------------
# tokens and responses

def sign(idp, kid=None, header_kid=None, **kw):
    """A JWT signed by PyJWT with the provider's key kid (default its
    first, RSA); iss is the provider's issuer unless given (None: no iss);
    header_kid: another kid in the header."""
    kid = kid or idp.kids()[0]
    key = idp.private_key(kid)
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    kw.setdefault("iss", idp.issuer)
    return jwt.encode(claims(**kw), key, algorithm=alg,
                      headers={"kid": header_kid or kid})


def error_body(error, description):
    """The module's JSON error body, byte for byte."""
    return json.dumps({"error": error, "error_description": description},
                      separators=(",", ":")) + "\n"


def challenges(schemes=("Bearer",), failed=None, error=None,
               description=None, realm="vantage"):
    out = []
    for s in schemes:
        v = '%s realm="%s"' % (s, realm)
        if error and s == failed:
            v += ', error="%s", error_description="%s"' % (
                error, description.replace('"', "'").replace("\\", "'"))
        out.append(v)
    return out


def assert_refused(r, status, error, description, schemes=("Bearer",),
                   failed="Bearer"):
    assert (r.status, r.json) == (status, {
        "error": error, "error_description": description}), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("WWW-Authenticate") == challenges(
        schemes, failed, error, description), r


def assert_invalid(r, description, **kw):
    assert_refused(r, 401, "invalid_token", description, **kw)


def assert_missing(r, description=MISSING_BEARER, schemes=("Bearer",)):
    assert (r.status, r.json) == (401, {
        "error": "missing_token", "error_description": description}), r
    assert r.headers.get_list("WWW-Authenticate") == challenges(schemes), r


def assert_keys_unavailable(r):
    assert (r.status, r.body) == (503, error_body(
        "temporarily_unavailable", KEYS_NOT_YET)), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("Retry-After") == ["1"], r


def assert_check_failed(r):
    """503: introspection could not decide; returns the cause given."""
    assert r.status == 503, r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("Retry-After") == ["1"], r
    assert r.json and r.json["error"] == "temporarily_unavailable", r
    desc = r.json["error_description"]
    assert desc.startswith(CHECK_FAILED) and len(desc) > len(CHECK_FAILED), r
    assert r.body == error_body("temporarily_unavailable", desc), r
    return desc[len(CHECK_FAILED):]


JWT_BODY = "ok $vantage_auth_scheme $vantage_jwt_claim_sub " \
           "[$vantage_jwt_keys_age]"
JWT_OK = re.compile(r"^ok jwt (\S+) \[(\d+)\]$")


def jwt_ok(r, sub="alice"):
    """200 from a JWT_BODY location for sub; returns the key set's age."""
    assert r.status == 200, r
    assert "WWW-Authenticate" not in r.headers, r
    m = JWT_OK.match(r.body)
    assert m and m.group(1) == sub, r
    return int(m.group(2))


def location(path, auth, directives, body=JWT_BODY):
    """auth: vantage_auth's value (None: no vantage_auth line)."""
    auth = "" if auth is None else "vantage_auth %s;" % auth
    return f"""
        location {path} {{
            {auth}
            {directives}
            add_header X-Worker $pid always;
            {vh.respond(body)}
        }}"""


def discovery_location(idp, path="/jwt/", extra="", refetch=None):
    d = "vantage_jwt_discovery %s%s;" % (
        idp.url, "" if refetch is None else " refetch=%s" % refetch)
    return location(path, "jwt", d + "\n            " + extra)


def per_process(s, path, token, rounds=2, max_requests=80):
    """Requests on new connections until every worker process of s's
    nginx answered at least rounds times: [(pid, Response)]."""
    workers = set(s.nginx.workers())
    out, seen = [], {}
    for _ in range(max_requests):
        r = s.get(path, token, new_connection=True)
        pid = int(r.headers["X-Worker"])
        out.append((pid, r))
        seen[pid] = seen.get(pid, 0) + 1
        if all(seen.get(w, 0) >= rounds for w in workers):
            return out
    raise AssertionError("new connections reached %s, the workers are %s"
                         % (seen, workers))


def wait_loaded(idp, n=1, seconds=10):
    vh.wait_for(lambda: idp.count("/jwks") >= n, seconds,
                what="%d key set requests at the provider (got %d)"
                % (n, idp.count("/jwks")))


def worker_fetch_lines(worker, **match):
    return [o for o in worker.log_lines() if o.get("msg") == "idp fetch"
            and all(o.get(k) == v for k, v in match.items())]


# --------------------------------------------------------------------------
# key sets through discovery

def test_discovery_keys_loaded_at_startup(stack, idp):
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp))
    # nobody has asked yet: every worker process fetches at start-up
    wait_loaded(idp)
    assert idp.count(WELL_KNOWN) == 1
    # each kid of the set, RSA and EC, in every process
    for kid in idp.kids():
        for _, r in per_process(s, "/jwt/x", sign(idp, kid)):
            assert 0 <= jwt_ok(r) <= 5
    # the worker answered both processes from one fetch
    assert (idp.count(WELL_KNOWN), idp.count("/jwks")) == (1, 1)
    assert idp.count("/introspect") == 0

    # the age is the set's: it grows while the set stays
    time.sleep(2.2)
    assert jwt_ok(s.get("/jwt/x", sign(idp))) >= 2
    assert idp.count("/jwks") == 1


def test_vantage_jwt_on_and_reload(stack, idp):
    """vantage_jwt on is vantage_auth jwt; after a reload the new worker
    processes load the set again, from the worker's cache."""
    s = stack([idp_section("main", idp, introspection=False)],
              location("/on/", None, "vantage_jwt on;\n            "
                       "vantage_jwt_discovery %s;" % idp.url))
    wait_loaded(idp)
    token = sign(idp)
    for _, r in per_process(s, "/on/x", token):
        jwt_ok(r)
    assert_missing(s.get("/on/x"))
    mark = s.nginx.log_size()
    s.nginx.reload(wait_old_exit=True)
    s.client.close()
    for _, r in per_process(s, "/on/x", token):
        jwt_ok(r)
    assert (idp.count(WELL_KNOWN), idp.count("/jwks")) == (1, 1)
    assert "no key set" not in s.log(mark)


def test_discovery_refusals(stack, idp, idp_factory):
    other = idp_factory()
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="30s"))
    wait_loaded(idp)
    assert_missing(s.get("/jwt/x"))
    # the issuer is the discovery URL, exactly
    for iss in (other.issuer, idp.issuer + "/", "https://idp.example.com",
                None):
        assert_invalid(s.get("/jwt/x", sign(idp, iss=iss)),
                       ISSUER_NOT_ACCEPTED)
    # the provider's kid, another key: the signature fails
    forged = jwt.encode(claims(iss=idp.issuer), other.private_key(
        other.kids()[0]), algorithm="RS256",
        headers={"kid": idp.kids()[0]})
    assert_invalid(s.get("/jwt/x", forged), BAD_SIGNATURE)
    assert_invalid(s.get("/jwt/x", sign(idp, exp=int(time.time()) - 60)),
                   "token expired")
    # none of these reached the provider
    assert idp.count("/jwks") == 1 and other.count("/jwks") == 0


# --------------------------------------------------------------------------
# rotation

def _hammer(client, token_fn, stop, out, new_connection=False):
    while not stop.is_set():
        r = client.get("/jwt/x", token_fn(), new_connection=new_connection)
        out.append((r.status, r.body))


@pytest.mark.load
def test_rotation_no_valid_token_refused(stack, idp):
    """The provider publishes a new key and signs with it at once: the
    first token with the new kid makes each process refetch; old and new
    tokens are all accepted across it."""
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="1s"))
    wait_loaded(idp)
    old_kid = idp.kids()[0]
    old = sign(idp, old_kid)
    for _ in range(4):
        jwt_ok(s.get("/jwt/x", old, new_connection=True))
    # whether start-up counts towards the refetch interval or not
    time.sleep(1.2)
    base = idp.count("/jwks")

    stop = threading.Event()
    old_results, new_results = [], []
    new_kid = []
    threads = [threading.Thread(target=_hammer, args=(
        s.new_client(), lambda: old, stop, old_results)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        new_kid.append(idp.rotate())
        # signing with the new key from now on; new connections, so both
        # worker processes meet the new kid
        more = [threading.Thread(target=_hammer, args=(
            s.new_client(), lambda: sign(idp, new_kid[0]), stop,
            new_results, True)) for _ in range(2)]
        for t in more:
            t.start()
        threads += more
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(vh.timeout(20))

    bad = [x for x in old_results + new_results if x[0] != 200
           or not JWT_OK.match(x[1])]
    assert not bad, "refused during the rotation: %d of %d, first %r" % (
        len(bad), len(old_results) + len(new_results), bad[:3])
    assert len(old_results) >= 10 and len(new_results) >= 4, \
        (len(old_results), len(new_results))
    # one refetch per process at most (the worker may merge them)
    assert 1 <= idp.count("/jwks") - base <= 2, idp.count("/jwks") - base
    for token in (old, sign(idp, new_kid[0])):
        for _, r in per_process(s, "/jwt/x", token):
            jwt_ok(r)


@pytest.mark.timing
def test_rotation_by_refresh_then_retire(stack, idp):
    """A short max-age: the new key arrives with a scheduled refresh, and
    once the old key is retired its tokens are refused after the next."""
    idp.max_age = 2
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="60s")
              + discovery_location(idp, "/cached/", refetch="60s",
                                   extra="vantage_jwt_cache zone=vrot:1m;"))
    wait_loaded(idp)
    old_kid = idp.kids()[0]
    old = sign(idp, old_kid)
    jwt_ok(s.get("/jwt/x", old))
    new_kid = idp.rotate()
    new = sign(idp, new_kid)
    # both accepted in every process once a refresh has passed
    vh.wait_for(lambda: all(r.status == 200 for _, r in
                            per_process(s, "/jwt/x", new)), 8,
                interval=0.2, what="the new key in every process")
    for token in (old, new):
        for path in ("/jwt/x", "/cached/x"):
            for _, r in per_process(s, path, token):
                jwt_ok(r)

    idp.retire(old_kid)
    retired = error_body("invalid_token", UNKNOWN_KID)
    vh.wait_for(lambda: all((r.status, r.body) == (401, retired) for _, r in
                            per_process(s, "/jwt/x", old)), 8,
                interval=0.2, what="the retired key to go from every process")
    # a token verified with a set that is gone is not taken from the cache
    for path in ("/jwt/x", "/cached/x"):
        for _, r in per_process(s, path, old):
            assert_invalid(r, UNKNOWN_KID)
        for _, r in per_process(s, path, new):
            jwt_ok(r)


# --------------------------------------------------------------------------
# unknown kids

@pytest.mark.timing
def test_requests_wait_for_the_refetch(stack, idp):
    """A new key, and the provider slow to serve the set: the requests
    that meet the new kid while the refetch runs wait for it, and one set
    request serves them all."""
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="1s"), worker_processes=1)
    wait_loaded(idp)
    jwt_ok(s.get("/jwt/x", sign(idp)))
    # the worker does not refresh on demand a set under a second old
    time.sleep(1.2)
    kid = idp.rotate()
    idp.fail("/jwks", ("delay", 1.0))
    base = idp.count("/jwks")
    results = []

    def one():
        c = s.new_client()
        results.append(c.get("/jwt/x", sign(idp, kid)))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(vh.timeout(10))
    for r in results:
        jwt_ok(r)
    assert len(results) == 6
    assert idp.count("/jwks") - base == 1

@pytest.mark.timing
def test_new_key_right_after_a_refresh(stack, idp):
    """The default refetch (30s), a key published a second after the set
    was fetched: its first token makes the worker fetch the set on demand
    (none ran in the last 30 s), and is accepted."""
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp), worker_processes=1)
    wait_loaded(idp)
    jwt_ok(s.get("/jwt/x", sign(idp)))
    base = idp.count("/jwks")
    time.sleep(1.2)
    kid = idp.rotate()
    jwt_ok(s.get("/jwt/x", sign(idp, kid)))
    assert idp.count("/jwks") - base == 1
    # another new key within the 30 s: refused, the provider not asked
    time.sleep(1.2)
    other = idp.rotate()
    assert_invalid(s.get("/jwt/x", sign(idp, other)), UNKNOWN_KID)
    assert idp.count("/jwks") - base == 1


@pytest.mark.load
@pytest.mark.timing
@pytest.mark.parametrize("processes", [1, 2])
def test_random_kid_flood_one_fetch_per_interval(stack, idp, processes):
    """refetch=2s, random kids for 3 s: at most 2 extra key-set requests
    at the provider, every such token 401, valid tokens unaffected.  With
    two worker processes too: the worker refreshes on demand once per
    refetch, whoever asks."""
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="2s"),
              worker_processes=processes)
    wait_loaded(idp)
    good = sign(idp)
    jwt_ok(s.get("/jwt/x", good))
    time.sleep(2.2)
    base = idp.count("/jwks")
    key = idp.private_key(idp.kids()[0])
    refused = error_body("invalid_token", UNKNOWN_KID)
    sent, bad = 0, []
    start = time.monotonic()
    while sent < 200 and time.monotonic() - start < 3.0:
        t = jwt.encode(claims(iss=idp.issuer), key, algorithm="RS256",
                       headers={"kid": "k-" + uuid.uuid4().hex})
        r = s.get("/jwt/x", t, new_connection=processes > 1)
        sent += 1
        if (r.status, r.body) != (401, refused) or \
                r.headers.get_list("WWW-Authenticate") != challenges(
                    failed="Bearer", error="invalid_token",
                    description=UNKNOWN_KID):
            bad.append(r)
        if sent % 20 == 0:
            jwt_ok(s.get("/jwt/x", good))
        # about 200 over 3 s
        time.sleep(max(0.0, start + sent * 0.015 - time.monotonic()))
    extra = idp.count("/jwks") - base
    assert not bad, "%d of %d: %r" % (len(bad), sent, bad[:3])
    assert sent >= 50, sent
    assert 1 <= extra <= 2, "%d key set requests for %d unknown kids" % (
        extra, sent)
    assert idp.count(WELL_KNOWN) <= 1 + extra


# --------------------------------------------------------------------------
# the provider fails after the first load: stale if error

# the [warn] of a refresh that failed while a set is held: the provider
# and the age of the set still in use
STALE_WARN = (r'\[warn\] \d+#\d+: vantage jwt: (?:the identity provider '
              r'"%(url)s" fails \(.+\); its key set in use is|no key set for '
              r'"%(url)s": .+; the set in use is) (\d+) s old')


@pytest.mark.timing
@pytest.mark.parametrize("mode", ["down", "500", "invalid", "stopped"])
def test_provider_fails_cached_keys_accepted(stack, idp, mode):
    idp.max_age = 1
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp, refetch="1s"))
    wait_loaded(idp)
    token = sign(idp)
    mark = s.nginx.log_size()
    for _ in range(4):
        jwt_ok(s.get("/jwt/x", token, new_connection=True))
    if mode == "stopped":
        idp.stop()
    else:
        idp.fail("/jwks", mode)
    # past the set's life, several times over
    ages = []
    t = time.monotonic()
    while time.monotonic() - t < 3.5:
        ages.append(jwt_ok(s.get("/jwt/x", token, new_connection=True)))
        time.sleep(0.1)
    assert max(ages) >= 2, ages
    # a token with an unknown kid is still refused, as before
    assert_invalid(s.get("/jwt/x", sign(idp, header_kid="k-nope")),
                   UNKNOWN_KID)

    # nginx says the keys are stale, naming the provider and the age
    warn = re.compile(STALE_WARN % {"url": re.escape(idp.url)})
    vh.wait_for(lambda: warn.search(s.log(mark)), 5,
                what="a [warn] naming the provider")
    ages = [int(m.group(1)) for m in warn.finditer(s.log(mark))]
    assert max(ages) >= 2, ages
    outcome = {"500": "http_error", "invalid": "invalid",
               "down": "unreachable", "stopped": "unreachable"}[mode]
    assert worker_fetch_lines(s.worker, outcome=outcome), \
        s.worker.log_tail()

    # the provider is back: a fresh set in every process, no restart
    if mode == "stopped":
        idp.start()
    else:
        idp.up()
    vh.wait_for(lambda: all(jwt_ok(r) <= 1 for _, r in
                            per_process(s, "/jwt/x", token)), 10,
                interval=0.2, what="a fresh set after the provider came back")


# --------------------------------------------------------------------------
# no keys at all

@pytest.mark.timing
def test_untrusted_certificate_no_keys(stack, idp_factory, pki):
    bad = idp_factory(untrusted=True)
    s = stack([idp_section("bad", bad, introspection=False,
                           ca_file=pki.ca_file)],
              discovery_location(bad, extra="vantage_jwt_keys_wait 1s;"))
    token = sign(bad)
    for _ in range(3):
        t = time.monotonic()
        r = s.get("/jwt/x", token, new_connection=True)
        assert_keys_unavailable(r)
        assert time.monotonic() - t < 1.0 + SLACK
    # no HTTP request got through the handshake
    assert bad.count(WELL_KNOWN) == 0 and bad.count("/jwks") == 0
    lines = worker_fetch_lines(s.worker, outcome="unreachable", idp="bad")
    assert lines and "certificate" in lines[0]["reason"].lower(), lines
    # nginx logs why there are no keys, naming the provider
    err = re.compile(r"\[error\] \d+#\d+: .*%s" % re.escape(bad.url))
    errors = [l for l in s.log().splitlines() if err.search(l)]
    assert errors and any(UNREACHABLE in l for l in errors), s.log()


@pytest.mark.timing
@pytest.mark.parametrize("transport_", ["http", "h2"])
def test_first_fetch_waited_for(stack, idp, transport_):
    idp.fail("/jwks", ("delay", 1.0))
    s = stack([idp_section("main", idp, introspection=False)],
              discovery_location(idp))
    c = s.new_client(transport_)
    t = time.monotonic()
    jwt_ok(c.get("/jwt/x", sign(idp)))
    # the default wait is 2s
    assert time.monotonic() - t < 2.0 + SLACK
    assert idp.count("/jwks") == 1


@pytest.mark.timing
def test_worker_started_after_nginx(module_available, nginx_factory,
                                    worker_factory, client_for, idp):
    """No worker at nginx's start: 503 after the wait, then the keys once
    the worker is there, without a reload."""
    worker_factory.socket_mode = 0o777
    w = worker_factory(wh.CONFIG_HEAD + idp_section(
        "main", idp, introspection=False), start=False)
    n = nginx_factory(name="idp-late", http=vh.RESPONDER_SERVER
                      + "    vantage_worker unix:%s;\n" % w.socket_path,
                      server=discovery_location(
                          idp, extra="vantage_jwt_keys_wait 500ms;"))
    c = client_for(n)
    token = sign(idp)
    assert_keys_unavailable(c.get("/jwt/x", token))
    worker_factory.start(w)
    vh.wait_for(lambda: c.get("/jwt/x", token, new_connection=True)
                .status == 200, 15, interval=0.2,
                what="the keys once the worker is up")
    assert idp.count("/jwks") == 1


@pytest.mark.timing
def test_first_fetch_beyond_the_wait(stack, idp):
    idp.fail("/jwks", ("delay", 4.0))
    s = stack([idp_section("main", idp, introspection=False,
                           extra="min_refresh = 1s\ntimeout = 8s\n")],
              discovery_location(idp, extra="vantage_jwt_keys_wait 1s;"),
              worker_opts=" timeout=10s")
    token = sign(idp)
    t = time.monotonic()
    assert_keys_unavailable(s.get("/jwt/x", token))
    took = time.monotonic() - t
    assert 0.5 <= took < 1.0 + SLACK, took
    # when the slow answer comes, the keys are there
    vh.wait_for(lambda: s.get("/jwt/x", token, new_connection=True)
                .status == 200, 10, interval=0.2,
                what="the keys after the slow first answer")
    for _ in range(4):
        jwt_ok(s.get("/jwt/x", token, new_connection=True))


# --------------------------------------------------------------------------
# several sources in one location

def test_issuer_selects_the_source(stack, idp_factory, keys):
    a = idp_factory()
    b = idp_factory()
    c = idp_factory()
    hs = keys.path("hs.secret")
    srcs_ab = ("vantage_jwt_discovery %s;\n"
               "            vantage_jwt_jwks_url %s/jwks issuer=%s;"
               % (a.url, b.url, b.issuer))
    body = "ok $vantage_auth_scheme $vantage_jwt_claim_iss " \
           "[$vantage_jwt_keys_age]"
    s = stack([idp_section("a", a, introspection=False),
               idp_section("b", b, source="jwks_url", introspection=False),
               idp_section("c", c, source="jwks_url", introspection=False)],
              location("/multi/", "jwt", srcs_ab + "\n            "
                       "vantage_jwt_keys %s;" % hs, body)
              + location("/two/", "jwt", srcs_ab, body)
              + location("/open-iss/", "jwt",
                         "vantage_jwt_jwks_url %s/jwks;" % c.url, body))
    wait_loaded(a)
    wait_loaded(b)
    assert (a.count(WELL_KNOWN), b.count(WELL_KNOWN)) == (1, 0)

    def ok(r, iss, age=True):
        assert r.status == 200, r
        m = re.match(r"^ok jwt (\S*) \[(\d*)\]$", r.body)
        assert m and m.group(1) == iss and bool(m.group(2)) == age, r

    for path in ("/multi/x", "/two/x"):
        ok(s.get(path, sign(a)), a.issuer)
        ok(s.get(path, sign(b)), b.issuer)
        ok(s.get(path, sign(b, b.kids()[1])), b.issuer)
        # iss says a, the key is b's: a's set does not have that kid
        assert_invalid(s.get(path, sign(b, iss=a.issuer)), UNKNOWN_KID)
        # iss says b, b's kid, a's key
        assert_invalid(s.get(path, sign(a, iss=b.issuer,
                                        header_kid=b.kids()[0])),
                       BAD_SIGNATURE)

    # another issuer: the key file, which has no issuer, takes it (no age)
    other = mint(keys.hs, "HS256", claims(iss="https://other.example"))
    ok(s.get("/multi/x", other), "https://other.example", age=False)
    assert_invalid(s.get("/two/x", other), ISSUER_NOT_ACCEPTED)
    # a key file does not take the tokens of an issuer that has a source
    r = s.get("/multi/x", mint(keys.hs, "HS256", claims(iss=a.issuer)))
    assert r.status == 401 and r.json["error"] == "invalid_token", r

    # a jwks_url without issuer= takes any issuer, or none (a URL has one
    # issuer, or none, in the whole configuration: c is not b)
    ok(s.get("/open-iss/x", sign(c, iss="https://any.example")),
       "https://any.example")
    ok(s.get("/open-iss/x", sign(c, iss=None)), "")
    ok(s.get("/open-iss/x", sign(c, iss=a.issuer)), a.issuer)
    assert a.count("/introspect") == b.count("/introspect") == 0


# --------------------------------------------------------------------------
# introspection

INTRO_BODY = "ok $vantage_auth_scheme $vantage_jwt_claim_sub " \
             "[$vantage_jwt_claim_scope] [$vantage_jwt_claim_client_id] " \
             "[$vantage_jwt_keys_age]"


def intro_location(path, url, extra="", body=INTRO_BODY, auth="introspect"):
    return location(path, auth, "vantage_introspect %s;\n            %s"
                    % (url, extra), body)


@pytest.fixture
def intro(stack, idp, secret_file, backend):
    """A Stack whose worker knows the provider for keys and introspection;
    locations:
      /intro/     vantage_introspect <url>/introspect negative=3s; claim
                  headers X-Sub, X-Scope, X-Client-Id, X-Tenant to the
                  echoing backend, X-Scheme and X-Age from the variables
      /short/     cache=1s
      /all/       tokens=all
      /scope/     vantage_jwt_require scope write
      /fail401/   vantage_introspect_failure 401
      /timeout/   vantage_introspect_timeout 1s
      /zone/      the location's own vantage_jwt_cache zone
      /noneg/     negative=0
    """
    url = idp.url + "/introspect"
    server = f"""
        location /intro/ {{
            vantage_auth introspect;
            vantage_introspect {url} negative=3s;
            vantage_jwt_claim_header sub X-Sub;
            vantage_jwt_claim_header scope X-Scope;
            vantage_jwt_claim_header client_id X-Client-Id;
            vantage_jwt_claim_header tenant X-Tenant;
            proxy_set_header X-Scheme $vantage_auth_scheme;
            proxy_set_header X-Age "[$vantage_jwt_keys_age]";
            add_header X-Worker $pid always;
            proxy_pass http://{backend.address};
        }}""" + "".join([
        intro_location("/short/", url + " cache=1s"),
        intro_location("/all/", url + " tokens=all"),
        intro_location("/scope/", url, "vantage_jwt_require scope write;"),
        intro_location("/fail401/", url, "vantage_introspect_failure 401;"),
        intro_location("/timeout/", url, "vantage_introspect_timeout 1s;"),
        intro_location("/zone/", url, "vantage_jwt_cache zone=vintro:1m;"),
        intro_location("/noneg/", url + " negative=0"),
    ])
    return stack([idp_section("main", idp, secret_file,
                              extra="min_refresh = 1s\ntimeout = 8s\n")],
                 server)


def intro_ok(r, sub, scope, client_id):
    assert r.status == 200, r
    assert "WWW-Authenticate" not in r.headers, r
    assert r.body == "ok introspect %s [%s] [%s] []" % (sub, scope,
                                                        client_id), r


def test_introspection_positive(intro, idp, backend):
    r = intro.get("/intro/x", OPAQUE["active"],
                  headers={"X-Sub": "forged", "X-Tenant": "forged"})
    assert r.status == 200, r
    echo = json.loads(r.body)
    assert header_values(echo, "x-sub") == ["advisor-42"]
    assert header_values(echo, "x-scope") == ["read write"]
    assert header_values(echo, "x-client-id") == ["advisor-app"]
    # the answer has no tenant: the client's copy is removed all the same
    assert header_values(echo, "x-tenant") == []
    assert header_values(echo, "x-scheme") == ["introspect"]
    assert header_values(echo, "x-age") == ["[]"]
    assert idp.introspected(OPAQUE["active"]) == 1
    # from the cache, in every process: the same claims, the same scheme
    for _, r in per_process(intro, "/intro/x", OPAQUE["active"]):
        assert r.status == 200, r
        echo = json.loads(r.body)
        assert [header_values(echo, h) for h in (
            "x-sub", "x-scope", "x-client-id", "x-scheme", "x-age")] == [
            ["advisor-42"], ["read write"], ["advisor-app"], ["introspect"],
            ["[]"]], r
    assert idp.introspected(OPAQUE["active"]) == 1
    rec = idp.requests("/introspect")[-1]
    assert rec["form"] == {"token": OPAQUE["active"]}
    # no key set was needed
    assert idp.count("/jwks") == 0 and idp.count(WELL_KNOWN) == 0

    # custom members of the answer reach the variables and headers too
    r = intro.get("/intro/x", OPAQUE["custom"])
    assert header_values(json.loads(r.body), "x-tenant") == ["acme"], r
    # exp is not required of an answer
    intro_ok(intro.get("/short/x", OPAQUE["noexp"]), "svc-1", "write",
             "advisor-app")


def test_introspection_over_h2(intro, idp):
    c = intro.new_client("h2")
    intro_ok(c.get("/short/x", OPAQUE["reader"]), "reader-7", "read",
             "reports")
    assert_invalid(c.get("/short/x", OPAQUE["inactive"]), NOT_ACTIVE)
    assert idp.count("/introspect") == 2


def test_introspection_negative(intro, idp):
    for path in ("/intro/x", "/short/x"):
        r = intro.get(path, OPAQUE["inactive"])
        assert_invalid(r, NOT_ACTIVE)
        assert r.body == error_body("invalid_token", NOT_ACTIVE), r
        assert_invalid(intro.get(path, OPAQUE["unknown"]), NOT_ACTIVE)
    assert_missing(intro.get("/intro/x"))


def test_introspection_cached(intro, idp):
    """Positive answers are cached in shared memory: no process asks
    again (in /all/, whose entries live the default 5m: /short/'s 1 s is
    shorter than a round of every process under valgrind)."""
    intro_ok(intro.get("/all/x", OPAQUE["active"]), "advisor-42",
             "read write", "advisor-app")
    for _, r in per_process(intro, "/all/x", OPAQUE["active"]):
        intro_ok(r, "advisor-42", "read write", "advisor-app")
    assert idp.introspected(OPAQUE["active"]) == 1
    # the location's own zone works the same
    for _, r in per_process(intro, "/zone/x", OPAQUE["reader"]):
        intro_ok(r, "reader-7", "read", "reports")
    assert idp.introspected(OPAQUE["reader"]) == 1


@pytest.mark.timing
def test_introspection_cache_expires(intro, idp):
    # cache=1s
    intro_ok(intro.get("/short/x", OPAQUE["active"]), "advisor-42",
             "read write", "advisor-app")
    time.sleep(1.5)
    intro_ok(intro.get("/short/x", OPAQUE["active"]), "advisor-42",
             "read write", "advisor-app")
    assert idp.introspected(OPAQUE["active"]) == 2
    # the answer's exp ends the entry before the default 5m
    idp.add_token(OPAQUE["short"], sub="brief", scope="read",
                  client_id="c", exp=int(time.time()) + 2)
    for _ in range(3):
        intro_ok(intro.get("/all/x", OPAQUE["short"], new_connection=True),
                 "brief", "read", "c")
    assert idp.introspected(OPAQUE["short"]) == 1
    time.sleep(max(0.0, idp.tokens[OPAQUE["short"]]["exp"] + 1.2
                   - time.time()))
    idp.add_token(OPAQUE["short"], active=False)
    assert_invalid(intro.get("/all/x", OPAQUE["short"]), NOT_ACTIVE)
    assert idp.introspected(OPAQUE["short"]) == 2


@pytest.mark.timing
def test_introspection_negative_cached(intro, idp):
    # negative=3s: every process asks within it (an entry lives from 2 to
    # 3 s, as nginx's clock counts whole seconds)
    for _, r in per_process(intro, "/intro/x", OPAQUE["inactive"]):
        assert_invalid(r, NOT_ACTIVE)
    assert idp.introspected(OPAQUE["inactive"]) == 1
    # the provider changes its mind: seen once the negative entry is gone
    idp.add_token(OPAQUE["inactive"], sub="late", scope="read",
                  client_id="c")
    time.sleep(3.2)
    r = intro.get("/intro/x", OPAQUE["inactive"])
    assert r.status == 200, r
    assert idp.introspected(OPAQUE["inactive"]) == 2
    # a policy refusal is negative too (default 10s)
    for _, r in per_process(intro, "/scope/x", OPAQUE["reader"]):
        assert_refused(r, 403, "insufficient_scope", SCOPE_REFUSED)
    assert idp.introspected(OPAQUE["reader"]) == 1


def test_introspection_negative_zero_not_cached(intro, idp):
    for _ in range(3):
        assert_invalid(intro.get("/noneg/x", OPAQUE["inactive"]), NOT_ACTIVE)
    assert idp.introspected(OPAQUE["inactive"]) == 3


def test_introspection_past_exp_refused(intro, idp):
    idp.add_token(OPAQUE["short"], sub="old", scope="read",
                  exp=int(time.time()) - 60)
    assert_invalid(intro.get("/short/x", OPAQUE["short"]), "token expired")


def test_introspection_scope_refused(intro, idp):
    assert_refused(intro.get("/scope/x", OPAQUE["reader"]), 403,
                   "insufficient_scope", SCOPE_REFUSED)
    intro_ok(intro.get("/scope/x", OPAQUE["active"]), "advisor-42",
             "read write", "advisor-app")
    # not active is 401 before any requirement
    assert_invalid(intro.get("/scope/x", OPAQUE["inactive"]), NOT_ACTIVE)


@pytest.mark.parametrize("mode", ["down", "500", "invalid"])
def test_introspection_provider_fails(intro, idp, mode):
    idp.fail("/introspect", mode)
    assert_check_failed(intro.get("/intro/x", OPAQUE["down"]))
    r = intro.get("/fail401/x", OPAQUE["down"])
    assert_invalid(r, CHECK_FAILED_401)
    assert "Retry-After" not in r.headers, r
    # a failure is not cached
    idp.up()
    r = intro.get("/intro/x", OPAQUE["down"])
    assert r.status == 200, r
    assert header_values(json.loads(r.body), "x-sub") == ["down-1"]


def test_introspection_worker_unreachable(intro, idp):
    intro.worker.stop()
    assert_check_failed(intro.get("/intro/x", OPAQUE["active"]))
    assert_invalid(intro.get("/fail401/x", OPAQUE["active"]),
                   CHECK_FAILED_401)
    assert idp.count("/introspect") == 0


@pytest.mark.timing
def test_introspection_timeout(intro, idp):
    idp.fail("/introspect", ("delay", 4.0))
    t = time.monotonic()
    assert_check_failed(intro.get("/timeout/x", OPAQUE["slow"]))
    took = time.monotonic() - t
    # vantage_introspect_timeout 1s, not the provider's 4 s
    assert 0.5 <= took < 3.5, took
    idp.up()
    intro_ok(intro.get("/timeout/x", OPAQUE["slow"]), "slow-1", "read",
             "advisor-app")


def test_tokens_all_sends_jwts_too(intro, idp):
    token = sign(idp, sub="jwt-user")
    idp.add_token(token, sub="jwt-user", scope="read", client_id="c")
    intro_ok(intro.get("/all/x", token), "jwt-user", "read", "c")
    assert idp.introspected(token) == 1
    assert idp.count("/jwks") == 0


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
def test_introspection_client_authentication(stack, idp, secret_file, auth):
    s = stack([idp_section("main", idp, secret_file, auth=auth)],
              intro_location("/intro/", idp.url + "/introspect"))
    intro_ok(s.get("/intro/x", OPAQUE["active"]), "advisor-42",
             "read write", "advisor-app")
    rec = idp.requests("/introspect")[-1]
    assert rec["client"] == (auth, CLIENT_ID, CLIENT_SECRET), rec
    assert rec["headers"]["content-type"] == \
        "application/x-www-form-urlencoded"
    if auth == "client_secret_basic":
        assert rec["form"] == {"token": OPAQUE["active"]}
        assert rec["headers"]["authorization"].startswith("Basic ")
    else:
        assert rec["form"] == {"token": OPAQUE["active"],
                               "client_id": CLIENT_ID,
                               "client_secret": CLIENT_SECRET}
        assert "authorization" not in rec["headers"]
    # what the client sent nginx is not what the provider saw
    assert OPAQUE["active"] not in rec["headers"].get("authorization", "")


# --------------------------------------------------------------------------
# vantage_auth any: a JWT, an opaque token, an API key

@pytest.fixture
def apikeys(tmp):
    from test_api_keys import add_entry, create, ctl
    path = os.path.join(tmp, "keys.json")
    k = {"a1": create(path, "a1", "acme", "accounts:read",
                      "accounts:write"),
         "a2": create(path, "a2", "acme", "accounts:read"),
         "old": create(path, "old", "acme", "accounts:read")}
    ctl("apikey", "revoke", "--file", path, "--id", "old")
    k["exp"] = add_entry(path, "exp", "acme", scopes=["accounts:read"],
                         expires="2020-01-01T00:00:00Z")
    k["path"] = path
    return k


ANY_BODY = "ok $vantage_auth_scheme sub=$vantage_jwt_claim_sub " \
           "key=$vantage_api_key_id [$vantage_jwt_keys_age]"
BOTH = ("Bearer", "ApiKey")


def any_sources(idp, apikeys):
    return ("vantage_jwt_discovery %s refetch=1s;\n"
            "            vantage_introspect %s/introspect;\n"
            "            vantage_api_keys %s;"
            % (idp.url, idp.url, apikeys["path"]))


@pytest.fixture
def anyloc(stack, idp, secret_file, apikeys):
    srcs = any_sources(idp, apikeys)
    return stack(
        [idp_section("main", idp, secret_file)],
        location("/any/", "any", srcs, ANY_BODY)
        + location("/any-scope/", "any",
                   srcs + "\n            vantage_jwt_require scope "
                   "accounts:write;", ANY_BODY)
        + location("/bearer/", "jwt introspect", srcs, ANY_BODY))


def send_key(c, path, key, **kw):
    c.client.remember(key)
    headers = dict(kw.pop("headers", {}))
    headers["X-Api-Key"] = key
    return c.get(path, headers=headers, **kw)


def any_ok(r, scheme, sub="", key="", age=False):
    assert r.status == 200, r
    assert "WWW-Authenticate" not in r.headers, r
    m = re.match(r"^ok (\S+) sub=(\S*) key=(\S*) \[(\d*)\]$", r.body)
    assert m and m.groups()[:3] == (scheme, sub, key), r
    assert bool(m.group(4)) == age, r


def _each_credential_to_its_checker(s, idp, apikeys, path):
    wait_loaded(idp)
    jwks = idp.count("/jwks")
    any_ok(s.get(path, sign(idp, sub="jwt-user")), "jwt", sub="jwt-user",
           age=True)
    assert idp.count("/introspect") == 0
    any_ok(s.get(path, OPAQUE["active"]), "introspect", sub="advisor-42")
    any_ok(send_key(s, path, apikeys["a1"]), "api_key", key="a1")
    # again: the opaque token from the cache
    any_ok(s.get(path, OPAQUE["active"], new_connection=True), "introspect",
           sub="advisor-42")
    # the opaque token alone was introspected, once; no key set was fetched
    # for any of it
    assert idp.introspected(OPAQUE["active"]) == 1
    assert idp.count("/introspect") == 1
    assert idp.count("/jwks") == jwks


def _challenges(s, idp, apikeys, path):
    wait_loaded(idp)
    assert_missing(s.get(path), MISSING_ANY, schemes=BOTH)
    assert_invalid(s.get(path, OPAQUE["inactive"]), NOT_ACTIVE,
                   schemes=BOTH)
    assert_invalid(s.get(path, sign(idp, iss="https://x.example")),
                   ISSUER_NOT_ACCEPTED, schemes=BOTH)
    assert_invalid(send_key(s, path, apikeys["a1"][:-1]), INVALID_KEY,
                   schemes=BOTH, failed="ApiKey")


def test_any_each_credential_to_its_checker(anyloc, idp, apikeys):
    _each_credential_to_its_checker(anyloc, idp, apikeys, "/any/x")


def test_auth_three_listed(stack, idp, secret_file, apikeys):
    """`vantage_auth jwt introspect api_key`: as any here."""
    s = stack([idp_section("main", idp, secret_file)],
              location("/listed/", "jwt introspect api_key",
                       any_sources(idp, apikeys), ANY_BODY))
    _each_credential_to_its_checker(s, idp, apikeys, "/listed/x")
    _challenges(s, idp, apikeys, "/listed/x")


def test_any_challenges(anyloc, idp, apikeys):
    _challenges(anyloc, idp, apikeys, "/any/x")
    # no API key accepted here: one Bearer challenge, for both checkers
    assert_missing(anyloc.get("/bearer/x"))
    assert_missing(send_key(anyloc, "/bearer/x", apikeys["a1"]))
    any_ok(anyloc.get("/bearer/x", OPAQUE["active"]), "introspect",
           sub="advisor-42")


def test_any_api_keys(anyloc, idp, apikeys):
    """What test_api_keys.py shows with a key file, in a location that
    also has a provider and introspection."""
    any_ok(send_key(anyloc, "/any/x", apikeys["a1"]), "api_key", key="a1")
    # two keys of one tenant, both valid; the revoked one refused
    any_ok(send_key(anyloc, "/any/x", apikeys["a2"]), "api_key", key="a2")
    assert_invalid(send_key(anyloc, "/any/x", apikeys["old"]), INVALID_KEY,
                   schemes=BOTH, failed="ApiKey")
    assert_invalid(send_key(anyloc, "/any/x", apikeys["exp"]), EXPIRED_KEY,
                   schemes=BOTH, failed="ApiKey")
    # a key sent decides, whatever bearer token comes with it
    r = send_key(anyloc, "/any/x", apikeys["old"],
                 headers={"Authorization": "Bearer " + OPAQUE["active"]})
    assert_invalid(r, INVALID_KEY, schemes=BOTH, failed="ApiKey")
    assert idp.count("/introspect") == 0


def test_any_one_require_for_all(anyloc, idp, apikeys):
    wait_loaded(idp)
    any_ok(anyloc.get("/any-scope/x", sign(idp, scope="accounts:write")),
           "jwt", sub="alice", age=True)
    any_ok(send_key(anyloc, "/any-scope/x", apikeys["a1"]), "api_key",
           key="a1")
    idp.add_token(OPAQUE["short"], sub="w", scope="accounts:write")
    any_ok(anyloc.get("/any-scope/x", OPAQUE["short"]), "introspect",
           sub="w")
    for r, failed in ((anyloc.get("/any-scope/x", sign(idp)), "Bearer"),
                      (anyloc.get("/any-scope/x", OPAQUE["active"]),
                       "Bearer"),
                      (send_key(anyloc, "/any-scope/x", apikeys["a2"]),
                       "ApiKey")):
        assert_refused(r, 403, "insufficient_scope", SCOPE_REFUSED,
                       schemes=BOTH, failed=failed)


# --------------------------------------------------------------------------
# nginx -t

@pytest.fixture
def check(module_available, nginx_factory, base_dir):
    """check(server, http="", worker=True) -> (rc, output) of nginx -t;
    worker: a `vantage_worker` line in http{} (no worker runs)."""
    sock = os.path.join(base_dir, "no-worker.sock")

    def run(server, http="", worker=True):
        if worker:
            http = "    vantage_worker unix:%s;\n" % sock + http
        n = nginx_factory(name="idp-t", start=False, http=http,
                          server=server)
        rc, out = n.test_config()
        assert not vh.problem_lines(out.replace("[emerg]", "")), out
        return rc, out
    return run


def test_valid_configuration(check, keys):
    rc, out = check(f"""
        vantage_jwt_keys_wait 5s;
        location / {{
            vantage_auth any;
            vantage_jwt_discovery https://login.example.com/t1 refetch=10s;
            vantage_jwt_jwks_url https://keys.example.com/jwks
                                 issuer=https://keys.example.com/;
            vantage_jwt_jwks_url https://other.example.com/jwks refetch=1m;
            vantage_introspect https://login.example.com/t1/introspect
                               tokens=all cache=1m negative=5s;
            vantage_introspect_timeout 500ms;
            vantage_introspect_failure 401;
            return 204;
        }}
        location /b/ {{
            vantage_auth jwt introspect;
            vantage_jwt_discovery https://login.example.com/t1;
            vantage_jwt_keys {keys.path("jwks.json")};
            vantage_introspect https://login.example.com/t1/introspect;
            return 204;
        }}""")
    assert rc == 0, out


NOT_HTTPS = "is not an https:// URL"
VERIFY = "(the worker calls only providers it can verify)"
ISSUERLESS = ('more than one key source without an issuer applies here '
              '("vantage_jwt_keys", or "vantage_jwt_jwks_url" without '
              'issuer=): a token could not be matched to one')


def _loc(*lines, auth="jwt"):
    return "location / { vantage_auth %s; %s return 204; }" % (
        auth, " ".join(l + ";" for l in lines))


@pytest.mark.parametrize("server, worker, texts", [
    (_loc("vantage_jwt_discovery http://idp.example.com"), True,
     ['"vantage_jwt_discovery": the URL "http://idp.example.com" '
      + NOT_HTTPS + " " + VERIFY]),
    (_loc("vantage_jwt_jwks_url http://idp.example.com/jwks"), True,
     ['"vantage_jwt_jwks_url": the URL "http://idp.example.com/jwks" '
      + NOT_HTTPS + " " + VERIFY]),
    (_loc("vantage_introspect http://idp.example.com/i", auth="introspect"),
     True, ['"vantage_introspect": the URL "http://idp.example.com/i" '
            + NOT_HTTPS]),
    (_loc("vantage_introspect https://idp.example.com/i", auth="introspect"),
     False, ['"vantage_introspect" needs "vantage_worker": tokens are '
             'introspected by vantage-worker']),
    (_loc("vantage_jwt_discovery https://idp.example.com"), False,
     ['"vantage_jwt_jwks_url" and "vantage_jwt_discovery" need '
      '"vantage_worker": key sets are fetched by vantage-worker']),
    (_loc("vantage_jwt_jwks_url https://a.example.com/jwks",
          "vantage_jwt_jwks_url https://b.example.com/jwks"), True,
     [ISSUERLESS]),
    (_loc("vantage_jwt_jwks_url https://a.example.com/jwks",
          "vantage_jwt_keys @KEYS@"), True, [ISSUERLESS]),
    (_loc("vantage_jwt_jwks_url https://a.example.com/jwks "
          "issuer=https://a.example.com",
          "vantage_jwt_discovery https://a.example.com"), True,
     ['two key sets for the issuer "https://a.example.com" apply']),
    (_loc("vantage_jwt_jwks_url https://a.example.com/jwks "
          "issuer=https://a.example.com")
     + _loc("vantage_jwt_jwks_url https://a.example.com/jwks "
            "issuer=https://b.example.com").replace("location /",
                                                    "location /b/"), True,
     ['"vantage_jwt_jwks_url": "https://a.example.com/jwks" is named '
      'elsewhere with another directive or issuer']),
    (_loc("vantage_jwt_discovery https://idp.example.com refetch=soon"),
     True, ['"vantage_jwt_discovery": invalid refetch "refetch=soon": a '
            'time of 1s or more']),
    (_loc("vantage_introspect https://idp.example.com/i tokens=some",
          auth="introspect"), True,
     ['"vantage_introspect": invalid parameter "tokens=some"']),
    ("vantage_introspect_failure 500;", True, ['invalid value "500"']),
    (_loc(auth="introspect"), True,
     ['introspection is on but no "vantage_introspect" applies here']),
    ("location / { vantage_auth any introspect; return 204; }", True,
     ['invalid value "any": use off, any, or one or more of jwt, '
      'introspect and api_key']),
], ids=["discovery-http", "jwks-url-http", "introspect-http",
        "introspect-no-worker", "discovery-no-worker",
        "two-issuerless-urls", "issuerless-url-and-file",
        "two-sets-one-issuer", "one-url-two-issuers", "refetch-value",
        "tokens-value", "failure-value", "introspect-unconfigured",
        "auth-any-introspect"])
def test_configuration_errors(check, keys, server, worker, texts):
    rc, out = check(server.replace("@KEYS@", keys.path("jwks.json")),
                    worker=worker)
    vh.assert_one_emerg(rc, out, *texts)
