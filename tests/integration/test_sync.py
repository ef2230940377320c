"""test_sync.py -- two-way contact sync between Salesforce and HubSpot.

Everything real but the vendors: nginx with the module (the HubSpot
webhook location), vantage-worker (the CometD subscription, the
connectors, the token manager, the vault), an append-only Redis, and the
Salesforce and HubSpot emulators in this process over TLS.  The flows are
docs/CONNECTORS.md's "Two-way contact sync", with conf/mappings/'s two
mapping files:

  Salesforce -> HubSpot: a Contact written in Salesforce (by a user, not
    by Vantage) -> ContactChangeEvent -> [subscription] -> job
    salesforce.contact.read -> then hubspot.contact.upsert (mapped, by
    email);
  HubSpot -> Salesforce: a contact changed in HubSpot's UI -> signed
    webhook -> nginx's vantage_hubspot_webhook -> job hubspot.contact.read
    -> then salesforce.contact.upsert (mapped, by HubSpot_Contact_Id__c).

What is asserted, counted at the emulators: one change makes exactly one
write in the other system, and nothing comes back within 10 s (Vantage's
Salesforce writes say client=vantage, and their change events are
skipped; its HubSpot writes are INTEGRATION changes of its own app, and
their webhook events are skipped); the ID cross-reference holds both ids.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

import vantage_harness as vh

sys.path.insert(0, os.path.join(vh.REPO, "tests", "fakes"))
from salesforce import Salesforce                       # noqa: E402
from salesforce.store import SObjectType                # noqa: E402
from hubspot import HubSpot                             # noqa: E402
from hubspot import objects as hs_objects               # noqa: E402

CTL = os.path.join(vh.REPO, "build", "vantagectl")
MAPPINGS = os.path.join(vh.REPO, "conf", "mappings")
WORKER_REDIS = "redis"
TENANT = "acme"
HOOK = "/webhooks/hubspot"
CONTACTS = "/crm/v3/objects/contacts"
QUIET = 10          # seconds in which nothing may come back

# the HubSpot properties the Salesforce mapping writes, besides the
# emulator's own (real portals have most as standard properties)
HS_PROPERTIES = ["mobilephone", "address", "city", "state", "zip",
                 "country", "date_of_birth", "hs_lead_status",
                 "do_not_call", "ssn_masked", "sync_source"]


@pytest.fixture
def sf(pki):
    s = Salesforce(pki=pki, streaming_timeout=2.0)
    # a Contact with the fields the HubSpot mapping writes, and the
    # HubSpot id as a unique external id (a custom field in a real org)
    s.org.add_type(SObjectType(
        "Contact", "003", required=["LastName"],
        unique_external_ids=["HubSpot_Contact_Id__c"],
        email_fields=["Email"], name_fields=("FirstName", "LastName"),
        fields=["FirstName", "LastName", "Email", "Phone", "MobilePhone",
                "Title", "MailingStreet", "MailingCity", "MailingState",
                "MailingPostalCode", "MailingCountry", "Birthdate",
                "Status__c", "DoNotCall", "HubSpot_Contact_Id__c",
                "Sync_Source__c"]))
    yield s
    s.stop()
    assert not s.internal_errors, s.internal_errors


@pytest.fixture
def hs(pki, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="fake-hs-", dir=base_dir))
    h = HubSpot(pki=pki, directory=d)
    t = hs_objects.object_type(h, "contacts")
    for name in HS_PROPERTIES:
        t.add_property(name)
    t.add_property("salesforcecontactid", unique=True)
    h.webhooks.time_scale = 0.0005
    yield h
    h.stop()
    assert h.internal_errors == [], "\n".join(h.internal_errors)


class Stack:
    def __init__(self, base_dir, redis, worker_factory, nginx_factory, sf,
                 hs):
        self.dir = vh.make_dir(tempfile.mkdtemp(prefix="sync-",
                                                dir=base_dir))
        self.redis = redis
        self.rc = redis.client()
        self.sf = sf
        self.hs = hs
        self.key = os.path.join(self.dir, "master.key")
        vh.write_file(self.key, os.urandom(32), mode=0o600)
        self.put("sf.acme.jwt-key", open(sf.jwt_key_file, "rb").read())
        self.put("hs.acme.token", hs.token.encode())
        secret = os.path.join(self.dir, "hs-client-secret")
        vh.write_file(secret, hs.webhooks.app.client_secret + "\n",
                      mode=0o600)
        worker_factory.socket_mode = 0o777
        self.worker = worker_factory(self.config())
        self.nginx = nginx_factory(http="""
    vantage_worker unix:%s timeout=5s retry_after=2;
