"""test_worker_fetch.py -- vantage-worker's FETCH: key sets and introspection.

The real worker (started with a configuration file holding [idp]
sections, a real redis-server behind it) and tests/fakes/idp.py as the
identity provider over HTTPS, its certificate from the harness's test CA
given to the worker as ca_file.  Frames are worker_harness's own.  What
is checked: discovery then the key set, Cache-Control max-age honoured
and clamped (counted at the provider), the refresh before expiry and a
rotation seen through it, the last good set served stale when the
provider is down or answers 500 or garbage, an untrusted certificate
refused, one request at the provider for 20 FETCHes at once,
introspection with client_secret_basic and client_secret_post (the
credentials parsed at the provider), timeouts, the request errors, and
no secret or token in the worker's log.  A provider may be named by a
URL its section lists, as nginx.conf names it: the same key set and the
same single flight as by name, and a 404 for another kind's URL.  A
FETCH with MAX_AGE (a kid the module did not find) refreshes a set at
least that old, once for any number of them.
"""

import json
import os
import sys
import tempfile
import time

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import (FETCH, OPTIONAL, REPLY, T_AGE, T_BODY,
                            T_FETCH_KIND, T_IDP, T_MAX_AGE, T_STALE,
                            T_STATUS, T_TOKEN)

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from idp import IdP, WELL_KNOWN                  # noqa: E402

CLIENT_SECRET = "s3cr3t-client+/="
TOKENS = ("tok-active-7f3e9a", "tok-inactive-1b2c3d", "tok-unknown-0a9b8c")


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def tmp(base_dir):
    return vh.make_dir(tempfile.mkdtemp(prefix="worker-fetch-",
                                        dir=base_dir))


@pytest.fixture
def idp(pki, tmp):
    p = IdP(pki=pki, directory=tmp, max_age=300)
    p.add_token(TOKENS[0], sub="advisor-42", scope="read write",
                client_id="advisor-app")
    p.add_token(TOKENS[1], active=False)
    yield p
    p.stop()


@pytest.fixture
def secret_file(tmp):
    return vh.write_file(os.path.join(tmp, "client-secret"),
                         CLIENT_SECRET + "\n", mode=0o600)


def idp_section(name, idp, secret_file, ca_file=None, discovery=True,
                extra=""):
    url = idp.url
    return ("[idp %s]\n" % name
            + ("discovery = %s\n" % url if discovery
               else "jwks_url = %s/jwks\n" % url)
            + "introspection_url = %s/introspect\n" % url
            + "ca_file = %s\n" % (ca_file or idp.ca_file)
            + "client_id = vantage\n"
            + "client_secret_file = %s\n" % secret_file
            + extra)


@pytest.fixture
def start_worker(worker_factory):
    """start_worker(sections) -> a started Worker whose file is [worker]
    and the sections given; its log is checked at teardown."""
    # no secret and no token is ever logged, whatever happened
    worker_factory.secrets = (CLIENT_SECRET,) + TOKENS
    return lambda sections: worker_factory(wh.CONFIG_HEAD + "".join(sections))


@pytest.fixture
def worker(start_worker, idp, secret_file):
    """A worker with [idp main] (discovery, 1 s to 1 h, timeout 1 s)."""
    return start_worker([idp_section("main", idp, secret_file,
                                     extra="min_refresh = 1s\n"
                                           "timeout = 1s\n")])


# --------------------------------------------------------------------------
# helpers

class Reply:
    def __init__(self, frame):
        self.frame = frame
        self.status = frame.status
        self.error = frame.error
        body = frame.get(T_BODY)
        self.raw = body
        self.json = json.loads(body) if body is not None else None
        self.age = frame._u32(T_AGE)
        self.max_age = frame._u32(T_MAX_AGE)
        self.stale = (T_STALE | OPTIONAL) in frame.tags()

    def kids(self):
        return sorted(k["kid"] for k in self.json["keys"])

    def __repr__(self):
        return "<Reply %r>" % self.frame


