"""__main__.py -- the HubSpot emulator as a process of its own.

    /usr/bin/python3 tests/fakes/hubspot --port 8443 --dir /tmp/hs \\
        [--token TOKEN] [--client ID=SECRET_FILE] \\
        [--webhook-url URL [--webhook-ca FILE]] [--webhook-time-scale X]

writes ca.pem and client_secret (mode 0600, as the worker's
client_secret_file) into --dir and prints one JSON line: base_url,
ca_file, portal_id, the private app's token and app id, the OAuth app's
client_id, client_secret, client_secret_file, app_id and redirect_uri, a
fresh authorization_code and refresh_token, and the webhook target.
Each --client file holds the OAuth client's secret (less one trailing
newline), as the worker reads its client_secret_file.  A script drives
the running emulator with GET /_counts and POST
/_test/{fail,delay,drop,clear,expire,limits,flush} (JSON bodies; see
HubSpot.control()).  SIGTERM or SIGINT stops it.
"""

import argparse
import json
import os
import signal
import sys
import threading

if __package__ in (None, ""):
    # run as a directory: import the package from its parent, not the
    # package's own files as top-level modules
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == here:
        sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(here))
    from hubspot import HubSpot         # noqa: E402
    from hubspot import objects         # noqa: E402
else:
    from . import HubSpot
    from . import objects


def _client_arg(v):
    cid, eq, path = v.partition("=")
    if not cid or not eq or not path:
        raise argparse.ArgumentTypeError("%r is not ID=SECRET_FILE" % v)
    try:
        with open(path) as f:
            secret = f.read()
    except OSError as e:
        raise argparse.ArgumentTypeError("%s: %s" % (path, e.strerror))
    for nl in ("\r\n", "\n"):
        if secret.endswith(nl):
            secret = secret[:-len(nl)]
            break
    return cid, secret


def main():
    ap = argparse.ArgumentParser(prog="hubspot",
                                 description="HubSpot API emulator")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", help="where ca.pem and the certificate go")
    ap.add_argument("--untrusted", action="store_true",
                    help="a self-signed certificate, in no CA's name")
    ap.add_argument("--portal-id", type=int, default=62515)
    ap.add_argument("--token", help="the private app's token")
    ap.add_argument("--client", type=_client_arg, metavar="ID=SECRET_FILE",
                    help="the OAuth app's client id and secret")
    ap.add_argument("--redirect-uri",
                    default="https://localhost/oauth-callback")
    ap.add_argument("--webhook-url", help="where webhook batches go")
    ap.add_argument("--webhook-ca", help="CA file for an https webhook URL")
    ap.add_argument("--webhook-time-scale", type=float, default=1.0,
                    help="multiplies the retry delays (2**n minutes)")
    ap.add_argument("--property", action="append", default=[],
                    metavar="NAME[:unique]",
                    help="a custom contact property (repeatable)")
    args = ap.parse_args()

    d = args.dir or None
    if d:
        os.makedirs(d, exist_ok=True)
    cid, secret = args.client or (None, None)
    hs = HubSpot(directory=d, untrusted=args.untrusted, port=args.port,
                 portal_id=args.portal_id, private_app_token=args.token,
                 client_id=cid, client_secret=secret,
                 redirect_uri=args.redirect_uri,
                 webhook_url=args.webhook_url, webhook_ca=args.webhook_ca)
    hs.webhooks.time_scale = args.webhook_time_scale
    contacts = objects.object_type(hs, "contacts")
    for p in args.property:
        name, _, flag = p.partition(":")
        contacts.add_property(name, unique=(flag == "unique"))
    secret_file = os.path.join(hs.dir, "client_secret")
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(hs.oauth_app.client_secret + "\n")
    print(json.dumps({
        "base_url": hs.url, "ca_file": hs.ca_file,
        "portal_id": hs.portal_id,
        "private_app": {"token": hs.token,
                        "app_id": hs.private_app.app.app_id},
        "oauth_app": {"client_id": hs.oauth_app.client_id,
                      "client_secret": hs.oauth_app.client_secret,
                      "client_secret_file": secret_file,
                      "app_id": hs.oauth_app.app_id,
                      "redirect_uri": hs.oauth_app.redirect_uri,
                      "authorization_code": hs.authorization_code(),
                      "refresh_token": hs.refresh_token()},
        "webhook_url": hs.webhooks.target_url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    hs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
