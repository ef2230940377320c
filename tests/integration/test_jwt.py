"""test_jwt.py -- JWT validation: algorithms, keys, claims, malformed tokens,
responses, forwarded claims, variables, token sources, internal redirects.

One nginx (two workers) serves every location of this file; each test runs
over HTTP/1.1 and over HTTP/2 with TLS.
"""

import json

import pytest

import vantage_tokens as vt
from jwt_asserts import (assert_forbidden, assert_invalid, assert_missing,
                         assert_ok)
from vantage_harness import (RESPONDER_SERVER, b64url, b64url_decode,
                              header_values, respond)
from vantage_tokens import assemble, claims, hs_sign, mint, now


def loc(path, keys, extra="", body="ok $vantage_jwt_claim_sub", json=False):
    return f"""
        location {path} {{
            vantage_jwt on;
            vantage_jwt_keys {keys};
            {extra}
            {respond(body, json)}
        }}"""


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, keys, backend):
    k = keys.path
    locations = [
        loc("/hs/", k("hs.secret")),
        loc("/hs-b64/", k("hs_b64.secret")),
        loc("/rsa/", k("rsa.pem")),
        loc("/rsa-cert/", k("rsa_cert.pem")),
        loc("/rsa-pkcs1/", k("rsa_pkcs1.pem")),
        loc("/ec256/", k("ec256.pem")),
        loc("/ec384/", k("ec384.pem")),
        loc("/ec512/", k("ec512.pem")),
        loc("/jwk/", k("jwk_rsa.json")),
        loc("/jwks/", k("jwks.json")),
        loc("/nokid1/", k("nokid.json"), "vantage_jwt_max_keys_tried 1;"),
        loc("/nokid/", k("nokid.json")),
        loc("/leeway/", k("hs.secret"), "vantage_jwt_leeway 30s;"),
        loc("/noexp/", k("hs.secret"), "vantage_jwt_require_exp off;"),
        loc("/aud/", k("hs.secret"), """
            vantage_jwt_require iss https://idp.example.com/;
            vantage_jwt_require aud advisor-api other-api;"""),
        loc("/scope/", k("hs.secret"),
            "vantage_jwt_require scope accounts:read;"),
        loc("/scp/", k("hs.secret"), "vantage_jwt_require scp accounts:read;"),
        loc("/roles/", k("hs.secret"), """
            vantage_jwt_require roles advisor;
            vantage_jwt_require org.tier gold platinum;"""),
        loc("/typed/", k("hs.secret"), """
            vantage_jwt_require email_verified true;
            vantage_jwt_require level 3;"""),
        loc("/realm/", k("hs.secret"), 'vantage_jwt_realm "advisors";'),
        loc("/default-size/", k("hs.secret")),
        loc("/small/", k("hs.secret"), "vantage_jwt_max_size 1k;"),
        loc("/rs256-only/", k("jwks.json"), "vantage_jwt_algorithms RS256;"),
        loc("/cookie/", k("hs.secret"), "vantage_jwt_token $cookie_session;"),
        loc("/arg/", k("hs.secret"),
            "vantage_jwt_token $arg_access_token;"),
        loc("/hdr/", k("hs.secret"), "vantage_jwt_token $http_x_token;"),
        loc("/vars", k("jwks.json"), body=(
            "sub=$vantage_jwt_claim_sub region=$vj_region org=$vj_org "
            "roles=$vantage_jwt_claim_roles level=$vantage_jwt_claim_level "
            "ok=$vantage_jwt_claim_email_verified "
            "kid=$vantage_jwt_header_kid alg=$vantage_jwt_header_alg "
            "none=[$vantage_jwt_claim_nothing]")),
        loc("/claims", k("hs.secret"), body="$vantage_jwt_claims", json=True),
        loc("/addh", k("hs.secret"),
            "add_header X-Sub $vantage_jwt_claim_sub always;"),
        f"""
        location /proxy/ {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            vantage_jwt_claim_header sub X-Advisor-Id;
            vantage_jwt_claim_header tenant X-Tenant-Id;
            vantage_jwt_claim_header roles X-Roles;
            proxy_pass http://{backend.address};
        }}
        location /strict/ {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            vantage_jwt_require role admin;
            {respond("strict")}
        }}
        location /once/ {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            try_files $uri @strict;
        }}
        location @strict {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            vantage_jwt_require role admin;
            proxy_set_header X-Body "strict-named";
            proxy_pass http://unix:@PREFIX@/responder.sock;
        }}
        location /ep/ {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            error_page 404 = /strict/from-ep;
        }}
        location /open/ {{
            error_page 404 = /strict/from-open;
        }}
        location /sub/ {{
            vantage_jwt on;
            vantage_jwt_keys {k("hs.secret")};
            addition_types text/plain;
            add_before_body /strict/sub;
            {respond("outer")}
        }}
        """,
    ]
    return module_nginx_factory(
        name="jwt",
        http=RESPONDER_SERVER + """
    large_client_header_buffers 4 32k;
    vantage_jwt_claim_set $vj_region org.region;
    vantage_jwt_claim_set $vj_org org;
""",
        server="\n".join(locations))


