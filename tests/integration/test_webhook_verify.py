"""test_webhook_verify.py -- vantage_webhook_verify before vantage_dispatch.

nginx with the module, a real redis-server (the module's replay store and
the worker's queue) and vantage-worker.  Every signature is computed here
with Python's hmac, hashlib and base64, as each vendor documents it,
independently of the module.  What is asserted:

  - docusign: X-DocuSign-Signature-N, any header matching any configured
    key (rotation), the body byte for byte, 1 MB accepted, over the cap 413;
  - hubspot: v3 within 5 minutes (stale and future refused apart), v2 only
    with v2=on;
  - adobesign: the verification GET answered with the client id echoed,
    another client id refused, notifications checked and echoed;
  - hmac: Stripe-, GitHub- and Svix-style senders;
  - replays: 200 {"status":"duplicate"}, no second job, a log line; the key
    is written only once the job is durable (worker down: 503, then the
    retry makes the one job); without Redis the webhook is still taken;
  - nginx -t names the directive and the problem; no secret is logged.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import tempfile
import time

import pytest

import vantage_harness as vh

JOB_TYPE = "vendor.event"
TENANT = "acme"
PATH = "/webhooks/in"

ALLOW_WORKER = r"\[error\] .*vantage (worker|redis)"

SECRET_A = "ds-secret-A-4f1e9c2b7d"
SECRET_B = "ds-secret-B-88a0c3e6f1"
CLIENT_ID = "CBJCHBCAABAA-client.1"
SVIX_KEY = b"\x01svix-signing-key\xfe\x00 32 bytes or so.."
SVIX_SECRET = "whsec_" + base64.b64encode(SVIX_KEY).decode()


def error(code, description):
    """The module's JSON error body."""
    return (json.dumps({"error": code, "error_description": description},
                       separators=(",", ":")) + "\n").encode()


DUPLICATE = b'{"status":"duplicate"}\n'


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def workers(worker_factory):
    """Workers whose socket nginx's workers (user nobody) open."""
    worker_factory.socket_mode = 0o777
    worker_factory.secrets = (SECRET_A, SECRET_B, SVIX_SECRET)
    return worker_factory


@pytest.fixture
def secrets(base_dir):
    """secrets(text) -> the path of a new file holding it, as an operator
    writes it (with a newline)."""
    def make(text):
        d = vh.make_dir(tempfile.mkdtemp(prefix="wh-secret-", dir=base_dir))
        path = os.path.join(d, "secret")
        vh.write_file(path, text + "\n", mode=0o644)
        return path
    return make


def gateway(nginx_factory, w, redis_address, verify, path=PATH,
            log_level="info", dispatch="status=200"):
    return nginx_factory(http="""
    vantage_worker unix:%s timeout=3s retry_after=2;
    vantage_redis %s timeout=500ms;
""" % (w.socket_path, redis_address), server="""
        location = %s {
            vantage_webhook_verify %s;
            vantage_tenant         %s;
            vantage_dispatch       %s %s;
        }
""" % (path, verify, TENANT, JOB_TYPE, dispatch), log_level=log_level)


def post(n, body, headers=None, method="POST", path=PATH):
    """(status, {lowercase header: value}, body) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", n.http_port,
                                   timeout=vh.timeout(30))
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return (r.status, {k.lower(): v for k, v in r.getheaders()},
                r.read())
    finally:
        c.close()


def jobs(rc):
    """Every job in the worker's Redis: a list of hashes (str: str)."""
    out = []
    for k in rc.keys("{vq}:job:*"):
        out.append({a.decode(): b.decode()
                    for a, b in rc.hgetall(k).items()})
    return out


def replay_keys(rc):
    return rc.keys("vantage:webhook:*")


def b64_hmac(secret, data, digest=hashlib.sha256):
    if isinstance(secret, str):
        secret = secret.encode()
    return base64.b64encode(hmac.new(secret, data, digest).digest()).decode()


def hex_hmac(secret, data, digest=hashlib.sha256):
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, data, digest).hexdigest()


_seq = [0]