""" % self.worker.socket_path, server="""
        location = %s {
            vantage_tenant %s;
            vantage_hubspot_webhook hubspot.contact.read secret_file=%s
                                    app_id=%d;
        }
""" % (HOOK, TENANT, secret, hs.private_app.app.app_id))
        hs.webhooks.target_url = "http://127.0.0.1:%d%s" % (
            self.nginx.http_port, HOOK)

    def put(self, name, value):
        p = subprocess.run([CTL, "--redis", self.redis.address, "vault",
                            "put", name, "--key-file", self.key],
                           input=value, capture_output=True,
                           timeout=vh.timeout(20))
        assert p.returncode == 0, p.stderr

    def config(self):
        sf, hs = self.sf, self.hs
        return (
            "[worker]\nlisten = {listen}\nredis = {redis}\n"
            "visibility_timeout = 20s\nshutdown_timeout = 1s\n\n"
            "[vault]\nkey_file = %(key)s\n\n"
            "[target sf]\nca_file = %(sfca)s\n\n"
            "[target hs]\nca_file = %(hsca)s\n\n"
            "[connection acme-sf]\nvendor = salesforce\nauth = jwt_bearer\n"
            "login_url = %(login)s\nclient_id = %(cid)s\n"
            "username = %(user)s\nprivate_key = sf.acme.jwt-key\n"
            "api_version = %(api)s\ntarget = sf\n\n"
            "[connection acme-hs]\nvendor = hubspot\nauth = private_app\n"
            "token = hs.acme.token\nbase_url = %(hsurl)s\ntarget = hs\n\n"
            "[subscription contacts]\nconnection = acme-sf\n"
            "channel = /data/ContactChangeEvent\n"
            "job = salesforce.contact.read\ntenant = %(tenant)s\n"
            "replay = earliest\n\n"
            "[job salesforce.contact.read]\nconnector = salesforce\n"
            "connection = acme-sf\noperation = read\nobject = Contact\n"
            "then = hubspot.contact.upsert\ntimeout = 5s\n\n"
            "[job hubspot.contact.upsert]\nconnector = hubspot\n"
            "connection = acme-hs\noperation = upsert\nobject = contacts\n"
            "id_property = email\ntimeout = 5s\n"
            "mapping = %(maps)s/salesforce-contact-to-hubspot.json\n\n"
            "[job hubspot.contact.read]\nconnector = hubspot\n"
            "connection = acme-hs\noperation = read\nobject = contacts\n"
            "then = salesforce.contact.upsert\ntimeout = 5s\n\n"
            "[job salesforce.contact.upsert]\nconnector = salesforce\n"
            "connection = acme-sf\noperation = upsert\nobject = Contact\n"
            "external_id = HubSpot_Contact_Id__c\ntimeout = 5s\n"
            "mapping = %(maps)s/hubspot-contact-to-salesforce.json\n"
            % {"key": self.key, "sfca": sf.ca_file, "hsca": hs.ca_file,
               "login": sf.login_url, "cid": sf.consumer_key,
               "user": sf.username, "api": sf.api_version, "hsurl": hs.url,
               "tenant": TENANT, "maps": MAPPINGS})

    # -- counting at the emulators -----------------------------------------

    def sf_writes(self):
        """Salesforce REST writes (anything but a GET under data/)."""
        return [r for r in self.sf.requests("/services/data/")
                if r["method"] != "GET"]

    def hs_writes(self):
        return [r for r in self.hs.requests(CONTACTS, prefix=True)
                if r.method != "GET"]

    def xref(self, system, record_id):
        return {k.decode(): v.decode() for k, v in self.rc.hgetall(
            "{vq}:xref:%s:%s:%s" % (TENANT, system, record_id)).items()}

    def jobs(self, job_type):
        out = []
        for k in self.rc.scan_iter(match="{vq}:job:*", count=1000):
            h = self.rc.hgetall(k)
            if h.get(b"type") == job_type.encode():
                out.append({a.decode(): b.decode() for a, b in h.items()})
        return out


@pytest.fixture
def stack(base_dir, worker_redis, worker_factory, nginx_factory, sf, hs):
    if not os.path.exists(CTL):
        pytest.skip("vantagectl not built: run make ctl")
    return Stack(base_dir, worker_redis, worker_factory, nginx_factory, sf,
                 hs)


def hs_contact(hs, email):
    t = hs_objects.object_type(hs, "contacts")
    found = [r for r in hs.store.all(t) if r.props.get("email") == email]
    return found[0] if len(found) == 1 else (None if not found else found)


def sf_contacts(sf, **match):
    t = sf.org.type("Contact")
    return [r for r in sf.org.all(t)
            if all(r.get(k) == v for k, v in match.items())]


def test_salesforce_change_reaches_hubspot_once_and_does_not_return(stack):
    sf, hs = stack.sf, stack.hs
    t = sf.org.type("Contact")
    # a user's change in Salesforce (no client=vantage in its origin)
    sf_id = sf.org.create(t, {"FirstName": "Ada", "LastName": "Lovelace",
                              "Email": "Ada.Lovelace@Example.com",
                              "Phone": "(415) 555-0100"}, sf.context())

    c = vh.wait_for(lambda: hs_contact(hs, "ada.lovelace@example.com"), 20,
                    interval=0.1, what="the contact in HubSpot")
    assert c.props.get("firstname") == "Ada"
    assert c.props.get("lastname") == "Lovelace"
    assert c.props.get("phone") == "+14155550100"
    assert c.props.get("salesforcecontactid") == sf_id
    assert c.props.get("sync_source") == "salesforce"
    assert len(stack.hs_writes()) == 1

    # the cross-reference, both ways
    vh.wait_for(lambda: stack.xref("salesforce", sf_id).get("hubspot"), 5,
                what="the cross-reference")
    assert stack.xref("salesforce", sf_id) == {"hubspot": c.id}
    assert stack.xref("hubspot", c.id) == {"salesforce": sf_id}

    # HubSpot's webhook for that write is Vantage's own: skipped, so no
    # read of it, and nothing is written back to Salesforce
    time.sleep(QUIET)
    assert stack.sf_writes() == []
    assert stack.jobs("hubspot.contact.read") == []
    assert len(stack.hs_writes()) == 1
    assert len(hs.store.all(hs_objects.object_type(hs, "contacts"))) == 1


def test_hubspot_change_reaches_salesforce_once_and_does_not_return(stack):
    sf, hs = stack.sf, stack.hs
    t = hs_objects.object_type(hs, "contacts")
    rec = hs.store.create(t, {"email": "grace@example.com",
                              "firstname": "G", "lastname": "Hopper",
                              "phone": "212 555 0199",
                              "jobtitle": "Rear Admiral"})
    # a change in HubSpot's UI: its webhook event reaches nginx
    hs.change("contacts", rec.id, {"firstname": "Grace"}, source="CRM_UI")

    found = vh.wait_for(lambda: sf_contacts(sf, Email="grace@example.com"),
                        20, interval=0.1, what="the Contact in Salesforce")
    assert len(found) == 1
    c = found[0]
    assert c.get("FirstName") == "Grace"
    assert c.get("LastName") == "Hopper"
    assert c.get("Title") == "Rear Admiral"
    assert c.get("Phone") == "+12125550199"
    assert c.get("HubSpot_Contact_Id__c") == str(rec.id)
    assert c.get("Sync_Source__c") == "hubspot"

    # Salesforce's change event for that write says client=vantage: the
    # subscription skips it, so no read of it and nothing back in HubSpot
    time.sleep(QUIET)
    # one change, one event, one write: the upsert by HubSpot's id
    writes = stack.sf_writes()
    assert [(w["method"], w["path"]) for w in writes] == [
        ("PATCH", "/services/data/v%s/sobjects/Contact/"
                  "HubSpot_Contact_Id__c/%s" % (sf.api_version, rec.id))]
    assert len(sf_contacts(sf, Email="grace@example.com")) == 1
    assert stack.jobs("salesforce.contact.read") == []
    assert stack.hs_writes() == []
    vh.wait_for(lambda: stack.xref("hubspot", str(rec.id)).get("salesforce"),
                5, what="the cross-reference")
    assert stack.xref("hubspot", str(rec.id)) == {"salesforce": c["Id"]}
