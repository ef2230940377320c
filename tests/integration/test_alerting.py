"""test_alerting.py -- vantage-worker's [alerting] and [alert] rules.

A real redis-server, the real worker, tests/fakes/http_target.py as the
vendor and, on a port of its own, as the webhook receiver that records
each notice's body and headers; the Salesforce and HubSpot emulators,
whose usage headers feed quota_share, and the identity provider
emulator, whose key set feeds jwks_failing.  The bodies are compared
whole with what docs/WORKER.md ("Alerting") says; the idempotency keys
are computed here with hashlib from the rule, the label set, the event
and the firing time the notice states.  Evaluations run every 200 ms;
every wait polls with a deadline, and no test times anything as a
performance figure.
"""

import calendar
import datetime
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

import vantage_harness as vh
import worker_harness as wh
from prom_text import parse, value
from worker_harness import (FETCH, REPLY, T_BODY, T_FETCH_KIND, T_IDP,
                            T_JOB_ID, T_JOB_TYPE, T_TENANT)

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))


CTL = os.environ.get("VANTAGECTL", os.path.join(vh.REPO, "build",
                                                "vantagectl"))
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def hook(target):
    """The webhook receiver: an HttpTarget of its own (conftest's target
    put tests/fakes on the path), closed at teardown."""
    from http_target import HttpTarget
    t = HttpTarget()
    yield t
    t.close()


def conf(target, hook, rules, alerting="", worker="", jobs="",
         metrics=None):
    """A file with [job alerts] (the receiver's /hook), [job vendor] (the
    target's /v, one attempt a job), [alerting] every 200 ms with a
    cool-down of an hour unless alerting says otherwise, and rules."""
    text = wh.CONFIG_HEAD + "visibility_timeout = 6500ms\n" \
        "shutdown_timeout = 1s\n" + worker + "\n"
    if metrics:
        text += "[metrics]\nlisten = 127.0.0.1:%d\n\n" % metrics
    text += ("[job alerts]\nconnector = http\nurl = %s\ntimeout = 1s\n"
             "max_attempts = 5\nbackoff_base = 50ms\nbackoff_cap = 100ms\n\n"
             "[job vendor]\nconnector = http\nurl = %s\ntimeout = 1s\n"
             "max_attempts = 1\n\n"
             % (hook.url("/hook"), target.url("/v")))
    text += jobs
    text += "[alerting]\njob = alerts\ninterval = 200ms\n"
    if "cooldown" not in alerting:
        text += "cooldown = 1h\n"
    text += alerting + "\n" + rules
    return text


def dispatch(w, job_type, fid=1, body=b"{}", headers=()):
    r = w.client().dispatch(fid, [(T_JOB_TYPE, job_type),
                                  (T_TENANT, "acme"), (T_BODY, body)]
                            + [(wh.T_HEADER, h) for h in headers])
    assert r.status == 202, r
    return r.get(T_JOB_ID).decode()


def notices(hook, n, seconds=10):
    """The first n requests the receiver got, once it has them."""
    vh.wait_for(lambda: len(hook.got("/hook")) >= n, seconds, interval=0.05,
                what="%d notice(s)" % n)
    return hook.got("/hook")[:n]


def quiet(hook, n, seconds=1.5):
    """After seconds (several evaluations), still exactly n requests."""
    time.sleep(vh.timeout(seconds))
    got = hook.got("/hook")
    assert len(got) == n, [g["body"] for g in got]


def ms_of(iso):
    assert ISO.match(iso), iso
    dt = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(dt.timetuple()) * 1000 + dt.microsecond // 1000


def notice_id(rule, labels, event, at_ms):
    material = b"\0".join([rule.encode(),
                           json.dumps(labels, separators=(",", ":")).encode(),
                           event.encode(), str(at_ms).encode()])
    return hashlib.sha256(material).hexdigest()[:32]


def check_delivery(req, event):
    """The request of one notice: POST, JSON, and the idempotency key and
    correlation id of (rule, labels, event, started_at)."""
    body = json.loads(req["body"])
    assert req["method"] == "POST"
    assert req["headers"]["content-type"] == "application/json"
    key = notice_id(body["rule"], body["labels"], event,
                    ms_of(body["started_at"]))
    assert req["headers"]["idempotency-key"] == key
    assert req["headers"]["x-correlation-id"] == key
    return body


def scrape(port):
    r = httpx.get("http://127.0.0.1:%d/metrics" % port,
                  timeout=vh.timeout(5))
    assert r.status_code == 200
    return parse(r.text)


def ctl(redis, *args, stdin=None):
    if not (os.path.exists(CTL) and os.access(CTL, os.X_OK)):
        pytest.skip("vantagectl not built: %s (run make ctl)" % CTL)
    p = subprocess.run([CTL, "--redis", redis.address] + list(args),
                       input=stdin, capture_output=True, text=True,
                       timeout=vh.timeout(20))
    assert p.returncode == 0, p.stderr
    return p


def logged(w, msg, **fields):
    return [o for o in w.log_lines() if o.get("msg") == msg
            and all(o.get(k) == v for k, v in fields.items())]


def alert_counts(port, rule):
    """{event: count} of vantage_worker_alerts_total for rule, and its
    vantage_worker_alert_firing."""
    fams = scrape(port)
    return ({dict(k[1])["event"]: v for k, v in
             fams["vantage_worker_alerts_total"]["samples"].items()
             if dict(k[1])["rule"] == rule},
            value(fams, "vantage_worker_alert_firing", rule=rule))


# --------------------------------------------------------------------------
# error_rate

ERRORS = ("[alert errors]\nkind = error_rate\nthreshold = 0.5\n"
          "type = vendor\nwindow = 1m\nmin_attempts = 4\n"
          "severity = critical\n")


