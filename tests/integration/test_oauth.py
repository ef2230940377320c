"""test_oauth.py -- the token manager (worker/src/oauth.c), end to end.

vantage-worker -c <file> --check-connection <name> gets a token the way
a job would: Redis's sealed copy, the lock across workers, the vault's
secrets (stored with build/vantagectl), the token endpoint of the
Salesforce and HubSpot emulators over TLS.  Each test counts the grants
the emulator saw, reads what it received (the JWT assertion is verified
here with PyJWT against the emulator's certificate), scans Redis for the
token in clear, and checks that no secret reaches the worker's stderr.
"""

import json
import os
import re
import subprocess
import sys
import time

import jwt
import pytest

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402
from hubspot import HubSpot                             # noqa: E402


CTL = os.path.join(vh.REPO, "build", "vantagectl")
SF_TOKEN = "/services/oauth2/token"
HS_TOKEN = "/oauth/v1/token"


@pytest.fixture
def env(base_dir, redis_server, worker_bin):
    """A directory, a master key, a Redis and helpers to run the worker."""
    if not os.path.exists(CTL):
        pytest.skip("vantagectl not built: run make ctl")
    return Env(base_dir, redis_server, worker_bin)


class Env:
    def __init__(self, base_dir, redis, worker_bin):
        self.dir = os.path.join(base_dir, "oauth-%d-%d" % (os.getpid(),
                                                           time.time_ns()))
        os.makedirs(self.dir)
        self.redis = redis
        self.worker = worker_bin
        self.key = self.key_file("master.key")
        self.secrets = []          # values that must never be printed
        self.emulators = []

    def key_file(self, name):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(path, 0o600)
        return path

    def put(self, name, value, key=None):
        if isinstance(value, str):
            value = value.encode()
        self.secrets.append(value)
        p = subprocess.run([CTL, "--redis", self.redis.address, "vault",
                            "put", name, "--key-file", key or self.key],
                           input=value, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=vh.timeout(20))
        assert p.returncode == 0, p.stderr

    def config(self, connection, ca_file, key=None, extra=""):
        path = os.path.join(self.dir, "worker-%d.conf" % time.time_ns())
        with open(path, "w") as f:
            f.write("[worker]\nlisten = unix:%s/w.sock\nredis = %s\n\n"
                    "[vault]\nkey_file = %s\n\n"
                    "[target vendor]\nca_file = %s\n\n%s\n%s"
                    % (self.dir, self.redis.address, key or self.key,
                       ca_file, connection, extra))
        return path

    def start(self, conf, name):
        return subprocess.Popen([self.worker, "-c", conf,
                                 "--check-connection", name],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def finish(self, p):
        out, err = p.communicate(timeout=vh.timeout(60))
        out, err = out.decode(), err.decode()
        lines = out.splitlines()
        assert len(lines) == 1, (out, err)
        answer = json.loads(lines[0])
        self.check_clean(out + err)
        return p.returncode, answer, err

    def run(self, conf, name):
        return self.finish(self.start(conf, name))

    def check_clean(self, text):
        assert not re.search(r"AddressSanitizer|LeakSanitizer|runtime error:",
                             text), text
        for s in self.secrets:
            s = s.decode() if isinstance(s, bytes) else s
            for line in s.strip().splitlines():
                if len(line) >= 8 and "-----" not in line:
                    assert line not in text, "a secret was printed"
        for e in self.emulators:
            for t in issued(e):
                assert t not in text, "a token was printed"

    def redis_dump(self):
        c = self.redis.client()
        out = {}
        for k in c.keys("*"):
            t = c.type(k)
            if t == b"string":
                out[k] = c.get(k)
            elif t == b"hash":
                out[k] = c.hgetall(k)
        return out


def issued(e):
    """Every access token the emulator gave out."""
    if isinstance(e, Salesforce):
        with e.auth.lock:
            return list(e.auth.sessions)
    with e.auth.lock:
        return [t for t, tok in e.auth.tokens.items()
                if tok.expires_at is not None]


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki)
    yield s
    s.stop()


@pytest.fixture
def hs(pki):
    h = HubSpot(pki=pki)
    yield h
    h.stop()


