"""test_fake_hubspot.py -- tests/fakes/hubspot against HubSpot's wire format.

The HubSpot connector will be written and tested against this emulator, so
it has to answer as HubSpot does.  These tests check it on its own,
without nginx or the worker: its answers against bodies HubSpot publishes
(tests/fakes/hubspot/fixtures, same keys, JSON types and statuses), and
every flow a connector relies on with exact assertions: private-app and
OAuth tokens and their expiry, CRM objects one by one and in batches (a
207 for an upsert with one bad input), paging through 250 contacts, search
with each operator, associations, the rate-limit headers and a 429 for
each policyName, webhook batches whose signatures are checked with
Python's hmac and hashlib, not with the emulator's own signing code, and
the standalone process and its controls.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

import vantage_harness as vh

FAKES = os.path.join(vh.REPO, "tests", "fakes")
sys.path.insert(0, FAKES)
from hubspot import HubSpot             # noqa: E402

FIXTURES = os.path.join(FAKES, "hubspot", "fixtures")
CONTACTS = "/crm/v3/objects/contacts"
RATE_HEADERS = ("x-hubspot-ratelimit-daily",
                "x-hubspot-ratelimit-daily-remaining",
                "x-hubspot-ratelimit-interval-milliseconds",
                "x-hubspot-ratelimit-max", "x-hubspot-ratelimit-remaining",
                "x-hubspot-ratelimit-secondly",
                "x-hubspot-ratelimit-secondly-remaining")


# --------------------------------------------------------------------------
# helpers

@pytest.fixture
def hs(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="hubspot-", dir=base_dir))
    h = HubSpot(pki=pki, directory=d)
    yield h
    h.stop()
    assert h.internal_errors == [], "\n".join(h.internal_errors)


class Answer:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.body = json.loads(raw) if raw else None

    def rate(self):
        """The X-HubSpot-RateLimit-* headers, as ints, lower-case names"""
        return {k: int(v) for k, v in self.headers.items()
                if k.startswith("x-hubspot-ratelimit-")}


def call(hs, method, path, body=None, token=None, form=None, headers=None,
         cafile=None):
    """One call over a new TLS connection trusting hs's CA.  token: None
    for the private app's, False for no Authorization header."""
    ctx = ssl.create_default_context(cafile=cafile or hs.ca_file)
    c = http.client.HTTPSConnection("127.0.0.1", hs.port, context=ctx,
                                    timeout=vh.timeout(10))
    h = dict(headers or {})
    if token is not False:
        h["Authorization"] = "Bearer " + (token or hs.token)
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()},
                      raw)
    finally:
        c.close()


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def _kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return "null"


def assert_shape(got, doc, required=None, where="$"):
    """got has doc's shape: no key doc lacks, and for the keys both have
    the same JSON type, recursively.  required: {path: keys got must have
    there}, a path like "$.results[]" ("$" alone: required keys at the
    top).  An empty documented object ({} for context, links) and
    "properties" are free-form maps.  The reference's rendering of a map
    as a string ("{missingScopes=[...]}") stands for an object."""
    if isinstance(required, (tuple, list)):
        required = {"$": required}
    required = required or {}
    if isinstance(doc, str) and doc.startswith("{") and isinstance(got,
                                                                   dict):
        return
    if doc is None:
        return
    assert _kind(got) == _kind(doc), "%s: %r is not a %s like %r" % (
        where, got, _kind(doc), doc)
    if isinstance(doc, dict):
        missing = [k for k in required.get(re.sub(r"\[\d+\]", "[]", where),
                                           ()) if k not in got]
        assert not missing, "%s: required keys missing: %s" % (where,
                                                               missing)
        if where.endswith(".properties"):
            for k, v in got.items():
                assert v is None or isinstance(v, str), (where, k, v)
            return
        if not doc:
            return
        extra = set(got) - set(doc)
        assert not extra, "%s: keys HubSpot does not send: %s" % (
            where, sorted(extra))
        for k in got:
            assert_shape(got[k], doc[k], required, "%s.%s" % (where, k))
    elif isinstance(doc, list) and doc:
        for i, item in enumerate(got):
            assert_shape(item, doc[0], required, "%s[%d]" % (where, i))


OBJECT_REQUIRED = ("archived", "createdAt", "id", "properties", "updatedAt")
ERROR_REQUIRED = ("status", "category", "message")


def batch_required(errors=False, extra=()):
    """What a batch answer must hold: its envelope, each result an object
    (with extra), each error entry a HubSpot error."""
    out = {"$": ("status", "results", "startedAt", "completedAt")
           + (("numErrors", "errors") if errors else ()),
           "$.results[]": OBJECT_REQUIRED + tuple(extra)}
    if errors:
        out["$.errors[]"] = ERROR_REQUIRED + ("context",)
    return out


def create(hs, props, otype="contacts", token=None):
    a = call(hs, "POST", "/crm/v3/objects/" + otype,
             {"properties": props}, token)
    assert a.status == 201, a.body
    return a.body


def assert_error(a, status, category, message=None):
    assert a.status == status, a.body
    assert a.body["status"] == "error"
    assert a.body["category"] == category
    assert a.body["correlationId"] == a.headers["x-hubspot-correlation-id"]
    if message is not None:
        assert a.body["message"] == message


