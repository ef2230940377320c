"""store.py -- the portal's CRM records, kept in memory.

Records of every type share one id sequence, so an id of the wrong type
is not found.  A unique property (contacts' email, case-insensitive, and
any custom property added as unique) is indexed.  Every change keeps a
timestamped copy of the record's properties so that search can lag behind
writes the way HubSpot's index does (search_lag); reads never lag.
Callers hold Store.lock across anything that must be atomic (a batch).
"""

import threading
import time

from .schema import iso_ms


class Record:
    def __init__(self, rid, otype, props, now_ms):
        self.id = rid
        self.otype = otype
        self.props = props
        self.created_ms = now_ms
        self.updated_ms = now_ms
        self.archived = False
        self.archived_ms = None
        self.versions = [(now_ms, dict(props))]

    def public(self, names=None, null_missing=True):
        """The record as the API returns it.  names: the properties asked
        for (None: every property that has a value)."""
        if names is None:
            props = {k: v for k, v in sorted(self.props.items()) if v != ""}
        else:
            props = {}
            for n in names:
                v = self.props.get(n)
                if v is None or v == "":
                    if null_missing:
                        props[n] = None
                else:
                    props[n] = v
        out = {"id": self.id, "properties": props,
               "createdAt": iso_ms(self.created_ms),
               "updatedAt": iso_ms(self.updated_ms),
               "archived": self.archived}
        if self.archived:
            out["archivedAt"] = iso_ms(self.archived_ms)
        return out

    def props_at(self, ms):
        """The properties as they were at ms (None: not created yet)."""
        seen = None
        for at, props in self.versions:
            if at > ms:
                break
            seen = props
        return seen


class Store:
    def __init__(self, types, first_id=5001):
        self.types = types
        self.lock = threading.RLock()
        self.records = {name: {} for name in types}   # insertion = id order
        self.unique = {}        # (type, property) -> {value: Record}
        self._next_id = first_id
        self.search_lag = 0.0   # seconds

    @staticmethod
    def _now_ms():
        return int(time.time() * 1000)

    @staticmethod
    def _key(name, value):
        return value.lower() if name == "email" else value

    def find(self, otype, name, value):
        """The live record whose unique property name is value, or None."""
        with self.lock:
            return self.unique.get((otype.name, name), {}).get(
                self._key(name, str(value)))

    def get(self, otype, rid, archived=False):
        with self.lock:
            rec = self.records[otype.name].get(str(rid))
        if rec is None or rec.archived != archived:
            return None
        return rec

    def conflict(self, otype, props, rec=None):
        """The record other than rec that already holds one of props'
        unique values, or None."""
        for name in otype.unique_properties():
            v = props.get(name)
            if v:
                other = self.find(otype, name, v)
                if other is not None and other is not rec:
                    return other
        return None

    def _index(self, rec, old=None):
        for name in rec.otype.unique_properties():
            idx = self.unique.setdefault((rec.otype.name, name), {})
            if old is not None and old.get(name):
                idx.pop(self._key(name, old[name]), None)
            v = rec.props.get(name)
            if v and not rec.archived:
                idx[self._key(name, v)] = rec

    def create(self, otype, props):
        """A new record with validated props; the system properties are
        set here."""
        with self.lock:
            now = self._now_ms()
            rid = str(self._next_id)
            self._next_id += 1
            props = {k: v for k, v in props.items() if v != ""}
            props.update({"hs_object_id": rid, "createdate": iso_ms(now),
                          otype.last_modified: iso_ms(now)})
            rec = Record(rid, otype, props, now)
            self.records[otype.name][rid] = rec
            self._index(rec)
            return rec

    def update(self, rec, props):
        """Applies validated props; returns {name: new value} for those
        that changed ("" when cleared)."""
        with self.lock:
            old = dict(rec.props)
            changed = {}
            for k, v in props.items():
                if old.get(k, "") != v:
                    changed[k] = v
                    if v == "":
                        rec.props.pop(k, None)
                    else:
                        rec.props[k] = v
            now = self._now_ms()
            rec.updated_ms = now
            rec.props[rec.otype.last_modified] = iso_ms(now)
            rec.versions.append((now, dict(rec.props)))
            self._index(rec, old)
            return changed

    def archive(self, rec):
        with self.lock:
            now = self._now_ms()
            rec.archived, rec.archived_ms = True, now
            for name in rec.otype.unique_properties():
                v = rec.props.get(name)
                if v:
                    idx = self.unique.get((rec.otype.name, name), {})
                    if idx.get(self._key(name, v)) is rec:
                        del idx[self._key(name, v)]

    def all(self, otype, archived=False):
        with self.lock:
            return [r for r in self.records[otype.name].values()
                    if r.archived == archived]

    def searchable(self, otype):
        """[(record, its properties as the search index sees them)]"""
        cutoff = self._now_ms() - int(self.search_lag * 1000)
        out = []
        with self.lock:
            for r in self.records[otype.name].values():
                if r.archived:
                    continue
                props = r.props_at(cutoff)
                if props is not None:
                    out.append((r, props))
        return out
