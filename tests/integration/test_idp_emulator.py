"""test_idp_emulator.py -- tests/fakes/idp.py's token endpoint.

`make run` shows the identity-provider part of issue 5 with the emulator
standing in for Okta: a newcomer gets an access token from its /token
(RFC 6749 section 4.4, client credentials) and sends it to nginx.  These
tests check that endpoint on its own, without nginx or the worker: the
token it issues verifies with PyJWT against the key set the emulator
publishes, found through its discovery document (an implementation
independent of the emulator's own signing), and a client that does not
authenticate, or asks for another grant, is refused as RFC 6749 section
5.2 says.
"""

import base64
import http.client
import json
import os
import ssl
import sys
import tempfile
import time
import urllib.parse

import jwt
import pytest

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from idp import IdP, WELL_KNOWN                  # noqa: E402


CLIENT_ID = "vantage"
CLIENT_SECRET = "s3cr3t-client+/="      # needs RFC 6749 2.3.1's encoding


@pytest.fixture
def idp(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="idp-emu-", dir=base_dir))
    p = IdP(pki=pki, directory=d, clients={CLIENT_ID: CLIENT_SECRET})
    yield p
    p.stop()


def call(idp, method, path, form=None, headers=None):
    """(status, headers as a dict of lower-case names, parsed JSON body)"""
    ctx = ssl.create_default_context(cafile=idp.ca_file)
    c = http.client.HTTPSConnection("127.0.0.1", idp.port, context=ctx,
                                    timeout=vh.timeout(5))
    body = urllib.parse.urlencode(form) if form is not None else None
    h = dict(headers or {})
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return (r.status, {k.lower(): v for k, v in r.getheaders()},
                json.loads(data) if data else None)
    finally:
        c.close()


def basic(client_id, secret):
    """client_secret_basic: each part form-urlencoded, then Basic"""
    raw = "%s:%s" % (urllib.parse.quote_plus(client_id),
                     urllib.parse.quote_plus(secret))
    return {"Authorization":
            "Basic " + base64.b64encode(raw.encode()).decode()}


def published_key(idp, token):
    """The key for token's kid, from the jwks_uri of the discovery
    document, as a relying party finds it."""
    status, _, doc = call(idp, "GET", WELL_KNOWN)
    assert status == 200 and doc["issuer"] == idp.issuer
    assert doc["token_endpoint"] == idp.url + "/token"
    jwks_path = urllib.parse.urlsplit(doc["jwks_uri"]).path
    status, _, jwks = call(idp, "GET", jwks_path)
    assert status == 200
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.PyJWKSet.from_dict(jwks)[kid].key


def newest_rsa_kid(idp):
    return [k for k in idp.kids() if k.startswith("rsa-")][-1]


def assert_no_store(headers):
    assert headers["cache-control"] == "no-store"
    assert headers["pragma"] == "no-cache"


@pytest.mark.parametrize("auth", ["client_secret_basic",
                                  "client_secret_post"])
@pytest.mark.parametrize("scope", ["accounts:read accounts:write", None])
def test_token_verifies_against_published_keys(idp, auth, scope):
    idp.rotate()                # a second RSA key: the newest signs
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if auth == "client_secret_basic":
        headers = basic(CLIENT_ID, CLIENT_SECRET)
    else:
        headers = None
        form.update(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    before = int(time.time())
    status, h, body = call(idp, "POST", "/token", form, headers)

    assert status == 200, body
    assert h["content-type"] == "application/json"
    assert_no_store(h)
    expected = {"token_type": "Bearer", "expires_in": 3600}
    if scope is not None:
        expected["scope"] = scope
    token = body.pop("access_token")
    assert body == expected

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "JWT",
                      "kid": newest_rsa_kid(idp)}
    got = jwt.decode(token, published_key(idp, token), algorithms=["RS256"],
                     issuer=idp.issuer,
                     options={"require": ["iss", "sub", "iat", "exp"]})
    assert got.pop("iat") >= before
    assert got.pop("exp") - 3600 >= before
    want = {"iss": idp.issuer, "sub": CLIENT_ID, "client_id": CLIENT_ID}
    if scope is not None:
        want["scope"] = scope
    assert got == want
    assert idp.requests("/token")[-1]["client"][0] == auth


@pytest.mark.parametrize("headers,form", [
    (None, {}),                                           # no client
    (basic(CLIENT_ID, "wrong"), {}),
    (basic("someone-else", CLIENT_SECRET), {}),
    # the secret as it is, not form-urlencoded: "+" reads as a space
    ({"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (CLIENT_ID, CLIENT_SECRET)).encode()).decode()}, {}),
    (None, {"client_id": CLIENT_ID, "client_secret": "wrong"}),
    (None, {"client_id": CLIENT_ID}),
])
def test_token_client_refused(idp, headers, form):
    form = dict(form, grant_type="client_credentials")
    status, h, body = call(idp, "POST", "/token", form, headers)
    assert status == 401
    assert body == {"error": "invalid_client"}
    assert h["www-authenticate"] == 'Basic realm="idp"'
    assert_no_store(h)


@pytest.mark.parametrize("grant,status,error", [
    ("password", 400, "unsupported_grant_type"),
    ("authorization_code", 400, "unsupported_grant_type"),
    (None, 400, "invalid_request"),
])
def test_token_other_grant_refused(idp, grant, status, error):
    form = {} if grant is None else {"grant_type": grant}
    got, h, body = call(idp, "POST", "/token", form,
                        basic(CLIENT_ID, CLIENT_SECRET))
    assert got == status
    assert body["error"] == error
    assert "access_token" not in body
    assert_no_store(h)


def test_token_is_not_introspected_active(idp):
    """The JWTs are verified against /jwks; /introspect knows only the
    opaque tokens it was given."""
    _, _, body = call(idp, "POST", "/token",
                      {"grant_type": "client_credentials"},
                      basic(CLIENT_ID, CLIENT_SECRET))
    status, _, answer = call(idp, "POST", "/introspect",
                             {"token": body["access_token"]},
                             basic(CLIENT_ID, CLIENT_SECRET))
    assert (status, answer) == (200, {"active": False})
