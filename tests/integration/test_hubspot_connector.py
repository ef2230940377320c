"""test_hubspot_connector.py -- the HubSpot connector (docs/CONNECTORS.md).

Real redis-server, the real worker with a [vault], two [connection]s (a
private app whose token is sealed in the vault by vantagectl, and an OAuth
app with auth = refresh_token) and one [job] per operation; the HubSpot
emulator (tests/fakes/hubspot) in this process, trusted through the
harness's PKI.  Jobs are handed over on the worker's socket; what HubSpot
received is read from the emulator's request log and records, what the
engine made of it from {vq}:job:<id>.
"""

import json
import os
import subprocess
import sys
import time

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import T_BODY, T_CORRELATION_ID, T_HEADER, T_JOB_ID, \
    T_JOB_TYPE, T_TENANT

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from hubspot import HubSpot                         # noqa: E402
from hubspot import objects as hs_objects           # noqa: E402

CTL = os.path.join(vh.REPO, "build", "vantagectl")
OBJ = "/crm/v3/objects/contacts"
TOKEN_PATH = "/oauth/v1/token"
MASTER = bytes(range(32))

OPS = {
    "create": "", "update": "", "upsert": "id_property = email\n",
    "batch_create": "", "batch_update": "",
    "batch_upsert": "id_property = email\n", "search": "", "list": "",
    "read": "",
}


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def hs(pki):
    h = HubSpot(pki=pki)
    yield h
    h.stop()
    assert not h.internal_errors, h.internal_errors


@pytest.fixture
def vault(base_dir, redis_server, hs):
    """The master key file and the vault records the connections name."""
    if not os.access(CTL, os.X_OK):
        pytest.skip("vantagectl not built: %s (run make ctl)" % CTL)
    d = vh.make_dir(os.path.join(base_dir, "vault"))
    key = os.path.join(d, "master.key")
    vh.write_file(key, MASTER, mode=0o600)
    refresh = hs.refresh_token()
    for name, value in (("hs.pat", hs.token),
                        ("hs.secret", hs.oauth_app.client_secret),
                        ("hs.refresh", refresh)):
        p = subprocess.run([CTL, "--redis", redis_server.address, "vault",
                            "put", name, "--key-file", key],
                           input=value.encode(), capture_output=True,
                           timeout=vh.timeout(20))
        assert p.returncode == 0, p.stderr
    return {"key": key, "refresh": refresh}


def config(hs, vault, concurrency=8, jobs=None):
    text = wh.CONFIG_HEAD + (
        "visibility_timeout = 20s\nshutdown_timeout = 1s\n"
        "\n[vault]\nkey_file = %s\n"
        "\n[target hs]\nca_file = %s\nmax_concurrency = %d\n"
        "\n[connection hs]\nvendor = hubspot\nauth = private_app\n"
        "token = hs.pat\nbase_url = %s\ntarget = hs\n"
        "\n[connection hso]\nvendor = hubspot\nauth = refresh_token\n"
        "client_id = %s\nclient_secret = hs.secret\n"
        "refresh_token = hs.refresh\nbase_url = %s\ntoken_url = %s%s\n"
        "target = hs\n"
        % (vault["key"], hs.ca_file, concurrency, hs.url,
           hs.oauth_app.client_id, hs.url, hs.url, TOKEN_PATH))
    jobs = dict(jobs or {})
    for op, extra in OPS.items():
        jobs.setdefault("hs." + op, "connection = hs\noperation = %s\n"
                        "object = contacts\n%s" % (op, extra))
    jobs.setdefault("hso.create", "connection = hso\noperation = create\n"
                    "object = contacts\n")
    jobs.setdefault("hs.read.then", "connection = hs\noperation = read\n"
                    "object = contacts\nthen = hs.update\n")
    jobs.setdefault("hs.associate", "connection = hs\n"
                    "operation = associate\nobject = contacts\n")
    for name, body in jobs.items():
        text += ("\n[job %s]\nconnector = hubspot\ntimeout = 5s\n"
                 "max_attempts = 4\nbackoff_base = 100ms\n"
                 "backoff_cap = 200ms\n%s" % (name, body))
    return text


@pytest.fixture
def worker(worker_factory, hs, vault):
    worker_factory.secrets = (hs.token, hs.oauth_app.client_secret,
                              vault["refresh"])
    return lambda **kw: worker_factory(config(hs, vault, **kw))


