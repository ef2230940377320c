"""oauth.py -- the token endpoint, /services/oauth2/token, and sessions.

Three grants, answered with the bodies Salesforce documents:

  urn:ietf:params:oauth:grant-type:jwt-bearer   assertion= an RS256 JWT
      signed by the connected app's certificate: iss the consumer key,
      sub a username, aud the login URL, exp at most max_exp_ahead seconds
      ahead.  200 {access_token, scope, instance_url, id, token_type}: no
      refresh token, no signature.
  client_credentials      client_id/client_secret (form or Basic), only at
      the My Domain (instance) host; the token is the run-as user's.
      200 {access_token, signature, scope, instance_url, id, token_type,
      issued_at}.
  refresh_token           refresh_token, client_id[, client_secret]; with
      rotation on, a new refresh_token comes back and the old one dies.

Errors are 400 {"error": ..., "error_description": ...}.  signature is
base64(HMAC-SHA256(consumer secret, id + issued_at)), issued_at
milliseconds since the epoch as a string.  Access tokens live
session_seconds; expire_all() ends every one at once (the next REST call
answers 401 INVALID_SESSION_ID).
"""

import base64
import hashlib
import hmac
import json
import os
import threading
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import ids


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _b64u_decode(s):
    s = s.encode() if isinstance(s, str) else s
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


class OAuthError(Exception):
    def __init__(self, error, description, status=400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self):
        return {"error": self.error, "error_description": self.description}


class Session:
    def __init__(self, token, user_id, username, client_id, scope, expires):
        self.token = token
        self.user_id = user_id
        self.username = username
        self.client_id = client_id
        self.scope = scope
        self.expires = expires


def load_public_key(pem):
    """An RSA public key from a certificate or a public-key PEM."""
    if isinstance(pem, str):
        pem = pem.encode()
    if b"CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