def test_error_rate_fires_then_resolves(worker_factory, target, hook, rc):
    """Four attempts answered 503 (one attempt a job): 4 of 4 failed, at
    the rule's min_attempts, fires.  Then successes: 4 of 8 is still 50%,
    4 of 9 is below it, and only 5 are sent, so the resolved notice says
    exactly that."""
    port = vh.free_port()
    w = worker_factory(conf(target, hook, ERRORS, metrics=port))
    target.default("/v", (503, {}, b"down"))

    before = int(time.time() * 1000)
    failed = [dispatch(w, "vendor", fid=i) for i in range(1, 5)]
    for jid in failed:
        wh.wait_job_state(rc, jid, "dead")

    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    started = body["started_at"]
    assert before <= ms_of(started) <= int(time.time() * 1000)
    assert body == {
        "status": "firing", "rule": "errors", "kind": "error_rate",
        "severity": "critical", "labels": {"type": "vendor"}, "value": 1,
        "threshold": 0.5, "started_at": started, "resolved_at": None,
        "summary": "4 of 4 attempts of job type vendor failed over 1m "
                   "(100%, threshold 50%)"}
    fams = scrape(port)
    assert value(fams, "vantage_worker_alert_firing", rule="errors") == 1
    assert value(fams, "vantage_worker_alerts_total", rule="errors",
                 event="fired") == 1

    target.default("/v", (200, {}, b"{}"))
    ok = [dispatch(w, "vendor", fid=10 + i) for i in range(5)]
    for jid in ok:
        wh.wait_job_state(rc, jid, "succeeded")

    _, req = notices(hook, 2)
    body = check_delivery(req, "resolved")
    resolved = body["resolved_at"]
    assert ms_of(started) < ms_of(resolved) <= int(time.time() * 1000)
    assert body == {
        "status": "resolved", "rule": "errors", "kind": "error_rate",
        "severity": "critical", "labels": {"type": "vendor"},
        "value": 4 / 9, "threshold": 0.5, "started_at": started,
        "resolved_at": resolved,
        "summary": "4 of 9 attempts of job type vendor failed over 1m "
                   "(44.44%, threshold 50%)"}

    quiet(hook, 2)
    fams = scrape(port)
    assert value(fams, "vantage_worker_alert_firing", rule="errors") == 0
    assert {dict(k[1])["event"]: v for k, v in
            fams["vantage_worker_alerts_total"]["samples"].items()} == \
        {"fired": 1, "resolved": 1}
    # the notices' own jobs are counted as any job's
    assert value(fams, "vantage_worker_attempts_total", type="alerts",
                 outcome="success") == 2

    fire, = logged(w, "alert firing")
    assert (fire["level"], fire["rule"], fire["labels"], fire["severity"],
            fire["value"], fire["threshold"], fire["notice"]) == \
        ("warn", "errors", '{"type":"vendor"}', "critical", "1", "0.5",
         "queued")
    assert fire["job"] == notice_id("errors", {"type": "vendor"}, "firing",
                                    ms_of(started))
    res, = logged(w, "alert resolved")
    assert (res["level"], res["value"], res["notice"]) == \
        ("info", "0.444444", "queued")


def test_error_rate_ignores_its_own_notices(worker_factory, target, hook,
                                            rc):
    """Without a filter the rule counts every job type but the one that
    delivers the notices: a receiver answering 503 adds no failure."""
    rules = ("[alert errors]\nkind = error_rate\nthreshold = 0.5\n"
             "min_attempts = 2\n"
             "[alert dead]\nkind = dlq_size\nthreshold = 1\n")
    hook.default("/hook", (503, {}, b""))
    w = worker_factory(conf(target, hook, rules))
    target.default("/v", (400, {}, b"no"))
    wh.wait_job_state(rc, dispatch(w, "vendor"), "dead")
    # dlq fires; its notice is retried on 503s, failures of type alerts
    vh.wait_for(lambda: len(hook.got("/hook")) >= 3, 10, interval=0.05,
                what="retried notices")
    time.sleep(vh.timeout(1))
    assert not logged(w, "alert firing", rule="errors")
    assert [json.loads(r["body"])["rule"] for r in hook.got("/hook")] == \
        ["dead"] * len(hook.got("/hook"))


# --------------------------------------------------------------------------
# dlq_size, and vantage_worker_jobs{state}

DLQ = "[alert dead]\nkind = dlq_size\nthreshold = 1\n"


@pytest.mark.parametrize("how", ["purge", "replay"])
def test_dlq_size_fires_and_resolves(worker_factory, worker_redis, target,
                                     hook, rc, how):
    port = vh.free_port()
    w = worker_factory(conf(target, hook, DLQ, metrics=port))
    target.default("/v", (400, {}, b"refused"))
    jid = dispatch(w, "vendor")
    wh.wait_job_state(rc, jid, "dead")

    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    assert body == {
        "status": "firing", "rule": "dead", "kind": "dlq_size",
        "severity": "warning", "labels": {}, "value": 1, "threshold": 1,
        "started_at": body["started_at"], "resolved_at": None,
        "summary": "1 job in the dead letters (threshold 1)"}
    fams = scrape(port)
    assert value(fams, "vantage_worker_jobs", state="dead") == 1
    assert value(fams, "vantage_worker_jobs", state="queued") == 0

    if how == "purge":
        ctl(worker_redis, "dlq", "purge", jid)
    else:
        target.default("/v", (200, {}, b"{}"))
        ctl(worker_redis, "dlq", "replay", jid)
        wh.wait_job_state(rc, jid, "succeeded")

    _, req = notices(hook, 2)
    res = check_delivery(req, "resolved")
    assert res == dict(body, status="resolved", value=0,
                       resolved_at=res["resolved_at"],
                       summary="0 jobs in the dead letters (threshold 1)")
    assert ms_of(res["resolved_at"]) > ms_of(body["started_at"])
    quiet(hook, 2)

    fams = scrape(port)
    assert value(fams, "vantage_worker_jobs", state="dead") == 0
    # the job, and the two notices
    assert value(fams, "vantage_worker_jobs", state="done") == \
        (3 if how == "replay" else 2)
    assert value(fams, "vantage_worker_jobs", state="inflight") == 0
    assert value(fams, "vantage_worker_jobs", state="delayed") == 0


def test_for_holds_the_rule_pending(worker_factory, target, hook, rc):
    """for = 800ms: the rule fires once the dead letter has been there
    that long, by the worker's clock (finished_ms is its too), and a rule
    whose for has not run out sends nothing."""
    rules = DLQ + "for = 800ms\n" + \
        "[alert later]\nkind = dlq_size\nthreshold = 1\nfor = 1h\n"
    w = worker_factory(conf(target, hook, rules))
    target.default("/v", (400, {}, b"refused"))
    jid = dispatch(w, "vendor")
    wh.wait_job_state(rc, jid, "dead")

    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    assert body["rule"] == "dead"
    assert ms_of(body["started_at"]) - \
        int(rc.hget("{vq}:job:" + jid, "finished_ms")) >= 800
    quiet(hook, 1)
    assert not logged(w, "alert firing", rule="later")


