"""associations.py -- the v4 associations API between contacts, companies
and deals.

HubSpot's current associations API is v4 (also published date-versioned,
/crm/objects/2026-03/... and /crm/associations/2026-03/...)
(https://developers.hubspot.com/docs/api-reference/latest/crm/associations/
overview):

  PUT    /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}
             the default (unlabeled) association: 200 {"status":"COMPLETE",
             "results":[{"from":{"id"},"to":{"id"},"associationSpec":
             {"associationCategory":"HUBSPOT_DEFINED","associationTypeId"}}],
             "startedAt","completedAt"} [D: API reference]; both directions
             are listed [M]
  PUT    /crm/v4/objects/{from}/{id}/associations/{to}/{toId}
             body [{"associationCategory","associationTypeId"}]: 201
  GET    /crm/v4/objects/{from}/{id}/associations/{to}
             {"results":[{"toObjectId":<int>,"associationTypes":[{"category",
             "typeId","label"}]}]} [C: HubSpot's SDK models]
  DELETE /crm/v4/objects/{from}/{id}/associations/{to}/{toId}     204
  POST   /crm/v4/associations/{from}/{to}/batch/associate/default
  POST   /crm/v4/associations/{from}/{to}/batch/read

HUBSPOT_DEFINED type ids: contact->company 279 (company->contact 280)
[D: docs example]; contact<->deal 4/3, company<->deal 342/341, and the
"Primary" company labels 1/2 and 5/6 are [M].  A create body's
"associations" uses the same ids.  An association added or removed is an
associationChange webhook event (associationType, fromObjectId, toObjectId,
associationRemoved, isPrimaryAssociation [D: changelog "new subscription
types for webhooks"]) for the subscriptions that ask for it.
"""

import time

from . import errors
from .objects import object_type, _scope, _source, _inputs
from .schema import iso_ms


# (from, to) -> the default type id (and its inverse is DEFAULT[(to, from)])
DEFAULT = {("contacts", "companies"): 279, ("companies", "contacts"): 280,
           ("contacts", "deals"): 4, ("deals", "contacts"): 3,
           ("companies", "deals"): 342, ("deals", "companies"): 341}
# labelled HUBSPOT_DEFINED types: id -> (from, to, label, inverse id)
LABELLED = {1: ("contacts", "companies", "Primary", 2),
            2: ("companies", "contacts", "Primary", 1),
            5: ("deals", "companies", "Primary", 6),
            6: ("companies", "deals", "Primary", 5)}
# v3-style names, for ?associations= on a read [M]
NAMES = {279: "contact_to_company_unlabeled", 280: "company_to_contact",
         1: "contact_to_company", 2: "company_to_contact",
         4: "contact_to_deal", 3: "deal_to_contact",
         342: "company_to_deal_unlabeled", 341: "deal_to_company_unlabeled",
         6: "company_to_deal", 5: "deal_to_company"}


def type_info(type_id):
    """(from, to, label or None, inverse id) for a known type id, or None"""
    if type_id in LABELLED:
        return LABELLED[type_id]
    for (frm, to), tid in DEFAULT.items():
        if tid == type_id:
            return frm, to, None, DEFAULT[(to, frm)]
    return None


def _now():
    return iso_ms(int(time.time() * 1000))