# --------------------------------------------------------------------------
# every algorithm and key format

def _valid_cases(keys):
    hs = [("/hs/", keys.hs, a, None) for a in ("HS256", "HS384", "HS512")]
    return hs + [
        ("/hs-b64/", keys.hs_b64, "HS256", None),
        ("/rsa/", keys.rsa, "RS256", None),
        ("/rsa/", keys.rsa, "RS384", None),
        ("/rsa/", keys.rsa, "RS512", None),
        ("/rsa-cert/", keys.rsa, "RS256", None),
        ("/rsa-pkcs1/", keys.rsa, "RS256", None),
        ("/ec256/", keys.ec["ES256"], "ES256", None),
        ("/ec384/", keys.ec["ES384"], "ES384", None),
        ("/ec512/", keys.ec["ES512"], "ES512", None),
        ("/jwk/", keys.rsa, "RS256", "jwk-r1"),
        ("/jwk/", keys.rsa, "RS512", None),
        ("/jwks/", keys.rsa, "RS256", "r1"),
        ("/jwks/", keys.rsa2, "RS384", "r2"),
        ("/jwks/", keys.ec["ES256"], "ES256", "e1"),
        ("/jwks/", keys.ec["ES384"], "ES384", "e2"),
        ("/jwks/", keys.ec["ES512"], "ES512", "e3"),
        ("/jwks/", keys.oct_o1, "HS256", "o1"),
        ("/jwks/", keys.oct_o1, "HS512", "o1"),
        ("/jwks/", keys.ec["ES256"], "ES256", None),
        ("/nokid/", keys.hs_b, "HS256", None),
        ("/nokid1/", keys.hs_a, "HS256", None),
    ]


VALID_IDS = ["hs256", "hs384", "hs512", "hs256-base64-secret", "rs256",
             "rs384", "rs512", "rs256-certificate", "rs256-pkcs1",
             "es256", "es384", "es512", "jwk-kid", "jwk-nokid",
             "jwks-rsa", "jwks-rsa2", "jwks-p256", "jwks-p384", "jwks-p521",
             "jwks-oct", "jwks-oct-hs512", "jwks-nokid", "nokid-second-key",
             "nokid-first-key-max1"]


@pytest.mark.parametrize("case", range(len(VALID_IDS)), ids=VALID_IDS)
def test_valid_token_passes(client, keys, case):
    path, key, alg, kid = _valid_cases(keys)[case]
    headers = {"kid": kid} if kid else None
    r = client.get(path + "x", token=mint(key, alg, claims(sub="bob"),
                                          headers))
    assert_ok(r, "ok bob")


def test_max_keys_tried_stops_before_the_right_key(client, keys):
    # nokid.json holds hs_a then hs_b, neither with a kid; one key is tried
    r = client.get("/nokid1/x", token=mint(keys.hs_b, "HS256"))
    assert_invalid(r, "signature verification failed")


def test_hs_secret_keeps_inner_newlines_only(client, keys):
    # the file is the secret plus "\n": a token keyed with the newline fails
    r = client.get("/hs/x", token=mint(keys.hs + b"\n", "HS256"))
    assert_invalid(r, "signature verification failed")


# --------------------------------------------------------------------------
# algorithm confusion and key selection

def test_alg_none_with_empty_signature(client):
    t = assemble({"alg": "none", "typ": "JWT"}, claims())
    r = client.get("/hs/x", token=t)
    assert_invalid(r, "malformed token")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS1024", "PS256",
                                 "EdDSA", ""])
