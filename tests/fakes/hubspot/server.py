"""server.py -- HTTPS transport, routing and the order a call is handled in.

A call goes through, in order:
  1. the request log (every call but the /_counts and /_test/ controls);
  2. the faults a test set (delays, then a canned status or a dropped
     connection), before anything HubSpot would check;
  3. the route (404/405 when there is none);
  4. authentication (401), for the routes that need it;
  5. the app's rate limits (429), which every authenticated call counts
     against and whose X-HubSpot-RateLimit-* headers every such answer
     carries;
  6. the handler, which raises errors.ApiError for anything but success.
Every answer carries X-HubSpot-Correlation-Id, the same id as an error
body's correlationId.
"""

import http.server
import json
import re
import socket
import time
import traceback
import urllib.parse

from . import errors


class Request:
    """One call: method, path, query ({name: [values]}), headers (lower
    case names), body (bytes), cid (its correlation id), token (the Token
    that authenticated it, once it has)."""

    def __init__(self, method, target, headers, body):
        split = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = split.path
        self.query = urllib.parse.parse_qs(split.query,
                                           keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.cid = errors.new_correlation_id()
        self.token = None
        self.time = time.time()
        self._json = None

    def json(self):
        """The body as JSON, or ApiError 400 VALIDATION_ERROR."""
        if self._json is None:
            try:
                self._json = json.loads(self.body.decode("utf-8") or "null")
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise errors.invalid_json(e)
        return self._json

    def arg(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    def list_arg(self, name):
        """properties=a,b&properties=c -> ["a", "b", "c"]; None if absent"""
        if name not in self.query:
            return None
        out = []
        for v in self.query[name]:
            out += [s.strip() for s in v.split(",") if s.strip()]
        return out

    def bool_arg(self, name):
        return str(self.arg(name, "false")).lower() == "true"


class Router:
    """(method, pattern) -> handler; {name} in a pattern matches one path
    segment and is passed to the handler as a keyword."""

    def __init__(self):
        self.routes = []

    def add(self, method, pattern, handler, auth=True, search=False):
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        self.routes.append((method, re.compile(regex), handler, auth, search))

    def match(self, method, path):
        """(handler, params, auth, search), or ApiError 404/405"""
        allowed = False
        for m, regex, handler, auth, search in self.routes:
            found = regex.match(path)
            if found is None:
                continue
            if m != method:
                allowed = True
                continue
            params = {k: urllib.parse.unquote(v)
                      for k, v in found.groupdict().items()}
            return handler, params, auth, search
        if allowed:
            raise errors.error(405, "Method %s not allowed on %s"
                               % (method, path))
        raise errors.error(404, "No route for %s %s" % (method, path))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Vantage-HubSpot-emulator"

    def setup(self):
        # the handshake in the request's thread, not the accepting one;
        # headers and body go in two writes: no delayed-ACK stall between
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def send(self, req, status, body, headers=()):
        if isinstance(body, (dict, list)):
            if isinstance(body, dict) and "correlationId" in body \
                    and body["correlationId"] is None:
                body = dict(body, correlationId=req.cid)
            body = json.dumps(body).encode()
        body = body or b""
        # recorded before the answer leaves, so a test that has it sees it
        req.status = status
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.send_header("X-HubSpot-Correlation-Id", req.cid)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self):
        # libcurl sends a body of unknown length chunked
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip()
                           or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n",
                                                        b""):
                        pass        # trailers
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self):
        hs = self.server.hubspot
        body = self._body()
        req = Request(self.command, self.path,
                      {k.lower(): v for k, v in self.headers.items()}, body)
        req.status = None
        if req.path == "/_counts" or req.path.startswith("/_test/"):
            status, out = hs.control(req)
            return self.send(req, status, out)
        hs.log_request(req)
        fault = hs.take_fault(req)
        if fault is not None:
            if fault[0] == "close":
                return self.drop()
            _, status, out, headers = fault
            return self.send(req, status, out, headers)
        extra = []
        try:
            handler, params, needs_auth, search = hs.router.match(
                req.method, req.path)
            if needs_auth:
                req.token = hs.auth.authenticate(req.headers, req.query)
                extra, refusal = hs.limits.admit(req.token.app, search)
                if refusal is not None:
                    raise errors.ApiError(429, refusal)
            answer = handler(hs, req, **params)
        except errors.ApiError as e:
            return self.send(req, e.status, e.body, e.headers + extra)
        except Exception:
            # a bug in the emulator, not a HubSpot answer: kept for the
            # tests to see (HubSpot.internal_errors), and a 500 meanwhile
            hs.internal_errors.append(traceback.format_exc())
            return self.send(req, 500, errors.body(
                "internal error in the emulator", "INTERNAL_ERROR"), extra)
        status, out = answer[0], answer[1]
        headers = list(answer[2]) if len(answer) > 2 else []
        return self.send(req, status, out, headers + extra)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass
