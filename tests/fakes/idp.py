"""idp.py -- an OpenID Connect identity provider for the worker's tests.

A ThreadingHTTPServer over HTTPS on a free 127.0.0.1 port, with a
certificate from a test CA (tests/integration/vantage_harness.TestPKI's
files, or a CA of its own written to a temporary directory), or an
untrusted self-signed certificate (untrusted=True):

    /.well-known/openid-configuration  issuer, jwks_uri,
                                       introspection_endpoint, token_endpoint
    /jwks                              the public keys (RSA and EC, made with
                                       cryptography), Cache-Control max-age
    /introspect                        RFC 7662: POST token=..., client
                                       authenticated by client_secret_basic or
                                       client_secret_post
    /token                             RFC 6749 section 4.4: POST
                                       grant_type=client_credentials
                                       [&scope=...], the client authenticated
                                       as for /introspect; an RS256 JWT
                                       access token for an hour, signed with
                                       the newest RSA key

    idp = IdP()                        # its own CA; idp.ca_file, idp.url
    idp.rotate()                       # a new RSA key with a new kid
                                       # (no two instances share a kid)
    idp.retire(kid)                    # removes one
    idp.max_age = 2                    # the next /jwks's Cache-Control
    idp.add_token("tok", sub="u1", scope="read", active=True)
    idp.add_token("t2", exp=False)     # an active answer without exp
    idp.fail("/jwks", "500")           # or "down", "invalid", ("delay", 2.0)
    idp.fail("/jwks", None)            # answers again
    idp.count("/jwks")                 # requests received on that path
    idp.requests("/introspect")        # what they carried (auth parsed)
    idp.introspected("tok")            # /introspect requests about "tok"
    idp.access_token("vantage", "read")  # what /token issues to a client

"down" closes each connection as soon as it is accepted, before TLS
(the client sees a reset or EOF); idp.stop() stops listening altogether
(connection refused) and idp.start() listens again on the same port.
The tests import it; it also runs on its own:

    /usr/bin/python3 tests/fakes/idp.py --port 8443 --dir /tmp/idp \
        [--token TOKEN=SUB[:SCOPE[:EXP]]]... [--client ID=SECRET_FILE]...

which writes ca.pem into --dir and prints, as one JSON line, the issuer
URL, ca_file, the client ids and the active tokens.  Each --token is an
active token (EXP in Unix seconds, default an hour from the start);
without one, "demo-active-token" is.  Each --client is a client that may
introspect and get tokens from /token, its secret the file's content less
one trailing newline; without one, the client "vantage" with the secret in
IdP.__init__.  Any other token is {"active": false}, the JWTs of /token
too: they are to be verified against /jwks.  GET /_counts (no provider
has it, and it is not counted) answers the requests received so far by
path, e.g. {"/introspect": 3}, so that a script can see what reached the
provider.  Standard library and python3-cryptography only.
"""

import argparse
import base64
import http.server
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from fake_tls import make_ca                    # tests/fakes, beside us


WELL_KNOWN = "/.well-known/openid-configuration"