def test_unsupported_algorithm(client, keys, alg):
    t = assemble({"alg": alg}, claims(), b"not-a-signature")
    r = client.get("/jwks/x", token=t)
    assert_invalid(r, "unsupported algorithm")


@pytest.mark.parametrize("header", [
    {"typ": "JWT"}, {"alg": 256}, {"alg": None}, {"alg": ["HS256"]},
    {"alg": "HS256", "kid": 7}, {"alg": "HS256", "kid": {"a": 1}},
], ids=["no-alg", "alg-number", "alg-null", "alg-array", "kid-number",
        "kid-object"])
def test_malformed_header(client, keys, header):
    r = client.get("/hs/x", token=hs_sign(keys.hs, header, claims()))
    assert_invalid(r, "malformed token header")


def test_critical_header_refused(client, keys):
    t = hs_sign(keys.hs, {"alg": "HS256", "crit": ["exp"], "exp": 1},
                claims())
    r = client.get("/hs/x", token=t)
    assert_invalid(r, "unsupported critical header")


def test_hs256_keyed_with_the_rsa_public_key(client, keys):
    # the classic confusion: the verifier must not use the PEM as a secret
    pem = open(keys.path("rsa.pem"), "rb").read()
    for secret in (pem, pem.rstrip(b"\n")):
        t = hs_sign(secret, {"alg": "HS256", "typ": "JWT"}, claims())
        r = client.get("/rsa/x", token=t)
        assert_invalid(r, ("no key for algorithm",
                           "signature verification failed"))
        # the JWKS has an oct key, so the HMAC is checked -- and fails
        r = client.get("/jwks/x", token=t)
        assert_invalid(r, "signature verification failed")


def test_no_key_for_algorithm(client, keys):
    r = client.get("/rsa/x", token=mint(keys.ec["ES256"], "ES256"))
    assert_invalid(r, "no key for algorithm")
    r = client.get("/ec256/x", token=mint(keys.ec["ES384"], "ES384"))
    assert_invalid(r, "no key for algorithm")


def test_unknown_kid(client, keys):
    r = client.get("/jwks/x", token=mint(keys.rsa, "RS256",
                                         headers={"kid": "nope"}))
    assert_invalid(r, "unknown key id")


def test_right_kid_wrong_key(client, keys):
    # signed by rsa2 but naming r1's kid
    r = client.get("/jwks/x", token=mint(keys.rsa2, "RS256",
                                         headers={"kid": "r1"}))
    assert_invalid(r, "signature verification failed")
    # an oct key named by kid is not tried for an RS token
    r = client.get("/jwks/x", token=mint(keys.rsa, "RS256",
                                         headers={"kid": "o1"}))
    assert_invalid(r, ("no key for algorithm", "unknown key id",
                       "signature verification failed"))


def test_wrong_key(client, keys):
    for path, key, alg in (("/rsa/", keys.rsa2, "RS256"),
                           ("/hs/", keys.hs_other, "HS256"),
                           ("/ec256/", vt.ec.generate_private_key(
                               vt.ec.SECP256R1()), "ES256")):
        r = client.get(path + "x", token=mint(key, alg))
        assert_invalid(r, "signature verification failed")


@pytest.mark.parametrize("form", ["der", "63", "65", "empty-s"])
def test_es256_signature_of_wrong_length(client, keys, form):
    key = keys.ec["ES256"]
    if form == "der":
        t = vt.es_sign(key, "ES256", claims(), der=True)
    elif form == "empty-s":
        t = vt.es_sign(key, "ES256", claims(), length=32)
    else:
        t = vt.es_sign(key, "ES256", claims(), length=int(form))
    assert_invalid(client.get("/ec256/x", token=t),
                   "signature verification failed")
    # the same R || S at its right length passes: the test is sound
    ok = vt.es_sign(key, "ES256", claims())
    assert_ok(client.get("/ec256/x", token=ok))


def test_es512_der_signature_refused(client, keys):
    t = vt.es_sign(keys.ec["ES512"], "ES512", claims(), der=True)
    assert_invalid(client.get("/ec512/x", token=t),
                   "signature verification failed")


