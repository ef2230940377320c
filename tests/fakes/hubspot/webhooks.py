"""webhooks.py -- subscription events, batched, signed and retried.

HubSpot POSTs a JSON array of events to the app's target URL
(https://developers.hubspot.com/docs/apps/legacy-apps/public-apps/
create-generic-webhook-subscriptions, field table):
  objectId, eventId (not guaranteed unique), subscriptionId, portalId,
  appId, occurredAt (ms), subscriptionType ("contact.creation",
  "contact.propertyChange", ..., or "object.creation" with objectTypeId),
  attemptNumber (0 on the first attempt), changeSource, and
  propertyName/propertyValue for property changes; association changes
  add associationType, fromObjectId, toObjectId, associationRemoved,
  isPrimaryAssociation [D: changelog "new subscription types"].
Changes made through the API are changeSource "INTEGRATION" with sourceId
the app's id [C/M: the values seen in payloads; HubSpot documents neither
list], so a connector can drop the echo of its own writes; a test makes
"CRM_UI" changes with HubSpot.change().  Creation also reports the
subscribed properties it set as propertyChange events [M].

Each request carries, for the app's client secret
(https://developers.hubspot.com/docs/apps/developer-platform/build-apps/
authentication/request-validation; HubSpot's own SDK,
hubspot/utils/signature.py):
  X-HubSpot-Signature-v3      base64(HMAC-SHA256(secret, method + uri +
                              body + timestamp)), uri the full target URL
  X-HubSpot-Request-Timestamp epoch milliseconds; receivers refuse
                              requests older than 5 minutes
  X-HubSpot-Signature         v1: hex SHA-256(secret + body), what
                              webhooks-API subscriptions send; or v2:
                              hex SHA-256(secret + method + uri + body)
  X-HubSpot-Signature-Version "v1" or "v2"

Delivery: up to max_batch (100) events a request [M], max_concurrent
requests at once (webhooks.json's maxConcurrentRequests).  A request
that fails to connect, times out (timeout, 5 s [M]) or answers anything
but 2xx is retried, up to 10 times, unless it answered 400, 401, 403, 404
or 405; a 429's Retry-After is respected [C: HubSpot's answers in its
developer forum].  Retry n waits 2**n minutes (the legacy doc's schedule
[C]; the current docs spread retries over a day [M]), times time_scale, so
that a test can run the whole schedule in well under a second.
"""

import base64
import hashlib
import hmac
import http.client
import json
import random
import threading
import time
import urllib.parse


NO_RETRY = (400, 401, 403, 404, 405)
# characters HubSpot decodes in the URI before signing v3 [M: the list is
# recalled from the validation guide]
DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!",
           "%24": "$", "%27": "'", "%28": "(", "%29": ")", "%2A": "*",
           "%2C": ",", "%3B": ";"}


def signed_uri(url):
    for enc, ch in DECODED.items():
        url = url.replace(enc, ch).replace(enc.lower(), ch)
    return url


def signatures(secret, method, uri, body, timestamp):
    """{"v1", "v2", "v3"} for a request, as HubSpot computes them."""
    text = body.decode("utf-8")
    v3 = base64.b64encode(hmac.new(
        secret.encode(), (method + uri + text + str(timestamp)).encode(),
        hashlib.sha256).digest()).decode()
    return {"v1": hashlib.sha256((secret + text).encode()).hexdigest(),
            "v2": hashlib.sha256((secret + method + uri + text)
                                 .encode()).hexdigest(),
            "v3": v3}


class Subscription:
    def __init__(self, sub_id, subscription_type, property_name=None,
                 object_name=None, active=True):
        self.id = sub_id
        self.type = subscription_type       # "contact.propertyChange"
        self.property_name = property_name
        self.object_name = object_name      # "contact", for object.*
        self.active = active

    def matches(self, otype, kind, prop=None):
        if not self.active:
            return False
        family, _, k = self.type.partition(".")
        if k != kind:
            return False
        if family == "object":
            if self.object_name not in (otype.singular, otype.type_id):
                return False
        elif family != otype.singular:
            return False
        if kind == "propertyChange":
            return self.property_name == prop
        return True


