"""test_cometd.py -- change events in: the Streaming API consumer
(worker/src/cometd.c), end to end.

A real redis-server, the real worker, and the Salesforce emulator in
process over TLS (tests/fakes/salesforce: Bayeux at /cometd/NN.N, with
short long polls).  The worker signs in with the JWT bearer flow, its key
in the vault (stored with build/vantagectl), follows /data/
ContactChangeEvent, and each event becomes a job of an `http` job type
whose URL is tests/fakes/http_target.py: what reaches the sink is what the
consumer turned into jobs.

At the sink, a job is told apart by its Idempotency-Key (the job id: the
engine may deliver one job twice after a kill -9, which is the engine's
at-least-once, not a duplicate event) and an event by its X-Correlation-ID
(<subscription>:<replayId>): every event must have exactly one job, and
every record created exactly one event delivered.
"""

import http.server
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import pytest

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402


CTL = os.path.join(vh.REPO, "build", "vantagectl")
CHANNEL = "/data/ContactChangeEvent"
SUB = "contacts"
TOKEN = "/services/oauth2/token"

# the append-only Redis: one test stops it and starts it again
WORKER_REDIS = "redis"


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki, streaming_timeout=2.0)
    yield s
    s.stop()
    assert not s.internal_errors, s.internal_errors


@pytest.fixture
def env(base_dir, worker_redis, worker_factory, target, sf, monkeypatch):
    if not os.path.exists(CTL):
        pytest.skip("vantagectl not built: run make ctl")
    # the skipped events are logged at debug
    monkeypatch.setenv("VANTAGE_WORKER_DEBUG", "1")
    e = Env(base_dir, worker_redis, worker_factory, target, sf)
    yield e
    e.check_log()


