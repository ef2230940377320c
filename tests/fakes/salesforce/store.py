"""store.py -- the emulated org's data: sObject types, records, validation.

One Org holds every record in memory under one lock.  Writes go through
create()/update()/delete()/undelete(), which apply the checks Salesforce
applies before saving (required fields, e-mail format, read-only and
unknown fields, unique external ids, record locks, test-defined
validation rules) and raise WriteError with the errorCode, message and
fields Salesforce would answer.  Every committed write is announced to the
listeners as a Change (what Change Data Capture and workflow outbound
messages are built from), carrying who made it and through which API, as
Salesforce records it in ChangeEventHeader.changeOrigin and commitUser.
"""

import re
import threading

from . import ids


SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById",
                 "LastModifiedDate", "LastModifiedById", "SystemModstamp")
READ_ONLY = set(SYSTEM_FIELDS)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class WriteError(Exception):
    """One Salesforce error: errorCode, message, fields; status is the HTTP
    status a single-record REST call answers with.  fields=None marks a
    request-level error (a bad query, an unknown resource), whose REST
    body has no "fields" member; a record's errors (DML) always have one,
    if only [] ."""

    def __init__(self, code, message, fields=None, status=400):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.fields = None if fields is None else list(fields)
        self.status = status

    def rest(self):
        """The element of a REST error array."""
        e = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            e["fields"] = self.fields
        return e

    def save_result(self):
        """The element of a SaveResult's errors array (Collections)."""
        return {"statusCode": self.code, "message": self.message,
                "fields": self.fields or []}

    def bulk(self):
        """sf__Error of a Bulk API 2.0 failed row."""
        return "%s:%s:%s --" % (self.code, self.message,
                                ",".join(self.fields or []))


def not_found():
    return WriteError("NOT_FOUND", "The requested resource does not exist",
                      status=404)


class SObjectType:
    """What the emulator knows of one object.  fields=None accepts any
    well-formed field name (handy for a test's custom objects)."""

    def __init__(self, name, prefix, required=(), external_ids=(),
                 unique_external_ids=(), email_fields=(), fields=None,
                 cdc=True, platform_event=False, name_fields=None):
        self.name = name
        self.prefix = prefix
        self.required = list(required)
        self.external_ids = set(external_ids) | set(unique_external_ids)
        self.unique_external_ids = set(unique_external_ids)
        self.email_fields = set(email_fields)
        self.fields = None if fields is None else \
            set(fields) | set(SYSTEM_FIELDS) | {"OwnerId"} | \
            self.external_ids | set(required) | self.email_fields
        self.cdc = cdc and not platform_event
        self.platform_event = platform_event
        # a compound Name made of other fields (Contact, Lead)
        self.name_fields = name_fields
        if name_fields and self.fields is not None:
            self.fields.add("Name")

    def field(self, name):
        """The field's canonical spelling, or None when unknown."""
        if self.fields is None:
            return name if _FIELD_NAME.match(name) else None
        for f in self.fields:
            if f.lower() == name.lower():
                return f
        return None

    def writable(self, name):
        return name not in READ_ONLY and \
            not (self.name_fields and name == "Name")


def default_types():
    contact = ["FirstName", "LastName", "Email", "Phone", "Title",
               "AccountId", "MailingCity", "MailingState", "Description",
               "ExtId__c", "Birthdate"]
    return [
        SObjectType("Account", "001", required=["Name"],
                    external_ids=["ExtId__c"],
                    fields=["Name", "AccountNumber", "Industry", "Phone",
                            "Website", "Type", "BillingCity",
                            "Description", "ExtId__c"]),
        SObjectType("Contact", "003", required=["LastName"],
                    external_ids=["ExtId__c"], email_fields=["Email"],
                    fields=contact, name_fields=("FirstName", "LastName")),
        SObjectType("Lead", "00Q", required=["LastName", "Company"],
                    email_fields=["Email"],
                    fields=["FirstName", "LastName", "Company", "Email",
                            "Status", "Phone"],
                    name_fields=("FirstName", "LastName")),
        SObjectType("Opportunity", "006",
                    required=["Name", "StageName", "CloseDate"],
                    fields=["Name", "StageName", "CloseDate", "Amount",
                            "AccountId"]),
    ]