def test_algorithm_allow_list(client, keys):
    r = client.get("/rs256-only/x", token=mint(keys.ec["ES256"], "ES256",
                                               headers={"kid": "e1"}))
    assert_invalid(r, "algorithm not allowed")
    r = client.get("/rs256-only/x", token=mint(keys.rsa, "RS512",
                                               headers={"kid": "r1"}))
    assert_invalid(r, "algorithm not allowed")
    r = client.get("/rs256-only/x", token=mint(keys.oct_o1, "HS256",
                                               headers={"kid": "o1"}))
    assert_invalid(r, "algorithm not allowed")
    r = client.get("/rs256-only/x", token=mint(keys.rsa, "RS256",
                                               headers={"kid": "r1"}))
    assert_ok(r, "ok alice")


# --------------------------------------------------------------------------
# time claims

def test_expired(client, keys):
    r = client.get("/hs/x", token=mint(keys.hs, "HS256",
                                       claims(exp=now() - 60)))
    assert_invalid(r, "token expired")


def test_not_yet_valid(client, keys):
    r = client.get("/hs/x", token=mint(keys.hs, "HS256",
                                       claims(nbf=now() + 60)))
    assert_invalid(r, "token not yet valid")
    r = client.get("/hs/x", token=mint(keys.hs, "HS256",
                                       claims(nbf=now() - 5)))
    assert_ok(r, "ok alice")


def test_issued_in_the_future(client, keys):
    r = client.get("/hs/x", token=mint(keys.hs, "HS256",
                                       claims(iat=now() + 60)))
    assert_invalid(r, "token issued in the future")


@pytest.mark.parametrize("claim,offset,reason", [
    ("exp", -5, None),
    ("exp", -60, "token expired"),
    ("nbf", 5, None),
    ("nbf", 60, "token not yet valid"),
    ("iat", 5, None),
    ("iat", 60, "token issued in the future"),
], ids=["exp-5s-ok", "exp-60s-expired", "nbf+5s-ok", "nbf+60s-refused",
        "iat+5s-ok", "iat+60s-refused"])
def test_leeway_30s(client, keys, claim, offset, reason):
    # 25 s away from either edge of the 30 s leeway: no clock flakes
    r = client.get("/leeway/x", token=mint(
        keys.hs, "HS256", claims(**{claim: now() + offset})))
    if reason:
        assert_invalid(r, reason)
    else:
        assert_ok(r, "ok alice")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["soon", [1], {"t": 1}, True, None],
                         ids=["string", "array", "object", "bool", "null"])
def test_malformed_time_claim(client, keys, claim, value):
    c = claims()
    c[claim] = value
    r = client.get("/hs/x", token=mint(keys.hs, "HS256", c))
    assert_invalid(r, "malformed time claim")


def test_missing_exp(client, keys):
    t = mint(keys.hs, "HS256", claims(exp=None))
    assert_invalid(client.get("/hs/x", token=t), "missing exp claim")
    assert_ok(client.get("/noexp/x", token=t), "ok alice")
    # require_exp off still checks an exp that is there
    t = mint(keys.hs, "HS256", claims(exp=now() - 60))
    assert_invalid(client.get("/noexp/x", token=t), "token expired")


# --------------------------------------------------------------------------
# required claims: iss and aud give 401, anything else 403

GOOD = dict(iss="https://idp.example.com/", aud="advisor-api")


@pytest.mark.parametrize("over,reason", [
    ({}, None),
    ({"aud": "other-api"}, None),
    ({"aud": ["x", "advisor-api"]}, None),
    ({"aud": ["x", "y"]}, 'claim "aud" not accepted'),
    ({"aud": "advisor-api-v2"}, 'claim "aud" not accepted'),
    ({"aud": []}, 'claim "aud" not accepted'),
    ({"aud": None}, 'claim "aud" not accepted'),
    ({"iss": "https://evil.example.com/"}, 'claim "iss" not accepted'),
    ({"iss": "https://idp.example.com"}, 'claim "iss" not accepted'),
    ({"iss": None}, 'claim "iss" not accepted'),
    ({"iss": ["https://idp.example.com/"]}, None),
], ids=["both-ok", "second-aud-value", "aud-array", "aud-array-miss",
        "aud-prefix", "aud-empty-array", "aud-missing", "iss-wrong",
        "iss-no-slash", "iss-missing", "iss-array"])
