"""test_fake_salesforce.py -- tests/fakes/salesforce, the Salesforce emulator.

Issue 6 asks for vendor emulators that follow the vendors' public wire
formats closely enough that a connector working against them works
against the real service.  These tests drive the emulator over HTTPS,
without nginx or the worker, and check it two ways: its answers have the
shape of the examples in tests/fakes/salesforce/fixtures/ (copied from
Salesforce's documentation or public captures: same members, JSON types,
status codes, headers), and every flow gives exact results -- the JWT
bearer flow with an assertion minted by PyJWT (an implementation
independent of the emulator's own checks), upsert's 201/200/300, sObject
Collections with allOrNone, SOQL paging, a 50,000-row Bulk API 2.0 load
with invalid rows counted exactly, CometD resumed from a replay id with
no gap and no duplicate, and an Outbound Message retried until acked.
"""

import base64
import csv
import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

import jwt
import pytest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402

FIXTURES = os.path.join(vh.REPO, "tests", "fakes", "salesforce", "fixtures")
V = "68.0"
DATA = "/services/data/v%s" % V
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# --------------------------------------------------------------------------
# helpers

def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        data = f.read()
    return json.loads(data) if name.endswith(".json") else data


def same_shape(got, want, where="$"):
    """Asserts got has want's shape: the same members (recursively), the
    same JSON types; a list's elements each have the shape of want's first
    element."""
    if isinstance(want, dict):
        assert isinstance(got, dict), "%s: %r is not an object" % (where, got)
        assert set(got) == set(want), \
            "%s: members %s, documented %s" % (where, sorted(got),
                                                sorted(want))
        for k in want:
            same_shape(got[k], want[k], "%s.%s" % (where, k))
    elif isinstance(want, list):
        assert isinstance(got, list), "%s: %r is not an array" % (where, got)
        if want:
            for i, g in enumerate(got):
                same_shape(g, want[0], "%s[%d]" % (where, i))
    elif isinstance(want, bool):
        assert isinstance(got, bool), "%s: %r is not a boolean" % (where, got)
    elif isinstance(want, (int, float)):
        assert isinstance(got, (int, float)) and \
            not isinstance(got, bool), "%s: %r is not a number" % (where,
                                                                   got)
        if isinstance(want, float):
            assert isinstance(got, float), "%s: %r is not a float" % (
                where, got)
    elif isinstance(want, str):
        assert isinstance(got, str), "%s: %r is not a string" % (where, got)
    else:
        assert got is None, "%s: %r is not null" % (where, got)


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def csv(self):
        return list(csv.reader(io.StringIO(self.body.decode())))


class Api:
    """An HTTPS client of the emulator, trusting the test CA."""

    def __init__(self, sf, token=None, ca_file=None):
        self.sf = sf
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca_file or sf.ca_file)

    def call(self, method, path, body=None, headers=None, host="127.0.0.1",
             token=True, content_type=None):
        c = http.client.HTTPSConnection(host, self.sf.port, context=self.ctx,
                                        timeout=vh.timeout(30))
        h = {}
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        if content_type:
            h["Content-Type"] = content_type
        h.update(headers or {})
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()},
                         data)
        finally:
            c.close()

    def form(self, path, form, host="127.0.0.1", headers=None):
        return self.call("POST", path, urllib.parse.urlencode(form),
                         headers, host=host, token=False,
                         content_type="application/x-www-form-urlencoded")

    def query(self, soql, headers=None, which="query"):
        return self.call("GET", "%s/%s?q=%s" % (
            DATA, which, urllib.parse.quote_plus(soql)), headers=headers)


def assertion(sf, **claims):
    """A JWT bearer assertion signed by PyJWT with the connected app's key
    (key= another key, algorithm= another algorithm)."""
    key = claims.pop("key", None)
    alg = claims.pop("algorithm", "RS256")
    if key is None:
        with open(sf.jwt_key_file, "rb") as f:
            key = f.read()
    c = {"iss": sf.consumer_key, "sub": sf.username, "aud": sf.login_url,
         "exp": int(time.time()) + 120}
    c.update(claims)
    c = {k: v for k, v in c.items() if v is not None}
    return jwt.encode(c, key, algorithm=alg)


@pytest.fixture
def sf(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="fake-sf-", dir=base_dir))
    s = Salesforce(pki=pki, directory=d, streaming_timeout=1.0)
    yield s
    s.stop()
    assert s.internal_errors == []


@pytest.fixture
def api(sf):
    return Api(sf, sf.access_token())


def create_contact(api, **fields):
    r = api.call("POST", DATA + "/sobjects/Contact/", fields)
    assert r.status == 201, r.body
    return r.json()["id"]


# --------------------------------------------------------------------------
# TLS and the CLI

def test_tls_with_the_test_ca_and_not_another(sf, base_dir):
    assert Api(sf).call("GET", "/services/data/").status == 200
    other = vh.TestPKI(tempfile.mkdtemp(prefix="other-ca-", dir=base_dir))
    with pytest.raises(ssl.SSLCertVerificationError):
        Api(sf, ca_file=other.ca_file).call("GET", "/services/data/")


