"""objects.py -- CRM v3 object endpoints: contacts, companies, deals.

Under /crm/v3/objects/{objectType} and its date-versioned twin
/crm/objects/2026-03/{objectType}
(https://developers.hubspot.com/docs/api-reference/latest/crm/objects/
contacts/guide):

  GET    /                 list: limit (10, at most 100 [C]), after,
                           properties, archived; paging.next.after and
                           .link while there is more, no paging at the end
  POST   /                 create: 201 {id, properties, createdAt,
                           updatedAt, archived}
  GET    /{id}             read; ?idProperty=email (any unique property)
  PATCH  /{id}             update; ?idProperty= too
  DELETE /{id}             archive: 204
  POST   /batch/create     201, or 207 when some inputs failed
  POST   /batch/read       200, or 207 with OBJECT_NOT_FOUND for the ids
                           that are not there
  POST   /batch/update     200 / 207
  POST   /batch/upsert     inputs[].id + idProperty: 200 / 207, each result
                           with "new"
  POST   /batch/archive    204

Batch answers are {"status":"COMPLETE","results":[...],"startedAt",
"completedAt"} plus "errors" and "numErrors" when some inputs failed
(207 Multi-Status) [D: API reference, batch upsert and create].
batch/create reports per-input failures only when every input carries an
objectWriteTraceId, which is how HubSpot's docs say multi-status is turned
on for batch create [D: error-handling guide]; otherwise the first failure
fails the whole batch and nothing is created.  The other batch endpoints
always answer per input [M: HubSpot's reference lists 207 for them; what
each failure's body holds is M].

A create or an update that would give a unique property (a contact's
email) a value another record holds is 409 {"status":"error","message":
"Contact already exists. Existing ID: 123","category":"CONFLICT"} [C:
HubSpot/hubspot-api-nodejs#545; HubSpot has since begun sending
OBJECT_ALREADY_EXISTS with more fields for some accounts, per a 2024
community thread, which is not emulated].

Every change an app makes through the API is a change with changeSource
"INTEGRATION" and sourceId the app's id, and is passed to the webhooks
for their subscriptions.
"""

import time
import urllib.parse

from . import errors
from .schema import iso_ms


MAX_BATCH = 100         # inputs per batch call [M: widely cited]
MAX_LIST_LIMIT = 100    # [C: client docs]; larger limits are capped [M]


def object_type(hs, name):
    """The ObjectType for "contacts", "contact" or "0-1" (any case)."""
    key = name.lower()
    for t in hs.types.values():
        if key in (t.name, t.singular, t.type_id):
            return t
    raise errors.error(404, "Unable to infer object type from: %s" % name,
                       "OBJECT_NOT_FOUND")


def _scope(hs, req, otype, mode):
    hs.auth.require(req.token, "crm.objects.%s.%s" % (otype.name, mode))


def _source(req):
    return ("INTEGRATION", str(req.token.app.app_id))


def _now():
    return iso_ms(int(time.time() * 1000))


def _body_dict(req):
    body = req.json()
    if not isinstance(body, dict):
        raise errors.validation("Invalid input JSON: expected an object")
    return body


def _inputs(req):
    body = _body_dict(req)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict)
                                               for i in inputs):
        raise errors.validation("Invalid input JSON: inputs must be a list "
                                "of objects")
    if len(inputs) > MAX_BATCH:
        raise errors.validation("Batch input too large: %d inputs, the "
                                "limit is %d" % (len(inputs), MAX_BATCH))
    return body, inputs


def _conflict(otype, other):
    return errors.error(409, "%s already exists. Existing ID: %s"
                        % (otype.singular.capitalize(), other.id),
                        "CONFLICT")


def _lookup(hs, otype, value, id_property, archived=False):
    """The record named by value: its id, or (id_property) the value of a
    unique property."""
    if id_property and id_property != "hs_object_id":
        if id_property not in otype.unique_properties():
            raise errors.validation(
                "%s is not a unique property of %s; idProperty must be "
                "one" % (id_property, otype.name))
        rec = hs.store.find(otype, id_property, value)
        if rec is not None and rec.archived != archived:
            rec = None
        return rec
    return hs.store.get(otype, value, archived)


def _batch(results, errs, started):
    out = {"status": "COMPLETE", "results": results}
    if errs:
        out["numErrors"] = len(errs)
        out["errors"] = errs
    out["startedAt"] = started
    out["completedAt"] = _now()
    return out


def _input_error(exc, context):
    """A failed input's entry in a batch answer's errors[]: the ApiError's
    body less correlationId, with context naming the input."""
    e = {k: v for k, v in exc.body.items() if k != "correlationId"}
    e["context"] = dict(e.get("context") or {}, **context)
    return e


# -- single records -----------------------------------------------------------

