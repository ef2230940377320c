"""test_jwt_cache.py -- the verified-token cache (vantage_jwt_cache): a
cached token is still checked against each location's own keys,
algorithms, requirements and the clock."""

import time

import pytest

from jwt_asserts import assert_forbidden, assert_invalid, assert_ok
from vantage_harness import RESPONDER_SERVER, b64url, b64url_decode, respond
from vantage_tokens import claims, mint, now


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, keys):
    k = keys.path

    def loc(path, keyfile, extra=""):
        return f"""
        location {path} {{
            vantage_jwt on;
            vantage_jwt_keys {keyfile};
            {extra}
            add_header X-Worker $pid always;
            {respond("ok $vantage_jwt_claim_sub $vantage_jwt_claim_role")}
        }}"""

    return module_nginx_factory(
        name="jwt-cache",
        http=RESPONDER_SERVER + "    vantage_jwt_cache zone=vjwt:1m;\n",
        server="".join([
            loc("/a/", k("hs.secret")),
            loc("/b/", k("hs.secret"), "vantage_jwt_require role admin;"),
            loc("/c/", k("hs_other.secret")),
            loc("/d/", k("hs.secret"), "vantage_jwt_algorithms HS512;"),
            loc("/e/", k("hs.secret"), "vantage_jwt_require aud billing;"),
            loc("/nocache/", k("hs.secret"), "vantage_jwt_cache off;"),
        ]))


def _token(keys, **kw):
    # a distinct token per test: jti makes it so
    return mint(keys.hs, "HS256", claims(role="advisor",
                                         jti=str(time.monotonic()), **kw))


def _get(client, path, token, n=3):
    """n requests on new connections (so every worker, each with its own
    view of the shared cache, is asked); all answers must be equal."""
    rs = [client.get(path, token=token, new_connection=True)
          for _ in range(n)]
    for r in rs[1:]:
        assert (r.status, r.body) == (rs[0].status, rs[0].body), rs
    return rs[0]


def test_cached_token_still_meets_each_locations_require(client, keys):
    t = _token(keys)
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    assert_forbidden(_get(client, "/b/x", t), 'claim "role" not accepted')
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")


def test_refused_first_then_cached_elsewhere(client, keys):
    t = _token(keys)
    assert_forbidden(_get(client, "/b/x", t), 'claim "role" not accepted')
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    assert_forbidden(_get(client, "/b/x", t), 'claim "role" not accepted')


def test_invalid_requirement_not_cached_as_valid(client, keys):
    t = _token(keys, aud="advisor-api")
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    assert_invalid(_get(client, "/e/x", t), 'claim "aud" not accepted')
    t = _token(keys, aud="advisor-api")
    assert_invalid(_get(client, "/e/x", t), 'claim "aud" not accepted')
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")


def test_cached_token_checked_against_each_locations_keys(client, keys):
    t = _token(keys)
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    assert_invalid(_get(client, "/c/x", t), "signature verification failed")
    other = mint(keys.hs_other, "HS256",
                 claims(role="x", jti=str(time.monotonic())))
    assert_ok(_get(client, "/c/x", other), "ok alice x")
    assert_invalid(_get(client, "/a/x", other),
                   "signature verification failed")


def test_cached_token_checked_against_each_locations_algorithms(client, keys):
    t = _token(keys)
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    assert_invalid(_get(client, "/d/x", t), "algorithm not allowed")
    t512 = mint(keys.hs, "HS512", claims(role="r", jti=str(time.monotonic())))
    assert_ok(_get(client, "/d/x", t512), "ok alice r")


def test_cache_keyed_by_the_whole_token(client, keys):
    t = _token(keys)
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")
    h, p, s = t.split(".")
    sig = bytearray(b64url_decode(s))
    sig[-1] ^= 0x10
    assert_invalid(client.get("/a/x", token="%s.%s.%s" % (h, p, b64url(sig))),
                   "signature verification failed")
    evil = b64url('{"sub":"admin","role":"admin","exp":%d}' % (now() + 99))
    assert_invalid(client.get("/a/x", token="%s.%s.%s" % (h, evil, s)),
                   "signature verification failed")


def test_cache_hit_keeps_claims_for_variables(client, keys):
    t = mint(keys.hs, "HS256", claims(sub="dora", role="cached",
                                      jti=str(time.monotonic())))
    for _ in range(4):
        assert_ok(client.get("/a/x", token=t, new_connection=True),
                  "ok dora cached")


def test_cache_off_location(client, keys):
    t = _token(keys)
    assert_ok(_get(client, "/nocache/x", t), "ok alice advisor")
    assert_ok(_get(client, "/a/x", t), "ok alice advisor")


def test_cache_hit_refused_after_exp(client, keys):
    exp = now() + 2
    t = _token(keys, exp=exp)
    assert_ok(_get(client, "/a/x", t, n=4), "ok alice advisor")
    # exp is whole seconds and "now >= exp" refuses: wait past it
    time.sleep(max(0.0, exp + 1.1 - time.time()))
    assert_invalid(_get(client, "/a/x", t, n=4), "token expired")