def test_iss_aud(client, keys, over, reason):
    c = claims(**dict(GOOD, **over))
    r = client.get("/aud/x", token=mint(keys.hs, "HS256", c))
    if reason:
        assert_invalid(r, reason)
    else:
        assert_ok(r, "ok alice")


@pytest.mark.parametrize("path,scope,ok", [
    ("/scope/", "accounts:read", True),
    ("/scope/", "profile accounts:read email", True),
    ("/scope/", "accounts:readwrite profile", False),
    ("/scope/", "accounts:rea", False),
    ("/scope/", "", False),
    ("/scope/", ["accounts:read"], True),
    ("/scope/", None, False),
    ("/scp/", "openid accounts:read", True),
    ("/scp/", ["openid", "accounts:read"], True),
    ("/scp/", ["openid accounts:read"], False),
    ("/scp/", "openid", False),
], ids=["exact", "among-words", "longer-word", "prefix", "empty", "array",
        "missing", "scp-words", "scp-array", "scp-array-no-split",
        "scp-miss"])
def test_scope(client, keys, path, scope, ok):
    claim = path.strip("/")
    r = client.get(path + "x", token=mint(keys.hs, "HS256",
                                          claims(**{claim: scope})))
    if ok:
        assert_ok(r, "ok alice")
    else:
        assert_forbidden(r, 'claim "%s" not accepted' % claim)


@pytest.mark.parametrize("roles,org,reason", [
    (["advisor", "x"], {"tier": "gold"}, None),
    ("advisor", {"tier": "platinum"}, None),
    (["admin"], {"tier": "gold"}, 'claim "roles" not accepted'),
    ("advisor admin", {"tier": "gold"}, 'claim "roles" not accepted'),
    (["advisor"], {"tier": "silver"}, 'claim "org.tier" not accepted'),
    (["advisor"], {"tier": ["gold"]}, None),
    (["advisor"], {}, 'claim "org.tier" not accepted'),
    (["advisor"], "gold", 'claim "org.tier" not accepted'),
], ids=["array", "string", "array-miss", "no-word-split-for-roles",
        "nested-miss", "nested-array", "nested-missing", "not-an-object"])
def test_require_claims(client, keys, roles, org, reason):
    r = client.get("/roles/x", token=mint(keys.hs, "HS256",
                                          claims(roles=roles, org=org)))
    if reason:
        assert_forbidden(r, reason)
    else:
        assert_ok(r, "ok alice")


@pytest.mark.parametrize("ev,level,reason", [
    (True, 3, None),
    (False, 3, 'claim "email_verified" not accepted'),
    ("true", 3, None),
    (True, 4, 'claim "level" not accepted'),
    (True, "3", None),
    (True, 3.5, 'claim "level" not accepted'),
], ids=["bool-and-number", "false", "string-true", "other-number",
        "string-number", "float"])
def test_require_non_string_claims(client, keys, ev, level, reason):
    r = client.get("/typed/x", token=mint(
        keys.hs, "HS256", claims(email_verified=ev, level=level)))
    if reason:
        assert_forbidden(r, reason)
    else:
        assert_ok(r, "ok alice")


# --------------------------------------------------------------------------
# malformed and tampered tokens

def _parts(t):
    return t.split(".")


