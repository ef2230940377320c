"""test_salesforce_outbound.py -- Salesforce Outbound Messages in, as jobs.

nginx with the module (vantage_salesforce_outbound), vantage-worker and a
real Redis; the Salesforce emulator's outbound message sender
(tests/fakes/salesforce/outbound.py) POSTs its SOAP notifications() calls
to nginx, as a workflow rule does when records are written, and retries
until it is acknowledged.  What is asserted:

  - one job per notification in Redis ({vq}:job:<id>: the record as JSON,
    the notification Id as the idempotency key, X-Vantage-Source), and the
    exact Ack, only once the jobs are durable (a paused Redis holds the
    answer back);
  - the worker or Redis away: 503 with a SOAP fault, no Ack; the emulator
    retries, and once they are back the retry is acked and every
    notification is one job (a resent notification is not a second job);
  - another organization: 403; a body that is not XML, a DOCTYPE (XXE,
    entity expansion): 400 and nothing fetched; 101 notifications: 400;
  - nginx -t names the directive; the SessionId and the field values are
    never logged, by nginx or by the worker.
"""

import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import pytest

import vantage_harness as vh
import worker_harness as wh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402
from salesforce import outbound                         # noqa: E402
from salesforce.ids import IdFactory                    # noqa: E402

# the worker's Redis keeps its jobs across a restart (append-only file)
WORKER_REDIS = "redis"

JOB_TYPE = "salesforce.contact.changed"
TENANT = "acme"
PATH = "/sf/outbound"

ACK = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
       b'envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.'
       b'sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse>'
       b'</soapenv:Body></soapenv:Envelope>')


def fault(code, reason):
    return ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
            'soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>'
            'soapenv:%s</faultcode><faultstring>%s</faultstring>'
            '</soapenv:Fault></soapenv:Body></soapenv:Envelope>'
            % (code, reason)).encode()


UNAVAILABLE = fault("Server", "the job queue is not available; the message "
                    "is not acknowledged: the job queue is not available")

# what the failures below make nginx log on purpose
ALLOW_WORKER = r"\[error\] .*vantage (worker|salesforce outbound): "


# --------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def sf(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="fake-sf-", dir=base_dir))
    s = Salesforce(pki=pki, directory=d, streaming_timeout=1.0)
    yield s
    s.stop()
    assert s.internal_errors == []


@pytest.fixture
def workers(worker_factory):
    """A started worker whose socket nginx's workers (user nobody) open."""
    worker_factory.socket_mode = 0o777
    return worker_factory


def gateway(nginx_factory, w, org_id, params="", timeout="3s",
            log_level="info"):
    return nginx_factory(http="""
    vantage_worker unix:%s timeout=%s retry_after=2;
""" % (w.socket_path, timeout), server="""
        vantage_tenant %s;
        location = %s {
            vantage_salesforce_outbound %s org_id=%s %s;
        }
""" % (TENANT, PATH, JOB_TYPE, org_id, params), log_level=log_level)


def post(n, body, method="POST", headers=None):
    """(status, {lowercase header: value}, body) of one request to nginx."""
    c = http.client.HTTPConnection("127.0.0.1", n.http_port,
                                   timeout=vh.timeout(30))
    try:
        h = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        h.update(headers or {})
        c.request(method, PATH, body=body, headers=h)
        r = c.getresponse()
        return (r.status, {k.lower(): v for k, v in r.getheaders()},
                r.read())
    finally:
        c.close()


def envelope(org_id, notes, session_id=None, object_name="Contact"):
    """The emulator's own SOAP envelope: notes is [(notification id,
    {field: value})]."""
    return outbound.envelope(org_id, "04k000000000001AAA", session_id,
                             "https://x.example/services/Soap/c/68.0/org",
                             "https://x.example/services/Soap/u/68.0/org",
                             object_name, notes)


def contacts(ids, n, **extra):
    """n notifications of new Contact records: [(nid, fields)]."""
    out = []
    for i in range(n):
        fields = {"Id": ids.new("003"), "LastName": "Name%d" % i,
                  "Email": "person%d@example.com" % i}
        fields.update(extra)
        out.append((ids.new("04l"), fields))
    return out


