"""test_dispatch.py -- the hand-off through nginx: vantage_dispatch and
vantage_jobs with the real module, the real worker and a real redis-server.

What a client sees (statuses, headers, JSON bodies) is checked against the
issue's words, and what the worker persisted is read back from Redis
directly, so that "202 only once the job is durable" and "nothing
half-accepted" are facts about Redis, not about the module's word.  The
JWT subject comes from a token minted by PyJWT.
"""

import hashlib
import json
import os
import re
import signal
import time

import jwt
import pytest

import vantage_harness as vh


HEX32 = re.compile(r"[0-9a-f]{32}")
STREAM = b"{vq}:jobs"
SECRET = b"dispatch-test-secret-0123456789abcdef"

# what the failures below make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage worker: "


def job_key(job_id):
    return b"{vq}:job:" + job_id.encode()


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def worker_factory(worker_factory):
    """conftest's: worker_factory(redis=None, start=True)."""
    # nginx's workers run as nobody: they must be able to connect
    worker_factory.socket_mode = 0o777
    return worker_factory


def conf(worker, extra_http="", timeout="2s", max_body="16k"):
    """http and server snippets: a dispatch location, a status=200 one, a
    JWT-protected one, and the jobs location; the tenant comes from a
    header so that tests can name it (or leave it out)."""
    keys = "@PREFIX@/hs.jwk"
    http = f"""
    vantage_worker unix:{worker.socket_path} timeout={timeout} retry_after=7;
    {extra_http}
"""
    server = f"""
        vantage_tenant $http_x_tenant;
        vantage_dispatch_max_body {max_body};

        location = /hooks/orders {{
            vantage_dispatch http.orders;
            vantage_dispatch_headers Content-Type X-Source;
        }}
        location = /hooks/ack {{
            vantage_dispatch http.orders status=200;
        }}
        location = /jwt/orders {{
            vantage_jwt on;
            vantage_jwt_keys {keys};
            vantage_tenant $vantage_jwt_claim_tenant;
            vantage_dispatch http.orders;
        }}
        location = /hooks/as {{
            vantage_subject $http_x_as;
            vantage_dispatch http.orders;
        }}
        location /jobs/ {{
            vantage_jobs;
        }}
"""
    return http, server


def make_gateway(nginx_factory, worker, **kw):
    http, server = conf(worker, **kw)
    n = nginx_factory(http=http, server=server, start=False)
    jwk = {"kty": "oct", "k": vh.b64url(SECRET), "alg": "HS256"}
    vh.write_file(os.path.join(n.prefix, "hs.jwk"),
                  json.dumps({"keys": [jwk]}))
    n.start()
    return n


@pytest.fixture
def gateway(nginx_factory, worker):
    return make_gateway(nginx_factory, worker)


def post(client, path="/hooks/orders", body=b'{"order": 1}', tenant="acme",
         headers=None):
    h = {"Content-Type": "application/json"}
    if tenant is not None:
        h["X-Tenant"] = tenant
    h.update(headers or {})
    return client.request("POST", path, content=body, headers=h)


def stored(rc, job_id):
    return rc.hgetall(job_key(job_id))


def assert_json_error(r, status, error):
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json", r
    assert r.json is not None and r.json["error"] == error, r
    assert isinstance(r.json["error_description"], str) \
        and r.json["error_description"], r


# --------------------------------------------------------------------------
# accepted

def test_202_after_the_job_is_in_redis(gateway, client_for, rc):
    c = client_for(gateway)
    body = b'{"order": 42, "note": "caf\xc3\xa9"}'
    r = post(c, body=body, headers={"X-Source": "erp",
                                    "X-Correlation-ID": "corr-123",
                                    "Idempotency-Key": "key-1",
                                    "X-Other": "not passed on"})
    assert r.status == 202, r
    assert r.headers["content-type"] == "application/json"
    job_id = r.json["job_id"]
    assert HEX32.fullmatch(job_id), r
    assert r.json == {"job_id": job_id, "status": "queued"}
    assert r.headers["location"].endswith("/jobs/" + job_id), r
    assert r.headers["content-location"] == "/jobs/" + job_id
    assert r.headers["x-correlation-id"] == "corr-123"
    assert r.headers["cache-control"] == "no-store"

    h = stored(rc, job_id)
    assert h[b"type"] == b"http.orders"
    assert h[b"tenant"] == b"acme"
    assert h[b"state"] == b"queued"
    assert h[b"body"] == body
    assert h[b"idempotency_key"] == b"key-1"
    assert h[b"correlation_id"] == b"corr-123"
    assert h[b"method"] == b"POST"
    assert h[b"uri"] == b"/hooks/orders"
    # names as the client sent them: HTTP/2 sends them in lower case
    assert [[k.lower(), v] for k, v in json.loads(h[b"headers"])] == \
        [["content-type", "application/json"], ["x-source", "erp"]]
    assert b"subject" not in h
    entries = rc.xrange(STREAM)
    assert [e[1][b"job"] for e in entries] == [job_id.encode()]


