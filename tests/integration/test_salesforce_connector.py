"""test_salesforce_connector.py -- the Salesforce connector end to end.

A real redis-server, the real worker with a [vault], a [connection] that
signs in with the JWT bearer flow (its private key sealed in the vault by
build/vantagectl) and one [job] per operation, and the Salesforce emulator
(tests/fakes/salesforce) in this process, which records every request.
Jobs are handed over in frames (worker_harness), and the tests read the
outcome in {vq}:job:<id>, the records in the emulator's org and the
requests it logged (docs/CONNECTORS.md is the spec).
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import (T_BODY, T_CORRELATION_ID, T_HEADER, T_JOB_ID,
                            T_JOB_TYPE, T_TENANT)

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402

CTL = os.path.join(vh.REPO, "build", "vantagectl")
API = "62.0"
DATA = "/services/data/v%s" % API
TOKEN = "/services/oauth2/token"
SECRET = "sf.acme.jwt-key"

JOBS = {
    "sf.create": "operation = create\nobject = Contact\n",
    "sf.update": "operation = update\nobject = Contact\n",
    "sf.upsert": "operation = upsert\nobject = Contact\n"
                 "external_id = ExtId__c\n",
    "sf.publish": "operation = publish\nobject = Vantage_Sync__e\n",
    "sf.col.create": "operation = collections_create\nobject = Contact\n",
    "sf.col.update": "operation = collections_update\nobject = Contact\n",
    "sf.col.upsert": "operation = collections_upsert\nobject = Contact\n"
                     "external_id = ExtId__c\n",
    "sf.query": "operation = query\nobject = Contact\n",
    "sf.read": "operation = read\nobject = Contact\n",
}


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki, api_version=API)
    yield s
    s.stop()
    assert s.internal_errors == []


@pytest.fixture
def vault_key(base_dir):
    d = vh.make_dir(os.path.join(base_dir, "sf-vault-%d" % os.getpid()))
    path = os.path.join(d, "vault.key")
    vh.write_file(path, os.urandom(32), mode=0o600)
    return path


def ctl(redis, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VANTAGE_")}
    p = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=vh.timeout(20))
    assert p.returncode == 0, p.stderr.decode()
    return p


def conf_text(sf, key_file, recheck="1s", share=90, jobs_extra="",
              extra=""):
    text = wh.CONFIG_HEAD + (
        "visibility_timeout = 20s\nshutdown_timeout = 1s\n\n"
        "[vault]\nkey_file = %s\n\n"
        "[target sf]\nca_file = %s\nmax_concurrency = 8\n"
        "connect_timeout = 2s\n\n"
        "[connection acme-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
        "login_url = %s\nclient_id = %s\nusername = %s\n"
        "private_key = %s\napi_version = %s\nlimit_share = %d\n"
        "limit_recheck = %s\ntarget = sf\n\n"
        % (key_file, sf.ca_file, sf.login_url, sf.consumer_key,
           sf.username, SECRET, API, share, recheck))
    for name, body in JOBS.items():
        text += ("[job %s]\nconnector = salesforce\nconnection = acme-sf\n"
                 "%stimeout = 5s\nmax_attempts = 6\nbackoff_base = 100ms\n"
                 "backoff_cap = 300ms\n%s\n" % (name, body, jobs_extra))
    return text + extra


@pytest.fixture
def stack(sf, vault_key, worker_redis, worker_factory):
    """stack(**conf_kw) -> the started Worker, the JWT key in the vault."""
    ctl(worker_redis, "vault", "put", SECRET, "--key-file", vault_key,
        "--from-file", sf.jwt_key_file)

    def start(**kw):
        return worker_factory(conf_text(sf, vault_key, **kw))

    return start


def dispatch(w, job_type, body, source=None, corr=None, fid=1):
    fields = [(T_JOB_TYPE, job_type), (T_TENANT, "acme"),
              (T_BODY, b"" if body is None else json.dumps(body).encode()),
              (T_HEADER, b"Content-Type\0application/json")]
    if source is not None:
        fields.append((T_HEADER, b"X-Vantage-Source\0" + source.encode()))
    if corr is not None:
        fields.append((T_CORRELATION_ID, corr))
    r = w.client().dispatch(fid, fields)
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def job(rc, jid):
    return {k.decode(): v.decode()
            for k, v in rc.hgetall("{vq}:job:" + jid).items()}


def att(rc, jid):
    return [json.loads(a) for a in rc.lrange("{vq}:att:" + jid, 0, -1)]


def wait_state(rc, jid, state, seconds=15):
    vh.wait_for(lambda: job(rc, jid).get("state") == state, seconds,
                interval=0.05, what="job %s %s (now %r)"
                % (jid, state, job(rc, jid).get("state")))
    return job(rc, jid)


def wait_attempts(rc, jid, n, seconds=15):
    vh.wait_for(lambda: len(att(rc, jid)) >= n, seconds, interval=0.05,
                what="job %s: %d attempts" % (jid, n))
    return att(rc, jid)


def result(j):
    """The job's result, the connector's part: the engine adds the
    deciding response's status and the attempt's ms."""
    r = json.loads(j["result"])
    assert r.pop("status") == int(j["last_status"])
    assert isinstance(r.pop("ms"), int)
    return r


def rest(sf, method=None):
    """The logged REST requests (not the token endpoint's)."""
    return sf.requests(DATA, method)


def contacts(sf):
    t = sf.org.type("Contact")
    return [sf.org.view(t, r) for r in sf.org.all(t)]


# -- each operation ---------------------------------------------------------

def test_create(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.create", {"LastName": "Lovelace",
                                    "Email": "ada@example.com"},
                   corr="corr-42")
    j = wait_state(rc, jid, "succeeded")
    rows = contacts(sf)
    assert len(rows) == 1
    assert rows[0]["LastName"] == "Lovelace"
    res = result(j)
    assert res["id"] == rows[0]["Id"] and res["created"] is True
    reqs = rest(sf)
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("POST", DATA + "/sobjects/Contact/")]
    h = reqs[0]["headers"]
    assert h["authorization"].startswith("Bearer ")
    assert h["content-type"] == "application/json"
    assert h["x-correlation-id"] == "corr-42"
    assert "idempotency-key" not in h
    assert json.loads(reqs[0]["body"]) == {"LastName": "Lovelace",
                                           "Email": "ada@example.com"}
    assert sf.count(TOKEN) == 1
    # the limit reading is kept for every worker
    lim = {k.decode(): v.decode()
           for k, v in rc.hgetall("{vq}:limits:acme-sf").items()}
    assert lim["used"] == "1" and lim["max"] == "100000"
    assert abs(int(lim["at_ms"]) - time.time() * 1000) < 10000