def test_slack_format(worker_factory, worker_redis, target, hook, rc):
    rules = DLQ + "severity = info\n"
    w = worker_factory(conf(target, hook, rules, alerting="format = slack\n"))
    target.default("/v", (400, {}, b"refused"))
    jid = dispatch(w, "vendor")
    wh.wait_job_state(rc, jid, "dead")

    req, = notices(hook, 1)
    body = json.loads(req["body"])
    started = re.match(r"^\*Started\*\n(.*)$",
                       body["blocks"][2]["fields"][4]["text"]).group(1)
    summary = "1 job in the dead letters (threshold 1)"
    assert body == {
        "text": "[FIRING] dead (info): " + summary,
        "blocks": [
            {"type": "header",
             "text": {"type": "plain_text", "text": "[FIRING] dead"}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": summary}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Kind*\ndlq_size"},
                {"type": "mrkdwn", "text": "*Severity*\ninfo"},
                {"type": "mrkdwn", "text": "*Value*\n1"},
                {"type": "mrkdwn", "text": "*Threshold*\n1"},
                {"type": "mrkdwn", "text": "*Started*\n" + started}]}]}
    assert req["headers"]["idempotency-key"] == \
        notice_id("dead", {}, "firing", ms_of(started))

    ctl(worker_redis, "dlq", "purge", jid)
    _, req = notices(hook, 2)
    body = json.loads(req["body"])
    fields = body["blocks"][2]["fields"]
    resolved = fields[5]["text"].split("\n")[1]
    assert ms_of(resolved) >= ms_of(started)
    summary = "0 jobs in the dead letters (threshold 1)"
    assert body["text"] == "[RESOLVED] dead (info): " + summary
    assert body["blocks"][0]["text"]["text"] == "[RESOLVED] dead"
    assert body["blocks"][1]["text"]["text"] == summary
    assert [f["text"] for f in fields] == [
        "*Kind*\ndlq_size", "*Severity*\ninfo", "*Value*\n0",
        "*Threshold*\n1", "*Started*\n" + started, "*Resolved*\n" + resolved]
    assert req["headers"]["idempotency-key"] == \
        notice_id("dead", {}, "resolved", ms_of(started))


# --------------------------------------------------------------------------
# breaker_open

def test_breaker_open_fires_and_resolves(worker_factory, target, hook, rc):
    rules = "[alert breaker]\nkind = breaker_open\ntarget = flaky\n"
    jobs = ("[target flaky]\nbreaker_failures = 2\nbreaker_cooldown = 1s\n\n"
            "[job flaky]\nconnector = http\ntarget = flaky\nurl = %s\n"
            "timeout = 1s\nmax_attempts = 1\n\n" % target.url("/flaky"))
    w = worker_factory(conf(target, hook, rules, jobs=jobs))
    target.default("/flaky", (503, {}, b""))
    for i in range(2):
        wh.wait_job_state(rc, dispatch(w, "flaky", fid=i + 1), "dead")

    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    assert body == {
        "status": "firing", "rule": "breaker", "kind": "breaker_open",
        "severity": "warning", "labels": {"target": "flaky"}, "value": 2,
        "threshold": 1, "started_at": body["started_at"],
        "resolved_at": None,
        "summary": "the breaker of target flaky is open"}

    # the probe, once the cool-down is over, succeeds and closes it
    target.default("/flaky", (200, {}, b"{}"))
    wh.wait_job_state(rc, dispatch(w, "flaky", fid=3), "succeeded")
    _, req = notices(hook, 2)
    res = check_delivery(req, "resolved")
    assert res == dict(body, status="resolved", value=0,
                       resolved_at=res["resolved_at"],
                       summary="the breaker of target flaky is closed")
    quiet(hook, 2)


# --------------------------------------------------------------------------
# oldest_job_age

def test_oldest_job_age_fires_and_resolves(worker_factory, target, hook,
                                           rc):
    """One attempt at a time (concurrency 1): while the target holds the
    first job for 3 s, its entry and the next one's wait in the stream."""
    rules = ("[alert backlog]\nkind = oldest_job_age\nthreshold = 1s\n"
             "stream = {vq}:jobs\nseverity = critical\n")
    jobs = ("[job slow]\nconnector = http\nurl = %s\ntimeout = 5s\n\n"
            % target.url("/slow"))
    text = conf(target, hook, rules, jobs=jobs, worker="concurrency = 1\n")
    w = worker_factory(text.replace("visibility_timeout = 6500ms",
                                    "visibility_timeout = 11s"))
    target.script("/slow", [("sleep", 3.0)])
    first = dispatch(w, "slow", fid=1)
    second = dispatch(w, "slow", fid=2)

    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    assert 1 <= body["value"] < 10
    assert body == {
        "status": "firing", "rule": "backlog", "kind": "oldest_job_age",
        "severity": "critical", "labels": {"stream": "{vq}:jobs"},
        "value": body["value"], "threshold": 1,
        "started_at": body["started_at"], "resolved_at": None,
        "summary": "the oldest job in {vq}:jobs is %gs old (threshold 1s)"
                   % body["value"]}

    # fired while the first job ran; its notice, a job itself, waited for
    # the one slot (docs/WORKER.md says so)
    wh.wait_job_state(rc, first, "succeeded")
    wh.wait_job_state(rc, second, "succeeded")
    assert ms_of(body["started_at"]) < \
        int(rc.hget("{vq}:job:" + first, "finished_ms"))
    _, req = notices(hook, 2)
    res = check_delivery(req, "resolved")
    assert res == dict(body, status="resolved", value=0,
                       resolved_at=res["resolved_at"],
                       summary="the oldest job in {vq}:jobs is 0s old "
                               "(threshold 1s)")


# --------------------------------------------------------------------------
# error_rate of one target

