"""salesforce -- an emulator of Salesforce's public APIs for the tests.

A package, one module per area, behind one HTTPS server:

    server.py     Salesforce: the server, the org, the test hooks
    oauth.py      /services/oauth2/token: JWT bearer, client credentials,
                  refresh token; sessions
    rest.py       REST: sObjects, upsert by external id, sObject
                  Collections, SOQL query with nextRecordsUrl, platform
                  event publish, limits
    soql.py       the SOQL subset
    store.py      records, validation, the Change every write produces
    bulk.py       Bulk API 2.0 ingest and query jobs
    events.py     the event bus: CDC change events, platform events,
                  retention and replay ids
    streaming.py  CometD / Bayeux long polling at /cometd/NN.N
    outbound.py   workflow Outbound Messages (SOAP) with Ack and retries
    cli.py        the standalone emulator (python3 tests/fakes/salesforce)

fixtures/ holds the vendor's documented examples the tests compare the
emulator's answers with; fixtures/README.md names each one's source and
lists where the emulator departs from the real service.
Standard library and python3-cryptography only.
"""

from .server import Salesforce, make_jwt_keys          # noqa: F401
from .store import WriteError                          # noqa: F401