def jobs(rc):
    """{idempotency key: job hash (str: str)} of every job in Redis, and
    asserts no key has two jobs."""
    out = {}
    for k in rc.keys("{vq}:job:*"):
        h = {a.decode(): b.decode() for a, b in rc.hgetall(k).items()}
        key = h.get("idempotency_key")
        assert key not in out, "two jobs for notification %s" % key
        out[key] = h
    return out


def expected_body(fields, object_name="Contact"):
    """The job body the module documents: the REST shape of the record,
    the fields in the order the message has them (Id first)."""
    body = {"attributes": {"type": object_name}}
    names = ["Id"] + sorted(k for k in fields if k != "Id")
    for k in names:
        if k in fields:
            v = fields[k]
            body[k] = None if v is None else \
                ("true" if v is True else "false" if v is False else str(v))
    return body


def assert_job(job, nid, fields, object_name="Contact"):
    assert job["type"] == JOB_TYPE
    assert job["tenant"] == TENANT
    assert job["idempotency_key"] == nid
    assert job["method"] == "POST" and job["uri"] == PATH
    assert json.loads(job["body"]) == expected_body(fields, object_name)
    # the keys are in document order, which is what makes a retry's body
    # byte for byte the first one's
    assert list(json.loads(job["body"])) == \
        list(expected_body(fields, object_name))
    assert json.loads(job["headers"]) == [
        ["Content-Type", "application/json"],
        ["X-Vantage-Source", "salesforce:" + fields["Id"]]]


def create_contact(sf, **fields):
    org = sf.org
    return org.create(org.type("Contact"), fields, sf.context())


# --------------------------------------------------------------------------
# the emulator's messages become jobs

def test_records_written_become_one_job_per_notification(
        sf, workers, nginx_factory, rc):
    w = workers()
    # debug: nothing of the message is logged even there
    n = gateway(nginx_factory, w, sf.org_id, log_level="debug")
    m = sf.outbound_message("Contact", ["Email", "LastName", "Phone"],
                            "http://127.0.0.1:%d%s" % (n.http_port, PATH),
                            rule=("CREATE",), retry_initial=0.1,
                            send_session_id=True)
    rids = [create_contact(sf, LastName="Curie", Email="mc@example.com",
                           Phone="+33 1 23 45 67 89"),
            create_contact(sf, LastName="Noether", Email="en@example.com"),
            create_contact(sf, LastName="O'Brien & <Sons>",
                           Email="ob@example.com")]
    assert m.wait_idle(vh.timeout(10))
    assert len(m.delivered()) == 3
    assert all(a["status"] == 200 and a["ack"] for a in m.attempts), \
        m.attempts
    for a in m.attempts:
        assert a["response"] == ACK

    got = jobs(rc)
    by_nid = {nt.id: nt for nt in m.queue}
    assert sorted(got) == sorted(by_nid)
    for nid, nt in by_nid.items():
        assert nt.record_id in rids
        assert_job(got[nid], nid, nt.fields)
    # Phone is nil for the records without one
    bodies = [json.loads(j["body"]) for j in got.values()]
    assert sorted(b["Phone"] or "" for b in bodies) == \
        ["", "", "+33 1 23 45 67 89"]
    assert {b["LastName"] for b in bodies} == \
        {"Curie", "Noether", "O'Brien & <Sons>"}

    # the session id is a live token; values are PII: neither is logged
    sessions = set()
    for a in m.attempts:
        root = ET.fromstring(a["body"])
        s = root.find(".//{%s}SessionId" % outbound.NS_OUT).text
        assert s
        sessions.add(s)
    logs = vh._read(n.error_log) + w.log_text()
    assert "acknowledged" in vh._read(n.error_log)
    for s in sessions:
        assert s not in logs
        assert s.split("!")[-1] not in logs
    for v in ("mc@example.com", "Curie", "Noether", "+33 1 23"):
        assert v not in logs