def test_error_rate_by_target(worker_factory, target, hook, rc):
    """target = crm reads target_attempts_total{target="crm"}: four
    failures on erp first, which would fire a rule counting them, send
    nothing; then 2 of 4 attempts to crm fail (fires), and one more
    success, 2 of 5, resolves."""
    port = vh.free_port()
    rules = ("[alert crm-errors]\nkind = error_rate\nthreshold = 0.5\n"
             "target = crm\nwindow = 1m\nmin_attempts = 4\n")
    jobs = "".join("[job %s]\nconnector = http\nurl = %s\ntimeout = 1s\n"
                   "max_attempts = 1\n\n" % (name, target.url("/" + name))
                   for name in ("crm", "erp"))
    w = worker_factory(conf(target, hook, rules, jobs=jobs, metrics=port))

    def run(job_type, status, fid):
        target.default("/" + job_type, (status, {}, b"{}"))
        wh.wait_job_state(rc, dispatch(w, job_type, fid=fid),
                          "succeeded" if status == 200 else "dead")

    for i in range(4):
        run("erp", 503, 1 + i)
    quiet(hook, 0)

    for i, status in enumerate((503, 503, 200, 200)):
        run("crm", status, 10 + i)
    req, = notices(hook, 1)
    body = check_delivery(req, "firing")
    started = body["started_at"]
    assert body == {
        "status": "firing", "rule": "crm-errors", "kind": "error_rate",
        "severity": "warning", "labels": {"target": "crm"}, "value": 0.5,
        "threshold": 0.5, "started_at": started, "resolved_at": None,
        "summary": "2 of 4 attempts to target crm failed over 1m "
                   "(50%, threshold 50%)"}
    assert alert_counts(port, "crm-errors") == ({"fired": 1}, 1)

    run("crm", 200, 20)
    _, req = notices(hook, 2)
    body = check_delivery(req, "resolved")
    assert ms_of(body["resolved_at"]) > ms_of(started)
    assert body == {
        "status": "resolved", "rule": "crm-errors", "kind": "error_rate",
        "severity": "warning", "labels": {"target": "crm"}, "value": 0.4,
        "threshold": 0.5, "started_at": started,
        "resolved_at": body["resolved_at"],
        "summary": "2 of 5 attempts to target crm failed over 1m "
                   "(40%, threshold 50%)"}
    quiet(hook, 2)
    fams = scrape(port)
    assert {dict(k[1])["target"]: v for k, v in
            fams["vantage_worker_target_attempts_total"]["samples"].items()
            if dict(k[1])["outcome"] == "dead"} == {"crm": 2, "erp": 4}
    assert alert_counts(port, "crm-errors") == \
        ({"fired": 1, "resolved": 1}, 0)


# --------------------------------------------------------------------------
# quota_share: the Salesforce and HubSpot emulators' usage headers

def quota_episode(w, hook, rc, port, job_type, body, rule, tgt, threshold,
                  new_day):
    """Two calls, the second one's answer at the threshold (the first
    one's below it): one firing notice; a new day at the vendor, a third
    call: one resolved notice.  Returns the (value, summary) pairs the
    notices said, for the caller to compare with the usage it set.  body
    has a %d for the call's number: a record of its own each time."""
    headers = [b"Content-Type\0application/json"]

    def call(fid):
        wh.wait_job_state(rc, dispatch(w, job_type, fid=fid, body=body % fid,
                                       headers=headers), "succeeded")

    call(1)
    quiet(hook, 0)
    call(2)
    req, = notices(hook, 1)
    fired = check_delivery(req, "firing")
    started = fired["started_at"]
    labels = {"target": tgt, "window": "daily"}
    assert fired == {
        "status": "firing", "rule": rule, "kind": "quota_share",
        "severity": "critical", "labels": labels, "value": fired["value"],
        "threshold": threshold, "started_at": started,
        "resolved_at": None, "summary": fired["summary"]}
    assert alert_counts(port, rule) == ({"fired": 1}, 1)

    new_day()
    call(3)
    _, req = notices(hook, 2)
    res = check_delivery(req, "resolved")
    assert ms_of(res["resolved_at"]) > ms_of(started)
    assert res == dict(fired, status="resolved", value=res["value"],
                       resolved_at=res["resolved_at"],
                       summary=res["summary"])
    quiet(hook, 2)
    assert alert_counts(port, rule) == ({"fired": 1, "resolved": 1}, 0)
    fams = scrape(port)
    assert value(fams, "vantage_worker_vendor_quota_ratio",
                 **labels) == res["value"]
    return (fired["value"], fired["summary"]), (res["value"],
                                                 res["summary"])


def test_quota_share_salesforce(sf, vault_key, worker_factory, worker_redis,
                                target, hook, rc):
    """Sforce-Limit-Info: api-usage=3999/5000, then 4000/5000: 80% is the
    threshold, at which the rule holds (the connector's own limit_share,
    90, lets the calls go); a new day, 1/5000, resolves it."""
    ctl(worker_redis, "vault", "put", "sf.key", "--key-file", vault_key,
        "--from-file", sf.jwt_key_file)
    port = vh.free_port()
    jobs = ("[vault]\nkey_file = %s\n\n[target sf]\nca_file = %s\n\n"
            "[connection acme-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
            "login_url = %s\nclient_id = %s\nusername = %s\n"
            "private_key = sf.key\napi_version = 62.0\ntarget = sf\n\n"
            "[job sf.create]\nconnector = salesforce\n"
            "connection = acme-sf\noperation = create\nobject = Contact\n"
            "timeout = 5s\nmax_attempts = 1\n\n"
            % (vault_key, sf.ca_file, sf.login_url, sf.consumer_key,
               sf.username))
    rules = ("[alert sf-quota]\nkind = quota_share\nthreshold = 0.8\n"
             "target = sf\nseverity = critical\n")
    w = worker_factory(conf(target, hook, rules, jobs=jobs, metrics=port)
                       .replace("visibility_timeout = 6500ms",
                                "visibility_timeout = 11s"))
    sf.set_limit(daily=5000, used=3998)

    fired, resolved = quota_episode(
        w, hook, rc, port, "sf.create", b'{"LastName":"Lovelace %d"}',
        "sf-quota", "sf", 0.8, lambda: sf.set_limit(used=0))
    assert fired == (4000 / 5000, "target sf has used 80% of its daily "
                     "allowance (threshold 80%)")
    assert resolved == (1 / 5000, "target sf has used 0.02% of its daily "
                        "allowance (threshold 80%)")
    assert sf.usage() == (1, 5000)