def test_tampered_payload(client, keys):
    for path, key, alg in (("/hs/", keys.hs, "HS256"),
                           ("/rsa/", keys.rsa, "RS256"),
                           ("/ec256/", keys.ec["ES256"], "ES256")):
        h, p, s = _parts(mint(key, alg, claims(sub="alice")))
        evil = b64url(json.dumps(claims(sub="admin")))
        r = client.get(path + "x", token="%s.%s.%s" % (h, evil, s))
        assert_invalid(r, "signature verification failed")
        # one flipped signature bit
        sig = bytearray(b64url_decode(s))
        sig[len(sig) // 2] ^= 1
        r = client.get(path + "x", token="%s.%s.%s" % (h, p, b64url(sig)))
        assert_invalid(r, "signature verification failed")


def test_tampered_header_alg_switch(client, keys):
    h, p, s = _parts(mint(keys.hs, "HS256"))
    h384 = b64url(json.dumps({"alg": "HS384", "typ": "JWT"}))
    r = client.get("/hs/x", token="%s.%s.%s" % (h384, p, s))
    assert_invalid(r, "signature verification failed")


def test_truncated_tokens(client, keys):
    t = mint(keys.hs, "HS256")
    h, p, s = _parts(t)
    assert_invalid(client.get("/hs/x", token=h + "." + p),
                   "malformed token")
    assert_invalid(client.get("/hs/x", token=h + "." + p + "."),
                   "malformed token")
    # 43 characters cut to 33: no base64url text has that length
    assert_invalid(client.get("/hs/x", token=t[:-10]), "malformed token")
    # a well-formed but short signature
    short = b64url(b64url_decode(s)[:24])
    assert_invalid(client.get("/hs/x", token="%s.%s.%s" % (h, p, short)),
                   "signature verification failed")
    assert_invalid(client.get("/hs/x", token=h), "malformed token")


@pytest.mark.parametrize("token", [
    "garbage", "a.b.c", "...", "a..c", ".b.c", "a.b.", "x" * 300,
    "eyJhbGciOiJIUzI1NiJ9.e30.$$$$", "eyJhbGciOiJIUzI1NiJ9.e30",
], ids=["one-word", "short-segments", "dots", "empty-middle", "empty-first",
        "empty-last", "long-word", "bad-base64-signature", "two-segments"])
def test_garbage_tokens(client, token):
    assert_invalid(client.get("/hs/x", token=token), "malformed token")


def test_five_segment_token(client, keys):
    # a JWE compact serialization has five segments
    t = mint(keys.hs, "HS256")
    jwe = ".".join([b64url('{"alg":"dir","enc":"A256GCM"}'), "", "aaaa",
                    "bbbb", "cccc"])
    assert_invalid(client.get("/hs/x", token=jwe), "malformed token")
    assert_invalid(client.get("/hs/x", token=t + ".e30.e30"),
                   "malformed token")
    assert_invalid(client.get("/hs/x", token=t + ".e30"), "malformed token")


@pytest.mark.parametrize("header,payload", [
    ('[1,2]', None), ('"HS256"', None), ('{"alg":"HS256"', None),
    ('{"alg":"HS256","alg":"none"}', None), (None, '[]'), (None, '"x"'),
    (None, '42'), (None, '{"sub":"a",}'),
    (None, '{"sub":"alice","sub":"admin","exp":9999999999}'),
    (None, 'not json'),
], ids=["header-array", "header-string", "header-truncated-json",
        "header-duplicate-alg", "payload-array", "payload-string",
        "payload-number", "payload-trailing-comma", "payload-duplicate-sub",
        "payload-not-json"])
def test_malformed_json(client, keys, header, payload):
    header = header or '{"alg":"HS256","typ":"JWT"}'
    payload = payload or json.dumps(claims())
    t = hs_sign(keys.hs, header, payload)
    assert_invalid(client.get("/hs/x", token=t), "malformed token")


@pytest.mark.parametrize("where", ["header", "payload", "signature"])
def test_base64_not_url_safe(client, keys, where):
    # '+' and '/' belong to standard base64, not to base64url
    h, p, s = _parts(mint(keys.hs, "HS256"))
    parts = {"header": h, "payload": p, "signature": s}
    parts[where] = parts[where][:-2] + "+/"
    t = "%(header)s.%(payload)s.%(signature)s" % parts
    assert_invalid(client.get("/hs/x", token=t), "malformed token")


def test_base64_padding_refused(client, keys):
    h, p, s = _parts(mint(keys.hs, "HS256", claims(sub="ab")))
    if len(p) % 4 == 0:
        p = _parts(mint(keys.hs, "HS256", claims(sub="abc")))[1]
    padded = p + "=" * (-len(p) % 4)
    r = client.get("/hs/x", token="%s.%s.%s" % (h, padded, s))
    assert_invalid(r, ("malformed token", "signature verification failed"))


# --------------------------------------------------------------------------
# the responses themselves

def test_no_token(client):
    assert_missing(client.get("/hs/x"))


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer",
                                   "Token abc.def.ghi", "Bearerabc.def.ghi",
                                   ""])
