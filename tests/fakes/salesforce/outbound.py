"""outbound.py -- workflow Outbound Messages: SOAP notifications() calls.

An OutboundMessage is what an admin defines: an object, the fields to
send, an endpoint URL, whether to send a session id, and the user the
message is sent as.  send() queues notifications (one per record, each
with its own 04l... notification id); a sender thread POSTs them to the
endpoint in SOAP envelopes of at most 100 Notification elements each
(namespace http://soap.sforce.com/2005/09/outbound, sObject fields in
urn:sobject.enterprise.soap.sforce.com) and counts a message delivered
only when the answer is HTTP 200 with a notificationsResponse whose Ack is
true.  Anything else -- another status, no Ack, Ack false, a timeout, a
refused connection -- is retried, with the delay doubling from
retry_initial up to retry_max (Salesforce: up to 2 hours), until the
notification is max_age old (Salesforce: 24 hours).  Every attempt is
recorded in attempts: what was sent and what came back.

add_rule() ties a message to writes, as a workflow rule does: every
create (and update, when asked) of the object through any API queues one.
"""

import http.client
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape


NS_OUT = "http://soap.sforce.com/2005/09/outbound"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SF = "urn:sobject.enterprise.soap.sforce.com"
MAX_NOTIFICATIONS = 100


def _xml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return escape(str(v))