def test_the_exact_ack_and_one_job_per_notification_id(
        workers, nginx_factory, rc):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org[:15])   # a 15-character id matches
    notes = contacts(ids, 2, Title=None, HasOptedOutOfEmail=True,
                     Department="  R&D <EU>  ", Suffix=" ",
                     Description="line 1\nline 2 \u00e9\u4e2d")

    status, headers, body = post(n, envelope(org, notes))
    assert (status, body) == (200, ACK)
    assert headers["content-type"] == "text/xml; charset=utf-8"
    assert headers["x-correlation-id"]
    assert headers["cache-control"] == "no-store"
    got = jobs(rc)
    assert sorted(got) == sorted(nid for nid, _ in notes)
    for nid, fields in notes:
        assert_job(got[nid], nid, fields)
        b = json.loads(got[nid]["body"])
        assert b["Title"] is None and b["HasOptedOutOfEmail"] == "true"
        assert b["Department"] == "  R&D <EU>  " and b["Suffix"] == " "
    first = {nid: j["created_ms"] for nid, j in got.items()}

    # Salesforce resends the same notifications: the same jobs, acked
    status, _, body = post(n, envelope(org, notes),
                           headers={"X-Correlation-ID": "retry-1"})
    assert (status, body) == (200, ACK)
    # and with a new one beside them: one new job
    more = notes + contacts(ids, 1)
    status, _, body = post(n, envelope(org, list(reversed(more))))
    assert (status, body) == (200, ACK)
    got = jobs(rc)
    assert sorted(got) == sorted(nid for nid, _ in more)
    for nid, fields in notes:
        assert got[nid]["created_ms"] == first[nid]
        assert got[nid]["correlation_id"] != "retry-1"
    log = vh._read(n.error_log)
    assert "2 notifications of organization \"%s\" acknowledged: 2 new, " \
        "0 already queued" % org in log
    assert "2 notifications of organization \"%s\" acknowledged: 0 new, " \
        "2 already queued" % org in log
    assert "3 notifications of organization \"%s\" acknowledged: 1 new, " \
        "2 already queued" % org in log


def test_ack_waits_for_durability(workers, nginx_factory, rc, redis):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org, timeout="10s")
    notes = contacts(ids, 3)
    answer = []

    redis.pause()                 # the worker's MULTI/EXEC cannot finish
    try:
        t = threading.Thread(target=lambda: answer.append(
            post(n, envelope(org, notes))))
        t.start()
        time.sleep(1.0)
        assert answer == [] and t.is_alive()     # no Ack yet
    finally:
        redis.resume()
    t.join(vh.timeout(10))
    status, _, body = answer[0]
    assert (status, body) == (200, ACK)
    assert sorted(jobs(rc)) == sorted(nid for nid, _ in notes)


def test_the_emulator_hears_the_ack_only_once_the_jobs_are_durable(
        sf, workers, nginx_factory, rc, redis):
    w = workers()
    n = gateway(nginx_factory, w, sf.org_id, timeout="10s")
    m = sf.outbound_message("Contact", ["LastName"],
                            "http://127.0.0.1:%d%s" % (n.http_port, PATH),
                            rule=("CREATE",), retry_initial=0.1)
    redis.pause()
    try:
        create_contact(sf, LastName="Waiting")
        time.sleep(1.0)
        # the POST is out, and unanswered: the emulator has no outcome
        assert m.attempts == [] and len(m.pending()) == 1
    finally:
        redis.resume()
    assert m.wait_idle(vh.timeout(10))
    assert [(a["status"], a["ack"]) for a in m.attempts] == [(200, True)]
    assert sorted(jobs(rc)) == [m.queue[0].id]


def test_over_both_transports_with_a_body_in_pieces(
        workers, nginx_factory, client_for, rc):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)
    c = client_for(n)
    notes = contacts(ids, 60)
    body = envelope(org, notes)
    assert len(body) > 16384

    def pieces():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    # a refusal first: the connection is kept for the next message
    r = c.request("POST", PATH, content=b"<nope",
                  headers={"Content-Type": "text/xml"})
    assert (r.status, r.content) == (400, fault(
        "Client", "the body is not well-formed XML"))
    r = c.request("POST", PATH, content=pieces(),
                  headers={"Content-Type": "text/xml"})
    assert (r.status, r.content) == (200, ACK)
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    got = jobs(rc)
    assert sorted(got) == sorted(nid for nid, _ in notes)
    for nid, fields in notes:
        assert_job(got[nid], nid, fields)


