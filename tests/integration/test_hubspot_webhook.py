"""test_hubspot_webhook.py -- HubSpot webhook batches in, as jobs.

nginx with the module (vantage_hubspot_webhook), vantage-worker and a real
Redis; the HubSpot emulator's webhook sender (tests/fakes/hubspot/
webhooks.py) POSTs its signed JSON batches to nginx, as HubSpot does when
records change, and retries until it hears a 2xx (or a 400/401/403/404/
405).  Hand-made batches are signed here with Python's hmac, independently
of the module.  What is asserted:

  - one job per event in Redis ({vq}:job:<id>): the event as its body
    (without attemptNumber), hubspot:<portalId>:<eventId>:<subscriptionType>
    :<objectId> as the idempotency key, X-Vantage-Source hubspot:<objectId>;
    200 {"accepted":N,"skipped":M} only once the jobs are durable;
  - the changes Vantage's own app made through the API (changeSource
    INTEGRATION, sourceId its app id) are skipped: no job; a change in
    HubSpot's UI, or by another app, is taken;
  - a bad or missing signature, a stale timestamp: 401 and no job, the
    signature checked before anything else;
  - the worker away: 503 and Retry-After; the emulator retries, and once
    the worker is back every event is exactly one job;
  - 101 events, an empty batch, a body that is not an array of events: 400;
  - nginx -t names the directive; the client secret is never logged.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import ssl
import sys
import tempfile
import threading
import time

import pytest

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from hubspot import HubSpot                             # noqa: E402

# the worker's Redis keeps its jobs across a restart (append-only file)
WORKER_REDIS = "redis"

JOB_TYPE = "hubspot.contact.read"
TENANT = "acme"
PATH = "/hubspot/webhook"
CONTACTS = "/crm/v3/objects/contacts"

# what the failures below make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage (worker|hubspot webhook): "


def error(code, description):
    """The module's JSON error body."""
    return (json.dumps({"error": code, "error_description": description},
                       separators=(",", ":")) + "\n").encode()


INVALID_SIGNATURE = error("invalid_signature", "X-HubSpot-Signature-v3 is "
                          "missing or does not match the request")
STALE = error("stale_timestamp", "X-HubSpot-Request-Timestamp is more than "
              "5 minutes from now")
UNAVAILABLE = error("unavailable", "the job queue is not available; the "
                    "batch is not acknowledged: the job queue is not "
                    "available")


def accepted(n, skipped=0):
    return b'{"accepted":%d,"skipped":%d}\n' % (n, skipped)


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def hs(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="fake-hs-", dir=base_dir))
    h = HubSpot(pki=pki, directory=d)
    h.limits.configure("private", burst=1000)
    h.webhooks.time_scale = 0.0005         # retry n after 2**n * 30 ms
    yield h
    h.stop()
    assert h.internal_errors == [], "\n".join(h.internal_errors)


@pytest.fixture
def workers(worker_factory):
    """A started worker whose socket nginx's workers (user nobody) open."""
    worker_factory.socket_mode = 0o777
    return worker_factory


SECRET = "7c1c3d6e-hand-made-client-secret-0f9a"


@pytest.fixture
def secret_file(base_dir):
    """A file holding SECRET, as an operator writes it (with a newline)."""
    d = vh.make_dir(tempfile.mkdtemp(prefix="hs-secret-", dir=base_dir))
    path = os.path.join(d, "client_secret")
    vh.write_file(path, SECRET + "\n", mode=0o600)
    return path


def write_secret(base_dir, secret):
    d = vh.make_dir(tempfile.mkdtemp(prefix="hs-secret-", dir=base_dir))
    path = os.path.join(d, "client_secret")
    vh.write_file(path, secret + "\n", mode=0o600)
    return path


def gateway(nginx_factory, w, secret_path, params="", timeout="3s",
            log_level="info", tenant=TENANT, path=PATH):
    return nginx_factory(http="""
    vantage_worker unix:%s timeout=%s retry_after=2;
""" % (w.socket_path, timeout), server="""
        vantage_tenant %s;
        location = %s {
            vantage_hubspot_webhook %s secret_file=%s %s;
        }
""" % (tenant, path, JOB_TYPE, secret_path, params), log_level=log_level)


def sign(secret, method, uri, body, ts):
    """X-HubSpot-Signature-v3, as HubSpot's documentation says, with
    Python's hmac: base64(HMAC-SHA256(secret, method+uri+body+ts))."""
    return base64.b64encode(hmac.new(
        secret.encode(), method.encode() + uri.encode() + body
        + str(ts).encode(), hashlib.sha256).digest()).decode()