class Associations:
    def __init__(self, hs):
        self.hs = hs
        # (type, id) -> {(to type, to id): set of type ids}
        self.links = {}

    def types_between(self, otype, rid, to_type, to_id):
        return set(self.links.get((otype, rid), {}).get((to_type, to_id),
                                                        ()))

    def add(self, from_type, from_rec, to_type, to_rec, type_id, source):
        """Adds type_id from from_rec to to_rec and its inverse back;
        returns the (from id, to id, type id) triples added."""
        info = type_info(type_id)
        inverse = info[3]
        added = []
        with self.hs.store.lock:
            for a, ar, b, br, tid in (
                    (from_type, from_rec, to_type, to_rec, type_id),
                    (to_type, to_rec, from_type, from_rec, inverse)):
                have = self.links.setdefault((a.name, ar.id), {}).setdefault(
                    (b.name, br.id), set())
                if tid not in have:
                    have.add(tid)
                    added.append((ar.id, br.id, tid))
            if added:
                self.hs.webhooks.association(from_type, from_rec, to_type,
                                             to_rec, False,
                                             type_id in LABELLED, source)
        return added

    def remove(self, from_type, from_rec, to_type, to_rec, source):
        with self.hs.store.lock:
            gone = self.links.get((from_type.name, from_rec.id), {}).pop(
                (to_type.name, to_rec.id), None)
            self.links.get((to_type.name, to_rec.id), {}).pop(
                (from_type.name, from_rec.id), None)
            if gone:
                self.hs.webhooks.association(from_type, from_rec, to_type,
                                             to_rec, True, False, source)

    def parse_inline(self, otype, associations):
        """A create body's "associations": [(to type, to record, type id)],
        or ApiError 400."""
        out = []
        for a in associations:
            to_id = str((a.get("to") or {}).get("id"))
            for t in a.get("types") or []:
                info = type_info(t.get("associationTypeId"))
                if info is None or info[0] != otype.name:
                    raise errors.validation(
                        "Invalid association type %s for %s"
                        % (t.get("associationTypeId"), otype.name))
                to_type = self.hs.types[info[1]]
                to_rec = self.hs.store.get(to_type, to_id)
                if to_rec is None:
                    raise errors.validation(
                        "Association target %s %s does not exist"
                        % (to_type.singular, to_id))
                out.append((to_type, to_rec, t["associationTypeId"]))
        return out

    def inline(self, otype, rec, names):
        """{"companies": {"results": [{"id", "type"}]}} for ?associations="""
        out = {}
        for name in names:
            try:
                to_type = object_type(self.hs, name)
            except errors.ApiError:
                continue        # HubSpot ignores what it does not know
            results = []
            for (tname, tid), types in sorted(
                    self.links.get((otype.name, rec.id), {}).items()):
                if tname != to_type.name or not types:
                    continue
                for type_id in sorted(types):
                    results.append({"id": tid, "type": NAMES.get(
                        type_id, str(type_id))})
            if results:
                out[to_type.name] = {"results": results}
        return out


def _pair(hs, req, frm, fid, to, tid, mode):
    from_type, to_type = object_type(hs, frm), object_type(hs, to)
    _scope(hs, req, from_type, mode)
    if (from_type.name, to_type.name) not in DEFAULT:
        raise errors.validation("No association between %s and %s"
                                % (from_type.name, to_type.name))
    from_rec = hs.store.get(from_type, fid)
    if from_rec is None:
        raise errors.not_found(fid)
    to_rec = None
    if tid is not None:
        to_rec = hs.store.get(to_type, tid)
        if to_rec is None:
            raise errors.not_found(tid)
    return from_type, from_rec, to_type, to_rec


def _spec(from_id, to_id, type_id):
    return {"from": {"id": from_id}, "to": {"id": to_id},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": type_id}}


def put_default(hs, req, frm, id, to, toId):
    started = _now()
    from_type, from_rec, to_type, to_rec = _pair(hs, req, frm, id, to, toId,
                                                 "write")
    type_id = DEFAULT[(from_type.name, to_type.name)]
    hs.assoc.add(from_type, from_rec, to_type, to_rec, type_id, _source(req))
    results = [_spec(from_rec.id, to_rec.id, type_id),
               _spec(to_rec.id, from_rec.id,
                     DEFAULT[(to_type.name, from_type.name)])]
    return 200, {"status": "COMPLETE", "results": results,
                 "startedAt": started, "completedAt": _now()}


def put_labelled(hs, req, frm, id, to, toId):
    from_type, from_rec, to_type, to_rec = _pair(hs, req, frm, id, to, toId,
                                                 "write")
    specs = req.json()
    if not isinstance(specs, list) or not specs:
        raise errors.validation("Expected a list of association types")
    checked = []
    for s in specs:
        info = type_info(s.get("associationTypeId")) if isinstance(
            s, dict) else None
        if info is None or info[:2] != (from_type.name, to_type.name):
            raise errors.validation("Invalid association type %s from %s to "
                                    "%s" % (s, from_type.name, to_type.name))
        checked.append((s["associationTypeId"], info[2]))
    for type_id, _ in checked:
        hs.assoc.add(from_type, from_rec, to_type, to_rec, type_id,
                     _source(req))
    return 201, {"fromObjectTypeId": from_type.type_id,
                 "fromObjectId": int(from_rec.id),
                 "toObjectTypeId": to_type.type_id,
                 "toObjectId": int(to_rec.id),
                 "labels": [label for _, label in checked if label]}


def _associated(hs, from_type, rec, to_type):
    out = []
    for (tname, tid), types in sorted(
            hs.assoc.links.get((from_type.name, rec.id), {}).items(),
            key=lambda kv: int(kv[0][1])):
        if tname != to_type.name or not types:
            continue
        out.append({"toObjectId": int(tid), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": t,
             "label": type_info(t)[2]} for t in sorted(types)]})
    return out