@pytest.fixture
def rc(redis_server):
    return redis_server.client()


def dispatch(w, job_type, body, tenant="acme", headers=(), cid=None):
    fields = [(T_JOB_TYPE, job_type), (T_TENANT, tenant),
              (T_BODY, json.dumps(body).encode()
               if not isinstance(body, bytes) else body)]
    fields += [(T_HEADER, ("%s\0%s" % h).encode()) for h in headers]
    if cid:
        fields.append((T_CORRELATION_ID, cid))
    r = w.client().dispatch(1, fields)
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def job(rc, jid):
    return {k.decode(): v.decode()
            for k, v in rc.hgetall("{vq}:job:" + jid).items()}


def settle(rc, jid, seconds=15):
    """Waits until the job is succeeded or dead; returns its hash."""
    vh.wait_for(lambda: job(rc, jid).get("state") in ("succeeded", "dead"),
                seconds, interval=0.05, what="job %s settled" % jid)
    return job(rc, jid)


def result(j):
    """The connector's members of the job's result (the engine adds
    status and ms)."""
    r = json.loads(j["result"])
    assert isinstance(r.pop("ms"), int)
    assert r.pop("status") == int(j["last_status"])
    return r


def run(w, rc, job_type, body, **kw):
    return settle(rc, dispatch(w, job_type, body, **kw))


def contacts(hs):
    t = hs_objects.object_type(hs, "contacts")
    return hs.store.all(t)


def by_email(hs):
    return {r.props.get("email"): r for r in contacts(hs)}


def seed(hs, n, domain="seed.example"):
    t = hs_objects.object_type(hs, "contacts")
    return [hs.store.create(t, {"email": "p%03d@%s" % (i, domain),
                                "firstname": "P%d" % i})
            for i in range(n)]


def sent(hs, path=OBJ, method="POST"):
    return hs.requests(path, method)


# --------------------------------------------------------------------------
# single records

def test_create_update_upsert(worker, hs, rc):
    w = worker()
    jid = dispatch(w, "hs.create", {"email": "ada@example.com",
                                    "firstname": "Ada"}, cid="corr-7")
    j = settle(rc, jid)
    assert j["state"] == "succeeded", j
    rec = by_email(hs)["ada@example.com"]
    assert result(j) == {"id": rec.id, "new": True}
    assert rec.props["firstname"] == "Ada"
    req, = sent(hs)
    assert req.json() == {"properties": {"email": "ada@example.com",
                                         "firstname": "Ada"}}
    h = req.headers
    assert h["authorization"] == "Bearer " + hs.token
    assert h["content-type"] == "application/json"
    assert h["x-correlation-id"] == "corr-7"
    assert h["idempotency-key"] == jid

    # update: {"id", "properties"} and a flat body both work
    j = run(w, rc, "hs.update", {"id": rec.id,
                                 "properties": {"lastname": "Lovelace"}})
    assert j["state"] == "succeeded", j
    assert result(j) == {"id": rec.id, "new": False}
    j = run(w, rc, "hs.update", {"id": int(rec.id), "firstname": "Augusta"})
    assert j["state"] == "succeeded", j
    assert (rec.props["firstname"], rec.props["lastname"]) \
        == ("Augusta", "Lovelace")
    reqs = sent(hs, OBJ + "/" + rec.id, "PATCH")
    assert [r.json() for r in reqs] == [
        {"properties": {"lastname": "Lovelace"}},
        {"properties": {"firstname": "Augusta"}}]

    # upsert: one input to batch/upsert by email; new, then not
    j1 = run(w, rc, "hs.upsert", {"email": "grace@example.com",
                                  "firstname": "Grace"})
    j2 = run(w, rc, "hs.upsert", {"email": "grace@example.com",
                                  "lastname": "Hopper"})
    g = by_email(hs)["grace@example.com"]
    assert result(j1) == {"id": g.id, "new": True}
    assert result(j2) == {"id": g.id, "new": False}
    assert g.props["lastname"] == "Hopper"
    reqs = sent(hs, OBJ + "/batch/upsert")
    assert reqs[0].json() == {"inputs": [{
        "id": "grace@example.com", "idProperty": "email",
        "properties": {"email": "grace@example.com", "firstname": "Grace"},
        "objectWriteTraceId": "0"}]}
    assert len(contacts(hs)) == 2


