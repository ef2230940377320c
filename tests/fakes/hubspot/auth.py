"""auth.py -- private-app tokens, OAuth 2.0 apps and HubSpot's token endpoint.

Two kinds of app call the API, each with a Bearer token
(https://developers.hubspot.com/docs/api/intro-to-auth):

  a private app   a static token ("pat-na1-..."), good until revoked
  an OAuth app    client_id/client_secret; a user installs it and the app
                  trades the authorization code for an access token
                  (expires_in 1800) and a refresh token at /oauth/v1/token,
                  or at its successors /oauth/2026-03/token and
                  /oauth/v3/token, which take the same form in the body

Token endpoint errors are 400s that carry HubSpot's legacy status/message
and, since the v3 endpoints, RFC 6749's error/error_description as well:
{"error":"invalid_grant","error_description":"refresh token is invalid,
expired or revoked","status":"BAD_REFRESH_TOKEN","message":...}
(https://developers.hubspot.com/changelog/new-oauth-v3-api-endpoints-and-
standardized-error-responses).  Only BAD_REFRESH_TOKEN's text is quoted by
HubSpot; the other statuses' texts are [M].

A call with an expired access token gets 401 EXPIRED_AUTHENTICATION, "The
OAuth token used to make this call expired N second(s) ago." [C: quoted in
airbytehq/airbyte#74726]; with none, or an unknown one, 401
INVALID_AUTHENTICATION "Authentication credentials not found..." [C:
HubSpot/hubspot-api-nodejs#432].
"""

import base64
import datetime
import os
import threading
import time
import urllib.parse
import uuid

from . import errors


ALL_SCOPES = ("oauth",
              "crm.objects.contacts.read", "crm.objects.contacts.write",
              "crm.objects.companies.read", "crm.objects.companies.write",
              "crm.objects.deals.read", "crm.objects.deals.write")

ACCESS_TOKEN_LIFETIME = 1800        # seconds, as expires_in says
AUTH_CODE_LIFETIME = 300            # [M]: HubSpot says only "a short window"

NO_CREDENTIALS = ("Authentication credentials not found. This API supports "
                  "OAuth 2.0 authentication and you can find more details "
                  "at https://developers.hubspot.com/docs/methods/auth/"
                  "oauth-overview")


class App:
    """A private app (kind "private") or an OAuth app ("oauth").  Both have
    a client secret: a private app's signs its webhooks."""

    def __init__(self, app_id, kind, name, client_id, client_secret,
                 scopes, redirect_uri=None):
        self.app_id = app_id
        self.kind = kind
        self.name = name
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = tuple(scopes)
        self.redirect_uri = redirect_uri


class Token:
    def __init__(self, value, app, scopes, expires_at=None, refresh=None,
                 user="user@example.com", user_id=1001):
        self.value = value
        self.app = app
        self.scopes = tuple(scopes)
        self.expires_at = expires_at        # None: never (private app)
        self.refresh = refresh              # the refresh token issuing it
        self.user = user
        self.user_id = user_id
        self.revoked = False

    def seconds_left(self, now=None):
        if self.expires_at is None:
            return None
        return self.expires_at - (now if now is not None else time.time())


