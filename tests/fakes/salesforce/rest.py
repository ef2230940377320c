"""rest.py -- the REST API under /services/data/vNN.N/.

  sobjects/<Object>                POST create -> 201 {id, success, errors};
                                   a platform event (<Name>__e) is
                                   published instead: 201 with errors
                                   [{statusCode OPERATION_ENQUEUED, message
                                   <EventUuid>}]
  sobjects/<Object>/<id>           GET (?fields=), PATCH -> 204, DELETE -> 204
  sobjects/<Object>/Id             POST: create (v37.0+)
  sobjects/<Object>/<Field>/<v>    GET by external id; PATCH upsert -> 201
                                   {..., created: true} | 200 {...,
                                   created: false} (204 before v46.0) | 300
                                   [record URLs] | 404 with ?updateOnly=true
  composite/sobjects               POST create, PATCH update, DELETE ?ids=:
                                   up to 200 records, allOrNone, 200 with
                                   one SaveResult per record in order
  composite/sobjects/<O>/<Field>   PATCH upsert (SaveResults add created)
  query?q=, queryAll?q=            SOQL (see soql.py); batches of
                                   Sforce-Query-Options batchSize (200..2000)
                                   capped by the emulator's query_batch_size,
                                   nextRecordsUrl query/<locator>-<offset>
  limits                           DailyApiRequests {Max, Remaining}
  jobs/...                         Bulk API 2.0 (bulk.py)

Errors are JSON arrays of {message, errorCode, fields}.
"""

import json
import re
import threading
import urllib.parse

from . import ids, soql
from .response import error, json_response, no_content, write_error
from .store import MultipleMatches, WriteContext, WriteError

MAX_COLLECTION = 200


def _context(session, version, headers):
    client = None
    opts = headers.get("sforce-call-options") or ""
    m = re.search(r"client=([^,;\s]+)", opts)
    if m:
        client = m.group(1)
    return WriteContext(session.user_id, "rest", version, client)


def _json(body):
    """The request body parsed; WriteError JSON_PARSER_ERROR if not JSON."""
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError) as e:
        raise WriteError("JSON_PARSER_ERROR",
                         "Unexpected character in request body: %s" % e)