class Webhooks:
    def __init__(self, hs):
        self.hs = hs
        self.app = None                 # whose appId and secret are used
        self.target_url = None
        self.target_ssl = None          # ssl.SSLContext for an https target
        self.signature_version = "v1"
        self.timeout = 5.0
        self.max_batch = 100
        self.max_concurrent = 10
        self.linger = 0.05              # seconds a batch waits to fill
        self.max_retries = 10
        self.retry_base = 60.0          # seconds: retry n waits base * 2**n
        self.time_scale = 1.0
        self.clock_offset_ms = 0        # added to X-HubSpot-Request-Timestamp
        self.hold = False
        self.subscriptions = []
        self.events = []                # every event made, in order
        self.deliveries = []            # every POST tried
        self._queue = []                # [ready_at, seq, event, attempt]
        self._seq = 0
        self._inflight = 0
        self._next_sub = 1
        self._next_event = random.randint(10**8, 10**9)
        self._cond = threading.Condition()
        self._stop = False
        self._thread = None

    # -- configuration --------------------------------------------------------

    def subscribe(self, subscription_type, property_name=None,
                  object_name=None):
        """Adds a subscription ("contact.creation", "contact.propertyChange"
        with property_name, "object.creation" with object_name...)."""
        with self._cond:
            sub = Subscription(self._next_sub, subscription_type,
                               property_name, object_name)
            self._next_sub += 1
            self.subscriptions.append(sub)
            return sub

    def subscribe_defaults(self):
        for t in ("contact", "company", "deal"):
            self.subscribe(t + ".creation")
            self.subscribe(t + ".deletion")
        for t, props in (("contact", ("email", "firstname", "lastname",
                                      "phone", "lifecyclestage")),
                         ("company", ("name", "domain")),
                         ("deal", ("dealname", "dealstage", "amount"))):
            for p in props:
                self.subscribe(t + ".propertyChange", p)

    # -- events ---------------------------------------------------------------

    def _event(self, sub, otype, rec_id, source, **fields):
        # called with self._cond held: eventIds are handed out in order
        self._next_event += 1
        ev = {"eventId": self._next_event, "subscriptionId": sub.id,
              "portalId": self.hs.portal_id,
              "appId": self.app.app_id if self.app else None,
              "occurredAt": int(time.time() * 1000),
              "subscriptionType": sub.type, "attemptNumber": 0,
              "objectId": int(rec_id)}
        if sub.type.startswith("object."):
            ev["objectTypeId"] = otype.type_id
        ev.update(fields)
        ev["changeSource"], ev["sourceId"] = source
        return ev

    def _emit(self, events):
        """Records events, and queues them if there is a target URL (with
        none, HubSpot has nowhere to send them: they are not kept for a
        target set later)."""
        if not events:
            return
        with self._cond:
            self.events.extend(events)
            if not self.target_url:
                return
            for ev in events:
                self._seq += 1
                self._queue.append([time.monotonic(), self._seq, ev, 0])
            self._cond.notify_all()

    def created(self, otype, rec, source):
        with self._cond:
            self._emit([self._event(s, otype, rec.id, source,
                                    changeFlag="CREATED")
                        for s in self.subscriptions
                        if s.matches(otype, "creation")])
            self.changed(otype, rec, rec.props, source)

    def changed(self, otype, rec, changed, source):
        with self._cond:
            out = []
            for name, value in changed.items():
                for s in self.subscriptions:
                    if s.matches(otype, "propertyChange", name):
                        out.append(self._event(s, otype, rec.id, source,
                                               propertyName=name,
                                               propertyValue=value))
            self._emit(out)

    def deleted(self, otype, rec, source):
        with self._cond:
            self._emit([self._event(s, otype, rec.id, source,
                                    changeFlag="DELETED")
                        for s in self.subscriptions
                        if s.matches(otype, "deletion")])

    def association(self, from_type, from_rec, to_type, to_rec, removed,
                    primary, source):
        with self._cond:
            out = []
            for a, ar, b, br in ((from_type, from_rec, to_type, to_rec),
                                 (to_type, to_rec, from_type, from_rec)):
                kind = "%s_TO_%s" % (a.singular.upper(), b.singular.upper())
                for s in self.subscriptions:
                    if s.matches(a, "associationChange"):
                        out.append(self._event(
                            s, a, ar.id, source, associationType=kind,
                            fromObjectId=int(ar.id), toObjectId=int(br.id),
                            associationRemoved=removed,
                            isPrimaryAssociation=primary))
            self._emit(out)

    # -- delivery -------------------------------------------------------------

    def start(self):
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def release(self):
        """Ends hold: what was queued goes out, in batches."""
        with self._cond:
            self.hold = False
            self._cond.notify_all()

    def flush(self, timeout=10.0):
        """Waits until nothing is queued or being sent (releasing any
        hold); True if that happened within timeout."""
        self.release()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _take(self):
        """Under the lock: a batch ready to go, or None and how long to
        wait."""
        if self.hold or not self.target_url or not self._queue \
                or self._inflight >= self.max_concurrent:
            return None, 0.05
        now = time.monotonic()
        ready = sorted((q for q in self._queue if q[0] <= now),
                       key=lambda q: (q[0], q[1]))
        if not ready:
            return None, min(q[0] for q in self._queue) - now
        if len(ready) < self.max_batch and now - ready[0][0] < self.linger:
            return None, self.linger - (now - ready[0][0])
        batch = ready[:self.max_batch]
        for q in batch:
            self._queue.remove(q)
        self._inflight += 1
        return batch, 0

    def _run(self):
        while True:
            with self._cond:
                if self._stop:
                    return
                batch, wait = self._take()
                if batch is None:
                    self._cond.wait(max(0.001, min(wait, 0.05)))
                    continue
            threading.Thread(target=self._send, args=(batch,),
                             daemon=True).start()

    def _post(self, body, headers):
        u = urllib.parse.urlsplit(self.target_url)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname, u.port or 443,
                                               context=self.target_ssl,
                                               timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80,
                                              timeout=self.timeout)
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("Retry-After")
        finally:
            conn.close()

    def _send(self, batch):
        events = [dict(q[2], attemptNumber=q[3]) for q in batch]
        body = json.dumps(events, separators=(",", ":")).encode()
        ts = int(time.time() * 1000) + self.clock_offset_ms
        secret = self.app.client_secret
        sig = signatures(secret, "POST", signed_uri(self.target_url), body, ts)
        headers = {"Content-Type": "application/json",
                   "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot."
                                 "com/) - WebhooksExecutorDaemon-executor",
                   "X-HubSpot-Signature": sig[self.signature_version],
                   "X-HubSpot-Signature-Version": self.signature_version,
                   "X-HubSpot-Signature-v3": sig["v3"],
                   "X-HubSpot-Request-Timestamp": str(ts),
                   "X-HubSpot-Timeout-Millis": str(int(self.timeout * 1000))}
        status, retry_after, error = None, None, None
        try:
            status, retry_after = self._post(body, headers)
        except (OSError, http.client.HTTPException) as e:
            error = "%s: %s" % (type(e).__name__, e)
        record = {"time": time.time(), "url": self.target_url,
                  "headers": headers, "body": body, "events": events,
                  "status": status, "error": error}
        retry = error is not None or (status not in NO_RETRY
                                      and not 200 <= status < 300)
        with self._cond:
            self.deliveries.append(record)
            self._inflight -= 1
            if retry:
                now = time.monotonic()
                for q in batch:
                    attempt = q[3] + 1
                    if attempt > self.max_retries:
                        continue
                    delay = self.retry_base * 2 ** attempt
                    if status == 429 and retry_after is not None:
                        try:
                            delay = float(retry_after)
                        except ValueError:
                            pass
                    self._seq += 1
                    self._queue.append([now + delay * self.time_scale,
                                        self._seq, q[2], attempt])
            self._cond.notify_all()