@pytest.mark.log_allow(ALLOW_WORKER)
def test_worker_down_is_a_fault_then_the_retry_is_acked_once(
        sf, workers, nginx_factory, rc):
    w = workers()
    n = gateway(nginx_factory, w, sf.org_id)
    w.stop()

    ids = IdFactory()
    status, headers, body = post(n, envelope(sf.org_id, contacts(ids, 2)))
    assert (status, body) == (503, UNAVAILABLE)
    assert headers["retry-after"] == "2"
    assert headers["content-type"] == "text/xml; charset=utf-8"

    m = sf.outbound_message("Contact", ["Email", "LastName"],
                            "http://127.0.0.1:%d%s" % (n.http_port, PATH),
                            rule=("CREATE",), retry_initial=0.2,
                            retry_max=0.4)
    for i in range(3):
        create_contact(sf, LastName="Down%d" % i, Email="d%d@example.com" % i)
    vh.wait_for(lambda: len(m.attempts) >= 2, 10, what="two attempts")
    assert not any(a["ack"] for a in m.attempts)
    assert all(a["status"] == 503 and a["response"] == UNAVAILABLE
               for a in m.attempts)
    assert jobs(rc) == {}

    workers.start(w)
    assert m.wait_idle(vh.timeout(10))
    assert m.attempts[-1]["ack"]
    got = jobs(rc)
    assert sorted(got) == sorted(nt.id for nt in m.queue)
    for nt in m.queue:
        assert_job(got[nt.id], nt.id, nt.fields)


@pytest.mark.log_allow(ALLOW_WORKER)
def test_redis_down_is_a_fault_and_a_retry_makes_no_duplicate(
        sf, workers, nginx_factory, rc, redis):
    w = workers()
    n = gateway(nginx_factory, w, sf.org_id)
    m = sf.outbound_message("Contact", ["Email", "LastName"],
                            "http://127.0.0.1:%d%s" % (n.http_port, PATH),
                            rule=("CREATE",), retry_initial=0.2,
                            retry_max=0.4)
    create_contact(sf, LastName="Before", Email="b@example.com")
    assert m.wait_idle(vh.timeout(10))
    assert len(jobs(rc)) == 1

    redis.stop()
    for i in range(2):
        create_contact(sf, LastName="During%d" % i,
                       Email="r%d@example.com" % i)
    vh.wait_for(lambda: len(m.attempts) >= 3, 10, what="a refused attempt")
    refused = m.attempts[1:]
    assert refused and not any(a["ack"] for a in refused)
    assert all(a["status"] == 503 for a in refused)
    assert all(ET.fromstring(a["response"]).find(
        ".//faultcode").text == "soapenv:Server" for a in refused)

    redis.start()
    assert m.wait_idle(vh.timeout(15))
    assert m.attempts[-1]["ack"]
    got = jobs(rc)
    assert sorted(got) == sorted(nt.id for nt in m.queue)
    assert len(got) == 3


@pytest.mark.log_allow(ALLOW_WORKER)
def test_a_message_written_in_part_is_completed_by_the_retry(
        workers, nginx_factory, rc, target):
    # one notification is a job already; the in-flight cap refuses the two
    # others: no Ack; the retry writes those two only
    w = workers(wh.CONFIG_HEAD + "inflight_cap = 2\n\n[job %s]\n"
                "connector = http\nurl = %s\ntimeout = 5s\n"
                % (JOB_TYPE, target.url("/in")))
    ids = IdFactory()
    org = ids.new("00D")
    n = gateway(nginx_factory, w, org)
    notes = contacts(ids, 3)

    assert post(n, envelope(org, notes[:1]))[::2] == (200, ACK)
    first = jobs(rc)
    assert list(first) == [notes[0][0]]
    vh.wait_for(lambda: int(rc.get("{vq}:inflight") or 0) == 0, 10,
                interval=0.05, what="the first job to finish")

    rc.set("{vq}:inflight", 2)            # as if two jobs were running
    status, headers, body = post(n, envelope(org, notes))
    assert (status, body) == (503, fault(
        "Server", "the job queue is not available; the message is not "
        "acknowledged: too many jobs in flight"))
    assert headers["retry-after"] == "1"
    assert sorted(jobs(rc)) == [notes[0][0]]

    rc.set("{vq}:inflight", 0)
    status, _, body = post(n, envelope(org, notes))
    assert (status, body) == (200, ACK)
    got = jobs(rc)
    assert sorted(got) == sorted(nid for nid, _ in notes)
    assert got[notes[0][0]]["created_ms"] == first[notes[0][0]]["created_ms"]
    log = vh._read(n.error_log)
    assert "2 of 3 notifications of organization \"%s\" not durable " \
        "(0 refused, 2 unavailable)" % org in log
    assert "3 notifications of organization \"%s\" acknowledged: 2 new, " \
        "1 already queued" % org in log


