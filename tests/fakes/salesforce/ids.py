"""ids.py -- Salesforce record ids, timestamps and opaque tokens.

Salesforce ids are 15 case-sensitive base-62 characters, the first three
naming the object (the "key prefix": 001 Account, 003 Contact, 005 User,
00D Organization, 750 Bulk job, ...), plus a three-character suffix that
makes the 18-character form case-insensitive: for each five-character
chunk, a 5-bit mask of which characters are upper-case letters, indexed
into A-Z0-5.  The emulator makes ids the same way, so a connector that
checks or converts them sees real-looking values.
"""

import datetime
import itertools
import threading
import time
import uuid

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum(id15):
    """The three-character suffix of the 18-character form of id15."""
    out = []
    for i in range(3):
        chunk = id15[i * 5:(i + 1) * 5]
        mask = 0
        for j, c in enumerate(chunk):
            if "A" <= c <= "Z":
                mask |= 1 << j
        out.append(_SUFFIX[mask])
    return "".join(out)


def to18(id15):
    return id15 + checksum(id15) if len(id15) == 15 else id15


def valid(record_id):
    """True for a well-formed 15- or 18-character id (checksum checked)."""
    if len(record_id) not in (15, 18) or \
            any(c not in _B62 for c in record_id):
        return False
    return len(record_id) == 15 or checksum(record_id[:15]) == record_id[15:]


def _b62(n, width):
    s = ""
    while n:
        n, r = divmod(n, 62)
        s = _B62[r] + s
    return s.rjust(width, "0")


class IdFactory:
    """Unique 18-character ids: prefix + a two-character "pod" + a
    ten-character counter, thread-safe."""

    def __init__(self, pod="RO"):
        self.pod = pod
        self._n = itertools.count(1)
        self._lock = threading.Lock()

    def new(self, prefix):
        with self._lock:
            n = next(self._n)
        return to18(prefix + self.pod + _b62(n, 10))


def sf_datetime(t=None):
    """Salesforce's REST dateTime: 2013-05-20T20:49:32.000+0000."""
    if t is None:
        t = time.time()
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+0000" % (d.microsecond
                                                              // 1000)


def now_ms():
    return int(time.time() * 1000)


def new_uuid():
    return str(uuid.uuid4())