def test_quota_share_hubspot_daily(hs, vault_key, worker_factory,
                                   worker_redis, target, hook, rc):
    """X-HubSpot-RateLimit-Daily 10, -Daily-Remaining 9 then 8: 20% of
    the day's allowance fires the rule for window daily only (the burst
    and secondly windows, far from theirs, stay quiet); new_day(), 1 of
    10, resolves it."""
    ctl(worker_redis, "vault", "put", "hs.pat", "--key-file", vault_key,
        stdin=hs.token)
    worker_factory.secrets = (hs.token,)
    port = vh.free_port()
    jobs = ("[vault]\nkey_file = %s\n\n[target hs]\nca_file = %s\n\n"
            "[connection hs]\nvendor = hubspot\nauth = private_app\n"
            "token = hs.pat\nbase_url = %s\ntarget = hs\n\n"
            "[job hs.create]\nconnector = hubspot\nconnection = hs\n"
            "operation = create\nobject = contacts\ntimeout = 5s\n"
            "max_attempts = 1\n\n" % (vault_key, hs.ca_file, hs.url))
    rules = ("[alert hs-quota]\nkind = quota_share\nthreshold = 0.2\n"
             "target = hs\nseverity = critical\n")
    w = worker_factory(conf(target, hook, rules, jobs=jobs, metrics=port)
                       .replace("visibility_timeout = 6500ms",
                                "visibility_timeout = 11s"))
    hs.limits.configure("private", daily=10, burst=1000, interval_ms=10000,
                        secondly=1000)
    hs.limits.reset()

    fired, resolved = quota_episode(
        w, hook, rc, port, "hs.create",
        b'{"properties":{"email":"ada%d@example.com"}}', "hs-quota", "hs",
        0.2, hs.limits.new_day)
    assert fired == (2 / 10, "target hs has used 20% of its daily "
                     "allowance (threshold 20%)")
    assert resolved == (1 / 10, "target hs has used 10% of its daily "
                        "allowance (threshold 20%)")
    assert hs.count("/crm/v3/objects/contacts") == 3
    # the burst window's three calls of 1000: a label set of its own,
    # below the threshold
    assert value(scrape(port), "vantage_worker_vendor_quota_ratio",
                 target="hs", window="burst") == 3 / 1000


# --------------------------------------------------------------------------
# jwks_failing: the identity provider emulator

def fetch(w):
    with wh.FrameClient(w.socket_path) as c:
        r = c.request(FETCH, 7, [(T_IDP, "main"), (T_FETCH_KIND, "jwks")],
                      5.0)
    assert r.type == FETCH | REPLY, r
    return r


@pytest.mark.parametrize("how", ["500", "stopped"])
def test_jwks_failing_fires_and_resolves(worker_factory, pki, tmp_path,
                                         target, hook, how):
    """A key set loaded by a FETCH, then kept fresh by the worker's own
    refreshes (min_refresh 3 s: at 2.4 s, then after 1 s and 2 s of
    backoff, then every 3 s).  The provider answers 500 on /jwks (a key
    set URL with a query) or stops listening (a discovery issuer without
    a path): the third failure in a row fires, with the source label in
    its scheme, host, port and path form, although the rule's source is
    written as the section has it; the provider back, the next refresh
    succeeds and resolves it."""
    from idp import IdP
    idp = IdP(pki=pki, directory=str(tmp_path), max_age=1)
    try:
        port = vh.free_port()
        if how == "500":
            url = "%s/jwks?tenant=acme" % idp.url
            section = "jwks_url = %s\n" % url
            source = "%s/jwks" % idp.url
        else:
            url = idp.url
            section = "discovery = %s\n" % url
            source = "%s/" % idp.url
        jobs = ("[idp main]\n%sca_file = %s\nmin_refresh = 3s\n"
                "timeout = 1s\n\n" % (section, idp.ca_file))
        rules = ("[alert keys]\nkind = jwks_failing\nthreshold = 3\n"
                 "source = %s\nseverity = critical\n" % url)
        w = worker_factory(conf(target, hook, rules, jobs=jobs,
                                metrics=port))
        assert fetch(w).status == 200

        if how == "500":
            idp.fail("/jwks", "500")
        else:
            idp.stop()
        req, = notices(hook, 1, seconds=15)
        body = check_delivery(req, "firing")
        started = body["started_at"]
        assert body == {
            "status": "firing", "rule": "keys", "kind": "jwks_failing",
            "severity": "critical", "labels": {"source": source},
            "value": 3, "threshold": 3, "started_at": started,
            "resolved_at": None,
            "summary": "3 refreshes of the key set %s failed in a row "
                       "(threshold 3)" % source}
        assert alert_counts(port, "keys") == ({"fired": 1}, 1)
        fams = scrape(port)
        assert value(fams, "vantage_worker_jwks_consecutive_failures",
                     source=source) >= 3
        # the set is still served, stale once its time is over
        assert fetch(w).status == 200

        if how == "500":
            idp.up()
        else:
            idp.start()
        _, req = notices(hook, 2, seconds=15)
        res = check_delivery(req, "resolved")
        assert ms_of(res["resolved_at"]) > ms_of(started)
        assert res == dict(body, status="resolved", value=0,
                           resolved_at=res["resolved_at"],
                           summary="0 refreshes of the key set %s failed "
                                   "in a row (threshold 3)" % source)
        quiet(hook, 2)
        fams = scrape(port)
        assert value(fams, "vantage_worker_jwks_consecutive_failures",
                     source=source) == 0
        assert alert_counts(port, "keys") == ({"fired": 1, "resolved": 1}, 0)
    finally:
        idp.stop()


