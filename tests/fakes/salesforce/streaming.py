"""streaming.py -- the Streaming API's CometD (Bayeux) server at /cometd/NN.N.

Long polling only.  A client handshakes (successful, with clientId,
supportedConnectionTypes ["long-polling"] and ext {"replay": true,
"payload.format": true}), subscribes to channels with the replay
extension, ext {"replay": {"/data/ContactChangeEvent": -1 | -2 | id}}
(-1 new events only, -2 every retained event, id the events after it), and
long-polls /meta/connect: the reply holds the events of its channels
followed by the connect reply, or only the connect reply after timeout
seconds (110 on Salesforce) without an event.  The first connect after a
handshake carries advice {"interval": 0, "timeout": <ms>, "reconnect":
"retry"}.

Errors are Bayeux replies, with HTTP 200, as Salesforce sends them:
  403::Unknown client         a clientId the server does not know (never
                              handshaken, disconnected, dropped, or not
                              back within reconnect_timeout of its last
                              reply); advice reconnect=handshake
  401::Authentication invalid a connect whose session expired;
                              advice reconnect=none
  403::Handshake denied       a handshake without a valid session, with
                              ext.sfdc.failureReason 401::Authentication
                              invalid
  400::The replayId {N} you provided was invalid.  Please provide a valid
  ID, -2 to replay all events, or -1 to replay only new events.
  400::The channel you requested to subscribe to does not exist {name}
"""

import os
import threading
import time

from .events import ALL_CHANGES, channel_for


REPLAY_INVALID = ("400::The replayId {%s} you provided was invalid.  Please "
                  "provide a valid ID, -2 to replay all events, or -1 to "
                  "replay only new events.")


class Client:
    def __init__(self, client_id, session):
        self.id = client_id
        self.session = session
        self.subs = {}                  # channel -> cursor (replay id)
        self.connected = False
        self.polling = 0
        self.deadline = time.time()     # of its next request