def test_update_takes_the_id_out(stack, sf, rc):
    w = stack()
    rid = sf.org.create(sf.org.type("Contact"), {"LastName": "Hopper"},
                        sf.context())
    jid = dispatch(w, "sf.update", {"Id": rid, "Title": "Rear Admiral"})
    j = wait_state(rc, jid, "succeeded")
    assert result(j) == {"id": rid, "created": False}
    reqs = rest(sf)
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("PATCH", DATA + "/sobjects/Contact/" + rid)]
    assert json.loads(reqs[0]["body"]) == {"Title": "Rear Admiral"}
    assert contacts(sf)[0]["Title"] == "Rear Admiral"


def test_upsert_creates_then_updates(stack, sf, rc):
    w = stack()
    ext = "hs 17/a"
    jid = dispatch(w, "sf.upsert", {"ExtId__c": ext, "LastName": "Curie"})
    j = wait_state(rc, jid, "succeeded")
    first = result(j)
    assert first["created"] is True
    jid = dispatch(w, "sf.upsert", {"ExtId__c": ext, "LastName": "Curie",
                                    "Title": "Dr"}, fid=2)
    j = wait_state(rc, jid, "succeeded")
    assert result(j) == {"id": first["id"], "created": False}
    reqs = rest(sf)
    path = DATA + "/sobjects/Contact/ExtId__c/hs%2017%2Fa"
    assert [(r["method"], r["path"]) for r in reqs] == [("PATCH", path)] * 2
    assert json.loads(reqs[1]["body"]) == {"LastName": "Curie",
                                           "Title": "Dr"}
    rows = contacts(sf)
    assert len(rows) == 1 and rows[0]["Title"] == "Dr"
    assert rows[0]["ExtId__c"] == ext