@pytest.mark.log_allow(ALLOW_WORKER)
def test_a_notification_id_resent_with_other_fields_is_a_500_fault(
        workers, nginx_factory, rc):
    # the job under that key holds other data: not acknowledged, loudly
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)
    (nid, fields), = contacts(ids, 1)
    assert post(n, envelope(org, [(nid, fields)]))[::2] == (200, ACK)
    changed = dict(fields, LastName="Changed")
    status, _, body = post(n, envelope(org, [(nid, changed)]))
    assert (status, body) == (500, fault(
        "Server", "the job queue refused a notification: the idempotency "
        "key was used with another body"))
    got = jobs(rc)
    assert list(got) == [nid]
    assert json.loads(got[nid]["body"])["LastName"] == fields["LastName"]
    assert "1 of 1 notifications of organization \"%s\" not durable " \
        "(1 refused, 0 unavailable)" % org in vh._read(n.error_log)
    assert "Changed" not in vh._read(n.error_log)


# --------------------------------------------------------------------------
# refusals

def test_another_organization_is_403(sf, workers, nginx_factory, rc):
    ids = IdFactory(pod="ZZ")            # not the emulator's ids
    w = workers()
    other = ids.new("00D")
    n = gateway(nginx_factory, w, other)
    m = sf.outbound_message("Contact", ["LastName"],
                            "http://127.0.0.1:%d%s" % (n.http_port, PATH),
                            retry_initial=60)
    m.send([create_contact(sf, LastName="Spy")])
    vh.wait_for(lambda: m.attempts, 10, what="an attempt")
    a = m.attempts[0]
    want = fault("Client", "this endpoint takes messages of another "
                 "organization")
    assert (a["status"], a["response"], a["ack"]) == (403, want, False)

    # the 15-character prefix of another org's id is another org too
    status, headers, body = post(n, envelope(sf.org_id[:15],
                                             contacts(ids, 1)))
    assert (status, body) == (403, want)
    assert headers["content-type"] == "text/xml; charset=utf-8"
    assert jobs(rc) == {}
    log = vh._read(n.error_log)
    line = 'a message of organization "%s", not "%s", refused' \
        % (sf.org_id, other)
    assert [l for l in log.splitlines() if line in l and "[info]" in l]


@pytest.mark.parametrize("body, reason", [
    (b"", "the body is empty"),
    (b"<not xml", "the body is not well-formed XML"),
    (b"just text", "the body is not well-formed XML"),
    (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
     b'envelope/"><soapenv:Body><notifications/></soapenv:Body>'
     b'</soapenv:Envelope>',
     "the Body holds no notifications element of "
     "http://soap.sforce.com/2005/09/outbound"),
    (b'<Envelope><Body/></Envelope>', "not a SOAP 1.1 Envelope"),
])
def test_not_a_notifications_message_is_400(workers, nginx_factory, rc, body,
                                            reason):
    w = workers()
    n = gateway(nginx_factory, w, IdFactory().new("00D"))
    status, headers, got = post(n, body)
    assert (status, got) == (400, fault("Client", reason))
    assert headers["content-type"] == "text/xml; charset=utf-8"
    assert jobs(rc) == {}


