"""test_vantagectl.py -- the operator's tool against a real redis-server.

Jobs are seeded with redis-py exactly in the layout of docs/WORKER.md (the
hash, the attempt history as JSON, the zsets, the stream and its group),
as the worker writes them, never with vantagectl itself; then
build/vantagectl runs as a subprocess and the tests check its output (the
--json output parsed), its exit code and what it left in Redis.
"""

import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
import time

import pytest

import vantage_harness as vh


CTL = os.environ.get("VANTAGECTL", os.path.join(vh.REPO, "build",
                                                "vantagectl"))
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HOUR = 3600 * 1000


@pytest.fixture(scope="module")
def ctl_bin():
    if not (os.path.exists(CTL) and os.access(CTL, os.X_OK)):
        pytest.skip("vantagectl not built: %s (run make ctl)" % CTL)
    return CTL


@pytest.fixture
def r(module_redis):
    """A clean database for each test, decoded to str."""
    c = module_redis.client(decode_responses=True)
    c.flushall()
    c.config_set("maxmemory-policy", "noeviction")
    yield c
    c.config_set("maxmemory-policy", "noeviction")


@pytest.fixture
def ctl(ctl_bin, module_redis):
    """ctl(*args, json=False) -> CompletedProcess (text); --json output is
    parsed into .doc."""

    def run(*args, json_out=False, env=None, redis=None, timeout=20):
        cmd = [ctl_bin, "--redis", redis or module_redis.address]
        if json_out:
            cmd.append("--json")
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=vh.timeout(timeout),
                           env=env if env is not None else _env())
        p.doc = json.loads(p.stdout) if json_out and p.stdout else None
        return p

    return run


def _env():
    env = dict(os.environ)
    env.pop("VANTAGE_REDIS", None)
    return env


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# seeding, the way the worker writes a job (docs/WORKER.md)

def ord_hash(tenant, key):
    return hashlib.sha256(tenant.encode() + b"\0" + key.encode()) \
        .hexdigest()[:32]


def seed_job(r, state="dead", type="http", tenant="acme", attempts=3,
             created_ms=None, died_ms=None, body='{"ssn":"123-45-6789"}',
             headers=None, ordering_key=None, last_error="HTTP 422",
             last_status="422", in_dead=True, history=True, extra=None):
    """Writes one job as the worker would have left it in `state` and
    returns its id."""
    job_id = secrets.token_hex(16)
    key = "{vq}:job:" + job_id
    created_ms = created_ms if created_ms is not None else now_ms() - 10000
    if headers is None:
        headers = [["Content-Type", "application/json"],
                   ["Authorization", "Bearer s3cr3t-token"],
                   ["X-Api-Key", "k-123"], ["cookie", "sid=abc"],
                   ["Proxy-Authorization", "Basic Zm9vOmJhcg=="],
                   ["X-Trace", "t-1"]]
    h = {"type": type, "tenant": tenant, "state": state,
         "attempts": str(attempts), "created_ms": str(created_ms),
         "subject": "user-1", "idempotency_key": "idem-" + job_id[:6],
         "correlation_id": "corr-" + job_id[:6], "method": "POST",
         "uri": "/v1/things", "headers": json.dumps(headers), "body": body}
    if ordering_key is not None:
        h["ordering_key"] = ord_hash(tenant, ordering_key)
    for n in range(1, attempts + 1):
        h["run:%d" % n] = "%d-0" % (created_ms + n)
    p = r.pipeline(transaction=True)
    if history:
        for n in range(1, attempts + 1):
            p.rpush("{vq}:att:" + job_id, json.dumps(
                {"n": n, "start_ms": created_ms + n * 1000, "ms": 120,
                 "outcome": "permanent" if n == attempts else "retryable",
                 "status": 422 if n == attempts else 503,
                 "error": "HTTP %d" % (422 if n == attempts else 503),
                 "body": '{"error":"bad"}'}))
    if state == "dead":
        died_ms = died_ms if died_ms is not None else created_ms + 5000
        h.update({"finished_ms": str(died_ms), "last_error": last_error,
                  "last_status": last_status,
                  "next_attempt_ms": str(died_ms - 100)})
        if in_dead:
            p.zadd("{vq}:dead", {job_id: died_ms})
    elif state == "retrying":
        h.update({"next_attempt_ms": str(now_ms() + 60000),
                  "last_error": last_error, "last_status": last_status})
        p.zadd("{vq}:delayed", {"%s:%d" % (job_id, attempts + 1):
                                now_ms() + 60000})
        p.incr("{vq}:inflight")
    elif state == "succeeded":
        h.update({"finished_ms": str(created_ms + 500),
                  "result": json.dumps({"status": 200, "ms": 80})})
        p.zadd("{vq}:done", {job_id: created_ms + 500})
    elif state == "queued":
        p.xadd("{vq}:jobs", {"job": job_id, "n": str(attempts + 1)})
        p.incr("{vq}:inflight")
    elif state == "running":
        p.incr("{vq}:inflight")
    h.update(extra or {})
    p.hset(key, mapping=h)
    p.execute()
    return job_id


