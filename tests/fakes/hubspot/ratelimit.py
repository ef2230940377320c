"""ratelimit.py -- HubSpot's API limits, their headers and their 429s.

What HubSpot documents or shows:
  - every call counts against a burst limit over a rolling window
    (X-HubSpot-RateLimit-Interval-Milliseconds, 10000) of
    X-HubSpot-RateLimit-Max calls, X-HubSpot-RateLimit-Remaining left:
    190 for a Professional or Enterprise private app [D: changelog
    "increasing our API limits"], 100 for Free/Starter [C]; 110 for an
    OAuth app in each account it is installed in [M: that changelog raised
    OAuth apps' 100 per 10 s [D], to what was not captured]; the window's
    headers are named in client code, not in a HubSpot page found [C];
  - private apps also have a daily limit (250,000 [C] / 650,000 /
    1,000,000 [D] by tier) with X-HubSpot-RateLimit-Daily and
    -Daily-Remaining [D: changelog 2018-11-06]; OAuth calls
    carry no Daily headers, "because there is no daily limit for these
    calls" [D: changelog "rate limit headers will now appear for OAuth
    authenticated calls"];
  - X-HubSpot-RateLimit-Secondly and -Secondly-Remaining are still sent
    but that limit is no longer enforced [C; the per-second limit predates
    the ten-second window];
  - CRM search has its own per-second limit (4, later 5, requests per
    second) [D: changelog "CRM search API rate limit increase"; 5 is M].
A refused call gets 429 with {"status":"error","message":"You have reached
your daily limit.","errorType":"RATE_LIMIT","correlationId":...,
"policyName":"DAILY","requestId":...} [D: usage guidelines, quoted in the
community]; policyName says which limit: DAILY, TEN_SECONDLY_ROLLING
("You have reached your ten_secondly_rolling limit." [C:
HubSpot/hubspot-api-python#117]) or SECONDLY ("You have reached your
secondly limit." [C: HGData/mk-node-hubspot#89]).  Search's own 429 is
reported as SECONDLY here [M].  Refused calls do not count.

Counters are kept per app (a private app, or an OAuth app in this one
portal); the emulator does not model several portals.
"""

import collections
import datetime
import threading
import time
import uuid


MESSAGES = {
    "DAILY": "You have reached your daily limit.",
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling "
                            "limit.",
    "SECONDLY": "You have reached your secondly limit.",
}


class Policy:
    """The limits for one kind of app; None turns a limit off."""

    def __init__(self, daily, burst, interval_ms=10_000, secondly=10,
                 enforce_secondly=False, search_per_second=5):
        self.daily = daily
        self.burst = burst
        self.interval_ms = interval_ms
        self.secondly = secondly
        self.enforce_secondly = enforce_secondly
        self.search_per_second = search_per_second

    def update(self, **kw):
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError("no limit %r" % k)
            setattr(self, k, v)


class _Counter:
    def __init__(self):
        self.day = None
        self.used_today = 0
        self.window = collections.deque()       # admitted calls, ms
        self.search = collections.deque()       # admitted searches, ms
        self.force_secondly_until = 0.0         # ms, see exhaust()


def _ms():
    return time.monotonic() * 1000.0


def _today():
    return datetime.datetime.now(datetime.timezone.utc).date()