@pytest.mark.parametrize("how", ["moved", "removed"])
def test_jwks_failing_resolves_when_the_source_goes(worker_factory, pki,
                                                    tmp_path, target, hook,
                                                    how):
    """A key set that never loaded (no set: each FETCH after the 1 s
    backoff refreshes it, and nothing else does): three FETCHes, three
    failures, the rule fires.  A reload points [idp main] at another
    provider, or removes it: the old source's series goes with it, at
    once, and the rule resolves as a label set with no data (value
    null), with no FETCH meanwhile."""
    from idp import IdP
    bad = IdP(pki=pki, directory=str(tmp_path / "bad"), max_age=300)
    good = IdP(pki=pki, directory=str(tmp_path / "good"), max_age=300)
    try:
        port = vh.free_port()
        bad.fail("/jwks", "500")
        source = "%s/jwks" % bad.url

        def text(url):
            jobs = ("[idp main]\njwks_url = %s/jwks\nca_file = %s\n"
                    "min_refresh = 1s\ntimeout = 1s\n\n"
                    % (url, pki.ca_file)) if url else ""
            return conf(target, hook, "[alert keys]\nkind = jwks_failing\n"
                        "threshold = 3\n", jobs=jobs, metrics=port)

        w = worker_factory(text(bad.url))
        for i in range(3):
            if i:
                time.sleep(vh.timeout(1.1))
            assert fetch(w).status == 502
        assert bad.count("/jwks") == 3
        req, = notices(hook, 1)
        body = check_delivery(req, "firing")
        assert (body["labels"], body["value"]) == ({"source": source}, 3)

        w.write_config(text(good.url if how == "moved" else None))
        os.kill(w.pid, signal.SIGHUP)
        _, req = notices(hook, 2)
        res = check_delivery(req, "resolved")
        assert res == dict(body, status="resolved", value=None,
                           resolved_at=res["resolved_at"],
                           summary="no data: the series is gone")
        quiet(hook, 2)
        assert alert_counts(port, "keys") == ({"fired": 1, "resolved": 1}, 0)
        fams = scrape(port)
        assert fams["vantage_worker_jwks_consecutive_failures"][
            "samples"] == {}
        assert bad.count("/jwks") == 3

        if how == "moved":
            assert fetch(w).status == 200
            assert good.count("/jwks") == 1
            assert value(scrape(port),
                         "vantage_worker_jwks_consecutive_failures",
                         source="%s/jwks" % good.url) == 0
        else:
            assert fetch(w).status == 404
    finally:
        bad.stop()
        good.stop()


# --------------------------------------------------------------------------
# several workers, the cool-down, reminders, retried delivery

def test_two_workers_one_notice_per_transition(worker_factory, worker_redis,
                                               target, hook, rc):
    """Both workers see the same dead letters: each goes firing, one
    sends the notice; both resolve, one sends that."""
    a, b = worker_factory(conf(target, hook, DLQ), n=2)
    target.default("/v", (400, {}, b"refused"))
    jid = dispatch(a, "vendor")
    wh.wait_job_state(rc, jid, "dead")

    notices(hook, 1)
    for w in (a, b):
        vh.wait_for(lambda: logged(w, "alert firing"), 5, interval=0.05,
                    what="firing seen by %r" % w)
    quiet(hook, 1)
    assert sorted(o["notice"] for w in (a, b)
                  for o in logged(w, "alert firing")) == \
        ["queued", "suppressed"]

    ctl(worker_redis, "dlq", "purge", jid)
    _, req = notices(hook, 2)
    check_delivery(req, "resolved")
    for w in (a, b):
        vh.wait_for(lambda: logged(w, "alert resolved"), 5, interval=0.05,
                    what="resolve seen by %r" % w)
    quiet(hook, 2)
    assert sorted(o["notice"] for w in (a, b)
                  for o in logged(w, "alert resolved")) == \
        ["queued", "suppressed"]
    assert [json.loads(r["body"])["status"] for r in hook.got("/hook")] == \
        ["firing", "resolved"]


def test_flapping_notifies_once_per_cooldown(worker_factory, worker_redis,
                                             target, hook, rc):
    """Dead, purged, dead, purged, dead within the hour's cool-down: one
    firing notice and its resolved notice; the later firings are
    suppressed, and so are their resolves (no notice went out)."""
    port = vh.free_port()
    w = worker_factory(conf(target, hook, DLQ, metrics=port))
    target.default("/v", (400, {}, b"refused"))

    def die(fid):
        jid = dispatch(w, "vendor", fid=fid)
        wh.wait_job_state(rc, jid, "dead")
        return jid

    def firing(n):
        vh.wait_for(lambda: len(logged(w, "alert firing")) >= n, 5,
                    interval=0.05, what="firing #%d" % n)

    def resolved(n):
        vh.wait_for(lambda: len(logged(w, "alert resolved")) >= n, 5,
                    interval=0.05, what="resolved #%d" % n)

    for i in range(3):
        jid = die(i + 1)
        firing(i + 1)
        if i < 2:
            ctl(worker_redis, "dlq", "purge", jid)
            resolved(i + 1)

    quiet(hook, 2)
    assert [json.loads(r["body"])["status"] for r in hook.got("/hook")] == \
        ["firing", "resolved"]
    assert [o["notice"] for o in logged(w, "alert firing")] == \
        ["queued", "suppressed", "suppressed"]
    assert [o["notice"] for o in logged(w, "alert resolved")] == \
        ["queued", "suppressed"]
    fams = scrape(port)
    assert {dict(k[1])["event"]: v for k, v in
            fams["vantage_worker_alerts_total"]["samples"].items()} == \
        {"fired": 1, "resolved": 1, "suppressed": 3}
    assert value(fams, "vantage_worker_alert_firing", rule="dead") == 1


def test_reminders_and_a_suppressed_firing_after_the_cooldown(
        worker_factory, worker_redis, target, hook, rc):
    """remind = on, a cool-down of 1 s: a condition that keeps holding
    gets a reminder (status firing, the same started_at) once the lease
    ends, each with an id of its own."""
    w = worker_factory(conf(target, hook, DLQ,
                            alerting="cooldown = 1s\nremind = on\n"))
    target.default("/v", (400, {}, b"refused"))
    wh.wait_job_state(rc, dispatch(w, "vendor"), "dead")

    got = notices(hook, 3, seconds=15)
    bodies = [json.loads(r["body"]) for r in got]
    assert [b["status"] for b in bodies] == ["firing"] * 3
    assert len({b["started_at"] for b in bodies}) == 1
    keys = [r["headers"]["idempotency-key"] for r in got]
    assert keys[0] == notice_id("dead", {}, "firing",
                                ms_of(bodies[0]["started_at"]))
    assert len(set(keys)) == 3
    # spaced by the cool-down (a PX in Redis), not by the 200 ms interval;
    # the log lines follow the lease by a push's round trip
    lines = logged(w, "alert firing") + logged(w, "alert reminder")
    assert len(lines) >= 3
    times = [ms_of(o["ts"]) for o in lines[:3]]
    assert all(b - a >= 500 for a, b in zip(times, times[1:])), times


