"""errors.py -- HubSpot's error bodies, and the exception that carries one.

HubSpot's error body is {"status":"error","message":...,"correlationId":
...,"category":...} plus, for some APIs, "errors", "context" and "links";
its docs say every field is optional to a parser
(https://developers.hubspot.com/docs/api-reference/error-handling).  The
builders here leave correlationId as None: the server fills in the
request's own id, which it also sends as X-HubSpot-Correlation-Id, so that
the body and the header always agree.
"""

import json
import uuid


class ApiError(Exception):
    """An answer other than success: status, a JSON body (dict or list)
    and extra headers.  Handlers raise it; the server sends it."""

    def __init__(self, status, body, headers=()):
        super().__init__("%d %s" % (status, body))
        self.status = status
        self.body = body
        self.headers = list(headers)


def new_correlation_id():
    return str(uuid.uuid4())


def body(message, category=None, **extra):
    """{"status":"error","message","correlationId","category"} in
    HubSpot's order, then extra members (errors, context, links...)."""
    out = {"status": "error", "message": message, "correlationId": None}
    if category is not None:
        out["category"] = category
    out.update(extra)
    return out


def body_category_last(message, category, **extra):
    """The same, with category after the extra members, as HubSpot sends
    it when there are errors[] and links."""
    out = body(message, None, **extra)
    out["category"] = category
    return out


def error(status, message, category=None, **extra):
    return ApiError(status, body(message, category, **extra))


def not_found(object_id=None):
    """404 for a record that does not exist or is archived.  A numeric id
    gets "resource not found"; anything else HubSpot's hint that ids are
    numeric [C: seen in client logs; the wording is not in the docs]."""
    if object_id is not None and not str(object_id).isdigit():
        return error(404, "Object not found.  objectId are usually numeric.",
                     "OBJECT_NOT_FOUND", context={"id": [str(object_id)]})
    return error(404, "resource not found", "OBJECT_NOT_FOUND")


def invalid_json(exc):
    """400 for a body that is not JSON; HubSpot reports Jackson's parse
    error [C: seen in client logs]."""
    where = ""
    if isinstance(exc, json.JSONDecodeError):
        where = " on line %d, column %d" % (exc.lineno, exc.colno)
    return error(400, "Invalid input JSON%s: %s" % (where, getattr(
        exc, "msg", str(exc))), "VALIDATION_ERROR")


def validation(message, **extra):
    return error(400, message, "VALIDATION_ERROR", **extra)


def property_problems(problems):
    """400 VALIDATION_ERROR for invalid property values, as HubSpot's CRM
    object APIs send it: the problems as escaped JSON inside message, and
    the same again, structured, in errors[] [C: bodies quoted in public
    client code, e.g. {"isValid":false,"message":"Property \\"x\\" does
    not exist","error":"PROPERTY_DOESNT_EXIST","name":"x",...}]."""
    return ApiError(400, problems_body(problems))


def problems_body(problems):
    message = "Property values were not valid: " + json.dumps(
        problems, separators=(",", ":"))
    details = [{"message": p["message"], "code": p["error"],
                "context": {"propertyName": [p["name"]]}} for p in problems]
    return body_category_last(message, "VALIDATION_ERROR", errors=details)