class Env:
    def __init__(self, base_dir, redis, factory, target, sf):
        self.dir = vh.make_dir(os.path.join(
            base_dir, "cometd-%d-%d" % (os.getpid(), time.time_ns())))
        self.redis = redis
        self.rc = redis.client()
        self.factory = factory
        self.target = target
        self.sf = sf
        self.workers = []
        self.key = os.path.join(self.dir, "master.key")
        with open(self.key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(self.key, 0o600)
        with open(sf.jwt_key_file, "rb") as f:
            pem = f.read()
        p = subprocess.run([CTL, "--redis", redis.address, "vault", "put",
                            "sf.acme.jwt-key", "--key-file", self.key],
                           input=pem, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=vh.timeout(20))
        assert p.returncode == 0, p.stderr

    def config(self, replay="earliest", subscription=True, worker="",
               channel=CHANNEL, job="sink.contact", extra=""):
        sf = self.sf
        text = ("[worker]\nlisten = {listen}\nredis = {redis}\n"
                "visibility_timeout = 8s\n%s\n"
                "[vault]\nkey_file = %s\n\n"
                "[target vendor]\nca_file = %s\n\n"
                "[connection acme-sf]\nvendor = salesforce\n"
                "auth = jwt_bearer\nlogin_url = %s\nclient_id = %s\n"
                "username = %s\nprivate_key = sf.acme.jwt-key\n"
                "api_version = %s\ntarget = vendor\n\n"
                "[job sink.contact]\nconnector = http\nurl = %s\n"
                "timeout = 1s\n\n"
                % (worker, self.key, sf.ca_file, sf.login_url, sf.consumer_key,
                   sf.username, sf.api_version, self.target.url("/sink")))
        text += extra
        if subscription:
            text += ("[subscription %s]\nconnection = acme-sf\n"
                     "channel = %s\njob = %s\ntenant = acme\n"
                     "replay = %s\n" % (SUB, channel, job, replay))
        return text

    def worker(self, **kw):
        w = self.factory(config=self.config(**kw))
        self.workers.append(w)
        return w

    # -- the org -----------------------------------------------------------

    def create(self, n, client=None, prefix="C"):
        """n contacts written to the org; their ids, in order."""
        t = self.sf.org.type("Contact")
        ctx = self.sf.context(client=client)
        return [self.sf.org.create(t, {"LastName": "%s%d" % (prefix, i)},
                                   ctx)
                for i in range(n)]

    def replay_ids(self):
        return [e.replay_id for e in self.sf.bus.on(CHANNEL)]

    def replay_of(self, record_id):
        for e in self.sf.bus.on(CHANNEL):
            if e.data["payload"]["ChangeEventHeader"]["recordIds"][0] == \
                    record_id:
                return e.replay_id
        raise KeyError(record_id)

    # -- what arrived ------------------------------------------------------

    def sink(self):
        """{replay id: (set of job ids, [bodies])} of the sink's requests."""
        out = {}
        for r in self.target.got("/sink"):
            corr = r["headers"]["x-correlation-id"]
            name, rid = corr.rsplit(":", 1)
            assert name == SUB, corr
            jobs, bodies = out.setdefault(int(rid), (set(), []))
            jobs.add(r["headers"]["idempotency-key"])
            bodies.append(json.loads(r["body"]))
        return out

    def records(self):
        """Record id -> replay ids delivered for it."""
        out = {}
        for rid, (_, bodies) in self.sink().items():
            rec = bodies[0]["ChangeEventHeader"]["recordIds"][0]
            out.setdefault(rec, []).append(rid)
        return out

    def wait_records(self, ids, seconds=20):
        vh.wait_for(lambda: set(ids) <= set(self.records()), seconds,
                    what="records %r at the sink" % (ids,))

    def checkpoint(self):
        v = self.rc.get("{vq}:replay:%s" % SUB)
        return None if v is None else int(v)

    def wait_checkpoint(self, rid, seconds=20):
        vh.wait_for(lambda: self.checkpoint() == rid, seconds,
                    what="the checkpoint at %s (now %s)"
                    % (rid, self.checkpoint()))

    def jobs(self):
        """{idempotency key: [job hashes]} of every job in Redis."""
        out = {}
        for k in self.rc.keys("{vq}:job:*"):
            h = {a.decode(): b.decode()
                 for a, b in self.rc.hgetall(k).items()}
            if "idempotency_key" in h:
                out.setdefault(h["idempotency_key"], []).append(h)
        return out

    def exactly_once(self, ids):
        """Every record of ids delivered by one event, one job each, and
        nothing else at the sink."""
        sink = self.sink()
        for rid, (jobs, _) in sink.items():
            assert len(jobs) == 1, "event %d became %d jobs" % (rid,
                                                                len(jobs))
        recs = self.records()
        assert sorted(recs) == sorted(ids)
        for rec, rids in recs.items():
            assert len(rids) == 1, (rec, rids)
            assert rids[0] == self.replay_of(rec)
        # and in Redis: one job per idempotency key
        for key, hs in self.jobs().items():
            assert len(hs) == 1, key

    def log(self, w):
        return w.log_lines()

    def check_log(self):
        tokens = issued(self.sf)
        for w in self.workers:
            text = w.log_text()
            for t in tokens:
                assert t not in text, "a token was logged"
            assert "[alert]" not in text


def issued(sf):
    with sf.auth.lock:
        return list(sf.auth.sessions)


def handshakes(sf):
    n = 0
    for r in sf.requests("/cometd/"):
        for m in json.loads(r["body"] or b"[]"):
            if m.get("channel") == "/meta/handshake":
                n += 1
    return n


def settle(seconds=1.5):
    """Long enough for anything still on its way to arrive (the long
    polls are 2 s)."""
    time.sleep(seconds)


# --------------------------------------------------------------------------

def test_events_become_jobs_once_with_the_payload(env):
    w = env.worker()
    ids = env.create(5)
    env.wait_records(ids)
    last = env.replay_ids()[-1]
    env.wait_checkpoint(last)
    settle()
    env.exactly_once(ids)

    # the job: the payload as the body, the channel and the record named
    jobs = env.jobs()
    assert sorted(jobs) == sorted("%s:%d" % (CHANNEL, r)
                                  for r in env.replay_ids())
    for rec in ids:
        rid = env.replay_of(rec)
        [h] = jobs["%s:%d" % (CHANNEL, rid)]
        assert (h["type"], h["tenant"], h["method"], h["uri"]) == (
            "sink.contact", "acme", "POST", CHANNEL)
        assert json.loads(h["headers"]) == [
            ["Content-Type", "application/json"],
            ["X-Vantage-Source", "salesforce:%s" % rec]]
        assert h["correlation_id"] == "%s:%d" % (SUB, rid)
        event = [e for e in env.sf.bus.on(CHANNEL) if e.replay_id == rid][0]
        assert json.loads(h["body"]) == event.data["payload"]
        [(_, [body])] = [v for k, v in env.sink().items() if k == rid]
        assert body == event.data["payload"]
        assert body["ChangeEventHeader"]["changeType"] == "CREATE"

    # one token, one handshake: nothing went wrong
    assert env.sf.count(TOKEN) == 1
    assert handshakes(env.sf) == 1
    msgs = [l["msg"] for l in env.log(w)]
    assert "subscribed" in msgs
    assert not [l for l in env.log(w) if l["level"] == "error"]


def test_replay_latest_starts_at_new_events(env):
    before = env.create(3, prefix="B")
    w = env.worker(replay="latest")
    vh.wait_for(lambda: any(l["msg"] == "subscribed"
                            for l in env.log(w)), 10, what="subscribed")
    after = env.create(2, prefix="A")
    env.wait_records(after)
    settle()
    env.exactly_once(after)
    assert not set(before) & set(env.records())
    env.wait_checkpoint(env.replay_ids()[-1])


def test_kill_9_mid_stream_then_restart_no_gap_no_duplicate(env):
    # 5 events a connect reply, each Bayeux request 50 ms late: the
    # stream of 60 lasts long enough to be cut in the middle
    env.sf.streaming.max_batch = 5
    env.sf.delay(0.05, path="/cometd/")
    w = env.worker()
    first = env.create(60, prefix="K")
    vh.wait_for(lambda: env.checkpoint() is not None, 20,
                what="a first checkpoint")
    w.send_signal(signal.SIGKILL)
    assert w.wait(5) == -signal.SIGKILL
    at_kill = env.checkpoint()
    assert at_kill < env.replay_of(first[-1]), "not killed mid-stream"
    down = env.create(5, prefix="D")          # while it is down
    env.factory.start(w)
    up = env.create(5, prefix="U")            # once it runs again
    ids = first + down + up
    env.wait_records(ids, seconds=40)
    env.wait_checkpoint(env.replay_ids()[-1])
    settle()
    env.exactly_once(ids)
    # it resumed from the checkpoint it had, not from the start
    resumed = [l for l in env.log(w) if l["msg"] == "subscription resumes"]
    assert int(resumed[-1]["replay_id"]) >= at_kill


def test_refused_push_stops_then_resumes_from_the_checkpoint(env):
    # at most 3 jobs in flight, each held 0.8 s at the sink: once 4 are
    # (the pushes of one reply are pipelined, so the cap lets them all
    # in), the next events' pushes are refused until they are done
    env.target.delay("/sink", 0.8, 0.8)
    w = env.worker(worker="inflight_cap = 3\n")
    first = env.create(4, prefix="E")
    env.wait_checkpoint(env.replay_of(first[-1]))
    more = env.create(8, prefix="F")
    ids = first + more
    env.wait_records(ids, seconds=60)
    env.wait_checkpoint(env.replay_ids()[-1])
    settle()
    env.exactly_once(ids)
    stops = [l for l in env.log(w) if l["msg"].startswith(
        "subscription: stopped at an event whose job was not written")]
    assert stops
    refused = [l for l in env.log(w)
               if l["msg"] == "subscription: an event's job was not written"]
    assert refused and all(l["reason"] == "the in-flight cap is reached"
                           for l in refused)
    # each stop resubscribed from the checkpoint it had then
    subscribed = [int(l["replay_id"]) for l in env.log(w)
                  if l["msg"] == "subscribed"]
    assert subscribed[0] == -2 and len(subscribed) == len(stops) + 1
    assert subscribed == sorted(subscribed)
    assert [int(l["replay_id"]) for l in stops] == subscribed[1:]


def test_redis_down_loses_nothing(env):
    w = env.worker()
    a = env.create(3, prefix="A")
    env.wait_records(a)
    env.wait_checkpoint(env.replay_of(a[-1]))
    env.redis.stop()
    b = env.create(4, prefix="B")             # taken, but not durable
    vh.wait_for(lambda: any(
        l["msg"].startswith("subscription: stopped at an event")
        for l in env.log(w)), 10, what="the consumer to stop")
    env.redis.start()
    c = env.create(2, prefix="C")
    env.wait_records(a + b + c, seconds=60)
    env.wait_checkpoint(env.replay_ids()[-1], seconds=30)
    settle()
    env.exactly_once(a + b + c)


def test_dropped_clients_and_expired_tokens(env):
    w = env.worker()
    a = env.create(3, prefix="A")
    env.wait_records(a)
    assert handshakes(env.sf) == 1

    env.sf.drop_streaming_clients()
    b = env.create(3, prefix="B")
    env.wait_records(b)
    assert handshakes(env.sf) >= 2
    assert env.sf.count(TOKEN) == 1           # the same token still works

    # a poll already held may still answer; the next connect is refused
    env.sf.expire_tokens()
    c = env.create(3, prefix="C")
    env.wait_records(c)
    vh.wait_for(lambda: env.sf.count(TOKEN) == 2, 10, what="a new grant")
    d = env.create(2, prefix="D")
    env.wait_records(d)
    env.wait_checkpoint(env.replay_ids()[-1])
    settle()
    assert env.sf.count(TOKEN) == 2           # one new grant, no more
    env.exactly_once(a + b + c + d)
    assert any(l["msg"] == "subscription: the token was refused: a new one"
               for l in env.log(w))


def test_changes_vantage_wrote_are_skipped_but_checkpointed(env):
    w = env.worker()
    mine = env.create(2, prefix="M")
    echo = env.create(2, client="vantage", prefix="V")
    other = env.create(1, client="someone-else", prefix="O")
    last_echo = env.create(1, client="vantage", prefix="L")
    env.wait_records(mine + other)
    env.wait_checkpoint(env.replay_of(last_echo[0]))
    settle()
    env.exactly_once(mine + other)
    assert not [k for k in env.jobs()
                if int(k.rsplit(":", 1)[1]) in
                [env.replay_of(r) for r in echo + last_echo]]
    skipped = [int(l["replay_id"]) for l in env.log(w)
               if l["msg"] == "subscription: a change Vantage wrote: "
               "skipped"]
    assert skipped == [env.replay_of(r) for r in echo + last_echo]


def test_no_loop_through_the_salesforce_connector(env):
    """Each Contact change becomes a job of the Salesforce connector that
    creates an Account; the Account's change event, on the same channel,
    says client=vantage and is skipped.  Without that, every Account
    would make another, for ever."""
    mapping = os.path.join(env.dir, "contact-to-account.json")
    with open(mapping, "w") as f:
        json.dump({"name": "contact-to-account", "from": "salesforce.Contact",
                   "to": "salesforce.Account",
                   "fields": [{"to": "Name", "from": "LastName",
                               "required": True}]}, f)
    job = ("[job sf.account.create]\nconnector = salesforce\n"
           "connection = acme-sf\noperation = create\nobject = Account\n"
           "mapping = %s\ntimeout = 2s\n\n" % mapping)
    w = env.worker(channel="/data/ChangeEvents", job="sf.account.create",
                   extra=job)
    names = ["Loop%d" % i for i in range(3)]
    t = env.sf.org.type("Contact")
    ctx = env.sf.context()
    for n in names:
        env.sf.org.create(t, {"LastName": n}, ctx)
    accounts = env.sf.org.type("Account")

    def made():
        return sorted(a["Name"] for a in env.sf.org.all(accounts))

    vh.wait_for(lambda: made() == names, 20, what="three Accounts")
    events = env.sf.bus.on("/data/ChangeEvents")
    assert len(events) == 6
    echoes = [e.replay_id for e in events if e.data["payload"]
              ["ChangeEventHeader"]["entityName"] == "Account"]
    assert len(echoes) == 3
    vh.wait_for(lambda: env.checkpoint() == events[-1].replay_id, 20,
                what="the checkpoint past the echoes")
    settle(3)
    assert made() == names                    # no loop
    assert len(env.sf.bus.on("/data/ChangeEvents")) == 6
    assert sorted(env.jobs()) == sorted(
        "/data/ChangeEvents:%d" % e.replay_id for e in events
        if e.replay_id not in echoes)
    skipped = [int(l["replay_id"]) for l in env.log(w)
               if l["msg"] == "subscription: a change Vantage wrote: "
               "skipped"]
    assert skipped == echoes


def test_checkpoint_too_old_resumes_from_earliest_loudly(env):
    w = env.worker()
    a = env.create(2, prefix="A")
    env.wait_records(a)
    stored = env.replay_of(a[-1])
    env.wait_checkpoint(stored)
    assert w.stop() == 0

    lost = env.create(3, prefix="X")
    kept = env.create(1, prefix="K")
    env.sf.trim_events(keep=1)                # the retention passed over
    env.factory.start(w)
    env.wait_records(kept)
    env.wait_checkpoint(env.replay_of(kept[0]))
    later = env.create(1, prefix="L")
    env.wait_records(later)
    settle()
    # a and what is retained: no duplicate, and the trimmed ones lost
    sink = env.sink()
    assert all(len(jobs) == 1 for jobs, _ in sink.values())
    recs = env.records()
    assert sorted(recs) == sorted(a + kept + later)
    assert all(len(rids) == 1 for rids in recs.values())
    assert not set(lost) & set(recs)
    errors = [l for l in env.log(w) if l["level"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["subscription"] == SUB
    assert errors[0]["checkpoint"] == str(stored)
    assert "LOST" in errors[0]["msg"]


def test_reload_starts_and_stops_subscriptions(env):
    w = env.worker(subscription=False)
    env.create(1, prefix="N")
    settle(2.5)
    assert env.sf.count("/cometd/") == 0

    w.write_config(env.config())
    w.send_signal(signal.SIGHUP)
    vh.wait_for(lambda: any(l["msg"] == "subscribed" for l in env.log(w)),
                10, what="subscribed after the reload")
    a = env.create(2, prefix="A")
    env.wait_records(a)

    w.write_config(env.config(subscription=False))
    w.send_signal(signal.SIGHUP)
    vh.wait_for(lambda: any(l["msg"] == "subscription removed: stopping it"
                            for l in env.log(w)), 10, what="stopped")
    n = env.sf.count("/cometd/")
    z = env.create(2, prefix="Z")
    settle(3)
    assert env.sf.count("/cometd/") == n
    assert not set(z) & set(env.records())


class CookieBayeux:
    """A CometD server of its own, over TLS, that sets cookies at the
    handshake (as CometD's BAYEUX_BROWSER and load balancers do; the
    emulator sets none) and answers 403::Unknown client to a message that
    does not bring them back.  It delivers one event, then holds polls."""

    def __init__(self, pki):
        self.cookies = []           # (meta channel, Cookie header)
        self.lock = threading.Lock()
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                [m] = json.loads(self.rfile.read(n))
                ch = m["channel"]
                cookie = self.headers.get("Cookie")
                with srv.lock:
                    srv.cookies.append((ch, cookie))
                extra = []
                base = {"channel": ch, "id": m["id"]}
                if ch == "/meta/handshake":
                    out = [dict(base, clientId="c1", successful=True,
                                version="1.0",
                                supportedConnectionTypes=["long-polling"])]
                    extra = [("Set-Cookie", "BAYEUX_BROWSER=b1; Path=/; "
                              "Secure; HttpOnly"),
                             ("Set-Cookie", "sfdc-stream=s1; Path=/")]
                elif cookie != "BAYEUX_BROWSER=b1; sfdc-stream=s1":
                    out = [dict(base, successful=False,
                                error="403::Unknown client",
                                advice={"reconnect": "handshake"})]
                elif ch == "/meta/subscribe":
                    out = [dict(base, clientId="c1", successful=True,
                                subscription=m["subscription"])]
                else:
                    first = sum(1 for c, _ in srv.cookies
                                if c == "/meta/connect") == 1
                    if not first:
                        time.sleep(0.5)
                    out = [dict(base, clientId="c1", successful=True,
                                advice={"reconnect": "retry", "interval": 0,
                                        "timeout": 500})]
                    if first:
                        out.insert(0, {"channel": CHANNEL, "data": {
                            "schema": "x", "event": {"replayId": 7},
                            "payload": {"ChangeEventHeader": {
                                "recordIds": ["003COOKIE"],
                                "changeOrigin": "com/salesforce/api/rest/"
                                                "68.0"},
                                "LastName": "Cookie"}}})
                body = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self.server.socket = ctx.wrap_socket(self.server.socket,
                                             server_side=True)
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_cookies_the_server_sets_are_sent_back(env, pki):
    bayeux = CookieBayeux(pki)
    try:
        # the token's instance_url: where the worker finds CometD
        env.sf.auth.instance_url = bayeux.url
        env.worker()
        env.wait_records(["003COOKIE"])
        env.wait_checkpoint(7)
        vh.wait_for(lambda: len(bayeux.cookies) >= 4, 10,
                    what="a held connect")
    finally:
        bayeux.close()
    with bayeux.lock:
        seen = list(bayeux.cookies)
    assert seen[0] == ("/meta/handshake", None)
    assert seen[1:4] == [
        ("/meta/subscribe", "BAYEUX_BROWSER=b1; sfdc-stream=s1"),
        ("/meta/connect", "BAYEUX_BROWSER=b1; sfdc-stream=s1"),
        ("/meta/connect", "BAYEUX_BROWSER=b1; sfdc-stream=s1")]
    assert [c for c, _ in seen].count("/meta/handshake") == 1