def group(r):
    try:
        r.xgroup_create("{vq}:jobs", "vantage", id="0", mkstream=True)
    except Exception as e:
        assert "BUSYGROUP" in str(e)


# --------------------------------------------------------------------------
# the command line

def test_help_and_version(ctl):
    p = ctl("--help")
    assert p.returncode == 0 and p.stderr == ""
    assert "Usage: vantagectl" in p.stdout
    assert re.search(r"--body\s+show the body raw, exactly as stored: it "
                     r"is\s+not masked", p.stdout)
    p = ctl("--version")
    assert p.returncode == 0
    assert re.match(r"^vantagectl \d+\.\d+\.\d+ ", p.stdout)


@pytest.mark.parametrize("args,message", [
    ((), "no command given"),
    (("frobnicate",), "unknown command"),
    (("jobs",), '"jobs" needs a subcommand'),
    (("jobs", "show"), "needs a job id"),
    (("jobs", "show", "ABC"), "not a job id"),
    (("jobs", "show", "a" * 31), "not a job id"),
    (("jobs", "list", "--limit", "0"), "--limit"),
    (("jobs", "list", "--limit", "x"), "--limit"),
    (("jobs", "list", "--state", "zombie"), "--state"),
    (("jobs", "list", "--since", "2h"), "--since does not apply"),
    (("dlq", "list", "--since", "yesterday"), "--since"),
    (("dlq", "list", "--state", "dead"), "--state does not apply"),
    (("dlq", "replay"), "which jobs?"),
    (("dlq", "purge"), "which jobs?"),
    (("dlq", "replay", "a" * 32, "--type", "http"), "not both"),
    (("dlq", "purge", "--all", "--tenant", "acme"), "takes no filter"),
    (("dlq", "skip"), "needs a job id"),
    (("dlq", "skip", "a" * 32, "b" * 32), "unexpected argument"),
    (("--nope", "health"), 'unknown option "--nope"'),
    (("jobs", "list", "--limit"), "--limit needs a value"),
])
def test_usage_errors_exit_2(ctl, r, args, message):
    p = ctl(*args)
    assert p.returncode == 2, p
    assert p.stdout == ""
    assert message in p.stderr
    assert p.stderr.startswith("vantagectl: ")
    assert p.stderr.count("\n") == 1, p.stderr