def now_ms():
    return int(time.time() * 1000)


def post(n, body, headers=None, method="POST", path=PATH):
    """(status, {lowercase header: value}, body) of one request to nginx."""
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


def signed_post(n, events, secret=SECRET, ts=None, uri=None, path=PATH,
                raw=None, headers=None):
    """POSTs events (or raw bytes) signed as HubSpot signs them for the
    URL http://127.0.0.1:<port><path> (or uri)."""
    body = raw if raw is not None else json.dumps(
        events, separators=(",", ":")).encode()
    ts = now_ms() if ts is None else ts
    uri = uri or "http://127.0.0.1:%d%s" % (n.http_port, path)
    h = {"X-HubSpot-Signature-v3": sign(secret, "POST", uri, body, ts),
         "X-HubSpot-Request-Timestamp": str(ts),
         "X-HubSpot-Signature-Version": "v1",
         "X-HubSpot-Signature": hashlib.sha256(
             secret.encode() + body).hexdigest()}
    h.update(headers or {})
    return post(n, body, headers=h, path=path)


_next_event = [5_000_000]


def event(object_id, kind="contact.propertyChange", source="CRM_UI",
          source_id="userId:1001", portal=62515, event_id=None, attempt=0,
          **extra):
    """An event as HubSpot's field table has it."""
    if event_id is None:
        _next_event[0] += 1
        event_id = _next_event[0]
    ev = {"eventId": event_id, "subscriptionId": 7, "portalId": portal,
          "appId": 3000002, "occurredAt": now_ms(),
          "subscriptionType": kind, "attemptNumber": attempt,
          "objectId": object_id}
    if kind.endswith("propertyChange"):
        ev.update(propertyName="firstname", propertyValue="Ada")
    ev.update(changeSource=source, sourceId=source_id)
    ev.update(extra)
    return ev


def key(ev):
    return "hubspot:%d:%d:%s:%d" % (ev["portalId"], ev["eventId"],
                                    ev["subscriptionType"], ev["objectId"])


def jobs(rc):
    """{idempotency key: job hash (str: str)} of every job in Redis, and
    asserts no key has two jobs."""
    out = {}
    for k in rc.keys("{vq}:job:*"):
        h = {a.decode(): b.decode() for a, b in rc.hgetall(k).items()}
        ik = h.get("idempotency_key")
        assert ik not in out, "two jobs for event %s" % ik
        out[ik] = h
    return out


def assert_job(job, ev, path=PATH):
    assert job["type"] == JOB_TYPE
    assert job["tenant"] == TENANT
    assert job["idempotency_key"] == key(ev)
    assert job["method"] == "POST" and job["uri"] == path
    want = {k: v for k, v in ev.items() if k != "attemptNumber"}
    assert json.loads(job["body"]) == want
    # compact, in the order HubSpot sent the fields
    assert job["body"] == json.dumps(want, separators=(",", ":"),
                                     ensure_ascii=False)
    assert json.loads(job["headers"]) == [
        ["Content-Type", "application/json"],
        ["X-Vantage-Source", "hubspot:%d" % ev["objectId"]]]