def envelope(org_id, action_id, session_id, enterprise_url, partner_url,
             object_name, notifications):
    """The SOAP request Salesforce sends: notifications is [(notification
    id, {field: value})]; a None value is sent as xsi:nil."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n'
           '<soapenv:Envelope xmlns:soapenv="%s" '
           'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
           ' <soapenv:Body>\n'
           '  <notifications xmlns="%s">\n' % (NS_SOAP, NS_OUT),
           '   <OrganizationId>%s</OrganizationId>\n' % org_id,
           '   <ActionId>%s</ActionId>\n' % action_id]
    if session_id is None:
        out.append('   <SessionId xsi:nil="true"/>\n')
    else:
        out.append('   <SessionId>%s</SessionId>\n' % escape(session_id))
    out.append('   <EnterpriseUrl>%s</EnterpriseUrl>\n'
               '   <PartnerUrl>%s</PartnerUrl>\n'
               % (escape(enterprise_url), escape(partner_url)))
    for nid, fields in notifications:
        out.append('   <Notification>\n    <Id>%s</Id>\n'
                   '    <sObject xsi:type="sf:%s" xmlns:sf="%s">\n'
                   % (nid, object_name, NS_SF))
        names = ["Id"] + sorted(k for k in fields if k != "Id")
        for k in names:
            if k not in fields:
                continue
            v = fields[k]
            if v is None:
                out.append('     <sf:%s xsi:nil="true"/>\n' % k)
            else:
                out.append('     <sf:%s>%s</sf:%s>\n'
                           % (k, _xml_value(v), k))
        out.append('    </sObject>\n   </Notification>\n')
    out.append('  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n')
    return "".join(out).encode()


def acked(status, body):
    """True when the listener acknowledged: HTTP 200 and a
    notificationsResponse with Ack true."""
    if status != 200:
        return False
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return False
    for el in root.iter("{%s}notificationsResponse" % NS_OUT):
        for ack in el.iter("{%s}Ack" % NS_OUT):
            return (ack.text or "").strip().lower() in ("true", "1")
    return False


class Notification:
    def __init__(self, nid, record_id, fields):
        self.id = nid
        self.record_id = record_id
        self.fields = fields
        self.created = time.time()
        self.attempts = 0
        self.next_try = self.created
        self.state = "queued"           # queued, delivered, dropped


class OutboundMessage:
    """One outbound message definition and its delivery queue."""

    def __init__(self, sf, object_name, fields, endpoint_url,
                 send_session_id=False, username=None, ca_file=None,
                 retry_initial=15.0, retry_max=7200.0, max_age=86400.0,
                 timeout=60.0):
        self.sf = sf
        self.object = sf.org.type(object_name).name
        self.fields = list(fields)
        self.endpoint_url = endpoint_url
        self.send_session_id = send_session_id
        self.username = username
        self.ca_file = ca_file
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_age = max_age
        self.timeout = timeout
        self.action_id = sf.ids.new("04k")
        self.queue = []
        self.attempts = []
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- queueing ----------------------------------------------------------

    def send(self, record_ids):
        """Queues one notification per record (its current field values);
        returns the notification ids."""
        t = self.sf.org.type(self.object)
        out = []
        with self.cond:
            for rid in record_ids:
                rec = self.sf.org.get(t, rid)
                if rec is None:
                    continue
                view = self.sf.org.view(t, rec)
                fields = {"Id": view["Id"]}
                for f in self.fields:
                    fields[f] = view.get(f)
                n = Notification(self.sf.ids.new("04l"), view["Id"], fields)
                self.queue.append(n)
                out.append(n.id)
            self.cond.notify_all()
        return out

    def pending(self):
        with self.cond:
            return [n for n in self.queue if n.state == "queued"]

    def delivered(self):
        with self.cond:
            return [n for n in self.queue if n.state == "delivered"]

    def wait_idle(self, seconds):
        """True once nothing is queued (all delivered or dropped)."""
        deadline = time.time() + seconds
        with self.cond:
            while any(n.state == "queued" for n in self.queue):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
        return True

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join(timeout=5)

    # -- delivery ----------------------------------------------------------

    def _due(self):
        now = time.time()
        due = []
        for n in self.queue:
            if n.state != "queued":
                continue
            if now - n.created > self.max_age:
                n.state = "dropped"
                continue
            if n.next_try <= now:
                due.append(n)
        return due[:MAX_NOTIFICATIONS]

    def _run(self):
        while True:
            with self.cond:
                while not self.stopped:
                    due = self._due()
                    if due:
                        break
                    nexts = [n.next_try for n in self.queue
                             if n.state == "queued"]
                    wait = min(nexts) - time.time() if nexts else 1.0
                    self.cond.wait(max(min(wait, 1.0), 0.005))
                if self.stopped:
                    return
            self._deliver(due)

    def _session_id(self):
        if not self.send_session_id:
            return None
        return self.sf.auth.issue(self.username)

    def _deliver(self, batch):
        base = self.sf.instance_url
        org15 = self.sf.org_id[:15]
        body = envelope(
            self.sf.org_id, self.action_id, self._session_id(),
            "%s/services/Soap/c/%s/%s" % (base, self.sf.api_version, org15),
            "%s/services/Soap/u/%s/%s" % (base, self.sf.api_version, org15),
            self.object, [(n.id, n.fields) for n in batch])
        rec = {"time": time.time(), "notification_ids": [n.id for n in batch],
               "record_ids": [n.record_id for n in batch], "body": body,
               "status": None, "response": b"", "error": None, "ack": False}
        try:
            rec["status"], rec["response"] = self._post(body)
            rec["ack"] = acked(rec["status"], rec["response"])
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        with self.cond:
            self.attempts.append(rec)
            now = time.time()
            for n in batch:
                n.attempts += 1
                if rec["ack"]:
                    n.state = "delivered"
                else:
                    delay = min(self.retry_initial * 2 ** (n.attempts - 1),
                                self.retry_max)
                    n.next_try = now + delay
            self.cond.notify_all()

    def _post(self, body):
        u = urllib.parse.urlsplit(self.endpoint_url)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca_file)
            c = http.client.HTTPSConnection(u.hostname, u.port or 443,
                                            context=ctx,
                                            timeout=self.timeout)
        else:
            c = http.client.HTTPConnection(u.hostname, u.port or 80,
                                           timeout=self.timeout)
        try:
            path = u.path or "/"
            if u.query:
                path += "?" + u.query
            c.request("POST", path, body=body, headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '""',
                "User-Agent": "Salesforce - OutboundMessaging (emulated)"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


class Rule:
    """A workflow rule: writes to the object queue the message."""

    def __init__(self, message, on=("CREATE", "UPDATE")):
        self.message = message
        self.on = set(on)

    def __call__(self, t, change):
        if t.name == self.message.object and change.change_type in self.on:
            self.message.send(change.record_ids)
