"""events.py -- the event bus behind Change Data Capture and Platform Events.

Every event gets a replay id from one org-wide counter and is retained
(retention_seconds, 72 h by default, or until trimmed) on the channels it
was published to, so a subscriber that resumes from a replay id gets
exactly the events after it on its channel.  Replay ids increase but are
not contiguous on any one channel, as Salesforce warns.

Change events come from the org's own writes (Org listeners), so a write
made through REST or Bulk by the integration user produces its change
event, with commitUser and changeOrigin saying who and how -- what a
connector needs to suppress the echo of its own writes.  publish_change()
injects any other change (GAP_* events, merged recordIds).
"""

import base64
import bisect
import hashlib
import threading
import time

from . import ids


def channel_for(entity):
    """/data/ContactChangeEvent; /data/Employee__ChangeEvent for
    Employee__c."""
    if entity.endswith("__c"):
        return "/data/%s__ChangeEvent" % entity[:-3]
    return "/data/%sChangeEvent" % entity


ALL_CHANGES = "/data/ChangeEvents"


def schema_id(name):
    """A stable 22-character schema id per event type, as Salesforce sends
    in data.schema (the id of the event's Avro schema)."""
    return base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()) \
        .decode()[:22]


class Event:
    __slots__ = ("replay_id", "channels", "data", "time")

    def __init__(self, replay_id, channels, data):
        self.replay_id = replay_id
        self.channels = channels
        self.data = data
        self.time = time.time()

    def message(self, channel):
        """The Bayeux message a subscriber of channel receives."""
        return {"data": self.data, "channel": channel}


class EventBus:
    """Retained events, ordered by replay id; cond is notified on every
    publish (long polls wait on it)."""

    def __init__(self, retention_seconds=72 * 3600, max_events=500000):
        self.retention_seconds = retention_seconds
        self.max_events = max_events
        self.cond = threading.Condition()
        self.events = []
        self._ids = []
        self.last_replay_id = 0

    def publish(self, channels, schema, payload, event_extra=None):
        with self.cond:
            self.last_replay_id += 1
            rid = self.last_replay_id
            event = {"replayId": rid}
            event.update(event_extra or {})
            e = Event(rid, tuple(channels),
                      {"schema": schema, "payload": payload, "event": event})
            self.events.append(e)
            self._ids.append(rid)
            self._expire()
            self.cond.notify_all()
            return rid

    def _expire(self):
        cut = 0
        horizon = time.time() - self.retention_seconds
        while cut < len(self.events) and self.events[cut].time < horizon:
            cut += 1
        cut = max(cut, len(self.events) - self.max_events)
        if cut > 0:
            del self.events[:cut]
            del self._ids[:cut]

    def trim(self, keep=0):
        """Drops all but the newest keep events (as the retention window
        passing over them would)."""
        with self.cond:
            cut = max(len(self.events) - keep, 0)
            del self.events[:cut]
            del self._ids[:cut]

    def exists(self, channel, replay_id):
        with self.cond:
            i = bisect.bisect_left(self._ids, replay_id)
            return i < len(self._ids) and self._ids[i] == replay_id and \
                channel in self.events[i].channels

    def after(self, channel, replay_id, limit=None):
        """Retained events of channel with a replay id above replay_id."""
        with self.cond:
            self._expire()
            i = bisect.bisect_right(self._ids, replay_id)
            out = []
            for e in self.events[i:]:
                if channel in e.channels:
                    out.append(e)
                    if limit is not None and len(out) >= limit:
                        break
            return out

    def on(self, channel):
        with self.cond:
            return [e for e in self.events if channel in e.channels]


class Publisher:
    """Turns org changes and platform event publishes into bus events."""

    def __init__(self, bus, org):
        self.bus = bus
        self.org = org
        org.listeners.append(self.on_change)

    def on_change(self, t, change):
        if t.cdc:
            self.publish_change(
                change.entity, change.record_ids, change.change_type,
                change.fields, change.changed, change.nulled,
                commit_user=change.ctx.user_id,
                change_origin=change.ctx.origin(),
                transaction_key=change.ctx.transaction_key,
                sequence=change.sequence,
                commit_ms=change.commit_ms,
                commit_number=getattr(change, "commit_number", None))

    def publish_change(self, entity, record_ids, change_type, fields=None,
                       changed_fields=(), nulled_fields=(), commit_user=None,
                       change_origin="", transaction_key=None, sequence=1,
                       commit_ms=None, commit_number=None, diff_fields=()):
        """Publishes one change event (ChangeEventHeader as documented)
        on /data/ChangeEvents and the entity's channel; returns its replay
        id.  Tests call it for what the org's writes do not produce: GAP_*
        change types, merged recordIds, wildcard ids."""
        if commit_number is None:
            with self.org.lock:
                self.org.commit_number += 1
                commit_number = self.org.commit_number
        header = {
            "entityName": entity,
            "recordIds": list(record_ids),
            "changeType": change_type,
            "changeOrigin": change_origin,
            "transactionKey": transaction_key or
            ids.new_uuid().replace("-", "")[:20],
            "sequenceNumber": sequence,
            "commitTimestamp": commit_ms or ids.now_ms(),
            "commitNumber": commit_number,
            "commitUser": commit_user or "",
            "nulledFields": list(nulled_fields),
            "diffFields": list(diff_fields),
            "changedFields": list(changed_fields),
        }
        payload = {"ChangeEventHeader": header}
        if change_type in ("CREATE", "UPDATE", "UNDELETE"):
            payload.update(fields or {})
        name = entity[:-3] + "__ChangeEvent" if entity.endswith("__c") \
            else entity + "ChangeEvent"
        return self.bus.publish([ALL_CHANGES, channel_for(entity)],
                                schema_id(name), payload)

    def publish_platform_event(self, name, fields, user_id):
        """A platform event message on /event/<name>; returns (replay id,
        EventUuid)."""
        uid = ids.new_uuid()
        payload = dict(fields)
        payload.setdefault("CreatedDate",
                           time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                         time.gmtime()))
        payload.setdefault("CreatedById", user_id)
        rid = self.bus.publish(["/event/%s" % name], schema_id(name),
                               payload, {"EventUuid": uid})
        return rid, uid