def fetch_fields(idp="main", kind="jwks", token=None, max_age=None):
    f = []
    if idp is not None:
        f.append((T_IDP, idp))
    if kind is not None:
        f.append((T_FETCH_KIND, kind))
    if token is not None:
        f.append((T_TOKEN, token))
    if max_age is not None:
        f.append((T_MAX_AGE, wh.u32(max_age)))
    return f


def fetch(worker, idp="main", kind="jwks", token=None, fid=7, seconds=5.0,
          max_age=None):
    with wh.FrameClient(worker.socket_path) as c:
        r = c.request(FETCH, fid, fetch_fields(idp, kind, token, max_age),
                      seconds)
    assert r.type == FETCH | REPLY and r.id == fid, r
    assert T_STATUS in r.tags(), r
    return Reply(r)


def fetch_lines(worker, **match):
    out = []
    for o in worker.log_lines():
        if o.get("msg") != "idp fetch":
            continue
        if all(o.get(k) == v for k, v in match.items()):
            out.append(o)
    return out


def wait_count(idp, path, n, seconds=5.0):
    vh.wait_for(lambda: idp.count(path) >= n, seconds,
                what="%d requests for %s (got %d)"
                % (n, path, idp.count(path)))


# --------------------------------------------------------------------------
# key sets

def test_discovery_then_jwks(worker, idp):
    r = fetch(worker)
    assert r.status == 200, r
    assert r.kids() == sorted(idp.kids())
    assert {k["kty"] for k in r.json["keys"]} == {"RSA", "EC"}
    assert r.stale is False and r.error is None
    assert r.age == 0 and 298 <= r.max_age <= 300, r
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1

    # the discovery document, from the same refresh
    d = fetch(worker, kind="discovery")
    assert d.status == 200, d
    assert d.json["issuer"] == idp.issuer
    assert d.json["jwks_uri"] == idp.url + "/jwks"
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1

    lines = fetch_lines(worker, outcome="ok")
    assert [(l["kind"], l["host"], l["status"]) for l in lines] == [
        ("discovery", "127.0.0.1:%d" % idp.port, "200"),
        ("jwks", "127.0.0.1:%d" % idp.port, "200")], lines
    assert all(l["idp"] == "main" and l["ms"].isdigit() for l in lines)


def test_jwks_url_without_discovery(start_worker, idp, secret_file):
    w = start_worker([idp_section("direct", idp, secret_file,
                                  discovery=False)])
    r = fetch(w, idp="direct")
    assert r.status == 200 and r.kids() == sorted(idp.kids()), r
    assert idp.count(WELL_KNOWN) == 0 and idp.count("/jwks") == 1
    r = fetch(w, idp="direct", kind="discovery")
    assert r.status == 400, r
    assert r.error == "the identity provider has no discovery configured"


def test_max_age_honoured(worker, idp):
    idp.max_age = 3
    r = fetch(worker)
    assert r.status == 200 and 2 <= r.max_age <= 3, r
    for _ in range(10):
        assert fetch(worker).status == 200
    # nothing new before 4/5 of 3 s
    assert idp.count("/jwks") == 1


def test_max_age_clamped_up_to_min_refresh(start_worker, idp, secret_file):
    idp.max_age = 0        # "max-age=0": as no-cache
    w = start_worker([idp_section("main", idp, secret_file,
                                  extra="min_refresh = 5s\n")])
    r = fetch(w)
    assert r.status == 200 and 4 <= r.max_age <= 5, r
    t = time.monotonic()
    while time.monotonic() - t < 1.0:
        assert fetch(w).status == 200
    assert idp.count("/jwks") == 1


def test_max_age_clamped_down_to_cap(start_worker, idp, secret_file):
    idp.max_age = 3600
    w = start_worker([idp_section("main", idp, secret_file,
                                  extra="min_refresh = 1s\n"
                                        "max_age_cap = 2s\n")])
    r = fetch(w)
    assert r.status == 200 and r.max_age <= 2, r
    # refreshed at 4/5 of 2 s, by the timer, with no FETCH asking
    wait_count(idp, "/jwks", 2, seconds=4)
    gap = idp.requests("/jwks")[1]["time"] - idp.requests("/jwks")[0]["time"]
    assert 1.3 <= gap < 2.0, gap


