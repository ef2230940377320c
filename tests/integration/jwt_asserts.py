"""jwt_asserts.py -- the exact RFC 6750 responses Vantage sends."""

MISSING_BODY = {"error": "missing_token",
                "error_description": "no bearer token in the request"}


def www_authenticate(error=None, reason=None, realm="vantage"):
    """The expected header.  RFC 6750 3 allows neither '"' nor '\\' in
    error_description, so the module writes them as "'" there (the JSON
    body keeps the reason as it is)."""
    v = 'Bearer realm="%s"' % realm
    if error:
        desc = reason.replace('"', "'").replace("\\", "'")
        v += ', error="%s", error_description="%s"' % (error, desc)
    return v


def _check(r, status, error, reason, realm):
    assert (r.status, r.json) == (status, {"error": error,
                                           "error_description": reason}), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("WWW-Authenticate") == [
        www_authenticate(error, reason, realm)], r


def assert_missing(r, realm="vantage"):
    assert (r.status, r.json) == (401, MISSING_BODY), r
    assert r.headers["Content-Type"] == "application/json", r
    assert r.headers.get_list("WWW-Authenticate") == [
        www_authenticate(realm=realm)], r


def assert_invalid(r, reason, realm="vantage"):
    """401 invalid_token; reason may be a tuple of acceptable reasons."""
    if isinstance(reason, tuple):
        assert r.json and r.json.get("error_description") in reason, r
        reason = r.json["error_description"]
    _check(r, 401, "invalid_token", reason, realm)


def assert_forbidden(r, reason, realm="vantage"):
    _check(r, 403, "insufficient_scope", reason, realm)


def assert_ok(r, body=None):
    assert r.status == 200, r
    assert "WWW-Authenticate" not in r.headers, r
    if body is not None:
        assert r.body == body, r
