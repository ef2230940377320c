"""server.py -- the emulator itself: one HTTPS server, its org and hooks.

    sf = Salesforce(pki=pki)            # or its own CA: sf.ca_file
    sf.login_url                        # https://localhost:<port>: the
                                        # login host (JWT aud)
    sf.instance_url                     # https://127.0.0.1:<port>: the
                                        # My Domain host (REST, Bulk, CometD)

Both names reach the same server; the Host header tells them apart, as
login.salesforce.com and <MyDomain>.my.salesforce.com do.  Paths:

    POST /services/oauth2/token         oauth.py
    GET  /services/data/                the versions (no auth, no limit
                                        header, not counted)
    *    /services/data/vNN.N/...       rest.py and bulk.py: Bearer token,
                                        counted against the daily
                                        allowance, Sforce-Limit-Info:
                                        api-usage=N/M on every answer
    POST /cometd/NN.N[/...]             streaming.py (Bearer token)
    GET  /_counts                       requests received by path (not
                                        counted, no vendor has it)

Test hooks: expire_tokens(), set_limit(daily=, used=), fail_next(n, status,
error_code, message, path=), throttle(calls, per_seconds), delay(seconds,
path=), lock_record(id), requests(path=), count(path), counts(),
reset_log(), publish_change(...), trim_events(keep), drop_streaming_
clients(), outbound_message(...), stop()/start().
"""

import datetime
import http.server
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from . import ids
from .bulk import Bulk
from .events import EventBus, Publisher
from .oauth import Auth, load_public_key
from .outbound import OutboundMessage, Rule
from .response import JSON, Response, error, json_response
from .rest import Rest
from .store import Org, SObjectType, WriteError
from .streaming import Bayeux, channel_names

_FAKES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _FAKES not in sys.path:
    sys.path.insert(0, _FAKES)
from fake_tls import make_ca                    # noqa: E402

_VERSION = re.compile(r"^v(\d{2,3}\.\d)$")
_COMETD = re.compile(r"^/cometd/(\d{2,3}\.\d)(/.*)?$")

VERSIONS = (("Winter '26", "65.0"), ("Spring '26", "66.0"),
            ("Summer '26", "67.0"), ("Winter '27", "68.0"))