def test_cli_prints_its_urls_and_keys(base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="fake-sf-cli-", dir=base_dir))
    p = subprocess.Popen(["/usr/bin/python3",
                          os.path.join(vh.REPO, "tests", "fakes",
                                       "salesforce"), "--dir", d,
                          "--daily-limit", "50"],
                         stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        assert sorted(info) == sorted([
            "login_url", "instance_url", "cometd_url", "ca_file",
            "consumer_key", "consumer_secret_file", "jwt_key_file",
            "jwt_cert_file", "username", "user_id", "org_id",
            "api_version"])
        assert os.stat(info["jwt_key_file"]).st_mode & 0o077 == 0
        port = int(info["instance_url"].rsplit(":", 1)[1])
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        with open(info["jwt_key_file"], "rb") as f:
            key = f.read()
        a = jwt.encode({"iss": info["consumer_key"], "sub": info["username"],
                        "aud": info["login_url"],
                        "exp": int(time.time()) + 60}, key, algorithm="RS256")
        c = http.client.HTTPSConnection("localhost", port, context=ctx,
                                        timeout=vh.timeout(10))
        c.request("POST", "/services/oauth2/token",
                  urllib.parse.urlencode({"grant_type": JWT_GRANT,
                                          "assertion": a}),
                  {"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["instance_url"] == \
            info["instance_url"]
        c.request("GET", "/services/data/v%s/limits" % info["api_version"],
                  headers={"Authorization": "Bearer " +
                           body["access_token"]})
        r = c.getresponse()
        assert json.loads(r.read())["DailyApiRequests"] == {"Max": 50,
                                                            "Remaining": 49}
        assert r.getheader("Sforce-Limit-Info") == "api-usage=1/50"
        c.close()
    finally:
        p.terminate()
        assert p.wait(timeout=vh.timeout(10)) == 0


# --------------------------------------------------------------------------
# OAuth

def test_jwt_bearer_with_pyjwt(sf):
    a = Api(sf)
    r = a.form("/services/oauth2/token",
               {"grant_type": JWT_GRANT, "assertion": assertion(sf)},
               host="localhost")
    assert r.status == 200, r.body
    body = r.json()
    same_shape(body, fixture("oauth_jwt_bearer_response.json"))
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == sf.instance_url
    assert body["id"] == "%s/id/%s/%s" % (sf.login_url, sf.org_id,
                                          sf.user_id)
    assert "no-store" in r.headers["cache-control"]
    a.token = body["access_token"]
    assert a.call("GET", DATA + "/limits").status == 200


@pytest.fixture
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048) \
        .private_bytes(serialization.Encoding.PEM,
                       serialization.PrivateFormat.PKCS8,
                       serialization.NoEncryption())


@pytest.mark.parametrize("claims,error,description", [
    ({"key": "other"}, "invalid_grant", "invalid assertion"),
    ({"key": b"a-shared-secret", "algorithm": "HS256"}, "invalid_grant",
     "invalid assertion"),
    ({"iss": "3MVG9someone-else"}, "invalid_client_id",
     "client identifier invalid"),
    ({"aud": "https://login.salesforce.com"}, "invalid_grant",
     "audience is invalid"),
    ({"exp": "past"}, "invalid_grant", "expired authorization code"),
    ({"exp": "ten minutes"}, "invalid_grant", "invalid assertion"),
    ({"exp": None}, "invalid_grant", "invalid assertion"),
    ({"sub": "nobody@vantage.example"}, "invalid_grant",
     "invalid assertion"),
    ({"sub": "unapproved@vantage.example"}, "invalid_grant",
     "user hasn't approved this consumer"),
])
def test_jwt_bearer_refused(sf, other_rsa_key, claims, error, description):
    sf.add_user("unapproved@vantage.example", approved=False)
    claims = dict(claims)
    if claims.get("key") == "other":
        claims["key"] = other_rsa_key
    now = int(time.time())
    if claims.get("exp") == "past":
        claims["exp"] = now - 5
    elif claims.get("exp") == "ten minutes":
        claims["exp"] = now + 600
    r = Api(sf).form("/services/oauth2/token",
                     {"grant_type": JWT_GRANT,
                      "assertion": assertion(sf, **claims)},
                     host="localhost")
    assert r.status == 400
    assert r.json() == {"error": error, "error_description": description}
    same_shape(r.json(), fixture("oauth_error_invalid_grant.json"))


def test_jwt_exp_at_three_minutes_is_accepted(sf):
    r = Api(sf).form("/services/oauth2/token", {
        "grant_type": JWT_GRANT,
        "assertion": assertion(sf, exp=int(time.time()) + 179)},
        host="localhost")
    assert r.status == 200, r.body


def _signature(sf, body):
    return base64.b64encode(hmac.new(
        sf.consumer_secret.encode(),
        (body["id"] + body["issued_at"]).encode(),
        hashlib.sha256).digest()).decode()


@pytest.mark.parametrize("how", ["form", "basic"])
def test_client_credentials(sf, how):
    form = {"grant_type": "client_credentials"}
    headers = None
    if how == "form":
        form.update(client_id=sf.consumer_key,
                    client_secret=sf.consumer_secret)
    else:
        headers = {"Authorization": "Basic " + base64.b64encode(
            ("%s:%s" % (sf.consumer_key, sf.consumer_secret)).encode())
            .decode()}
    before = int(time.time() * 1000)
    r = Api(sf).form("/services/oauth2/token", form, headers=headers)
    assert r.status == 200, r.body
    body = r.json()
    same_shape(body, fixture("oauth_client_credentials_response.json"))
    assert body["signature"] == _signature(sf, body)
    assert before <= int(body["issued_at"]) <= int(time.time() * 1000)
    assert body["instance_url"] == sf.instance_url
    # at the login host it is refused
    r = Api(sf).form("/services/oauth2/token", form, host="localhost",
                     headers=headers)
    assert (r.status, r.json()) == (400, {
        "error": "invalid_grant",
        "error_description": "request not supported on this domain"})


def test_client_credentials_refused(sf):
    r = Api(sf).form("/services/oauth2/token", {
        "grant_type": "client_credentials", "client_id": sf.consumer_key,
        "client_secret": "wrong"})
    assert (r.status, r.json()) == (400, {
        "error": "invalid_client",
        "error_description": "invalid client credentials"})
    r = Api(sf).form("/services/oauth2/token", {
        "grant_type": "password", "client_id": sf.consumer_key})
    assert (r.status, r.json()["error"]) == (400, "unsupported_grant_type")


@pytest.mark.parametrize("rotate", [False, True])
def test_refresh_token(sf, rotate):
    sf.auth.rotate_refresh_tokens = rotate
    rt = sf.auth.issue_refresh_token()
    form = {"grant_type": "refresh_token", "refresh_token": rt,
            "client_id": sf.consumer_key,
            "client_secret": sf.consumer_secret, "format": "json"}
    r = Api(sf).form("/services/oauth2/token", form)
    assert r.status == 200, r.body
    body = r.json()
    want = dict(fixture("oauth_refresh_token_response.json"))
    if rotate:
        want["refresh_token"] = "5Aep..."
    same_shape(body, want)
    assert body["signature"] == _signature(sf, body)
    again = Api(sf).form("/services/oauth2/token", form)
    if rotate:
        assert (again.status, again.json()) == (400, {
            "error": "invalid_grant",
            "error_description": "expired access/refresh token"})
        form["refresh_token"] = body["refresh_token"]
        assert Api(sf).form("/services/oauth2/token", form).status == 200
    else:
        assert again.status == 200


def test_expired_session_answers_401_until_a_new_grant(sf, api):
    assert api.call("GET", DATA + "/limits").status == 200
    sf.expire_tokens()
    r = api.call("GET", DATA + "/limits")
    assert r.status == 401
    assert r.json() == fixture("rest_error_invalid_session.json")
    assert r.headers["sforce-limit-info"] == "api-usage=1/100000"
    r = api.form("/services/oauth2/token",
                 {"grant_type": JWT_GRANT, "assertion": assertion(sf)},
                 host="localhost")
    api.token = r.json()["access_token"]
    assert api.call("GET", DATA + "/limits").status == 200


# --------------------------------------------------------------------------
# limits and failure injection

def test_limit_info_counts_every_call_and_refuses_past_the_allowance(sf,
                                                                      api):
    sf.set_limit(daily=5, used=2)
    seen = [api.call("GET", DATA + "/limits").headers["sforce-limit-info"]
            for _ in range(3)]
    assert seen == ["api-usage=3/5", "api-usage=4/5", "api-usage=5/5"]
    same_shape({"Sforce-Limit-Info": seen[0]},
               fixture("rest_limit_info_header.json"))
    r = api.call("GET", DATA + "/sobjects/Contact/003000000000000AAA")
    assert r.status == 403
    assert r.json() == fixture("rest_error_request_limit.json")
    assert r.headers["sforce-limit-info"] == "api-usage=5/5"
    # the Versions URI is neither counted nor labelled
    v = api.call("GET", "/services/data/")
    assert v.status == 200 and "sforce-limit-info" not in v.headers
    assert {"label": "Winter '27", "url": DATA, "version": V} in v.json()
    sf.set_limit(daily=10)
    assert api.call("GET", DATA + "/limits").json() == {
        "DailyApiRequests": {"Max": 10, "Remaining": 4}}


def test_fail_next_throttle_and_delay(sf, api):
    sf.fail_next(2, 503, "SERVER_UNAVAILABLE", "Server unavailable")
    for _ in range(2):
        r = api.call("GET", DATA + "/limits")
        assert r.status == 503
        assert r.json() == [{"message": "Server unavailable",
                             "errorCode": "SERVER_UNAVAILABLE"}]
    assert api.call("GET", DATA + "/limits").status == 200
    sf.fail_next(1, 400, "UNABLE_TO_LOCK_ROW",
                 "unable to obtain exclusive access to this record")
    r = api.call("POST", DATA + "/sobjects/Contact/", {"LastName": "x"})
    assert r.status == 400 and r.json()[0]["errorCode"] == \
        "UNABLE_TO_LOCK_ROW"
    assert sf.usage()[0] == 1           # injected failures are not counted
    sf.throttle(2, per_seconds=60)
    statuses = [api.call("GET", DATA + "/limits").status for _ in range(3)]
    assert statuses == [200, 200, 403]
    sf.throttle(None)
    sf.delay(0.4, path=DATA + "/limits")
    t0 = time.monotonic()
    assert api.call("GET", DATA + "/limits").status == 200
    assert time.monotonic() - t0 >= 0.4
    assert sf.count(DATA + "/limits") == 7
    assert sf.counts()[DATA + "/limits"] == 7


# --------------------------------------------------------------------------
# REST sObjects

def test_create_get_update_delete(sf, api):
    r = api.call("POST", DATA + "/sobjects/Contact/",
                 {"FirstName": "Ada", "LastName": "Lovelace",
                  "Email": "ada@example.com"})
    assert r.status == 201
    same_shape(r.json(), fixture("rest_create_response.json"))
    rid = r.json()["id"]
    assert r.json() == {"id": rid, "success": True, "errors": []}
    assert rid.startswith("003") and len(rid) == 18
    g = api.call("GET", DATA + "/sobjects/Contact/" + rid)
    assert g.status == 200
    rec = g.json()
    assert rec["attributes"] == {"type": "Contact",
                                 "url": DATA + "/sobjects/Contact/" + rid}
    assert (rec["Id"], rec["Name"], rec["Email"], rec["Title"]) == \
        (rid, "Ada Lovelace", "ada@example.com", None)
    assert rec["CreatedById"] == sf.user_id
    g = api.call("GET", DATA + "/sobjects/Contact/%s?fields=Email" % rid)
    assert g.json() == {"attributes": rec["attributes"],
                        "Email": "ada@example.com", "Id": rid}
    u = api.call("PATCH", DATA + "/sobjects/Contact/" + rid,
                 {"Title": "Countess"})
    assert (u.status, u.body) == (204, b"")
    assert "sforce-limit-info" in u.headers
    assert api.call("GET", DATA + "/sobjects/Contact/" + rid) \
        .json()["Title"] == "Countess"
    d = api.call("DELETE", DATA + "/sobjects/Contact/" + rid)
    assert d.status == 204
    g = api.call("GET", DATA + "/sobjects/Contact/" + rid)
    assert g.status == 404
    assert g.json() == fixture("rest_error_not_found.json")
    assert api.call("GET", DATA + "/sobjects/Nope__c/" + rid).status == 404


def test_validation_errors(sf, api):
    sf.add_validation_rule(
        "Contact", "Advisors need a phone number", ["Phone"],
        lambda rec: rec.get("Title") == "Advisor" and not rec.get("Phone"))
    cases = [
        ({"FirstName": "No"}, [{
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}]),
        ({"LastName": "x", "Email": "not-an-email"}, [{
            "message": "Email: invalid email address: not-an-email",
            "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]}]),
        ({"LastName": "x", "Title": "Advisor"}, [{
            "message": "Advisors need a phone number",
            "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "fields": ["Phone"]}]),
        ({"LastName": "x", "Shoe_Size__c": 9}, [{
            "message": "No such column 'Shoe_Size__c' on sobject of type "
                       "Contact", "errorCode": "INVALID_FIELD",
            "fields": ["Shoe_Size__c"]}]),
        ({"LastName": "x", "CreatedDate": "2020-01-01"}, None),
    ]
    for body, want in cases:
        r = api.call("POST", DATA + "/sobjects/Contact/", body)
        assert r.status == 400, body
        if want is not None:
            assert r.json() == want
        same_shape(r.json(), fixture("rest_error_required_field_missing"
                                     ".json"))
    assert r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    r = api.call("POST", DATA + "/sobjects/Contact/", b"{not json",
                 content_type="application/json")
    assert r.status == 400 and r.json()[0]["errorCode"] == \
        "JSON_PARSER_ERROR"
    assert api.query("SELECT Id FROM Contact").json()["totalSize"] == 0


def test_record_lock_gives_unable_to_lock_row(sf, api):
    rid = create_contact(api, LastName="Locked")
    sf.lock_record(rid)
    r = api.call("PATCH", DATA + "/sobjects/Contact/" + rid, {"Title": "x"})
    assert r.status == 400
    same_shape(r.json(), fixture("rest_error_unable_to_lock_row.json"))
    assert r.json() == [{
        "message": "unable to obtain exclusive access to this record or 1 "
                   "records: " + rid,
        "errorCode": "UNABLE_TO_LOCK_ROW", "fields": []}]
    sf.lock_record(rid, False)
    assert api.call("PATCH", DATA + "/sobjects/Contact/" + rid,
                    {"Title": "x"}).status == 204


def test_upsert_by_external_id(sf, api):
    path = DATA + "/sobjects/Contact/ExtId__c/"
    r = api.call("PATCH", path + "CRM-1", {"LastName": "Hopper"})
    assert r.status == 201
    same_shape(r.json(), fixture("rest_upsert_created_response.json"))
    rid = r.json()["id"]
    assert r.json() == {"id": rid, "success": True, "errors": [],
                        "created": True}
    r = api.call("PATCH", path + "CRM-1", {"Title": "Rear Admiral"})
    assert r.status == 200
    same_shape(r.json(), fixture("rest_upsert_updated_response.json"))
    assert r.json() == {"id": rid, "success": True, "errors": [],
                        "created": False}
    # before v46.0: 204 for an update, no "created" for a create
    old = "/services/data/v45.0/sobjects/Contact/ExtId__c/"
    assert api.call("PATCH", old + "CRM-1", {"Title": "x"}).status == 204
    r = api.call("PATCH", old + "CRM-2", {"LastName": "Lamarr"})
    assert r.status == 201 and "created" not in r.json()
    # updateOnly: no create
    r = api.call("PATCH", path + "CRM-9?updateOnly=true", {"LastName": "x"})
    assert r.status == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    # the external id again in the body is refused
    r = api.call("PATCH", path + "CRM-1", {"ExtId__c": "CRM-1"})
    assert r.status == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"
    # two records with one (non-unique) external id: 300 with their URLs
    a = create_contact(api, LastName="Twin A", ExtId__c="CRM-7")
    b = create_contact(api, LastName="Twin B", ExtId__c="CRM-7")
    r = api.call("PATCH", path + "CRM-7", {"Title": "x"})
    assert r.status == 300
    assert r.json() == [DATA + "/sobjects/Contact/" + a,
                        DATA + "/sobjects/Contact/" + b]
    assert api.call("GET", path + "CRM-7").status == 300
    g = api.call("GET", path + "CRM-1")
    assert (g.status, g.json()["Id"]) == (200, rid)
    r = api.call("PATCH", DATA + "/sobjects/Contact/NoSuch__c/1", {})
    assert r.status == 404
    # POST .../Id creates (v37.0+)
    r = api.call("POST", DATA + "/sobjects/Contact/Id", {"LastName": "Id"})
    assert r.status == 201


# --------------------------------------------------------------------------
# sObject Collections

def test_collections_mixed_results(sf, api):
    records = [{"attributes": {"type": "Contact"}, "LastName": "One"},
               {"attributes": {"type": "Contact"}, "FirstName": "NoLast"},
               {"attributes": {"type": "Account"}, "Name": "Acme"}]
    r = api.call("POST", DATA + "/composite/sobjects",
                 {"allOrNone": False, "records": records})
    assert r.status == 200
    res = r.json()
    same_shape([res[0], res[2]], fixture("collections_create_response.json"))
    assert res[0]["id"].startswith("003") and res[2]["id"].startswith("001")
    assert res[1] == {"success": False, "errors": [{
        "statusCode": "REQUIRED_FIELD_MISSING",
        "message": "Required fields are missing: [LastName]",
        "fields": ["LastName"]}]}
    # update and delete through collections
    r = api.call("PATCH", DATA + "/composite/sobjects", {"records": [
        {"attributes": {"type": "Contact"}, "id": res[0]["id"],
         "Title": "Updated"},
        {"attributes": {"type": "Contact"}, "id": "003RO9999999999AAA",
         "Title": "x"}]})
    assert [x["success"] for x in r.json()] == [True, False]
    assert r.json()[1]["errors"][0]["statusCode"] == "NOT_FOUND"
    r = api.call("PATCH", DATA + "/composite/sobjects/Contact/ExtId__c",
                 {"records": [{"attributes": {"type": "Contact"},
                               "ExtId__c": "C-1", "LastName": "Up"}]})
    assert r.json()[0]["created"] is True
    r = api.call("DELETE", DATA + "/composite/sobjects?ids=%s,%s"
                 % (res[0]["id"], res[2]["id"]))
    assert [x["success"] for x in r.json()] == [True, True]


def test_collections_all_or_none_rolls_back(sf, api):
    events = len(sf.bus.events)
    r = api.call("POST", DATA + "/composite/sobjects", {
        "allOrNone": True,
        "records": [{"attributes": {"type": "Contact"}, "LastName": "A"},
                    {"attributes": {"type": "Contact"}, "Email": "x@y.zz"},
                    {"attributes": {"type": "Contact"}, "LastName": "C"}]})
    assert r.status == 200
    res = r.json()
    same_shape(res, fixture("collections_all_or_none_response.json"))
    assert [x["errors"][0]["statusCode"] for x in res] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert all(x["success"] is False for x in res)
    assert api.query("SELECT Id FROM Contact").json()["totalSize"] == 0
    assert len(sf.bus.events) == events         # nothing committed
    r = api.call("POST", DATA + "/composite/sobjects", {"records": [
        {"attributes": {"type": "Contact"}, "LastName": str(i)}
        for i in range(201)]})
    assert r.status == 400
    assert r.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# --------------------------------------------------------------------------
# SOQL

def test_query_pages_with_next_records_url(sf, api):
    sf.query_batch_size = 3
    ids_ = [create_contact(api, LastName="P%d" % i, Title="Advisor")
            for i in range(7)]
    create_contact(api, LastName="Other", Title="CFO")
    r = api.query("SELECT Id, Name FROM Contact WHERE Title = 'advisor' "
                  "ORDER BY LastName DESC")
    assert r.status == 200
    page = r.json()
    same_shape(page, fixture("query_more_response.json"))
    assert (page["totalSize"], page["done"], len(page["records"])) == \
        (7, False, 3)
    got = [x["Id"] for x in page["records"]]
    pages = 1
    while not page["done"]:
        nxt = page["nextRecordsUrl"]
        assert nxt.startswith(DATA + "/query/01g")
        page = api.call("GET", nxt).json()
        got += [x["Id"] for x in page["records"]]
        pages += 1
    assert pages == 3 and "nextRecordsUrl" not in page
    # the last page: done, no nextRecordsUrl (records as selected)
    same_shape(page, dict(fixture("query_response.json"), records=fixture(
        "query_more_response.json")["records"]))
    assert got == list(reversed(ids_))
    # the batch size header: 200..2000, capped by the emulator's setting
    sf.query_batch_size = 2000
    r = api.query("SELECT Id FROM Contact", {"Sforce-Query-Options":
                                            "batchSize=5"})
    assert (r.json()["done"], len(r.json()["records"])) == (True, 8)


def test_query_where_order_limit_and_all(sf, api):
    for last, city in (("Bo", "Paris"), ("Al", "Oslo"), ("Cy", None),
                       ("Di", "Paris")):
        create_contact(api, LastName=last, MailingCity=city,
                       Email="%s@x.io" % last.lower())
    r = api.query("SELECT LastName FROM Contact WHERE MailingCity = 'Paris' "
                  "AND Email LIKE 'd%' LIMIT 5")
    assert [x["LastName"] for x in r.json()["records"]] == ["Di"]
    assert r.json()["records"][0] == {
        "attributes": r.json()["records"][0]["attributes"], "LastName": "Di"}
    r = api.query("SELECT LastName FROM Contact WHERE MailingCity != null "
                  "ORDER BY MailingCity ASC, LastName DESC LIMIT 2")
    assert [x["LastName"] for x in r.json()["records"]] == ["Al", "Di"]
    r = api.query("SELECT LastName FROM Contact WHERE LastName IN ('Al', "
                  "'Cy') OR MailingCity = 'Oslo'")
    assert sorted(x["LastName"] for x in r.json()["records"]) == ["Al", "Cy"]
    assert api.query("SELECT COUNT() FROM Contact").json() == {
        "totalSize": 4, "done": True, "records": []}
    rid = api.query("SELECT Id FROM Contact WHERE LastName = 'Bo'") \
        .json()["records"][0]["Id"]
    api.call("DELETE", DATA + "/sobjects/Contact/" + rid)
    assert api.query("SELECT Id FROM Contact").json()["totalSize"] == 3
    assert api.query("SELECT Id, IsDeleted FROM Contact", which="queryAll") \
        .json()["totalSize"] == 4


def test_query_errors(sf, api):
    r = api.query("SELECT Id FROM Contact WHERE")
    assert r.status == 400
    same_shape(r.json(), fixture("rest_error_malformed_query.json"))
    assert r.json() == [{"message": "\nSELECT Id FROM Contact WHERE\n" +
                         " " * 28 + "^\nERROR at Row:1:Column:29\n"
                         "unexpected token: '<EOF>'",
                         "errorCode": "MALFORMED_QUERY"}]
    r = api.query("SELECT Id, Shoe__c FROM Contact")
    assert r.status == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "ERROR at Row:1:Column:12\nNo such column 'Shoe__c' on entity " \
        "'Contact'" in r.json()[0]["message"]
    r = api.query("SELECT Id FROM Shoe__c")
    assert r.status == 400 and r.json()[0]["errorCode"] == "INVALID_TYPE"
    r = api.call("GET", DATA + "/query/01gNOPE-2000")
    assert r.status == 400


def test_platform_event_publish(sf, api):
    r = api.call("POST", DATA + "/sobjects/Vantage_Sync__e/",
                 {"Status__c": "done"})
    assert r.status == 201
    body = r.json()
    same_shape(body, fixture("platform_event_publish_response.json"))
    assert body["id"].startswith("e00") and body["success"] is True
    assert body["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    [e] = sf.bus.on("/event/Vantage_Sync__e")
    assert e.data["event"]["EventUuid"] == body["errors"][0]["message"]
    assert e.data["payload"]["Status__c"] == "done"
    assert e.data["payload"]["CreatedById"] == sf.user_id


# --------------------------------------------------------------------------
# Bulk API 2.0

JOBS = DATA + "/jobs/ingest"


def bulk_job(api, **body):
    r = api.call("POST", JOBS, dict({"object": "Contact",
                                     "operation": "insert",
                                     "lineEnding": "LF"}, **body))
    assert r.status == 200, r.body
    return r.json()


def wait_job(api, kind, job_id, states=("JobComplete", "Failed",
                                        "Aborted")):
    path = "%s/jobs/%s/%s" % (DATA, kind, job_id)
    return vh.wait_for(lambda: (lambda j: j if j["state"] in states
                                else None)(api.call("GET", path).json()),
                       30, 0.02, "bulk job %s" % job_id)


@pytest.mark.slow
def test_bulk_ingest_50000_rows_with_invalid_rows(sf, api):
    sf.bulk.start_delay = 0.3           # long enough to see InProgress
    job = bulk_job(api)
    same_shape(job, fixture("bulk_ingest_create_response.json"))
    assert (job["state"], job["object"], job["apiVersion"]) == \
        ("Open", "Contact", 68.0)
    assert job["contentUrl"] == "services/data/v%s/jobs/ingest/%s/batches" \
        % (V, job["id"])
    lines = ["FirstName,LastName,Email"]
    bad = {}
    for i in range(50000):
        last, email = "L%d" % i, "u%d@example.com" % i
        if i % 10000 == 17:
            last = ""
            bad[i] = "REQUIRED_FIELD_MISSING:Required fields are missing: " \
                "[LastName]:LastName --"
        elif i % 10000 == 4242:
            email = "u%d-at-example.com" % i
            bad[i] = "INVALID_EMAIL_ADDRESS:Email: invalid email address: " \
                "%s:Email --" % email
        lines.append("F%d,%s,%s" % (i, last, email))
    r = api.call("PUT", "/" + job["contentUrl"], "\n".join(lines) + "\n",
                 content_type="text/csv")
    assert (r.status, r.body) == (201, b"")
    r = api.call("PATCH", JOBS + "/" + job["id"], {"state": "UploadComplete"})
    assert (r.status, r.json()["state"]) == (200, "UploadComplete")
    vh.wait_for(lambda: api.call("GET", JOBS + "/" + job["id"])
                .json()["state"] == "InProgress", 5, 0.01, "InProgress")
    info = wait_job(api, "ingest", job["id"])
    same_shape(info, fixture("bulk_ingest_job_info.json"))
    assert (info["state"], info["numberRecordsProcessed"],
            info["numberRecordsFailed"]) == ("JobComplete", 50000, 10)
    failed = api.call("GET", JOBS + "/%s/failedResults/" % job["id"])
    assert failed.status == 200
    assert failed.headers["transfer-encoding"] == "chunked"
    assert failed.headers["content-type"] == "text/csv"
    rows = failed.csv()
    assert rows[0] == list(csv.reader(io.StringIO(
        fixture("bulk_failed_results.csv").decode())))[0][:2] + \
        ["FirstName", "LastName", "Email"]
    assert {int(r[2][1:]): r[1] for r in rows[1:]} == bad
    assert all(r[0] == "" for r in rows[1:])
    ok = api.call("GET", JOBS + "/%s/successfulResults/" % job["id"]).csv()
    assert ok[0] == ["sf__Id", "sf__Created", "FirstName", "LastName",
                     "Email"]
    assert len(ok) == 1 + 49990
    assert all(r[1] == "true" and r[0].startswith("003") for r in ok[1:])
    assert len({r[0] for r in ok[1:]}) == 49990
    unprocessed = api.call("GET", JOBS + "/%s/unprocessedrecords/"
                           % job["id"]).csv()
    assert unprocessed == [["FirstName", "LastName", "Email"]]
    assert api.query("SELECT COUNT() FROM Contact").json()["totalSize"] == \
        49990
    # the load produced one change event per record, from the Bulk API
    changes = sf.bus.on("/data/ContactChangeEvent")
    assert len(changes) == 49990
    assert changes[0].data["payload"]["ChangeEventHeader"]["changeOrigin"] \
        == "com/salesforce/api/bulkapi/%s" % V


def test_bulk_upsert_and_results(sf, api):
    existing = create_contact(api, LastName="Old", ExtId__c="E-1")
    job = bulk_job(api, operation="upsert", externalIdFieldName="ExtId__c",
                   columnDelimiter="PIPE")
    data = "ExtId__c|LastName|Title\nE-1|Old|Updated\nE-2|New|Fresh\n" \
           "E-3||Nameless\n"
    assert api.call("PUT", "/" + job["contentUrl"], data,
                    content_type="text/csv").status == 201
    api.call("PATCH", JOBS + "/" + job["id"], {"state": "UploadComplete"})
    info = wait_job(api, "ingest", job["id"])
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == \
        (3, 1)
    ok = api.call("GET", JOBS + "/%s/successfulResults/" % job["id"])
    rows = list(csv.reader(io.StringIO(ok.body.decode()), delimiter="|"))
    assert rows[0] == ["sf__Id", "sf__Created", "ExtId__c", "LastName",
                       "Title"]
    assert rows[1] == [existing, "false", "E-1", "Old", "Updated"]
    assert rows[2][1:] == ["true", "E-2", "New", "Fresh"]
    assert api.call("GET", DATA + "/sobjects/Contact/" + existing) \
        .json()["Title"] == "Updated"


def test_bulk_state_errors_abort_and_failure(sf, api):
    r = api.call("POST", JOBS, {"object": "Nope__c", "operation": "insert"})
    assert r.status == 400 and r.json()[0]["errorCode"] == "INVALIDJOB"
    job = bulk_job(api)
    r = api.call("PUT", "/" + job["contentUrl"], "LastName\nA\n",
                 content_type="application/json")
    assert r.status == 400
    r = api.call("PATCH", JOBS + "/" + job["id"], {"state": "Aborted"})
    assert r.json()["state"] == "Aborted"
    r = api.call("PUT", "/" + job["contentUrl"], "LastName\nA\n",
                 content_type="text/csv")
    assert r.status == 400 and r.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    # an unknown column fails the job; nothing is processed
    job = bulk_job(api)
    api.call("PUT", "/" + job["contentUrl"], "LastName,Shoe__c\nA,9\n",
             content_type="text/csv")
    api.call("PATCH", JOBS + "/" + job["id"], {"state": "UploadComplete"})
    info = wait_job(api, "ingest", job["id"])
    assert (info["state"], info["errorMessage"],
            info["numberRecordsProcessed"]) == (
        "Failed", "InvalidBatch : Field name not found : Shoe__c", 0)
    assert api.call("GET", JOBS + "/%s/unprocessedrecords/" % job["id"]) \
        .csv() == [["LastName", "Shoe__c"], ["A", "9"]]
    # a job the service gives up on part-way
    sf.bulk.fail_after = 3
    job = bulk_job(api)
    api.call("PUT", "/" + job["contentUrl"],
             "LastName\n" + "".join("N%d\n" % i for i in range(5)),
             content_type="text/csv")
    api.call("PATCH", JOBS + "/" + job["id"], {"state": "UploadComplete"})
    info = wait_job(api, "ingest", job["id"])
    assert (info["state"], info["numberRecordsProcessed"]) == ("Failed", 3)
    assert api.call("GET", JOBS + "/%s/unprocessedrecords/" % job["id"]) \
        .csv() == [["LastName"], ["N3"], ["N4"]]
    # a line ending other than the job's
    sf.bulk.fail_after = None
    job = bulk_job(api)
    api.call("PUT", "/" + job["contentUrl"], "LastName\r\nA\r\n",
             content_type="text/csv")
    api.call("PATCH", JOBS + "/" + job["id"], {"state": "UploadComplete"})
    assert wait_job(api, "ingest", job["id"])["errorMessage"] == \
        "LineEnding is invalid on user data. Current LineEnding setting " \
        "is LF"


def test_bulk_query_pages_with_locator(sf, api):
    for i in range(25):
        create_contact(api, LastName="Q%02d" % i)
    sf.bulk.start_delay = 0.5
    r = api.call("POST", DATA + "/jobs/query", {
        "operation": "query",
        "query": "SELECT Id, LastName FROM Contact ORDER BY LastName"})
    assert r.status == 200
    job = r.json()
    same_shape(job, fixture("bulk_query_create_response.json"))
    assert job["state"] == "UploadComplete" and job["object"] == "Contact"
    res = DATA + "/jobs/query/%s/results" % job["id"]
    early = api.call("GET", res)
    assert early.status == 412
    same_shape(early.json(), fixture("bulk_query_not_complete.json"))
    assert early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    info = wait_job(api, "query", job["id"])
    assert (info["jobType"], info["numberRecordsProcessed"]) == \
        ("V2Query", 25)
    names, locators, locator = [], [], None
    while locator != "null":
        r = api.call("GET", res + "?maxRecords=10" +
                     ("&locator=" + locator if locator else ""))
        assert r.status == 200 and r.headers["content-type"] == "text/csv"
        rows = r.csv()
        assert rows[0] == list(csv.reader(io.StringIO(
            fixture("bulk_query_results.csv").decode())))[0][:1] + \
            ["LastName"]
        assert r.headers["sforce-numberofrecords"] == str(len(rows) - 1)
        names += [x[1] for x in rows[1:]]
        locator = r.headers["sforce-locator"]
        locators.append(locator)
    assert names == ["Q%02d" % i for i in range(25)]
    assert locators == ["MTA", "MjA", "null"]       # base64 of 10, 20
    other = api.call("GET", "/services/data/v67.0/jobs/query/%s/results"
                     % job["id"])
    assert other.status == 409
    r = api.call("POST", DATA + "/jobs/query", {"operation": "query",
                                                "query": "SELECT FROM"})
    assert r.status == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"


# --------------------------------------------------------------------------
# Streaming API (CometD)

class Comet:
    def __init__(self, api):
        self.api = api
        self.path = "/cometd/%s" % V
        self.n = 0
        self.client_id = None

    def send(self, *msgs):
        out = []
        for m in msgs:
            self.n += 1
            m = dict(m, id=str(self.n))
            if self.client_id and m["channel"] != "/meta/handshake":
                m.setdefault("clientId", self.client_id)
            out.append(m)
        r = self.api.call("POST", self.path, out)
        assert r.status == 200, r.body
        return r.json()

    def handshake(self):
        [reply] = self.send({"channel": "/meta/handshake", "version": "1.0",
                             "minimumVersion": "1.0",
                             "supportedConnectionTypes": ["long-polling"],
                             "ext": {"replay": True}})
        self.client_id = reply.get("clientId")
        return reply

    def subscribe(self, channel, replay=-1):
        [reply] = self.send({"channel": "/meta/subscribe",
                             "subscription": channel,
                             "ext": {"replay": {channel: replay}}})
        return reply

    def connect(self):
        return self.send({"channel": "/meta/connect",
                          "connectionType": "long-polling"})

    def events(self, want, seconds=10):
        """Connects until want events came; returns them."""
        got = []
        deadline = time.monotonic() + vh.timeout(seconds)
        while len(got) < want and time.monotonic() < deadline:
            replies = self.connect()
            assert replies[-1]["channel"] == "/meta/connect", replies
            assert replies[-1]["successful"] is True, replies
            got += replies[:-1]
        return got


def test_cometd_handshake_subscribe_connect(sf, api):
    c = Comet(api)
    reply = c.handshake()
    same_shape([reply], fixture("cometd_handshake_response.json"))
    assert reply["successful"] is True
    assert reply["ext"] == {"replay": True, "payload.format": True}
    sub = c.subscribe("/data/ContactChangeEvent")
    assert sub == {"channel": "/meta/subscribe", "id": sub["id"],
                   "clientId": c.client_id,
                   "subscription": "/data/ContactChangeEvent",
                   "successful": True}
    first = c.connect()
    same_shape(first, fixture("cometd_first_connect_response.json"))
    assert first[0]["advice"] == {"interval": 0, "timeout": 1000,
                                  "reconnect": "retry"}
    t0 = time.monotonic()
    assert c.connect() == [{"channel": "/meta/connect", "id": str(c.n),
                            "clientId": c.client_id, "successful": True}]
    assert time.monotonic() - t0 >= 0.9             # held, then released
    # a write by the integration user, through REST with a client id
    rid = create_contact(api, LastName="Watson")
    r = api.call("PATCH", DATA + "/sobjects/Contact/" + rid,
                 {"Title": "CTO", "Email": None},
                 headers={"Sforce-Call-Options": "client=vantage"})
    assert r.status == 204
    events = c.events(2)
    assert len(events) == 2
    for e in events:
        same_shape(e, fixture("cdc_change_event.json")
                   if e["data"]["payload"]["ChangeEventHeader"]
                   ["changeType"] == "UPDATE" else e)
    create, update = [e["data"]["payload"] for e in events]
    h = update["ChangeEventHeader"]
    assert (h["entityName"], h["recordIds"], h["changeType"],
            h["changedFields"], h["changeOrigin"], h["commitUser"]) == (
        "Contact", [rid], "UPDATE", ["Title", "LastModifiedDate"],
        "com/salesforce/api/rest/%s;client=vantage" % V, sf.user_id)
    assert update["Title"] == "CTO" and "LastModifiedDate" in update
    hc = create["ChangeEventHeader"]
    assert (hc["changeType"], hc["changeOrigin"], create["LastName"]) == (
        "CREATE", "com/salesforce/api/rest/%s" % V, "Watson")
    assert hc["commitUser"] == sf.user_id
    r1, r2 = [e["data"]["event"]["replayId"] for e in events]
    assert r1 < r2
    # another user's change says so (loop prevention tells them apart)
    other = sf.add_user("advisor@firm.example")
    api2 = Api(sf, sf.access_token("advisor@firm.example"))
    create_contact(api2, LastName="Byrne")
    [e] = c.events(1)
    assert e["data"]["payload"]["ChangeEventHeader"]["commitUser"] == other


def test_cometd_resume_from_replay_id_no_gap_no_duplicate(sf, api):
    c = Comet(api)
    c.handshake()
    c.subscribe("/data/ContactChangeEvent", -1)
    c.connect()
    ids_ = [create_contact(api, LastName="R%d" % i) for i in range(5)]
    # an Account change on the bus in between: another channel's replay id
    api.call("POST", DATA + "/sobjects/Account/", {"Name": "Acme"})
    got = c.events(5)
    assert [e["data"]["payload"]["ChangeEventHeader"]["recordIds"][0]
            for e in got] == ids_
    stored = got[2]["data"]["event"]["replayId"]    # processed up to #3
    sf.drop_streaming_clients()                     # the worker restarts
    assert c.connect() == [{"advice": {"interval": 0,
                                       "reconnect": "handshake"},
                            "channel": "/meta/connect", "id": str(c.n),
                            "error": "403::Unknown client",
                            "successful": False}]
    same_shape(c.connect(), fixture("cometd_unknown_client.json"))
    more = [create_contact(api, LastName="M%d" % i) for i in range(2)]
    d = Comet(api)
    d.handshake()
    assert d.subscribe("/data/ContactChangeEvent", stored)["successful"]
    resumed = d.events(4)
    assert [e["data"]["payload"]["ChangeEventHeader"]["recordIds"][0]
            for e in resumed] == ids_[3:] + more
    replay_ids = [e["data"]["event"]["replayId"] for e in resumed]
    assert replay_ids == sorted(set(replay_ids)) and replay_ids[0] > stored
    assert d.connect()[:-1] == []                   # nothing more, no dup
    # -2: everything retained on the channel
    e = Comet(api)
    e.handshake()
    e.subscribe("/data/ContactChangeEvent", -2)
    assert len(e.events(7)) == 7


def test_cometd_errors(sf, api):
    c = Comet(api)
    c.handshake()
    create_contact(api, LastName="A")
    first = sf.bus.on("/data/ContactChangeEvent")[0].replay_id
    r = c.subscribe("/data/ContactChangeEvent", 99999)
    same_shape({"error": r["error"]}, fixture("cometd_invalid_replay_id.json"))
    assert (r["successful"], r["error"]) == (False, (
        "400::The replayId {99999} you provided was invalid.  Please "
        "provide a valid ID, -2 to replay all events, or -1 to replay only "
        "new events."))
    assert c.subscribe("/data/ContactChangeEvent", first)["successful"]
    sf.trim_events(0)                               # past the retention
    assert c.subscribe("/data/ContactChangeEvent", first)["error"] == \
        "400::The replayId {%d} you provided was invalid.  Please provide " \
        "a valid ID, -2 to replay all events, or -1 to replay only new " \
        "events." % first
    r = c.subscribe("/data/ShoeChangeEvent")
    assert r["error"] == "400::The channel you requested to subscribe to " \
        "does not exist {/data/ShoeChangeEvent}"
    assert Comet(api).send({"channel": "/meta/connect", "clientId": "nope",
                            "connectionType": "long-polling"})[0]["error"] \
        == "403::Unknown client"
    c.connect()
    sf.expire_tokens()
    [r] = c.connect()
    assert (r["error"], r["advice"]["reconnect"]) == (
        "401::Authentication invalid", "none")
    [h] = Comet(Api(sf, "00Dbogus!token")).send(
        {"channel": "/meta/handshake", "version": "1.0",
         "supportedConnectionTypes": ["long-polling"]})
    assert (h["successful"], h["error"], h["ext"]) == (
        False, "403::Handshake denied",
        {"sfdc": {"failureReason": "401::Authentication invalid"}})


def test_cometd_injected_changes_and_platform_events(sf, api):
    c = Comet(api)
    c.handshake()
    c.subscribe("/data/ChangeEvents")
    c.subscribe("/event/Vantage_Sync__e")
    c.connect()
    sf.publish_change("Contact", ["003RO0000000AAAAAA", "003RO0000000BBBBBB"],
                      "GAP_UPDATE", commit_user=sf.user_id)
    api.call("POST", DATA + "/sobjects/Vantage_Sync__e/", {"Status__c": "x"})
    got = c.events(2)
    assert [e["channel"] for e in got] == ["/data/ChangeEvents",
                                           "/event/Vantage_Sync__e"]
    h = got[0]["data"]["payload"]["ChangeEventHeader"]
    assert (h["changeType"], h["recordIds"]) == (
        "GAP_UPDATE", ["003RO0000000AAAAAA", "003RO0000000BBBBBB"])
    assert got[1]["data"]["payload"]["Status__c"] == "x"
    assert set(got[1]["data"]["event"]) == {"replayId", "EventUuid"}


# --------------------------------------------------------------------------
# Outbound Messages

class Listener:
    """An HTTPS SOAP listener with scripted answers."""

    ACK = fixture("outbound_ack_response.xml")
    NACK = ACK.replace(b"<Ack>true</Ack>", b"<Ack>false</Ack>")

    def __init__(self, pki, answers):
        self.answers = list(answers)
        self.received = []
        listener = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                listener.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body))
                status, answer = listener.answers.pop(0) \
                    if listener.answers else (200, listener.ACK)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self.server.socket = ctx.wrap_socket(self.server.socket,
                                             server_side=True)
        self.url = "https://127.0.0.1:%d/sf/outbound" % \
            self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


NS = {"s": "http://schemas.xmlsoap.org/soap/envelope/",
      "o": "http://soap.sforce.com/2005/09/outbound",
      "sf": "urn:sobject.enterprise.soap.sforce.com",
      "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


def _tags(el):
    return [c.tag for c in el]


def test_outbound_message_retried_until_acked(sf, api, pki):
    listener = Listener(pki, [(500, b"oops"), (200, Listener.NACK),
                              (200, b"<not xml")])
    try:
        rid = create_contact(api, LastName="Curie", Email="mc@example.com")
        m = sf.outbound_message("Contact", ["Email", "LastName"],
                                listener.url, ca_file=pki.ca_file,
                                retry_initial=0.05)
        [nid] = m.send([rid])
        assert m.wait_idle(vh.timeout(10))
        assert [(a["status"], a["ack"]) for a in m.attempts] == [
            (500, False), (200, False), (200, False), (200, True)]
        assert [n.id for n in m.delivered()] == [nid]
        assert len(listener.received) == 4
        headers, body = listener.received[-1]
        assert headers["content-type"] == "text/xml; charset=utf-8"
        assert headers["soapaction"] == '""'
        assert [b for _, b in listener.received] == [a["body"]
                                                      for a in m.attempts]
        root = ET.fromstring(body)
        want = ET.fromstring(fixture("outbound_notification.xml"))
        n = root.find("s:Body/o:notifications", NS)
        wn = want.find("s:Body/o:notifications", NS)
        assert _tags(n) == _tags(wn)
        assert n.find("o:OrganizationId", NS).text == sf.org_id
        assert n.find("o:ActionId", NS).text == m.action_id
        assert n.find("o:SessionId", NS).get("{%s}nil" % NS["xsi"]) == "true"
        assert n.find("o:EnterpriseUrl", NS).text == \
            "%s/services/Soap/c/%s/%s" % (sf.instance_url, V, sf.org_id[:15])
        note = n.find("o:Notification", NS)
        assert _tags(note) == _tags(wn.find("o:Notification", NS))
        assert note.find("o:Id", NS).text == nid
        obj = note.find("o:sObject", NS)
        assert obj.get("{%s}type" % NS["xsi"]) == "sf:Contact"
        assert [(c.tag.split("}")[1], c.text) for c in obj] == [
            ("Id", rid), ("Email", "mc@example.com"), ("LastName", "Curie")]
    finally:
        listener.close()


def test_outbound_message_batches_rules_and_session(sf, api, pki):
    listener = Listener(pki, [])
    try:
        m = sf.outbound_message("Contact", ["LastName"], listener.url,
                                ca_file=pki.ca_file, retry_initial=0.05,
                                send_session_id=True, rule=("CREATE",))
        resp = api.call("POST", DATA + "/composite/sobjects", {"records": [
            {"attributes": {"type": "Contact"}, "LastName": "N%d" % i}
            for i in range(150)]})
        assert all(x["success"] for x in resp.json())
        assert m.wait_idle(vh.timeout(10))
        assert len(m.delivered()) == 150
        sizes = sorted(len(a["notification_ids"]) for a in m.attempts)
        assert sum(sizes) == 150 and max(sizes) <= 100
        bodies = [ET.fromstring(b) for _, b in listener.received]
        counts = [len(b.findall("s:Body/o:notifications/o:Notification",
                                NS)) for b in bodies]
        assert sorted(counts) == sizes
        session = bodies[0].find("s:Body/o:notifications/o:SessionId",
                                 NS).text
        assert Api(sf, session).call("GET", DATA + "/limits").status == 200
    finally:
        listener.close()


def test_outbound_message_dropped_when_too_old(sf, api, pki):
    listener = Listener(pki, [(503, b"")] * 100)
    try:
        rid = create_contact(api, LastName="Gone")
        m = sf.outbound_message("Contact", ["LastName"], listener.url,
                                ca_file=pki.ca_file, retry_initial=0.05,
                                retry_max=0.1, max_age=0.5)
        m.send([rid])
        assert m.wait_idle(vh.timeout(10))
        assert m.delivered() == [] and m.queue[0].state == "dropped"
        assert 2 <= len(m.attempts) <= 10
        assert all(a["status"] == 503 for a in m.attempts)
    finally:
        listener.close()