def list_objects(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "read")
    try:
        limit = int(req.arg("limit", 10))
    except ValueError:
        raise errors.validation("limit must be a number")
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    names = req.list_arg("properties") or otype.defaults
    recs = hs.store.all(otype, req.bool_arg("archived"))
    after = req.arg("after")
    start = 0
    if after:
        try:
            cursor = int(after)
        except ValueError:
            raise errors.validation("after must be a paging cursor from "
                                    "paging.next.after")
        while start < len(recs) and int(recs[start].id) < cursor:
            start += 1
    page = recs[start:start + limit]
    assoc = req.list_arg("associations")
    out = {"results": [_public(hs, otype, r, names, assoc) for r in page]}
    if start + limit < len(recs):
        nxt = recs[start + limit].id
        query = {k: v for k, v in req.query.items() if k != "after"}
        query["after"] = [nxt]
        link = "%s%s?%s" % (hs.url, req.path,
                            urllib.parse.urlencode(query, doseq=True))
        out["paging"] = {"next": {"after": nxt, "link": link}}
    return 200, out


def _public(hs, otype, rec, names, assoc=None):
    out = rec.public(names)
    if assoc:
        inline = hs.assoc.inline(otype, rec, assoc)
        if inline:
            out["associations"] = inline
    return out


def create_object(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    body = _body_dict(req)
    props = body.get("properties")
    if not isinstance(props, dict):
        raise errors.validation("Invalid input JSON: properties must be an "
                                "object")
    with hs.store.lock:
        clean, problems = otype.validate(props, hs.portal_id)
        if problems:
            raise errors.property_problems(problems)
        other = hs.store.conflict(otype, clean)
        if other is not None:
            raise _conflict(otype, other)
        links = hs.assoc.parse_inline(otype, body.get("associations") or [])
        rec = hs.store.create(otype, clean)
        hs.webhooks.created(otype, rec, _source(req))
        for to_type, to_rec, type_id in links:
            hs.assoc.add(otype, rec, to_type, to_rec, type_id, _source(req))
    return 201, rec.public()


def read_object(hs, req, type, id):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "read")
    rec = _lookup(hs, otype, id, req.arg("idProperty"),
                  req.bool_arg("archived"))
    if rec is None:
        raise errors.not_found(id)
    names = req.list_arg("properties") or otype.defaults
    return 200, _public(hs, otype, rec, names, req.list_arg("associations"))


def _apply(hs, otype, rec, props, source):
    """Validates and applies props to rec, or raises; returns rec."""
    clean, problems = otype.validate(props, hs.portal_id)
    if problems:
        raise errors.property_problems(problems)
    other = hs.store.conflict(otype, clean, rec)
    if other is not None:
        raise _conflict(otype, other)
    changed = hs.store.update(rec, clean)
    hs.webhooks.changed(otype, rec, changed, source)
    return rec


def update_object(hs, req, type, id):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    props = _body_dict(req).get("properties")
    if not isinstance(props, dict) or not props:
        # [C: seen in client logs]
        raise errors.validation("No properties found to update, please "
                                "provide at least one.")
    with hs.store.lock:
        rec = _lookup(hs, otype, id, req.arg("idProperty"))
        if rec is None:
            raise errors.not_found(id)
        _apply(hs, otype, rec, props, _source(req))
    return 200, rec.public()


def archive_object(hs, req, type, id):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    with hs.store.lock:
        rec = hs.store.get(otype, id)
        # archiving what is not there is not an error [M]
        if rec is not None:
            hs.store.archive(rec)
            hs.webhooks.deleted(otype, rec, _source(req))
    return 204, None


# -- batches ------------------------------------------------------------------

def batch_read(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "read")
    started = _now()
    body, inputs = _inputs(req)
    names = body.get("properties") or otype.defaults
    id_property = body.get("idProperty")
    archived = req.bool_arg("archived")
    results, missing = [], []
    for i in inputs:
        rec = _lookup(hs, otype, str(i.get("id")), id_property, archived)
        if rec is None:
            missing.append(str(i.get("id")))
        else:
            results.append(rec.public(names))
    errs = []
    if missing:
        # [C: as HubSpot words it in answers seen in client code]
        errs.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                     "message": "Could not get some %s objects, they may be "
                                "deleted or not exist. Check that ids are "
                                "valid." % otype.label,
                     "context": {"ids": missing}})
    return (207 if errs else 200), _batch(results, errs, started)