def test_other_authorization_is_no_token(client, value):
    assert_missing(client.get("/hs/x", headers={"Authorization": value}))


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_case_insensitive(client, keys, scheme):
    t = mint(keys.hs, "HS256")
    client.remember(t)
    r = client.get("/hs/x", headers={"Authorization": scheme + " " + t})
    assert_ok(r, "ok alice")


def test_realm(client, keys):
    assert_missing(client.get("/realm/x"), realm="advisors")
    r = client.get("/realm/x", token=mint(keys.hs, "HS256",
                                          claims(exp=now() - 60)))
    assert_invalid(r, "token expired", realm="advisors")


def test_head_request_refused_without_body(client):
    r = client.get("/hs/x", method="HEAD")
    assert r.status == 401 and r.body == "", r
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="vantage"'


# --------------------------------------------------------------------------
# size limits

def test_token_size_limit_default_8k(client, keys):
    for n in (8191, 8192):
        t = vt.hs_token_of_length(keys.hs, n)
        assert_ok(client.get("/default-size/x", token=t), "ok alice")
    t = vt.hs_token_of_length(keys.hs, 8193)
    assert_invalid(client.get("/default-size/x", token=t),
                   "token too large")
    t = "x" * 20000
    assert_invalid(client.get("/default-size/x", token=t),
                   "token too large")


def test_token_size_limit_configured(client, keys):
    t = vt.hs_token_of_length(keys.hs, 1024)
    assert_ok(client.get("/small/x", token=t), "ok alice")
    t = vt.hs_token_of_length(keys.hs, 1025)
    assert_invalid(client.get("/small/x", token=t), "token too large")


# --------------------------------------------------------------------------
# claims forwarded upstream, variables

def test_claim_headers_replace_client_copies(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="alice", roles=["a", "b"]))
    r = client.get("/proxy/p?q=1", token=t, headers={
        "X-Advisor-Id": "mallory", "X-Tenant-Id": "evil-corp",
        "X-Roles": "admin", "X-Other": "kept"})
    assert_ok(r)
    echo = r.json
    assert echo["path"] == "/proxy/p?q=1"
    assert header_values(echo, "x-advisor-id") == ["alice"]
    # no tenant claim: the client's header is dropped, none is added
    assert header_values(echo, "x-tenant-id") == []
    assert header_values(echo, "x-roles") == ['["a","b"]']
    assert header_values(echo, "x-other") == ["kept"]


def test_claim_header_spoof_in_other_case(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="alice", tenant="acme"))
    r = client.get("/proxy/p", token=t, headers={
        "x-advisor-id": "mallory", "X-TENANT-ID": "evil"})
    assert_ok(r)
    assert header_values(r.json, "x-advisor-id") == ["alice"]
    assert header_values(r.json, "x-tenant-id") == ["acme"]


def test_refused_request_not_forwarded(client):
    r = client.get("/proxy/p", headers={"X-Advisor-Id": "mallory"})
    assert_missing(r)


def test_variables(client, keys):
    c = claims(sub="alice", org={"region": "emea", "tier": "gold"},
               roles=["a", "b"], level=42, email_verified=True)
    t = mint(keys.oct_o1, "HS256", c, headers={"kid": "o1"})
    r = client.get("/vars", token=t)
    assert_ok(r, 'sub=alice region=emea org={"region":"emea","tier":"gold"} '
                 'roles=["a","b"] level=42 ok=true kid=o1 alg=HS256 '
                 'none=[]')


def test_all_claims_variable(client, keys):
    c = claims(sub="alice", nested={"a": [1, 2, {"b": None}]},
               uni="caf\u00e9")
    r = client.get("/claims", token=mint(keys.hs, "HS256", c))
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    assert r.json == c


def test_claim_in_add_header(client, keys):
    r = client.get("/addh", token=mint(keys.hs, "HS256", claims(sub="carol")))
    assert_ok(r, "ok carol")
    assert r.headers["X-Sub"] == "carol"


# --------------------------------------------------------------------------
# token sources

def test_token_from_cookie(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="cookie-user"))
    r = client.get("/cookie/x", headers={"Cookie": "a=b; session=" + t})
    assert_ok(r, "ok cookie-user")
    # the Authorization header is not a source here
    assert_missing(client.get("/cookie/x", token=t))
    bad = mint(keys.hs_other, "HS256")
    r = client.get("/cookie/x", headers={"Cookie": "session=" + bad})
    assert_invalid(r, "signature verification failed")