class Bayeux:
    """See the module's docstring.  channels() names the channels that
    exist (CDC-enabled objects, defined platform events)."""

    def __init__(self, bus, auth, channels, timeout=110.0,
                 reconnect_timeout=40.0, max_batch=2000):
        self.bus = bus
        self.auth = auth
        self.channels = channels
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.max_batch = max_batch
        self.lock = threading.Lock()
        self.clients = {}
        self.log = []                   # (clientId, channel, replay ids)

    # -- hooks -------------------------------------------------------------

    def drop_clients(self):
        """Forgets every client, as a server restart or a load balancer
        moving the session does: their next message gets 403::Unknown
        client."""
        with self.lock:
            self.clients.clear()
        with self.bus.cond:
            self.bus.cond.notify_all()

    def client(self, client_id):
        with self.lock:
            c = self.clients.get(client_id)
            if c is not None and not c.polling and \
                    time.time() > c.deadline:
                del self.clients[client_id]
                c = None
            return c

    # -- messages ----------------------------------------------------------

    def handle(self, messages, session):
        """The reply messages to one POST (a list of Bayeux messages)."""
        out = []
        for m in messages:
            if not isinstance(m, dict):
                continue
            ch = m.get("channel")
            base = {"channel": ch}
            if "id" in m:
                base["id"] = m["id"]
            if ch == "/meta/handshake":
                out.append(self._handshake(m, base, session))
            elif ch == "/meta/connect":
                out += self._connect(m, base, session)
            elif ch == "/meta/subscribe":
                out.append(self._subscribe(m, base))
            elif ch == "/meta/unsubscribe":
                out.append(self._unsubscribe(m, base))
            elif ch == "/meta/disconnect":
                with self.lock:
                    self.clients.pop(m.get("clientId"), None)
                out.append(dict(base, clientId=m.get("clientId"),
                                successful=True))
            else:
                out.append(dict(base, successful=False,
                                error="403::Publish denied"))
        return out

    def _unknown(self, base, m):
        return dict(base, advice={"interval": 0, "reconnect": "handshake"},
                    error="403::Unknown client", successful=False)

    def _handshake(self, m, base, session):
        if session is None:
            return dict(base, successful=False, error="403::Handshake denied",
                        advice={"reconnect": "none"},
                        ext={"sfdc": {"failureReason":
                                      "401::Authentication invalid"}})
        types = m.get("supportedConnectionTypes") or ["long-polling"]
        if "long-polling" not in types:
            return dict(base, successful=False,
                        error="400::Invalid connection type %s"
                        % ",".join(types))
        cid = os.urandom(14).hex()[:27]
        c = Client(cid, session)
        c.deadline = time.time() + self.reconnect_timeout
        with self.lock:
            self.clients[cid] = c
        return dict(base, ext={"replay": True, "payload.format": True},
                    minimumVersion="1.0", clientId=cid,
                    supportedConnectionTypes=["long-polling"],
                    version="1.0", successful=True)

    def _subscribe(self, m, base):
        c = self.client(m.get("clientId"))
        if c is None:
            return self._unknown(base, m)
        sub = m.get("subscription")
        reply = dict(base, clientId=c.id, subscription=sub)
        if not sub:
            return dict(reply, successful=False,
                        error="400::Channel name not specified")
        if not sub.startswith("/"):
            return dict(reply, successful=False,
                        error="400::Channel subscriptions must start with "
                        "a leading '/'")
        if sub not in self.channels():
            return dict(reply, successful=False,
                        error="400::The channel you requested to subscribe "
                        "to does not exist {%s}" % sub)
        replay = ((m.get("ext") or {}).get("replay") or {}).get(sub, -1)
        try:
            replay = int(replay)
        except (TypeError, ValueError):
            return dict(reply, successful=False,
                        error=REPLAY_INVALID % replay)
        with self.bus.cond:
            if replay == -1:
                cursor = self.bus.last_replay_id
            elif replay == -2:
                cursor = 0
            elif self.bus.exists(sub, replay):
                cursor = replay
            else:
                return dict(reply, successful=False,
                            error=REPLAY_INVALID % replay)
        with self.lock:
            c.subs[sub] = cursor
            c.deadline = time.time() + self.reconnect_timeout
        return dict(reply, successful=True)

    def _unsubscribe(self, m, base):
        c = self.client(m.get("clientId"))
        if c is None:
            return self._unknown(base, m)
        with self.lock:
            c.subs.pop(m.get("subscription"), None)
        return dict(base, clientId=c.id, subscription=m.get("subscription"),
                    successful=True)

    def _pending(self, c):
        out = []
        for ch, cursor in list(c.subs.items()):
            for e in self.bus.after(ch, cursor, self.max_batch):
                out.append((e.replay_id, ch, e))
        out.sort(key=lambda x: x[0])
        return out[:self.max_batch]

    def _connect(self, m, base, session):
        c = self.client(m.get("clientId"))
        if c is None:
            return [self._unknown(base, m)]
        if session is None or self.auth.session(session.token) is None:
            with self.lock:
                self.clients.pop(c.id, None)
            return [dict(base, clientId=c.id, successful=False,
                         error="401::Authentication invalid",
                         advice={"reconnect": "none", "interval": 0})]
        ctype = m.get("connectionType", "long-polling")
        if ctype != "long-polling":
            return [dict(base, clientId=c.id, successful=False,
                         error="400::Invalid connection type %s" % ctype)]
        reply = dict(base, clientId=c.id, successful=True)
        if not c.connected:
            # the first connect answers at once, with the advice
            c.connected = True
            reply["advice"] = {"interval": 0,
                               "timeout": int(self.timeout * 1000),
                               "reconnect": "retry"}
            events = self._pending(c)
        else:
            with self.lock:
                c.polling += 1
            try:
                deadline = time.time() + self.timeout
                with self.bus.cond:
                    while True:
                        events = self._pending(c)
                        left = deadline - time.time()
                        if events or left <= 0 or \
                                self.clients.get(c.id) is not c:
                            break
                        self.bus.cond.wait(min(left, 1.0))
            finally:
                with self.lock:
                    c.polling -= 1
            if self.client(c.id) is not c:
                return [self._unknown(base, m)]
        msgs = []
        with self.lock:
            for rid, ch, e in events:
                if c.subs.get(ch, rid) < rid:
                    c.subs[ch] = rid
                msgs.append(e.message(ch))
            c.deadline = time.time() + self.reconnect_timeout
            if events:
                self.log.append((c.id, [(ch, rid) for rid, ch, _ in
                                        events]))
        return msgs + [reply]


def channel_names(org, platform_events):
    """The channels that exist: /data/ChangeEvents, one per CDC-enabled
    object, one per platform event."""
    names = {ALL_CHANGES}
    for t in list(org.types.values()):
        if t.cdc:
            names.add(channel_for(t.name))
        if t.platform_event:
            names.add("/event/%s" % t.name)
    names.update("/event/%s" % n for n in platform_events)
    return names