def _ago(seconds):
    """HubSpot's "N second(s)" / "minute(s)" / "hour(s)" / "day(s)"."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return "%d %s(s)" % (seconds // size, unit)
    return "%d second(s)" % seconds


def _iso(ts):
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Auth:
    """The portal's apps and the tokens issued to them."""

    def __init__(self, portal_id, hub_domain="vantage-test.hubspot.com"):
        self.portal_id = portal_id
        self.hub_domain = hub_domain
        self.lock = threading.Lock()
        self.apps = []
        self.tokens = {}            # access or private-app token -> Token
        self.refresh_tokens = {}    # refresh token -> (App, scopes, revoked)
        self.codes = {}             # code -> (App, scopes, redirect, expiry)
        self.token_lifetime = ACCESS_TOKEN_LIFETIME
        self._next_app = 3_000_001

    # -- apps -----------------------------------------------------------------

    def _app(self, kind, name, client_id, client_secret, scopes, redirect):
        with self.lock:
            app = App(self._next_app, kind, name,
                      client_id or str(uuid.uuid4()),
                      client_secret or str(uuid.uuid4()),
                      scopes or ALL_SCOPES, redirect)
            self._next_app += 1
            self.apps.append(app)
            return app

    def add_private_app(self, token=None, scopes=None, name="Vantage private",
                        client_secret=None):
        """A private app and its static token; returns the Token."""
        app = self._app("private", name, None, client_secret, scopes, None)
        value = token or "pat-na1-" + str(uuid.uuid4())
        tok = Token(value, app, app.scopes)
        with self.lock:
            self.tokens[value] = tok
        return tok

    def add_oauth_app(self, client_id=None, client_secret=None, scopes=None,
                      redirect_uri="https://localhost/oauth-callback",
                      name="Vantage"):
        return self._app("oauth", name, client_id, client_secret, scopes,
                         redirect_uri)

    def app_by_client(self, client_id):
        with self.lock:
            for app in self.apps:
                if app.kind == "oauth" and app.client_id == client_id:
                    return app
        return None

    # -- issuing --------------------------------------------------------------

    def authorization_code(self, app, scopes=None, redirect_uri=None):
        """What HubSpot appends to the redirect URL once a user installs
        app: a single-use code for /oauth/v1/token."""
        code = str(uuid.uuid4())
        with self.lock:
            self.codes[code] = (app, tuple(scopes or app.scopes),
                                redirect_uri or app.redirect_uri,
                                time.time() + AUTH_CODE_LIFETIME)
        return code

    def _access_token(self, app, scopes, refresh):
        # HubSpot's access tokens are opaque, up to ~300 characters
        value = "CO" + base64.urlsafe_b64encode(os.urandom(72)).decode()
        tok = Token(value, app, scopes, time.time() + self.token_lifetime,
                    refresh)
        with self.lock:
            self.tokens[value] = tok
        return tok

    def refresh_token(self, app, scopes=None):
        """A refresh token for app, as if a user had installed it."""
        value = str(uuid.uuid4())
        with self.lock:
            self.refresh_tokens[value] = [app, tuple(scopes or app.scopes),
                                          False]
        return value

    # -- test hooks -----------------------------------------------------------

    def expire(self, token=None):
        """Expires one access token, or (None) every OAuth access token:
        the next call with it gets 401 EXPIRED_AUTHENTICATION."""
        with self.lock:
            for tok in self.tokens.values():
                if tok.expires_at is None:
                    continue
                if token is None or tok.value == token:
                    tok.expires_at = min(tok.expires_at, time.time() - 1)

    def revoke(self, token):
        """Revokes a private-app token, an access token or a refresh
        token."""
        with self.lock:
            if token in self.tokens:
                self.tokens[token].revoked = True
            if token in self.refresh_tokens:
                self.refresh_tokens[token][2] = True

    # -- checking a call ------------------------------------------------------

    def authenticate(self, headers, query):
        """The Token a call carries, or ApiError 401."""
        header = headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            # hapikey= was sunset on 2022-11-30: it authenticates nothing
            raise self._unauthorized(NO_CREDENTIALS, "INVALID_AUTHENTICATION")
        with self.lock:
            tok = self.tokens.get(value)
        if tok is None or tok.revoked:
            raise self._unauthorized(NO_CREDENTIALS, "INVALID_AUTHENTICATION")
        left = tok.seconds_left()
        if left is not None and left <= 0:
            raise self._unauthorized(
                "The OAuth token used to make this call expired %s ago."
                % _ago(-left), "EXPIRED_AUTHENTICATION",
                context={"expire time": [_iso(tok.expires_at)]})
        return tok

    @staticmethod
    def _unauthorized(message, category, **extra):
        e = errors.error(401, message, category, **extra)
        e.headers.append(("X-HubSpot-Auth-Failure", "401 Unauthorized"))
        return e

    @staticmethod
    def require(tok, scope):
        """403 MISSING_SCOPES unless tok has scope.  The body's wording is
        [M]: recalled from HubSpot answers, not found in the docs."""
        if scope in tok.scopes:
            return
        raise errors.ApiError(403, errors.body_category_last(
            "This app hasn't been granted all required scopes to make this "
            "call. Read more about required scopes here: "
            "https://developers.hubspot.com/scopes.", "MISSING_SCOPES",
            errors=[{"message": "One or more of the following scopes are "
                                "required.",
                     "context": {"requiredGranularScopes": [scope]}}],
            links={"scopes": "https://developers.hubspot.com/scopes"}))

    # -- the token endpoint ---------------------------------------------------

    @staticmethod
    def _oauth_error(status, error, message):
        return errors.ApiError(400, {"error": error,
                                     "error_description": message,
                                     "status": status, "message": message})

    def token_endpoint(self, form):
        """POST /oauth/v1/token (and its successors) with form: the JSON
        answer, or ApiError 400."""
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            raise self._oauth_error("BAD_GRANT_TYPE", "unsupported_grant_type",
                                    "missing or unknown grant_type")
        app = self.app_by_client(form.get("client_id"))
        if app is None:
            raise self._oauth_error("BAD_CLIENT_ID", "invalid_client",
                                    "missing or unknown client id")
        if form.get("client_secret") != app.client_secret:
            raise self._oauth_error("BAD_CLIENT_SECRET", "invalid_client",
                                    "missing or invalid client secret")
        if grant == "authorization_code":
            with self.lock:
                entry = self.codes.pop(form.get("code"), None)
            if entry is None or entry[0] is not app or entry[3] < time.time():
                raise self._oauth_error("BAD_AUTH_CODE", "invalid_grant",
                                        "missing or unknown auth code")
            _, scopes, redirect, _ = entry
            if form.get("redirect_uri") != redirect:
                raise self._oauth_error("BAD_REDIRECT_URI", "invalid_grant",
                                        "redirect_uri does not match the "
                                        "authorization request")
            refresh = self.refresh_token(app, scopes)
        else:
            refresh = form.get("refresh_token")
            with self.lock:
                entry = self.refresh_tokens.get(refresh)
            if entry is None or entry[0] is not app or entry[2]:
                raise self._oauth_error(
                    "BAD_REFRESH_TOKEN", "invalid_grant",
                    "refresh token is invalid, expired or revoked")
            scopes = entry[1]
        tok = self._access_token(app, scopes, refresh)
        # HubSpot keeps the refresh token: the same one comes back [M]
        return {"token_type": "bearer", "refresh_token": refresh,
                "access_token": tok.value, "expires_in": self.token_lifetime}

    def access_token_info(self, value):
        """GET /oauth/v1/access-tokens/{token}"""
        with self.lock:
            tok = self.tokens.get(value)
        if tok is None or tok.expires_at is None or tok.revoked \
                or tok.seconds_left() <= 0:
            raise errors.error(404, "Token not found", "OBJECT_NOT_FOUND")
        return {"token": tok.value, "user": tok.user,
                "hub_domain": self.hub_domain, "scopes": list(tok.scopes),
                "hub_id": self.portal_id, "app_id": tok.app.app_id,
                "expires_in": int(tok.seconds_left()),
                "user_id": tok.user_id, "token_type": "access"}

    def refresh_token_info(self, value, delete=False):
        """GET (or DELETE) /oauth/v1/refresh-tokens/{token}"""
        with self.lock:
            entry = self.refresh_tokens.get(value)
            if entry is None or entry[2]:
                raise errors.error(404, "Token not found", "OBJECT_NOT_FOUND")
            if delete:
                entry[2] = True
                return None
        app, scopes, _ = entry
        return {"token": value, "user": "user@example.com",
                "hub_domain": self.hub_domain, "scopes": list(scopes),
                "hub_id": self.portal_id, "client_id": app.client_id,
                "user_id": 1001, "token_type": "refresh"}


def parse_form(body, query=None):
    """The form a token request carries: its urlencoded body, and for the
    v1 endpoint (which took query parameters) the query string under it."""
    form = {}
    if query:
        form.update({k: v[0] for k, v in query.items()})
    parsed = urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                   keep_blank_values=True)
    form.update({k: v[0] for k, v in parsed.items()})
    return form