def test_token_from_query_argument(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="arg-user"))
    r = client.get("/arg/x", params={"access_token": t, "z": "1"})
    assert_ok(r, "ok arg-user")
    assert_missing(client.get("/arg/x", params={"other": "x"}))


def test_query_token_not_logged(client, keys):
    # nginx adds the request line, query string included, to every log
    # line of a request: a refusal logged with it would expose the token
    t = mint(keys.hs, "HS256", claims(exp=now() - 60))
    r = client.get("/arg/x", params={"access_token": t})
    assert_invalid(r, "token expired")


def test_token_from_custom_header(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="hdr-user"))
    assert_ok(client.get("/hdr/x", headers={"X-Token": t}), "ok hdr-user")
    assert_missing(client.get("/hdr/x", token=t))


# --------------------------------------------------------------------------
# one authentication per main request

def _no_admin(keys):
    return mint(keys.hs, "HS256", claims(role="advisor"))


def test_strict_location_really_is_strict(client, keys):
    assert_forbidden(client.get("/strict/x", token=_no_admin(keys)),
                     'claim "role" not accepted')
    r = client.get("/strict/x", token=mint(keys.hs, "HS256",
                                           claims(role="admin")))
    assert_ok(r, "strict")


def test_try_files_named_location_not_reauthenticated(client, keys):
    # if @strict authenticated again, its require would give 403
    r = client.get("/once/missing", token=_no_admin(keys))
    assert_ok(r, "strict-named")


def test_error_page_redirect_not_reauthenticated(client, keys):
    r = client.get("/ep/missing", token=_no_admin(keys))
    assert_ok(r, "strict")


def test_outer_check_still_applies_before_redirect(client, keys):
    assert_missing(client.get("/once/missing"))
    assert_invalid(client.get("/ep/missing", token=mint(
        keys.hs, "HS256", claims(exp=now() - 60))), "token expired")


def test_redirect_from_open_location_is_authenticated(client, keys):
    # nothing authenticated this request before the redirect: the
    # protected location must check it
    assert_missing(client.get("/open/missing"))
    assert_forbidden(client.get("/open/missing", token=_no_admin(keys)),
                     'claim "role" not accepted')


def test_subrequest_not_reauthenticated(client, keys):
    r = client.get("/sub/x", token=_no_admin(keys))
    assert_ok(r, "strictouter")


# --------------------------------------------------------------------------
# inheritance: server-level settings, a public location turning it off

def test_server_level_settings_inherited(module_available, nginx_factory,
                                         client_for, keys):
    n = nginx_factory(name="jwt-inherit", http=RESPONDER_SERVER, server=f"""
        vantage_jwt on;
        vantage_jwt_keys {keys.path("hs.secret")};
        vantage_jwt_require aud advisor-api;
        vantage_jwt_realm "api";

        location /health {{
            vantage_jwt off;
            {respond("up")}
        }}
        location /api/ {{
            {respond("api $vantage_jwt_claim_sub")}
        }}
        location /admin/ {{
            vantage_jwt_keys {keys.path("rsa.pem")};
            vantage_jwt_require role admin;
            {respond("admin $vantage_jwt_claim_sub")}
        }}""")
    c = client_for(n)
    assert_ok(c.get("/health"), "up")
    assert_missing(c.get("/api/x"), realm="api")
    hs = mint(keys.hs, "HS256", claims(aud="advisor-api"))
    assert_ok(c.get("/api/x", token=hs), "api alice")
    assert_invalid(c.get("/api/x", token=mint(keys.hs, "HS256", claims())),
                   'claim "aud" not accepted', realm="api")
    # /admin/ has its own keys and requirements
    assert_invalid(c.get("/admin/x", token=hs),
                   ("no key for algorithm", "signature verification failed"),
                   realm="api")
    rs = mint(keys.rsa, "RS256", claims(aud="advisor-api"))
    assert_forbidden(c.get("/admin/x", token=rs), 'claim "role" not accepted',
                     realm="api")
    rs = mint(keys.rsa, "RS256", claims(aud="advisor-api", role="admin"))
    assert_ok(c.get("/admin/x", token=rs), "admin alice")