def payload(size=None, **extra):
    """A DocuSign Connect JSON SIM message (CRLF kept: it is signed)."""
    _seq[0] += 1
    ev = {"event": "envelope-completed", "apiVersion": "v2.1",
          "uri": "/restapi/v2.1/accounts/a1/envelopes/e%d" % _seq[0],
          "retryCount": 0, "configurationId": 7,
          "generatedDateTime": "2026-11-29T21:00:00.000Z",
          "data": {"accountId": "a1", "envelopeId": "e%d" % _seq[0]}}
    ev.update(extra)
    body = json.dumps(ev).encode() + b"\r\n"
    if size is not None:
        ev["pad"] = ""
        base = len(json.dumps(ev).encode() + b"\r\n")
        ev["pad"] = "x" * (size - base)
        body = json.dumps(ev).encode() + b"\r\n"
        assert len(body) == size
    return body


def docusign_headers(body, *secrets):
    return {"X-DocuSign-Signature-%d" % (i + 1): b64_hmac(s, body)
            for i, s in enumerate(secrets)}


def assert_one_job(rc, body, profile="docusign"):
    got = jobs(rc)
    assert len(got) == 1, got
    job = got[0]
    assert job["type"] == JOB_TYPE and job["tenant"] == TENANT
    assert job["body"].encode() == body
    assert job["idempotency_key"].startswith("webhook:%s:" % profile)
    assert len(job["idempotency_key"]) == len("webhook:%s:" % profile) + 64
    return job


def accepted(status, headers, body):
    assert status == 200, (status, body)
    answer = json.loads(body)
    assert answer["status"] == "queued" and len(answer["job_id"]) == 32
    return answer


# --------------------------------------------------------------------------
# docusign