def test_status_200_mode_is_a_plain_acknowledgement(gateway, client_for, rc):
    c = client_for(gateway)
    r = post(c, path="/hooks/ack")
    assert r.status == 200, r
    job_id = r.json["job_id"]
    assert r.json == {"job_id": job_id, "status": "queued"}
    assert "location" not in r.headers
    assert stored(rc, job_id)[b"tenant"] == b"acme"


def test_correlation_id_made_when_absent_or_unsafe(gateway, client_for, rc):
    c = client_for(gateway)
    for sent in (None, "bad value with spaces", "x" * 129):
        headers = {} if sent is None else {"X-Correlation-ID": sent}
        r = post(c, headers=headers)
        assert r.status == 202, r
        made = r.headers["x-correlation-id"]
        assert HEX32.fullmatch(made), r
        assert stored(rc, r.json["job_id"])[b"correlation_id"] \
            == made.encode()


def test_subject_from_a_verified_token(gateway, client_for, rc):
    c = client_for(gateway)
    token = jwt.encode({"sub": "advisor-7", "tenant": "firm-9",
                        "exp": int(time.time()) + 300}, SECRET,
                       algorithm="HS256")
    c.remember(token)
    r = post(c, path="/jwt/orders", tenant=None,
             headers={"Authorization": "Bearer " + token})
    assert r.status == 202, r
    h = stored(rc, r.json["job_id"])
    assert h[b"subject"] == b"advisor-7"
    assert h[b"tenant"] == b"firm-9"

    # no token: the access phase refuses before anything is dispatched
    before = rc.xlen(STREAM)
    r = post(c, path="/jwt/orders", tenant=None)
    assert r.status == 401, r
    assert rc.xlen(STREAM) == before


def test_subject_from_configuration(gateway, client_for, rc):
    c = client_for(gateway)
    r = post(c, path="/hooks/as", headers={"X-As": "svc-billing"})
    assert r.status == 202, r
    assert stored(rc, r.json["job_id"])[b"subject"] == b"svc-billing"


def test_one_megabyte_body_dispatched_whole(nginx_factory, worker,
                                            client_for, rc):
    n = make_gateway(nginx_factory, worker, max_body="2m")
    c = client_for(n)
    body = os.urandom(1024 * 1024)
    r = post(c, body=body, headers={"Content-Type":
                                    "application/octet-stream"})
    assert r.status == 202, r
    h = stored(rc, r.json["job_id"])
    assert len(h[b"body"]) == len(body)
    assert hashlib.sha256(h[b"body"]).hexdigest() == \
        hashlib.sha256(body).hexdigest()
    # no temporary file was involved
    assert os.listdir(os.path.join(n.prefix, "tmp", "client_body")) == []


def test_chunked_body_within_the_limit(gateway, client_for, rc):
    c = client_for(gateway)
    if c.transport != "http":
        pytest.skip("chunked transfer coding is HTTP/1.1's")
    parts = [b"a" * 4000, b"b" * 5000, b"c" * 7000]
    r = post(c, body=iter(parts))
    assert r.status == 202, r
    assert stored(rc, r.json["job_id"])[b"body"] == b"".join(parts)


def test_empty_body_is_a_job(gateway, client_for, rc):
    c = client_for(gateway)
    r = post(c, body=b"")
    assert r.status == 202, r
    assert stored(rc, r.json["job_id"])[b"body"] == b""


