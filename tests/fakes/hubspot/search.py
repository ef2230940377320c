"""search.py -- POST /crm/v3/objects/{objectType}/search.

The body (https://developers.hubspot.com/docs/api-reference/2026-03/crm/
search-the-crm):
  filterGroups  OR of groups, each an AND of filters {propertyName,
                operator, value | values | highValue}; at most 5 groups, 10
                filters in a group and 25 in all [D: changelog "expanded
                filtering capabilities", 2024-08-26]
  sorts         [{"propertyName", "direction": "ASCENDING"|"DESCENDING"}]
                (or the string "-name")
  properties    the properties to return; default: the type's defaults
                (contacts: createdate, email, firstname, hs_object_id,
                lastmodifieddate, lastname [D])
  query         a free-text match over a few text properties
  limit, after  at most 200 per page [C]; paging.next.after is the next
                offset; no page reaches past 10,000 results [C: "at most
                10,000 results per query"; the 400's wording is M]
The answer is {"total", "results", "paging"?}.  Operators: EQ, NEQ, LT,
LTE, GT, GTE, BETWEEN, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY,
CONTAINS_TOKEN and NOT_CONTAINS_TOKEN (with * wildcards).  String
comparisons ignore case.  Search has its own per-second limit (see
ratelimit.py) and sees writes only after Store.search_lag seconds, as
HubSpot's index lags.
"""

import fnmatch
import re

from . import errors
from .objects import object_type, _scope
from .schema import parse_time_ms


MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25
MAX_LIMIT, MAX_RESULTS = 200, 10_000
OPERATORS = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN",
             "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN",
             "NOT_CONTAINS_TOKEN")
QUERY_PROPERTIES = ("firstname", "lastname", "email", "phone", "company",
                    "name", "domain", "dealname")


def _value(otype, name, raw):
    """A comparable form of a property value: a number, epoch ms, or a
    lower-case string."""
    if raw is None:
        return None
    p = otype.properties.get(name)
    kind = p.type if p is not None else "string"
    if kind == "number":
        try:
            return float(raw)
        except (TypeError, ValueError):
            return None
    if kind in ("datetime", "date"):
        return parse_time_ms(raw)
    return str(raw).lower()


def _tokens(s):
    return [t for t in re.split(r"[\s@.,;:_\-/]+", s.lower()) if t]


def _contains_token(have, want):
    want = str(want).lower()
    if "*" in want:
        return fnmatch.fnmatchcase(have.lower(), want)
    return want in _tokens(have)


def _match(otype, props, f):
    name, op = f.get("propertyName"), f.get("operator")
    raw = props.get(name)
    raw = None if raw == "" else raw
    if op == "HAS_PROPERTY":
        return raw is not None
    if op == "NOT_HAS_PROPERTY":
        return raw is None
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        hit = raw is not None and _contains_token(str(raw), f.get("value"))
        return hit if op == "CONTAINS_TOKEN" else not hit
    have = _value(otype, name, raw)
    if op in ("IN", "NOT_IN"):
        values = [_value(otype, name, v) for v in f.get("values") or []]
        hit = have is not None and have in values
        return hit if op == "IN" else not hit
    want = _value(otype, name, f.get("value"))
    if op == "EQ":
        return have is not None and have == want
    if op == "NEQ":
        return have != want
    if have is None or want is None:
        return False
    try:
        if op == "LT":
            return have < want
        if op == "LTE":
            return have <= want
        if op == "GT":
            return have > want
        if op == "GTE":
            return have >= want
        if op == "BETWEEN":
            high = _value(otype, name, f.get("highValue"))
            return high is not None and want <= have <= high
    except TypeError:
        return False
    return False


def _check(body):
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list):
        raise errors.validation("filterGroups must be a list")
    if len(groups) > MAX_GROUPS:
        raise errors.validation("Too many filter groups: %d (max %d)"
                                % (len(groups), MAX_GROUPS))
    total = 0
    for g in groups:
        filters = g.get("filters") or []
        total += len(filters)
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise errors.validation("Too many filters in a group: %d (max %d)"
                                    % (len(filters), MAX_FILTERS_PER_GROUP))
        for f in filters:
            if f.get("operator") not in OPERATORS:
                raise errors.validation("Unknown operator: %s"
                                        % f.get("operator"))
    if total > MAX_FILTERS:
        raise errors.validation("Too many filters: %d (max %d)"
                                % (total, MAX_FILTERS))
    return groups


def _sort_keys(sorts):
    out = []
    for s in sorts or []:
        if isinstance(s, str):
            out.append((s.lstrip("-"), s.startswith("-")))
        else:
            out.append((s.get("propertyName"),
                        s.get("direction", "ASCENDING") == "DESCENDING"))
    return out


def search(hs, req, type):
    otype = object_type(hs, type)
    _scope(hs, req, otype, "read")
    body = req.json() or {}
    if not isinstance(body, dict):
        raise errors.validation("Invalid input JSON: expected an object")
    groups = _check(body)
    try:
        limit = int(body.get("limit") or 10)
        offset = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise errors.validation("limit and after must be numbers")
    if limit < 1 or limit > MAX_LIMIT:
        raise errors.validation("limit must be between 1 and %d" % MAX_LIMIT)
    if offset + limit > MAX_RESULTS:
        raise errors.validation("Search results are limited to %d records: "
                                "after + limit must not exceed it"
                                % MAX_RESULTS)
    query = str(body.get("query") or "").lower()
    hits = []
    for rec, props in hs.store.searchable(otype):
        if groups and not any(all(_match(otype, props, f)
                                  for f in g.get("filters") or [])
                              for g in groups):
            continue
        if query and not any(query in str(props.get(p, "")).lower()
                             for p in QUERY_PROPERTIES):
            continue
        hits.append((rec, props))
    hits.sort(key=lambda h: int(h[0].id))
    for name, desc in reversed(_sort_keys(body.get("sorts"))):
        present = [h for h in hits if props_value(otype, h, name) is not None]
        absent = [h for h in hits if props_value(otype, h, name) is None]
        present.sort(key=lambda h: props_value(otype, h, name), reverse=desc)
        hits = present + absent
    names = body.get("properties") or otype.defaults
    page = hits[offset:offset + limit]
    results = []
    for rec, props in page:
        out = rec.public(names)
        out["properties"] = {n: (props.get(n) or None) for n in names}
        results.append(out)
    answer = {"total": len(hits), "results": results}
    if offset + limit < len(hits):
        answer["paging"] = {"next": {"after": str(offset + limit)}}
    return 200, answer


def props_value(otype, hit, name):
    return _value(otype, name, hit[1].get(name) or None)


def register(router):
    for prefix in ("/crm/v3/objects/{type}", "/crm/objects/2026-03/{type}"):
        router.add("POST", prefix + "/search", search, search=True)