def test_delivery_is_retried_with_the_same_key(worker_factory, target, hook,
                                               rc):
    hook.script("/hook", [(503, {}, b""), (503, {}, b"")])
    w = worker_factory(conf(target, hook, DLQ))
    target.default("/v", (400, {}, b"refused"))
    wh.wait_job_state(rc, dispatch(w, "vendor"), "dead")

    got = notices(hook, 3)
    assert len({r["body"] for r in got}) == 1
    key = got[0]["headers"]["idempotency-key"]
    assert [r["headers"]["idempotency-key"] for r in got] == [key] * 3
    check_delivery(got[2], "firing")
    job = rc.hgetall("{vq}:job:" + key)
    wh.wait_job_state(rc, key, "succeeded", 5)
    assert job[b"type"] == b"alerts"
    assert rc.llen("{vq}:att:" + key) == 3
    quiet(hook, 3)


def test_reload_adds_alerting(worker_factory, target, hook, rc):
    """SIGHUP puts new rules in force, and the sampler they read runs
    without a [metrics] listener."""
    text = conf(target, hook, DLQ)
    w = worker_factory(text.split("[alerting]")[0])
    target.default("/v", (400, {}, b"refused"))
    wh.wait_job_state(rc, dispatch(w, "vendor"), "dead")
    time.sleep(vh.timeout(0.5))
    assert hook.got("/hook") == []

    w.write_config(text)
    os.kill(w.pid, signal.SIGHUP)
    req, = notices(hook, 1)
    assert json.loads(req["body"])["rule"] == "dead"


def test_rules_without_data_stay_quiet(worker_factory, target, hook, rc):
    """Families nothing has filled (no vendor quota read, no key set
    fetched, no attempt to that target), or that this build lacks: the
    rules load, see no data and send nothing."""
    port = vh.free_port()
    rules = ("[alert quota]\nkind = quota_share\nthreshold = 0.1\n"
             "[alert keys]\nkind = jwks_failing\nthreshold = 1\n"
             "[alert crm]\nkind = error_rate\nthreshold = 0.1\n"
             "target = vendor\nmin_attempts = 1\n")
    w = worker_factory(conf(target, hook, rules, metrics=port))
    wh.wait_job_state(rc, dispatch(w, "alerts"), "succeeded")
    quiet(hook, 1)
    assert json.loads(hook.got("/hook")[0]["body"]) == {}
    fams = scrape(port)
    assert {dict(k[1])["rule"]: v for k, v in
            fams["vantage_worker_alert_firing"]["samples"].items()} == \
        {"quota": 0, "keys": 0, "crm": 0}
    assert fams["vantage_worker_alerts_total"]["samples"] == {}


# --------------------------------------------------------------------------
# --check

HEAD = ("[worker]\nlisten = unix:/run/vantage/w.sock\nredis = 127.0.0.1:6379\n"
        "\n[job hook]\nconnector = http\nurl = https://hooks.example/x\n"
        "\n[job crm]\nconnector = http\nurl = https://crm.example/x\n")
HEAD_LINES = HEAD.count("\n")
ALERTING = "[alerting]\njob = hook\n"


def check(worker_bin, text):
    d = tempfile.mkdtemp(prefix="alert-check-")
    try:
        path = os.path.join(d, "worker.conf")
        vh.write_file(path, text, mode=0o644)
        return subprocess.run([worker_bin, "--check", "worker.conf"], cwd=d,
                              capture_output=True, text=True,
                              stdin=subprocess.DEVNULL,
                              timeout=vh.timeout(10))
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def rule(*lines):
    return "[alert r]\n" + "".join(l + "\n" for l in lines)