class WriteContext:
    """Who writes and through which API: the user id, the API name as
    changeOrigin spells it (rest, bulkapi, soap, apex), its version and the
    client id of the Sforce-Call-Options header.  One context is one
    transaction: its changes share a transactionKey and count up
    sequenceNumber."""

    def __init__(self, user_id, api="rest", version="68.0", client=None):
        self.user_id = user_id
        self.api = api
        self.version = version
        self.client = client
        self.transaction_key = ids.new_uuid().replace("-", "")[:20]
        self.sequence = 0

    def origin(self):
        o = "com/salesforce/api/%s/%s" % (self.api, self.version)
        if self.client:
            o += ";client=%s" % self.client
        return o


class Change:
    """A committed change, as Change Data Capture describes it."""

    def __init__(self, entity, record_ids, change_type, fields, changed,
                 nulled, ctx, seq, commit_ms):
        self.entity = entity
        self.record_ids = list(record_ids)
        self.change_type = change_type
        self.fields = fields            # the record's new values (payload)
        self.changed = changed          # UPDATE: changed field names
        self.nulled = nulled
        self.ctx = ctx
        self.sequence = seq
        self.commit_ms = commit_ms


class Org:
    """The records of one org; see the module's docstring."""

    def __init__(self, id_factory, org_id, types=None):
        self.ids = id_factory
        self.org_id = org_id
        self.lock = threading.RLock()
        self.types = {}
        for t in (types if types is not None else default_types()):
            self.add_type(t)
        self.records = {}               # type name -> {id: record}
        self.deleted = {}               # id -> (type name, record)
        self.locked = set()
        self.rules = []                 # (type, message, fields, predicate)
        self.listeners = []
        self.commit_number = 0

    # -- schema ------------------------------------------------------------

    def add_type(self, t):
        with self.lock:
            self.types[t.name.lower()] = t

    def type(self, name):
        return self.types.get((name or "").lower())

    def add_validation_rule(self, type_name, message, fields, predicate):
        """A validation rule: predicate(record) true means the record is
        invalid, and the write fails with FIELD_CUSTOM_VALIDATION_EXCEPTION,
        message and fields (as an admin's rule's error message and error
        location)."""
        with self.lock:
            self.rules.append((self.type(type_name).name, message,
                               list(fields), predicate))

    # -- reads -------------------------------------------------------------

    def get(self, t, record_id):
        """The live record (a copy), or None."""
        with self.lock:
            rec = self.records.get(t.name, {}).get(ids.to18(record_id))
            return dict(rec) if rec is not None else None

    def find(self, t, field, value):
        """Ids of live records whose field equals value (as text)."""
        with self.lock:
            return [rid for rid, rec in self.records.get(t.name, {}).items()
                    if rec.get(field) is not None
                    and str(rec.get(field)) == str(value)]

    def all(self, t, include_deleted=False):
        with self.lock:
            out = [dict(r) for r in self.records.get(t.name, {}).values()]
            if include_deleted:
                out += [dict(r) for tn, r in self.deleted.values()
                        if tn == t.name]
            return out

    def view(self, t, rec):
        """rec as a read returns it: every known field, null when unset,
        compound Name filled in."""
        out = {}
        if t.fields is not None:
            for f in sorted(t.fields):
                out[f] = None
        out.update(rec)
        if t.name_fields:
            out["Name"] = " ".join(str(rec[f]) for f in t.name_fields
                                   if rec.get(f))
        return out

    # -- validation --------------------------------------------------------

    def _canonical(self, t, fields, ext_field=None):
        """fields with canonical names; WriteError on unknown/read-only."""
        out = {}
        for k, v in fields.items():
            if k == "attributes":
                continue
            name = t.field(k)
            if name is None:
                raise WriteError(
                    "INVALID_FIELD",
                    "No such column '%s' on sobject of type %s" % (k, t.name),
                    [k])
            if not t.writable(name):
                raise WriteError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Unable to create/update fields: %s. Please check the "
                    "security settings of this field and verify that it "
                    "is read/write for your profile or permission set."
                    % name, [name])
            out[name] = v
        return out

    def _check(self, t, rec, record_id=None):
        """Checks a record as it would be saved."""
        if record_id is not None and record_id in self.locked:
            raise WriteError(
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to this record or 1 "
                "records: %s" % record_id, [])
        missing = [f for f in t.required
                   if rec.get(f) is None or rec.get(f) == ""]
        if missing:
            raise WriteError("REQUIRED_FIELD_MISSING",
                             "Required fields are missing: [%s]"
                             % ", ".join(missing), missing)
        for f in sorted(t.email_fields):
            v = rec.get(f)
            if v not in (None, "") and not _EMAIL.match(str(v)):
                raise WriteError("INVALID_EMAIL_ADDRESS",
                                 "%s: invalid email address: %s" % (f, v),
                                 [f])
        for f in sorted(t.unique_external_ids):
            v = rec.get(f)
            if v in (None, ""):
                continue
            for other in self.find(t, f, v):
                if other != record_id:
                    raise WriteError(
                        "DUPLICATE_VALUE",
                        "duplicate value found: %s duplicates value on "
                        "record with id: %s" % (f, other), [f])
        for tn, message, fields, predicate in self.rules:
            if tn == t.name and predicate(rec):
                raise WriteError("FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                 message, fields)

    # -- writes ------------------------------------------------------------

    def _commit(self, t, ctx, record_ids, change_type, fields, changed=(),
                nulled=()):
        self.commit_number += 1
        ctx.sequence += 1
        change = Change(t.name, record_ids, change_type, fields,
                        list(changed), list(nulled), ctx, ctx.sequence,
                        ids.now_ms())
        change.commit_number = self.commit_number
        for listener in list(self.listeners):
            listener(t, change)

    def prepare_create(self, t, fields):
        """The record create() would save, checked; WriteError if not."""
        with self.lock:
            values = self._canonical(t, fields)
            rec = {k: v for k, v in values.items()}
            self._check(t, rec)
            return rec

    def create(self, t, fields, ctx, checked=None):
        """Saves a new record; returns its id.  WriteError if invalid."""
        with self.lock:
            rec = checked if checked is not None else \
                self.prepare_create(t, fields)
            rid = self.ids.new(t.prefix)
            now = ids.sf_datetime()
            rec.setdefault("OwnerId", ctx.user_id)
            rec.update({"Id": rid, "IsDeleted": False, "CreatedDate": now,
                        "CreatedById": ctx.user_id, "LastModifiedDate": now,
                        "LastModifiedById": ctx.user_id,
                        "SystemModstamp": now})
            self.records.setdefault(t.name, {})[rid] = rec
            payload = {k: v for k, v in rec.items()
                       if v is not None and k not in ("Id", "IsDeleted",
                                                      "SystemModstamp")}
            if t.name_fields:
                payload["Name"] = {f: rec.get(f) for f in t.name_fields}
            self._commit(t, ctx, [rid], "CREATE", payload)
            return rid

    def prepare_update(self, t, record_id, fields):
        """(record id, new record, changed names); WriteError if the update
        would fail."""
        with self.lock:
            rid = ids.to18(record_id)
            old = self.records.get(t.name, {}).get(rid)
            if old is None:
                if rid in self.deleted:
                    raise WriteError("ENTITY_IS_DELETED", "entity is deleted",
                                     [], status=404)
                raise not_found()
            values = self._canonical(t, fields)
            new = dict(old)
            new.update(values)
            self._check(t, new, rid)
            changed = [k for k, v in values.items() if old.get(k) != v]
            return rid, new, changed

    def update(self, t, record_id, fields, ctx, prepared=None):
        with self.lock:
            rid, new, changed = prepared if prepared is not None else \
                self.prepare_update(t, record_id, fields)
            now = ids.sf_datetime()
            new.update({"LastModifiedDate": now,
                        "LastModifiedById": ctx.user_id,
                        "SystemModstamp": now})
            self.records[t.name][rid] = new
            if changed:
                names = sorted(changed) + ["LastModifiedDate"]
                payload = {k: new[k] for k in changed
                           if new[k] is not None}
                payload["LastModifiedDate"] = now
                nulled = [k for k in changed if new[k] is None]
                self._commit(t, ctx, [rid], "UPDATE", payload, names, nulled)
            return rid

    def prepare_delete(self, t, record_id):
        with self.lock:
            rid = ids.to18(record_id)
            if rid not in self.records.get(t.name, {}):
                if rid in self.deleted:
                    raise WriteError("ENTITY_IS_DELETED", "entity is deleted",
                                     [], status=404)
                raise not_found()
            if rid in self.locked:
                raise WriteError(
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record or 1 "
                    "records: %s" % rid, [])
            return rid

    def delete(self, t, record_id, ctx):
        with self.lock:
            rid = self.prepare_delete(t, record_id)
            rec = self.records[t.name].pop(rid)
            rec["IsDeleted"] = True
            self.deleted[rid] = (t.name, rec)
            self._commit(t, ctx, [rid], "DELETE", {})
            return rid

    def undelete(self, t, record_id, ctx):
        with self.lock:
            rid = ids.to18(record_id)
            tn, rec = self.deleted.pop(rid)
            rec["IsDeleted"] = False
            self.records[t.name][rid] = rec
            self._commit(t, ctx, [rid], "UNDELETE",
                         {k: v for k, v in rec.items() if v is not None})
            return rid

    def lock_record(self, record_id, locked=True):
        """UNABLE_TO_LOCK_ROW for every write to the record while locked."""
        with self.lock:
            rid = ids.to18(record_id)
            if locked:
                self.locked.add(rid)
            else:
                self.locked.discard(rid)

    # -- upsert ------------------------------------------------------------

    def upsert(self, t, ext_field, value, fields, ctx, update_only=False):
        """(id, created) after creating or updating the record whose
        ext_field is value.  MultipleMatches when several match;
        WriteError NOT_FOUND when update_only and none does."""
        with self.lock:
            name = t.field(ext_field)
            if name is None or (name != "Id" and name not in t.external_ids):
                raise WriteError(
                    "NOT_FOUND",
                    "Provided external ID field does not exist or is not "
                    "accessible: %s" % ext_field, status=404)
            body = {k: v for k, v in fields.items() if k != "attributes"}
            if any(k.lower() == name.lower() for k in body):
                raise WriteError(
                    "INVALID_FIELD",
                    "The external ID field %s is in the URL and must not "
                    "be set again in the request body" % name, [name])
            matches = self.find(t, name, value) if value not in (None, "") \
                else []
            if len(matches) > 1:
                raise MultipleMatches(t, matches)
            if matches:
                rid = self.update(t, matches[0], body, ctx)
                return rid, False
            if update_only:
                raise not_found()
            if name != "Id":
                body[name] = value
            return self.create(t, body, ctx), True


class MultipleMatches(Exception):
    """An external id that matches more than one record (REST answers 300
    with the records' URLs)."""

    def __init__(self, t, record_ids):
        super().__init__("%d records match" % len(record_ids))
        self.type = t
        self.ids = record_ids

    def error(self, ext_field, value):
        return WriteError(
            "DUPLICATE_EXTERNAL_ID",
            "%s: more than one record found for external id field: %s"
            % (ext_field, ",".join(self.ids)), [ext_field], status=300)