def verify_v3(secret, method, uri, body, timestamp):
    """HubSpot's v3 recipe, independently: base64 of HMAC-SHA256 over
    method + URI + body + timestamp, keyed by the client secret."""
    mac = hmac.new(secret.encode(), method.encode() + uri.encode() + body
                   + timestamp.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


# --------------------------------------------------------------------------
# transport

def test_https_with_the_test_ca(hs, pki):
    a = call(hs, "GET", CONTACTS, cafile=pki.ca_file)
    assert a.status == 200
    assert a.headers["content-type"] == "application/json;charset=utf-8"


def test_wrong_ca_is_refused(hs, base_dir):
    other = HubSpot(directory=vh.make_dir(tempfile.mkdtemp(
        prefix="hubspot-other-", dir=base_dir)), start=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        call(hs, "GET", CONTACTS, cafile=other.ca_file)
    assert hs.count() == 0


def test_plain_http_gets_no_answer(hs):
    c = http.client.HTTPConnection("127.0.0.1", hs.port,
                                   timeout=vh.timeout(5))
    with pytest.raises((http.client.HTTPException, OSError)):
        c.request("GET", CONTACTS)
        c.getresponse().read()
    c.close()


def test_chunked_request_body(hs):
    ctx = ssl.create_default_context(cafile=hs.ca_file)
    c = http.client.HTTPSConnection("127.0.0.1", hs.port, context=ctx,
                                    timeout=vh.timeout(10))
    body = json.dumps({"properties": {"email": "chunk@example.com"}})
    c.request("POST", CONTACTS, body=iter([body[:10].encode(),
                                           body[10:].encode()]),
              headers={"Authorization": "Bearer " + hs.token,
                       "Content-Type": "application/json",
                       "Transfer-Encoding": "chunked"},
              encode_chunked=True)
    r = c.getresponse()
    got = json.loads(r.read())
    assert r.status == 201, got
    assert got["properties"]["email"] == "chunk@example.com"
    # the connection is still in step
    c.request("GET", CONTACTS, headers={"Authorization": "Bearer " +
                                        hs.token})
    r = c.getresponse()
    assert r.status == 200 and len(json.loads(r.read())["results"]) == 1
    c.close()


def test_unknown_route_and_method(hs):
    a = call(hs, "GET", "/crm/v3/nothing/here")
    assert a.status == 404 and a.body["status"] == "error"
    a = call(hs, "PUT", CONTACTS)
    assert a.status == 405


# --------------------------------------------------------------------------
# authentication

def test_private_app_token(hs):
    assert hs.token.startswith("pat-na1-")
    a = call(hs, "GET", CONTACTS)
    assert (a.status, a.body) == (200, {"results": []})


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_no_or_unknown_credentials(hs, headers):
    a = call(hs, "GET", CONTACTS, token=False, headers=headers)
    assert_error(a, 401, "INVALID_AUTHENTICATION",
                 fixture("error_no_credentials_401.json")["message"])
    assert set(a.body) == set(fixture("error_no_credentials_401.json"))
    assert a.headers["x-hubspot-auth-failure"] == "401 Unauthorized"
    # no app is known: nothing is counted, no limit headers
    assert not a.rate()


def test_revoked_private_app_token(hs):
    hs.auth.revoke(hs.token)
    assert_error(call(hs, "GET", CONTACTS), 401, "INVALID_AUTHENTICATION")


def oauth_form(hs, **kw):
    form = {"client_id": hs.oauth_app.client_id,
            "client_secret": hs.oauth_app.client_secret}
    form.update(kw)
    return form


@pytest.mark.parametrize("endpoint", ["/oauth/v1/token",
                                      "/oauth/2026-03/token",
                                      "/oauth/v3/token"])
def test_oauth_code_then_refresh(hs, endpoint):
    code = hs.authorization_code()
    a = call(hs, "POST", endpoint, token=False, form=oauth_form(
        hs, grant_type="authorization_code", code=code,
        redirect_uri=hs.oauth_app.redirect_uri))
    assert a.status == 200, a.body
    assert_shape(a.body, fixture("oauth_token_200.json"),
                 required=("access_token", "refresh_token", "expires_in",
                           "token_type"))
    assert a.body["token_type"] == "bearer"
    assert a.body["expires_in"] == 1800
    assert len(a.body["access_token"]) <= 300
    first = a.body
    assert call(hs, "GET", CONTACTS, token=first["access_token"]).status \
        == 200

    # the code is single-use
    again = call(hs, "POST", endpoint, token=False, form=oauth_form(
        hs, grant_type="authorization_code", code=code,
        redirect_uri=hs.oauth_app.redirect_uri))
    assert (again.status, again.body["status"]) == (400, "BAD_AUTH_CODE")
    assert again.body["error"] == "invalid_grant"

    a = call(hs, "POST", endpoint, token=False, form=oauth_form(
        hs, grant_type="refresh_token",
        refresh_token=first["refresh_token"]))
    assert a.status == 200, a.body
    assert a.body["access_token"] != first["access_token"]
    assert a.body["refresh_token"] == first["refresh_token"]
    assert call(hs, "GET", CONTACTS, token=a.body["access_token"]).status \
        == 200


def test_oauth_v1_takes_query_parameters(hs):
    query = urllib.parse.urlencode(oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    a = call(hs, "POST", "/oauth/v1/token?" + query, token=False, form={})
    assert a.status == 200, a.body
    a = call(hs, "POST", "/oauth/2026-03/token?" + query, token=False,
             form={})
    assert a.status == 400


def test_bad_refresh_token(hs):
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token="nope"))
    assert a.status == 400
    assert a.body == fixture("oauth_error_bad_refresh_token.json")
    rt = hs.refresh_token()
    assert call(hs, "DELETE", "/oauth/v1/refresh-tokens/" + rt,
                token=False).status == 204
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=rt))
    assert a.body["status"] == "BAD_REFRESH_TOKEN"


@pytest.mark.parametrize("change,status,error", [
    ({"client_id": "someone-else"}, "BAD_CLIENT_ID", "invalid_client"),
    ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET", "invalid_client"),
    ({"grant_type": "password"}, "BAD_GRANT_TYPE", "unsupported_grant_type"),
    ({"redirect_uri": "https://evil.example/cb"}, "BAD_REDIRECT_URI",
     "invalid_grant"),
])
def test_token_endpoint_refusals(hs, change, status, error):
    form = oauth_form(hs, grant_type="authorization_code",
                      code=hs.authorization_code(),
                      redirect_uri=hs.oauth_app.redirect_uri)
    form.update(change)
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=form)
    assert a.status == 400
    assert set(a.body) == {"error", "error_description", "status", "message"}
    assert (a.body["status"], a.body["error"]) == (status, error)
    assert "access_token" not in a.body


def test_expired_access_token(hs):
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    token = a.body["access_token"]
    assert call(hs, "GET", CONTACTS, token=token).status == 200
    hs.expire(token)
    a = call(hs, "GET", CONTACTS, token=token)
    assert_error(a, 401, "EXPIRED_AUTHENTICATION")
    assert set(a.body) == set(fixture("error_expired_token_401.json"))
    assert a.body["message"].startswith(
        "The OAuth token used to make this call expired ")
    assert a.body["message"].endswith(" second(s) ago.")
    assert list(a.body["context"]) == ["expire time"]
    # a refresh mends it; the private app's token never expires
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    assert call(hs, "GET", CONTACTS, token=a.body["access_token"]).status \
        == 200
    hs.expire()
    assert call(hs, "GET", CONTACTS).status == 200


def test_token_lifetime_elapses(hs):
    hs.auth.token_lifetime = 1
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    assert a.body["expires_in"] == 1
    time.sleep(1.2)
    assert_error(call(hs, "GET", CONTACTS, token=a.body["access_token"]),
                 401, "EXPIRED_AUTHENTICATION")


def test_access_token_metadata(hs):
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    info = call(hs, "GET", "/oauth/v1/access-tokens/" +
                a.body["access_token"], token=False)
    assert info.status == 200
    assert info.body["hub_id"] == hs.portal_id
    assert info.body["app_id"] == hs.oauth_app.app_id
    assert info.body["token_type"] == "access"
    assert 1795 <= info.body["expires_in"] <= 1800


def test_missing_scope(hs):
    code = hs.authorization_code(scopes=["oauth",
                                         "crm.objects.contacts.read"])
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="authorization_code", code=code,
        redirect_uri=hs.oauth_app.redirect_uri))
    token = a.body["access_token"]
    assert call(hs, "GET", CONTACTS, token=token).status == 200
    a = call(hs, "POST", CONTACTS, {"properties": {"email": "a@x.io"}},
             token=token)
    assert_error(a, 403, "MISSING_SCOPES")
    assert a.body["errors"][0]["context"] == {
        "requiredGranularScopes": ["crm.objects.contacts.write"]}


# --------------------------------------------------------------------------
# rate limits

def test_private_app_rate_headers_count_down(hs):
    hs.limits.configure("private", daily=1000, burst=50, secondly=10)
    for n in range(1, 4):
        a = call(hs, "GET", CONTACTS)
        assert a.rate() == {
            "x-hubspot-ratelimit-daily": 1000,
            "x-hubspot-ratelimit-daily-remaining": 1000 - n,
            "x-hubspot-ratelimit-interval-milliseconds": 10000,
            "x-hubspot-ratelimit-max": 50,
            "x-hubspot-ratelimit-remaining": 50 - n,
            "x-hubspot-ratelimit-secondly": 10,
            "x-hubspot-ratelimit-secondly-remaining": 10 - n}, n


def test_oauth_calls_have_no_daily_headers(hs):
    a = call(hs, "POST", "/oauth/v1/token", token=False, form=oauth_form(
        hs, grant_type="refresh_token", refresh_token=hs.refresh_token()))
    # the token endpoint is not rate limited
    assert not a.rate()
    a = call(hs, "GET", CONTACTS, token=a.body["access_token"])
    assert a.rate() == {
        "x-hubspot-ratelimit-interval-milliseconds": 10000,
        "x-hubspot-ratelimit-max": 110,
        "x-hubspot-ratelimit-remaining": 109,
        "x-hubspot-ratelimit-secondly": 10,
        "x-hubspot-ratelimit-secondly-remaining": 9}