class Sink:
    """A TCP listener that counts the connections it is offered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


def xxe(org_id, decl, ref):
    """A message of org_id whose first field refers to an entity."""
    env = envelope(org_id, [("04l000000000001AAA",
                             {"Id": "003000000000001AAA", "LastName": "X"})])
    env = env.replace(b'<?xml version="1.0" encoding="UTF-8"?>\n',
                      b'<?xml version="1.0" encoding="UTF-8"?>\n'
                      b'<!DOCTYPE soapenv:Envelope [\n' + decl + b'\n]>\n')
    return env.replace(b"<sf:LastName>X</sf:LastName>",
                       b"<sf:LastName>" + ref + b"</sf:LastName>")


def test_doctype_and_entities_are_refused_and_nothing_fetched(
        workers, nginx_factory, rc):
    org = IdFactory().new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)
    sink = Sink()
    want = fault("Client", "a DOCTYPE is not accepted")
    try:
        bodies = [
            xxe(org, b'<!ENTITY xxe SYSTEM "file:///etc/passwd">', b"&xxe;"),
            xxe(org, b'<!ENTITY xxe SYSTEM "http://127.0.0.1:%d/x">'
                % sink.port, b"&xxe;"),
            xxe(org, b'<!ENTITY %% dtd SYSTEM "http://127.0.0.1:%d/d"> %%dtd;'
                % sink.port, b"X"),
            xxe(org, b'<!ENTITY a "aaaaaaaaaa">' + b"".join(
                b'<!ENTITY %s "%s">' % (chr(98 + i).encode(),
                                        (b"&%s;" % chr(97 + i).encode()) * 10)
                for i in range(8)), b"&i;"),
            # an external DTD, without an internal subset
            envelope(org, contacts(IdFactory(), 1)).replace(
                b"?>\n", b'?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:%d/e">\n'
                % sink.port, 1),
        ]
        for body in bodies:
            status, headers, got = post(n, body)
            assert (status, got) == (400, want), body
            assert b"root:" not in got
        time.sleep(0.2)
        assert sink.accepted == 0
    finally:
        sink.close()
    assert jobs(rc) == {}
    assert "a message with a DOCTYPE refused" in vh._read(n.error_log)


def test_at_most_max_notifications(workers, nginx_factory, rc):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)

    status, _, body = post(n, envelope(org, contacts(ids, 101)))
    assert (status, body) == (400, fault("Client", "too many notifications "
                                         "in one message"))
    assert jobs(rc) == {}

    notes = contacts(ids, 100)
    status, _, body = post(n, envelope(org, notes))
    assert (status, body) == (200, ACK)
    assert sorted(jobs(rc)) == sorted(nid for nid, _ in notes)

    n2 = gateway(nginx_factory, w, org, params="max_notifications=2")
    status, _, body = post(n2, envelope(org, contacts(ids, 3)))
    assert status == 400 and b"too many notifications" in body
    assert len(jobs(rc)) == 100


def test_malformed_notifications_are_400(workers, nginx_factory, rc):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)
    good = envelope(org, contacts(ids, 1))
    want = fault("Client", "a Notification without a valid Id, or an "
                 "sObject without its xsi:type")
    for body in (good.replace(b'xsi:type="sf:Contact" ', b""),
                 good.replace(b"<Id>04l", b"<Id>04l!")):
        status, _, got = post(n, body)
        assert (status, got) == (400, want)
    nid, fields = contacts(ids, 1)[0]
    status, _, got = post(n, envelope(org, [(nid, fields), (nid, fields)]))
    assert (status, got) == (400, fault("Client",
                                        "a notification Id is repeated"))
    status, _, got = post(n, envelope(org, []))
    assert (status, got) == (400, fault("Client",
                                        "the message has no Notification"))
    assert jobs(rc) == {}


def test_only_post(workers, nginx_factory):
    w = workers()
    n = gateway(nginx_factory, w, IdFactory().new("00D"))
    status, headers, body = post(n, None, method="GET")
    assert (status, body) == (405, fault("Client",
                                         "notifications are sent with POST"))
    assert headers["allow"] == "POST"


def test_a_body_over_client_max_body_size_is_413(workers, nginx_factory, rc):
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = nginx_factory(http="""
    vantage_worker unix:%s;
""" % w.socket_path, server="""
        vantage_tenant acme;
        location = %s {
            client_max_body_size 2k;
            vantage_salesforce_outbound %s org_id=%s;
        }