def list_associations(hs, req, frm, id, to):
    from_type, rec, to_type, _ = _pair(hs, req, frm, id, to, None, "read")
    items = _associated(hs, from_type, rec, to_type)
    try:
        limit = int(req.arg("limit", 500))
        start = int(req.arg("after", 0))
    except ValueError:
        raise errors.validation("limit and after must be numbers")
    out = {"results": items[start:start + limit]}
    if start + limit < len(items):
        out["paging"] = {"next": {"after": str(start + limit)}}
    return 200, out


def delete_association(hs, req, frm, id, to, toId):
    from_type, from_rec, to_type, to_rec = _pair(hs, req, frm, id, to, toId,
                                                 "write")
    hs.assoc.remove(from_type, from_rec, to_type, to_rec, _source(req))
    return 204, None


def batch_default(hs, req, frm, to):
    started = _now()
    _, inputs = _inputs(req)
    results, errs = [], []
    for i in inputs:
        fid = str((i.get("from") or {}).get("id"))
        tid = str((i.get("to") or {}).get("id"))
        try:
            from_type, from_rec, to_type, to_rec = _pair(hs, req, frm, fid,
                                                         to, tid, "write")
        except errors.ApiError as e:
            if e.status in (401, 403):
                raise
            errs.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                         "message": "No %s with id %s, or no %s with id %s"
                         % (frm, fid, to, tid),
                         "context": {"fromId": [fid], "toId": [tid]}})
            continue
        type_id = DEFAULT[(from_type.name, to_type.name)]
        hs.assoc.add(from_type, from_rec, to_type, to_rec, type_id,
                     _source(req))
        results.append(_spec(from_rec.id, to_rec.id, type_id))
    out = {"status": "COMPLETE", "results": results}
    if errs:
        out.update(numErrors=len(errs), errors=errs)
    out.update(startedAt=started, completedAt=_now())
    return (207 if errs else 200), out


def batch_read(hs, req, frm, to):
    started = _now()
    from_type, to_type = object_type(hs, frm), object_type(hs, to)
    _scope(hs, req, from_type, "read")
    _, inputs = _inputs(req)
    results, missing = [], []
    for i in inputs:
        rec = hs.store.get(from_type, str(i.get("id")))
        if rec is None:
            missing.append(str(i.get("id")))
            continue
        results.append({"from": {"id": rec.id},
                        "to": _associated(hs, from_type, rec, to_type)})
    out = {"status": "COMPLETE", "results": results}
    if missing:
        out.update(numErrors=1, errors=[{
            "status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "No %s with these ids" % from_type.name,
            "context": {"ids": missing}}])
    out.update(startedAt=started, completedAt=_now())
    return (207 if missing else 200), out


def register(router):
    for objs, assoc in (("/crm/v4/objects", "/crm/v4/associations"),
                        ("/crm/objects/2026-03", "/crm/associations/2026-03")):
        base = objs + "/{frm}/{id}/associations"
        router.add("PUT", base + "/default/{to}/{toId}", put_default)
        router.add("PUT", base + "/{to}/{toId}", put_labelled)
        router.add("DELETE", base + "/{to}/{toId}", delete_association)
        router.add("GET", base + "/{to}", list_associations)
        router.add("POST", assoc + "/{frm}/{to}/batch/associate/default",
                   batch_default)
        router.add("POST", assoc + "/{frm}/{to}/batch/read", batch_read)