def sf_jwt_conn(sf, name="acme-sf", key="sf.acme.jwt-key"):
    return ("[connection %s]\nvendor = salesforce\nauth = jwt_bearer\n"
            "login_url = %s\nclient_id = %s\nusername = %s\n"
            "private_key = %s\ntarget = vendor\n"
            % (name, sf.login_url, sf.consumer_key, sf.username, key))


def sf_setup_jwt(env, sf):
    env.emulators.append(sf)
    with open(sf.jwt_key_file, "rb") as f:
        env.put("sf.acme.jwt-key", f.read())
    return env.config(sf_jwt_conn(sf), sf.ca_file)


def no_token_in_clear(env, e):
    tokens = issued(e)
    assert tokens
    blob = repr(env.redis_dump())
    for t in tokens:
        assert t not in blob


# -- Salesforce ------------------------------------------------------------

def test_sf_jwt_bearer_grant_then_redis(env, sf):
    conf = sf_setup_jwt(env, sf)

    t0 = time.time()
    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 0, (a, err)
    assert a["ok"] is True and a["connection"] == "acme-sf"
    assert a["source"] == "grant"
    assert a["instance_url"] == sf.instance_url
    # Salesforce gives no expires_in: token_lifetime's default, 1 h
    assert 3590 <= a["expires_in_s"] <= 3600
    assert "token" not in a
    assert sf.count(SF_TOKEN) == 1

    # the assertion, verified independently of the emulator
    req = sf.requests(SF_TOKEN)[0]
    form = dict(x.split("=", 1) for x in req["body"].decode().split("&"))
    assert form["grant_type"] == \
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    assertion = form["assertion"]
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256"}
    with open(sf.jwt_cert_file, "rb") as f:
        from cryptography import x509
        pub = x509.load_pem_x509_certificate(f.read()).public_key()
    claims = jwt.decode(assertion, pub, algorithms=["RS256"],
                        audience=sf.login_url)
    assert claims["iss"] == sf.consumer_key
    assert claims["sub"] == sf.username
    assert claims["aud"] == sf.login_url
    assert t0 + 170 <= claims["exp"] <= time.time() + 181
    assert set(claims) == {"iss", "sub", "aud", "exp"}

    # Redis holds it sealed, with a PX a minute short of its life
    c = env.redis.client()
    assert c.exists("{vq}:toklock:acme-sf") == 0
    ttl = c.pttl("{vq}:tok:acme-sf")
    assert 3530_000 <= ttl <= 3540_000
    no_token_in_clear(env, sf)

    # a second process: Redis's copy, no grant
    rc, b, err = env.run(conf, "acme-sf")
    assert rc == 0, (b, err)
    assert b["source"] == "redis"
    assert b["instance_url"] == sf.instance_url
    assert sf.count(SF_TOKEN) == 1


def test_sf_client_credentials(env, sf):
    env.emulators.append(sf)
    env.put("sf.acme.secret", sf.consumer_secret)
    conn = ("[connection cc]\nvendor = salesforce\nauth = "
            "client_credentials\nlogin_url = %s\nclient_id = %s\n"
            "client_secret = sf.acme.secret\ntarget = vendor\n"
            "token_lifetime = 2h\n"
            % (sf.instance_url, sf.consumer_key))
    conf = env.config(conn, sf.ca_file)

    rc, a, err = env.run(conf, "cc")
    assert rc == 0, (a, err)
    assert (a["source"], a["instance_url"]) == ("grant", sf.instance_url)
    assert 7190 <= a["expires_in_s"] <= 7200
    assert sf.count(SF_TOKEN) == 1
    body = sf.requests(SF_TOKEN)[0]["body"].decode()
    assert body.startswith("grant_type=client_credentials&client_id=")
    no_token_in_clear(env, sf)