def test_address_from_environment_and_unix_socket(ctl, r, module_redis):
    seed_job(r)
    env = _env()
    env["VANTAGE_REDIS"] = module_redis.address
    p = subprocess.run([CTL, "dlq", "list", "--json"], capture_output=True,
                       text=True, env=env, timeout=vh.timeout(10))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["count"] == 1
    p = ctl("dlq", "list", "--json", redis="unix:" + module_redis.unix_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["count"] == 1


def test_password_file(ctl, redis_factory, tmp_path):
    secret = "pa55-" + secrets.token_hex(8)
    rs = redis_factory(password=secret)
    good = tmp_path / "good"
    good.write_text(secret + "\n")
    bad = tmp_path / "bad"
    bad.write_text("wrong-" + secret)
    runs = [ctl("--password-file", str(good), "health", redis=rs.address),
            ctl("--password-file", str(bad), "health", redis=rs.address),
            ctl("jobs", "list", redis=rs.address),
            ctl("--password-file", str(tmp_path / "missing"), "health",
                redis=rs.address)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 1
    assert "refused the password" in runs[1].stderr
    assert runs[2].returncode == 1 and "NOAUTH" in runs[2].stderr
    assert runs[3].returncode == 1
    assert "cannot open password file" in runs[3].stderr
    for p in runs:
        assert secret not in p.stdout + p.stderr
        assert p.stderr.count("\n") <= 1


# --------------------------------------------------------------------------
# health

def test_health(ctl, r):
    group(r)
    a = seed_job(r, state="queued", attempts=0)
    seed_job(r, state="queued", attempts=0)
    seed_job(r, state="retrying")
    seed_job(r, state="dead")
    seed_job(r, state="succeeded")
    seed_job(r, state="succeeded")
    # one consumer holds one entry
    got = r.xreadgroup("vantage", "host-a:42", {"{vq}:jobs": ">"}, count=1)
    assert got[0][1][0][1]["job"] == a
    p = ctl("health", json_out=True)
    assert p.returncode == 0, p.stderr
    d = p.doc
    assert d["healthy"] is True and d["problem"] is None
    assert d["redis"]["reachable"] is True
    assert d["redis"]["version"] == r.info("server")["redis_version"]
    assert (d["maxmemory_policy"], d["policy_safe"]) == ("noeviction", True)
    assert d["aof"] == {"enabled": False, "appendfsync": "everysec"}
    assert d["stream_length"] == 2
    assert d["group"]["name"] == "vantage"
    assert d["group"]["pending"] == 1
    [c] = d["group"]["consumers"]
    assert (c["name"], c["pending"]) == ("host-a:42", 1)
    assert 0 <= c["idle_ms"] < 60000
    assert (d["delayed"], d["dead"], d["done"], d["inflight"]) == \
        (1, 1, 2, 3)

    p = ctl("health")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[1] == "maxmemory-policy  noeviction (safe)"
    assert lines[3] == "stream {vq}:jobs  2 entries"
    assert lines[4] == "group vantage     1 pending, 1 consumer"
    assert re.match(r"^  host-a:42       1 pending, idle \d+ ms$", lines[5])
    assert lines[-5:] == ["delayed           1", "dead              1",
                          "done              2", "inflight          3",
                          "health            ok"]


def test_health_on_an_empty_redis(ctl, r):
    p = ctl("health", json_out=True)
    assert p.returncode == 0, p.stderr
    assert p.doc["group"] is None
    assert p.doc["stream_length"] == 0 and p.doc["inflight"] == 0


def test_health_unsafe_policy(ctl, r):
    r.config_set("maxmemory-policy", "allkeys-lru")
    p = ctl("health")
    assert p.returncode == 1
    assert "maxmemory-policy  allkeys-lru (UNSAFE: may evict jobs)" \
        in p.stdout
    assert p.stdout.splitlines()[-1] == "health            FAILED"
    assert p.stderr == ('vantagectl: unhealthy: Redis\'s maxmemory-policy '
                        '"allkeys-lru" may evict accepted jobs: set '
                        'noeviction (or a volatile-* policy)\n')
    p = ctl("health", json_out=True)
    assert p.returncode == 1
    assert p.doc["healthy"] is False and p.doc["policy_safe"] is False
    assert "allkeys-lru" in p.doc["problem"]
    r.config_set("maxmemory-policy", "volatile-lru")
    assert ctl("health").returncode == 0


def test_health_redis_stopped(ctl, redis_factory):
    rs = redis_factory()
    assert ctl("health", redis=rs.address).returncode == 0
    rs.stop()
    p = ctl("health", redis=rs.address)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == ("vantagectl: unhealthy: Redis unreachable at %s: "
                        "Connection refused\n" % rs.address)
    p = ctl("health", json_out=True, redis=rs.address)
    assert p.returncode == 1
    assert p.doc["healthy"] is False
    assert p.doc["redis"]["reachable"] is False
    p = ctl("jobs", "list", redis=rs.address)
    assert p.returncode == 1 and "Redis unreachable" in p.stderr


# --------------------------------------------------------------------------
# jobs list / show

def test_jobs_list_newest_first_and_only_job_keys(ctl, r):
    t = now_ms() - 100 * HOUR
    ids = [seed_job(r, state=s, created_ms=t + i * HOUR)
           for i, s in enumerate(["queued", "retrying", "dead", "succeeded",
                                  "running"])]
    # keys the pattern {vq}:job:* matches that are not jobs
    r.hset("{vq}:job:" + "A" * 32, "state", "queued")
    r.hset("{vq}:job:" + ids[0] + ":x", "state", "queued")
    r.hset("{vq}:job:abc", "state", "queued")
    p = ctl("jobs", "list", json_out=True)
    assert p.returncode == 0, p.stderr
    assert [j["id"] for j in p.doc["jobs"]] == ids[::-1]
    assert p.doc["count"] == 5 and p.doc["truncated"] is False
    j = p.doc["jobs"][2]
    assert j == {"id": ids[2], "type": "http", "tenant": "acme",
                 "state": "dead", "attempts": 3,
                 "created_ms": t + 2 * HOUR,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
                     (t + 2 * HOUR) // 1000)) + ".%03dZ" % (t % 1000),
                 "next_attempt_ms": t + 2 * HOUR + 4900,
                 "next_attempt": j["next_attempt"],
                 "last_status": 422, "last_error": "HTTP 422"}
    assert ISO.match(j["next_attempt"])
    retrying = p.doc["jobs"][3]
    assert retrying["state"] == "retrying" and retrying["next_attempt_ms"]

    p = ctl("jobs", "list")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "ID", "TYPE", "TENANT", "STATE", "ATTEMPTS", "CREATED",
        "NEXT_ATTEMPT", "LAST_ERROR"]
    assert len(lines) == 6
    cols = re.split(r"\s{2,}", lines[1])
    assert cols[:5] == [ids[4], "http", "acme", "running", "3"]
    assert ISO.match(cols[5]) and cols[6] == "-"
    # aligned: every column starts where its header does
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for line in lines[1:]:
        for s in starts[1:]:
            assert line[s - 2:s] == "  " and line[s] != " ", line


def test_jobs_list_filters_and_limit(ctl, r):
    t = now_ms() - 1000 * HOUR
    want = []
    for i in range(30):
        jid = seed_job(r, state=["dead", "queued", "retrying"][i % 3],
                       type=["http", "salesforce.contact.upsert"][i % 2],
                       tenant=["acme", "globex"][i % 5 == 0],
                       created_ms=t + i * 1000)
        if i % 3 == 0 and i % 2 == 1 and i % 5 != 0:
            want.append(jid)
    p = ctl("jobs", "list", "--state", "dead", "--type",
            "salesforce.contact.upsert", "--tenant", "acme", json_out=True)
    assert p.returncode == 0, p.stderr
    assert [j["id"] for j in p.doc["jobs"]] == want[::-1]
    assert p.doc["matched"] == len(want)
    p = ctl("jobs", "list", "--tenant", "globex", json_out=True)
    assert p.doc["count"] == 6
    assert all(j["tenant"] == "globex" for j in p.doc["jobs"])
    p = ctl("jobs", "list", "--limit", "7", json_out=True)
    assert p.doc["count"] == 7 and p.doc["matched"] == 30
    assert p.doc["truncated"] is True
    assert [j["created_ms"] for j in p.doc["jobs"]] == \
        [t + i * 1000 for i in range(29, 22, -1)]
    p = ctl("jobs", "list", "--limit", "7")
    assert p.stdout.splitlines()[-1] == "(7 of 30 shown: raise --limit)"
    # the default limit
    for i in range(30):
        seed_job(r, state="queued")
    assert ctl("jobs", "list", json_out=True).doc["count"] == 50


def test_jobs_show(ctl, r):
    body = '{"ssn":"123-45-6789","amount":12}'
    jid = seed_job(r, body=body, ordering_key="acct-9")
    p = ctl("jobs", "show", jid, json_out=True)
    assert p.returncode == 0, p.stderr
    d = p.doc
    assert d["id"] == jid
    f = d["fields"]
    assert f["body"] == {"length": len(body),
                         "sha256": hashlib.sha256(body.encode()).hexdigest()}
    assert f["headers"] == [["Content-Type", "application/json"],
                            ["Authorization", "***"], ["X-Api-Key", "***"],
                            ["cookie", "***"], ["Proxy-Authorization", "***"],
                            ["X-Trace", "t-1"]]
    stored = r.hgetall("{vq}:job:" + jid)
    assert sorted(f) == sorted(stored)
    for k in stored:
        if k not in ("body", "headers"):
            assert f[k] == stored[k], k
    assert list(f)[:4] == ["type", "tenant", "state", "attempts"]
    assert list(f)[-3:] == ["run:1", "run:2", "run:3"]
    assert [h["n"] for h in d["history"]] == [1, 2, 3]
    assert d["history"][2]["outcome"] == "permanent"
    assert "123-45-6789" not in p.stdout
    assert "s3cr3t" not in p.stdout and "Zm9vOmJhcg" not in p.stdout

    p = ctl("jobs", "show", jid)
    assert p.returncode == 0 and p.stderr == ""
    out = p.stdout
    assert out.startswith("job %s\n  type " % jid)
    assert re.search(r"^  body +%d bytes, sha256 %s$" % (
        len(body), hashlib.sha256(body.encode()).hexdigest()), out, re.M)
    assert re.search(r'^  headers +\[\["Content-Type","application/json"\],'
                     r'\["Authorization","\*\*\*"\]', out, re.M)
    assert re.search(r"^  created_ms +\d+ \(\d{4}-.*Z\)$", out, re.M)
    assert "history (3 attempts)\n" in out
    assert "s3cr3t" not in out and "123-45-6789" not in out
    assert len(re.findall(r'^  \{"n": \d', out, re.M)) == 3


def test_jobs_show_body_raw(ctl, r):
    body = '{"ssn":"123-45-6789"}\nsecond line'
    jid = seed_job(r, body=body)
    p = ctl("jobs", "show", jid, "--body", json_out=True)
    assert p.returncode == 0
    assert p.doc["fields"]["body"] == body
    assert p.doc["fields"]["headers"][1] == ["Authorization", "***"]
    p = ctl("jobs", "show", "--body", jid)
    assert p.stdout.endswith("body (%d bytes, raw)\n%s\n" % (len(body), body))
    # binary bodies survive --json as base64
    r.hset("{vq}:job:" + jid, "body", b"\xff\x00\xfe")
    p = ctl("jobs", "show", jid, "--body", json_out=True)
    assert p.doc["fields"]["body"] == {"base64": "/wD+"}


def test_jobs_show_missing(ctl, r):
    jid = "0" * 32
    p = ctl("jobs", "show", jid)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == "vantagectl: no job %s\n" % jid


# --------------------------------------------------------------------------
# dlq list / show

def test_dlq_list(ctl, r):
    t = now_ms()
    old = seed_job(r, died_ms=t - 5 * HOUR, type="hubspot.deal")
    mid = seed_job(r, died_ms=t - 90 * 60 * 1000, tenant="globex")
    new = seed_job(r, died_ms=t - 60 * 1000, last_error="x" * 100)
    seed_job(r, state="queued")
    seed_job(r, state="succeeded")
    p = ctl("dlq", "list", json_out=True)
    assert p.returncode == 0, p.stderr
    assert [j["id"] for j in p.doc["dead"]] == [new, mid, old]
    assert p.doc["dead"][0]["died_ms"] == t - 60 * 1000
    assert p.doc["dead"][0]["last_error"] == "x" * 100
    assert p.doc["truncated"] is False
    assert [j["id"] for j in ctl("dlq", "list", "--since", "2h",
                                 json_out=True).doc["dead"]] == [new, mid]
    assert [j["id"] for j in ctl("dlq", "list", "--since", "80m",
                                 json_out=True).doc["dead"]] == [new]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                        time.gmtime((t - 6 * HOUR) / 1000))
    assert [j["id"] for j in ctl("dlq", "list", "--since", iso,
                                 json_out=True).doc["dead"]] == \
        [new, mid, old]
    assert [j["id"] for j in ctl("dlq", "list", "--tenant", "globex",
                                 json_out=True).doc["dead"]] == [mid]
    assert [j["id"] for j in ctl("dlq", "list", "--type", "hubspot.deal",
                                 json_out=True).doc["dead"]] == [old]
    p = ctl("dlq", "list", "--limit", "2", json_out=True)
    assert [j["id"] for j in p.doc["dead"]] == [new, mid]
    assert p.doc["truncated"] is True

    p = ctl("dlq", "list")
    lines = p.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "ID", "TYPE", "TENANT", "DIED", "ATTEMPTS", "LAST_STATUS",
        "LAST_ERROR"]
    assert lines[1].startswith(new + "  http  ")
    assert lines[1].endswith("  3         422          " + "x" * 57 + "...")


