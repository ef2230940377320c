"""hubspot -- an emulator of HubSpot's public API for the connector tests.

One portal over HTTPS on a free 127.0.0.1 port, with a certificate from a
test CA (tests/integration/vantage_harness.TestPKI's, or one of its own),
following HubSpot's public wire formats; README.md says, area by area,
what is emulated, from which source, and where it departs.

    hs = HubSpot(pki=pki)              # hs.url, hs.ca_file, hs.port
    hs.token                           # the private app's Bearer token
    hs.oauth_app.client_id / .client_secret
    code = hs.authorization_code()     # then POST /oauth/v1/token
    hs.expire()                        # every OAuth access token expires
    hs.auth.revoke(token)
    hs.limits.configure("private", burst=5, daily=20)
    hs.limits.exhaust("DAILY", hs.auth.apps)   # or TEN_SECONDLY_ROLLING,
                                               # SECONDLY
    hs.limits.new_day(); hs.limits.reset()
    hs.fail(2, 503)                    # the next 2 calls answer 503
    hs.fail(1, 502, path="/crm/v3/objects/contacts/batch")
    hs.delay(1.5, n=1); hs.drop(1); hs.clear_faults()
    hs.requests("/crm/v3/objects/contacts", "POST"); hs.count(); hs.counts()
    hs.types["contacts"].add_property("external_id", unique=True)
    hs.store.search_lag = 2.0          # search sees writes 2 s late
    hs.change("contacts", 5001, {"firstname": "Ann"})   # a CRM_UI edit
    hs.webhooks.target_url = target.url("/hooks")
    hs.webhooks.time_scale = 0.001     # retry n after 2**n minutes * 0.001
    hs.webhooks.hold = True; ...; hs.webhooks.flush()   # one batch
    hs.webhooks.deliveries             # every POST tried, with its status
    hs.internal_errors                 # tracebacks of emulator bugs
    hs.stop()

It also runs on its own (see __main__.py):

    /usr/bin/python3 tests/fakes/hubspot --port 8443 --dir /tmp/hs \\
        [--webhook-url URL [--webhook-ca FILE]]

printing one JSON line with the base URL, CA file, tokens and OAuth
client.  Standard library and python3-cryptography only.
"""

from .app import HubSpot
from .webhooks import signatures, signed_uri

__all__ = ["HubSpot", "signatures", "signed_uri"]