# --------------------------------------------------------------------------
# refused at the gateway: nothing reaches Redis

def test_no_tenant_is_403(gateway, client_for, rc):
    c = client_for(gateway)
    r = post(c, tenant=None)
    assert_json_error(r, 403, "forbidden")
    r = post(c, tenant="")
    assert_json_error(r, 403, "forbidden")
    assert rc.xlen(STREAM) == 0


def test_oversized_body_is_413(gateway, client_for, rc):
    c = client_for(gateway)
    # under HTTP/2's initial window, so the client sends it all before it
    # reads the answer
    r = post(c, body=b"x" * (16 * 1024 + 1))
    assert_json_error(r, 413, "payload_too_large")
    r = post(c, body=b"x" * (16 * 1024))
    assert r.status == 202, r
    assert rc.xlen(STREAM) == 1


def test_oversized_chunked_body_is_413(gateway, client_for, rc):
    c = client_for(gateway)
    if c.transport != "http":
        pytest.skip("chunked transfer coding is HTTP/1.1's")
    r = post(c, body=iter([b"y" * 9000, b"y" * 9000]))
    assert_json_error(r, 413, "payload_too_large")
    assert rc.xlen(STREAM) == 0


def test_wrong_method_is_405(gateway, client_for):
    c = client_for(gateway)
    r = c.request("GET", "/hooks/orders", headers={"X-Tenant": "acme"})
    assert_json_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST, PUT, PATCH"


def test_repeated_or_unprintable_idempotency_key_is_400(gateway, client_for,
                                                        rc):
    c = client_for(gateway)
    r = c.request("POST", "/hooks/orders", content=b"{}",
                  headers=[("X-Tenant", "acme"), ("Idempotency-Key", "a"),
                           ("Idempotency-Key", "b")])
    assert_json_error(r, 400, "invalid_request")
    r = post(c, headers={"Idempotency-Key": "k" * 256})
    assert_json_error(r, 400, "invalid_request")
    assert rc.xlen(STREAM) == 0


# --------------------------------------------------------------------------
# the worker or Redis unavailable: 503, Retry-After, nothing accepted

@pytest.mark.log_allow(ALLOW_WORKER)
def test_worker_stopped_is_503_then_back(gateway, worker, client_for, rc):
    c = client_for(gateway)
    worker.stop()
    for _ in range(3):
        r = post(c)
        assert_json_error(r, 503, "temporarily_unavailable")
        assert r.headers["retry-after"] == "7"
    assert rc.xlen(STREAM) == 0
    worker.proc = None
    worker.start()
    os.chmod(worker.socket_path, 0o777)
    r = post(c)
    assert r.status == 202, r
    assert rc.xlen(STREAM) == 1


@pytest.mark.log_allow(ALLOW_WORKER)
def test_redis_stopped_is_503_with_the_workers_retry_after(
        gateway, redis_server, client_for, rc):
    c = client_for(gateway)
    redis_server.stop()
    r = post(c)
    assert_json_error(r, 503, "temporarily_unavailable")
    assert r.headers["retry-after"] == "1"
    redis_server.start()
    rc2 = redis_server.client()
    assert rc2.xlen(STREAM) == 0
    deadline = time.time() + vh.timeout(5)
    while True:
        r = post(c)
        if r.status == 202 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r.status == 202, r
    assert rc2.xlen(STREAM) == 1


@pytest.mark.log_allow(ALLOW_WORKER)
def test_worker_that_does_not_answer_is_503_after_the_timeout(
        nginx_factory, worker, client_for, rc):
    n = make_gateway(nginx_factory, worker, timeout="300ms")
    c = client_for(n)
    assert post(c).status == 202
    worker.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = post(c)
        took = time.monotonic() - t0
        assert_json_error(r, 503, "temporarily_unavailable")
        assert "Idempotency-Key" in r.json["error_description"]
        assert 0.25 <= took < vh.timeout(2.0), took
    finally:
        worker.send_signal(signal.SIGCONT)
    # the late reply to the abandoned call is dropped, and the next works
    r = post(c)
    assert r.status == 202, r


# --------------------------------------------------------------------------
# GET /jobs/<id>