def test_errors_map_to_outcomes(worker, hs, rc):
    w = worker()
    # a validation error: dead, naming the code and the property only
    j = run(w, rc, "hs.create", {"email": "not-an-email"})
    assert j["state"] == "dead", j
    assert j["last_error"] == "HTTP 400 VALIDATION_ERROR INVALID_EMAIL " \
                              "[email]"
    assert j["attempts"] == "1"
    assert "not-an-email" not in j["last_error"]

    # a duplicate email: 409 CONFLICT, dead; "Existing ID" is not quoted
    ok = run(w, rc, "hs.create", {"email": "dup@example.com"})
    assert ok["state"] == "succeeded"
    j = run(w, rc, "hs.create", {"email": "dup@example.com"})
    assert j["state"] == "dead", j
    assert j["last_error"] == "HTTP 409 CONFLICT"
    assert j["last_status"] == "409"

    # 500 then success: retried, one record
    hs.fail(1, 500, path=OBJ)
    j = run(w, rc, "hs.create", {"email": "retry@example.com"})
    assert j["state"] == "succeeded", j
    assert j["attempts"] == "2"
    assert len([r for r in contacts(hs)
                if r.props.get("email") == "retry@example.com"]) == 1

    # a body the connector cannot build: dead, nothing sent
    before = hs.count()
    j = run(w, rc, "hs.batch_create",
            [{"email": "x%d@example.com" % i} for i in range(101)])
    assert j["state"] == "dead"
    assert j["last_error"] == "more than 100 records (101)"
    assert hs.count() == before


# --------------------------------------------------------------------------
# batches

def test_batches(worker, hs, rc):
    w = worker()
    recs = [{"email": "b%d@example.com" % i, "firstname": "B%d" % i}
            for i in range(3)]
    j = run(w, rc, "hs.batch_create", recs)
    assert j["state"] == "succeeded", j
    got = by_email(hs)
    ids = [got[r["email"]].id for r in recs]
    assert result(j) == {"ids": ids, "failed": 0}
    req, = sent(hs, OBJ + "/batch/create")
    assert req.json() == {"inputs": [
        {"properties": r, "objectWriteTraceId": str(i)}
        for i, r in enumerate(recs)]}

    j = run(w, rc, "hs.batch_update",
            [{"id": i, "lastname": "L"} for i in ids])
    assert j["state"] == "succeeded", j
    assert result(j) == {"ids": ids, "failed": 0}
    assert all(got[r["email"]].props["lastname"] == "L" for r in recs)

    j = run(w, rc, "hs.batch_upsert",
            [{"email": "b0@example.com", "lastname": "U"},
             {"email": "new@example.com", "firstname": "N"}])
    assert j["state"] == "succeeded", j
    got = by_email(hs)
    assert result(j) == {
        "ids": [ids[0], got["new@example.com"].id], "failed": 0}
    assert got["b0@example.com"].props["lastname"] == "U"
    assert len(contacts(hs)) == 4


def test_batch_partial_failure(worker, hs, rc):
    w = worker()
    good = [{"email": "ok%d@example.com" % i} for i in range(3)]
    bad = [{"email": "broken"}, {"properties": {"email": "x@example.com",
                                                "nosuchprop": "1"}}]
    body = [good[0], bad[0], good[1], bad[1], good[2]]
    j = run(w, rc, "hs.batch_create", body)
    assert j["state"] == "dead", j
    assert j["last_error"].startswith("HTTP 207 2 of 5 records refused: "
                                      "VALIDATION_ERROR")
    assert "INVALID_EMAIL" in j["last_error"]
    assert "PROPERTY_DOESNT_EXIST" in j["last_error"]
    assert "broken" not in j["last_error"]
    # written once; the next body holds exactly the refused records
    assert sorted(by_email(hs)) == sorted(g["email"] for g in good)
    assert json.loads(j["body"]) == bad
    assert hs.count(OBJ + "/batch/create") == 1

    # batch_update: an unknown id is refused by itself
    ids = [r.id for r in contacts(hs)]
    j = run(w, rc, "hs.batch_update",
            [{"id": ids[0], "firstname": "Z"}, {"id": "999999",
                                                "firstname": "Q"}])
    assert j["state"] == "dead", j
    assert j["last_error"] == "HTTP 207 1 of 2 records refused: " \
                              "OBJECT_NOT_FOUND"
    assert json.loads(j["body"]) == [{"id": "999999", "firstname": "Q"}]
    assert hs.record("contacts", ids[0]).props["firstname"] == "Z"