def _b64u(n, length=None):
    if length is None:
        length = (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")) \
        .rstrip(b"=").decode()


def _b64u_bytes(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # the handshake in the request's thread, not the accepting one
        # headers and body go in two writes: no delayed-ACK stall between
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _serve(self):
        idp = self.server.idp
        path = self.path.split("?")[0]
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {"method": self.command, "path": path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body, "time": time.time()}
        if idp.down:
            # a connection kept open from before: it goes down too
            mode = "close"
        elif path == "/_counts":
            mode = None
        else:
            with idp.lock:
                idp.log.append(rec)
                mode = idp.modes.get(path)
        if isinstance(mode, tuple) and mode[0] == "delay":
            time.sleep(mode[1])
            mode = None
        if mode == "500":
            return self._send(500, b'{"error":"server_error"}')
        if mode == "invalid":
            return self._send(200, b'{"keys": [ this is not JSON',
                              [("Cache-Control", "max-age=%d" %
                                idp.max_age)])
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/_counts" and self.command == "GET":
            return self._send(200, idp.counts())
        if path == WELL_KNOWN and self.command == "GET":
            return self._send(200, idp.discovery_document())
        if path == "/jwks" and self.command == "GET":
            headers = []
            if idp.max_age is not None:
                headers.append(("Cache-Control",
                                "public, max-age=%d" % idp.max_age))
            return self._send(200, idp.jwks(), headers)
        if path == "/introspect" and self.command == "POST":
            return self._introspect(idp, rec)
        if path == "/token" and self.command == "POST":
            return self._token(idp, rec)
        return self._send(404, b'{"error":"not_found"}')

    def _form(self, rec):
        form = urllib.parse.parse_qs(rec["body"].decode("ascii", "replace"),
                                     keep_blank_values=True)
        rec["form"] = {k: v[0] for k, v in form.items()}
        return rec["form"]

    def _client(self, idp, rec, form):
        """The client's id when it authenticated as one of idp.clients,
        by client_secret_basic or client_secret_post; else None.  What it
        sent goes into rec["client"]."""
        auth = rec["headers"].get("authorization", "")
        client = None
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            cid, _, secret = raw.partition(":")
            # RFC 6749 section 2.3.1: each part form-urlencoded first
            client = ("client_secret_basic", urllib.parse.unquote_plus(cid),
                      urllib.parse.unquote_plus(secret))
        elif "client_id" in form:
            client = ("client_secret_post", form.get("client_id"),
                      form.get("client_secret"))
        rec["client"] = client
        if client is None or idp.clients.get(client[1]) != client[2]:
            return None
        return client[1]

    def _invalid_client(self, headers=()):
        return self._send(401, b'{"error":"invalid_client"}',
                          [("WWW-Authenticate", 'Basic realm="idp"')]
                          + list(headers))

    def _introspect(self, idp, rec):
        form = self._form(rec)
        if self._client(idp, rec, form) is None:
            return self._invalid_client()
        claims = idp.tokens.get(form.get("token"))
        if claims is None or not claims.get("active"):
            return self._send(200, {"active": False})
        return self._send(200, claims)

    def _token(self, idp, rec):
        # RFC 6749 sections 4.4 and 5: the client authenticates first;
        # every answer is no-store, since a success carries a credential
        no_store = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        form = self._form(rec)
        client_id = self._client(idp, rec, form)
        if client_id is None:
            return self._invalid_client(no_store)
        grant = form.get("grant_type")
        if not grant:
            return self._send(400, {"error": "invalid_request",
                                    "error_description":
                                    "grant_type is missing"}, no_store)
        if grant != "client_credentials":
            return self._send(400, {"error": "unsupported_grant_type"},
                              no_store)
        scope = form.get("scope") or None
        token = idp.access_token(client_id, scope)
        if token is None:
            return self._send(500, {"error": "server_error",
                                    "error_description":
                                    "no RSA key to sign with"}, no_store)
        answer = {"access_token": token, "token_type": "Bearer",
                  "expires_in": idp.token_lifetime}
        if scope is not None:
            answer["scope"] = scope
        return self._send(200, answer, no_store)

    do_GET = do_POST = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.idp.down:
            # accepted and closed at once: no TLS, no HTTP
            sock.close()
            raise OSError("down")
        return self.idp.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


class IdP:
    """The identity provider; see the module's docstring."""

    def __init__(self, pki=None, directory=None, untrusted=False, port=0,
                 max_age=300, clients=None):
        self.dir = directory or tempfile.mkdtemp(prefix="idp-")
        if pki is not None and not untrusted:
            self.ca_file, cert, key = pki.ca_file, pki.cert_file, pki.key_file
        else:
            self.ca_file, cert, key = make_ca(self.dir, untrusted,
                                              "Vantage IdP test CA")
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.load_cert_chain(cert, key)
        self.lock = threading.Lock()
        self.log = []
        self.modes = {}
        self.down = False
        self.max_age = max_age
        self.token_lifetime = 3600      # seconds, of /token's tokens
        self.clients = dict(clients or {"vantage": "s3cr3t-client+/="})
        self.tokens = {}
        self.keys = []          # [(kid, private key)]
        self._n = 0
        self.rotate()
        self.rotate(kind="ec")
        self.port = port
        self.server = None
        self.thread = None
        self.start()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        """Listens (again, on the same port once it has one)."""
        assert self.server is None
        self.down = False
        self.server = _Server(("127.0.0.1", self.port), _Handler,
                              bind_and_activate=True)
        self.server.idp = self
        self.port = self.server.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.issuer = self.url
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening: connections are refused, and those kept open
        are closed at their next request."""
        self.down = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    close = stop

    # -- keys --------------------------------------------------------------

    def rotate(self, kind="rsa"):
        """Adds a key with a new kid, unique across IdP instances too;
        returns the kid."""
        self._n += 1
        kid = "%s-%d-%s" % (kind, self._n, os.urandom(4).hex())
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537,
                                           key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        with self.lock:
            self.keys.append((kid, key))
        return kid

    def retire(self, kid):
        with self.lock:
            self.keys = [(k, v) for k, v in self.keys if k != kid]

    def kids(self):
        with self.lock:
            return [k for k, _ in self.keys]

    def private_key(self, kid):
        with self.lock:
            return dict(self.keys)[kid]

    def jwks(self):
        out = []
        with self.lock:
            keys = list(self.keys)
        for kid, key in keys:
            pub = key.public_key().public_numbers()
            if isinstance(key, rsa.RSAPrivateKey):
                out.append({"kty": "RSA", "kid": kid, "use": "sig",
                            "alg": "RS256", "n": _b64u(pub.n),
                            "e": _b64u(pub.e)})
            else:
                out.append({"kty": "EC", "kid": kid, "use": "sig",
                            "alg": "ES256", "crv": "P-256",
                            "x": _b64u(pub.x, 32), "y": _b64u(pub.y, 32)})
        return {"keys": out}

    def discovery_document(self):
        return {"issuer": self.issuer,
                "jwks_uri": self.url + "/jwks",
                "introspection_endpoint": self.url + "/introspect",
                "token_endpoint": self.url + "/token",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"]}

    # -- introspection -----------------------------------------------------

    def add_token(self, token, active=True, sub="user-1", scope="read",
                  client_id="advisor-app", exp=None, **extra):
        """The answer /introspect gives for token: {"active": false}, or
        sub, scope, client_id, exp (default an hour from now; False: no
        exp member at all) and the extra members."""
        claims = {"active": active}
        if active:
            claims.update({"sub": sub, "scope": scope, "client_id": client_id})
            if exp is not False:
                claims["exp"] = exp or int(time.time()) + 3600
            claims.update(extra)
        self.tokens[token] = claims

    def access_token(self, client_id, scope=None):
        """The JWT /token issues to client_id: RS256, signed with the
        newest RSA key (its kid in the header); iss, sub and client_id,
        scope when given, iat and exp (token_lifetime later).  None when
        no RSA key is left."""
        with self.lock:
            rsa_keys = [(k, v) for k, v in self.keys
                        if isinstance(v, rsa.RSAPrivateKey)]
        if not rsa_keys:
            return None
        kid, key = rsa_keys[-1]
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": client_id,
                  "client_id": client_id}
        if scope is not None:
            claims["scope"] = scope
        claims.update({"iat": now, "exp": now + self.token_lifetime})
        header = {"alg": "RS256", "typ": "JWT", "kid": kid}
        signing_input = b".".join(
            _b64u_bytes(json.dumps(part, separators=(",", ":")).encode())
            for part in (header, claims))
        signature = key.sign(signing_input, padding.PKCS1v15(),
                             hashes.SHA256())
        return (signing_input + b"." + _b64u_bytes(signature)).decode()

    def introspected(self, token):
        """How many /introspect requests asked about token."""
        with self.lock:
            return sum(1 for r in self.log if r["path"] == "/introspect"
                       and r.get("form", {}).get("token") == token)

    # -- failures and counters ---------------------------------------------

    def fail(self, path, mode):
        """mode: None (answer), "down" (every path: accept and close),
        "500", "invalid" (a body that is not JSON), "close" (close the
        connection after the request), or ("delay", seconds)."""
        if mode == "down":
            self.down = True
            return
        if mode is None and path is None:
            self.down = False
        with self.lock:
            if mode is None:
                self.modes.pop(path, None)
            else:
                self.modes[path] = mode

    def up(self):
        """Undoes every failure mode."""
        self.down = False
        with self.lock:
            self.modes.clear()

    def count(self, path):
        with self.lock:
            return sum(1 for r in self.log if r["path"] == path)

    def counts(self):
        """{path: requests received}, for every path asked."""
        out = {}
        with self.lock:
            for r in self.log:
                out[r["path"]] = out.get(r["path"], 0) + 1
        return out

    def requests(self, path=None):
        with self.lock:
            return [r for r in self.log if path is None or r["path"] == path]

    def reset_counts(self):
        with self.lock:
            self.log = []


def _token_arg(v):
    """TOKEN=SUB[:SCOPE[:EXP]] -> (token, sub, scope, exp or None)"""
    token, eq, rest = v.partition("=")
    if not token or not eq or not rest:
        raise argparse.ArgumentTypeError(
            "%r is not TOKEN=SUB[:SCOPE[:EXP]]" % v)
    sub, _, rest = rest.partition(":")
    scope, _, exp = rest.partition(":")
    try:
        exp = int(exp) if exp else None
    except ValueError:
        raise argparse.ArgumentTypeError("%r: EXP is not Unix seconds" % v)
    return token, sub, scope or "read", exp


def _client_arg(v):
    """ID=SECRET_FILE -> (id, secret): the file's content less one
    trailing newline, as the worker reads its client_secret_file"""
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", help="where ca.pem and the certificate go")
    ap.add_argument("--untrusted", action="store_true",
                    help="a self-signed certificate, in no CA's name")
    ap.add_argument("--max-age", type=int, default=300)
    ap.add_argument("--token", type=_token_arg, action="append", default=[],
                    metavar="TOKEN=SUB[:SCOPE[:EXP]]",
                    help="an active token (repeatable; EXP in Unix seconds, "
                         "default an hour from now)")
    ap.add_argument("--client", type=_client_arg, action="append",
                    default=[], metavar="ID=SECRET_FILE",
                    help="a client allowed to introspect (repeatable)")
    args = ap.parse_args()
    d = args.dir or tempfile.mkdtemp(prefix="idp-")
    os.makedirs(d, exist_ok=True)
    idp = IdP(directory=d, untrusted=args.untrusted, port=args.port,
              max_age=args.max_age,
              clients=dict(args.client) if args.client else None)
    for token, sub, scope, exp in (args.token or
                                   [("demo-active-token", "demo-user",
                                     "read write", None)]):
        idp.add_token(token, sub=sub, scope=scope, exp=exp)
    print(json.dumps({"issuer": idp.issuer, "ca_file": idp.ca_file,
                      "clients": sorted(idp.clients),
                      "tokens": sorted(idp.tokens)}),
          flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    idp.stop()


if __name__ == "__main__":
    sys.exit(main())
