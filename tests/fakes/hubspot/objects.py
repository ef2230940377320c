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

A create or an update that would give a unique property (a contact's
email) a value another record holds is 409 {"status":"error","message":
"Contact already exists. Existing ID: 123","category":"CONFLICT"} [C:
HubSpot/hubspot-api-nodejs#545; HubSpot has since begun sending
OBJECT_ALREADY_EXISTS with more fields for some accounts, per a 2024
community thread, which is not emulated].
"""

import urllib.parse

from . import errors


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


def _body_dict(req):
    body = req.json()
    if not isinstance(body, dict):
        raise errors.validation("Invalid input JSON: expected an object")
    return body


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
    out = {"results": [r.public(names) for r in page]}
    if start + limit < len(recs):
        nxt = recs[start + limit].id
        query = {k: v for k, v in req.query.items() if k != "after"}
        query["after"] = [nxt]
        link = "%s%s?%s" % (hs.url, req.path,
                            urllib.parse.urlencode(query, doseq=True))
        out["paging"] = {"next": {"after": nxt, "link": link}}
    return 200, out


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
        rec = hs.store.create(otype, clean)
    return 201, rec.public()


def read_object(hs, req, type, id):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "read")
    rec = _lookup(hs, otype, id, req.arg("idProperty"),
                  req.bool_arg("archived"))
    if rec is None:
        raise errors.not_found(id)
    names = req.list_arg("properties") or otype.defaults
    return 200, rec.public(names)


def _apply(hs, otype, rec, props):
    """Validates and applies props to rec, or raises; returns rec."""
    clean, problems = otype.validate(props, hs.portal_id)
    if problems:
        raise errors.property_problems(problems)
    other = hs.store.conflict(otype, clean, rec)
    if other is not None:
        raise _conflict(otype, other)
    hs.store.update(rec, clean)
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
        _apply(hs, otype, rec, props)
    return 200, rec.public()


def archive_object(hs, req, type, id):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "write")
    with hs.store.lock:
        rec = hs.store.get(otype, id)
        # archiving what is not there is not an error [M]
        if rec is not None:
            hs.store.archive(rec)
    return 204, None


def register(router):
    for prefix in ("/crm/v3/objects/{type}", "/crm/objects/2026-03/{type}"):
        router.add("GET", prefix, list_objects)
        router.add("POST", prefix, create_object)
        router.add("GET", prefix + "/{id}", read_object)
        router.add("PATCH", prefix + "/{id}", update_object)
        router.add("DELETE", prefix + "/{id}", archive_object)
