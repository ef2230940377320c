"""test_alerting.py -- vantage-worker's [alerting] and [alert] rules.

Their errors through `vantage-worker --check`: each names the file, the
line and the key.
"""

import os
import subprocess
import tempfile

import pytest

import vantage_harness as vh


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