def test_publish_a_platform_event(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.publish", {"Kind__c": "sync"})
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["created"] is True
    assert result(j)["id"].startswith("e00")
    reqs = rest(sf)
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("POST", DATA + "/sobjects/Vantage_Sync__e/")]


def test_collections_create(stack, sf, rc):
    w = stack()
    recs = [{"LastName": "A%d" % i} for i in range(3)]
    jid = dispatch(w, "sf.col.create", recs)
    j = wait_state(rc, jid, "succeeded")
    rows = contacts(sf)
    res = result(j)
    assert res["failed"] == 0
    assert sorted(res["ids"]) == sorted(r["Id"] for r in rows)
    assert len(rows) == 3
    reqs = rest(sf)
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("POST", DATA + "/composite/sobjects")]
    assert json.loads(reqs[0]["body"]) == {
        "allOrNone": False,
        "records": [dict(r, attributes={"type": "Contact"}) for r in recs]}


def test_collections_upsert(stack, sf, rc):
    w = stack()
    recs = [{"ExtId__c": "x1", "LastName": "One"},
            {"ExtId__c": "x2", "LastName": "Two"}]
    jid = dispatch(w, "sf.col.upsert", recs)
    wait_state(rc, jid, "succeeded")
    reqs = rest(sf)
    assert [(r["method"], r["path"]) for r in reqs] == [
        ("PATCH", DATA + "/composite/sobjects/Contact/ExtId__c")]
    assert sorted(r["ExtId__c"] for r in contacts(sf)) == ["x1", "x2"]


def test_collections_partial_failure_leaves_the_refused(stack, sf, rc):
    w = stack()
    recs = [{"LastName": "Ok1"}, {"FirstName": "NoLast",
                                  "Email": "nolast@example.com"},
            {"LastName": "Ok2"}]
    jid = dispatch(w, "sf.col.create", recs)
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == \
        "1 of 3 records refused: REQUIRED_FIELD_MISSING [LastName]"
    assert "nolast@example.com" not in j["last_error"]
    assert json.loads(j["body"]) == [recs[1]]
    assert sorted(r["LastName"] for r in contacts(sf)) == ["Ok1", "Ok2"]
    assert len(rest(sf)) == 1


def test_a_dlq_replay_sends_only_the_refused(stack, sf, rc, worker_redis):
    w = stack()
    strict = [True]
    sf.add_validation_rule("Contact", "Title is required", ["Title"],
                           lambda r: strict[0] and not r.get("Title"))
    recs = [{"LastName": "A", "Title": "t"}, {"LastName": "B"}]
    jid = dispatch(w, "sf.col.create", recs)
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == ("1 of 2 records refused: "
                               "FIELD_CUSTOM_VALIDATION_EXCEPTION [Title]")
    assert json.loads(j["body"]) == [recs[1]]
    strict[0] = False
    ctl(worker_redis, "dlq", "replay", jid)
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["failed"] == 0 and len(result(j)["ids"]) == 1
    bodies = [json.loads(r["body"])["records"] for r in rest(sf)]
    assert bodies == [
        [dict(r, attributes={"type": "Contact"}) for r in recs],
        [dict(recs[1], attributes={"type": "Contact"})]]
    assert sorted(r["LastName"] for r in contacts(sf)) == ["A", "B"]


