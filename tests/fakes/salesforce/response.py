"""response.py -- what a handler answers: status, headers, body or chunks."""

import json

JSON = "application/json;charset=UTF-8"
CSV = "text/csv"


class Response:
    """body is bytes; chunks, when given instead, an iterable of bytes sent
    with Transfer-Encoding: chunked (large Bulk CSVs)."""

    def __init__(self, status, body=b"", content_type=JSON, headers=None,
                 chunks=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = list(headers or [])
        self.chunks = chunks


def json_response(status, obj, headers=None):
    return Response(status, json.dumps(obj).encode(), JSON, headers)


def no_content(headers=None):
    return Response(204, b"", None, headers)


def error(status, code, message, fields=None):
    """Salesforce's REST error body: a JSON array of one error.  fields is
    left out when None (as Salesforce omits it for request-level errors)."""
    e = {"message": message, "errorCode": code}
    if fields is not None:
        e["fields"] = list(fields)
    return json_response(status, [e])


def write_error(e):
    """A store.WriteError as a single-record REST answer."""
    return json_response(e.status, [e.rest()])