""" % (PATH, JOB_TYPE, org))
    status, _, _ = post(n, envelope(org, contacts(ids, 20)))
    assert status == 413
    assert jobs(rc) == {}


@pytest.mark.log_allow(ALLOW_WORKER)
def test_mangled_messages_are_answered_not_crashed_on(workers, nginx_factory,
                                                      rc):
    # cut and mutated envelopes (seeded): every one is answered with an Ack
    # or a fault, and nginx stays up (under ASan with VANTAGE_MODULE)
    import random
    rnd = random.Random(20261129)
    ids = IdFactory()
    org = ids.new("00D")
    w = workers()
    n = gateway(nginx_factory, w, org)
    good = envelope(org, contacts(ids, 3, Title=None))
    bodies = [good[:k] for k in range(0, len(good), 37)]
    for _ in range(150):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(b))
            b[i] = rnd.choice(b'<>/&;:="\' \x00\xff\xc3azZ09!?')
        bodies.append(bytes(b))
    seen = set()
    for body in bodies:
        status, headers, got = post(n, body)
        assert status in (200, 400, 403, 500), (status, body, got)
        if status == 500:
            # a value mutated under an id already acked
            assert b"the idempotency key was used with another body" in got
        assert headers["content-type"] == "text/xml; charset=utf-8"
        assert (got == ACK) == (status == 200)
        seen.add(status)
    assert {200, 400} <= seen
    assert n.running()
    # whatever was acked is one job per notification id
    for key, job in jobs(rc).items():
        assert job["idempotency_key"] == key


# --------------------------------------------------------------------------
# nginx -t

ORG = "00D5g000004SbcdEAC"


@pytest.mark.parametrize("http, location, message", [
    ("vantage_worker unix:/tmp/w.sock;", "vantage_salesforce_outbound;",
     'invalid number of arguments in "vantage_salesforce_outbound"'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound org_id=%s;" % ORG,
     '"vantage_salesforce_outbound": the job type "org_id=%s"' % ORG),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact;",
     '"vantage_salesforce_outbound" needs org_id=<id>'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=001000000000001;",
     '"vantage_salesforce_outbound": "001000000000001" is not an '
     'organization id'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=00D5g000004Sbcd1;",
     '"00D5g000004Sbcd1" is not an organization id'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=%s "
     "max_notifications=101;" % ORG,
     '"vantage_salesforce_outbound": "max_notifications=101" must be from '
     '1 to 100'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=%s verbose;" % ORG,
     '"vantage_salesforce_outbound": invalid parameter "verbose"'),
    ("", "vantage_salesforce_outbound sf.contact org_id=%s;" % ORG,
     '"vantage_salesforce_outbound" needs "vantage_worker" in the http '
     'block'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=%s; "
     "vantage_dispatch x;" % ORG,
     '"vantage_salesforce_outbound" and "vantage_dispatch" cannot share a '
     'location'),
    ("vantage_worker unix:/tmp/w.sock;",
     "vantage_salesforce_outbound sf.contact org_id=%s; "
     "vantage_salesforce_outbound sf.contact org_id=%s;" % (ORG, ORG),
     '"vantage_salesforce_outbound" directive is duplicate'),
])
def test_config_errors(module_available, nginx_factory, http, location,
                       message):
    n = nginx_factory(http=http, server="""
        vantage_tenant acme;
        location = /sf { %s }
""" % location, start=False)
    rc, out = n.test_config()
    vh.assert_one_emerg(rc, out, message)


def test_config_needs_a_tenant(module_available, nginx_factory):
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock;", server="""
        location = /sf {
            vantage_salesforce_outbound sf.contact org_id=%s;
        }
""" % ORG, start=False)
    rc, out = n.test_config()
    assert rc == 1 and '"vantage_salesforce_outbound" needs ' \
        '"vantage_tenant"' in out, out


def test_config_accepts_15_and_18_character_ids(module_available,
                                                nginx_factory):
    n = nginx_factory(http="vantage_worker unix:/tmp/w.sock;", server="""
        vantage_tenant acme;
        location = /a { vantage_salesforce_outbound sf.a org_id=%s; }
        location = /b { vantage_salesforce_outbound sf.b org_id=%s
                                                   max_notifications=1; }
""" % (ORG, ORG[:15]), start=False)
    rc, out = n.test_config()
    assert rc == 0, out