def test_collections_lock_retries_only_the_locked(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    a = sf.org.create(t, {"LastName": "A"}, sf.context())
    b = sf.org.create(t, {"LastName": "B"}, sf.context())
    sf.lock_record(b)
    jid = dispatch(w, "sf.col.update", [{"Id": a, "Title": "x"},
                                        {"Id": b, "Title": "y"}])
    first = wait_attempts(rc, jid, 1)[0]
    assert first["outcome"] == "retry"
    assert first["error"].startswith("1 of 2 records refused: "
                                     "UNABLE_TO_LOCK_ROW")
    sf.lock_record(b, False)
    j = wait_state(rc, jid, "succeeded")
    reqs = rest(sf)
    assert json.loads(reqs[0]["body"])["records"] == [
        {"Id": a, "Title": "x", "attributes": {"type": "Contact"}},
        {"Id": b, "Title": "y", "attributes": {"type": "Contact"}}]
    # the retries carry b alone
    for r in reqs[1:]:
        assert json.loads(r["body"])["records"] == [
            {"Id": b, "Title": "y", "attributes": {"type": "Contact"}}]
    assert result(j) == {"ids": [b], "failed": 0}
    assert {r["Id"]: r["Title"] for r in contacts(sf)} == {a: "x", b: "y"}


def test_collections_over_200_records_is_dead_unsent(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.col.create",
                   [{"LastName": "n%d" % i} for i in range(201)])
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == "more than 200 records"
    assert rest(sf) == []


def test_query_follows_next_records_url(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    for i in range(5):
        sf.org.create(t, {"LastName": "Q%d" % i}, sf.context())
    sf.query_batch_size = 2
    jid = dispatch(w, "sf.query",
                   {"soql": "SELECT Id, LastName FROM Contact"})
    j = wait_state(rc, jid, "succeeded")
    assert result(j) == {"total": 5, "pages": 3}
    pages = [json.loads(p) for p in rc.lrange("{vq}:out:" + jid, 0, -1)]
    assert [len(p["records"]) for p in pages] == [2, 2, 1]
    assert sorted(r["LastName"] for p in pages for r in p["records"]) == \
        ["Q%d" % i for i in range(5)]
    reqs = rest(sf, "GET")
    assert reqs[0]["path"] == DATA + "/query"
    assert urllib.parse.parse_qs(reqs[0]["query"]) == {
        "q": ["SELECT Id, LastName FROM Contact"]}
    assert [r["path"] for r in reqs[1:]] == [
        pages[0]["nextRecordsUrl"], pages[1]["nextRecordsUrl"]]


def test_read_and_then(stack, sf, rc, target):
    """read by the body's Id, and by X-Vantage-Source with the record
    handed to the "then" job."""
    w = stack(extra="[job sf.read.then]\nconnector = salesforce\n"
              "connection = acme-sf\noperation = read\nobject = Contact\n"
              "then = hook\ntimeout = 5s\n\n"
              "[job hook]\nconnector = http\nurl = %s\ntimeout = 2s\n"
              % target.url("/in"))
    rid = sf.org.create(sf.org.type("Contact"), {"LastName": "Reader",
                                                 "Title": "Dr"},
                        sf.context())
    jid = dispatch(w, "sf.read", {"Id": rid})
    j = wait_state(rc, jid, "succeeded")
    assert result(j) == {"id": rid}
    assert [(r["method"], r["path"]) for r in rest(sf)] == [
        ("GET", DATA + "/sobjects/Contact/" + rid)]
    jid = dispatch(w, "sf.read.then", None, source="salesforce:" + rid,
                   fid=2)
    j = wait_state(rc, jid, "succeeded")
    nxt = wait_state(rc, j["then_job"], "succeeded")
    assert nxt["parent"] == jid
    got = target.got("/in")
    assert len(got) == 1
    rec = json.loads(got[0]["body"])
    assert "attributes" not in rec
    assert (rec["Id"], rec["LastName"], rec["Title"]) == (rid, "Reader",
                                                          "Dr")
    assert len(rest(sf)) == 2


def test_read_of_a_missing_record_is_dead(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.read", {"Id": "003000000000000AAA"})
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == "HTTP 404 NOT_FOUND"


# -- outcomes ---------------------------------------------------------------

def test_validation_rule_is_dead_with_the_field_names(stack, sf, rc):
    w = stack()
    sf.add_validation_rule("Contact", "Email must be corporate", ["Email"],
                           lambda r: str(r.get("Email", "")).endswith(
                               "@gmail.com"))
    jid = dispatch(w, "sf.create", {"LastName": "X",
                                    "Email": "someone@gmail.com"})
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == \
        "HTTP 400 FIELD_CUSTOM_VALIDATION_EXCEPTION [Email]"
    assert j["last_status"] == "400"
    assert len(att(rc, jid)) == 1
    assert contacts(sf) == []


def test_a_locked_record_is_retried_then_written(stack, sf, rc):
    w = stack()
    rid = sf.org.create(sf.org.type("Contact"), {"LastName": "L"},
                        sf.context())
    sf.lock_record(rid)
    jid = dispatch(w, "sf.update", {"Id": rid, "Title": "t"})
    a = wait_attempts(rc, jid, 1)
    assert a[0]["outcome"] == "retry"
    assert a[0]["error"] == "HTTP 400 UNABLE_TO_LOCK_ROW"
    sf.lock_record(rid, False)
    wait_state(rc, jid, "succeeded")
    assert contacts(sf)[0]["Title"] == "t"


def test_503_is_retried(stack, sf, rc):
    w = stack()
    sf.fail_next(1, 503)
    jid = dispatch(w, "sf.create", {"LastName": "Retry"})
    j = wait_state(rc, jid, "succeeded")
    a = att(rc, jid)
    assert [x["outcome"] for x in a] == ["retry", "success"]
    assert a[0]["error"] == "HTTP 503 SERVER_UNAVAILABLE"
    assert len(contacts(sf)) == 1
    assert int(j["attempts"]) == 2


def test_upsert_matching_several_records_is_dead(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    for n in ("A", "B"):
        sf.org.create(t, {"LastName": n, "ExtId__c": "dup"}, sf.context())
    jid = dispatch(w, "sf.upsert", {"ExtId__c": "dup", "LastName": "C"})
    j = wait_state(rc, jid, "dead")
    assert j["last_status"] == "300"
    assert j["last_error"] == \
        "HTTP 300 the external id matches several records"


def test_expired_token_is_replaced_once_and_the_call_replayed(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.create", {"LastName": "Before"})
    wait_state(rc, jid, "succeeded")
    assert sf.count(TOKEN) == 1
    sf.expire_tokens()
    sf.reset_log()
    jid = dispatch(w, "sf.create", {"LastName": "After"}, fid=2)
    j = wait_state(rc, jid, "succeeded")
    assert sf.count(TOKEN) == 1
    assert [r["status"] for r in rest(sf)] == [401, 201]
    assert len(att(rc, jid)) == 1 and int(j["attempts"]) == 1
    assert sorted(r["LastName"] for r in contacts(sf)) == ["After",
                                                          "Before"]
    tokens = [r["headers"]["authorization"] for r in rest(sf)]
    assert tokens[0] != tokens[1]


def test_a_second_401_is_retried(stack, sf, rc):
    w = stack()
    sf.fail_next(2, 401, "INVALID_SESSION_ID", "Session expired or invalid")
    jid = dispatch(w, "sf.create", {"LastName": "Twice"})
    j = wait_state(rc, jid, "succeeded")
    a = att(rc, jid)
    assert [x["outcome"] for x in a] == ["retry", "success"]
    assert a[0]["error"] == "HTTP 401 INVALID_SESSION_ID"
    assert [r["status"] for r in rest(sf)] == [401, 401, 201]
    # the first token, and one newer than the refused one; the second
    # attempt uses that
    assert sf.count(TOKEN) == 2
    assert len(contacts(sf)) == 1 and int(j["attempts"]) == 2


def test_request_limit_exceeded_is_retried(stack, sf, rc):
    w = stack()
    sf.fail_next(1, 403, "REQUEST_LIMIT_EXCEEDED",
                 "ConcurrentPerOrgLongTxn Limit exceeded.")
    jid = dispatch(w, "sf.create", {"LastName": "Busy"})
    wait_state(rc, jid, "succeeded")
    a = att(rc, jid)
    assert [x["outcome"] for x in a] == ["retry", "success"]
    assert a[0]["error"] == "HTTP 403 REQUEST_LIMIT_EXCEEDED"
    assert len(contacts(sf)) == 1


def test_other_4xx_is_dead(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.create", {"LastName": "X", "Nope__c": "secret"})
    j = wait_state(rc, jid, "dead")
    assert j["last_status"] == "400"
    assert j["last_error"].startswith("HTTP 400 INVALID_FIELD")
    assert "secret" not in j["last_error"]
    assert len(att(rc, jid)) == 1


def test_shutdown_mid_call_cancels_cleanly(stack, sf, rc):
    w = stack()
    sf.delay(3, path=DATA)
    jid = dispatch(w, "sf.create", {"LastName": "Slow"})
    vh.wait_for(lambda: len(rest(sf)) == 1, 10, what="the call")
    t0 = time.monotonic()
    assert w.stop() == 0
    assert time.monotonic() - t0 < 2.5     # shutdown_timeout, not the call
    assert job(rc, jid)["state"] not in ("dead", "succeeded")
    assert any(o["msg"] == "stopped" for o in w.log_lines())


def test_daily_allowance_defers_without_calling(stack, sf, rc):
    w = stack(recheck="3s")
    sf.set_limit(used=95000)
    jid = dispatch(w, "sf.create", {"LastName": "Probe"})
    wait_state(rc, jid, "succeeded")
    assert len(rest(sf)) == 1
    held = [dispatch(w, "sf.create", {"LastName": "Held%d" % i}, fid=2 + i)
            for i in range(2)]
    time.sleep(1.5)
    assert len(rest(sf)) == 1
    for h in held:
        j = job(rc, h)
        assert j["state"] not in ("running", "dead", "succeeded"), j
        assert int(j.get("attempts") or 0) == 0
        assert j["held"] == \
            "daily API allowance nearly spent (95001/100000)"
        assert att(rc, h) == []
    lines = [o for o in w.log_lines()
             if o["msg"] == "daily API allowance nearly spent: deferring"]
    assert len(lines) == 1
    assert lines[0]["level"] == "warn"
    assert (lines[0]["connection"], lines[0]["used"], lines[0]["max"]) == \
        ("acme-sf", "95001", "100000")
    sf.set_limit(used=10)
    for h in held:
        j = wait_state(rc, h, "succeeded", seconds=20)
        assert int(j["attempts"]) == 1
    assert len(contacts(sf)) == 3
    assert len(rest(sf)) == 3


def test_another_workers_reading_counts(stack, sf, rc):
    """A reading in {vq}:limits:<connection> newer than the worker's own
    (another worker's) is read at the next admission and holds back the
    attempts after it, though this worker's own answers say little."""
    w = stack(recheck="3s")
    jid = dispatch(w, "sf.create", {"LastName": "First"})
    wait_state(rc, jid, "succeeded")
    time.sleep(1.1)                     # past the once-a-second refresh
    rc.hset("{vq}:limits:acme-sf", mapping={
        "used": 95000, "max": 100000,
        "at_ms": int(time.time() * 1000) + 1500})
    # its admission asks Redis, and runs on what the worker knew
    jid = dispatch(w, "sf.create", {"LastName": "Second"}, fid=2)
    wait_state(rc, jid, "succeeded")
    held = dispatch(w, "sf.create", {"LastName": "Third"}, fid=3)
    vh.wait_for(lambda: job(rc, held).get("held"), 5, interval=0.05,
                what="the third job held back")
    assert job(rc, held)["held"] == \
        "daily API allowance nearly spent (95000/100000)"
    assert len(rest(sf)) == 2
    wait_state(rc, held, "succeeded", seconds=20)
    assert len(rest(sf)) == 3


def test_xref_on_success(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.upsert", {"ExtId__c": "e1", "LastName": "X"},
                   source="hubspot:901")
    j = wait_state(rc, jid, "succeeded")
    sid = result(j)["id"]
    assert rc.hgetall("{vq}:xref:acme:hubspot:901") == {
        b"salesforce": sid.encode()}
    assert rc.hgetall("{vq}:xref:acme:salesforce:" + sid) == {
        b"hubspot": b"901"}


def test_no_token_in_redis_or_the_log(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.create", {"LastName": "Secret"})
    wait_state(rc, jid, "succeeded")
    tokens = list(sf.auth.sessions)
    assert len(tokens) == 1
    blob = b""
    for k in rc.scan_iter(count=1000):
        blob += k
        kind = rc.type(k)
        if kind == b"string":
            blob += rc.get(k)
        elif kind == b"hash":
            for f, v in rc.hgetall(k).items():
                blob += f + v
        elif kind == b"list":
            blob += b"".join(rc.lrange(k, 0, -1))
    for t in tokens:
        assert t.encode() not in blob
        assert t not in w.log_text()
    with open(sf.jwt_key_file, "rb") as f:
        pem = f.read()
    body = pem.split(b"-----")[2].strip().split(b"\n")[0]
    assert body not in blob


# -- through nginx ----------------------------------------------------------

def test_through_nginx_with_xref(sf, vault_key, worker_redis, worker_factory,
                                 nginx_factory, rc):
    """A client's POST to vantage_dispatch, the worker's upsert at the
    emulator, the cross-reference of the X-Vantage-Source it sent."""
    ctl(worker_redis, "vault", "put", SECRET, "--key-file", vault_key,
        "--from-file", sf.jwt_key_file)
    worker_factory.socket_mode = 0o777
    w = worker_factory(conf_text(sf, vault_key))
    n = nginx_factory(http="""
    vantage_worker unix:%s timeout=2s retry_after=2;
""" % w.socket_path, server="""
        vantage_tenant $http_x_tenant;
        location = /contacts {
            vantage_dispatch_headers Content-Type X-Vantage-Source;
            vantage_dispatch sf.upsert;
        }
""")
    c = vh.Client(n, "http")
    r = c.request("POST", "/contacts",
                  content=json.dumps({"ExtId__c": "hs-77",
                                      "LastName": "Nginx"}).encode(),
                  headers={"X-Tenant": "acme", "X-Vantage-Source":
                           "hubspot:77", "Content-Type": "application/json"})
    c.close()
    assert r.status == 202, r
    jid = r.json["job_id"]
    j = wait_state(rc, jid, "succeeded")
    res = result(j)
    rows = contacts(sf)
    assert len(rows) == 1 and rows[0]["LastName"] == "Nginx"
    assert res == {"id": rows[0]["Id"], "created": True}
    assert rc.hgetall("{vq}:xref:acme:hubspot:77") == {
        b"salesforce": rows[0]["Id"].encode()}
    assert rc.hgetall("{vq}:xref:acme:salesforce:" + rows[0]["Id"]) == {
        b"hubspot": b"77"}
    assert [(q["method"], q["path"]) for q in rest(sf)] == [
        ("PATCH", DATA + "/sobjects/Contact/ExtId__c/hs-77")]
