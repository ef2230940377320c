"""prom_text.py -- a strict parser of the Prometheus text format 0.0.4.

Written here rather than taken from a client library, so that what it
accepts is exactly what the format says: every sample belongs to a family
announced by # TYPE, label values are escaped as the format says, no series
is given twice, and a histogram's buckets are cumulative and end at +Inf
with a matching _count.  Used by the tests of the worker's and the module's
metrics endpoints.
"""

import math
import re


class ExpositionError(ValueError):
    pass


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SAMPLE_RE = re.compile(r"(%s)(\{[^\n]*\})? (\S+)( -?[0-9]+)?$" % NAME)
FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
                      r"(?:[eE][+-]?[0-9]+)?$")


def _float(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not FLOAT_RE.match(s):
        raise ExpositionError("%s: %r is not a float" % (where, s))
    return float(s)


def _unescape(s, quote, where):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 == len(s):
                raise ExpositionError("%s: a lone backslash" % where)
            n = s[i + 1]
            if n == "n":
                out.append("\n")
            elif n == "\\":
                out.append("\\")
            elif n == '"' and quote:
                out.append('"')
            else:
                raise ExpositionError("%s: unknown escape \\%s" % (where, n))
            i += 2
            continue
        if c == '"' and quote:
            raise ExpositionError("%s: an unescaped quote" % where)
        out.append(c)
        i += 1
    return "".join(out)


def _labels(text, where):
    """'{a="x",b="y"}' -> {"a": "x", "b": "y"}; raises on any deviation."""
    labels = {}
    if text is None:
        return labels
    body = text[1:-1]
    i = 0
    while i < len(body):
        m = re.compile(LABEL).match(body, i)
        if not m or body[m.end():m.end() + 2] != '="':
            raise ExpositionError("%s: bad label at %r" % (where, body[i:]))
        name = m.group(0)
        j = m.end() + 2
        k = j
        while k < len(body) and body[k] != '"':
            k += 2 if body[k] == "\\" else 1
        if k >= len(body):
            raise ExpositionError("%s: unterminated label value" % where)
        if name in labels:
            raise ExpositionError("%s: label %s given twice" % (where, name))
        labels[name] = _unescape(body[j:k], True, where)
        i = k + 1
        if i < len(body):
            if body[i] != ",":
                raise ExpositionError("%s: expected a comma" % where)
            i += 1
            if i == len(body):
                raise ExpositionError("%s: a trailing comma" % where)
    return labels


def _family_of(sample, families):
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and sample[:-len(suffix)] in families \
                and families[sample[:-len(suffix)]]["type"] == "histogram":
            return sample[:-len(suffix)]
    return sample


def parse(text):
    """The families of an exposition: {name: {"type", "help", "samples":
    {(sample_name, frozenset(labels.items())): value}}}.  Raises
    ExpositionError on anything the format does not allow."""
    if not text.endswith("\n"):
        raise ExpositionError("the text does not end with a newline")
    families, order, current = {}, [], None
    for n, line in enumerate(text[:-1].split("\n"), start=1):
        where = "line %d" % n
        if line == "":
            raise ExpositionError("%s: an empty line" % where)
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise ExpositionError("%s: malformed %r" % (where, line))
                continue                                # a comment
            kind, name, rest = m.groups()
            f = families.setdefault(name, {"type": None, "help": None,
                                           "samples": {}})
            if name not in order:
                order.append(name)
            elif current != name:
                raise ExpositionError("%s: %s's lines are not together"
                                      % (where, name))
            if f["samples"]:
                raise ExpositionError("%s: %s after %s's samples"
                                      % (where, kind, name))
            if kind == "HELP":
                if f["help"] is not None:
                    raise ExpositionError("%s: HELP twice" % where)
                f["help"] = _unescape(rest, False, where)
            else:
                if f["type"] is not None:
                    raise ExpositionError("%s: TYPE twice" % where)
                if rest not in TYPES:
                    raise ExpositionError("%s: unknown type %r"
                                          % (where, rest))
                f["type"] = rest
            current = name
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ExpositionError("%s: malformed sample %r" % (where, line))
        sname, ltext, value = m.group(1), m.group(2), m.group(3)
        fname = _family_of(sname, families)
        if fname != current or families[fname]["type"] is None:
            raise ExpositionError("%s: %s has no TYPE before it"
                                  % (where, sname))
        labels = _labels(ltext, where)
        v = _float(value, where)
        key = (sname, frozenset(labels.items()))
        f = families[fname]
        if key in f["samples"]:
            raise ExpositionError("%s: duplicate series %s%s"
                                  % (where, sname, ltext or ""))
        if f["type"] == "histogram" and sname == fname:
            raise ExpositionError("%s: a histogram's bare sample" % where)
        if f["type"] in ("counter", "histogram") and not v >= 0:
            raise ExpositionError("%s: negative %s" % (where, f["type"]))
        if (sname.endswith("_bucket") and f["type"] == "histogram") \
                != ("le" in labels):
            raise ExpositionError("%s: le where it does not belong, or "
                                  "missing" % where)
        f["samples"][key] = v
    for name, f in families.items():
        if f["type"] == "histogram":
            _check_histogram(name, f)
    return families


def _check_histogram(name, f):
    series = {}
    for (sname, labels), v in f["samples"].items():
        rest = frozenset((k, x) for k, x in labels if k != "le")
        s = series.setdefault(rest, {"buckets": [], "sum": None,
                                     "count": None})
        if sname == name + "_bucket":
            s["buckets"].append((_float(dict(labels)["le"], name), v))
        elif sname == name + "_sum":
            s["sum"] = v
        else:
            s["count"] = v
    for labels, s in series.items():
        b = sorted(s["buckets"])
        if not b or b[-1][0] != math.inf:
            raise ExpositionError("%s%s: no +Inf bucket" % (name, set(labels)))
        if s["sum"] is None or s["count"] is None:
            raise ExpositionError("%s%s: _sum or _count missing"
                                  % (name, set(labels)))
        counts = [c for _, c in b]
        if counts != sorted(counts):
            raise ExpositionError("%s%s: buckets not cumulative"
                                  % (name, set(labels)))
        if b[-1][1] != s["count"]:
            raise ExpositionError("%s%s: +Inf bucket is not _count"
                                  % (name, set(labels)))


def value(fams, family, sample=None, **labels):
    """One series' value; 0 when absent (a counter never incremented)."""
    return fams[family]["samples"].get(
        (sample or family, frozenset(labels.items())), 0)