def test_dlq_show(ctl, r):
    dead = seed_job(r)
    queued = seed_job(r, state="queued")
    p = ctl("dlq", "show", dead, json_out=True)
    assert p.returncode == 0
    assert p.doc["in_dead_letters"] is True
    assert p.doc["died_ms"] == int(r.zscore("{vq}:dead", dead))
    p = ctl("dlq", "show", queued)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == 'vantagectl: job %s is not dead (state "queued")\n' \
        % queued
    p = ctl("dlq", "show", "f" * 32)
    assert p.returncode == 1
    assert p.stderr == "vantagectl: no job %s\n" % ("f" * 32)


# --------------------------------------------------------------------------
# dlq replay

def entries(r):
    return [(e[1]["job"], e[1]["n"]) for e in r.xrange("{vq}:jobs")]


def assert_replayed(r, jid, attempts, before):
    h = r.hgetall("{vq}:job:" + jid)
    assert h["state"] == "queued"
    assert h["replays"] == "1"
    assert h["attempts"] == str(attempts)
    assert "next_attempt_ms" not in h and "finished_ms" not in h
    assert h["last_error"] == "HTTP 422"          # kept, as the history
    assert r.llen("{vq}:att:" + jid) == attempts
    assert r.zscore("{vq}:dead", jid) is None
    assert (jid, str(attempts + 1)) in entries(r)
    assert {k: v for k, v in h.items() if k not in (
        "state", "replays", "next_attempt_ms", "finished_ms")} == \
        {k: v for k, v in before.items() if k not in (
            "state", "replays", "next_attempt_ms", "finished_ms")}


