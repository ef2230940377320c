"""app.py -- HubSpot: one emulated portal behind one HTTPS port.

It owns the parts (auth, limits, store, associations, webhooks), the
routes, the request log and the faults a test sets; see __init__.py for
how a test drives it.
"""

import json
import ssl
import tempfile
import threading
import time

from . import associations, auth, errors, objects, ratelimit, search
from . import schema, server, store, webhooks

import fake_tls                                 # tests/fakes, beside us


class HubSpot:
    """The emulator; see the package's docstring."""

    def __init__(self, pki=None, directory=None, untrusted=False, port=0,
                 portal_id=62515, private_app_token=None, client_id=None,
                 client_secret=None,
                 redirect_uri="https://localhost/oauth-callback",
                 webhook_url=None, webhook_ca=None, subscriptions=True,
                 start=True):
        self.dir = directory or tempfile.mkdtemp(prefix="hubspot-")
        self.ssl_context, self.ca_file = fake_tls.server_context(
            self.dir, pki, untrusted, "Vantage HubSpot emulator test CA")
        self.portal_id = portal_id
        self.lock = threading.Lock()
        self.log = []
        self.faults = []
        self.internal_errors = []

        self.auth = auth.Auth(portal_id)
        self.private_app = self.auth.add_private_app(private_app_token)
        self.oauth_app = self.auth.add_oauth_app(client_id, client_secret,
                                                 redirect_uri=redirect_uri)
        self.limits = ratelimit.RateLimits()
        self.types = schema.default_types()
        self.store = store.Store(self.types)
        self.assoc = associations.Associations(self)
        self.webhooks = webhooks.Webhooks(self)
        self.webhooks.app = self.oauth_app
        self.webhooks.target_url = webhook_url
        if webhook_ca:
            self.webhooks.target_ssl = ssl.create_default_context(
                cafile=webhook_ca)
        if subscriptions:
            self.webhooks.subscribe_defaults()

        self.router = server.Router()
        objects.register(self.router)
        search.register(self.router)
        associations.register(self.router)
        self._register_oauth()

        self.port = port
        self.httpd = None
        if start:
            self.start()

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        """Listens (again, on the same port once it has one) and starts
        webhook delivery."""
        assert self.httpd is None
        self.httpd = server.Server(("127.0.0.1", self.port), server.Handler)
        self.httpd.ssl_context = self.ssl_context
        self.httpd.hubspot = self
        self.port = self.httpd.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        threading.Thread(target=self.httpd.serve_forever,
                         kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.webhooks.start()
        return self

    def stop(self):
        self.webhooks.stop()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    close = stop

    # -- OAuth routes ---------------------------------------------------------

    def _register_oauth(self):
        def token(hs, req, v1=False):
            form = auth.parse_form(req.body, req.query if v1 else None)
            return 200, hs.auth.token_endpoint(form)

        r = self.router
        r.add("POST", "/oauth/v1/token",
              lambda hs, req: token(hs, req, v1=True), auth=False)
        r.add("POST", "/oauth/v3/token", token, auth=False)
        r.add("POST", "/oauth/2026-03/token", token, auth=False)
        r.add("GET", "/oauth/v1/access-tokens/{value}",
              lambda hs, req, value: (200, hs.auth.access_token_info(value)),
              auth=False)
        r.add("GET", "/oauth/v1/refresh-tokens/{value}",
              lambda hs, req, value: (200,
                                      hs.auth.refresh_token_info(value)),
              auth=False)
        r.add("DELETE", "/oauth/v1/refresh-tokens/{value}",
              lambda hs, req, value: (204, hs.auth.refresh_token_info(
                  value, delete=True)), auth=False)

    # -- conveniences for tests -----------------------------------------------

    @property
    def token(self):
        """The private app's token."""
        return self.private_app.value

    def authorization_code(self, scopes=None, redirect_uri=None):
        """A code as HubSpot appends it to the OAuth app's redirect URL
        when a user installs the app."""
        return self.auth.authorization_code(self.oauth_app, scopes,
                                            redirect_uri)

    def refresh_token(self, scopes=None):
        """A refresh token for the OAuth app, as if installed earlier."""
        return self.auth.refresh_token(self.oauth_app, scopes)

    def expire(self, token=None):
        """Expires an OAuth access token (None: all of them)."""
        self.auth.expire(token)

    def change(self, object_type, object_id, properties, source="CRM_UI",
               source_id="userId:1001"):
        """Changes a record as a user in HubSpot would (not through the
        API): the webhooks see changeSource source.  Returns the changed
        properties."""
        otype = objects.object_type(self, object_type)
        with self.store.lock:
            rec = self.store.get(otype, str(object_id))
            if rec is None:
                raise KeyError(object_id)
            clean, problems = otype.validate(properties, self.portal_id)
            if problems:
                raise ValueError(problems)
            changed = self.store.update(rec, clean)
            self.webhooks.changed(otype, rec, changed, (source, source_id))
        return changed

    def record(self, object_type, object_id):
        """The stored record (any state), or None."""
        otype = objects.object_type(self, object_type)
        with self.store.lock:
            return self.store.records[otype.name].get(str(object_id))

    # -- faults ---------------------------------------------------------------

    def fail(self, n=1, status=500, path=None, body=None, headers=(),
             method=None):
        """The next n calls (None: every call) whose path starts with
        path answer status with body (default a HubSpot error body)."""
        if body is None:
            body = errors.body("Injected failure (status %d)" % status,
                               "INTERNAL_ERROR" if status >= 500 else None)
        self._fault(("status", status, body, list(headers)), n, path, method)

    def delay(self, seconds, n=None, path=None, method=None):
        """The next n calls (None: every call) wait seconds first, and are
        then handled as usual."""
        self._fault(("delay", seconds), n, path, method)

    def drop(self, n=1, path=None, method=None):
        """The next n calls get their connection closed, no answer."""
        self._fault(("close",), n, path, method)

    def clear_faults(self):
        with self.lock:
            self.faults.clear()

    def _fault(self, action, n, path, method):
        with self.lock:
            self.faults.append({"action": action, "left": n, "path": path,
                                "method": method})

    def take_fault(self, req):
        """Sleeps the matching delays, then returns the first matching
        status or close fault (counting it), or None."""
        delays, chosen = [], None
        with self.lock:
            for f in self.faults:
                if f["left"] == 0:
                    continue
                if f["path"] and not req.path.startswith(f["path"]):
                    continue
                if f["method"] and f["method"] != req.method:
                    continue
                if f["action"][0] == "delay":
                    delays.append(f["action"][1])
                elif chosen is None:
                    chosen = f
                else:
                    continue
                if f["left"] is not None:
                    f["left"] -= 1
            self.faults = [f for f in self.faults if f["left"] != 0]
        for d in delays:
            time.sleep(d)
        return None if chosen is None else chosen["action"]

    # -- the request log ------------------------------------------------------

    def log_request(self, req):
        with self.lock:
            self.log.append(req)

    def requests(self, path=None, method=None, prefix=False):
        """The calls received (server.Request objects, with .status once
        answered), those on path (or under it, prefix) only."""
        with self.lock:
            return [r for r in self.log
                    if (path is None or r.path == path
                        or (prefix and r.path.startswith(path)))
                    and (method is None or r.method == method)]

    def count(self, path=None, method=None, prefix=False):
        return len(self.requests(path, method, prefix))

    def counts(self):
        """{path: calls received}"""
        out = {}
        with self.lock:
            for r in self.log:
                out[r.path] = out.get(r.path, 0) + 1
        return out

    def reset_log(self):
        with self.lock:
            self.log = []

    # -- controls for a separate process (the CLI) ----------------------------

    def ui_write(self, object_type, properties):
        """A record created or changed as a user in HubSpot's UI would
        (webhooks see changeSource CRM_UI): a contact is matched by its
        email.  (status, body) for control()."""
        otype = objects.object_type(self, object_type)
        email = properties.get("email")
        with self.store.lock:
            rec = None
            if email is not None:
                for r in self.store.all(otype):
                    if r.props.get("email") == email:
                        rec = r
                        break
        if rec is not None:
            self.change(object_type, rec.id, properties)
            return 200, {"id": rec.id, "new": False}
        clean, problems = otype.validate(properties, self.portal_id)
        if problems:
            return 400, {"error": problems}
        with self.store.lock:
            rec = self.store.create(otype, clean)
        self.webhooks.created(otype, rec, ("CRM_UI", "userId:1001"))
        return 201, {"id": rec.id, "new": True}

    def control(self, req):
        """GET /_counts, and POST /_test/{fail,delay,drop,clear,expire,
        limits,flush,ui} with a JSON body: a standalone emulator's hooks.
        Not counted, not rate limited, not authenticated: HubSpot has
        nothing like them."""
        try:
            args = json.loads(req.body or b"{}")
        except ValueError:
            return 400, {"error": "body is not JSON"}
        what = req.path[len("/_test/"):]
        if req.path == "/_counts" and req.method == "GET":
            return 200, self.counts()
        if req.method != "POST":
            return 405, {"error": "POST"}
        if what == "fail":
            self.fail(args.get("n", 1), args.get("status", 500),
                      args.get("path"))
        elif what == "delay":
            self.delay(args["seconds"], args.get("n"), args.get("path"))
        elif what == "drop":
            self.drop(args.get("n", 1), args.get("path"))
        elif what == "clear":
            self.clear_faults()
        elif what == "expire":
            self.expire(args.get("token"))
        elif what == "limits":
            if args.get("configure"):
                self.limits.configure(args.get("kind"), **args["configure"])
            if args.get("exhaust"):
                self.limits.exhaust(args["exhaust"], self.auth.apps)
            if args.get("reset"):
                self.limits.reset()
            if args.get("new_day"):
                self.limits.new_day()
        elif what == "flush":
            return 200, {"flushed": self.webhooks.flush(
                args.get("timeout", 10))}
        elif what == "ui":
            # a user's change in HubSpot's own UI (changeSource CRM_UI):
            # a new contact, or a change to the one with that email
            return self.ui_write(args.get("object", "contacts"),
                                 args.get("properties") or {})
        else:
            return 404, {"error": "no control %s" % what}
        return 200, {"ok": True}