class RateLimits:
    """Limits per app kind, counters per app id."""

    def __init__(self):
        self.lock = threading.Lock()
        self.policies = {
            # a Free/Starter private app; an OAuth app (see above)
            "private": Policy(daily=250_000, burst=100),
            "oauth": Policy(daily=None, burst=110),
        }
        self.counters = {}

    def configure(self, kind=None, **limits):
        """Changes the limits of "private" or "oauth" apps (None: both):
        daily, burst, interval_ms, secondly, enforce_secondly,
        search_per_second."""
        with self.lock:
            for k in ([kind] if kind else list(self.policies)):
                self.policies[k].update(**limits)

    def reset(self):
        """Forgets every call counted so far."""
        with self.lock:
            self.counters.clear()

    def _counter(self, app_id):
        c = self.counters.get(app_id)
        if c is None:
            c = self.counters[app_id] = _Counter()
        today = _today()
        if c.day != today:
            c.day, c.used_today = today, 0
        return c

    @staticmethod
    def _prune(dq, now, span):
        while dq and dq[0] <= now - span:
            dq.popleft()

    def exhaust(self, policy_name, apps):
        """Uses up one limit for each of apps, so that their next call is
        refused with that policyName: "DAILY" (until new_day()),
        "TEN_SECONDLY_ROLLING" (for one interval) or "SECONDLY" (for one
        second, enforced then even where it is not by default)."""
        now = _ms()
        with self.lock:
            for app in apps:
                p = self.policies[app.kind]
                c = self._counter(app.app_id)
                if policy_name == "DAILY":
                    c.used_today = p.daily or 0
                elif policy_name == "TEN_SECONDLY_ROLLING":
                    c.window.clear()
                    c.window.extend([now] * p.burst)
                elif policy_name == "SECONDLY":
                    c.force_secondly_until = now + 1000.0
                    self._prune(c.window, now, p.interval_ms)
                    need = p.secondly - sum(1 for t in c.window
                                            if t > now - 1000.0)
                    c.window.extend([now] * max(0, need))
                else:
                    raise ValueError("no policy %r" % policy_name)

    def new_day(self):
        """Midnight: every daily count starts again."""
        with self.lock:
            for c in self.counters.values():
                c.used_today = 0

    def admit(self, app, search=False):
        """Counts a call by app.  Returns (headers, refusal): refusal is
        None, or the 429 body (correlationId None, filled in later)."""
        now = _ms()
        with self.lock:
            p = self.policies[app.kind]
            c = self._counter(app.app_id)
            self._prune(c.window, now, p.interval_ms)
            self._prune(c.search, now, 1000.0)
            in_second = sum(1 for t in c.window if t > now - 1000.0)
            refused = None
            if p.daily is not None and c.used_today >= p.daily:
                refused = "DAILY"
            elif p.burst is not None and len(c.window) >= p.burst:
                refused = "TEN_SECONDLY_ROLLING"
            elif (p.enforce_secondly or c.force_secondly_until > now) \
                    and p.secondly is not None and in_second >= p.secondly:
                refused = "SECONDLY"
            elif search and p.search_per_second is not None \
                    and len(c.search) >= p.search_per_second:
                refused = "SECONDLY"
            if refused is None:
                c.window.append(now)
                c.used_today += 1
                in_second += 1
                if search:
                    c.search.append(now)
            headers = self._headers(p, c, in_second)
        if refused is None:
            return headers, None
        return headers, {"status": "error", "message": MESSAGES[refused],
                         "errorType": "RATE_LIMIT", "correlationId": None,
                         "policyName": refused,
                         "requestId": str(uuid.uuid4())}

    @staticmethod
    def _headers(p, c, in_second):
        out = []
        if p.daily is not None:
            out += [("X-HubSpot-RateLimit-Daily", str(p.daily)),
                    ("X-HubSpot-RateLimit-Daily-Remaining",
                     str(max(0, p.daily - c.used_today)))]
        if p.burst is not None:
            out += [("X-HubSpot-RateLimit-Interval-Milliseconds",
                     str(p.interval_ms)),
                    ("X-HubSpot-RateLimit-Max", str(p.burst)),
                    ("X-HubSpot-RateLimit-Remaining",
                     str(max(0, p.burst - len(c.window))))]
        if p.secondly is not None:
            out += [("X-HubSpot-RateLimit-Secondly", str(p.secondly)),
                    ("X-HubSpot-RateLimit-Secondly-Remaining",
                     str(max(0, p.secondly - in_second)))]
        return out