# (id, text after HEAD, line relative to HEAD's end, message)
BAD = [
    ("no-alerting", rule("kind = dlq_size", "threshold = 1"), 1,
     "[alert r]: needs an [alerting] section: its job delivers the "
     "notices"),
    ("alerting-no-job", "[alerting]\ninterval = 1s\n", 1,
     "job: missing in [alerting]"),
    ("alerting-named", "[alerting x]\njob = hook\n", 1,
     "[alerting x]: [alerting] takes no name"),
    ("alerting-unknown-job", "[alerting]\njob = nosuch\n", 2,
     "job: no section [job nosuch]: the notices are jobs of that type"),
    ("alerting-bad-interval", "[alerting]\njob = hook\ninterval = soon\n", 3,
     'interval: "soon" is not a duration'),
    ("alerting-interval-short", "[alerting]\njob = hook\ninterval = 5ms\n",
     3, 'interval: "5ms" is less than 10ms'),
    ("alerting-bad-cooldown", "[alerting]\njob = hook\ncooldown = 0\n", 3,
     'cooldown: "0" is less than 1ms'),
    ("alerting-format", "[alerting]\njob = hook\nformat = xml\n", 3,
     'format: "xml" is not json or slack'),
    ("alerting-remind", "[alerting]\njob = hook\nremind = yes\n", 3,
     'remind: "yes" is not on or off'),
    ("alerting-unknown-key", "[alerting]\njob = hook\nurl = x\n", 3,
     "url: unknown key in [alerting]"),
    ("alert-no-name", ALERTING + "[alert]\n", 3,
     "[alert]: needs a name: [alert <name>]"),
    ("alert-bad-name", ALERTING + "[alert a/b]\n", 3,
     '[alert a/b]: "a/b" is not a valid rule name: use 1 to 128 of A-Z a-z '
     "0-9 . _ -"),
    ("alert-twice", ALERTING + rule("kind = dlq_size", "threshold = 1")
     + rule("kind = dlq_size", "threshold = 1"), 6,
     "[alert r]: duplicate section, first at line %d" % (HEAD_LINES + 3)),
    ("unknown-kind", ALERTING + rule("kind = latency", "threshold = 1"), 4,
     'kind: "latency" is not one of error_rate, dlq_size, breaker_open, '
     "oldest_job_age, quota_share, jwks_failing"),
    ("no-kind", ALERTING + rule("threshold = 1"), 3,
     "kind: missing in [alert r]"),
    ("unknown-key", ALERTING + rule("kind = dlq_size", "threshold = 1",
                                    "labels = x"), 6,
     "labels: unknown key in [alert r]"),
    ("no-threshold", ALERTING + rule("kind = error_rate"), 3,
     "threshold: missing in [alert r]"),
    ("threshold-nan", ALERTING + rule("kind = error_rate",
                                      "threshold = high"), 5,
     'threshold: "high" is not a number'),
    ("threshold-sign", ALERTING + rule("kind = dlq_size",
                                       "threshold = -1"), 5,
     'threshold: "-1" is not a number'),
    ("rate-above-one", ALERTING + rule("kind = error_rate",
                                       "threshold = 5"), 5,
     'threshold: "5" is not a share more than 0 and at most 1 (e.g. 0.05 '
     "for 5%), as error_rate compares"),
    ("quota-zero", ALERTING + rule("kind = quota_share",
                                   "threshold = 0"), 5,
     'threshold: "0" is not a share more than 0 and at most 1 (e.g. 0.05 '
     "for 5%), as quota_share compares"),
    ("dlq-fraction", ALERTING + rule("kind = dlq_size",
                                     "threshold = 0.5"), 5,
     'threshold: "0.5" is not a whole number of 1 or more, as dlq_size '
     "compares"),
    ("age-not-duration", ALERTING + rule("kind = oldest_job_age",
                                         "threshold = 5x"), 5,
     'threshold: "5x" is not a duration from 1ms to 3650d: oldest_job_age '
     "compares ages"),
    ("breaker-threshold", ALERTING + rule("kind = breaker_open",
                                          "threshold = 1"), 5,
     "threshold: breaker_open takes none: it fires while a target's "
     "breaker is not closed"),
    ("bad-for", ALERTING + rule("kind = dlq_size", "threshold = 1",
                                "for = 5 minutes"), 6,
     'for: "5 minutes" is not a duration'),
    ("bad-window", ALERTING + rule("kind = error_rate", "threshold = 0.1",
                                   "window = 2w"), 6,
     'window: "2w" is not a duration'),
    ("window-not-rate", ALERTING + rule("kind = dlq_size", "threshold = 1",
                                        "window = 5m"), 6,
     "window: only error_rate takes a window, not dlq_size"),
    ("min-attempts-not-rate", ALERTING + rule(
        "kind = breaker_open", "min_attempts = 3"), 5,
     "min_attempts: only error_rate takes min_attempts, not breaker_open"),
    ("min-attempts-zero", ALERTING + rule("kind = error_rate",
                                          "threshold = 0.1",
                                          "min_attempts = 0"), 6,
     'min_attempts: "0" is less than 1'),
    ("two-filters", ALERTING + rule("kind = error_rate", "threshold = 0.1",
                                    "type = crm", "target = crm"), 7,
     "target: a rule takes one filter, and type is given at line %d"
     % (HEAD_LINES + 6)),
    ("filter-not-taken", ALERTING + rule("kind = dlq_size", "threshold = 1",
                                         "type = crm"), 6,
     "type: dlq_size takes no filter"),
    ("breaker-by-type", ALERTING + rule("kind = breaker_open",
                                        "type = crm"), 5,
     "type: breaker_open filters by target"),
    ("rate-by-stream", ALERTING + rule("kind = error_rate",
                                       "threshold = 0.1",
                                       "stream = {vq}:jobs"), 6,
     "stream: error_rate filters by type or target"),
    ("unknown-type", ALERTING + rule("kind = error_rate", "threshold = 0.1",
                                     "type = nosuch"), 6,
     "type: no section [job nosuch]"),
    ("unknown-target", ALERTING + rule("kind = breaker_open",
                                       "target = nosuch"), 5,
     "target: no target nosuch: neither a [target] nor the target of a "
     "job or a connection"),
    ("other-stream", ALERTING + rule("kind = oldest_job_age",
                                     "threshold = 1m",
                                     "stream = {vq}:dead"), 6,
     'stream: "{vq}:dead" is not a stream the worker reads: {vq}:jobs'),
    ("bad-severity", ALERTING + rule("kind = dlq_size", "threshold = 1",
                                     "severity = high"), 6,
     'severity: "high" is not critical, warning or info'),
]


@pytest.mark.parametrize("text,line,err", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_check_invalid(worker_bin, text, line, err):
    p = check(worker_bin, HEAD + text)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: worker.conf:%d: %s\n"
         % (HEAD_LINES + line, err))


def test_check_alerting_job_must_be_http(worker_bin, tmp_path):
    key = tmp_path / "vault.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    text = HEAD + ("[vault]\nkey_file = %s\n\n"
                   "[connection sf]\nvendor = salesforce\n"
                   "auth = jwt_bearer\n"
                   "login_url = https://login.salesforce.com\n"
                   "client_id = x\nusername = u@example.com\n"
                   "private_key = sf.key\n\n"
                   "[job sf.create]\nconnector = salesforce\nconnection = sf\n"
                   "operation = create\nobject = Contact\n\n"
                   "[alerting]\njob = sf.create\n" % key)
    p = check(worker_bin, text)
    assert (p.returncode, p.stderr) == \
        (1, "vantage-worker: worker.conf:%d: job: [job sf.create] uses the "
         "salesforce connector: the notices go out through an http job, "
         "whose url is the webhook\n" % text.count("\n"))


VALID = ALERTING + """interval = 250ms
cooldown = 10m
format = slack
remind = on

[alert a]
kind = error_rate
threshold = 0.05
window = 10m
min_attempts = 20
target = crm
for = 1m
severity = critical

[alert b]
kind = dlq_size
threshold = 10

[alert c]
kind = breaker_open

[alert d]
kind = oldest_job_age
threshold = 90s
stream = {vq}:jobs

[alert e]
kind = quota_share
threshold = 0.9
target = crm

[alert f]
kind = jwks_failing
threshold = 3
source = https://login.example.com/keys
severity = info
"""


def test_check_valid(worker_bin):
    p = check(worker_bin, HEAD + VALID)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: worker.conf: configuration is valid\n")


def test_worker_md_example_passes_check(worker_bin):
    """docs/WORKER.md's [alerting] block (fenced as conf: the ini blocks
    there make up the one file test_worker_config.py checks), after a
    [worker] section, and conf/vantage-worker.conf's commented example
    with its comment marks taken away."""
    with open(os.path.join(vh.REPO, "docs", "WORKER.md")) as f:
        block, = re.findall(r"^```conf\n(\[alerting\]\n.*?)^```", f.read(),
                            re.M | re.S)
    head = HEAD.split("\n[job hook]")[0] + "\n[job http.example]\n" \
        "connector = http\nurl = https://hooks.example/x\n\n"
    p = check(worker_bin, head + block.replace("# type ", "type "))
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: worker.conf: configuration is valid\n")

    with open(os.path.join(vh.REPO, "conf", "vantage-worker.conf")) as f:
        text = f.read()
    example = text[text.index("#[alerting]"):text.index("# The vendors")]
    example = re.sub(r"^#", "", example, flags=re.M)
    p = check(worker_bin, head + example)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: worker.conf: configuration is valid\n")