def test_refresh_before_expiry_shows_rotation(worker, idp):
    idp.max_age = 2
    r = fetch(worker)
    old = r.kids()
    new = idp.rotate()
    first = idp.requests("/jwks")[0]["time"]
    wait_count(idp, "/jwks", 2, seconds=4)
    second = idp.requests("/jwks")[1]["time"]
    # before the 2 s were over: at 4/5 of them
    assert 1.3 <= second - first < 2.0, second - first
    r = fetch(worker)
    assert r.status == 200 and not r.stale, r
    assert new in r.kids() and set(old) < set(r.kids())
    assert r.age <= 1
    # retired keys go at the next refresh
    idp.retire(old[0])
    wait_count(idp, "/jwks", 3, seconds=4)
    vh.wait_for(lambda: old[0] not in fetch(worker).kids(), 2,
                what="the retired key to go")


@pytest.mark.parametrize("mode", ["500", "invalid", "down", "stopped",
                                  "empty"])
def test_stale_if_error(worker, idp, mode):
    idp.max_age = 1
    good = fetch(worker)
    assert good.status == 200 and not good.stale, good
    if mode == "stopped":
        idp.stop()
    elif mode == "empty":
        idp.retire(idp.kids()[0])
        idp.retire(idp.kids()[0])
    else:
        idp.fail("/jwks", mode)
    time.sleep(1.3)
    r = fetch(worker)
    assert r.status == 200, r
    assert r.stale is True and r.max_age == 0 and r.age >= 1, r
    assert r.raw == good.raw
    assert r.error in ("the identity provider answered 500",
                       "the identity provider's key set is not valid",
                       "cannot reach the identity provider"), r
    outcome = {"500": "http_error", "invalid": "invalid", "empty": "invalid",
               "down": "unreachable", "stopped": "unreachable"}[mode]
    assert fetch_lines(worker, outcome=outcome), worker.log_tail()

    # the provider comes back: a fresh set again, without a restart
    if mode == "stopped":
        idp.start()
    elif mode == "empty":
        idp.rotate()
    else:
        idp.up()
    vh.wait_for(lambda: not fetch(worker).stale, 5,
                what="a fresh key set after the provider came back")


def test_no_set_yet_and_provider_down(worker, idp):
    idp.fail("/jwks", "500")
    r = fetch(worker)
    assert r.status == 502 and r.raw is None, r
    assert r.error == "the identity provider answered 500"
    # asked again at once: the failure is remembered, the provider spared
    n = idp.count("/jwks")
    assert fetch(worker).status == 502
    assert idp.count("/jwks") == n


def test_untrusted_certificate(start_worker, pki, tmp, secret_file):
    bad = IdP(directory=vh.make_dir(os.path.join(tmp, "bad")),
              untrusted=True)
    try:
        # the harness's CA, which did not sign the provider's certificate
        w = start_worker([idp_section("bad", bad, secret_file,
                                      ca_file=pki.ca_file)])
        r = fetch(w, idp="bad")
        assert r.status == 502 and r.raw is None, r
        assert r.error == "cannot reach the identity provider"
        # no HTTP request got through the handshake
        assert bad.count(WELL_KNOWN) == 0
        lines = fetch_lines(w, outcome="unreachable", idp="bad")
        assert lines and "certificate" in lines[0]["reason"].lower(), lines
        # introspection is refused the same way
        r = fetch(w, idp="bad", kind="introspect", token=TOKENS[0])
        assert r.status == 502, r
        assert bad.count("/introspect") == 0
    finally:
        bad.stop()