def assert_429(a, policy, fixture_name):
    assert a.status == 429, a.body
    doc = fixture(fixture_name)
    assert a.body["policyName"] == policy
    assert a.body["message"] == doc["message"]
    assert a.body["errorType"] == "RATE_LIMIT"
    assert a.body["correlationId"] == a.headers["x-hubspot-correlation-id"]
    # the documented DAILY form for every policy (fixtures/README.md)
    assert set(a.body) == set(fixture("ratelimit_daily_429.json"))
    assert_shape(a.body, dict(doc, requestId="<string>"))


def test_ten_secondly_burst(hs):
    hs.limits.configure("private", burst=3, interval_ms=1000)
    for n in range(3):
        assert call(hs, "GET", CONTACTS).status == 200
    a = call(hs, "GET", CONTACTS)
    assert_429(a, "TEN_SECONDLY_ROLLING", "ratelimit_ten_secondly_429.json")
    assert a.rate()["x-hubspot-ratelimit-remaining"] == 0
    assert a.rate()["x-hubspot-ratelimit-max"] == 3
    assert a.rate()["x-hubspot-ratelimit-interval-milliseconds"] == 1000
    # refused calls are not counted against the day
    assert a.rate()["x-hubspot-ratelimit-daily-remaining"] == 250000 - 3
    time.sleep(1.1)
    a = call(hs, "GET", CONTACTS)
    assert a.status == 200
    assert a.rate()["x-hubspot-ratelimit-remaining"] == 2


def test_daily_cap(hs):
    hs.limits.configure("private", daily=2)
    assert call(hs, "GET", CONTACTS).status == 200
    a = call(hs, "GET", CONTACTS)
    assert a.rate()["x-hubspot-ratelimit-daily-remaining"] == 0
    a = call(hs, "GET", CONTACTS)
    assert_429(a, "DAILY", "ratelimit_daily_429.json")
    assert a.body == dict(fixture("ratelimit_daily_429.json"),
                          correlationId=a.body["correlationId"],
                          requestId=a.body["requestId"])
    hs.limits.new_day()
    assert call(hs, "GET", CONTACTS).status == 200


def test_secondly_when_enforced(hs):
    hs.limits.configure("private", secondly=2, enforce_secondly=True)
    assert call(hs, "GET", CONTACTS).status == 200
    assert call(hs, "GET", CONTACTS).status == 200
    a = call(hs, "GET", CONTACTS)
    assert_429(a, "SECONDLY", "ratelimit_secondly_429.json")
    assert a.rate()["x-hubspot-ratelimit-secondly-remaining"] == 0
    time.sleep(1.05)
    assert call(hs, "GET", CONTACTS).status == 200


@pytest.mark.parametrize("policy,doc", [
    ("DAILY", "ratelimit_daily_429.json"),
    ("TEN_SECONDLY_ROLLING", "ratelimit_ten_secondly_429.json"),
    ("SECONDLY", "ratelimit_secondly_429.json")])
def test_exhaust_each_policy(hs, policy, doc):
    hs.limits.exhaust(policy, hs.auth.apps)
    a = call(hs, "GET", CONTACTS)
    assert_429(a, policy, doc)
    # the other app's budget is its own
    hs.limits.reset()
    assert call(hs, "GET", CONTACTS).status == 200


def test_search_has_its_own_per_second_limit(hs):
    hs.limits.configure("private", search_per_second=2)
    for _ in range(2):
        assert call(hs, "POST", CONTACTS + "/search", {}).status == 200
    a = call(hs, "POST", CONTACTS + "/search", {})
    assert_429(a, "SECONDLY", "ratelimit_secondly_429.json")
    # other calls go on
    assert call(hs, "GET", CONTACTS).status == 200


# --------------------------------------------------------------------------
# faults and the request log

def test_fail_next_calls(hs):
    hs.fail(2, 503)
    a = call(hs, "GET", CONTACTS)
    assert (a.status, a.body["status"]) == (503, "error")
    assert a.body["correlationId"] == a.headers["x-hubspot-correlation-id"]
    assert call(hs, "GET", CONTACTS).status == 503
    assert call(hs, "GET", CONTACTS).status == 200
    assert hs.count(CONTACTS, "GET") == 3
    assert [r.status for r in hs.requests(CONTACTS)] == [503, 503, 200]


def test_fail_by_path_and_delay_and_drop(hs):
    hs.fail(1, 502, path="/crm/v3/objects/deals")
    assert call(hs, "GET", CONTACTS).status == 200
    assert call(hs, "GET", "/crm/v3/objects/deals").status == 502
    hs.delay(0.5, n=1)
    t0 = time.monotonic()
    assert call(hs, "GET", CONTACTS).status == 200
    assert time.monotonic() - t0 >= 0.5
    hs.drop(1)
    with pytest.raises((http.client.HTTPException, OSError)):
        call(hs, "GET", CONTACTS)
    assert call(hs, "GET", CONTACTS).status == 200
    assert hs.counts() == {CONTACTS: 4, "/crm/v3/objects/deals": 1}


# --------------------------------------------------------------------------
# CRM objects, one at a time

def test_create_contact(hs):
    a = call(hs, "POST", CONTACTS, {"properties": {
        "email": "Ann@Example.com", "firstname": "Ann", "lastname": "Lee"}})
    assert a.status == 201
    assert_shape(a.body, fixture("create_contact_201.json"),
                 OBJECT_REQUIRED)
    c = a.body
    assert c["archived"] is False
    assert c["createdAt"] == c["updatedAt"]
    assert c["properties"] == {
        "createdate": c["createdAt"], "email": "Ann@Example.com",
        "firstname": "Ann", "hs_object_id": c["id"],
        "lastmodifieddate": c["createdAt"], "lastname": "Lee"}
    assert c["id"].isdigit()


def test_read_update_archive(hs):
    c = create(hs, {"email": "bo@example.com", "firstname": "Bo"})
    path = CONTACTS + "/" + c["id"]
    a = call(hs, "GET", path)
    assert a.status == 200
    assert_shape(a.body, fixture("create_contact_201.json"), OBJECT_REQUIRED)
    assert a.body["properties"] == {
        "createdate": c["createdAt"], "email": "bo@example.com",
        "firstname": "Bo", "hs_object_id": c["id"],
        "lastmodifieddate": c["createdAt"], "lastname": None}

    a = call(hs, "GET", path + "?properties=firstname,phone")
    assert a.body["properties"] == {"firstname": "Bo", "phone": None}

    time.sleep(0.01)
    a = call(hs, "PATCH", path, {"properties": {"lastname": "Ek",
                                                "firstname": ""}})
    assert a.status == 200
    assert_shape(a.body, fixture("create_contact_201.json"), OBJECT_REQUIRED)
    assert a.body["updatedAt"] > c["updatedAt"]
    assert a.body["properties"]["lastname"] == "Ek"
    assert "firstname" not in a.body["properties"]

    a = call(hs, "GET", CONTACTS + "/BO@example.com?idProperty=email"
             "&properties=lastname")
    assert (a.status, a.body["id"]) == (200, c["id"])
    assert a.body["properties"] == {"lastname": "Ek"}
    a = call(hs, "PATCH", CONTACTS + "/bo@example.com?idProperty=email",
             {"properties": {"phone": "+1 555 0100"}})
    assert a.body["properties"]["phone"] == "+1 555 0100"

    assert call(hs, "DELETE", path).status == 204
    assert_error(call(hs, "GET", path), 404, "OBJECT_NOT_FOUND",
                 "resource not found")
    a = call(hs, "GET", path + "?archived=true")
    assert a.status == 200 and a.body["archived"] is True
    assert "archivedAt" in a.body
    assert_shape(a.body, fixture("create_contact_201.json"), OBJECT_REQUIRED)


