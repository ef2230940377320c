"""connectors_bench.py -- real-time upserts through the worker's connectors.

Run by lua-free-scripts/bench-connectors.sh (which pins it); standalone:

    /usr/bin/python3 tests/bench/connectors_bench.py [--records N]
        [--sut-cpu 0] [--load-cpu 1] [--out FILE]

One stack: a redis-server (AOF, appendfsync always), the Salesforce and
HubSpot emulators in this process (HTTPS, the test CA), the real
vantage-worker with a [vault], a jwt_bearer Salesforce connection and a
private-app HubSpot connection.  The worker and Redis run on --sut-cpu;
this process (the load and both emulators, which stand for the vendors'
servers) on --load-cpu.

Four loads of --records records each, every one timed from the first
DISPATCH until the last job is in {vq}:done:
  sf.upsert          one Contact per job (PATCH .../ExtId__c/<value>)
  sf.col.upsert      200 per job (sObject Collections upsert)
  hs.upsert          one contact per job (batch/upsert with one input)
  hs.batch.upsert    100 per job
The HubSpot portal keeps its default limits (a private app: 100 calls per
10 s, the window emptied before each load), as HubSpot's do: hs.upsert is
paced by them, and the number of 429s the emulator answered shows whether
the worker kept to them.  A last load runs hs.upsert with the limits
lifted: the worker's own pace against the emulator.

Output: a markdown table (stdout and --out): records/s, jobs/s, the calls
the emulator served, 429s, dead jobs, and the worker's peak RSS (VmHWM).
These are figures against the emulators, which are Python: they bound
what the worker is asked to do, not what it could do against the vendors.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "tests", "fakes"))

import vantage_harness as vh                            # noqa: E402
import worker_harness as wh                             # noqa: E402
from worker_harness import (T_BODY, T_HEADER, T_JOB_TYPE,  # noqa: E402
                            T_TENANT)
from salesforce import Salesforce                       # noqa: E402
from hubspot import HubSpot                             # noqa: E402

CTL = os.path.join(REPO, "build", "vantagectl")
API = "62.0"


def conf_text(sf, hs, key_file):
    return wh.CONFIG_HEAD + (
        "concurrency = 64\nvisibility_timeout = 60s\n\n"
        "[vault]\nkey_file = %(key)s\n\n"
        "[target sf]\nca_file = %(sfca)s\nmax_concurrency = 16\n\n"
        "[target hs]\nca_file = %(hsca)s\nmax_concurrency = 8\n\n"
        "[connection bench-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
        "login_url = %(login)s\nclient_id = %(cid)s\nusername = %(user)s\n"
        "private_key = bench.sf.key\napi_version = %(api)s\ntarget = sf\n\n"
        "[connection bench-hs]\nvendor = hubspot\nauth = private_app\n"
        "token = bench.hs.token\nbase_url = %(hsurl)s\ntarget = hs\n\n"
        "[job sf.upsert]\nconnector = salesforce\nconnection = bench-sf\n"
        "operation = upsert\nobject = Contact\nexternal_id = ExtId__c\n"
        "timeout = 30s\n\n"
        "[job sf.col.upsert]\nconnector = salesforce\n"
        "connection = bench-sf\noperation = collections_upsert\n"
        "object = Contact\nexternal_id = ExtId__c\ntimeout = 30s\n\n"
        "[job hs.upsert]\nconnector = hubspot\nconnection = bench-hs\n"
        "operation = upsert\nobject = contacts\nid_property = email\n"
        "timeout = 30s\nmax_attempts = 20\n\n"
        "[job hs.batch.upsert]\nconnector = hubspot\n"
        "connection = bench-hs\noperation = batch_upsert\n"
        "object = contacts\nid_property = email\ntimeout = 30s\n"
        "max_attempts = 20\n"
        % {"key": key_file, "sfca": sf.ca_file, "hsca": hs.ca_file,
           "login": sf.login_url, "cid": sf.consumer_key,
           "user": sf.username, "api": API, "hsurl": hs.url})


def ctl(redis, args, stdin=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VANTAGE_")}
    p = subprocess.run([CTL, "--redis", redis.address] + args, input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    if p.returncode != 0:
        raise SystemExit("vantagectl %s: %s" % (args[:3],
                                                p.stderr.decode()))


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def records(kind, start, n):
    out = []
    for i in range(start, start + n):
        email = "bench.%d@example.com" % i
        if kind == "sf":
            out.append({"ExtId__c": email, "Email": email,
                        "FirstName": "Bench", "LastName": "Contact %d" % i})
        else:
            out.append({"email": email, "firstname": "Bench",
                        "lastname": "Contact %d" % i})
    return out


def run_load(w, rc, job_type, bodies):
    """Dispatches bodies (each a job), waits until all are done or dead;
    returns (seconds, dead)."""
    client = w.client()
    done0 = rc.zcard("{vq}:done")
    dead0 = rc.zcard("{vq}:dead")
    t0 = time.monotonic()
    for i, body in enumerate(bodies):
        r = client.dispatch(i + 1, [
            (T_JOB_TYPE, job_type), (T_TENANT, "bench"),
            (T_BODY, json.dumps(body).encode()),
            (T_HEADER, b"Content-Type\0application/json")], seconds=10)
        if r.status != 202:
            raise SystemExit("DISPATCH %s: %r" % (job_type, r))
    want = len(bodies)
    deadline = time.monotonic() + 900
    while True:
        finished = (rc.zcard("{vq}:done") - done0) + \
            (rc.zcard("{vq}:dead") - dead0)
        if finished >= want:
            break
        if time.monotonic() > deadline:
            raise SystemExit("%s: %d of %d finished after 900 s"
                             % (job_type, finished, want))
        time.sleep(0.02)
    return time.monotonic() - t0, rc.zcard("{vq}:dead") - dead0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--sut-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    os.sched_setaffinity(0, {args.load_cpu})
    base = tempfile.mkdtemp(prefix="vantage-bench-connectors-")
    pki = vh.TestPKI(base)
    redis = vh.RedisServer(base, appendonly=True).start()
    os.sched_setaffinity(redis.pid, {args.sut_cpu})
    sf = Salesforce(pki=pki, api_version=API)
    hs = HubSpot(pki=pki)
    w = None
    try:
        key_file = os.path.join(base, "vault.key")
        vh.write_file(key_file, os.urandom(32), mode=0o600)
        ctl(redis, ["vault", "put", "bench.sf.key", "--key-file", key_file,
                    "--from-file", sf.jwt_key_file])
        ctl(redis, ["vault", "put", "bench.hs.token", "--key-file",
                    key_file], stdin=hs.token.encode())
        w = wh.Worker(base, redis.address, name="bench-worker",
                      config=conf_text(sf, hs, key_file))
        w.start(seconds=15)
        os.sched_setaffinity(w.pid, {args.sut_cpu})
        rc = redis.client()

        n = args.records
        loads = [
            ("sf.upsert", [r for r in records("sf", 0, n)], 1),
            ("sf.col.upsert", [records("sf", n + i, 200)
                               for i in range(0, n, 200)], 200),
            ("hs.upsert", [r for r in records("hs", 0, n)], 1),
            ("hs.batch.upsert", [records("hs", n + i, 100)
                                 for i in range(0, n, 100)], 100),
            # the worker's own pace, the portal's limits lifted
            ("hs.upsert", [r for r in records("hs", 2 * n, n)], 1),
        ]
        rows = []
        for k, (job_type, bodies, per) in enumerate(loads):
            # each HubSpot load starts with the portal's 10 s window
            # empty, and no pause of the worker's left from the last one
            if job_type.startswith("hs") and k > 2:
                time.sleep(10.5)
            if k == len(loads) - 1:
                hs.limits.configure("private", burst=None)
            sf_calls, hs_calls = sf.count(), hs.count()
            hs429 = len([r for r in hs.requests()
                         if getattr(r, "status", None) == 429])
            secs, dead = run_load(w, rc, job_type, bodies)
            calls = (sf.count() - sf_calls) if job_type.startswith("sf") \
                else (hs.count() - hs_calls)
            got429 = len([r for r in hs.requests()
                          if getattr(r, "status", None) == 429]) - hs429
            recs = len(bodies) * per
            rows.append((job_type + (" (no limits)" if k == len(loads) - 1
                                     else ""), per, recs, secs, recs / secs,
                         len(bodies) / secs, calls, got429, dead))
        hwm = vm_hwm_kib(w.pid)
    finally:
        if w is not None:
            w.close()
        sf.stop()
        hs.stop()
        redis.close()

    lines = [
        "| load | records/job | records | seconds | records/s | jobs/s "
        "| vendor calls | 429s | dead |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %s | %d | %d | %.2f | %.0f | %.1f | %d | %d | %d |"
                     % r)
    lines.append("")
    lines.append("worker peak RSS (VmHWM): %d KiB; worker and Redis on cpu "
                 "%d, load and emulators on cpu %d"
                 % (hwm, args.sut_cpu, args.load_cpu))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