class Auth:
    """The connected app, its users, and the sessions issued; see the
    module's docstring."""

    def __init__(self, org_id, id_factory, consumer_key, consumer_secret,
                 jwt_public_key, scope="api"):
        self.org_id = org_id
        self.ids = id_factory
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.jwt_public_key = jwt_public_key
        self.scope = scope
        self.lock = threading.Lock()
        self.users = {}                 # username -> user id
        self.approved = set()           # usernames pre-authorized
        self.run_as = None              # client credentials' user
        self.sessions = {}              # token -> Session
        self.refresh_tokens = {}        # token -> (username, client_id)
        self.rotate_refresh_tokens = False
        self.session_seconds = 7200
        self.max_exp_ahead = 180        # seconds an assertion's exp may be
        self.leeway = 0                 # seconds an expired one still passes
        self.login_url = None           # set by the server
        self.instance_url = None
        self.login_hosts = set()        # Host values that are the login host

    # -- users -------------------------------------------------------------

    def add_user(self, username, approved=True):
        with self.lock:
            uid = self.users.get(username) or self.ids.new("005")
            self.users[username] = uid
            if approved:
                self.approved.add(username)
            else:
                self.approved.discard(username)
            return uid

    def identity_url(self, user_id):
        return "%s/id/%s/%s" % (self.login_url, self.org_id, user_id)

    # -- sessions ----------------------------------------------------------

    def _new_session(self, username, client_id):
        token = "%s!AQ%s" % (self.org_id[:15],
                             base64.urlsafe_b64encode(os.urandom(72))
                             .decode().rstrip("=").replace("-", "."))
        s = Session(token, self.users[username], username, client_id,
                    self.scope, time.time() + self.session_seconds)
        with self.lock:
            self.sessions[token] = s
        return s

    def session(self, token):
        """The live Session for token, or None (unknown or expired)."""
        with self.lock:
            s = self.sessions.get(token)
        if s is None or s.expires <= time.time():
            return None
        return s

    def issue(self, username=None, client_id=None):
        """A session for username (default: the first user), as any grant
        would give it; returns the access token."""
        username = username or next(iter(self.users))
        return self._new_session(username, client_id or self.consumer_key) \
            .token

    def expire_all(self):
        with self.lock:
            for s in self.sessions.values():
                s.expires = 0

    def expire(self, token):
        with self.lock:
            if token in self.sessions:
                self.sessions[token].expires = 0

    def issue_refresh_token(self, username=None, client_id=None):
        """A refresh token as the web-server flow would have left a client
        with (the emulator has no interactive flow)."""
        username = username or next(iter(self.users))
        rt = "5Aep%s" % base64.urlsafe_b64encode(os.urandom(48)).decode() \
            .rstrip("=").replace("-", ".")
        with self.lock:
            self.refresh_tokens[rt] = (username,
                                       client_id or self.consumer_key)
        return rt

    def revoke_refresh_token(self, rt):
        with self.lock:
            self.refresh_tokens.pop(rt, None)

    # -- the endpoint ------------------------------------------------------

    def _signed(self, s, extra=None):
        issued_at = str(ids.now_ms())
        ident = self.identity_url(s.user_id)
        sig = base64.b64encode(hmac.new(
            self.consumer_secret.encode(), (ident + issued_at).encode(),
            hashlib.sha256).digest()).decode()
        body = {"access_token": s.token, "signature": sig,
                "scope": s.scope, "instance_url": self.instance_url,
                "id": ident, "token_type": "Bearer",
                "issued_at": issued_at}
        body.update(extra or {})
        return body

    def token(self, form, authorization, host):
        """(status, body) for a POST to the token endpoint."""
        try:
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request",
                                 "grant type not specified")
            if grant == JWT_BEARER:
                return 200, self._jwt(form)
            if grant == "client_credentials":
                return 200, self._client_credentials(form, authorization,
                                                     host)
            if grant == "refresh_token":
                return 200, self._refresh(form, authorization)
            raise OAuthError("unsupported_grant_type",
                             "grant type not supported")
        except OAuthError as e:
            return e.status, e.body()

    def _client(self, form, authorization):
        """(client_id, client_secret or None) from Basic or the form."""
        if authorization and authorization.startswith("Basic "):
            try:
                raw = base64.b64decode(authorization[6:]).decode()
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_client",
                                 "invalid client credentials")
            cid, _, secret = raw.partition(":")
            return cid, secret
        return form.get("client_id"), form.get("client_secret")

    def _jwt(self, form):
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError("invalid_request", "assertion is required")
        parts = assertion.split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            header = json.loads(_b64u_decode(parts[0]))
            claims = json.loads(_b64u_decode(parts[1]))
            signature = _b64u_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_grant", "invalid assertion")
        if not isinstance(header, dict) or header.get("alg") != "RS256" \
                or not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "invalid assertion")
        key = self.jwt_public_key
        if not isinstance(key, rsa.RSAPublicKey):
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            key.verify(signature, ("%s.%s" % (parts[0], parts[1])).encode(),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise OAuthError("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.login_url not in [a.rstrip("/") if isinstance(a, str) else a
                                  for a in auds]:
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            exp = int(claims.get("exp"))
        except (TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion")
        now = time.time()
        if exp + self.leeway <= now:
            raise OAuthError("invalid_grant", "expired authorization code")
        if exp > now + self.max_exp_ahead + self.leeway:
            raise OAuthError("invalid_grant", "invalid assertion")
        sub = claims.get("sub")
        if sub not in self.users:
            raise OAuthError("invalid_grant", "invalid assertion")
        if sub not in self.approved:
            raise OAuthError("invalid_grant",
                             "user hasn't approved this consumer")
        s = self._new_session(sub, self.consumer_key)
        return {"access_token": s.token, "scope": s.scope,
                "instance_url": self.instance_url,
                "id": self.identity_url(s.user_id), "token_type": "Bearer"}

    def _check_client(self, cid, secret, secret_required):
        if cid != self.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if (secret_required or secret is not None) and \
                not hmac.compare_digest((secret or "").encode(),
                                        self.consumer_secret.encode()):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _client_credentials(self, form, authorization, host):
        cid, secret = self._client(form, authorization)
        self._check_client(cid, secret, True)
        if (host or "").lower() in self.login_hosts:
            raise OAuthError("invalid_grant",
                             "request not supported on this domain")
        if self.run_as is None:
            raise OAuthError("invalid_grant",
                             "no client credentials user enabled")
        return self._signed(self._new_session(self.run_as, cid))

    def _refresh(self, form, authorization):
        cid, secret = self._client(form, authorization)
        rt = form.get("refresh_token")
        with self.lock:
            entry = self.refresh_tokens.get(rt)
        if entry is None:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        self._check_client(cid, secret, False)
        if entry[1] != cid:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        s = self._new_session(entry[0], cid)
        extra = {}
        if self.rotate_refresh_tokens:
            self.revoke_refresh_token(rt)
            extra["refresh_token"] = self.issue_refresh_token(entry[0], cid)
        return self._signed(s, extra)