def test_job_status_scoped_to_the_tenant(gateway, client_for):
    c = client_for(gateway)
    r = post(c, tenant="acme")
    job_id = r.json["job_id"]

    r = c.request("GET", "/jobs/" + job_id, headers={"X-Tenant": "acme"})
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    assert r.json["job_id"] == job_id
    assert r.json["status"] == "queued"
    assert r.json["attempts"] == 0
    assert r.json["type"] == "http.orders"
    for k in ("next_attempt_ms", "last_error", "result"):
        assert k in r.json, r

    other = c.request("GET", "/jobs/" + job_id, headers={"X-Tenant": "evil"})
    missing = c.request("GET", "/jobs/" + "0" * 32,
                        headers={"X-Tenant": "acme"})
    malformed = [c.request("GET", "/jobs/" + bad, headers={"X-Tenant": "acme"})
                 for bad in ("not-an-id", job_id.upper(), job_id + "0",
                             job_id[:-1])]
    for x in [other, missing] + malformed:
        assert_json_error(x, 404, "not_found")
    assert other.content == missing.content

    r = c.request("GET", "/jobs/" + job_id)
    assert_json_error(r, 403, "forbidden")
    r = c.request("DELETE", "/jobs/" + job_id, headers={"X-Tenant": "acme"})
    assert_json_error(r, 405, "method_not_allowed")


# --------------------------------------------------------------------------
# configuration errors, named by nginx -t

@pytest.mark.parametrize("http,server,message", [
    ("", "location /a { vantage_tenant t; vantage_dispatch x; }",
     '"vantage_dispatch" needs "vantage_worker" in the http block'),
    ("vantage_worker unix:/tmp/w.sock;",
     "location /a { vantage_dispatch x; }",
     '"vantage_dispatch" needs "vantage_tenant": every job belongs to a '
     'tenant'),
    ("vantage_worker unix:/tmp/w.sock;",
     "location /a { vantage_tenant t; vantage_dispatch 'a b'; }",
     '"vantage_dispatch": the job type "a b" must be 1 to 128 letters, '
     "digits, '.', '_' or '-'"),
    ("vantage_worker unix:/tmp/w.sock;",
     "location /a { vantage_tenant t; vantage_dispatch x status=201; }",
     '"vantage_dispatch": invalid parameter "status=201"'),
    ("vantage_worker 127.0.0.1:9000;", "",
     '"vantage_worker" takes unix:<path>, not "127.0.0.1:9000"'),
    ("vantage_worker unix:/tmp/w.sock timeout=never;", "",
     '"vantage_worker": invalid parameter "timeout=never"'),
    ("vantage_worker unix:/tmp/w.sock; vantage_worker unix:/tmp/x.sock;", "",
     '"vantage_worker" directive is duplicate'),
    ("vantage_worker unix:/tmp/w.sock;",
     "location /a { vantage_tenant t; vantage_dispatch x; "
     "vantage_dispatch_headers Authorization; }",
     '"vantage_dispatch_headers": "Authorization" is not passed on'),
    ("vantage_worker unix:/tmp/w.sock;",
     "location /a { vantage_tenant t; vantage_dispatch x; "
     "vantage_dispatch_max_body 0; }",
     '"vantage_dispatch_max_body" must be from 1 byte to 256m'),
    ("", "location /jobs/ { vantage_tenant t; vantage_jobs; }",
     '"vantage_jobs" needs "vantage_worker" in the http block'),
])
def test_config_errors(module_available, nginx_factory, http, server,
                       message):
    n = nginx_factory(http=http, server=server, start=False)
    rc, out = n.test_config()
    assert rc == 1, out
    assert "[emerg]" in out and message in out, out


@pytest.mark.log_allow(ALLOW_WORKER)
def test_redis_out_of_memory_is_503_and_nothing_stored(gateway, client_for,
                                                       rc):
    c = client_for(gateway)
    rc.config_set("maxmemory", "1")          # noeviction: writes refused
    try:
        r = post(c)
        assert_json_error(r, 503, "temporarily_unavailable")
        assert r.headers["retry-after"] == "1"
        assert rc.xlen(STREAM) == 0
        assert rc.keys(b"{vq}:job:*") == []
    finally:
        rc.config_set("maxmemory", "0")
    r = post(c)
    assert r.status == 202, r
