"""test_jwt_config.py -- configuration errors found by `nginx -t`, each
naming its directive.  No server is started."""

import base64
import json
import os
import re

import pytest

import vantage_harness as vh
from vantage_tokens import jwk, pem_public, rsa


@pytest.fixture
def check(module_available, nginx_factory, keys):
    """check(http=, server=) -> (rc, output) of nginx -t."""
    def run(http="", server=""):
        n = nginx_factory(name="jwt-t", start=False, http=http, server=server)
        rc, out = n.test_config()
        # a sanitizer report in nginx -t output is a failure in any case
        assert not vh.problem_lines(out.replace("[emerg]", "")), out
        return rc, out
    return run


def _emerg(out, directive, text=None):
    """The one [emerg] line names the directive (and says text)."""
    lines = [l for l in out.splitlines() if "[emerg]" in l]
    assert len(lines) == 1, out
    assert directive in lines[0], out
    assert re.search(r"nginx\.conf:\d+$", lines[0]), out
    if text:
        assert text in lines[0], out
    assert "test failed" in out, out


def _location(keyfile, extra=""):
    return f"""
        location / {{
            vantage_jwt on;
            vantage_jwt_keys {keyfile};
            {extra}
            return 204;
        }}"""


@pytest.fixture
def keyfile(base_dir):
    d = vh.make_dir(os.path.join(base_dir, "conf-keys"))

    def write(name, data):
        return vh.write_file(os.path.join(d, name), data)
    return write


def test_valid_configuration(check, keys):
    rc, out = check(server=_location(keys.path("jwks.json"), """
            vantage_jwt_algorithms RS256 ES256 HS512;
            vantage_jwt_max_size 16k;
            vantage_jwt_require aud a b;
            vantage_jwt_leeway 30s;"""),
        http="vantage_jwt_keys_check_interval 5s;\n"
             "vantage_jwt_claim_set $tier org.tier;\n"
             "vantage_jwt_cache zone=t:1m;")
    assert rc == 0, out
    assert "test is successful" in out


@pytest.mark.parametrize("content", [
    "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "{not json",
    '{"keys": []}',
    '{"keys": [{"kty": "RSA", "n": "AQAB"}]}',
    '{"keys": [{"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}]}',
    '{"kty": "oct", "k": "c2hvcnQ"}',
    '{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}',
    "short secret\n",
    "",
    "base64:!!!notbase64!!!",
    "base64:" + base64.b64encode(b"x" * 31).decode(),
], ids=["bad-pem", "bad-certificate", "bad-json", "empty-jwks",
        "rsa-jwk-without-e", "unknown-curve", "short-oct", "only-okp",
        "short-secret", "empty-file", "bad-base64", "base64-31-bytes"])
def test_invalid_key_file(check, keyfile, content):
    rc, out = check(server=_location(keyfile("bad.key", content)))
    assert rc != 0
    _emerg(out, "vantage_jwt_keys")


def test_rsa_1024_refused(check, keyfile):
    k = rsa.generate_private_key(65537, 1024)
    rc, out = check(server=_location(keyfile("rsa1024.pem", pem_public(k))))
    assert rc != 0
    _emerg(out, "vantage_jwt_keys")
    rc, out = check(server=_location(keyfile(
        "rsa1024.json", json.dumps({"keys": [jwk(k, kid="x")]}))))
    assert rc != 0
    _emerg(out, "vantage_jwt_keys")


def test_secret_of_32_bytes_accepted(check, keyfile):
    rc, out = check(server=_location(keyfile("s32", "y" * 32 + "\n")))
    assert rc == 0, out
    rc, out = check(server=_location(keyfile(
        "s32b64", "base64:" + base64.b64encode(b"\0" * 32).decode())))
    assert rc == 0, out


def test_missing_key_file(check, base_dir):
    rc, out = check(server=_location(os.path.join(base_dir, "no-such-file")))
    assert rc != 0
    _emerg(out, "vantage_jwt_keys")


def test_jwt_on_without_keys(check):
    rc, out = check(server="""
        location / {
            vantage_jwt on;
            return 204;
        }""")
    assert rc != 0
    _emerg(out, "vantage_jwt")


@pytest.mark.parametrize("algs", ["RS256 XX999", "none", "HS256 none",
                                  "rs256", "PS256", "EdDSA"])
def test_unknown_algorithm(check, keys, algs):
    rc, out = check(server=_location(keys.path("rsa.pem"),
                                     "vantage_jwt_algorithms %s;" % algs))
    assert rc != 0
    _emerg(out, "vantage_jwt_algorithms")


@pytest.mark.parametrize("size", ["12q", "-1", "abc", "0"])
def test_bad_max_size(check, keys, size):
    rc, out = check(server=_location(keys.path("rsa.pem"),
                                     "vantage_jwt_max_size %s;" % size))
    assert rc != 0
    _emerg(out, "vantage_jwt_max_size")


@pytest.mark.parametrize("directive,value", [
    ("vantage_jwt_leeway", "forever"),
    ("vantage_jwt_max_keys_tried", "lots"),
    ("vantage_jwt_max_keys_tried", "0"),
    ("vantage_jwt_require_exp", "maybe"),
    ("vantage_jwt", "yes"),
])
def test_bad_values(check, keys, directive, value):
    rc, out = check(server=_location(keys.path("rsa.pem"),
                                     "%s %s;" % (directive, value)))
    assert rc != 0
    _emerg(out, directive)
    if value == "0":
        assert "must be between 1 and 64" in out, out


def test_require_needs_a_value(check, keys):
    rc, out = check(server=_location(keys.path("rsa.pem"),
                                     "vantage_jwt_require aud;"))
    assert rc != 0
    _emerg(out, "vantage_jwt_require", "invalid number of arguments")


@pytest.mark.parametrize("snippet,directive", [
    ("vantage_jwt_keys_check_interval 1s;", "vantage_jwt_keys_check_interval"),
    ("vantage_jwt_claim_set $x sub;", "vantage_jwt_claim_set"),
])
def test_http_level_only(check, keys, snippet, directive):
    rc, out = check(server=_location(keys.path("rsa.pem"), snippet))
    assert rc != 0
    _emerg(out, directive, "is not allowed here")


@pytest.mark.parametrize("value", ["zone=", "zone=x", "zone=x:abc",
                                   "size=1m", "zone=x:1k"])
def test_bad_cache(check, keys, value):
    rc, out = check(http="vantage_jwt_cache %s;" % value,
                    server=_location(keys.path("rsa.pem")))
    assert rc != 0
    _emerg(out, "vantage_jwt_cache")