def test_not_found(hs):
    assert_error(call(hs, "GET", CONTACTS + "/999999"), 404,
                 "OBJECT_NOT_FOUND", "resource not found")
    a = call(hs, "GET", CONTACTS + "/abc")
    assert_error(a, 404, "OBJECT_NOT_FOUND",
                 "Object not found.  objectId are usually numeric.")
    assert a.body["context"] == {"id": ["abc"]}
    assert_error(call(hs, "PATCH", CONTACTS + "/999999",
                      {"properties": {"firstname": "x"}}),
                 404, "OBJECT_NOT_FOUND")
    # a company's id is not a contact's
    co = create(hs, {"name": "Acme"}, "companies")
    assert call(hs, "GET", CONTACTS + "/" + co["id"]).status == 404
    assert call(hs, "GET", "/crm/v3/objects/0-2/" + co["id"]).status == 200
    assert_error(call(hs, "GET", "/crm/v3/objects/widgets"), 404,
                 "OBJECT_NOT_FOUND",
                 "Unable to infer object type from: widgets")


def test_duplicate_email_is_409(hs):
    c = create(hs, {"email": "dup@example.com"})
    a = call(hs, "POST", CONTACTS,
             {"properties": {"email": "DUP@example.com"}})
    assert_error(a, 409, "CONFLICT",
                 "Contact already exists. Existing ID: %s" % c["id"])
    assert_shape(a.body, fixture("error_conflict_409.json"))
    assert set(a.body) == set(fixture("error_conflict_409.json"))
    # changing another contact's email to it is a conflict too
    other = create(hs, {"email": "other@example.com"})
    a = call(hs, "PATCH", CONTACTS + "/" + other["id"],
             {"properties": {"email": "dup@example.com"}})
    assert_error(a, 409, "CONFLICT")
    # archived, the address is free again
    call(hs, "DELETE", CONTACTS + "/" + c["id"])
    create(hs, {"email": "dup@example.com"})


def test_validation_errors(hs):
    a = call(hs, "POST", CONTACTS, {"properties": {
        "email": "not-an-address", "lifecyclestage": "vip",
        "favourite_colour": "blue"}})
    assert_error(a, 400, "VALIDATION_ERROR")
    assert_shape(a.body, fixture("error_property_values_400.json"))
    # the generic documented error: every top-level key it names
    assert set(fixture("error_response.json")) <= set(a.body)
    assert set(a.body) == set(fixture("error_property_values_400.json"))
    prefix = "Property values were not valid: "
    assert a.body["message"].startswith(prefix)
    problems = json.loads(a.body["message"][len(prefix):])
    assert problems == [
        {"isValid": False, "message": "Email address not-an-address is "
         "invalid", "error": "INVALID_EMAIL", "name": "email",
         "localizedErrorMessage": "Email address not-an-address is invalid",
         "portalId": hs.portal_id},
        {"isValid": False, "message": "vip was not one of the allowed "
         "options: [subscriber, lead, marketingqualifiedlead, "
         "salesqualifiedlead, opportunity, customer, evangelist, other]",
         "error": "INVALID_OPTION", "name": "lifecyclestage",
         "localizedErrorMessage": "vip was not one of the allowed options: "
         "[subscriber, lead, marketingqualifiedlead, salesqualifiedlead, "
         "opportunity, customer, evangelist, other]",
         "portalId": hs.portal_id},
        {"isValid": False, "message": 'Property "favourite_colour" does not '
         'exist', "error": "PROPERTY_DOESNT_EXIST", "name": "favourite_colour",
         "localizedErrorMessage": 'Property "favourite_colour" does not '
         'exist', "portalId": hs.portal_id}]
    assert [e["code"] for e in a.body["errors"]] == [
        "INVALID_EMAIL", "INVALID_OPTION", "PROPERTY_DOESNT_EXIST"]
    assert a.body["errors"][2]["context"] == {
        "propertyName": ["favourite_colour"]}
    assert hs.store.all(hs.types["contacts"]) == []

    a = call(hs, "POST", "/crm/v3/objects/deals", {"properties": {
        "amount": "lots", "closedate": "someday"}})
    assert [e["code"] for e in a.body["errors"]] == [
        "INVALID_DECIMAL", "INVALID_DATE"]
    a = call(hs, "POST", CONTACTS, {"properties": {"hs_object_id": "1"}})
    assert a.body["errors"][0]["code"] == "READ_ONLY_VALUE"

    c = create(hs, {"email": "v@example.com"})
    a = call(hs, "PATCH", CONTACTS + "/" + c["id"], {"properties": {}})
    assert_error(a, 400, "VALIDATION_ERROR", "No properties found to "
                 "update, please provide at least one.")
    a = call(hs, "POST", CONTACTS, headers={"Content-Type":
                                            "application/json"})
    assert a.status == 400
    ctx = ssl.create_default_context(cafile=hs.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", hs.port, context=ctx)
    conn.request("POST", CONTACTS, body="{nope", headers={
        "Authorization": "Bearer " + hs.token,
        "Content-Type": "application/json"})
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    assert r.status == 400
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Invalid input JSON on line 1, "
                                      "column 2: ")


def test_values_come_back_as_strings(hs):
    a = call(hs, "POST", "/crm/v3/objects/deals", {"properties": {
        "dealname": "Big", "amount": 1500, "dealstage": "qualifiedtobuy",
        "pipeline": "default", "closedate": "2026-06-30"}})
    assert a.status == 201
    p = a.body["properties"]
    assert (p["amount"], p["closedate"]) == ("1500",
                                            "2026-06-30T00:00:00.000Z")
    a = call(hs, "POST", "/crm/v3/objects/companies", {"properties": {
        "name": "Acme", "domain": "acme.example", "numberofemployees": 12.0}})
    assert a.body["properties"]["numberofemployees"] == "12"


def test_list_pages_through_250_contacts(hs):
    hs.limits.configure("private", burst=1000)
    ids = []
    for start in range(0, 250, 100):
        inputs = [{"properties": {"email": "p%03d@example.com" % i,
                                  "firstname": "P%03d" % i}}
                  for i in range(start, min(start + 100, 250))]
        a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": inputs})
        assert a.status == 201, a.body
        ids += [r["id"] for r in a.body["results"]]
    assert len(ids) == 250

    seen, pages, path = [], [], CONTACTS + "?limit=100&properties=email"
    while True:
        a = call(hs, "GET", path)
        assert a.status == 200
        pages.append(len(a.body["results"]))
        seen += [r["id"] for r in a.body["results"]]
        for r in a.body["results"]:
            assert set(r["properties"]) == {"email"}
            assert_shape(r, fixture("create_contact_201.json"),
                         OBJECT_REQUIRED)
        paging = a.body.get("paging")
        if paging is None:
            break
        assert set(paging) == {"next"}
        assert set(paging["next"]) == {"after", "link"}
        link = urllib.parse.urlsplit(paging["next"]["link"])
        assert "%s://%s" % (link.scheme, link.netloc) == hs.url
        query = urllib.parse.parse_qs(link.query)
        assert query == {"limit": ["100"], "properties": ["email"],
                         "after": [paging["next"]["after"]]}
        path = link.path + "?" + link.query
    assert pages == [100, 100, 50]
    assert seen == sorted(ids, key=int)
    # the default limit is 10; more than 100 is capped
    assert len(call(hs, "GET", CONTACTS).body["results"]) == 10
    assert len(call(hs, "GET", CONTACTS + "?limit=500").body["results"]) \
        == 100


# --------------------------------------------------------------------------
# batches

def test_batch_create_all_or_nothing(hs):
    create(hs, {"email": "taken@example.com"})
    inputs = [{"properties": {"email": "new1@example.com"}},
              {"properties": {"email": "bad address"}}]
    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": inputs})
    assert_error(a, 400, "VALIDATION_ERROR")
    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": [
        {"properties": {"email": "new2@example.com"}},
        {"properties": {"email": "taken@example.com"}}]})
    assert_error(a, 409, "CONFLICT")
    assert len(hs.store.all(hs.types["contacts"])) == 1
    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": [
        {"properties": {"email": "x" * 5 + "%d@example.com" % i}}
        for i in range(101)]})
    assert_error(a, 400, "VALIDATION_ERROR")