class Rest:
    def __init__(self, sf):
        self.sf = sf
        self.lock = threading.Lock()
        self.locators = {}      # locator id -> (version, records)

    def url(self, version, t, rid):
        return "/services/data/v%s/sobjects/%s/%s" % (version, t.name, rid)

    def record(self, version, t, rec, fields=None):
        view = self.sf.org.view(t, rec)
        out = {"attributes": {"type": t.name,
                              "url": self.url(version, t, view["Id"])}}
        if fields is None:
            out.update(view)
        else:
            for f in fields:
                out[f] = view.get(f)
            out.setdefault("Id", view["Id"])
        return out

    # -- dispatch ----------------------------------------------------------

    def handle(self, method, parts, query, headers, body, session, version):
        try:
            return self._route(method, parts, query, headers, body, session,
                               version)
        except WriteError as e:
            return write_error(e)

    def _route(self, method, parts, query, headers, body, session, version):
        p = [urllib.parse.unquote(x) for x in parts if x != ""]
        if not p:
            return json_response(200, self._resources(version))
        head = p[0]
        if head == "sobjects":
            return self._sobjects(method, p[1:], query, headers, body,
                                  session, version)
        if head == "composite" and len(p) >= 2 and p[1] == "sobjects":
            return self._collections(method, p[2:], query, headers, body,
                                     session, version)
        if head in ("query", "queryAll") and method == "GET":
            return self._query(head, p[1:], query, headers, version)
        if head == "limits" and method == "GET":
            used, limit = self.sf.usage()
            return json_response(200, {"DailyApiRequests": {
                "Max": limit, "Remaining": max(limit - used, 0)}})
        if head == "jobs":
            return self.sf.bulk.handle(method, p[1:], query, headers, body,
                                       session, version)
        return error(404, "NOT_FOUND",
                     "The requested resource does not exist")

    def _resources(self, version):
        base = "/services/data/v%s" % version
        return {k: "%s/%s" % (base, v) for k, v in (
            ("sobjects", "sobjects"), ("query", "query"),
            ("queryAll", "queryAll"), ("composite", "composite"),
            ("limits", "limits"), ("jobs", "jobs"))}

    # -- sobjects ----------------------------------------------------------

    def _type(self, name):
        t = self.sf.org.type(name)
        if t is None:
            raise WriteError("NOT_FOUND",
                             "The requested resource does not exist",
                             status=404)
        return t

    def _sobjects(self, method, p, query, headers, body, session, version):
        org = self.sf.org
        if not p:
            if method != "GET":
                raise WriteError("METHOD_NOT_ALLOWED", "HTTP Method '%s' not "
                                 "allowed. Allowed are GET,HEAD" % method,
                                 status=405)
            return json_response(200, {
                "encoding": "UTF-8", "maxBatchSize": 200,
                "sobjects": [{"name": t.name, "keyPrefix": t.prefix,
                              "custom": t.name.endswith(("__c", "__e")),
                              "urls": {"sobject": "/services/data/v%s/"
                                       "sobjects/%s" % (version, t.name)}}
                             for t in list(org.types.values())]})
        t = self._type(p[0])
        if len(p) == 1:
            if method == "POST":
                fields = _json(body)
                if not isinstance(fields, dict):
                    raise WriteError("JSON_PARSER_ERROR",
                                     "Cannot deserialize instance of %s "
                                     "from a non-object value" % t.name)
                if t.platform_event:
                    return self._publish(t, fields, session)
                rid = org.create(t, fields, _context(session, version,
                                                     headers))
                return json_response(201, {"id": rid, "success": True,
                                           "errors": []})
            if method == "GET":
                return json_response(200, {"objectDescribe": {
                    "name": t.name, "keyPrefix": t.prefix,
                    "createable": True, "updateable": True},
                    "recentItems": []})
            raise WriteError("METHOD_NOT_ALLOWED", "HTTP Method '%s' not "
                             "allowed. Allowed are GET,POST" % method,
                             status=405)
        if len(p) == 2:
            if p[1] == "Id" and method == "POST" and \
                    float(version) >= 37.0:
                return self._sobjects("POST", p[:1], query, headers, body,
                                      session, version)
            return self._by_id(method, t, p[1], query, headers, body,
                               session, version)
        if len(p) == 3:
            return self._by_external_id(method, t, p[1], p[2], query,
                                        headers, body, session, version)
        raise WriteError("NOT_FOUND", "The requested resource does not "
                         "exist", status=404)

    def _by_id(self, method, t, rid, query, headers, body, session, version):
        org = self.sf.org
        if not ids.valid(rid):
            raise WriteError("NOT_FOUND", "Provided external ID field does "
                             "not exist or is not accessible: %s" % rid,
                             status=404)
        if method == "GET":
            rec = org.get(t, rid)
            if rec is None:
                raise WriteError("NOT_FOUND", "The requested resource does "
                                 "not exist", status=404)
            fields = None
            if query.get("fields"):
                fields = []
                for f in query["fields"][0].split(","):
                    name = t.field(f.strip())
                    if name is None:
                        raise WriteError(
                            "INVALID_FIELD", "No such column '%s' on sobject "
                            "of type %s" % (f.strip(), t.name), status=400)
                    fields.append(name)
            return json_response(200, self.record(version, t, rec, fields))
        if method == "PATCH":
            fields = _json(body)
            if not isinstance(fields, dict):
                raise WriteError("JSON_PARSER_ERROR", "Cannot deserialize "
                                 "instance of %s from a non-object value"
                                 % t.name)
            org.update(t, rid, fields, _context(session, version, headers))
            return no_content()
        if method == "DELETE":
            org.delete(t, rid, _context(session, version, headers))
            return no_content()
        raise WriteError("METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. "
                         "Allowed are HEAD,GET,PATCH,DELETE" % method,
                         status=405)

    def _multiple(self, version, t, matches):
        return json_response(300, [self.url(version, t, rid)
                                   for rid in matches])

    def _by_external_id(self, method, t, field, value, query, headers, body,
                        session, version):
        org = self.sf.org
        name = t.field(field)
        if name is None or (name != "Id" and name not in t.external_ids):
            raise WriteError("NOT_FOUND", "Provided external ID field does "
                             "not exist or is not accessible: %s" % field,
                             status=404)
        if method == "GET":
            matches = org.find(t, name, value)
            if len(matches) > 1:
                return self._multiple(version, t, matches)
            if not matches:
                raise WriteError("NOT_FOUND", "The requested resource does "
                                 "not exist", status=404)
            return json_response(200, self.record(version, t,
                                                  org.get(t, matches[0])))
        if method == "PATCH":
            fields = _json(body)
            if not isinstance(fields, dict):
                raise WriteError("JSON_PARSER_ERROR", "Cannot deserialize "
                                 "instance of %s from a non-object value"
                                 % t.name)
            update_only = (query.get("updateOnly") or ["false"])[0] == "true"
            try:
                rid, created = org.upsert(
                    t, name, value, fields,
                    _context(session, version, headers), update_only)
            except MultipleMatches as m:
                return self._multiple(version, t, m.ids)
            v46 = float(version) >= 46.0
            result = {"id": rid, "success": True, "errors": []}
            if created:
                if v46:
                    result["created"] = True
                return json_response(201, result)
            if not v46:
                return no_content()
            result["created"] = False
            return json_response(200, result)
        if method == "DELETE":
            matches = org.find(t, name, value)
            if len(matches) > 1:
                return self._multiple(version, t, matches)
            if not matches:
                raise WriteError("NOT_FOUND", "The requested resource does "
                                 "not exist", status=404)
            org.delete(t, matches[0], _context(session, version, headers))
            return no_content()
        raise WriteError("METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. "
                         "Allowed are HEAD,GET,PATCH,DELETE" % method,
                         status=405)

    def _publish(self, t, fields, session):
        fields = {k: v for k, v in fields.items() if k != "attributes"}
        for k in fields:
            if t.field(k) is None:
                raise WriteError("INVALID_FIELD", "No such column '%s' on "
                                 "sobject of type %s" % (k, t.name), [k])
        _, uid = self.sf.publisher.publish_platform_event(
            t.name, fields, session.user_id)
        return json_response(201, {
            "id": self.sf.ids.new("e00"), "success": True,
            "errors": [{"statusCode": "OPERATION_ENQUEUED",
                        "message": uid, "fields": []}]})

    # -- sObject Collections -----------------------------------------------

    def _collections(self, method, p, query, headers, body, session,
                     version):
        org = self.sf.org
        ctx = _context(session, version, headers)
        if method == "DELETE" and not p:
            ids_ = [x for x in (query.get("ids") or [""])[0].split(",") if x]
            all_or_none = (query.get("allOrNone") or ["false"])[0] == "true"
            records = [{"id": x} for x in ids_]
            op = "delete"
        else:
            req = _json(body)
            if not isinstance(req, dict) or \
                    not isinstance(req.get("records"), list):
                raise WriteError("JSON_PARSER_ERROR",
                                 "Cannot deserialize the request: records "
                                 "is required")
            records = req["records"]
            all_or_none = bool(req.get("allOrNone", False))
            if method == "POST" and not p:
                op = "create"
            elif method == "PATCH" and not p:
                op = "update"
            elif method == "PATCH" and len(p) == 2:
                op = "upsert"
            else:
                raise WriteError("METHOD_NOT_ALLOWED", "HTTP Method '%s' not "
                                 "allowed" % method, status=405)
        if len(records) > MAX_COLLECTION:
            raise WriteError("EXCEEDED_ID_LIMIT",
                             "Record limit reached. Can't process more than "
                             "%d records in one request." % MAX_COLLECTION)
        upsert_type = self._type(p[0]) if op == "upsert" else None
        with org.lock:
            planned = [self._plan(op, r, upsert_type,
                                  p[1] if op == "upsert" else None)
                       for r in records]
            if all_or_none and any(isinstance(x, WriteError)
                                   for x in planned):
                return json_response(200, [self._rolled_back(x)
                                           for x in planned])
            results = []
            for x in planned:
                if isinstance(x, WriteError):
                    results.append({"success": False,
                                    "errors": [x.save_result()]})
                    continue
                try:
                    results.append(self._apply(x, ctx))
                except WriteError as e:     # a later record broke it
                    results.append({"success": False,
                                    "errors": [e.save_result()]})
                except MultipleMatches as m:
                    e = m.error(x[3], x[4])
                    results.append({"success": False,
                                    "errors": [e.save_result()]})
        return json_response(200, results)

    def _rolled_back(self, x):
        if isinstance(x, WriteError):
            return {"success": False, "errors": [x.save_result()]}
        return {"success": False, "errors": [{
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "message": "Record rolled back because not all records were "
                       "valid and the request was using AllOrNone header",
            "fields": []}]}

    def _plan(self, op, rec, upsert_type, ext_field):
        """A checked write (a tuple) or the WriteError it would fail with."""
        org = self.sf.org
        try:
            if not isinstance(rec, dict):
                raise WriteError("INVALID_TYPE",
                                 "Must send a concrete entity type.")
            if op == "delete":
                rid = rec["id"]
                for t in list(org.types.values()):
                    if rid[:3] == t.prefix:
                        return ("delete", t, org.prepare_delete(t, rid))
                raise WriteError("MALFORMED_ID", "malformed id %s" % rid)
            t = upsert_type or org.type((rec.get("attributes") or {})
                                        .get("type"))
            if t is None:
                raise WriteError("INVALID_TYPE",
                                 "Must send a concrete entity type.")
            fields = {k: v for k, v in rec.items() if k != "attributes"}
            if op == "create":
                if "id" in fields or "Id" in fields:
                    raise WriteError("INVALID_FIELD",
                                     "cannot specify Id in an insert call",
                                     ["Id"])
                return ("create", t, org.prepare_create(t, fields))
            if op == "update":
                rid = fields.pop("id", None) or fields.pop("Id", None)
                if not rid:
                    raise WriteError("MISSING_ARGUMENT", "Id not specified "
                                     "in an update call")
                return ("update", t, org.prepare_update(t, rid, fields))
            name = t.field(ext_field)
            value = None
            for k in list(fields):
                if k.lower() == (name or ext_field).lower():
                    value = fields.pop(k)
            if value in (None, ""):
                raise WriteError("MISSING_ARGUMENT",
                                 "%s not specified" % ext_field)
            return ("upsert", t, fields, name or ext_field, value)
        except WriteError as e:
            return e

    def _apply(self, x, ctx):
        org = self.sf.org
        op, t = x[0], x[1]
        if op == "create":
            rid = org.create(t, None, ctx, checked=x[2])
            return {"id": rid, "success": True, "errors": []}
        if op == "update":
            rid = org.update(t, None, None, ctx, prepared=x[2])
            return {"id": rid, "success": True, "errors": []}
        if op == "delete":
            org.delete(t, x[2], ctx)
            return {"id": x[2], "success": True, "errors": []}
        rid, created = org.upsert(t, x[3], x[4], x[2], ctx)
        return {"id": rid, "success": True, "errors": [],
                "created": created}

    # -- query ---------------------------------------------------------------

    def _batch_size(self, headers):
        size = 2000
        m = re.search(r"batchSize=(\d+)",
                      headers.get("sforce-query-options") or "")
        if m:
            size = min(max(int(m.group(1)), 200), 2000)
        return min(size, self.sf.query_batch_size)

    def _query(self, which, p, query, headers, version):
        if p:
            loc, _, offset = p[0].rpartition("-")
            with self.lock:
                entry = self.locators.get(loc)
            if entry is None or not offset.isdigit():
                raise WriteError("INVALID_QUERY_LOCATOR",
                                 "invalid query locator", status=400)
            return self._page(version, loc, entry, int(offset), headers)
        q = (query.get("q") or [""])[0]
        t, names, rows, count = soql.run(self.sf.org, q,
                                         which == "queryAll")
        if count:
            return json_response(200, {"totalSize": len(rows), "done": True,
                                       "records": []})
        records = [self.record(version, t, r, names) for r in rows]
        for r, rec in zip(records, rows):
            if "Id" not in names:
                del r["Id"]
        loc = self.sf.ids.new("01g")[:15]
        entry = (version, records)
        with self.lock:
            self.locators[loc] = entry
        return self._page(version, loc, entry, 0, headers)

    def _page(self, version, loc, entry, offset, headers):
        records = entry[1]
        size = self._batch_size(headers)
        page = records[offset:offset + size]
        end = offset + len(page)
        out = {"totalSize": len(records), "done": end >= len(records)}
        if not out["done"]:
            out["nextRecordsUrl"] = "/services/data/v%s/query/%s-%d" % (
                version, loc, end)
        out["records"] = page
        return json_response(200, out)