def test_docusign_valid_is_one_job_and_the_replay_none(
        workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s" % secrets(SECRET_A))
    body = payload()
    h = docusign_headers(body, SECRET_A)

    first = accepted(*post(n, body, h))
    assert_one_job(rc, body)
    vh.wait_for(lambda: len(replay_keys(rc)) == 1, 5, what="replay key")
    ttl = rc.pttl(replay_keys(rc)[0])
    assert 0 < ttl <= 600000                # twice the 5 minute tolerance

    off = n.log_size()
    status, _, answer = post(n, body, h)
    assert (status, answer) == (200, DUPLICATE)
    assert len(jobs(rc)) == 1
    log = n.log_since(off)
    assert "vantage webhook: docusign replay of an event already taken, " \
           "acknowledged without a job" in log

    # not a secret, not a signature in the log
    text = vh._read(n.error_log)
    assert SECRET_A not in text and h["X-DocuSign-Signature-1"] not in text


def test_docusign_refusals(workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s" % secrets(SECRET_A))
    body = payload()

    wrong = post(n, body, docusign_headers(body, "another-secret"))
    assert wrong[0] == 401
    assert wrong[2] == error("invalid_signature",
                             "no X-DocuSign-Signature matches the body")

    # one byte changed after signing
    h = docusign_headers(body, SECRET_A)
    tampered = body.replace(b"completed", b"Completed")
    assert post(n, tampered, h)[::2] == (401, wrong[2])

    missing = post(n, body, {})
    assert missing[0] == 401
    assert missing[2] == error("invalid_signature",
                               "X-DocuSign-Signature-1 is missing")
    assert missing[1]["content-type"] == "application/json"

    assert jobs(rc) == [] and replay_keys(rc) == []
    log = vh._read(n.error_log)
    assert "vantage webhook: docusign request refused: no signature " \
           "matches" in log
    assert "vantage webhook: docusign request refused: no " \
           "X-DocuSign-Signature header" in log
    assert SECRET_A not in log and h["X-DocuSign-Signature-1"] not in log


def test_docusign_rotation(workers, nginx_factory, redis_server, rc,
                           secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s secret_file=%s"
                % (secrets(SECRET_A), secrets(SECRET_B)))

    # signed with the second key only
    body = payload()
    accepted(*post(n, body, docusign_headers(body, SECRET_B)))

    # DocuSign with two keys of its own: one unknown here, then ours
    body2 = payload()
    h = {"X-DocuSign-Signature-1": b64_hmac("retired-key", body2),
         "X-DocuSign-Signature-2": b64_hmac(SECRET_A, body2)}
    accepted(*post(n, body2, h))
    assert sorted(j["body"].encode() for j in jobs(rc)) == \
        sorted([body, body2])


def test_docusign_a_megabyte_is_taken_and_more_is_413(
        workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s" % secrets(SECRET_A))

    big = payload(size=1024 * 1024)
    accepted(*post(n, big, docusign_headers(big, SECRET_A)))
    assert_one_job(rc, big)

    over = payload(size=1024 * 1024 + 1)
    status, _, answer = post(n, over, docusign_headers(over, SECRET_A))
    assert status == 413
    assert answer == error("payload_too_large",
                           "the body is larger than this endpoint accepts")
    assert len(jobs(rc)) == 1


@pytest.mark.log_allow(ALLOW_WORKER)
def test_worker_down_is_503_then_the_retry_is_taken_once(
        workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s" % secrets(SECRET_A))
    w.stop()
    body = payload()
    h = docusign_headers(body, SECRET_A)

    status, headers, _ = post(n, body, h)
    assert status == 503 and headers["retry-after"] == "2"
    assert jobs(rc) == []
    # nothing remembered: the retry is not a replay
    assert replay_keys(rc) == []

    workers.start(w)
    accepted(*post(n, body, h))
    assert_one_job(rc, body)
    vh.wait_for(lambda: len(replay_keys(rc)) == 1, 5, what="replay key")
    assert post(n, body, h)[::2] == (200, DUPLICATE)
    assert len(jobs(rc)) == 1


def test_the_key_not_yet_recorded_is_deduplicated_by_the_worker(
        workers, nginx_factory, redis_server, rc, secrets):
    """Two deliveries of one event at once: the replay key is written only
    after the job is durable, so the worker's idempotency key catches the
    second; simulated by deleting the replay key between them."""
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "docusign secret_file=%s" % secrets(SECRET_A))
    body = payload()
    h = docusign_headers(body, SECRET_A)
    first = accepted(*post(n, body, h))
    vh.wait_for(lambda: len(replay_keys(rc)) == 1, 5, what="replay key")
    rc.delete(*replay_keys(rc))

    status, headers, answer = post(n, body, h)
    second = accepted(status, headers, answer)
    assert second["job_id"] == first["job_id"]
    assert headers.get("idempotent-replayed") == "true"
    assert len(jobs(rc)) == 1


@pytest.mark.log_allow(ALLOW_WORKER)
def test_without_redis_the_webhook_is_still_taken(
        workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    dead = "127.0.0.1:%d" % vh.free_port()
    n = gateway(nginx_factory, w, dead,
                "docusign secret_file=%s" % secrets(SECRET_A))
    body = payload()
    accepted(*post(n, body, docusign_headers(body, SECRET_A)))
    assert_one_job(rc, body)
    vh.wait_for(lambda: "docusign replay protection skipped"
                in vh._read(n.error_log), 5, what="the log line")


# --------------------------------------------------------------------------
# hubspot

def hs_v3(secret, method, uri, body, ts):
    return b64_hmac(secret, method.encode() + uri.encode() + body
                    + str(ts).encode())


def hs_post(n, body, secret=SECRET_A, ts=None, path=PATH):
    ts = int(time.time() * 1000) if ts is None else ts
    uri = "http://127.0.0.1:%d%s" % (n.http_port, path)
    return post(n, body, {
        "X-HubSpot-Signature-v3": hs_v3(secret, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": str(ts)})


def hs_v2_post(n, body, secret=SECRET_A, path=PATH):
    uri = "http://127.0.0.1:%d%s" % (n.http_port, path)
    sig = hashlib.sha256(secret.encode() + b"POST" + uri.encode()
                         + body).hexdigest()
    return post(n, body, {"X-HubSpot-Signature": sig,
                          "X-HubSpot-Signature-Version": "v2"})


def test_hubspot_v3(workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hubspot secret_file=%s secret_file=%s"
                % (secrets(SECRET_B), secrets(SECRET_A)))
    body = b'[{"eventId":1,"subscriptionType":"contact.creation"}]'
    accepted(*hs_post(n, body))
    assert_one_job(rc, body, "hubspot")

    # 30 s past the tolerance, taken when sent: a slow (valgrind) run
    # must not bring a future timestamp back inside the window
    stale = hs_post(n, body, ts=int(time.time() * 1000) - 330000)
    assert stale[::2] == (401, error(
        "stale_timestamp",
        "the signature's timestamp is older than the tolerance"))
    future = hs_post(n, body, ts=int(time.time() * 1000) + 330000)
    assert future[::2] == (401, error(
        "future_timestamp", "the signature's timestamp is ahead of this "
        "server's clock by more than the tolerance"))

    wrong = hs_post(n, body, secret="not-the-app-secret")
    assert wrong[::2] == (401, error(
        "invalid_signature",
        "X-HubSpot-Signature-v3 does not match the request"))

    bad_ts = post(n, body, {"X-HubSpot-Signature-v3": "x" * 43 + "=",
                            "X-HubSpot-Request-Timestamp": "12ab"})
    assert bad_ts[::2] == (400, error(
        "malformed_signature",
        "X-HubSpot-Request-Timestamp is not epoch milliseconds"))

    # v2 without v2=on
    v2 = hs_v2_post(n, b'[{"eventId":2}]')
    assert v2[::2] == (401, error("invalid_signature",
                                  "v2 signatures are not accepted here"))
    assert len(jobs(rc)) == 1


def test_hubspot_v2_when_on(workers, nginx_factory, redis_server, rc,
                            secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hubspot secret_file=%s v2=on" % secrets(SECRET_A))
    body = b'[{"eventId":3}]'
    accepted(*hs_v2_post(n, body))
    assert hs_v2_post(n, body, secret="other")[0] == 401
    accepted(*hs_post(n, b'[{"eventId":4}]'))
    assert len(jobs(rc)) == 2


# --------------------------------------------------------------------------
# adobesign

def test_adobesign_verification_and_notifications(
        workers, nginx_factory, redis_server, rc):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "adobesign client_id=%s" % CLIENT_ID)

    status, headers, body = post(n, None, {"X-AdobeSign-ClientId": CLIENT_ID},
                                 method="GET")
    assert status == 200
    assert headers["x-adobesign-clientid"] == CLIENT_ID
    assert json.loads(body) == {"xAdobeSignClientId": CLIENT_ID}

    refused = error("invalid_client_id", "X-AdobeSign-ClientId is missing "
                    "or not this application's")
    status, headers, body = post(n, None,
                                 {"X-AdobeSign-ClientId": "UB7E5BXCXY"},
                                 method="GET")
    assert (status, body) == (401, refused)
    assert "x-adobesign-clientid" not in headers
    assert post(n, None, {}, method="GET")[::2] == (401, refused)

    note = json.dumps({"webhookId": "w1", "webhookNotificationId": "n1",
                       "event": "AGREEMENT_WORKFLOW_COMPLETED",
                       "agreement": {"id": "CBJ1", "status": "SIGNED"}}
                      ).encode()
    status, headers, body = post(n, note, {"X-AdobeSign-ClientId": CLIENT_ID})
    accepted(status, headers, body)
    assert headers["x-adobesign-clientid"] == CLIENT_ID
    assert_one_job(rc, note, "adobesign")

    assert post(n, note, {"X-AdobeSign-ClientId": "UB7E5BXCXY"})[::2] == \
        (401, refused)
    assert post(n, note, {})[::2] == (401, refused)

    # the same notification again: a replay
    status, headers, body = post(n, note, {"X-AdobeSign-ClientId": CLIENT_ID})
    assert (status, body) == (200, DUPLICATE)
    assert headers["x-adobesign-clientid"] == CLIENT_ID
    assert len(jobs(rc)) == 1


# --------------------------------------------------------------------------
# hmac: Stripe, GitHub, Svix

def stripe_header(body, ts, *secrets):
    signed = str(ts).encode() + b"." + body
    return ",".join(["t=%d" % ts] + ["v1=" + hex_hmac(s, signed)
                                      for s in secrets]
                    + ["v0=" + "0" * 64])


def test_stripe_style(workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hmac scheme=stripe secret_file=%s secret_file=%s"
                % (secrets(SECRET_A), secrets(SECRET_B)))
    body = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'
    now = int(time.time())

    accepted(*post(n, body, {"Stripe-Signature":
                             stripe_header(body, now, "whsec_other",
                                           SECRET_B)}))
    assert_one_job(rc, body, "hmac")

    assert post(n, body, {"Stripe-Signature": stripe_header(
        body, now, SECRET_B)})[::2] == (200, DUPLICATE)

    stale = post(n, body, {"Stripe-Signature":
                           stripe_header(body, int(time.time()) - 330,
                                         SECRET_A)})
    assert stale[0] == 401 and json.loads(stale[2])["error"] == \
        "stale_timestamp"
    future = post(n, body, {"Stripe-Signature":
                            stripe_header(body, int(time.time()) + 330,
                                          SECRET_A)})
    assert future[0] == 401 and json.loads(future[2])["error"] == \
        "future_timestamp"

    tampered = post(n, body + b" ", {"Stripe-Signature":
                                     stripe_header(body, now, SECRET_A)})
    assert tampered[::2] == (401, error(
        "invalid_signature", "the signature does not match the request"))

    no_t = post(n, body, {"Stripe-Signature": "v1=" + "a" * 64})
    assert no_t[::2] == (401, error(
        "invalid_signature", "the signature's timestamp is missing"))
    assert post(n, body, {})[::2] == (401, error(
        "invalid_signature", "the signature header is missing"))
    assert len(jobs(rc)) == 1


def test_github_style(workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hmac scheme=github secret_file=%s" % secrets(SECRET_A))
    body = b'{"action":"opened","number":7}'
    sig = "sha256=" + hex_hmac(SECRET_A, body)
    h = {"X-Hub-Signature-256": sig, "X-GitHub-Delivery": "d-1",
         "X-GitHub-Event": "pull_request"}
    accepted(*post(n, body, h))
    assert_one_job(rc, body, "hmac")

    # the replay key is the delivery id
    assert post(n, body, h)[::2] == (200, DUPLICATE)

    for bad in ("sha1=" + hex_hmac(SECRET_A, body, hashlib.sha1),
                hex_hmac(SECRET_A, body),
                "sha256=" + hex_hmac(SECRET_B, body)):
        h2 = dict(h, **{"X-Hub-Signature-256": bad, "X-GitHub-Delivery":
                        "d-2"})
        assert post(n, body, h2)[0] == 401

    no_id = {"X-Hub-Signature-256": sig}
    assert post(n, body, no_id)[::2] == (401, error(
        "invalid_signature", "the event id header is missing"))

    assert len(jobs(rc)) == 1


def test_generic_options(workers, nginx_factory, redis_server, rc, secrets):
    """No scheme: header=, prefix=, encoding=base64, algorithm=sha512, a
    timestamp header in milliseconds-free seconds, a template with the
    method and the URI."""
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hmac header=X-Sig prefix=v1: encoding=base64 "
                "algorithm=sha512 timestamp_header=X-Ts tolerance=1m "
                "id_header=X-Id \"template={method}|{uri}|{timestamp}.{id}."
                "{body}\" secret_file=%s" % secrets(SECRET_A))
    body = b"a=1&b=2"
    ts = str(int(time.time()))
    signed = b"POST|" + PATH.encode() + b"?q=1|" + ts.encode() + b".e-9." \
        + body
    h = {"X-Sig": "v1:" + b64_hmac(SECRET_A, signed, hashlib.sha512),
         "X-Ts": ts, "X-Id": "e-9"}
    accepted(*post(n, body, h, path=PATH + "?q=1"))
    assert_one_job(rc, body, "hmac")

    old = str(int(time.time()) - 61)
    signed = signed.replace(ts.encode() + b".", old.encode() + b".")
    h2 = {"X-Sig": "v1:" + b64_hmac(SECRET_A, signed, hashlib.sha512),
          "X-Ts": old, "X-Id": "e-9"}
    assert json.loads(post(n, body, h2, path=PATH + "?q=1")[2])["error"] \
        == "stale_timestamp"


def svix_sign(key, msg_id, ts, body):
    return "v1," + b64_hmac(key, msg_id.encode() + b"." + str(ts).encode()
                            + b"." + body)


def test_svix_style(workers, nginx_factory, redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hmac scheme=svix secret_file=%s" % secrets(SVIX_SECRET))
    body = b'{"type":"invoice.created","data":{"id":"inv_1"}}'
    ts = int(time.time())
    h = {"svix-id": "msg_2Lh9KRb0pzN4LePd3XiA4bJ4wRo",
         "svix-timestamp": str(ts),
         "svix-signature": "v1,AAAAbm90IHRoaXMgb25lAAAAAAAAAAAAAAAAAAAAAAA= "
                           + svix_sign(SVIX_KEY, "msg_2Lh9KRb0pzN4LePd3XiA4"
                                       "bJ4wRo", ts, body)}
    accepted(*post(n, body, h))
    assert_one_job(rc, body, "hmac")
    assert post(n, body, h)[::2] == (200, DUPLICATE)

    # the secret's text itself is not the key
    wrong = dict(h, **{"svix-id": "msg_2", "svix-signature": svix_sign(
        SVIX_SECRET.encode(), "msg_2", ts, body)})
    assert post(n, body, wrong)[0] == 401

    stale = dict(h, **{"svix-id": "msg_3", "svix-timestamp": str(ts - 400),
                       "svix-signature": svix_sign(SVIX_KEY, "msg_3",
                                                   ts - 400, body)})
    assert json.loads(post(n, body, stale)[2])["error"] == "stale_timestamp"

    bad_ts = dict(h, **{"svix-timestamp": "soon"})
    assert post(n, body, bad_ts)[::2] == (400, error(
        "malformed_signature",
        "the signature's timestamp is not epoch seconds"))
    assert len(jobs(rc)) == 1


# --------------------------------------------------------------------------
# nginx -t

@pytest.mark.parametrize("verify,http,message", [
    ("nosuch secret_file=@A@", "",
     '"vantage_webhook_verify": unknown profile "nosuch" (docusign, '
     'hubspot, adobesign or hmac)'),
    ("docusign", "",
     '"vantage_webhook_verify": the docusign profile needs '
     'secret_file=<path>'),
    ("docusign secret_file=/nonexistent/secret", "",
     '"vantage_webhook_verify": cannot open secret file '
     '"/nonexistent/secret"'),
    ("docusign secret_file=@DIR@", "",
     '"vantage_webhook_verify": secret file "@DIR@" is not a readable file '
     'of at most 4096 bytes'),
    ("docusign secret_file=@EMPTY@", "",
     '"vantage_webhook_verify": secret file "@EMPTY@" is empty'),
    ("docusign secret_file=relative/path", "",
     '"vantage_webhook_verify": secret_file= must be an absolute path'),
    ("docusign secret_file=@A@ verbose=yes", "",
     '"vantage_webhook_verify": invalid parameter "verbose=yes" for the '
     'docusign profile (only hmac takes it)'),
    ("docusign secret_file=@A@ client_id=x", "",
     '"vantage_webhook_verify": invalid parameter "client_id=x" for the '
     'docusign profile'),
    ("hubspot secret_file=@A@ v2=maybe", "",
     '"vantage_webhook_verify": invalid parameter "v2=maybe" for the '
     'hubspot profile'),
    ("docusign secret_file=@A@ tolerance=0s", "",
     '"vantage_webhook_verify": "tolerance=0s" must be a time from 1s '
     'to 1d'),
    ("adobesign", "",
     '"vantage_webhook_verify": the adobesign profile needs '
     'client_id=<id>'),
    ("adobesign client_id=a/b", "",
     '"vantage_webhook_verify": "a/b" is not a client id'),
    ("hmac secret_file=@A@", "",
     '"vantage_webhook_verify": the hmac profile needs header=<name> or '
     'scheme=stripe|svix|github'),
    ("hmac secret_file=@A@ scheme=paypal", "",
     '"vantage_webhook_verify": unknown scheme "paypal" (stripe, svix or '
     'github)'),
    ('hmac secret_file=@A@ header=X-Sig "template={body}{when}"', "",
     '"vantage_webhook_verify": template "{body}{when}" must hold {body}'),
    ('hmac secret_file=@A@ header=X-Sig "template={timestamp}.{body}"', "",
     '"vantage_webhook_verify": the template signs {timestamp} but no '
     'timestamp_header= is configured'),
    ("hmac secret_file=@A@ scheme=svix", "",
     '"vantage_webhook_verify": secret file 1 is not a whsec_ secret'),
    ("docusign secret_file=@A@", "NOREDIS",
     '"vantage_webhook_verify": replay protection needs "vantage_redis" '
     'in the http block (or replay=off)'),
    ("docusign secret_file=@A@", "NODISPATCH",
     '"vantage_webhook_verify" requires "vantage_dispatch" in the same '
     'location'),
    ("docusign secret_file=@A@; vantage_json_transform request "
     "@MAP@", "",
     '"vantage_webhook_verify" and "vantage_json_transform request" cannot '
     'share a location: the signature covers the body as the sender sent '
     'it'),
    ("docusign secret_file=@A@; vantage_webhook_verify docusign "
     "secret_file=@A@", "",
     '"vantage_webhook_verify" directive is duplicate'),
])
def test_config_errors(module_available, nginx_factory, base_dir, secrets,
                       verify, http, message):
    a = secrets(SECRET_A + "-not-base64!")
    empty = secrets("")
    d = vh.make_dir(tempfile.mkdtemp(prefix="wh-dir-", dir=base_dir))
    mapping = os.path.join(d, "map.json")
    vh.write_file(mapping, json.dumps({
        "name": "m", "from": "a", "to": "b", "mode": "edit",
        "fields": [{"remove": "/internal"}]}))
    verify = verify.replace("@A@", a).replace("@EMPTY@", empty) \
        .replace("@DIR@", d).replace("@MAP@", mapping)
    message = message.replace("@EMPTY@", empty).replace("@DIR@", d)
    redis = "" if http == "NOREDIS" else "vantage_redis 127.0.0.1:6379;"
    dispatch = "" if http == "NODISPATCH" else \
        "vantage_dispatch %s status=200;" % JOB_TYPE
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock; " + redis,
                      server="""
        location = /wh {
            vantage_webhook_verify %s;
            vantage_tenant acme;
            %s
        }
""" % (verify, dispatch), start=False)
    rc, out = n.test_config()
    vh.assert_one_emerg(rc, out, message)
    assert SECRET_A not in out


def test_config_accepts_every_option(module_available, nginx_factory,
                                     secrets):
    a, b, s = secrets(SECRET_A), secrets(SECRET_B), secrets(SVIX_SECRET)
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock; "
                      "vantage_redis 127.0.0.1:6379;", server="""
        vantage_tenant acme;
        location = /a { vantage_webhook_verify docusign secret_file=%(a)s
                            secret_file=%(b)s tolerance=10m;
                        vantage_dispatch a; }
        location = /b { vantage_webhook_verify hubspot secret_file=%(a)s
                            v2=on uri=https://hooks.example.com/b?x=%%3A;
                        vantage_dispatch b status=200; }
        location = /c { vantage_webhook_verify adobesign client_id=UB7E5BXCXY
                            replay=off;
                        vantage_dispatch c status=200; }
        location = /d { vantage_webhook_verify hmac scheme=svix
                            secret_file=%(s)s header=webhook-signature
                            timestamp_header=webhook-timestamp
                            id_header=webhook-id;
                        vantage_dispatch d status=200; }
        location = /e { vantage_webhook_verify hmac header=X-Sig
                            encoding=base64 algorithm=sha1 prefix=sha1=
                            "template={method}{uri}{body}" secret_file=%(a)s;
                        vantage_dispatch e status=200; }
""" % {"a": a, "b": b, "s": s}, start=False)
    rc, out = n.test_config()
    assert rc == 0, out
    assert SECRET_A not in out and SVIX_SECRET not in out


def test_hubspot_a_body_in_many_buffers(workers, nginx_factory,
                                        redis_server, rc, secrets):
    """300 KB arrives in several reads: signed as one string all the same."""
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hubspot secret_file=%s" % secrets(SECRET_A))
    body = json.dumps([{"eventId": i, "objectId": i, "propertyValue":
                        "v" * 100} for i in range(2500)]).encode()
    assert len(body) > 300000
    accepted(*hs_post(n, body))
    assert_one_job(rc, body, "hubspot")


def test_a_signature_header_given_twice_is_400(workers, nginx_factory,
                                               redis_server, rc, secrets):
    w = workers()
    n = gateway(nginx_factory, w, redis_server.address,
                "hmac scheme=github secret_file=%s" % secrets(SECRET_A))
    body = b'{"zen":"Keep it logically awesome."}'
    sig = "sha256=" + hex_hmac(SECRET_A, body)
    c = http.client.HTTPConnection("127.0.0.1", n.http_port,
                                   timeout=vh.timeout(30))
    try:
        c.putrequest("POST", PATH)
        c.putheader("Content-Type", "application/json")
        c.putheader("Content-Length", str(len(body)))
        c.putheader("X-GitHub-Delivery", "d-twice")
        c.putheader("X-Hub-Signature-256", sig)
        c.putheader("X-Hub-Signature-256", sig)
        c.endheaders(body)
        r = c.getresponse()
        assert (r.status, r.read()) == (400, error(
            "malformed_signature", "a signature header is given twice"))
    finally:
        c.close()
    assert jobs(rc) == []