def test_sf_refresh_token(env, sf):
    env.emulators.append(sf)
    rt = sf.auth.issue_refresh_token()
    env.put("sf.acme.secret", sf.consumer_secret)
    env.put("sf.acme.refresh", rt)
    conn = ("[connection rt]\nvendor = salesforce\nauth = refresh_token\n"
            "login_url = %s\nclient_id = %s\nclient_secret = sf.acme.secret"
            "\nrefresh_token = sf.acme.refresh\ntarget = vendor\n"
            % (sf.login_url, sf.consumer_key))
    conf = env.config(conn, sf.ca_file)

    rc, a, err = env.run(conf, "rt")
    assert rc == 0, (a, err)
    assert a["source"] == "grant"
    assert sf.count(SF_TOKEN) == 1
    rc, a, err = env.run(conf, "rt")
    assert (rc, a["source"], sf.count(SF_TOKEN)) == (0, "redis", 1)
    no_token_in_clear(env, sf)

    # a revoked refresh token is the vendor's invalid_grant: dead
    sf.auth.revoke_refresh_token(rt)
    env.redis.client().delete("{vq}:tok:rt")
    rc, a, err = env.run(conf, "rt")
    assert rc == 1
    assert a == {"connection": "rt", "ok": False, "retryable": False,
                 "error": "rt: token endpoint: 400 invalid_grant: expired "
                          "access/refresh token"}
    assert sf.count(SF_TOKEN) == 2


def test_single_flight_across_processes(env, sf):
    conf = sf_setup_jwt(env, sf)
    sf.delay(0.5, SF_TOKEN)

    procs = [env.start(conf, "acme-sf") for _ in range(5)]
    answers = [env.finish(p) for p in procs]

    assert all(rc == 0 for rc, _, _ in answers), answers
    assert sorted(a["source"] for _, a, _ in answers) == \
        ["grant", "redis", "redis", "redis", "redis"]
    assert sf.count(SF_TOKEN) == 1
    assert env.redis.client().exists("{vq}:toklock:acme-sf") == 0


def test_a_lock_held_elsewhere_is_waited_for(env, sf):
    conf = sf_setup_jwt(env, sf)
    # another worker holds the lock and went away: its PX ends it
    env.redis.client().set("{vq}:toklock:acme-sf", "elsewhere", px=1500)

    t0 = time.time()
    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 0, (a, err)
    assert a["source"] == "grant"
    assert time.time() - t0 >= 1.3
    assert sf.count(SF_TOKEN) == 1


def test_user_not_approved(env, sf):
    conf = sf_setup_jwt(env, sf)
    sf.auth.add_user(sf.username, approved=False)

    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 1
    assert a == {"connection": "acme-sf", "ok": False, "retryable": False,
                 "error": "acme-sf: token endpoint: 400 invalid_grant: "
                          "user hasn't approved this consumer"}
    assert sf.count(SF_TOKEN) == 1
    c = env.redis.client()
    assert c.exists("{vq}:tok:acme-sf") == 0
    assert c.exists("{vq}:toklock:acme-sf") == 0
    assert "user hasn't approved this consumer" in err


def test_bad_client_secret(env, sf):
    env.put("sf.acme.secret", "not-the-consumer-secret")
    conn = ("[connection cc]\nvendor = salesforce\nauth = "
            "client_credentials\nlogin_url = %s\nclient_id = %s\n"
            "client_secret = sf.acme.secret\ntarget = vendor\n"
            % (sf.instance_url, sf.consumer_key))
    rc, a, err = env.run(env.config(conn, sf.ca_file), "cc")
    assert rc == 1
    assert a["error"] == ("cc: token endpoint: 400 invalid_client: invalid "
                          "client credentials")
    assert a["retryable"] is False
    assert sf.count(SF_TOKEN) == 1


def test_endpoint_503_is_temporary(env, sf):
    conf = sf_setup_jwt(env, sf)
    sf.fail_next(1, 503, path=SF_TOKEN)

    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 1
    assert a["retryable"] is True
    assert a["error"] == ("acme-sf: token endpoint: 503 (temporary: to be "
                          "retried)")
    assert env.redis.client().exists("{vq}:toklock:acme-sf") == 0

    rc, a, err = env.run(conf, "acme-sf")
    assert (rc, a["source"]) == (0, "grant")
    assert sf.count(SF_TOKEN) == 2


def test_wrong_master_key(env, sf):
    conf = sf_setup_jwt(env, sf)
    other = env.key_file("other.key")
    conf = env.config(sf_jwt_conn(sf), sf.ca_file, key=other)

    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 1
    assert a["retryable"] is False
    assert a["error"] == ('acme-sf: secret "sf.acme.jwt-key": wrong master '
                          "key")
    # the key ids are in the log
    assert "record was sealed under key id" in err
    assert sf.count(SF_TOKEN) == 0