# --------------------------------------------------------------------------
# reads

def test_search_and_list_page(worker, hs, rc):
    w = worker()
    seed(hs, 230, "page.example")
    seed(hs, 5, "other.example")
    q = {"filterGroups": [{"filters": [{
        "propertyName": "email", "operator": "CONTAINS_TOKEN",
        "value": "*@page.example"}]}], "properties": ["email"]}
    jid = dispatch(w, "hs.search", q)
    j = settle(rc, jid)
    assert j["state"] == "succeeded", j
    assert result(j) == {"total": 230, "pages": 3}
    pages = [json.loads(p) for p in rc.lrange("{vq}:out:" + jid, 0, -1)]
    assert len(pages) == 3
    emails = [r["properties"]["email"] for p in pages for r in p["results"]]
    assert sorted(emails) == ["p%03d@page.example" % i for i in range(230)]
    reqs = sent(hs, OBJ + "/search")
    assert [r.json().get("after") for r in reqs] == \
        [None, pages[0]["paging"]["next"]["after"],
         pages[1]["paging"]["next"]["after"]]
    assert all(r.json()["limit"] == 100 for r in reqs)

    jid = dispatch(w, "hs.list", {"properties": ["email", "firstname"]})
    j = settle(rc, jid)
    assert j["state"] == "succeeded", j
    assert result(j) == {"total": 235, "pages": 3}
    pages = [json.loads(p) for p in rc.lrange("{vq}:out:" + jid, 0, -1)]
    assert sum(len(p["results"]) for p in pages) == 235
    reqs = sent(hs, OBJ, "GET")
    assert len(reqs) == 3
    assert reqs[0].query == {"limit": ["100"],
                             "properties": ["email,firstname"]}
    assert reqs[2].query["after"] == [pages[1]["paging"]["next"]["after"]]


def test_read(worker, hs, rc):
    w = worker()
    c, = seed(hs, 1)
    j = run(w, rc, "hs.read", {"properties": ["email", "firstname"]},
            headers=[("X-Vantage-Source", "hubspot:" + c.id)])
    assert j["state"] == "succeeded", j
    assert result(j) == {"id": c.id}
    req, = hs.requests(OBJ + "/" + c.id, "GET")
    assert req.query == {"properties": ["email,firstname"]}
    j = run(w, rc, "hs.read", {"id": int(c.id)})
    assert j["state"] == "succeeded", j
    assert hs.requests(OBJ + "/" + c.id, "GET")[1].query == {}
    # then: the record read is the next job's body, an update here
    j = run(w, rc, "hs.read.then", {"id": c.id, "properties": ["firstname"]})
    assert j["state"] == "succeeded", j
    nxt = settle(rc, j["then_job"])
    assert nxt["state"] == "succeeded", nxt
    out = json.loads(nxt["body"])
    assert (out["id"], out["properties"]) == (c.id, {"firstname": "P0"})
    assert hs.requests(OBJ + "/" + c.id, "PATCH")[0].json() == \
        {"properties": {"firstname": "P0"}}

    j = run(w, rc, "hs.read", {"id": "424242"})
    assert j["state"] == "dead", j
    assert j["last_error"] == "HTTP 404 OBJECT_NOT_FOUND"
    j = run(w, rc, "hs.read", b"")
    assert j["state"] == "dead", j
    assert j["last_error"] == 'read takes {"id": ...} or X-Vantage-Source: ' \
                              'hubspot:<id>'


def test_associate(worker, hs, rc):
    w = worker()
    c, = seed(hs, 1)
    comp = hs.store.create(hs_objects.object_type(hs, "companies"),
                           {"name": "Acme"})
    j = run(w, rc, "hs.associate", {"from": c.id, "to_object": "companies",
                                    "to": int(comp.id)})
    assert j["state"] == "succeeded", j
    assert result(j) == {"from": c.id,
                                       "to_object": "companies",
                                       "to": comp.id}
    path = "/crm/v4/objects/contacts/%s/associations/default/companies/%s" \
        % (c.id, comp.id)
    assert hs.count(path, "PUT") == 1
    assert hs.assoc.types_between("contacts", c.id, "companies", comp.id)


# --------------------------------------------------------------------------
# tokens