def test_batch_create_multi_status(hs):
    create(hs, {"email": "taken@example.com"})
    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": [
        {"properties": {"email": "ok@example.com"},
         "objectWriteTraceId": "t1"},
        {"properties": {"email": "bad address"}, "objectWriteTraceId": "t2"},
        {"properties": {"email": "taken@example.com"},
         "objectWriteTraceId": "t3"}]})
    assert a.status == 207, a.body
    doc = fixture("batch_create_objects.json")
    assert_shape(a.body, doc, batch_required(errors=True))
    assert a.body["status"] == "COMPLETE"
    assert a.body["numErrors"] == 2
    (ok,) = a.body["results"]
    assert ok["properties"]["email"] == "ok@example.com"
    assert ok["objectWriteTraceId"] == "t1"
    e2, e3 = a.body["errors"]
    assert (e2["status"], e2["category"]) == ("error", "VALIDATION_ERROR")
    assert e2["context"] == {"objectWriteTraceId": ["t2"]}
    assert e2["errors"][0]["code"] == "INVALID_EMAIL"
    assert (e3["category"], e3["context"]) == ("CONFLICT", {
        "objectWriteTraceId": ["t3"]})
    assert e3["message"].startswith("Contact already exists. Existing ID: ")

    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": [
        {"properties": {"email": "a1@example.com"},
         "objectWriteTraceId": "u1"}]})
    assert a.status == 201
    assert_shape(a.body, doc, batch_required())
    assert "errors" not in a.body and "numErrors" not in a.body
    a = call(hs, "POST", CONTACTS + "/batch/create", {"inputs": [
        {"properties": {"email": "a2@example.com"}}]})
    assert a.status == 201
    assert_shape(a.body, fixture("batch_create_objects_legacy.json"),
                 batch_required())


def test_batch_read(hs):
    a = create(hs, {"email": "r1@example.com", "firstname": "R"})
    b = create(hs, {"email": "r2@example.com"})
    got = call(hs, "POST", CONTACTS + "/batch/read", {
        "inputs": [{"id": a["id"]}, {"id": b["id"]}],
        "properties": ["firstname"]})
    assert got.status == 200
    assert [r["properties"] for r in got.body["results"]] == [
        {"firstname": "R"}, {"firstname": None}]
    got = call(hs, "POST", CONTACTS + "/batch/read", {
        "inputs": [{"id": "r2@example.com"}, {"id": "none@example.com"}],
        "idProperty": "email", "properties": ["email"]})
    assert got.status == 207
    assert [r["id"] for r in got.body["results"]] == [b["id"]]
    assert got.body["numErrors"] == 1
    assert got.body["errors"] == [{
        "status": "error", "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted "
                   "or not exist. Check that ids are valid.",
        "context": {"ids": ["none@example.com"]}}]


def test_batch_update(hs):
    a = create(hs, {"email": "u1@example.com"})
    got = call(hs, "POST", CONTACTS + "/batch/update", {"inputs": [
        {"id": a["id"], "properties": {"firstname": "U"}},
        {"id": "424242", "properties": {"firstname": "V"}},
        {"id": "u1@example.com", "idProperty": "email",
         "properties": {"lastname": "W"}}]})
    assert got.status == 207
    assert [r["properties"].get("firstname") for r in got.body["results"]] \
        == ["U", "U"]
    assert got.body["results"][1]["properties"]["lastname"] == "W"
    (err,) = got.body["errors"]
    assert (err["category"], err["context"]) == ("OBJECT_NOT_FOUND",
                                                 {"ids": ["424242"]})


def test_batch_upsert_by_email_with_one_invalid_input(hs):
    old = create(hs, {"email": "known@example.com", "firstname": "Old"})
    a = call(hs, "POST", CONTACTS + "/batch/upsert", {"inputs": [
        {"id": "known@example.com", "idProperty": "email",
         "properties": {"firstname": "New"}},
        {"id": "fresh@example.com", "idProperty": "email",
         "properties": {"firstname": "Fresh", "lastname": "Face"}},
        {"id": "not an email", "idProperty": "email",
         "properties": {"firstname": "Nope"}}]})
    assert a.status == 207, a.body
    doc = fixture("batch_upsert_contacts.json")
    assert_shape(a.body, doc, batch_required(errors=True, extra=("new",)))
    assert a.body["status"] == "COMPLETE"
    known, fresh = a.body["results"]
    assert (known["id"], known["new"]) == (old["id"], False)
    assert known["properties"]["firstname"] == "New"
    assert known["createdAt"] == old["createdAt"]
    assert fresh["new"] is True
    assert fresh["properties"]["email"] == "fresh@example.com"
    assert fresh["properties"]["lastname"] == "Face"
    assert a.body["numErrors"] == 1
    (err,) = a.body["errors"]
    assert (err["status"], err["category"]) == ("error", "VALIDATION_ERROR")
    assert err["context"] == {"ids": ["not an email"]}
    assert err["errors"][0]["code"] == "INVALID_EMAIL"
    assert err["message"].startswith("Property values were not valid: ")
    emails = sorted(r.props["email"] for r in
                    hs.store.all(hs.types["contacts"]))
    assert emails == ["fresh@example.com", "known@example.com"]

    a = call(hs, "POST", CONTACTS + "/batch/upsert", {"inputs": [
        {"id": "fresh@example.com", "idProperty": "email",
         "properties": {"phone": "1"}}]})
    assert a.status == 200
    assert_shape(a.body, doc, batch_required(extra=("new",)))
    assert "errors" not in a.body


def test_batch_upsert_by_custom_unique_property(hs):
    hs.types["companies"].add_property("vantage_id", unique=True)
    path = "/crm/v3/objects/companies/batch/upsert"
    first = call(hs, "POST", path, {"inputs": [
        {"id": "C-1", "idProperty": "vantage_id",
         "properties": {"name": "One"}}]})
    again = call(hs, "POST", path, {"inputs": [
        {"id": "C-1", "idProperty": "vantage_id",
         "properties": {"name": "Uno"}}]})
    assert (first.status, again.status) == (200, 200)
    assert first.body["results"][0]["new"] is True
    assert again.body["results"][0]["new"] is False
    assert again.body["results"][0]["id"] == first.body["results"][0]["id"]
    a = call(hs, "POST", path, {"inputs": [
        {"id": "x", "idProperty": "name", "properties": {}}]})
    assert a.status == 207
    assert a.body["errors"][0]["category"] == "VALIDATION_ERROR"


def test_batch_archive(hs):
    a = create(hs, {"email": "d1@example.com"})
    b = create(hs, {"email": "d2@example.com"})
    got = call(hs, "POST", CONTACTS + "/batch/archive", {"inputs": [
        {"id": a["id"]}, {"id": b["id"]}]})
    assert (got.status, got.raw) == (204, b"")
    assert call(hs, "GET", CONTACTS).body == {"results": []}


# --------------------------------------------------------------------------
# search

@pytest.fixture
def people(hs):
    hs.limits.configure("private", burst=1000, search_per_second=None)
    rows = [("ann@acme.io", "Ann", "Lee", "lead"),
            ("bob@acme.io", "Bob", "Ray", "customer"),
            ("cy@other.org", "Cy", None, "lead"),
            ("di@acme.io", "Di", "Lee", None)]
    out = []
    for email, first, last, stage in rows:
        props = {"email": email, "firstname": first}
        if last:
            props["lastname"] = last
        if stage:
            props["lifecyclestage"] = stage
        out.append(create(hs, props))
        time.sleep(0.005)
    return out


def search(hs, body, otype="contacts"):
    a = call(hs, "POST", "/crm/v3/objects/%s/search" % otype, body)
    assert a.status == 200, a.body
    return a.body