def test_missing_record(env, sf):
    env.emulators.append(sf)
    conf = env.config(sf_jwt_conn(sf, key="sf.nowhere"), sf.ca_file)

    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 1
    assert a == {"connection": "acme-sf", "ok": False, "retryable": False,
                 "error": 'acme-sf: no secret "sf.nowhere" in the vault'}
    assert sf.count(SF_TOKEN) == 0


def test_untrusted_endpoint(env, pki):
    sf = Salesforce(pki=pki, untrusted=True)
    try:
        conf = sf_setup_jwt(env, sf)
        # the worker trusts the test PKI, not the emulator's own CA
        conf = env.config(sf_jwt_conn(sf), pki.ca_file)
        rc, a, err = env.run(conf, "acme-sf")
        assert rc == 1
        assert a["retryable"] is True
        assert a["error"].startswith("acme-sf: token endpoint: ")
        assert "certificate" in a["error"].lower()
        assert sf.count(SF_TOKEN) == 0
    finally:
        sf.stop()


def test_no_such_connection(env, sf):
    conf = sf_setup_jwt(env, sf)
    rc, a, err = env.run(conf, "nope")
    assert rc == 1 and a["ok"] is False
    assert a["error"].startswith("no [connection nope]")


# -- HubSpot ---------------------------------------------------------------

def test_hs_private_app(env, hs):
    env.put("hs.acme.pat", hs.private_app.value)
    conn = ("[connection acme-hs]\nvendor = hubspot\nauth = private_app\n"
            "token = hs.acme.pat\nbase_url = %s\ntarget = vendor\n" % hs.url)
    conf = env.config(conn, hs.ca_file)

    rc, a, err = env.run(conf, "acme-hs")
    assert rc == 0, (a, err)
    assert a == {"connection": "acme-hs", "ok": True, "instance_url": hs.url,
                 "expires_in_s": None, "source": "vault"}
    assert hs.count() == 0
    # nothing of it is copied out of the vault
    assert env.redis.client().exists("{vq}:tok:acme-hs") == 0


def test_hs_refresh_token(env, hs):
    env.emulators.append(hs)
    rt = hs.refresh_token()
    env.put("hs.acme.secret", hs.oauth_app.client_secret)
    env.put("hs.acme.refresh", rt)
    conn = ("[connection acme-hs]\nvendor = hubspot\nauth = refresh_token\n"
            "client_id = %s\nclient_secret = hs.acme.secret\n"
            "refresh_token = hs.acme.refresh\ntoken_url = %s%s\n"
            "base_url = %s\ntarget = vendor\n"
            % (hs.oauth_app.client_id, hs.url, HS_TOKEN, hs.url))
    conf = env.config(conn, hs.ca_file)

    rc, a, err = env.run(conf, "acme-hs")
    assert rc == 0, (a, err)
    assert (a["source"], a["instance_url"]) == ("grant", hs.url)
    # expires_in 1800 from HubSpot, not token_lifetime
    assert 1790 <= a["expires_in_s"] <= 1800
    assert hs.count(HS_TOKEN) == 1
    ttl = env.redis.client().pttl("{vq}:tok:acme-hs")
    assert 1730_000 <= ttl <= 1740_000
    no_token_in_clear(env, hs)

    rc, a, err = env.run(conf, "acme-hs")
    assert (rc, a["source"], hs.count(HS_TOKEN)) == (0, "redis", 1)

    # a revoked refresh token: HubSpot's 400 BAD_REFRESH_TOKEN
    hs.auth.revoke(rt)
    env.redis.client().delete("{vq}:tok:acme-hs")
    rc, a, err = env.run(conf, "acme-hs")
    assert rc == 1
    assert a["error"] == ("acme-hs: token endpoint: 400 invalid_grant: "
                          "refresh token is invalid, expired or revoked")
    assert hs.count(HS_TOKEN) == 2


# -- Redis -----------------------------------------------------------------

def test_redis_down_is_temporary(env, sf):
    conf = sf_setup_jwt(env, sf)
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("redis = %s" % env.redis.address,
                             "redis = 127.0.0.1:%d" % vh.free_port()))

    rc, a, err = env.run(conf, "acme-sf")
    assert rc == 1
    assert a["retryable"] is True
    assert a["error"] == "acme-sf: Redis: no connection"
    assert sf.count(SF_TOKEN) == 0