def test_token_expiry_mid_run(worker, hs, rc):
    w = worker()
    j = run(w, rc, "hso.create", {"email": "one@example.com"})
    assert j["state"] == "succeeded", j
    assert hs.count(TOKEN_PATH) == 1
    first = sent(hs)[0].headers["authorization"]

    hs.expire()
    j = run(w, rc, "hso.create", {"email": "two@example.com"})
    assert j["state"] == "succeeded", j
    assert j["attempts"] == "1"
    # one refresh; the call refused once and sent again with the new token
    assert hs.count(TOKEN_PATH) == 2
    reqs = sent(hs)
    assert [r.status for r in reqs] == [201, 401, 201]
    assert reqs[1].headers["authorization"] == first
    assert reqs[2].headers["authorization"] != first
    assert sorted(by_email(hs)) == ["one@example.com", "two@example.com"]


def test_second_401(worker, hs, rc):
    """A 401 gets a token again and the call once more; a second 401 ends
    the attempt as retryable, and the next attempt goes through.  A
    private app's token has no newer one: the token manager says it is
    refused, and the job is dead (an operator must replace it)."""
    w = worker()
    hs.fail(2, 401, path=OBJ)
    j = run(w, rc, "hso.create", {"email": "twice@example.com"})
    assert j["state"] == "succeeded", j
    assert j["attempts"] == "2"
    assert [r.status for r in sent(hs)] == [401, 401, 201]
    assert hs.count(TOKEN_PATH) == 2
    assert len(by_email(hs)) == 1

    hs.fail(1, 401, path=OBJ)
    j = run(w, rc, "hs.create", {"email": "pat@example.com"})
    assert j["state"] == "dead", j
    assert j["last_error"] == 'token: hs: the private app\'s token (secret ' \
                              '"hs.pat") was refused'
    assert "pat@example.com" not in by_email(hs)


def test_no_token_in_redis(worker, hs, rc, vault):
    w = worker()
    for t in ("hs.create", "hso.create"):
        j = run(w, rc, t, {"email": "%s@example.com" % t.replace(".", "-")})
        assert j["state"] == "succeeded", j
    secrets = [hs.token.encode(), hs.oauth_app.client_secret.encode(),
               vault["refresh"].encode()]
    secrets += [r.headers["authorization"][7:].encode() for r in sent(hs)]
    dump = b""
    for k in rc.keys("*"):
        dump += k
        t = rc.type(k)
        if t == b"string":
            dump += rc.get(k)
        elif t == b"hash":
            dump += b"".join(a + b for a, b in rc.hgetall(k).items())
        elif t == b"list":
            dump += b"".join(rc.lrange(k, 0, -1))
        elif t == b"stream":
            dump += repr(rc.xrange(k)).encode()
        elif t == b"zset":
            dump += b"".join(rc.zrange(k, 0, -1))
    for s in secrets:
        assert s not in dump


# --------------------------------------------------------------------------
# rate limits

def test_burst_limit_paces_without_429(worker, hs, rc):
    """One call at a time: the answer that says Remaining 0 pauses the
    connection for the interval, so no call meets a 429."""
    hs.limits.configure("private", burst=5, interval_ms=1000)
    w = worker(concurrency=1)
    jids = [dispatch(w, "hs.create", {"email": "r%d@example.com" % i},
                     cid="burst-%d" % i)
            for i in range(12)]
    t0 = time.time()
    for jid in jids:
        j = settle(rc, jid, 30)
        assert j["state"] == "succeeded", j
        assert j["attempts"] == "1"
    took = time.time() - t0
    reqs = sent(hs)
    assert len(reqs) == 12
    assert [r.status for r in reqs].count(429) == 0
    assert len(contacts(hs)) == 12
    # the fifth answer said Remaining 0: nothing was sent for the window
    assert reqs[5].time - reqs[4].time >= 0.95
    assert took >= 1.0
    pauses = [o for o in w.log_lines()
              if o.get("msg") == "hubspot rate limit: pausing the connection"]
    assert pauses[0]["policy"] == "TEN_SECONDLY_ROLLING"
    assert pauses[0]["ms"] == "1000"
    held = [o for o in w.log_lines() if o.get("msg") == "job put back"]
    assert held and all(o["reason"].startswith(
        "HubSpot rate limit (TEN_SECONDLY_ROLLING): paused ") for o in held)
    # each line names its job and that job's correlation id
    cids = dict(zip(jids, ("burst-%d" % i for i in range(12))))
    assert all(o["correlation_id"] == cids[o["job"]] for o in held)


