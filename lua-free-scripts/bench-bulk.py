#!/usr/bin/python3
"""bench-bulk.py -- bench-bulk.sh's Python half.

    bench-bulk.py emulator --dir D --port P
        the Salesforce emulator (tests/fakes/salesforce) with its Contact
        external id indexed (tests/fakes/sf_extid_index.py: its own
        upsert scans every record), until SIGTERM; prints cli.py's JSON
        line first

    bench-bulk.py load --redis HOST:PORT --socket S --records N [--page 100]
        writes N contacts (ExtId__c b<run>-<i>) as pages of --page records
        to a Redis list, hands one bulk_upsert job (sf.bulk.upsert,
        {"from": <list>}) to the worker over its socket, waits until it
        has finished and prints one JSON line: records, seconds (dispatch
        to the job's finished_ms), state, result
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def emulator(args):
    from salesforce import Salesforce
    from sf_extid_index import index_external_ids
    os.makedirs(args.dir, exist_ok=True)
    sf = Salesforce(directory=args.dir, port=args.port, api_version="62.0",
                    daily_limit=10 ** 9)
    index_external_ids(sf)
    print(json.dumps({"login_url": sf.login_url,
                      "instance_url": sf.instance_url,
                      "ca_file": sf.ca_file,
                      "consumer_key": sf.consumer_key,
                      "jwt_key_file": sf.jwt_key_file,
                      "username": sf.username}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    sf.stop()
    return 0


def load(args):
    import redis
    import worker_harness as wh

    host, port = args.redis.rsplit(":", 1)
    rc = redis.Redis(host=host, port=int(port))
    run = "%d" % time.time_ns()
    key = "{vq}:in:bench-%s" % run
    pipe = rc.pipeline(transaction=False)
    page = []
    for i in range(args.records):
        page.append({"ExtId__c": "b%s-%d" % (run, i), "FirstName": "F%d" % i,
                     "LastName": "L%d" % i,
                     "Email": "u%d@example.com" % i, "Title": "Engineer"})
        if len(page) == args.page:
            pipe.rpush(key, json.dumps(page))
            page = []
    if page:
        pipe.rpush(key, json.dumps(page))
    pipe.execute()

    c = wh.FrameClient(args.socket)
    t0 = time.time()
    r = c.dispatch(1, [(wh.T_JOB_TYPE, "sf.bulk.upsert"),
                       (wh.T_TENANT, "bench"),
                       (wh.T_BODY, json.dumps({"from": key}).encode()),
                       (wh.T_HEADER, b"Content-Type\0application/json")])
    if r.status != 202:
        print(json.dumps({"error": "dispatch answered %s" % r.status}))
        return 1
    jid = r.get(wh.T_JOB_ID).decode()
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        j = {k.decode(): v.decode()
             for k, v in rc.hgetall("{vq}:job:" + jid).items()}
        if j.get("state") in ("succeeded", "dead"):
            break
        time.sleep(0.05)
    else:
        print(json.dumps({"error": "job %s did not finish" % jid}))
        return 1
    secs = int(j["finished_ms"]) / 1000.0 - t0
    rc.delete(key)
    print(json.dumps({"records": args.records, "seconds": round(secs, 3),
                      "state": j["state"],
                      "result": json.loads(j.get("result") or "null"),
                      "error": j.get("last_error")}))
    return 0 if j["state"] == "succeeded" else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("emulator")
    e.add_argument("--dir", required=True)
    e.add_argument("--port", type=int, default=0)
    ld = sub.add_parser("load")
    ld.add_argument("--redis", required=True)
    ld.add_argument("--socket", required=True)
    ld.add_argument("--records", type=int, required=True)
    ld.add_argument("--page", type=int, default=100)
    ld.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    return emulator(args) if args.cmd == "emulator" else load(args)


if __name__ == "__main__":
    sys.exit(main())