def names(body):
    return [r["properties"]["firstname"] for r in body["results"]]


@pytest.mark.parametrize("flt,expected", [
    ({"propertyName": "email", "operator": "EQ", "value": "BOB@acme.io"},
     ["Bob"]),
    ({"propertyName": "lastname", "operator": "NEQ", "value": "Lee"},
     ["Bob", "Cy"]),
    ({"propertyName": "createdate", "operator": "GT", "value": "{c1}"},
     ["Cy", "Di"]),
    ({"propertyName": "createdate", "operator": "LT", "value": "{c1}"},
     ["Ann"]),
    ({"propertyName": "createdate", "operator": "GTE", "value": "{c1}"},
     ["Bob", "Cy", "Di"]),
    ({"propertyName": "hs_object_id", "operator": "BETWEEN",
      "value": "{id1}", "highValue": "{id2}"}, ["Bob", "Cy"]),
    ({"propertyName": "lifecyclestage", "operator": "IN",
      "values": ["customer", "lead"]}, ["Ann", "Bob", "Cy"]),
    ({"propertyName": "lifecyclestage", "operator": "NOT_IN",
      "values": ["lead"]}, ["Bob", "Di"]),
    ({"propertyName": "lastname", "operator": "HAS_PROPERTY"},
     ["Ann", "Bob", "Di"]),
    ({"propertyName": "lastname", "operator": "NOT_HAS_PROPERTY"}, ["Cy"]),
    ({"propertyName": "email", "operator": "CONTAINS_TOKEN",
      "value": "acme"}, ["Ann", "Bob", "Di"]),
    ({"propertyName": "email", "operator": "CONTAINS_TOKEN",
      "value": "*@other.org"}, ["Cy"]),
    ({"propertyName": "email", "operator": "NOT_CONTAINS_TOKEN",
      "value": "acme"}, ["Cy"]),
])
def test_search_operators(hs, people, flt, expected):
    c1 = people[1]["createdAt"]
    flt = {k: (v.format(c1=c1, id1=people[1]["id"], id2=people[2]["id"])
               if isinstance(v, str) else v) for k, v in flt.items()}
    body = search(hs, {"filterGroups": [{"filters": [flt]}],
                       "properties": ["firstname"]})
    assert names(body) == expected
    assert body["total"] == len(expected)


def test_search_groups_sorts_paging(hs, people):
    body = search(hs, {
        "filterGroups": [
            {"filters": [{"propertyName": "lastname", "operator": "EQ",
                          "value": "Lee"},
                         {"propertyName": "lifecyclestage", "operator": "EQ",
                          "value": "lead"}]},
            {"filters": [{"propertyName": "firstname", "operator": "EQ",
                          "value": "Cy"}]}],
        "properties": ["firstname"]})
    assert names(body) == ["Ann", "Cy"]

    body = search(hs, {"sorts": [{"propertyName": "firstname",
                                  "direction": "DESCENDING"}],
                       "properties": ["firstname"], "limit": 3})
    assert names(body) == ["Di", "Cy", "Bob"]
    assert body["total"] == 4
    assert body["paging"] == {"next": {"after": "3"}}
    body = search(hs, {"sorts": ["-firstname"], "properties": ["firstname"],
                       "limit": 3, "after": "3"})
    assert names(body) == ["Ann"]
    assert "paging" not in body

    body = search(hs, {"query": "acme"})
    assert body["total"] == 3
    # the documented default properties
    assert set(body["results"][0]["properties"]) == {
        "createdate", "email", "firstname", "hs_object_id",
        "lastmodifieddate", "lastname"}
    for r in body["results"]:
        assert_shape(r, fixture("create_contact_201.json"), OBJECT_REQUIRED)


def test_search_limits(hs, people):
    def refused(body):
        a = call(hs, "POST", CONTACTS + "/search", body)
        assert_error(a, 400, "VALIDATION_ERROR")

    f = {"propertyName": "email", "operator": "HAS_PROPERTY"}
    refused({"filterGroups": [{"filters": [f]}] * 6})
    refused({"filterGroups": [{"filters": [f] * 11}]})
    refused({"filterGroups": [{"filters": [f] * 9}] * 3})
    refused({"filterGroups": [{"filters": [dict(f, operator="LIKE")]}]})
    refused({"limit": 201})
    refused({"limit": 100, "after": "9901"})
    assert search(hs, {"limit": 200, "after": "9800"})["results"] == []


def test_search_lags_behind_writes(hs):
    hs.store.search_lag = 0.5
    c = create(hs, {"email": "late@example.com", "firstname": "Late"})
    eq = {"filterGroups": [{"filters": [{"propertyName": "email",
                                         "operator": "EQ",
                                         "value": "late@example.com"}]}]}
    assert search(hs, eq)["total"] == 0
    # reads do not lag
    assert call(hs, "GET", CONTACTS + "/" + c["id"]).status == 200
    time.sleep(0.6)
    assert search(hs, eq)["total"] == 1
    call(hs, "PATCH", CONTACTS + "/" + c["id"],
         {"properties": {"firstname": "Later"}})
    assert names(search(hs, eq)) == ["Late"]
    time.sleep(0.6)
    assert names(search(hs, eq)) == ["Later"]


# --------------------------------------------------------------------------
# associations

def test_default_association(hs):
    c = create(hs, {"email": "a@acme.io"})
    co = create(hs, {"name": "Acme"}, "companies")
    a = call(hs, "PUT", "/crm/v4/objects/contacts/%s/associations/default/"
             "companies/%s" % (c["id"], co["id"]))
    assert a.status == 200, a.body
    assert_shape(a.body, fixture("association_default_200.json"),
                 ("status", "results", "startedAt", "completedAt"))
    assert a.body["status"] == "COMPLETE"
    assert a.body["results"] == [
        {"from": {"id": c["id"]}, "to": {"id": co["id"]},
         "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                             "associationTypeId": 279}},
        {"from": {"id": co["id"]}, "to": {"id": c["id"]},
         "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                             "associationTypeId": 280}}]

    a = call(hs, "GET", "/crm/v4/objects/contacts/%s/associations/companies"
             % c["id"])
    assert a.body == {"results": [{"toObjectId": int(co["id"]),
                                   "associationTypes": [{
                                       "category": "HUBSPOT_DEFINED",
                                       "typeId": 279, "label": None}]}]}
    a = call(hs, "GET", "/crm/v4/objects/companies/%s/associations/contacts"
             % co["id"])
    assert a.body["results"][0]["toObjectId"] == int(c["id"])
    a = call(hs, "GET", CONTACTS + "/%s?associations=companies" % c["id"])
    assert a.body["associations"] == {"companies": {"results": [
        {"id": co["id"], "type": "contact_to_company_unlabeled"}]}}

    a = call(hs, "DELETE", "/crm/v4/objects/contacts/%s/associations/"
             "companies/%s" % (c["id"], co["id"]))
    assert a.status == 204
    a = call(hs, "GET", "/crm/v4/objects/companies/%s/associations/contacts"
             % co["id"])
    assert a.body == {"results": []}


def test_association_errors_and_batches(hs):
    c = create(hs, {"email": "b@acme.io"})
    d = create(hs, {"dealname": "D1"}, "deals")
    a = call(hs, "PUT", "/crm/v4/objects/contacts/%s/associations/default/"
             "deals/999999" % c["id"])
    assert_error(a, 404, "OBJECT_NOT_FOUND")
    a = call(hs, "POST", "/crm/v4/associations/deals/contacts/batch/"
             "associate/default", {"inputs": [
                 {"from": {"id": d["id"]}, "to": {"id": c["id"]}},
                 {"from": {"id": d["id"]}, "to": {"id": "999999"}}]})
    assert a.status == 207
    assert a.body["results"] == [
        {"from": {"id": d["id"]}, "to": {"id": c["id"]},
         "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                             "associationTypeId": 3}}]
    assert a.body["numErrors"] == 1
    a = call(hs, "POST", "/crm/v4/associations/contacts/deals/batch/read",
             {"inputs": [{"id": c["id"]}]})
    assert a.status == 200
    assert_shape(a.body, {**fixture("association_batch_read_200.json"),
                          # a number, as HubSpot's SDK has it (README)
                          "results": [{**fixture(
                              "association_batch_read_200.json")["results"][0],
                              "to": [{"associationTypes": [
                                  {"category": "x", "typeId": 1,
                                   "label": None}], "toObjectId": 1}]}]},
                 {"$": ("status", "results", "startedAt", "completedAt"),
                  "$.results[]": ("from", "to")})
    assert a.body["results"] == [{"from": {"id": c["id"]}, "to": [
        {"toObjectId": int(d["id"]), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 4, "label": None}]}]}]


def test_associations_on_create(hs):
    co = create(hs, {"name": "Initech"}, "companies")
    a = call(hs, "POST", CONTACTS, {
        "properties": {"email": "p@initech.io"},
        "associations": [{"to": {"id": co["id"]}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED",
             "associationTypeId": 279}]}]})
    assert a.status == 201
    got = call(hs, "GET", "/crm/v4/objects/companies/%s/associations/"
               "contacts" % co["id"])
    assert got.body["results"][0]["toObjectId"] == int(a.body["id"])
    a = call(hs, "POST", CONTACTS, {
        "properties": {"email": "q@initech.io"},
        "associations": [{"to": {"id": "999999"}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED",
             "associationTypeId": 279}]}]})
    assert_error(a, 400, "VALIDATION_ERROR")
    assert call(hs, "GET", CONTACTS + "/q@initech.io?idProperty=email") \
        .status == 404