def test_429_pauses_the_connection(worker, hs, rc):
    """A limit used up elsewhere: the first call meets the 429, which
    pauses the connection for the window; the others are held back, not
    sent, and then all succeed.  With concurrency 1: exactly one 429."""
    hs.limits.configure("private", burst=100, interval_ms=1500)
    w = worker(concurrency=1)
    hs.limits.exhaust("TEN_SECONDLY_ROLLING", [hs.private_app.app])
    jids = [dispatch(w, "hs.create", {"email": "s%d@example.com" % i})
            for i in range(6)]
    jobs = [settle(rc, jid, 30) for jid in jids]
    assert all(j["state"] == "succeeded" for j in jobs), jobs
    reqs = sent(hs)
    assert [r.status for r in reqs].count(429) == 1
    assert len(reqs) == 7
    assert sorted(int(j["attempts"]) for j in jobs) == [1, 1, 1, 1, 1, 2]
    assert len(contacts(hs)) == 6
    # the others were held until the window ended, not sent into it
    t429 = [r.time for r in reqs if r.status == 429][0]
    assert all(r.time >= t429 + 1.4 for r in reqs if r.status == 201)


def test_daily_limit_pauses_until_midnight(worker, hs, rc):
    hs.limits.exhaust("DAILY", [hs.private_app.app])
    w = worker(concurrency=1)
    j1 = dispatch(w, "hs.create", {"email": "d1@example.com"})
    vh.wait_for(lambda: job(rc, j1).get("state") == "retrying", 10,
                what="retrying")
    until = int(rc.get("{vq}:pace:hs"))
    day = 86400000
    assert until == (int(time.time() * 1000) // day + 1) * day
    assert 0 < rc.pttl("{vq}:pace:hs") <= day
    j2 = dispatch(w, "hs.create", {"email": "d2@example.com"})
    time.sleep(1.0)
    assert hs.count(OBJ) == 1
    assert job(rc, j2).get("attempts", "0") == "0"


# --------------------------------------------------------------------------
# id cross-reference

def test_xref(worker, hs, rc):
    w = worker()
    j = run(w, rc, "hs.create", {"email": "x@example.com"},
            headers=[("X-Vantage-Source", "salesforce:003XYZ")])
    assert j["state"] == "succeeded", j
    hid = by_email(hs)["x@example.com"].id
    assert rc.hgetall("{vq}:xref:acme:salesforce:003XYZ") == \
        {b"hubspot": hid.encode()}
    assert rc.hgetall("{vq}:xref:acme:hubspot:" + hid) == \
        {b"salesforce": b"003XYZ"}
    # no source: no xref
    run(w, rc, "hs.create", {"email": "y@example.com"})
    assert len(rc.keys("{vq}:xref:*")) == 2


def test_concurrent_burst_is_bounded(worker, hs, rc):
    """Four calls at once: a 429 can only meet a call sent before the
    answer that said Remaining 0 came back, so at most three in each
    window of five successes; the jobs they hit are retried after it."""
    burst, conc, n = 5, 4, 16
    hs.limits.configure("private", burst=burst, interval_ms=1000)
    w = worker(concurrency=conc)
    jids = [dispatch(w, "hs.create", {"email": "c%d@example.com" % i})
            for i in range(n)]
    jobs = [settle(rc, jid, 40) for jid in jids]
    assert all(j["state"] == "succeeded" for j in jobs), jobs
    reqs = sent(hs)
    n429 = [r.status for r in reqs].count(429)
    assert n429 <= (conc - 1) * -(-n // burst)
    assert len(reqs) == n + n429
    assert sum(int(j["attempts"]) for j in jobs) == n + n429
    assert len(contacts(hs)) == n


def test_shutdown_mid_call(worker, hs, rc):
    """The engine cancels an attempt whose call is out at shutdown: the
    connector lets go of it (the log is checked for sanitizer reports
    with an ASan build, VANTAGE_WORKER=...) and the worker exits 0."""
    hs.delay(3, n=1, path=OBJ)
    w = worker()
    jid = dispatch(w, "hs.create", {"email": "slow@example.com"})
    vh.wait_for(lambda: hs.count(OBJ) == 1, 5, what="the call")
    assert w.stop() == 0
    assert job(rc, jid)["state"] != "succeeded"


def test_through_nginx(worker_factory, nginx_factory, module_available, hs,
                       vault, rc):
    """A client's POST through nginx (vantage_dispatch) becomes a HubSpot
    upsert, with its X-Vantage-Source passed on for the xref."""
    worker_factory.socket_mode = 0o777
    worker_factory.secrets = (hs.token, hs.oauth_app.client_secret,
                              vault["refresh"])
    w = worker_factory(config(hs, vault))
    n = nginx_factory(http="""
    vantage_worker unix:%s timeout=2s retry_after=2;
""" % w.socket_path, server="""
        vantage_tenant $http_x_tenant;
        location = /contacts {
            vantage_dispatch_headers Content-Type X-Vantage-Source;
            vantage_dispatch hs.upsert;
        }
""")
    c = vh.Client(n, "http")
    r = c.request("POST", "/contacts",
                  content=b'{"email":"nx@example.com","firstname":"N"}',
                  headers={"Content-Type": "application/json",
                           "X-Tenant": "acme",
                           "X-Vantage-Source": "crm:77"})
    assert r.status == 202, r
    j = settle(rc, r.json["job_id"])
    assert j["state"] == "succeeded", j
    rec = by_email(hs)["nx@example.com"]
    assert result(j) == {"id": rec.id, "new": True}
    assert rec.props["firstname"] == "N"
    assert rc.hgetall("{vq}:xref:acme:crm:77") == {b"hubspot": rec.id.encode()}


def test_pause_from_another_worker(worker, hs, rc):
    """{vq}:pace:<connection>, as another worker writes it, holds jobs
    here too, once read: admit() reads it asynchronously, at most every
    200 ms, so the first job after a quiet spell goes before the reading
    is back, and the next ones wait for the pause to end."""
    w = worker()
    until = int(time.time() * 1000) + 2000
    rc.set("{vq}:pace:hs", str(until), px=2000)
    first = dispatch(w, "hs.create", {"email": "first@example.com"})
    assert settle(rc, first)["state"] == "succeeded"
    time.sleep(0.3)
    jid = dispatch(w, "hs.create", {"email": "later@example.com"})
    j = settle(rc, jid)
    assert j["state"] == "succeeded", j
    assert j["attempts"] == "1"
    a, b = sent(hs)
    assert a.time * 1000 < until - 1000
    assert b.time * 1000 >= until - 5
    held = [o for o in w.log_lines() if o.get("msg") == "job put back"]
    assert held[0]["job"] == jid
    assert held[0]["reason"].startswith("HubSpot rate limit (SHARED): "
                                        "paused ")


def test_read_asks_for_what_the_next_jobs_mapping_reads(worker, hs, rc,
                                                        base_dir):
    """A read whose "then" job has a mapping asks HubSpot for the
    properties that mapping reads (docs/CONNECTORS.md, "then"), when the
    body names none; a body's own list still wins."""
    mapping = os.path.join(base_dir, "hs-echo-%d.json" % os.getpid())
    vh.write_file(mapping, json.dumps({
        "name": "hs-echo", "from": "hubspot.contact",
        "to": "hubspot.contact",
        "fields": [
            {"to": "properties.email", "from": "properties.email"},
            {"to": "properties.jobtitle", "from": "properties.firstname"},
            {"to": "properties.lastname", "constant": "Mapped"},
        ]}).encode())
    w = worker(jobs={
        "hs.read.mapped": "connection = hs\noperation = read\n"
                          "object = contacts\nthen = hs.mapped.upsert\n",
        "hs.mapped.upsert": "connection = hs\noperation = upsert\n"
                            "object = contacts\nid_property = email\n"
                            "mapping = %s\n" % mapping})
    c, = seed(hs, 1)
    j = run(w, rc, "hs.read.mapped", {"id": c.id})
    assert j["state"] == "succeeded", j
    req, = hs.requests(OBJ + "/" + c.id, "GET")
    # the mapping's properties.* sources, in its order; the constant none
    assert req.query == {"properties": ["email,firstname"]}
    nxt = settle(rc, j["then_job"])
    assert nxt["state"] == "succeeded", nxt
    assert contacts(hs)[0].props.get("jobtitle") == "P0"
    assert contacts(hs)[0].props.get("lastname") == "Mapped"

    j = run(w, rc, "hs.read.mapped", {"id": c.id, "properties": ["email"]})
    assert j["state"] == "succeeded", j
    assert hs.requests(OBJ + "/" + c.id, "GET")[1].query == \
        {"properties": ["email"]}