def make_jwt_keys(directory):
    """The connected app's key pair: an RSA key (the client signs its
    assertions with it) and the self-signed certificate an admin uploads
    to the app.  Returns (key_file, cert_file)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         "vantage-connected-app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    key_file = os.path.join(directory, "jwt_key.pem")
    cert_file = os.path.join(directory, "jwt_cert.pem")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def _read_chunked(rfile):
    out = []
    while True:
        line = rfile.readline(65537)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(out)
        out.append(rfile.read(size))
        rfile.readline(3)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def _write(self, resp, rec):
        rec["status"] = resp.status
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers:
            self.send_header(k, v)
        if resp.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in resp.chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

    def _serve(self):
        sf = self.server.sf
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(self.rfile)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = {"method": self.command, "path": path, "query": url.query,
               "headers": headers,
               "body": body if len(body) <= 65536 else body[:65536],
               "body_size": len(body), "time": time.time(), "status": None}
        if sf.down:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/_counts" and self.command == "GET":
            return self._write(json_response(200, sf.counts()), rec)
        if path.startswith("/_test/ui/") and self.command == "POST":
            return self._write(sf.ui_write(path[len("/_test/ui/"):], body),
                               rec)
        with sf.lock:
            sf.log.append(rec)
        pause = sf._delay_for(path)
        if pause:
            time.sleep(pause)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            resp = sf._dispatch(self.command, path, query, headers, body)
        except Exception as e:          # an emulator bug: say so, loudly
            resp = error(500, "UNKNOWN_EXCEPTION",
                         "emulator error: %s: %s" % (type(e).__name__, e))
            sf.internal_errors.append(repr(e))
        if resp is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(resp, rec)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.sf.down:
            sock.close()
            raise OSError("down")
        return self.sf.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


class Salesforce:
    """The emulated org and its endpoints; see the module's docstring."""

    def __init__(self, pki=None, directory=None, port=0, untrusted=False,
                 api_version="68.0", consumer_key=None, consumer_secret=None,
                 jwt_cert=None, username="integration@vantage.example",
                 daily_limit=100000, platform_events=("Vantage_Sync__e",),
                 streaming_timeout=110.0):
        self.dir = directory or tempfile.mkdtemp(prefix="fake-sf-")
        if pki is not None and not untrusted:
            self.ca_file, cert, key = pki.ca_file, pki.cert_file, pki.key_file
        else:
            self.ca_file, cert, key = make_ca(self.dir, untrusted)
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.load_cert_chain(cert, key)
        self.api_version = api_version
        self.lock = threading.Lock()
        self.log = []
        self.internal_errors = []
        self.down = False
        self.ids = ids.IdFactory()
        self.org_id = self.ids.new("00D")
        self.org = Org(self.ids, self.org_id)
        for name in platform_events:
            self.define_platform_event(name)
        # the connected app
        self.consumer_key = consumer_key or \
            "3MVG9" + os.urandom(30).hex()[:80]
        self.consumer_secret = consumer_secret or os.urandom(32).hex()
        if jwt_cert is None:
            self.jwt_key_file, self.jwt_cert_file = make_jwt_keys(self.dir)
            with open(self.jwt_cert_file, "rb") as f:
                jwt_cert = f.read()
        else:
            self.jwt_key_file, self.jwt_cert_file = None, None
        self.auth = Auth(self.org_id, self.ids, self.consumer_key,
                         self.consumer_secret, load_public_key(jwt_cert))
        self.username = username
        self.user_id = self.auth.add_user(username)
        self.auth.run_as = username
        # limits and failures
        self.daily_limit = daily_limit
        self.used = 0
        self._fail = []                 # [n, status, code, message, path]
        self._delays = {}               # path prefix -> seconds
        self._throttle = None           # (calls, seconds)
        self._calls = []
        # the APIs
        self.query_batch_size = 2000
        self.bulk_query_page_size = 50000
        self.bus = EventBus()
        self.publisher = Publisher(self.bus, self.org)
        self.streaming = Bayeux(
            self.bus, self.auth,
            lambda: channel_names(self.org, ()), timeout=streaming_timeout)
        self.rest = Rest(self)
        self.bulk = Bulk(self)
        self.outbound = []
        self.port = port
        self.server = None
        self.thread = None
        self.start()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        assert self.server is None
        self.down = False
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.sf = self
        self.port = self.server.server_address[1]
        self.login_url = "https://localhost:%d" % self.port
        self.instance_url = "https://127.0.0.1:%d" % self.port
        self.auth.login_url = self.login_url
        self.auth.instance_url = self.instance_url
        self.auth.login_hosts = {"localhost:%d" % self.port, "localhost"}
        self.cometd_url = "%s/cometd/%s" % (self.instance_url,
                                            self.api_version)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.down = True
        self.streaming.drop_clients()
        for m in self.outbound:
            m.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    close = stop

    # -- org set-up --------------------------------------------------------

    def define_object(self, name, prefix, **kw):
        """A custom object (see store.SObjectType for the keywords)."""
        t = SObjectType(name, prefix, **kw)
        self.org.add_type(t)
        return t

    def define_platform_event(self, name, fields=None):
        return self.define_object(name, "e00", fields=fields,
                                  platform_event=True)

    def add_user(self, username, approved=True):
        return self.auth.add_user(username, approved)

    def add_validation_rule(self, object_name, message, fields, predicate):
        self.org.add_validation_rule(object_name, message, fields, predicate)

    def lock_record(self, record_id, locked=True):
        self.org.lock_record(record_id, locked)

    def access_token(self, username=None):
        """A valid access token, as a grant would issue it."""
        return self.auth.issue(username)

    def context(self, username=None, api="rest", client=None):
        """A WriteContext for writing to the org directly from a test."""
        from .store import WriteContext
        uid = self.auth.users[username] if username else self.user_id
        return WriteContext(uid, api, self.api_version, client)

    # -- test hooks --------------------------------------------------------

    def ui_write(self, object_name, body):
        """POST /_test/ui/<Object> {fields}: a record written by the org's
        user as Salesforce's own UI would (no API client: its change event
        names none), matched by Email when the type has one, else created.
        Not counted, not authenticated: Salesforce has nothing like it."""
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        t = self.org.type(object_name)
        if t is None or not isinstance(fields, dict):
            return json_response(404, {"error": "no such object"})
        ctx = self.context(api="ui")
        try:
            found = self.org.find(t, "Email", fields["Email"]) \
                if "Email" in fields else []
            if found:
                self.org.update(t, found[0], fields, ctx)
                return json_response(200, {"id": found[0], "created": False})
            return json_response(201, {"id": self.org.create(t, fields, ctx),
                                       "created": True})
        except WriteError as e:
            return json_response(400, {"error": str(e)})

    def expire_tokens(self):
        """Every access token issued so far stops working (401
        INVALID_SESSION_ID); new grants work."""
        self.auth.expire_all()

    def set_limit(self, daily=None, used=None):
        with self.lock:
            if daily is not None:
                self.daily_limit = daily
            if used is not None:
                self.used = used

    def usage(self):
        with self.lock:
            return self.used, self.daily_limit

    def fail_next(self, n, status=503, error_code="SERVER_UNAVAILABLE",
                  message="Server unavailable", path="/services/data/",
                  body=None):
        """The next n requests under path answer status with
        [{"message", "errorCode"}] (or body, bytes or JSON-able, when
        given), before authentication and without counting against the
        allowance."""
        with self.lock:
            self._fail.append([n, status, error_code, message, path, body])

    def throttle(self, calls=None, per_seconds=1.0):
        """At most calls REST requests per per_seconds; the rest answer 403
        REQUEST_LIMIT_EXCEEDED.  None lifts it."""
        with self.lock:
            self._throttle = None if calls is None else (calls, per_seconds)
            self._calls = []

    def delay(self, seconds, path="/"):
        """Every request under path waits seconds first (0 lifts it)."""
        with self.lock:
            if seconds:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def _delay_for(self, path):
        with self.lock:
            return max([s for p, s in self._delays.items()
                        if path.startswith(p)] or [0])

    def requests(self, path=None, method=None):
        """Logged requests whose path starts with path."""
        with self.lock:
            return [r for r in self.log
                    if (path is None or r["path"].startswith(path))
                    and (method is None or r["method"] == method)]

    def count(self, path=None, method=None):
        return len(self.requests(path, method))

    def counts(self):
        out = {}
        with self.lock:
            for r in self.log:
                out[r["path"]] = out.get(r["path"], 0) + 1
        return out

    def reset_log(self):
        with self.lock:
            self.log = []

    def publish_change(self, entity, record_ids, change_type, **kw):
        """Injects a change event (see events.Publisher.publish_change)."""
        return self.publisher.publish_change(entity, record_ids, change_type,
                                             **kw)

    def trim_events(self, keep=0):
        self.bus.trim(keep)

    def drop_streaming_clients(self):
        self.streaming.drop_clients()

    def outbound_message(self, object_name, fields, endpoint_url, rule=None,
                         **kw):
        """An outbound message definition (outbound.OutboundMessage);
        rule=("CREATE", "UPDATE") also sends it on those writes."""
        m = OutboundMessage(self, object_name, fields, endpoint_url, **kw)
        self.outbound.append(m)
        if rule:
            self.org.listeners.append(Rule(m, rule))
        return m

    # -- dispatch ----------------------------------------------------------

    def _injected(self, path):
        with self.lock:
            for f in self._fail:
                if f[0] > 0 and path.startswith(f[4]):
                    f[0] -= 1
                    n, status, code, message, _, body = f
                    if body is None:
                        return json_response(status, [{"message": message,
                                                       "errorCode": code}])
                    if isinstance(body, bytes):
                        return Response(status, body, JSON)
                    return json_response(status, body)
        return None

    def _limit_header(self):
        with self.lock:
            return ("Sforce-Limit-Info",
                    "api-usage=%d/%d" % (self.used, self.daily_limit))

    def _session(self, headers):
        auth = headers.get("authorization") or ""
        m = re.match(r"^(?:Bearer|OAuth)\s+(\S+)$", auth)
        return self.auth.session(m.group(1)) if m else None

    def _dispatch(self, method, path, query, headers, body):
        if path == "/services/oauth2/token":
            injected = self._injected(path)
            if injected is not None:
                return injected
            if method != "POST":
                return json_response(405, {"error": "invalid_request",
                                           "error_description":
                                           "must use HTTP POST"})
            form = {k: v[0] for k, v in urllib.parse.parse_qs(
                body.decode("utf-8", "replace"),
                keep_blank_values=True).items()}
            status, answer = self.auth.token(form,
                                             headers.get("authorization"),
                                             headers.get("host"))
            return json_response(status, answer,
                                 [("Cache-Control", "no-cache,"
                                   "must-revalidate,max-age=0,no-store,"
                                   "private")])
        if path.rstrip("/") == "/services/data" and method == "GET":
            return json_response(200, [
                {"label": label, "url": "/services/data/v%s" % v,
                 "version": v} for label, v in VERSIONS])
        if path.startswith("/services/data/"):
            return self._rest(method, path, query, headers, body)
        m = _COMETD.match(path)
        if m and method == "POST":
            return self._cometd(path, headers, body)
        if path.startswith("/cometd"):
            return json_response(400, [{
                "channel": "/meta/handshake", "successful": False,
                "error": "400::API version in the URI is mandatory. URI "
                         "format: '/cometd/%s'" % self.api_version}])
        return error(404, "NOT_FOUND", "The requested resource does not "
                     "exist")

    def _rest(self, method, path, query, headers, body):
        parts = path[len("/services/data/"):].split("/")
        injected = self._injected(path)
        if injected is not None:
            injected.headers.append(self._limit_header())
            return injected
        m = _VERSION.match(parts[0])
        if not m or float(m.group(1)) < 20.0:
            return error(404, "NOT_FOUND", "The requested resource does not "
                         "exist")
        version = m.group(1)
        session = self._session(headers)
        if session is None:
            r = error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            r.headers += [("WWW-Authenticate", "Token"),
                          self._limit_header()]
            return r
        with self.lock:
            if self.used >= self.daily_limit:
                refused = ("TotalRequests Limit exceeded.")
            else:
                refused = None
                self.used += 1
            if refused is None and self._throttle is not None:
                calls, per = self._throttle
                now = time.monotonic()
                self._calls = [t for t in self._calls if now - t < per]
                if len(self._calls) >= calls:
                    refused = "ConcurrentPerOrgLongTxn Limit exceeded."
                else:
                    self._calls.append(now)
        if refused:
            r = error(403, "REQUEST_LIMIT_EXCEEDED", refused)
            r.headers.append(self._limit_header())
            return r
        resp = self.rest.handle(method, parts[1:], query, headers, body,
                                session, version)
        resp.headers.append(self._limit_header())
        return resp

    def _cometd(self, path, headers, body):
        injected = self._injected(path)
        if injected is not None:
            return injected
        try:
            msgs = json.loads(body or b"[]")
        except ValueError:
            return json_response(400, [{"successful": False,
                                        "error": "400::Invalid JSON"}])
        if isinstance(msgs, dict):
            msgs = [msgs]
        if not isinstance(msgs, list):
            return json_response(400, [{"successful": False,
                                        "error": "400::Invalid message"}])
        return json_response(200, self.streaming.handle(
            msgs, self._session(headers)))