def test_single_flight(worker, idp):
    idp.fail(WELL_KNOWN, ("delay", 0.5))
    clients = [wh.FrameClient(worker.socket_path) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            c.send_frame(FETCH, 100 + i, fetch_fields())
        replies = [Reply(c.recv_frame(5)) for c in clients]
    finally:
        for c in clients:
            c.close()
    assert [r.status for r in replies] == [200] * 20, replies
    assert len({r.raw for r in replies}) == 1
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1


def test_provider_slow_timeout_504(worker, idp):
    idp.fail("/jwks", ("delay", 2.5))
    t = time.monotonic()
    r = fetch(worker)
    assert r.status == 504, r
    assert r.error == "the identity provider did not answer in time"
    assert time.monotonic() - t < 2.4
    assert fetch_lines(worker, outcome="timeout", kind="jwks")


# --------------------------------------------------------------------------
# refresh on demand: MAX_AGE in the request (a kid the module did not find)

@pytest.fixture
def slow_worker(start_worker, idp, secret_file):
    """[idp main] whose sets live 5 min (min_refresh 60 s, the provider's
    max-age 300): no scheduled refresh during a test."""
    return start_worker([idp_section("main", idp, secret_file,
                                     extra="min_refresh = 60s\n")])


def concurrent_fetches(worker, n, **kw):
    clients = [wh.FrameClient(worker.socket_path) for _ in range(n)]
    try:
        for i, c in enumerate(clients):
            c.send_frame(FETCH, 200 + i, fetch_fields(**kw))
        return [Reply(c.recv_frame(5)) for c in clients]
    finally:
        for c in clients:
            c.close()


@pytest.mark.timing
def test_max_age_refreshes_once_per_interval(slow_worker, idp):
    """MAX_AGE asks for a refresh on demand: one per MAX_AGE seconds,
    whatever the set's age (a key published just after a scheduled
    refresh is found), never of a set under a second old."""
    w = slow_worker
    first = fetch(w)
    fetched = time.monotonic()
    assert first.status == 200 and first.age == 0, first
    assert fetch(w).raw == first.raw
    assert idp.count("/jwks") == 1

    # under a second old: MAX_AGE 1, 0 (taken as 1) and 30 change nothing
    for max_age in (1, 0, 30):
        r = fetch(w, max_age=max_age)
        assert r.status == 200 and r.raw == first.raw, r
    assert time.monotonic() - fetched < 1.0, "too slow to test this"
    assert idp.count("/jwks") == 1

    # a key the provider has and the set has not: ten FETCHes at once
    # with MAX_AGE 30 (no refresh on demand yet), one request, all see it
    new = idp.rotate()
    assert new not in fetch(w).kids()
    time.sleep(max(0.0, 1.2 - (time.monotonic() - fetched)))
    idp.fail("/jwks", ("delay", 0.3))
    replies = concurrent_fetches(w, 10, max_age=30)
    demanded = time.monotonic()
    assert [r.status for r in replies] == [200] * 10, replies
    assert all(new in r.kids() and r.age == 0 and not r.stale
               and r.error is None for r in replies), replies
    assert len({r.raw for r in replies}) == 1
    assert idp.count("/jwks") == 2
    assert idp.count(WELL_KNOWN) == 2     # the discovery read again with it
    idp.up()

    # another new key a second later: MAX_AGE 30 waits its interval out,
    # MAX_AGE 1 (over a second since the last on demand) does not
    newer = idp.rotate()
    time.sleep(max(0.0, 1.2 - (time.monotonic() - demanded)))
    r = fetch(w, max_age=30)
    assert r.status == 200 and r.raw == replies[0].raw, r
    assert idp.count("/jwks") == 2
    r = fetch(w, max_age=1)
    assert r.status == 200 and newer in r.kids(), r
    assert idp.count("/jwks") == 3
    assert [l["kind"] for l in fetch_lines(w, outcome="ok")] == \
        ["discovery", "jwks"] * 3


def test_max_age_discovery_and_by_url(slow_worker, idp):
    """MAX_AGE with kind discovery, and a provider named by URL: the same
    set, refreshed once for both."""
    w = slow_worker
    d = fetch(w, kind="discovery")
    assert d.status == 200, d
    new = idp.rotate()
    time.sleep(1.2)
    d = fetch(w, idp=idp.url, kind="discovery", max_age=1)
    assert d.status == 200 and d.age == 0, d
    assert d.json["jwks_uri"] == idp.url + "/jwks"
    assert (idp.count(WELL_KNOWN), idp.count("/jwks")) == (2, 2)
    r = fetch(w, max_age=1)
    assert r.status == 200 and new in r.kids(), r
    assert (idp.count(WELL_KNOWN), idp.count("/jwks")) == (2, 2)


def test_max_age_waits_out_a_failure_backoff(slow_worker, idp):
    """A refresh on demand that fails keeps the set (still fresh: no
    STALE), and until the retry a MAX_AGE does not call the provider."""
    w = slow_worker
    good = fetch(w)
    assert good.status == 200, good
    time.sleep(1.2)
    idp.fail("/jwks", "500")
    r = fetch(w, max_age=1)
    assert r.status == 200 and r.raw == good.raw, r
    assert not r.stale and r.error is None and r.age >= 1, r
    assert idp.count("/jwks") == 2
    # the backoff (1 s) is pending: answered from memory
    r = fetch(w, max_age=1)
    assert r.status == 200 and r.raw == good.raw, r
    assert idp.count("/jwks") == 2
    assert len(fetch_lines(w, outcome="http_error", kind="jwks")) == 1


def test_max_age_without_a_set_is_a_plain_fetch(slow_worker, idp):
    r = fetch(slow_worker, max_age=1)
    assert r.status == 200 and r.age == 0, r
    assert r.kids() == sorted(idp.kids())
    assert idp.count("/jwks") == 1
    assert fetch(slow_worker, max_age=1).raw == r.raw
    assert idp.count("/jwks") == 1


# --------------------------------------------------------------------------
# a provider named by URL, as the module's directives name it

def test_by_discovery_url(worker, idp):
    r = fetch(worker, idp=idp.url)
    assert r.status == 200, r
    assert r.kids() == sorted(idp.kids())
    assert r.stale is False and r.error is None
    d = fetch(worker, idp=idp.url, kind="discovery")
    assert d.status == 200, d
    assert d.json["issuer"] == idp.issuer
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1
    # logged under the section's name, never the URL's path
    lines = fetch_lines(worker, outcome="ok")
    assert [(l["idp"], l["kind"]) for l in lines] == \
        [("main", "discovery"), ("main", "jwks")], lines


def test_by_jwks_url(start_worker, idp, secret_file):
    w = start_worker([idp_section("direct", idp, secret_file,
                                  discovery=False)])
    r = fetch(w, idp=idp.url + "/jwks")
    assert r.status == 200 and r.kids() == sorted(idp.kids()), r
    assert idp.count(WELL_KNOWN) == 0 and idp.count("/jwks") == 1
    # the section has no discovery, whatever it is named by
    r = fetch(w, idp=idp.url + "/jwks", kind="discovery")
    assert (r.status, r.error) == \
        (400, "the identity provider has no discovery configured"), r


def test_by_introspection_url(worker, idp):
    r = fetch(worker, idp=idp.url + "/introspect", kind="introspect",
              token=TOKENS[0])
    assert r.status == 200, r
    assert r.json["active"] is True and r.json["sub"] == "advisor-42"
    rec = idp.requests("/introspect")[-1]
    assert rec["client"] == ("client_secret_basic", "vantage", CLIENT_SECRET)
    assert fetch_lines(worker, kind="introspect", outcome="ok",
                       idp="main")


@pytest.mark.parametrize("path,kind", [
    ("/introspect", "jwks"),            # introspection_url, for a key set
    ("/introspect", "discovery"),
    ("", "introspect"),                 # discovery, for introspection
    ("/", "jwks"),                      # not byte for byte
    ("/jwks", "jwks"),                  # this section has discovery
    ("/.well-known/openid-configuration", "jwks"),
])
def test_url_of_another_kind_is_404(worker, idp, path, kind):
    r = fetch(worker, idp=idp.url + path, kind=kind,
              token=TOKENS[0] if kind == "introspect" else None)
    assert (r.status, r.error, r.raw) == \
        (404, "no such identity provider", None), r
    assert idp.requests() == []


def test_url_of_a_host_not_listed_is_404(worker, idp):
    r = fetch(worker, idp=idp.url.replace("127.0.0.1", "localhost"))
    assert (r.status, r.error) == (404, "no such identity provider"), r
    assert idp.requests() == []


def test_name_and_url_share_one_key_set(worker, idp):
    by_name = fetch(worker)
    assert by_name.status == 200, by_name
    by_url = fetch(worker, idp=idp.url)
    assert by_url.status == 200 and by_url.raw == by_name.raw, by_url
    assert fetch(worker, kind="discovery").status == 200
    assert fetch(worker, idp=idp.url, kind="discovery").status == 200
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1


def test_name_and_url_share_one_flight(worker, idp):
    idp.fail(WELL_KNOWN, ("delay", 0.5))
    clients = [wh.FrameClient(worker.socket_path) for _ in range(10)]
    try:
        for i, c in enumerate(clients):
            c.send_frame(FETCH, 100 + i,
                         fetch_fields(idp="main" if i % 2 else idp.url))
        replies = [Reply(c.recv_frame(5)) for c in clients]
    finally:
        for c in clients:
            c.close()
    assert [r.status for r in replies] == [200] * 10, replies
    assert len({r.raw for r in replies}) == 1
    assert idp.count(WELL_KNOWN) == 1 and idp.count("/jwks") == 1


# --------------------------------------------------------------------------
# introspection

def test_introspect_basic(worker, idp):
    r = fetch(worker, kind="introspect", token=TOKENS[0])
    assert r.status == 200, r
    assert r.json["active"] is True
    assert r.json["sub"] == "advisor-42" and r.json["scope"] == "read write"
    assert r.json["client_id"] == "advisor-app"
    assert r.json["exp"] > time.time()
    assert r.age is None and not r.stale
    rec = idp.requests("/introspect")[-1]
    assert rec["client"] == ("client_secret_basic", "vantage", CLIENT_SECRET)
    assert rec["form"] == {"token": TOKENS[0]}
    assert rec["headers"]["content-type"] == \
        "application/x-www-form-urlencoded"

    for token in TOKENS[1:]:
        r = fetch(worker, kind="introspect", token=token)
        assert r.status == 200 and r.json == {"active": False}, r

    lines = fetch_lines(worker, kind="introspect", outcome="ok")
    assert len(lines) == 3


def test_introspect_post(start_worker, idp, secret_file):
    w = start_worker([idp_section("post", idp, secret_file,
                                  extra="auth = client_secret_post\n")])
    r = fetch(w, idp="post", kind="introspect", token=TOKENS[0])
    assert r.status == 200 and r.json["active"] is True, r
    rec = idp.requests("/introspect")[-1]
    assert "authorization" not in rec["headers"]
    assert rec["client"] == ("client_secret_post", "vantage", CLIENT_SECRET)
    assert rec["form"] == {"token": TOKENS[0], "client_id": "vantage",
                           "client_secret": CLIENT_SECRET}


def test_introspect_wrong_secret(start_worker, idp, tmp):
    wrong = vh.write_file(os.path.join(tmp, "wrong"), "not-the-secret\n",
                          mode=0o600)
    w = start_worker([idp_section("main", idp, wrong)])
    r = fetch(w, kind="introspect", token=TOKENS[0])
    assert r.status == 502, r
    assert r.error == ("the identity provider refused the worker's client "
                       "credentials (401)")
    assert "not-the-secret" not in w.log_text()


@pytest.mark.parametrize("mode,status,error", [
    ("down", 502, "cannot reach the identity provider"),
    ("500", 502, "the identity provider answered 500"),
    ("invalid", 502, "the identity provider's introspection answer is not "
                     "valid"),
    (("delay", 2.5), 504, "the identity provider did not answer in time"),
])
def test_introspect_failures(worker, idp, mode, status, error):
    idp.fail("/introspect", mode)
    r = fetch(worker, kind="introspect", token=TOKENS[0])
    assert (r.status, r.error, r.raw) == (status, error, None), r


# --------------------------------------------------------------------------
# the request

@pytest.mark.parametrize("fields,status,error", [
    (fetch_fields(idp="nope"), 404, "no such identity provider"),
    (fetch_fields(idp=None), 400,
     "the idp is missing or not [A-Za-z0-9._-]{1,128} or an https:// URL"),
    (fetch_fields(idp="http://127.0.0.1/jwks"), 400,
     "the idp is missing or not [A-Za-z0-9._-]{1,128} or an https:// URL"),
    (fetch_fields(idp="https://"), 400,
     "the idp is missing or not [A-Za-z0-9._-]{1,128} or an https:// URL"),
    (fetch_fields(idp="https://idp/a b"), 400,
     "the idp is missing or not [A-Za-z0-9._-]{1,128} or an https:// URL"),
    (fetch_fields(idp="https://idp/" + "k" * 4085), 400,
     "the idp is missing or not [A-Za-z0-9._-]{1,128} or an https:// URL"),
    (fetch_fields(idp="https://idp/" + "k" * 4084), 404,
     "no such identity provider"),
    (fetch_fields(kind=None), 400,
     "the fetch kind is missing or not jwks, discovery or introspect"),
    (fetch_fields(kind="keys"), 400,
     "the fetch kind is missing or not jwks, discovery or introspect"),
    (fetch_fields(token="x"), 400, "a token is for introspect only"),
    (fetch_fields(kind="introspect"), 400, "introspect needs a token"),
    (fetch_fields(kind="introspect", token="a b"), 400,
     "the token holds a byte that is not printable ASCII"),
    (fetch_fields(kind="introspect", token="t" * 16385), 400,
     "the token is missing or longer than 16384 bytes"),
    (fetch_fields() + [(T_IDP, "main")], 400, "a field given twice"),
    (fetch_fields(kind="introspect", token="t", max_age=1), 400,
     "a max age is for jwks and discovery only"),
    (fetch_fields() + [(T_MAX_AGE, b"\x00\x01")], 400,
     "the max age is not a 4-byte integer"),
    (fetch_fields() + [(T_MAX_AGE, b"")], 400,
     "the max age is not a 4-byte integer"),
    (fetch_fields() + [(T_MAX_AGE, b"\x00\x00\x00\x00\x01")], 400,
     "the max age is not a 4-byte integer"),
    (fetch_fields(max_age=1) + [(T_MAX_AGE, wh.u32(1))], 400,
     "a field given twice"),
    (fetch_fields(max_age=0xFFFFFFFF), 200, None),
    (fetch_fields() + [(63, "x")], 400, None),
    (fetch_fields() + [(63 | OPTIONAL, "x")], 200, None),
])
def test_request_errors(worker, idp, fields, status, error):
    with wh.FrameClient(worker.socket_path) as c:
        r = c.request(FETCH, 9, fields, 5)
        assert r.status == status, r
        if error is not None:
            assert r.error == error, r
        # the connection stays usable
        assert c.ping(10).status == 200


def test_introspect_not_configured(start_worker, idp, secret_file):
    w = start_worker(["[idp keys]\ndiscovery = %s\nca_file = %s\n"
                      % (idp.url, idp.ca_file)])
    r = fetch(w, idp="keys", kind="introspect", token=TOKENS[0])
    assert r.status == 400, r
    assert r.error == "the identity provider has no introspection configured"
    assert fetch(w, idp="keys").status == 200


def test_peer_gone_before_the_answer(worker, idp):
    """A FETCH whose connection closes while the provider is slow: the
    worker drops the answer and keeps serving."""
    idp.fail(WELL_KNOWN, ("delay", 0.5))
    c = wh.FrameClient(worker.socket_path)
    c.send_frame(FETCH, 1, fetch_fields())
    c.close()
    time.sleep(0.8)
    idp.up()
    r = fetch(worker)
    assert r.status == 200, r
    assert worker.running()