def api(hs, method, path, body=None):
    """A call to the emulator's API with the private app's token (the app
    Vantage writes with)."""
    ctx = ssl.create_default_context(cafile=hs.ca_file)
    c = http.client.HTTPSConnection("127.0.0.1", hs.port, context=ctx,
                                    timeout=vh.timeout(10))
    try:
        c.request(method, path, body=json.dumps(body) if body else None,
                  headers={"Authorization": "Bearer " + hs.token,
                           "Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        assert 200 <= r.status < 300, (r.status, raw)
        return json.loads(raw) if raw else None
    finally:
        c.close()


def hs_secret_file(hs, base_dir):
    return write_secret(base_dir, hs.webhooks.app.client_secret)


def target(hs, n, path=PATH):
    hs.webhooks.target_url = "http://127.0.0.1:%d%s" % (n.http_port, path)


def sent_events(hs):
    """Every event the emulator made since it had a target, by key."""
    return {key(e): e for e in hs.webhooks.events}


# --------------------------------------------------------------------------
# the emulator's batches become jobs

def test_changes_become_one_job_per_event_and_vantage_own_are_skipped(
        hs, base_dir, workers, nginx_factory, rc):
    w = workers()
    vantage_app = hs.private_app.app.app_id
    n = gateway(nginx_factory, w, hs_secret_file(hs, base_dir),
                params="app_id=%d" % vantage_app, log_level="debug")
    target(hs, n)

    # Vantage's own writes (the sync's upserts): INTEGRATION, its app id
    ada = api(hs, "POST", CONTACTS, {"properties": {
        "email": "ada@example.com", "firstname": "Ada"}})
    api(hs, "PATCH", CONTACTS + "/" + ada["id"],
        {"properties": {"lastname": "Lovelace"}})
    assert hs.webhooks.flush(vh.timeout(10))
    own = list(hs.webhooks.events)
    assert len(own) == 4           # creation, email, firstname, lastname
    assert {(e["changeSource"], e["sourceId"]) for e in own} == \
        {("INTEGRATION", str(vantage_app))}
    assert [d["status"] for d in hs.webhooks.deliveries] == \
        [200] * len(hs.webhooks.deliveries)
    assert jobs(rc) == {}

    # a person edits the records in HubSpot: those are the sync's work
    grace = api(hs, "POST", CONTACTS, {"properties": {
        "email": "grace@example.com"}})
    assert hs.webhooks.flush(vh.timeout(10))
    hs.change("contacts", ada["id"], {"firstname": "Augusta",
                                      "phone": "+44 20 7946 0000"})
    hs.change("contacts", grace["id"], {"lastname": "Hopper"})
    assert hs.webhooks.flush(vh.timeout(10))

    assert all(d["status"] == 200 and d["error"] is None
               for d in hs.webhooks.deliveries), hs.webhooks.deliveries
    ui = [e for e in hs.webhooks.events if e["changeSource"] == "CRM_UI"]
    assert len(ui) == 3
    got = jobs(rc)
    assert sorted(got) == sorted(key(e) for e in ui)
    for e in ui:
        assert_job(got[key(e)], e)
    assert {json.loads(j["body"])["objectId"] for j in got.values()} == \
        {int(ada["id"]), int(grace["id"])}

    log = vh._read(n.error_log)
    assert "events skipped: changes made by app %d" % vantage_app in log
    assert "events accepted" in log
    # no value of an event is logged, nor the secret
    for v in ("Augusta", "Hopper", "ada@example.com", "+44 20",
              hs.webhooks.app.client_secret):
        assert v not in log
        assert v not in w.log_text()


def test_without_app_id_every_change_is_taken(hs, base_dir, workers,
                                              nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, hs_secret_file(hs, base_dir))
    target(hs, n)
    api(hs, "POST", CONTACTS, {"properties": {"email": "x@example.com"}})
    assert hs.webhooks.flush(vh.timeout(10))
    assert [d["status"] for d in hs.webhooks.deliveries] == [200]
    assert sorted(jobs(rc)) == sorted(sent_events(hs))


def test_the_exact_answer_and_one_job_per_key(secret_file, workers,
                                              nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file, params="app_id=3000001")
    batch = [
        event(101),
        # eventId is not unique: another type or object is another job
        event(102, event_id=77, kind="contact.creation"),
        event(103, event_id=77, kind="contact.creation"),
        event(103, event_id=77, kind="contact.deletion"),
        # Vantage's app (sourceId a string or a number): skipped
        event(104, source="INTEGRATION", source_id="3000001"),
        event(105, source="INTEGRATION", source_id=3000001),
        # another app's API writes are not Vantage's: taken
        event(106, source="INTEGRATION", source_id="3000099"),
        # a UI change by a user whose id looks like the app's: taken
        event(107, source="CRM_UI", source_id="3000001"),
        event(108, kind="deal.propertyChange", dealname="Q3 \u00e9\u4e2d"),
    ]
    taken = [e for e in batch if e["objectId"] not in (104, 105)]

    status, headers, body = signed_post(n, batch)
    assert (status, body) == (200, accepted(7, 2))
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-correlation-id"]
    got = jobs(rc)
    assert sorted(got) == sorted(key(e) for e in taken)
    for e in taken:
        assert_job(got[key(e)], e)
    first = {k: j["created_ms"] for k, j in got.items()}

    # HubSpot retries the batch (attemptNumber 1, a new signature): the
    # same jobs, acknowledged
    retry = [dict(e, attemptNumber=1) for e in reversed(batch)]
    status, _, body = signed_post(n, retry,
                                  headers={"X-Correlation-ID": "retry-1"})
    assert (status, body) == (200, accepted(7, 2))
    # and with a new event beside them: one new job
    extra = event(109)
    status, _, body = signed_post(n, retry + [extra])
    assert (status, body) == (200, accepted(8, 2))
    got = jobs(rc)
    assert sorted(got) == sorted(key(e) for e in taken + [extra])
    for k, created in first.items():
        assert got[k]["created_ms"] == created
        assert got[k]["correlation_id"] != "retry-1"
    log = vh._read(n.error_log)
    assert "9 events accepted: 7 new jobs, 0 already queued, 2 skipped" in log
    assert "9 events accepted: 0 new jobs, 7 already queued, 2 skipped" in log
    assert "10 events accepted: 1 new jobs, 7 already queued, 2 skipped" \
        in log

    # an event sent twice in one batch is one job
    twice = event(110)
    status, _, body = signed_post(n, [twice, twice])
    assert (status, body) == (200, accepted(2))
    assert len([k for k in jobs(rc) if k == key(twice)]) == 1

    # all skipped: nothing to wait for
    own = event(111, source="INTEGRATION", source_id="3000001")
    status, _, body = signed_post(n, [own])
    assert (status, body) == (200, accepted(0, 1))
    assert key(own) not in jobs(rc)


def test_the_answer_waits_for_durability(secret_file, workers, nginx_factory,
                                         rc, redis):
    w = workers()
    n = gateway(nginx_factory, w, secret_file, timeout="10s")
    batch = [event(201), event(202), event(203)]
    answer = []

    redis.pause()                 # the worker's MULTI/EXEC cannot finish
    try:
        t = threading.Thread(target=lambda: answer.append(
            signed_post(n, batch)))
        t.start()
        time.sleep(1.0)
        assert answer == [] and t.is_alive()     # no 200 yet
    finally:
        redis.resume()
    t.join(vh.timeout(10))
    status, _, body = answer[0]
    assert (status, body) == (200, accepted(3))
    assert sorted(jobs(rc)) == sorted(key(e) for e in batch)


@pytest.mark.log_allow(ALLOW_WORKER)
def test_worker_down_is_503_then_the_retry_makes_each_job_once(
        hs, base_dir, workers, nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, hs_secret_file(hs, base_dir))
    target(hs, n)
    c = api(hs, "POST", CONTACTS, {"properties": {"email": "d@example.com"}})
    assert hs.webhooks.flush(vh.timeout(10))
    before = set(jobs(rc))
    assert len(before) == 2        # creation and email
    w.stop()

    # by hand first: the exact answer
    status, headers, body = signed_post(
        n, [event(301)], secret=hs.webhooks.app.client_secret)
    assert (status, body) == (503, UNAVAILABLE)
    assert headers["retry-after"] == "2"
    assert headers["content-type"] == "application/json"

    hs.change("contacts", c["id"], {"firstname": "Down", "lastname": "Time"})
    ndeliv = len(hs.webhooks.deliveries)
    vh.wait_for(lambda: len(hs.webhooks.deliveries) >= ndeliv + 2, 10,
                what="two refused deliveries")
    refused = hs.webhooks.deliveries[ndeliv:]
    assert all(d["status"] == 503 for d in refused)
    assert set(jobs(rc)) == before

    workers.start(w)
    assert hs.webhooks.flush(vh.timeout(20))
    last = hs.webhooks.deliveries[-1]
    assert last["status"] == 200
    assert all(e["attemptNumber"] >= 1 for e in last["events"])
    got = jobs(rc)
    events = sent_events(hs)
    assert sorted(got) == sorted(events)
    for k, e in events.items():
        assert_job(got[k], e)


@pytest.mark.log_allow(ALLOW_WORKER)
def test_a_key_resent_with_another_body_is_a_500(secret_file, workers,
                                                 nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    ev = event(401)
    assert signed_post(n, [ev])[::2] == (200, accepted(1))
    changed = dict(ev, propertyValue="Changed")
    status, headers, body = signed_post(n, [changed])
    assert (status, body) == (500, error(
        "job_refused", "the job queue refused an event: the idempotency key "
        "was used with another body"))
    assert "retry-after" not in headers
    got = jobs(rc)
    assert list(got) == [key(ev)]
    assert json.loads(got[key(ev)]["body"])["propertyValue"] == "Ada"
    log = vh._read(n.error_log)
    assert "1 of 1 jobs of a batch not durable (1 refused, 0 unavailable)" \
        in log
    assert "Changed" not in log


# --------------------------------------------------------------------------
# signatures

def test_bad_signatures_are_401_and_make_no_job(secret_file, workers,
                                                nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    batch = [event(501)]
    body = json.dumps(batch).encode()
    uri = "http://127.0.0.1:%d%s" % (n.http_port, PATH)
    ts = now_ms()
    good = sign(SECRET, "POST", uri, body, ts)
    sigs = [good]

    def attempt(headers, raw=body):
        for h in headers.values():
            sigs.append(h)
        return post(n, raw, headers=headers)

    cases = [
        # another secret
        {"X-HubSpot-Signature-v3": sign("other", "POST", uri, body, ts),
         "X-HubSpot-Request-Timestamp": str(ts)},
        # another URI, method or timestamp than the request's
        {"X-HubSpot-Signature-v3": sign(SECRET, "POST", uri + "/", body, ts),
         "X-HubSpot-Request-Timestamp": str(ts)},
        {"X-HubSpot-Signature-v3": sign(SECRET, "PUT", uri, body, ts),
         "X-HubSpot-Request-Timestamp": str(ts)},
        {"X-HubSpot-Signature-v3": good,
         "X-HubSpot-Request-Timestamp": str(ts + 1)},
        # https for http
        {"X-HubSpot-Signature-v3": sign(SECRET, "POST", "https" + uri[4:],
                                        body, ts),
         "X-HubSpot-Request-Timestamp": str(ts)},
        # missing headers
        {"X-HubSpot-Request-Timestamp": str(ts)},
        {"X-HubSpot-Signature-v3": good},
        {},
        # v1 only, as webhook subscriptions also send
        {"X-HubSpot-Signature": hashlib.sha256(
            SECRET.encode() + body).hexdigest(),
         "X-HubSpot-Signature-Version": "v1"},
        # malformed: hex, unpadded, a timestamp that is not a number
        {"X-HubSpot-Signature-v3": hmac.new(
            SECRET.encode(), b"POST" + uri.encode() + body
            + str(ts).encode(), hashlib.sha256).hexdigest(),
         "X-HubSpot-Request-Timestamp": str(ts)},
        {"X-HubSpot-Signature-v3": good.rstrip("="),
         "X-HubSpot-Request-Timestamp": str(ts)},
        {"X-HubSpot-Signature-v3": good,
         "X-HubSpot-Request-Timestamp": "%d.0" % ts},
    ]
    for headers in cases:
        status, h, got = attempt(headers)
        assert (status, got) == (401, INVALID_SIGNATURE), headers
        assert h["content-type"] == "application/json"

    # the body changed after signing
    status, _, got = attempt({"X-HubSpot-Signature-v3": good,
                              "X-HubSpot-Request-Timestamp": str(ts)},
                             raw=body + b" ")
    assert (status, got) == (401, INVALID_SIGNATURE)

    # a signature header given twice: which one HubSpot meant is unknown
    c = http.client.HTTPConnection("127.0.0.1", n.http_port,
                                   timeout=vh.timeout(10))
    c.putrequest("POST", PATH)
    c.putheader("Content-Length", str(len(body)))
    c.putheader("X-HubSpot-Signature-v3", good)
    c.putheader("X-HubSpot-Signature-v3", good)
    c.putheader("X-HubSpot-Request-Timestamp", str(ts))
    c.endheaders(body)
    r = c.getresponse()
    assert (r.status, r.read()) == (401, INVALID_SIGNATURE)
    c.close()

    assert jobs(rc) == {}

    # and the good one is taken: the cases above failed for their reason
    status, _, got = attempt({"X-HubSpot-Signature-v3": good,
                              "X-HubSpot-Request-Timestamp": str(ts)})
    assert (status, got) == (200, accepted(1))

    log = vh._read(n.error_log)
    lines = [l for l in log.splitlines()
             if "vantage hubspot webhook: a request" in l]
    assert len(lines) == len(cases) + 2
    assert all("[info]" in l for l in lines)
    assert "whose signature does not match" in log
    assert "without its signature headers" in log
    assert "with a signature header given twice" in log
    assert "with a malformed signature or timestamp" in log
    for s in sigs:
        assert s not in log
    assert SECRET not in log


def test_stale_timestamps_are_401(secret_file, workers, nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    minute = 60_000
    for ts in (now_ms() - 5 * minute - 5000,      # older than 5 minutes
               now_ms() + 5 * minute + 5000,      # a clock far ahead
               now_ms() // 1000):                 # seconds, not ms
        status, headers, body = signed_post(n, [event(601)], ts=ts)
        assert (status, body) == (401, STALE), ts
        assert headers["content-type"] == "application/json"
    # a stale request with a bad signature is told only that
    status, _, body = signed_post(n, [event(601)], secret="other",
                                  ts=now_ms() - 10 * minute)
    assert (status, body) == (401, INVALID_SIGNATURE)
    assert jobs(rc) == {}
    # 4 minutes either way is within the window
    for ts in (now_ms() - 4 * minute, now_ms() + 4 * minute):
        assert signed_post(n, [event(602)], ts=ts)[0] == 200
    log = vh._read(n.error_log)
    assert len([l for l in log.splitlines()
                if "more than 5 minutes from now, refused" in l
                and "[info]" in l]) == 3


def test_the_signature_comes_before_anything_else(secret_file, workers,
                                                  nginx_factory, rc):
    w = workers()
    # the tenant comes from the query: absent, the request names none
    n = gateway(nginx_factory, w, secret_file, tenant="$arg_tenant")
    for raw in (b"not json", b"[]", json.dumps([event(701)]).encode()):
        status, _, body = post(n, raw, headers={
            "X-HubSpot-Signature-v3": sign("other", "POST", "x", raw, 1),
            "X-HubSpot-Request-Timestamp": str(now_ms())})
        assert (status, body) == (401, INVALID_SIGNATURE)
    # signed: then the tenant is looked at
    ev = event(701)
    status, _, body = signed_post(n, [ev])
    assert (status, body) == (403, error("forbidden",
                                         "the request names no tenant"))
    assert jobs(rc) == {}
    status, _, body = signed_post(n, [ev], path=PATH + "?tenant=" + TENANT)
    assert (status, body) == (200, accepted(1))
    assert list(jobs(rc)) == [key(ev)]


def test_the_signed_uri(base_dir, secret_file, workers, nginx_factory, rc):
    w = workers()
    # without uri=: the request's scheme, Host and target, with HubSpot's
    # decoding of %3A and its like (and of nothing else)
    n = gateway(nginx_factory, w, secret_file)
    path = PATH + "?tenant=a%3Ab&x=%2F%20"
    decoded = "http://127.0.0.1:%d%s?tenant=a:b&x=/%%20" % (n.http_port,
                                                            PATH)
    status, _, body = signed_post(n, [event(801)], path=path, uri=decoded)
    assert (status, body) == (200, accepted(1))
    undecoded = "http://127.0.0.1:%d%s" % (n.http_port, path)
    status, _, body = signed_post(n, [event(802)], path=path, uri=undecoded)
    assert (status, body) == (401, INVALID_SIGNATURE)

    # behind a proxy: uri= is what HubSpot was given and signed
    given = "https://hooks.example.com/in/hubspot%3Facme"
    n2 = gateway(nginx_factory, w, secret_file, params="uri=" + given)
    status, _, body = signed_post(n2, [event(803)],
                                  uri="https://hooks.example.com/in/"
                                      "hubspot?acme")
    assert (status, body) == (200, accepted(1))
    status, _, body = signed_post(n2, [event(804)])
    assert (status, body) == (401, INVALID_SIGNATURE)
    assert len(jobs(rc)) == 2


def test_the_emulator_signs_for_its_target_url(hs, base_dir, workers,
                                               nginx_factory, rc):
    # the emulator's own signatures, with an escape in the target URL
    w = workers()
    n = gateway(nginx_factory, w, hs_secret_file(hs, base_dir))
    target(hs, n, PATH + "?tenant=acme%3Aeu")
    c = api(hs, "POST", CONTACTS, {"properties": {"email": "e@example.com"}})
    hs.change("contacts", c["id"], {"firstname": "Emmy"})
    assert hs.webhooks.flush(vh.timeout(10))
    assert {d["status"] for d in hs.webhooks.deliveries} == {200}
    got = jobs(rc)
    assert sorted(got) == sorted(sent_events(hs))
    for k, e in sent_events(hs).items():
        assert_job(got[k], e, path=PATH + "?tenant=acme%3Aeu")


def test_another_apps_secret_is_401_and_not_retried(hs, base_dir, workers,
                                                    nginx_factory, rc):
    w = workers()
    # nginx holds the OAuth app's secret; the private app signs
    n = gateway(nginx_factory, w, hs_secret_file(hs, base_dir))
    hs.webhooks.app = hs.private_app.app
    target(hs, n)
    api(hs, "POST", CONTACTS, {"properties": {"email": "p@example.com"}})
    assert hs.webhooks.flush(vh.timeout(10))
    assert [d["status"] for d in hs.webhooks.deliveries] == [401]
    assert jobs(rc) == {}


# --------------------------------------------------------------------------
# batches refused

def test_at_most_max_events(secret_file, workers, nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    too_many = error("invalid_batch", "too many events in one batch")

    status, headers, body = signed_post(n, [event(900 + i)
                                            for i in range(101)])
    assert (status, body) == (400, too_many)
    assert headers["content-type"] == "application/json"
    assert jobs(rc) == {}

    batch = [event(1000 + i) for i in range(100)]
    status, _, body = signed_post(n, batch)
    assert (status, body) == (200, accepted(100))
    assert sorted(jobs(rc)) == sorted(key(e) for e in batch)

    n2 = gateway(nginx_factory, w, secret_file, params="max_events=2")
    status, _, body = signed_post(n2, [event(1200 + i) for i in range(3)])
    assert (status, body) == (400, too_many)
    assert len(jobs(rc)) == 100
    assert "a batch of 101 events refused (1 to 100)" in \
        vh._read(n.error_log)


@pytest.mark.parametrize("raw, description", [
    (b"", "the body is not a JSON array of events"),
    (b"not json", "the body is not a JSON array of events"),
    (b'{"eventId":1}', "the body is not a JSON array of events"),
    (b'[{"eventId":1}] x', "the body is not a JSON array of events"),
    (b'[{"eventId":1,"eventId":2}]',
     "the body is not a JSON array of events"),
    (b'[{"objectId":1,"eventId":1,"portalId":1,"subscriptionType":"\xff"}]',
     "the body is not a JSON array of events"),
    (b"[]", "the batch has no event"),
])
def test_not_a_batch_is_400(secret_file, workers, nginx_factory, rc, raw,
                            description):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    status, headers, body = signed_post(n, None, raw=raw)
    assert (status, body) == (400, error("invalid_batch", description))
    assert headers["content-type"] == "application/json"
    assert jobs(rc) == {}


def test_malformed_events_are_400(secret_file, workers, nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    want = error("invalid_batch", "an event is not an object with an "
                 "integer portalId, eventId and objectId and a "
                 "subscriptionType")
    good = event(1300)
    bad = [
        [good, 1],
        [good, "event"],
        [good, [good]],
        [{k: v for k, v in good.items() if k != "objectId"}],
        [dict(good, objectId="1300")],
        [dict(good, objectId=1300.5)],
        [dict(good, objectId=None)],
        [{k: v for k, v in good.items() if k != "subscriptionType"}],
        [dict(good, subscriptionType="")],
        [dict(good, subscriptionType="contact:creation")],
        [dict(good, subscriptionType=7)],
        [{k: v for k, v in good.items() if k != "eventId"}],
        [dict(good, portalId="62515")],
    ]
    for batch in bad:
        status, _, body = signed_post(n, batch)
        assert (status, body) == (400, want), batch
    assert jobs(rc) == {}
    assert "vantage hubspot webhook: event 2 of a signed batch is " \
        "malformed" in vh._read(n.error_log)


def test_only_post(secret_file, workers, nginx_factory):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    status, headers, body = post(n, None, method="GET")
    assert (status, body) == (405, error("method_not_allowed",
                                         "webhook batches are sent with "
                                         "POST"))
    assert headers["allow"] == "POST"


def test_a_body_over_client_max_body_size_is_413(secret_file, workers,
                                                 nginx_factory, rc):
    w = workers()
    n = nginx_factory(http="vantage_worker unix:%s;" % w.socket_path,
                      server="""
        vantage_tenant acme;
        location = %s {
            client_max_body_size 2k;
            vantage_hubspot_webhook %s secret_file=%s;
        }
""" % (PATH, JOB_TYPE, secret_file))
    status, _, _ = signed_post(n, [event(1400 + i) for i in range(20)])
    assert status == 413
    assert jobs(rc) == {}


def test_over_both_transports_with_a_body_in_pieces(
        secret_file, workers, nginx_factory, client_for, transport, rc):
    w = workers()
    n = gateway(nginx_factory, w, secret_file)
    c = client_for(n)
    batch = [event(1500 + i, propertyValue="v" * 200) for i in range(60)]
    body = json.dumps(batch, separators=(",", ":")).encode()
    assert len(body) > 16384
    ts = now_ms()
    # what HubSpot was given: https on the TLS port for h2
    uri = n.base_url(transport) + PATH

    def pieces():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    # a refusal first: the connection is kept for the next batch
    r = c.request("POST", PATH, content=b"[]", headers={
        "X-HubSpot-Signature-v3": sign(SECRET, "POST", uri, b"[]", ts),
        "X-HubSpot-Request-Timestamp": str(ts)})
    assert (r.status, r.content) == (400, error("invalid_batch",
                                                "the batch has no event"))
    r = c.request("POST", PATH, content=pieces(), headers={
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign(SECRET, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": str(ts)})
    assert (r.status, r.content) == (200, accepted(60))
    assert r.headers["content-type"] == "application/json"
    got = jobs(rc)
    assert sorted(got) == sorted(key(e) for e in batch)
    for e in batch:
        assert_job(got[key(e)], e)


# --------------------------------------------------------------------------
# nginx -t

@pytest.mark.parametrize("http, location, message", [
    ("vantage_worker unix:/tmp/w.sock;", "vantage_hubspot_webhook hs.c;",
     'invalid number of arguments in "vantage_hubspot_webhook"'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook secret_file=@SECRET@ x;",
     '"vantage_hubspot_webhook": the job type "secret_file='),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c app_id=1;",
     '"vantage_hubspot_webhook" needs secret_file=<path>'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=client_secret;",
     '"vantage_hubspot_webhook": secret_file= must be an absolute path'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=/nonexistent/secret;",
     '"vantage_hubspot_webhook": cannot open secret file '
     '"/nonexistent/secret"'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@EMPTY@;",
     '"vantage_hubspot_webhook": secret file "'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ "
     "secret_file=@SECRET@;",
     '"vantage_hubspot_webhook": secret_file= is given twice'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ app_id=12a;",
     '"vantage_hubspot_webhook": "12a" is not an app id'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ "
     "uri=ftp://x.example/;",
     '"vantage_hubspot_webhook": "uri=ftp://x.example/" is not the http:// '
     'or https:// URL HubSpot was given'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ max_events=0;",
     '"vantage_hubspot_webhook": "max_events=0" must be from 1 to 1000'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ max_events=1001;",
     '"vantage_hubspot_webhook": "max_events=1001" must be from 1 to 1000'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@ verbose;",
     '"vantage_hubspot_webhook": invalid parameter "verbose"'),
    ("", "vantage_hubspot_webhook hs.c secret_file=@SECRET@;",
     '"vantage_hubspot_webhook" needs "vantage_worker" in the http block'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@; vantage_dispatch x;",
     '"vantage_hubspot_webhook" and "vantage_dispatch" cannot share a '
     'location'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@; "
     "vantage_salesforce_outbound sf.c org_id=00D5g000004SbcdEAC;",
     '"vantage_hubspot_webhook" and "vantage_salesforce_outbound" cannot '
     'share a location'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@; "
     "vantage_hubspot_webhook hs.c secret_file=@SECRET@;",
     '"vantage_hubspot_webhook" directive is duplicate'),
])
def test_config_errors(module_available, base_dir, secret_file,
                       nginx_factory, http, location, message):
    empty = write_secret(base_dir, "")
    location = location.replace("@SECRET@", secret_file) \
        .replace("@EMPTY@", empty)
    n = nginx_factory(http=http, server="""
        vantage_tenant acme;
        location = /hs { %s }
""" % location, start=False)
    rc, out = n.test_config()
    vh.assert_one_emerg(rc, out, message)
    assert SECRET not in out


def test_config_needs_a_tenant(module_available, secret_file, nginx_factory):
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock;", server="""
        location = /hs {
            vantage_hubspot_webhook hs.c secret_file=%s;
        }
""" % secret_file, start=False)
    rc, out = n.test_config()
    assert rc == 1 and '"vantage_hubspot_webhook" needs "vantage_tenant"' \
        in out, out


def test_config_accepts_every_parameter(module_available, secret_file,
                                        nginx_factory):
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock;", server="""
        vantage_tenant acme;
        location = /a { vantage_hubspot_webhook hs.a secret_file=%s; }
        location = /b { vantage_hubspot_webhook hs.b secret_file=%s
                            app_id=3000001 max_events=1000
                            uri=https://hooks.example.com/b?x=%%3A; }
""" % (secret_file, secret_file), start=False)
    rc, out = n.test_config()
    assert rc == 0, out
    assert SECRET not in out
