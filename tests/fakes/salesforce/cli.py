"""cli.py -- the emulator on its own, for the demo and for poking at it:

    /usr/bin/python3 tests/fakes/salesforce --port 8444 --dir /tmp/sf \\
        [--username U] [--daily-limit N] [--used N] \\
        [--query-batch-size N] [--streaming-timeout S]

It writes ca.pem (its own test CA), jwt_key.pem (the connected app's
private key, mode 0600) and jwt_cert.pem (its certificate) and
consumer_secret (0600) into --dir, and prints one JSON line: login_url,
instance_url, cometd_url, ca_file, consumer_key, consumer_secret_file,
jwt_key_file, jwt_cert_file, username, user_id, org_id, api_version.  It
runs until SIGTERM or SIGINT.
"""

import argparse
import json
import os
import signal
import tempfile
import threading

from .server import Salesforce
from .store import SObjectType


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", help="where the key files and ca.pem go")
    ap.add_argument("--username", default="integration@vantage.example")
    ap.add_argument("--daily-limit", type=int, default=100000)
    ap.add_argument("--used", type=int, default=0)
    ap.add_argument("--query-batch-size", type=int, default=2000)
    ap.add_argument("--streaming-timeout", type=float, default=110.0)
    ap.add_argument("--contact-field", action="append", default=[],
                    metavar="NAME[:unique]",
                    help="a custom Contact field; :unique makes it a "
                         "unique external id (repeatable)")
    args = ap.parse_args(argv)
    d = args.dir or tempfile.mkdtemp(prefix="fake-sf-")
    os.makedirs(d, exist_ok=True)
    sf = Salesforce(directory=d, port=args.port, username=args.username,
                    daily_limit=args.daily_limit,
                    streaming_timeout=args.streaming_timeout)
    sf.set_limit(used=args.used)
    if args.contact_field:
        base = sf.org.type("Contact")
        names = [f.partition(":")[0] for f in args.contact_field]
        unique = [f.partition(":")[0] for f in args.contact_field
                  if f.partition(":")[2] == "unique"]
        sf.org.add_type(SObjectType(
            "Contact", "003", required=["LastName"],
            external_ids=sorted(base.external_ids),
            unique_external_ids=unique, email_fields=["Email"],
            fields=sorted(set(base.fields) | set(names)),
            name_fields=("FirstName", "LastName")))
    sf.query_batch_size = args.query_batch_size
    secret_file = os.path.join(d, "consumer_secret")
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(sf.consumer_secret + "\n")
    print(json.dumps({
        "login_url": sf.login_url, "instance_url": sf.instance_url,
        "cometd_url": sf.cometd_url, "ca_file": sf.ca_file,
        "consumer_key": sf.consumer_key,
        "consumer_secret_file": secret_file,
        "jwt_key_file": sf.jwt_key_file, "jwt_cert_file": sf.jwt_cert_file,
        "username": sf.username, "user_id": sf.user_id,
        "org_id": sf.org_id, "api_version": sf.api_version}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    sf.stop()
    return 0