def test_dlq_replay_one(ctl, r):
    group(r)
    r.set("{vq}:inflight", 7)
    jid = seed_job(r, attempts=4)
    other = seed_job(r)
    before = r.hgetall("{vq}:job:" + jid)
    p = ctl("dlq", "replay", jid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "replayed %s as attempt 5\n1 replayed\n" % jid
    assert_replayed(r, jid, 4, before)
    assert entries(r) == [(jid, "5")]
    assert r.get("{vq}:inflight") == "8"
    assert r.zscore("{vq}:dead", other) is not None
    # the worker's consumer sees it like any other entry
    got = r.xreadgroup("vantage", "w:1", {"{vq}:jobs": ">"}, count=10)
    assert got[0][1][0][1] == {"job": jid, "n": "5"}

    # a second replay of the same id: it is no longer dead
    p = ctl("dlq", "replay", jid, json_out=True)
    assert p.returncode == 1
    assert p.doc["count"] == 0
    assert p.doc["failed"] == [{"id": jid, "error": 'job %s is not dead '
                                '(state "queued")' % jid}]
    assert r.get("{vq}:inflight") == "8"
    assert r.hget("{vq}:job:" + jid, "replays") == "1"


def test_dlq_replay_explicit_ids_with_failures(ctl, r):
    a = seed_job(r)
    b = seed_job(r, attempts=1)
    q = seed_job(r, state="retrying")
    missing = "e" * 32
    p = ctl("dlq", "replay", a, missing, q, b, json_out=True)
    assert p.returncode == 1
    assert [(x["id"], x["attempt"]) for x in p.doc["replayed"]] == \
        [(a, 4), (b, 2)]
    assert all(re.match(r"^\d+-\d+$", x["entry"]) for x in p.doc["replayed"])
    assert p.doc["count"] == 2
    assert [x["id"] for x in p.doc["failed"]] == [missing, q]
    assert p.doc["failed"][0]["error"] == "no job %s" % missing
    assert "vantagectl: no job %s\n" % missing in p.stderr
    assert r.hget("{vq}:job:" + q, "state") == "retrying"
    assert sorted(entries(r)) == sorted([(a, "4"), (b, "2")])
    assert r.get("{vq}:inflight") == "3"      # 1 (the retrying one) + 2


def test_dlq_replay_filters(ctl, r):
    t = now_ms()
    jobs = {}
    for i, (ty, te, ago) in enumerate([
            ("http", "acme", 5), ("http", "globex", 4), ("hubspot", "acme", 3),
            ("http", "acme", 1), ("hubspot", "globex", 30)]):
        jobs[i] = seed_job(r, type=ty, tenant=te, died_ms=t - ago * HOUR)
    seed_job(r, state="queued", type="http", tenant="acme")
    p = ctl("dlq", "replay", "--type", "http", "--tenant", "acme")
    assert p.returncode == 0, p.stderr
    # oldest death first
    assert p.stdout == ("replayed %s as attempt 4\nreplayed %s as attempt 4\n"
                        "2 replayed\n" % (jobs[0], jobs[3]))
    p = ctl("dlq", "replay", "--since", "4h30m")
    assert p.returncode == 2          # not a duration: usage
    p = ctl("dlq", "replay", "--since", "270m", json_out=True)
    assert p.returncode == 0
    assert [x["id"] for x in p.doc["replayed"]] == [jobs[1], jobs[2]]
    assert sorted(r.zrange("{vq}:dead", 0, -1)) == [jobs[4]]
    p = ctl("dlq", "replay", "--all")
    assert p.stdout == "replayed %s as attempt 4\n1 replayed\n" % jobs[4]
    assert r.zcard("{vq}:dead") == 0
    assert r.get("{vq}:inflight") == "6"
    assert len(entries(r)) == 6
    p = ctl("dlq", "replay", "--all")
    assert (p.returncode, p.stdout) == (0, "0 replayed\n")


def test_dlq_replay_after_a_crash_between_zrem_and_exec(ctl, r):
    """A replayer that died after its ZREM: the hash still says dead, the
    job is in no zset; dlq list misses it, an explicit replay finishes."""
    jid = seed_job(r, in_dead=False)
    before = r.hgetall("{vq}:job:" + jid)
    assert ctl("dlq", "list", json_out=True).doc["count"] == 0
    assert [j["id"] for j in ctl("jobs", "list", "--state", "dead",
                                 json_out=True).doc["jobs"]] == [jid]
    p = ctl("dlq", "show", jid)
    assert "not in {vq}:dead: a replay or purge stopped half-way" in p.stdout
    assert ctl("dlq", "replay", "--all").stdout == "0 replayed\n"
    p = ctl("dlq", "replay", jid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "replayed %s as attempt 4\n1 replayed\n" % jid
    assert_replayed(r, jid, 3, before)
    assert r.get("{vq}:inflight") == "1"


def test_dlq_replay_detects_a_concurrent_replay(ctl, r):
    """Another replayer has done its ZREM and runs its transaction while
    this one waits: this one replays nothing."""
    jid = seed_job(r, in_dead=False)

    def other_replayer():
        time.sleep(0.3)
        p = r.pipeline(transaction=True)
        p.hset("{vq}:job:" + jid, "state", "queued")
        p.hincrby("{vq}:job:" + jid, "replays", 1)
        p.xadd("{vq}:jobs", {"job": jid, "n": "4"})
        p.incr("{vq}:inflight")
        p.execute()

    t = threading.Thread(target=other_replayer)
    t.start()
    p = ctl("dlq", "replay", jid, json_out=True)
    t.join()
    assert p.returncode == 0, p.stderr
    assert p.doc["count"] == 0
    assert p.doc["skipped"] == [{"id": jid, "reason": "replayed by someone "
                                 "else concurrently"}]
    assert "vantagectl: skipped %s: replayed by someone else " \
        "concurrently\n" % jid in p.stderr
    assert entries(r) == [(jid, "4")]
    assert r.get("{vq}:inflight") == "1"
    assert r.hget("{vq}:job:" + jid, "replays") == "1"


# --------------------------------------------------------------------------
# dlq purge

def keys_of(r, jid):
    return [k for k in ("{vq}:job:" + jid, "{vq}:att:" + jid) if r.exists(k)]


def test_dlq_purge(ctl, r):
    t = now_ms()
    a = seed_job(r, type="http", died_ms=t - 3 * HOUR)
    b = seed_job(r, type="hubspot", died_ms=t - 2 * HOUR)
    c = seed_job(r, type="http", tenant="globex", died_ms=t - HOUR)
    q = seed_job(r, state="queued")
    p = ctl("dlq", "purge", "--type", "http", "--tenant", "acme")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "purged %s\n1 purged\n" % a
    assert keys_of(r, a) == []
    assert r.zscore("{vq}:dead", a) is None
    assert len(keys_of(r, b)) == 2 and len(keys_of(r, c)) == 2

    p = ctl("dlq", "purge", q, c, json_out=True)
    assert p.returncode == 1
    assert p.doc["purged"] == [{"id": c}] and p.doc["count"] == 1
    assert p.doc["failed"] == [{"id": q, "error": 'job %s is not dead '
                                '(state "queued")' % q}]
    assert len(keys_of(r, q)) == 2        # untouched
    assert keys_of(r, c) == []

    p = ctl("dlq", "purge", "--all", json_out=True)
    assert p.doc["purged"] == [{"id": b}]
    assert keys_of(r, b) == [] and r.zcard("{vq}:dead") == 0
    assert r.exists("{vq}:job:" + q)


def test_dlq_purge_orphan_member(ctl, r):
    """A member of {vq}:dead whose hash is gone: purge tidies it, replay
    cannot run it."""
    jid = seed_job(r)
    r.delete("{vq}:job:" + jid)
    p = ctl("dlq", "replay", "--all")
    assert p.stdout == "0 replayed\n"
    assert "skipped %s: in the dead letters, but its job hash is gone" \
        % jid in p.stderr
    p = ctl("dlq", "purge", "--all")
    assert p.stdout == "purged %s\n1 purged\n" % jid
    assert r.zcard("{vq}:dead") == 0 and not r.exists("{vq}:att:" + jid)


# --------------------------------------------------------------------------
# dlq skip

def test_dlq_skip_wakes_the_new_head(ctl, r):
    h = ord_hash("acme", "acct-9")
    dead = seed_job(r, ordering_key="acct-9", attempts=3)
    waiting = seed_job(r, state="queued", ordering_key="acct-9", attempts=0)
    # a waiting job that has already been put back once: <id>:<attempts+1>
    r.zadd("{vq}:delayed", {waiting + ":1": now_ms() + 60000})
    last = seed_job(r, state="queued", ordering_key="acct-9", attempts=0)
    r.rpush("{vq}:ord:" + h, dead, waiting, last)
    other = seed_job(r, ordering_key="other")
    r.rpush("{vq}:ord:" + ord_hash("acme", "other"), other)

    before = now_ms()
    p = ctl("dlq", "skip", dead, json_out=True)
    after = now_ms()
    assert p.returncode == 0, p.stderr
    assert p.doc == {"skipped": dead, "list": "{vq}:ord:" + h,
                     "head": waiting, "woke": waiting + ":1"}
    assert r.lrange("{vq}:ord:" + h, 0, -1) == [waiting, last]
    assert r.zrange("{vq}:delayed", 0, -1) == [waiting + ":1"]
    assert before <= r.zscore("{vq}:delayed", waiting + ":1") <= after
    assert r.zscore("{vq}:dead", dead) is not None
    assert r.hget("{vq}:job:" + dead, "state") == "dead"
    assert r.lrange("{vq}:ord:" + ord_hash("acme", "other"), 0, -1) == \
        [other]

    # skipped already
    p = ctl("dlq", "skip", dead)
    assert p.returncode == 1
    assert p.stderr == ("vantagectl: job %s is not in {vq}:ord:%s: skipped "
                        "already, or its type proceeds on death\n"
                        % (dead, h))


def test_dlq_skip_human_output_and_retried_head(ctl, r):
    dead = seed_job(r, ordering_key="k")
    head = seed_job(r, state="retrying", ordering_key="k", attempts=2)
    h = ord_hash("acme", "k")
    r.rpush("{vq}:ord:" + h, dead, head)
    p = ctl("dlq", "skip", dead)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == ("skipped %s in {vq}:ord:%s (it stays in the dead "
                        "letters)" % (dead, h))
    assert re.match(r"^woke %s: %s:3 due \d{4}-.*Z$" % (head, head), lines[1])
    assert r.zscore("{vq}:delayed", head + ":3") <= now_ms()
    # the last one: nothing waits behind it
    dead2 = seed_job(r, ordering_key="solo")
    r.rpush("{vq}:ord:" + ord_hash("acme", "solo"), dead2)
    p = ctl("dlq", "skip", dead2)
    assert p.returncode == 0
    assert p.stdout.splitlines()[1] == "no job waits in {vq}:ord:%s" \
        % ord_hash("acme", "solo")
    assert not r.exists("{vq}:ord:" + ord_hash("acme", "solo"))


def test_dlq_skip_refuses(ctl, r):
    q = seed_job(r, state="queued", ordering_key="k")
    p = ctl("dlq", "skip", q)
    assert p.returncode == 1
    assert p.stderr.startswith('vantagectl: job %s is not dead (state '
                               '"queued")' % q)
    d = seed_job(r)
    p = ctl("dlq", "skip", d)
    assert p.returncode == 1
    assert p.stderr == "vantagectl: job %s has no ordering key: nothing " \
        "waits behind it\n" % d
    p = ctl("dlq", "skip", "1" * 32)
    assert (p.returncode, p.stderr) == (1, "vantagectl: no job %s\n"
                                        % ("1" * 32))
    assert r.zcard("{vq}:delayed") == 0