def test_date_versioned_paths(hs):
    a = call(hs, "POST", "/crm/objects/2026-03/contacts",
             {"properties": {"email": "v@example.com"}})
    assert a.status == 201
    assert call(hs, "GET", "/crm/objects/2026-03/contacts/" +
                a.body["id"]).status == 200
    co = create(hs, {"name": "Versioned"}, "companies")
    assert call(hs, "PUT", "/crm/objects/2026-03/contacts/%s/associations/"
                "default/companies/%s" % (a.body["id"], co["id"])) \
        .status == 200


# --------------------------------------------------------------------------
# webhooks

@pytest.fixture
def hooks(hs, target):
    hs.limits.configure("private", burst=1000)
    hs.webhooks.target_url = target.url("/hubspot/events")
    hs.webhooks.time_scale = 0.0005        # retry n after 2**n * 30 ms
    return target


def delivered(target, path="/hubspot/events"):
    return [(r, json.loads(r["body"])) for r in target.got(path)]


def wait_deliveries(hs, n, timeout=10):
    vh.wait_for(lambda: len(hs.webhooks.deliveries) >= n,
                vh.timeout(timeout), what="%d webhook deliveries" % n)


def test_events_for_api_changes(hs, hooks):
    c = create(hs, {"email": "w@example.com", "firstname": "W",
                    "jobtitle": "CFO"})
    call(hs, "PATCH", CONTACTS + "/" + c["id"],
         {"properties": {"lastname": "X", "firstname": "W"}})
    call(hs, "DELETE", CONTACTS + "/" + c["id"])
    assert hs.webhooks.flush(vh.timeout(10))
    events = [e for _, body in delivered(hooks) for e in body]
    app = hs.oauth_app.app_id
    sub = {s.type + (":" + s.property_name if s.property_name else ""): s.id
           for s in hs.webhooks.subscriptions}
    assert [(e["subscriptionType"], e.get("propertyName"),
             e.get("propertyValue")) for e in events] == [
        ("contact.creation", None, None),
        ("contact.propertyChange", "email", "w@example.com"),
        ("contact.propertyChange", "firstname", "W"),
        ("contact.propertyChange", "lastname", "X"),
        ("contact.deletion", None, None)]
    for e in events:
        assert e["objectId"] == int(c["id"])
        assert e["portalId"] == hs.portal_id
        assert e["appId"] == app
        assert e["attemptNumber"] == 0
        # the private app made the change: loop prevention keys on this
        assert e["changeSource"] == "INTEGRATION"
        assert e["sourceId"] == str(hs.private_app.app.app_id)
        assert e["subscriptionId"] == sub[e["subscriptionType"] + (
            ":" + e["propertyName"] if "propertyName" in e else "")]
        assert_shape({k: v for k, v in e.items()
                      if k not in ("sourceId", "changeFlag")},
                     {**fixture("webhook_events.json")[0],
                      **fixture("webhook_events.json")[1]})
    assert events[0]["changeFlag"] == "CREATED"
    assert events[-1]["changeFlag"] == "DELETED"
    ids = [e["eventId"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(abs(e["occurredAt"] - time.time() * 1000) < 60_000
               for e in events)


def test_user_changes_are_crm_ui(hs, hooks):
    c = create(hs, {"email": "u@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    hs.change("contacts", c["id"], {"firstname": "Typed"})
    assert hs.webhooks.flush(vh.timeout(10))
    _, last = delivered(hooks)[-1]
    assert [(e["propertyName"], e["propertyValue"], e["changeSource"],
             e["sourceId"]) for e in last] == [
        ("firstname", "Typed", "CRM_UI", "userId:1001")]


def test_signatures_v3_and_v1(hs, hooks):
    create(hs, {"email": "s@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    (req, events), = delivered(hooks)
    h = req["headers"]
    secret = hs.oauth_app.client_secret
    uri = hooks.url("/hubspot/events")
    ts = h["x-hubspot-request-timestamp"]
    assert abs(int(ts) - time.time() * 1000) < 60_000     # milliseconds
    expected = verify_v3(secret, "POST", uri, req["body"], ts)
    assert hmac.compare_digest(h["x-hubspot-signature-v3"], expected)
    assert h["x-hubspot-signature-version"] == "v1"
    v1 = hashlib.sha256(secret.encode() + req["body"]).hexdigest()
    assert hmac.compare_digest(h["x-hubspot-signature"], v1)
    assert h["content-type"] == "application/json"
    # a tampered body, another secret, or another URI do not verify
    assert verify_v3(secret, "POST", uri, req["body"] + b" ", ts) \
        != h["x-hubspot-signature-v3"]
    assert verify_v3("other", "POST", uri, req["body"], ts) \
        != h["x-hubspot-signature-v3"]
    assert verify_v3(secret, "POST", uri + "x", req["body"], ts) \
        != h["x-hubspot-signature-v3"]
    assert isinstance(events, list)


def test_signature_v2_and_decoded_uri(hs, hooks):
    hs.webhooks.signature_version = "v2"
    hs.webhooks.target_url = hooks.url("/hubspot/events?tenant=a%3Ab")
    create(hs, {"email": "s2@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    req = hooks.got("/hubspot/events")[0]
    h = req["headers"]
    secret = hs.oauth_app.client_secret
    # HubSpot signs the URI with %3A and its like decoded
    uri = hooks.url("/hubspot/events?tenant=a:b")
    assert h["x-hubspot-signature-version"] == "v2"
    v2 = hashlib.sha256(secret.encode() + b"POST" + uri.encode()
                        + req["body"]).hexdigest()
    assert h["x-hubspot-signature"] == v2
    assert h["x-hubspot-signature-v3"] == verify_v3(
        secret, "POST", uri, req["body"], h["x-hubspot-request-timestamp"])


def test_private_app_signs_with_its_secret(hs, hooks):
    hs.webhooks.app = hs.private_app.app
    create(hs, {"email": "pa@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    req, events = delivered(hooks)[0]
    assert {e["appId"] for e in events} == {hs.private_app.app.app_id}
    assert req["headers"]["x-hubspot-signature-v3"] == verify_v3(
        hs.private_app.app.client_secret, "POST",
        hooks.url("/hubspot/events"), req["body"],
        req["headers"]["x-hubspot-request-timestamp"])


def test_batches_of_at_most_100(hs, hooks):
    hs.webhooks.hold = True
    inputs = [{"properties": {"firstname": "B%03d" % i}}
              for i in range(100)]
    for _ in range(2):
        assert call(hs, "POST", CONTACTS + "/batch/create",
                    {"inputs": inputs[:75]}).status == 201
    # 150 creations + 150 firstname changes
    assert len(hs.webhooks.events) == 300
    assert hooks.got() == []
    assert hs.webhooks.flush(vh.timeout(10))
    sizes = [len(body) for _, body in delivered(hooks)]
    assert sizes == [100, 100, 100]
    seen = [e["eventId"] for _, body in delivered(hooks) for e in body]
    assert sorted(seen) == sorted(e["eventId"] for e in hs.webhooks.events)


def test_retry_on_5xx_until_2xx(hs, hooks):
    hooks.script("/hubspot/events", [(500, {}, b""), (503, {}, b"")])
    create(hs, {"email": "r@example.com"})
    wait_deliveries(hs, 3)
    assert hs.webhooks.flush(vh.timeout(10))
    got = delivered(hooks)
    assert [[e["attemptNumber"] for e in body] for _, body in got] == [
        [0, 0], [1, 1], [2, 2]]
    assert [d["status"] for d in hs.webhooks.deliveries] == [500, 503, 200]
    # the same events, re-signed with a fresh timestamp each time
    assert len({json.dumps([dict(e, attemptNumber=0) for e in body])
                for _, body in got}) == 1
    for r, _ in got:
        assert r["headers"]["x-hubspot-signature-v3"] == verify_v3(
            hs.oauth_app.client_secret, "POST", hooks.url("/hubspot/events"),
            r["body"], r["headers"]["x-hubspot-request-timestamp"])
    # retry n waits 2**n minutes, scaled: 2 min, then 4 min
    t = [d["time"] for d in hs.webhooks.deliveries]
    assert t[1] - t[0] >= 120 * hs.webhooks.time_scale
    assert t[2] - t[1] >= 240 * hs.webhooks.time_scale


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_no_retry_on_client_errors(hs, hooks, status):
    hooks.script("/hubspot/events", [(status, {}, b"")])
    create(hs, {"email": "n%d@example.com" % status})
    assert hs.webhooks.flush(vh.timeout(10))
    time.sleep(0.2)
    assert [d["status"] for d in hs.webhooks.deliveries] == [status]


def test_429_retry_after_is_respected(hs, hooks):
    hooks.script("/hubspot/events", [(429, {"Retry-After": "600"}, b"")])
    create(hs, {"email": "t@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    t = [d["time"] for d in hs.webhooks.deliveries]
    assert [d["status"] for d in hs.webhooks.deliveries] == [429, 200]
    assert t[1] - t[0] >= 600 * hs.webhooks.time_scale


def test_gives_up_after_10_retries(hs, hooks):
    hs.webhooks.time_scale = 0.00001
    hooks.default("/hubspot/events", (502, {}, b""))
    create(hs, {"email": "g@example.com"})
    assert hs.webhooks.flush(vh.timeout(20))
    attempts = [d["events"][0]["attemptNumber"]
                for d in hs.webhooks.deliveries]
    assert attempts == list(range(11))


def test_connection_failure_and_timeout_are_retried(hs, hooks):
    hs.webhooks.timeout = 0.3
    hooks.script("/hubspot/events", [("sleep", 1.0), ("close",)])
    create(hs, {"email": "c@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    d = hs.webhooks.deliveries
    assert [x["status"] for x in d] == [None, None, 200]
    assert "timed out" in d[0]["error"]
    assert [x["events"][0]["attemptNumber"] for x in d] == [0, 1, 2]


def test_association_change_events(hs, hooks):
    hs.webhooks.subscribe("contact.associationChange")
    c = create(hs, {"email": "ac@example.com"})
    co = create(hs, {"name": "AC"}, "companies")
    assert hs.webhooks.flush(vh.timeout(10))
    before = len(hs.webhooks.events)
    call(hs, "PUT", "/crm/v4/objects/companies/%s/associations/default/"
         "contacts/%s" % (co["id"], c["id"]))
    assert hs.webhooks.flush(vh.timeout(10))
    (e,) = hs.webhooks.events[before:]
    assert {k: e[k] for k in ("subscriptionType", "associationType",
                              "fromObjectId", "toObjectId",
                              "associationRemoved",
                              "isPrimaryAssociation")} == {
        "subscriptionType": "contact.associationChange",
        "associationType": "CONTACT_TO_COMPANY",
        "fromObjectId": int(c["id"]), "toObjectId": int(co["id"]),
        "associationRemoved": False, "isPrimaryAssociation": False}


def test_generic_object_subscription(hs, hooks):
    hs.webhooks.subscriptions.clear()
    hs.webhooks.subscribe("object.creation", object_name="deal")
    d = create(hs, {"dealname": "G"}, "deals")
    create(hs, {"email": "not-a-deal@example.com"})
    assert hs.webhooks.flush(vh.timeout(10))
    (e,) = hs.webhooks.events
    assert (e["subscriptionType"], e["objectTypeId"], e["objectId"]) == (
        "object.creation", "0-3", int(d["id"]))


# --------------------------------------------------------------------------
# the standalone emulator

def test_cli(base_dir, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("cli-secret\n")
    d = vh.make_dir(tempfile.mkdtemp(prefix="hubspot-cli-", dir=base_dir))
    p = subprocess.Popen(
        ["/usr/bin/python3", os.path.join(FAKES, "hubspot"), "--dir", d,
         "--token", "pat-na1-cli", "--client",
         "cli-client=%s" % secret_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        assert info["ca_file"] == os.path.join(d, "ca.pem")
        assert info["private_app"]["token"] == "pat-na1-cli"
        assert info["oauth_app"]["client_id"] == "cli-client"
        assert info["oauth_app"]["client_secret"] == "cli-secret"
        secret_file = info["oauth_app"]["client_secret_file"]
        assert secret_file == os.path.join(d, "client_secret")
        assert os.stat(secret_file).st_mode & 0o777 == 0o600
        with open(secret_file) as f:
            assert f.read() == "cli-secret\n"

        class Remote:
            port = int(info["base_url"].rsplit(":", 1)[1])
            ca_file = info["ca_file"]
            token = "pat-na1-cli"

        assert call(Remote, "GET", CONTACTS).status == 200
        a = call(Remote, "POST", "/oauth/v1/token", token=False, form={
            "grant_type": "authorization_code", "client_id": "cli-client",
            "client_secret": "cli-secret",
            "code": info["oauth_app"]["authorization_code"],
            "redirect_uri": info["oauth_app"]["redirect_uri"]})
        assert a.status == 200, a.body
        token = a.body["access_token"]

        def control(what, args):
            r = call(Remote, "POST", "/_test/" + what, args, token=False)
            assert r.status == 200, r.body

        control("fail", {"n": 1, "status": 503})
        assert call(Remote, "GET", CONTACTS).status == 503
        control("expire", {})
        assert call(Remote, "GET", CONTACTS, token=token).body["category"] \
            == "EXPIRED_AUTHENTICATION"
        control("limits", {"exhaust": "DAILY"})
        assert call(Remote, "GET", CONTACTS).body["policyName"] == "DAILY"
        counts = call(Remote, "GET", "/_counts", token=False).body
        assert counts == {CONTACTS: 4, "/oauth/v1/token": 1}
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(vh.timeout(10)) == 0, p.stderr.read()
        p.stdout.close()
        p.stderr.close()