def batch_create(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    started = _now()
    _, inputs = _inputs(req)
    multi = bool(inputs) and all(i.get("objectWriteTraceId")
                                 for i in inputs)
    results, errs = [], []
    with hs.store.lock:
        checked = []        # (input, clean props, links) that passed
        claimed = {}        # unique values taken by earlier inputs
        for i in inputs:
            trace = i.get("objectWriteTraceId")
            try:
                props = i.get("properties")
                if not isinstance(props, dict):
                    raise errors.validation("properties must be an object")
                clean, problems = otype.validate(props, hs.portal_id)
                if problems:
                    raise errors.property_problems(problems)
                other = hs.store.conflict(otype, clean)
                if other is not None:
                    raise _conflict(otype, other)
                for name in otype.unique_properties():
                    v = clean.get(name)
                    key = (name, v.lower() if name == "email" and v else v)
                    if v and key in claimed:
                        raise errors.validation(
                            "Duplicate %s %s in batch input" % (name, v))
                    if v:
                        claimed[key] = True
                links = hs.assoc.parse_inline(otype,
                                              i.get("associations") or [])
                checked.append((i, clean, links))
            except errors.ApiError as e:
                if not multi:
                    raise
                errs.append(_input_error(e, {"objectWriteTraceId": [trace]}))
        for i, clean, links in checked:
            rec = hs.store.create(otype, clean)
            hs.webhooks.created(otype, rec, _source(req))
            for to_type, to_rec, type_id in links:
                hs.assoc.add(otype, rec, to_type, to_rec, type_id,
                             _source(req))
            out = rec.public()
            if i.get("objectWriteTraceId"):
                out["objectWriteTraceId"] = i["objectWriteTraceId"]
            results.append(out)
    return (207 if errs else 201), _batch(results, errs, started)


def batch_update(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    started = _now()
    body, inputs = _inputs(req)
    results, errs = [], []
    with hs.store.lock:
        for i in inputs:
            rid = str(i.get("id"))
            context = {"ids": [rid]}
            if i.get("objectWriteTraceId"):
                context["objectWriteTraceId"] = [i["objectWriteTraceId"]]
            try:
                rec = _lookup(hs, otype, rid,
                              i.get("idProperty") or body.get("idProperty"))
                if rec is None:
                    raise errors.not_found(rid)
                props = i.get("properties")
                if not isinstance(props, dict) or not props:
                    raise errors.validation("No properties found to update, "
                                            "please provide at least one.")
                _apply(hs, otype, rec, props, _source(req))
                results.append(rec.public())
            except errors.ApiError as e:
                errs.append(_input_error(e, context))
    return (207 if errs else 200), _batch(results, errs, started)


def batch_upsert(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    started = _now()
    _, inputs = _inputs(req)
    results, errs = [], []
    with hs.store.lock:
        for i in inputs:
            value = i.get("id")
            id_property = i.get("idProperty") or req.arg("idProperty")
            context = {"ids": [str(value)]}
            if i.get("objectWriteTraceId"):
                context["objectWriteTraceId"] = [i["objectWriteTraceId"]]
            try:
                if id_property not in otype.unique_properties():
                    raise errors.validation(
                        "idProperty %s is not a unique property of %s"
                        % (id_property, otype.name))
                if value is None or value == "":
                    raise errors.validation("id is required: the value of "
                                            "%s to upsert by" % id_property)
                props = dict(i.get("properties") or {})
                props[id_property] = value
                clean, problems = otype.validate(props, hs.portal_id)
                if problems:
                    raise errors.property_problems(problems)
                rec = hs.store.find(otype, id_property, clean[id_property])
                if rec is None:
                    other = hs.store.conflict(otype, clean)
                    if other is not None:
                        raise _conflict(otype, other)
                    rec = hs.store.create(otype, clean)
                    hs.webhooks.created(otype, rec, _source(req))
                    new = True
                else:
                    del clean[id_property]
                    other = hs.store.conflict(otype, clean, rec)
                    if other is not None:
                        raise _conflict(otype, other)
                    changed = hs.store.update(rec, clean)
                    hs.webhooks.changed(otype, rec, changed, _source(req))
                    new = False
                out = rec.public()
                out = dict([("id", out.pop("id")), ("new", new)]
                           + list(out.items()))
                if i.get("objectWriteTraceId"):
                    out["objectWriteTraceId"] = i["objectWriteTraceId"]
                results.append(out)
            except errors.ApiError as e:
                errs.append(_input_error(e, context))
    return (207 if errs else 200), _batch(results, errs, started)


def batch_archive(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    _, inputs = _inputs(req)
    with hs.store.lock:
        for i in inputs:
            rec = hs.store.get(otype, str(i.get("id")))
            if rec is not None:
                hs.store.archive(rec)
                hs.webhooks.deleted(otype, rec, _source(req))
    return 204, None


def register(router):
    for prefix in ("/crm/v3/objects/{type}", "/crm/objects/2026-03/{type}"):
        router.add("GET", prefix, list_objects)
        router.add("POST", prefix, create_object)
        for op, fn in (("read", batch_read), ("create", batch_create),
                       ("update", batch_update), ("upsert", batch_upsert),
                       ("archive", batch_archive)):
            router.add("POST", prefix + "/batch/" + op, fn)
        router.add("GET", prefix + "/{id}", read_object)
        router.add("PATCH", prefix + "/{id}", update_object)
        router.add("DELETE", prefix + "/{id}", archive_object)
