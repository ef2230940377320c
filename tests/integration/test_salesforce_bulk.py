"""test_salesforce_bulk.py -- the Bulk API connector (sf_bulk.c) end to end.

A real redis-server, the real worker with a [vault] and a [connection]
that signs in with the JWT bearer flow (its key sealed in the vault by
build/vantagectl), one [job] per bulk operation, and the Salesforce
emulator (tests/fakes/salesforce) in this process, whose org and request
log the tests read.  Jobs are handed over in frames (worker_harness);
the tests read the outcome in {vq}:job:<id>, the dead-lettered records in
{vq}:dead, the records in the emulator's org (docs/CONNECTORS.md, "Bulk
API 2.0", is the spec).
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import T_BODY, T_HEADER, T_JOB_ID, T_JOB_TYPE, T_TENANT

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402
from sf_extid_index import index_external_ids            # noqa: E402

CTL = os.path.join(vh.REPO, "build", "vantagectl")
API = "62.0"
DATA = "/services/data/v%s" % API
INGEST = DATA + "/jobs/ingest"
QUERY = DATA + "/jobs/query"
TOKEN = "/services/oauth2/token"
SECRET = "sf.acme.jwt-key"

JOBS = {
    "sf.bulk.insert": "operation = bulk_insert\nobject = Contact\n",
    "sf.bulk.update": "operation = bulk_update\nobject = Contact\n",
    "sf.bulk.upsert": "operation = bulk_upsert\nobject = Contact\n"
                      "external_id = ExtId__c\n",
    "sf.bulk.delete": "operation = bulk_delete\nobject = Contact\n",
    "sf.bulk.query": "operation = bulk_query\nobject = Contact\n",
    # HubSpot contacts into Salesforce, through conf/mappings/
    "sf.bulk.mapped": "operation = bulk_upsert\nobject = Contact\n"
                      "external_id = HubSpot_Contact_Id__c\nmapping = "
                      + os.path.join(vh.REPO, "conf", "mappings",
                                     "hubspot-contact-to-salesforce.json")
                      + "\n",
}


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki, api_version=API)
    # a rule an admin might write: a few rows of a load fail it
    s.add_validation_rule("Contact", "Title may not be Bogus", ["Title"],
                          lambda rec: rec.get("Title") == "Bogus")
    yield s
    s.stop()
    assert s.internal_errors == []


@pytest.fixture
def vault_key(base_dir):
    d = vh.make_dir(os.path.join(base_dir, "bulk-vault-%d" % os.getpid()))
    path = os.path.join(d, "vault.key")
    vh.write_file(path, os.urandom(32), mode=0o600)
    return path


def ctl(redis, *args, check=True):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VANTAGE_")}
    p = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=vh.timeout(20))
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


def conf_text(sf, key_file):
    text = wh.CONFIG_HEAD + (
        "visibility_timeout = 9s\nshutdown_timeout = 1s\n\n"
        "[vault]\nkey_file = %s\n\n"
        "[target sf]\nca_file = %s\nmax_concurrency = 8\n"
        "connect_timeout = 2s\n\n"
        "[connection acme-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
        "login_url = %s\nclient_id = %s\nusername = %s\n"
        "private_key = %s\napi_version = %s\nlimit_recheck = 3s\n"
        "target = sf\n\n"
        % (key_file, sf.ca_file, sf.login_url, sf.consumer_key,
           sf.username, SECRET, API))
    for name, body in JOBS.items():
        text += ("[job %s]\nconnector = salesforce\nconnection = acme-sf\n"
                 "%stimeout = 3s\nmax_attempts = 3\nbackoff_base = 100ms\n"
                 "backoff_cap = 300ms\n\n" % (name, body))
    return text


@pytest.fixture
def stack(sf, vault_key, worker_redis, worker_factory):
    """stack() -> a started Worker, the JWT key in the vault."""
    if not os.path.exists(CTL):
        pytest.skip("vantagectl not built: run make ctl")
    ctl(worker_redis, "vault", "put", SECRET, "--key-file", vault_key,
        "--from-file", sf.jwt_key_file)

    def start():
        return worker_factory(conf_text(sf, vault_key))

    return start


def dispatch(w, job_type, body, fid=1):
    fields = [(T_JOB_TYPE, job_type), (T_TENANT, "acme"),
              (T_BODY, json.dumps(body).encode()),
              (T_HEADER, b"Content-Type\0application/json")]
    r = w.client().dispatch(fid, fields)
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def job(rc, jid):
    return {k.decode(): v.decode()
            for k, v in rc.hgetall("{vq}:job:" + jid).items()}


def wait_state(rc, jid, state, seconds=30):
    vh.wait_for(lambda: job(rc, jid).get("state") in ("succeeded", "dead"),
                seconds, interval=0.05, what="job %s finished (now %r)"
                % (jid, job(rc, jid).get("state")))
    j = job(rc, jid)
    assert j["state"] == state, j
    return j


def result(j):
    r = json.loads(j["result"])
    r.pop("status")
    r.pop("ms")
    return r


def contacts(sf):
    t = sf.org.type("Contact")
    return sf.org.all(t)


def dead_jobs(rc, parent):
    """The dead jobs a bulk job left, by id."""
    out = {}
    for m in rc.zrange("{vq}:dead", 0, -1):
        jid = m.decode()
        j = job(rc, jid)
        if j.get("parent") == parent:
            out[jid] = j
    return out


def csv_rows(body):
    return list(csv.reader(io.StringIO(body.decode())))


def pages_to_redis(rc, key, records, size=100):
    pipe = rc.pipeline(transaction=False)
    for i in range(0, len(records), size):
        pipe.rpush(key, json.dumps(records[i:i + size]))
    pipe.execute()


# -- inline loads, one operation each ---------------------------------------

def test_insert_inline(stack, sf, rc):
    w = stack()
    recs = [{"LastName": "Lovelace", "Email": "ada@example.com"},
            {"LastName": "Hopper, Grace", "Title": 'Rear "Amazing" Admiral'},
            {"LastName": "Curie", "FirstName": "Marie", "Phone": None}]
    jid = dispatch(w, "sf.bulk.insert", {"records": recs})
    j = wait_state(rc, jid, "succeeded")
    res = result(j)
    assert res["bulk_job"].startswith("750")
    assert (res["processed"], res["succeeded"], res["failed"],
            res["unprocessed"]) == (3, 3, 0, 0)
    assert j["bulk_job"] == res["bulk_job"]

    rows = sorted(contacts(sf), key=lambda r: r["LastName"])
    assert [r["LastName"] for r in rows] == ["Curie", "Hopper, Grace",
                                              "Lovelace"]
    assert rows[1]["Title"] == 'Rear "Amazing" Admiral'
    assert rows[0]["FirstName"] == "Marie"

    create = sf.requests(INGEST, "POST")
    assert len(create) == 1
    assert json.loads(create[0]["body"]) == {
        "object": "Contact", "operation": "insert", "contentType": "CSV",
        "lineEnding": "LF"}
    put = sf.requests(INGEST, "PUT")
    assert len(put) == 1
    assert put[0]["path"] == "%s/%s/batches" % (INGEST, res["bulk_job"])
    assert put[0]["headers"]["content-type"] == "text/csv"
    assert put[0]["headers"].get("transfer-encoding") == "chunked"
    assert csv_rows(put[0]["body"]) == [
        ["LastName", "Email", "Title", "FirstName", "Phone"],
        ["Lovelace", "ada@example.com", "", "", ""],
        ["Hopper, Grace", "", 'Rear "Amazing" Admiral', "", ""],
        ["Curie", "", "", "Marie", "#N/A"]]
    close = sf.requests(INGEST, "PATCH")
    assert [json.loads(r["body"]) for r in close] == [
        {"state": "UploadComplete"}]
    assert sf.count(TOKEN) == 1
    assert dead_jobs(rc, jid) == {}


def test_update_inline(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    ids = [sf.org.create(t, {"LastName": "P%d" % i}, sf.context())
           for i in range(2)]
    jid = dispatch(w, "sf.bulk.update",
                   {"records": [{"Id": i, "Title": "Dr"} for i in ids]})
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 2
    assert sorted(r["Title"] for r in contacts(sf)) == ["Dr", "Dr"]
    create = sf.requests(INGEST, "POST")
    assert json.loads(create[0]["body"])["operation"] == "update"
    assert csv_rows(sf.requests(INGEST, "PUT")[0]["body"])[0] == \
        ["Id", "Title"]


def test_upsert_inline_with_a_failed_record(stack, sf, rc, worker_redis):
    w = stack()
    recs = [{"ExtId__c": "e1", "LastName": "One"},
            {"ExtId__c": "e2", "LastName": "Two", "Title": "Bogus"},
            {"ExtId__c": "e3", "LastName": "Three"}]
    jid = dispatch(w, "sf.bulk.upsert", {"records": recs})
    j = wait_state(rc, jid, "succeeded")
    res = result(j)
    assert (res["processed"], res["succeeded"], res["failed"]) == (3, 2, 1)
    assert sorted(r["ExtId__c"] for r in contacts(sf)) == ["e1", "e3"]
    body = json.loads(sf.requests(INGEST, "POST")[0]["body"])
    assert body["operation"] == "upsert"
    assert body["externalIdFieldName"] == "ExtId__c"
    dead = dead_jobs(rc, jid)
    assert len(dead) == 1
    (did, d), = dead.items()
    assert len(did) == 32 and did != jid
    assert json.loads(d["body"]) == {"records": [
        {"ExtId__c": "e2", "LastName": "Two", "Title": "Bogus"}]}
    assert d["last_error"] == \
        "bulk: FIELD_CUSTOM_VALIDATION_EXCEPTION [Title]"
    assert (d["type"], d["tenant"], d["state"], d["attempts"]) == \
        ("sf.bulk.upsert", "acme", "dead", "1")
    assert json.loads(d["headers"]) == [["Content-Type",
                                         "application/json"]]
    assert int(d["finished_ms"]) >= int(d["created_ms"]) > 0
    # never the value, which Salesforce's message may quote
    assert "Bogus" not in d["last_error"]

    # the record fixed at the vendor, the dead job replays alone
    sf.org.rules.clear()
    ctl(worker_redis, "dlq", "replay", did)
    wait_state(rc, did, "succeeded")
    assert sorted(r["ExtId__c"] for r in contacts(sf)) == ["e1", "e2", "e3"]
    assert len(sf.requests(INGEST, "POST")) == 2


def test_delete_inline(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    ids = [sf.org.create(t, {"LastName": "D%d" % i}, sf.context())
           for i in range(3)]
    jid = dispatch(w, "sf.bulk.delete",
                   {"records": [{"Id": ids[0], "LastName": "ignored"},
                                {"Id": ids[2]}]})
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 2
    assert [r["Id"] for r in contacts(sf)] == [ids[1]]
    assert csv_rows(sf.requests(INGEST, "PUT")[0]["body"]) == [
        ["Id"], [ids[0]], [ids[2]]]


def test_query_pages_by_locator(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    for i in range(25):
        sf.org.create(t, {"LastName": "Q%02d" % i}, sf.context())
    jid = dispatch(w, "sf.bulk.query",
                   {"soql": "SELECT Id, LastName FROM Contact",
                    "max_records": 10})
    j = wait_state(rc, jid, "succeeded")
    res = result(j)
    assert (res["total"], res["pages"]) == (25, 3)
    assert res["bulk_job"].startswith("750")
    pages = rc.lrange("{vq}:out:" + jid, 0, -1)
    assert len(pages) == 3
    names = []
    for p in pages:
        rows = csv_rows(p)
        assert rows[0] == ["Id", "LastName"]
        names += [r[1] for r in rows[1:]]
    assert sorted(names) == ["Q%02d" % i for i in range(25)]
    gets = sf.requests(QUERY + "/" + res["bulk_job"] + "/results", "GET")
    assert [r["query"].split("&")[-1] for r in gets] == \
        ["maxRecords=10"] * 3
    assert "locator=" not in gets[0]["query"]
    assert all("locator=" in r["query"] for r in gets[1:])


def test_query_resumes_after_a_crash(stack, sf, rc):
    w = stack()
    t = sf.org.type("Contact")
    for i in range(7):
        sf.org.create(t, {"LastName": "C%d" % i}, sf.context())
    sf.bulk.start_delay = 4.0
    jid = dispatch(w, "sf.bulk.query",
                   {"soql": "SELECT LastName FROM Contact", "max_records": 3})
    vh.wait_for(lambda: job(rc, jid).get("bulk_job"), 20, 0.02, "bulk_job")
    bulk = job(rc, jid)["bulk_job"]
    os.kill(w.pid, signal.SIGKILL)
    w.wait(5)
    stack()
    j = wait_state(rc, jid, "succeeded", seconds=60)
    assert result(j) == {"bulk_job": bulk, "total": 7, "pages": 3}
    assert len(sf.requests(QUERY, "POST")) == 1
    assert rc.llen("{vq}:out:" + jid) == 3


def test_query_refused_is_dead(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.bulk.query", {"soql": "SELEC nonsense"})
    j = wait_state(rc, jid, "dead")
    assert j["last_status"] == "400"
    assert j["last_error"].startswith("bulk: HTTP 400 MALFORMED_QUERY"), j
    assert "bulk_job" not in j
    assert rc.llen("{vq}:out:" + jid) == 0


def test_a_later_field_not_in_the_header_is_dead_lettered(stack, sf, rc):
    w = stack()
    key = "{vq}:in:header-test"
    rc.rpush(key, json.dumps([{"ExtId__c": "h1", "LastName": "A"}]))
    rc.rpush(key, json.dumps([{"ExtId__c": "h2", "LastName": "B",
                               "Phone": "555"},
                              {"ExtId__c": "h3", "LastName": "C"}]))
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    j = wait_state(rc, jid, "succeeded")
    res = result(j)
    assert (res["succeeded"], res["rejected"]) == (2, 1)
    assert sorted(r["ExtId__c"] for r in contacts(sf)) == ["h1", "h3"]
    dead = list(dead_jobs(rc, jid).values())
    assert len(dead) == 1
    assert json.loads(dead[0]["body"]) == {"records": [
        {"ExtId__c": "h2", "LastName": "B", "Phone": "555"}]}
    assert dead[0]["last_error"] == "bulk: field Phone is not in the " \
        "load's header (the first page's fields)"


# -- loads in parts ---------------------------------------------------------

def uploaded_rows(sf):
    """Every record row of every upload, in order, without headers."""
    rows = []
    for r in sf.requests(INGEST, "PUT"):
        assert r["body_size"] == len(r["body"])
        rows += csv_rows(r["body"])[1:]
    return rows


def test_a_load_in_several_ingest_jobs(stack, sf, rc):
    w = stack()
    key = "{vq}:in:parts"
    recs = [{"ExtId__c": "p%d" % i, "LastName": "P%d" % i,
             "Title": "Bogus" if i in (5, 555, 998) else "Eng"}
            for i in range(1000)]
    pages_to_redis(rc, key, recs)
    jid = dispatch(w, "sf.bulk.upsert", {"from": key, "part_bytes": 4096})
    j = wait_state(rc, jid, "succeeded", seconds=120)
    res = result(j)
    posts = sf.requests(INGEST, "POST")
    assert res["parts"] == len(posts) > 3
    assert (res["processed"], res["succeeded"], res["failed"]) == \
        (1000, 997, 3)
    puts = sf.requests(INGEST, "PUT")
    assert len(puts) == res["parts"]
    # each part at most part_bytes and one row more
    assert all(r["body_size"] < 4096 + 64 for r in puts)
    # every record sent once, in order, across the parts
    assert [r[0] for r in uploaded_rows(sf)] == ["p%d" % i
                                                  for i in range(1000)]
    # bulk_job names the last part
    assert res["bulk_job"] == j["bulk_job"] == puts[-1]["path"].split("/")[-2]
    assert len(contacts(sf)) == 997
    dead = dead_jobs(rc, jid)
    assert sorted(json.loads(d["body"])["records"][0]["ExtId__c"]
                  for d in dead.values()) == ["p5", "p555", "p998"]


def test_inline_records_in_parts(stack, sf, rc):
    w = stack()
    recs = [{"LastName": "Inline-record-%03d" % i} for i in range(120)]
    jid = dispatch(w, "sf.bulk.insert", {"records": recs,
                                         "part_bytes": 1024})
    j = wait_state(rc, jid, "succeeded", seconds=60)
    res = result(j)
    assert res["parts"] == len(sf.requests(INGEST, "POST")) > 1
    assert res["succeeded"] == 120
    names = ["Inline-record-%03d" % i for i in range(120)]
    assert [r[0] for r in uploaded_rows(sf)] == names
    assert sorted(r["LastName"] for r in contacts(sf)) == names


def test_kill_between_parts_resumes_the_part(stack, sf, rc):
    w = stack()
    sf.bulk.start_delay = 2.0
    key = "{vq}:in:parts-crash"
    recs = [{"ExtId__c": "q%d" % i, "LastName": "Q%d" % i}
            for i in range(400)]
    pages_to_redis(rc, key, recs, size=50)
    jid = dispatch(w, "sf.bulk.upsert", {"from": key, "part_bytes": 2048})
    # the second part closed: killed while Salesforce works on it
    vh.wait_for(lambda: len(sf.requests(INGEST, "PATCH")) >= 2, 30, 0.02,
                "two parts")
    second = job(rc, jid)["bulk_job"]
    os.kill(w.pid, signal.SIGKILL)
    w.wait(5)
    assert len(sf.requests(INGEST, "POST")) == 2
    w2 = stack()
    j = wait_state(rc, jid, "succeeded", seconds=90)
    res = result(j)
    posts = sf.requests(INGEST, "POST")
    assert res["parts"] == len(posts) > 2
    assert res["processed"] == res["succeeded"] == 400
    # the second part was polled again, not uploaded again
    assert sum(1 for r in sf.requests(INGEST, "PUT")
               if r["path"].split("/")[-2] == second) == 1
    assert [r[0] for r in uploaded_rows(sf)] == ["q%d" % i
                                                  for i in range(400)]
    assert len(contacts(sf)) == 400
    assert any(x.get("msg") == "bulk job resumed" for x in w2.log_lines())


# -- the large load ---------------------------------------------------------

def big_load(n=50000, bad_last=(17, 10042, 27777, 49999),
             bad_title=(4242, 31313, 45000)):
    recs = []
    for i in range(n):
        r = {"ExtId__c": "x%d" % i, "FirstName": "F%d" % i,
             "LastName": "L%d" % i, "Email": "u%d@example.com" % i,
             "Title": "Engineer"}
        if i in bad_last:
            r["LastName"] = ""
        if i in bad_title:
            r["Title"] = "Bogus"
        recs.append(r)
    return recs


def test_upsert_50000_from_a_list_of_pages(stack, sf, rc):
    # the emulator's upsert scans every record: an index, same answers
    index_external_ids(sf)
    w = stack()
    key = "{vq}:in:contacts-50k"
    recs = big_load()
    pages_to_redis(rc, key, recs)
    assert rc.llen(key) == 500
    t0 = time.monotonic()
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    j = wait_state(rc, jid, "succeeded", seconds=240)
    took = time.monotonic() - t0
    res = result(j)
    assert res == {"bulk_job": j["bulk_job"], "state": "JobComplete",
                   "processed": 50000, "succeeded": 49993, "failed": 7,
                   "unprocessed": 0, "rejected": 0, "parts": 1}
    # the org holds the good records, once each
    rows = contacts(sf)
    assert len(rows) == 49993
    assert len({r["ExtId__c"] for r in rows}) == 49993
    # one ingest job, one upload, every record in it
    assert len(sf.requests(INGEST, "POST")) == 1
    put = sf.requests(INGEST, "PUT")
    assert len(put) == 1
    assert put[0]["headers"].get("transfer-encoding") == "chunked"
    # exactly the seven refused records, each a dead job of its own
    dead = dead_jobs(rc, jid)
    assert len(dead) == 7
    want = {}
    for i in (17, 10042, 27777, 49999):
        r = {k: v for k, v in recs[i].items() if v != ""}
        want["x%d" % i] = (r, "bulk: REQUIRED_FIELD_MISSING [LastName]")
    for i in (4242, 31313, 45000):
        want["x%d" % i] = (recs[i],
                           "bulk: FIELD_CUSTOM_VALIDATION_EXCEPTION [Title]")
    got = {}
    for d in dead.values():
        body = json.loads(d["body"])
        assert len(body["records"]) == 1
        rec = body["records"][0]
        got[rec["ExtId__c"]] = (rec, d["last_error"])
        assert (d["state"], d["type"], d["tenant"]) == \
            ("dead", "sf.bulk.upsert", "acme")
    assert got == want
    assert rc.zcard("{vq}:dead") == 7
    print("\n50,000 records in %.1f s" % took)


def vmhwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def test_peak_rss_does_not_grow_with_the_load(stack, sf, rc):
    """A fresh worker per load: its peak RSS after 50,000 records is at
    most 10 MiB above its peak after 5,000 (docs/CONNECTORS.md: a load is
    streamed, never held whole)."""
    index_external_ids(sf)
    peaks = {}
    for n in (5000, 50000):
        w = stack()
        with open("/proc/%d/maps" % w.pid) as f:
            if "libasan" in f.read():
                # ASan's quarantine keeps freed memory: RSS means nothing
                pytest.skip("the worker is an AddressSanitizer build")
        key = "{vq}:in:rss-%d" % n
        pages_to_redis(rc, key, [{"ExtId__c": "r%d-%d" % (n, i),
                                  "LastName": "L%d" % i,
                                  "Email": "u%d@example.com" % i}
                                 for i in range(n)])
        jid = dispatch(w, "sf.bulk.upsert", {"from": key})
        j = wait_state(rc, jid, "succeeded", seconds=240)
        assert result(j)["succeeded"] == n
        peaks[n] = vmhwm_kib(w.pid)
        w.stop()
    assert peaks[50000] - peaks[5000] <= 10 * 1024, peaks
    assert len(contacts(sf)) == 55000


def test_50000_failed_records_within_memory(stack, sf, rc):
    """Every row refused: 50,000 dead jobs, written while the results are
    read, the transfer waiting for Redis rather than the commands piling
    up in the worker (peak RSS as in test_peak_rss_...)."""
    index_external_ids(sf)
    peaks = {}
    for n in (5000, 50000):
        w = stack()
        key = "{vq}:in:fail-%d" % n
        pages_to_redis(rc, key, [{"ExtId__c": "z%d-%d" % (n, i),
                                  "LastName": "L%d" % i, "Title": "Bogus"}
                                 for i in range(n)])
        jid = dispatch(w, "sf.bulk.upsert", {"from": key})
        j = wait_state(rc, jid, "succeeded", seconds=240)
        res = result(j)
        assert (res["succeeded"], res["failed"]) == (0, n)
        assert len(dead_jobs(rc, jid)) == n
        with open("/proc/%d/maps" % w.pid) as f:
            asan = "libasan" in f.read()
        peaks[n] = vmhwm_kib(w.pid)
        w.stop()
    assert rc.zcard("{vq}:dead") == 55000
    assert contacts(sf) == []
    if not asan:
        assert peaks[50000] - peaks[5000] <= 10 * 1024, peaks


def test_thousands_rejected_during_the_upload(stack, sf, rc):
    """Records the worker cannot send (a field outside the header) are
    dead-lettered as the upload goes, which waits for Redis when they
    come faster than it takes them."""
    w = stack()
    key = "{vq}:in:rejects"
    recs = [{"ExtId__c": "j%d" % i, "LastName": "J%d" % i}
            for i in range(100)]
    recs += [{"ExtId__c": "j%d" % i, "LastName": "J%d" % i, "Phone": "1"}
             if i % 5 else {"ExtId__c": "j%d" % i, "LastName": "J%d" % i}
             for i in range(100, 5100)]
    pages_to_redis(rc, key, recs)
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    j = wait_state(rc, jid, "succeeded", seconds=60)
    res = result(j)
    assert (res["succeeded"], res["rejected"]) == (1100, 4000)
    dead = dead_jobs(rc, jid)
    assert len(dead) == 4000
    assert {json.loads(d["body"])["records"][0]["ExtId__c"]
            for d in dead.values()} == \
        {"j%d" % i for i in range(100, 5100) if i % 5}
    assert len(contacts(sf)) == 1100


# -- crashes, tokens, failures ----------------------------------------------

def test_shutdown_mid_poll_then_resume(stack, sf, rc):
    """The engine cancels the attempt at shutdown: nothing is written
    after, and the next worker polls the same ingest job."""
    w = stack()
    sf.bulk.start_delay = 3.0
    jid = dispatch(w, "sf.bulk.insert",
                   {"records": [{"LastName": "S%d" % i} for i in range(4)]})
    vh.wait_for(lambda: sf.requests(INGEST, "PATCH"), 20, 0.02,
                "UploadComplete")
    bulk = job(rc, jid)["bulk_job"]
    w.stop()
    assert job(rc, jid)["state"] == "queued"
    w2 = stack()
    j = wait_state(rc, jid, "succeeded", seconds=60)
    assert result(j)["bulk_job"] == bulk
    assert len(sf.requests(INGEST, "POST")) == 1
    assert len(contacts(sf)) == 4
    assert any(x.get("msg") == "bulk job resumed" for x in w2.log_lines())


def test_kill_after_upload_resumes_the_same_bulk_job(stack, sf, rc,
                                                     worker_factory):
    w = stack()
    sf.bulk.start_delay = 4.0           # InProgress while the worker dies
    key = "{vq}:in:crash"
    recs = [{"ExtId__c": "k%d" % i, "LastName": "K%d" % i}
            for i in range(300)]
    pages_to_redis(rc, key, recs)
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    vh.wait_for(lambda: sf.requests(INGEST, "PATCH"), 20, 0.02,
                "UploadComplete")
    bulk = job(rc, jid)["bulk_job"]
    os.kill(w.pid, signal.SIGKILL)
    w.wait(5)

    w2 = stack()
    j = wait_state(rc, jid, "succeeded", seconds=60)
    res = result(j)
    assert res["bulk_job"] == bulk
    assert res["succeeded"] == 300
    assert len(sf.requests(INGEST, "POST")) == 1
    assert len(sf.requests(INGEST, "PUT")) == 1
    rows = contacts(sf)
    assert len(rows) == 300
    assert any(x.get("msg") == "bulk job resumed" for x in w2.log_lines())
    # the dead worker's entry, reclaimed, is the same attempt
    assert j["attempts"] == "1"


def test_kill_during_upload_aborts_the_open_job(stack, sf, rc):
    w = stack()
    sf.delay(3.0, path=INGEST + "/")    # the upload (and polls) wait
    key = "{vq}:in:crash-open"
    recs = [{"ExtId__c": "o%d" % i, "LastName": "O%d" % i}
            for i in range(50)]
    pages_to_redis(rc, key, recs, size=10)
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    vh.wait_for(lambda: job(rc, jid).get("bulk_job"), 20, 0.02, "bulk_job")
    first = job(rc, jid)["bulk_job"]
    time.sleep(0.5)
    os.kill(w.pid, signal.SIGKILL)
    w.wait(5)
    sf.delay(0, path=INGEST + "/")

    stack()
    j = wait_state(rc, jid, "succeeded", seconds=60)
    res = result(j)
    assert res["bulk_job"] != first and res["succeeded"] == 50
    assert sf.bulk.job(first).state == "Aborted"
    assert len(sf.requests(INGEST, "POST")) == 2
    assert len(contacts(sf)) == 50


def test_a_401_on_the_upload_sends_the_load_again(stack, sf, rc):
    w = stack()
    key = "{vq}:in:upload-401"
    recs = [{"ExtId__c": "u%d" % i, "LastName": "U%d" % i}
            for i in range(250)]
    pages_to_redis(rc, key, recs)
    # the emulator reads the whole body, then refuses it
    sf.fail_next(1, 401, "INVALID_SESSION_ID", "Session expired or invalid",
                 path=INGEST + "/")
    jid = dispatch(w, "sf.bulk.upsert", {"from": key})
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 250
    puts = sf.requests(INGEST, "PUT")
    assert [r["status"] for r in puts] == [401, 201]
    # the second upload is the whole load, from its first page
    assert puts[0]["body"] == puts[1]["body"]
    assert len(csv_rows(puts[1]["body"])) == 251
    assert sf.count(TOKEN) == 2
    assert len(sf.requests(INGEST, "POST")) == 1
    assert len(contacts(sf)) == 250


def test_a_5xx_mid_poll_retries_and_resumes_the_same_job(stack, sf, rc,
                                                        worker_redis):
    w = stack()
    sf.bulk.start_delay = 1.5
    jid = dispatch(w, "sf.bulk.insert",
                   {"records": [{"LastName": "R%d" % i} for i in range(6)]})
    vh.wait_for(lambda: sf.requests(INGEST, "PATCH"), 20, 0.02,
                "UploadComplete")
    bulk = job(rc, jid)["bulk_job"]
    sf.fail_next(1, 503, path="%s/%s" % (INGEST, bulk))
    j = wait_state(rc, jid, "succeeded")
    assert j["attempts"] == "2"
    assert result(j)["bulk_job"] == bulk
    assert len(sf.requests(INGEST, "POST")) == 1
    assert len(sf.requests(INGEST, "PUT")) == 1
    assert len(contacts(sf)) == 6
    atts = [json.loads(a) for a in rc.lrange("{vq}:att:" + jid, 0, -1)]
    assert [a["outcome"] for a in atts] == ["retry", "success"]
    assert atts[0]["error"].startswith("bulk: HTTP 503")


def test_dead_jobs_are_listed_by_vantagectl(stack, sf, rc, worker_redis):
    w = stack()
    recs = [{"LastName": "Ok"}, {"FirstName": "NoLast"},
            {"LastName": "B", "Title": "Bogus"}]
    jid = dispatch(w, "sf.bulk.insert", {"records": recs})
    wait_state(rc, jid, "succeeded")
    out = ctl(worker_redis, "--json", "dlq", "list").stdout.decode()
    listed = json.loads(out)
    ids = sorted(dead_jobs(rc, jid))
    rows = listed["dead"]
    assert listed["count"] == 2
    assert sorted(r["id"] for r in rows) == ids
    assert {(r["type"], r["tenant"], r["state"], r["attempts"])
            for r in rows} == {("sf.bulk.insert", "acme", "dead", 1)}
    assert sorted(r["last_error"] for r in rows) == [
        "bulk: FIELD_CUSTOM_VALIDATION_EXCEPTION [Title]",
        "bulk: REQUIRED_FIELD_MISSING [LastName]"]


def test_daily_allowance_holds_bulk_jobs_back(stack, sf, rc):
    """admit() is the Salesforce connector's: the readings the Bulk
    connector keeps in {vq}:limits:<connection> hold new bulk jobs back
    (another worker's reading, as docs/CONNECTORS.md "Vendor limits")."""
    with open(wh.WORKER, "rb") as f:
        if b"daily API allowance nearly spent: deferring" not in f.read():
            pytest.skip("a worker built without the Salesforce connector: "
                        "admit() lets every bulk job run")
    w = stack()
    sf.set_limit(used=95000)
    first = dispatch(w, "sf.bulk.insert", {"records": [{"LastName": "P"}]})
    wait_state(rc, first, "succeeded")
    lim = {k.decode(): int(v)
           for k, v in rc.hgetall("{vq}:limits:acme-sf").items()}
    assert lim["used"] > 95000 and lim["max"] == 100000
    # the reading reaches the admitting connector from Redis within 1 s
    held = None
    for i in range(4):
        time.sleep(1.1)
        jid = dispatch(w, "sf.bulk.insert",
                       {"records": [{"LastName": "H%d" % i}]}, fid=2 + i)
        time.sleep(0.3)
        j = job(rc, jid)
        if j.get("held", "").startswith("daily API allowance nearly spent"):
            held = jid
            break
        wait_state(rc, jid, "succeeded")
    assert held is not None
    assert int(job(rc, held).get("attempts") or 0) == 0
    assert any(o["msg"] == "daily API allowance nearly spent: deferring"
               for o in w.log_lines())
    sf.set_limit(used=10)
    wait_state(rc, held, "succeeded", seconds=30)


def test_token_expiry_mid_poll(stack, sf, rc):
    w = stack()
    sf.bulk.start_delay = 2.5
    jid = dispatch(w, "sf.bulk.insert",
                   {"records": [{"LastName": "T%d" % i} for i in range(5)]})
    vh.wait_for(lambda: sf.requests(INGEST, "PATCH"), 20, 0.02,
                "UploadComplete")
    sf.expire_tokens()
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 5
    assert sf.count(TOKEN) == 2
    polls = [r for r in sf.requests(INGEST, "GET")
             if r["path"].endswith(job(rc, jid)["bulk_job"])]
    assert [r["status"] for r in polls].count(401) == 1
    assert polls[-1]["status"] == 200
    assert len(contacts(sf)) == 5


def test_a_failed_job_dead_letters_what_it_did_not_write(stack, sf, rc):
    w = stack()
    sf.bulk.fail_after = 30
    recs = [{"ExtId__c": "f%d" % i, "LastName": "F%d" % i}
            for i in range(100)]
    jid = dispatch(w, "sf.bulk.upsert", {"records": recs})
    j = wait_state(rc, jid, "dead")
    assert j["last_error"].startswith("bulk: ingest job Failed "
                                      "(InternalServerError) after 30 "
                                      "records: 0 failed and 70 "
                                      "unprocessed records dead-lettered")
    assert j["bulk_job"].startswith("750")
    assert len(contacts(sf)) == 30
    dead = dead_jobs(rc, jid)
    assert len(dead) == 70
    got = sorted(json.loads(d["body"])["records"][0]["ExtId__c"]
                 for d in dead.values())
    assert got == sorted("f%d" % i for i in range(30, 100))
    assert {d["last_error"] for d in dead.values()} == {
        "bulk: unprocessed: the ingest job Failed (InternalServerError)"}
    # one attempt: a retry would write the first 30 again
    assert j["attempts"] == "1"
    # the results' records stay out of the attempt's history
    att = json.loads(rc.lrange("{vq}:att:" + jid, 0, -1)[0])
    assert "F45" not in att["body"] and "f45" not in att["body"]
    assert len(sf.requests(INGEST, "POST")) == 1


def test_a_job_failed_before_any_record_is_dead_whole(stack, sf, rc):
    w = stack()
    jid = dispatch(w, "sf.bulk.insert",
                   {"records": [{"LastName": "A", "Nope__c": "x"}]})
    j = wait_state(rc, jid, "dead")
    assert j["last_error"] == "bulk: ingest job Failed: InvalidBatch"
    assert "bulk_job" not in j          # a replay sends the load anew
    assert dead_jobs(rc, jid) == {}
    assert contacts(sf) == []



def test_a_mapping_maps_inline_records_and_each_page(stack, sf, rc):
    """The job's mapping (HubSpot contacts into Salesforce, conf/mappings/):
    the engine maps {"records": [...]} record by record; a {"from": <list>}
    load is mapped page by page as sf_bulk.c streams it.  Either way
    Salesforce receives Salesforce fields, keyed by the HubSpot id the
    mapping writes."""
    t = sf.org.type("Contact")
    sf.org.add_type(type(t)(
        "Contact", "003", required=["LastName"], external_ids=["ExtId__c"],
        unique_external_ids=["HubSpot_Contact_Id__c"],
        email_fields=["Email"], name_fields=("FirstName", "LastName"),
        fields=sorted(t.fields | {"MobilePhone", "Sync_Source__c"})))
    w = stack()

    def hs(i):
        return {"id": str(900 + i), "properties": {
            "email": "Map.%d@Example.com" % i, "firstname": "M%d" % i,
            "lastname": "Mapped", "phone": "(212) 555-01%02d" % i}}

    jid = dispatch(w, "sf.bulk.mapped", {"records": [hs(1), hs(2)]})
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 2, j

    pages_to_redis(rc, "hs:pages", [hs(i) for i in range(3, 9)], size=3)
    jid = dispatch(w, "sf.bulk.mapped", {"from": "hs:pages"}, fid=2)
    j = wait_state(rc, jid, "succeeded")
    assert result(j)["succeeded"] == 6, j

    rows = {r["HubSpot_Contact_Id__c"]: r for r in contacts(sf)}
    assert sorted(rows) == [str(900 + i) for i in range(1, 9)]
    for i in range(1, 9):
        r = rows[str(900 + i)]
        assert (r["Email"], r["FirstName"], r["LastName"], r["Phone"],
                r["Sync_Source__c"]) == (
            "map.%d@example.com" % i, "M%d" % i, "Mapped",
            "+121255501%02d" % i, "hubspot")
    # the CSVs carried Salesforce's fields, not HubSpot's
    for put in sf.requests(INGEST, "PUT"):
        header = csv_rows(put["body"])[0]
        assert "Email" in header and "properties" not in header, header
