"""soql.py -- the small part of SOQL the emulator understands.

    SELECT field, ... | COUNT() FROM Object
        [WHERE cond]  cond: field op value | field [NOT] IN (v, ...)
                            | field [NOT] LIKE 'a%' | NOT cond | (cond)
                            joined by AND / OR (AND binds tighter)
        [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
        [LIMIT n] [OFFSET n]

op is = != <> < <= > >=; values are 'strings' (backslash escapes), numbers,
true, false, null and dates (2024-01-31, 2024-01-31T10:00:00Z).  String
comparison and LIKE ignore case, as SOQL's do.  Anything else is refused as
Salesforce refuses it: MALFORMED_QUERY for syntax, INVALID_TYPE for an
unknown object, INVALID_FIELD for an unknown field, each message pointing
at the row and column ("ERROR at Row:1:Column:N").
"""

import re

from .store import WriteError


KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE",
            "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT",
            "OFFSET", "TRUE", "FALSE", "NULL", "COUNT"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?
                              (?:Z|[+-]\d{2}:?\d{2}))?)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
""", re.X)


class Query:
    def __init__(self):
        self.fields = []        # requested spellings
        self.count = False
        self.object = None
        self.where = None
        self.order = []         # (field, desc, nulls_last)
        self.limit = None
        self.offset = 0


def _error(code, soql, col, text):
    return WriteError(code, "\n%s\n%s^\nERROR at Row:1:Column:%d\n%s"
                      % (soql, " " * (col - 1), col, text))


def _tokens(soql):
    out, pos = [], 0
    while pos < len(soql):
        m = _TOKEN.match(soql, pos)
        if m is None:
            raise _error("MALFORMED_QUERY", soql, pos + 1,
                         "unexpected token: '%s'" % soql[pos])
        kind = m.lastgroup
        if kind != "ws":
            text = m.group()
            if kind == "name" and text.upper() in KEYWORDS:
                kind = "kw"
            out.append((kind, text, pos + 1))
        pos = m.end()
    out.append(("end", "<EOF>", len(soql) + 1))
    return out


class _Parser:
    def __init__(self, soql):
        self.soql = soql
        self.toks = _tokens(soql)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def unexpected(self, tok=None):
        kind, text, col = tok or self.peek()
        return _error("MALFORMED_QUERY", self.soql, col,
                      "unexpected token: '%s'" % text)

    def kw(self, word):
        kind, text, _ = self.peek()
        if kind == "kw" and text.upper() == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word):
        if not self.kw(word):
            raise self.unexpected()

    def name(self):
        tok = self.next()
        if tok[0] != "name":
            raise self.unexpected(tok)
        return tok

    def parse(self):
        q = Query()
        self.expect_kw("SELECT")
        if self.kw("COUNT"):
            if self.next()[1] != "(" or self.next()[1] != ")":
                raise self.unexpected(self.toks[self.i - 1])
            q.count = True
        else:
            while True:
                q.fields.append(self.name())
                if self.peek()[1] != ",":
                    break
                self.next()
        self.expect_kw("FROM")
        q.object = self.name()
        if self.kw("WHERE"):
            q.where = self.expr()
        if self.kw("ORDER"):
            self.expect_kw("BY")
            while True:
                f = self.name()
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                nulls_last = desc
                if self.kw("NULLS"):
                    if self.kw("LAST"):
                        nulls_last = True
                    else:
                        self.expect_kw("FIRST")
                        nulls_last = False
                q.order.append((f, desc, nulls_last))
                if self.peek()[1] != ",":
                    break
                self.next()
        if self.kw("LIMIT"):
            q.limit = self.integer()
        if self.kw("OFFSET"):
            q.offset = self.integer()
        if self.peek()[0] != "end":
            raise self.unexpected()
        return q

    def integer(self):
        tok = self.next()
        if tok[0] != "num" or "." in tok[1] or tok[1].startswith("-"):
            raise self.unexpected(tok)
        return int(tok[1])

    def expr(self):
        node = self.term()
        while self.kw("OR"):
            node = ("or", node, self.term())
        return node

    def term(self):
        node = self.factor()
        while self.kw("AND"):
            node = ("and", node, self.factor())
        return node

    def factor(self):
        if self.kw("NOT"):
            return ("not", self.factor())
        if self.peek()[1] == "(":
            self.next()
            node = self.expr()
            if self.next()[1] != ")":
                raise self.unexpected(self.toks[self.i - 1])
            return node
        field = self.name()
        negate = self.kw("NOT")
        if self.kw("IN"):
            if self.next()[1] != "(":
                raise self.unexpected(self.toks[self.i - 1])
            values = []
            while True:
                values.append(self.value())
                tok = self.next()
                if tok[1] == ")":
                    break
                if tok[1] != ",":
                    raise self.unexpected(tok)
            node = ("in", field, values)
        elif self.kw("LIKE"):
            v = self.value()
            node = ("like", field, v)
        elif negate:
            raise self.unexpected()
        else:
            op = self.next()
            if op[0] != "op":
                raise self.unexpected(op)
            node = ("cmp", field, op[1], self.value())
        return ("not", node) if negate else node

    def value(self):
        kind, text, col = self.next()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "date":
            return text
        if kind == "kw" and text.upper() in ("TRUE", "FALSE"):
            return text.upper() == "TRUE"
        if kind == "kw" and text.upper() == "NULL":
            return None
        raise self.unexpected((kind, text, col))


def parse(soql):
    """The Query, or WriteError MALFORMED_QUERY."""
    if not soql or not soql.strip():
        raise WriteError("MALFORMED_QUERY", "A query string must be "
                         "provided.")
    return _Parser(soql).parse()


def _resolve(org, soql, q):
    """Checks the object and fields against the org; returns the type and
    the canonical names of the selected fields."""
    kind, text, col = q.object
    t = org.type(text)
    if t is None or t.platform_event:
        raise _error("INVALID_TYPE", soql, col,
                     "sObject type '%s' is not supported. If you are "
                     "attempting to use a custom object, be sure to append "
                     "the '__c' after the entity name. Please reference "
                     "your WSDL or the describe call for the appropriate "
                     "names." % text)

    def field(tok):
        name = t.field(tok[1]) if "." not in tok[1] else None
        if name is None:
            raise _error("INVALID_FIELD", soql, tok[2],
                         "No such column '%s' on entity '%s'. If you are "
                         "attempting to use a custom field, be sure to "
                         "append the '__c' after the custom field name. "
                         "Please reference your WSDL or the describe call "
                         "for the appropriate names." % (tok[1], t.name))
        return name

    names = [field(tok) for tok in q.fields]

    def walk(node):
        if node is None:
            return None
        if node[0] in ("and", "or"):
            return (node[0], walk(node[1]), walk(node[2]))
        if node[0] == "not":
            return ("not", walk(node[1]))
        return (node[0], field(node[1])) + tuple(node[2:])

    where = walk(q.where)
    order = [(field(f), d, n) for f, d, n in q.order]
    return t, names, where, order


def _norm(v):
    if isinstance(v, str):
        return (1, v.lower())
    if isinstance(v, bool):
        return (0, int(v))
    if isinstance(v, (int, float)):
        return (0, v)
    return (2, str(v))


def _like(pattern, v):
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c)
                 for c in pattern)
    return re.fullmatch(rx, str(v), re.I | re.S) is not None


def _match(node, rec):
    if node is None:
        return True
    op = node[0]
    if op == "and":
        return _match(node[1], rec) and _match(node[2], rec)
    if op == "or":
        return _match(node[1], rec) or _match(node[2], rec)
    if op == "not":
        return not _match(node[1], rec)
    v = rec.get(node[1])
    if op == "in":
        return v is not None and any(_norm(v) == _norm(x) for x in node[2])
    if op == "like":
        return v is not None and node[2] is not None and _like(node[2], v)
    cmp, x = node[2], node[3]
    if x is None or v is None:
        same = (x is None) == (v is None)
        return same if cmp == "=" else (not same if cmp in ("!=", "<>")
                                        else False)
    a, b = _norm(v), _norm(x)
    return {"=": a == b, "!=": a != b, "<>": a != b, "<": a < b,
            "<=": a <= b, ">": a > b, ">=": a >= b}[cmp]


def run(org, soql, include_deleted=False):
    """(type, selected field names, matching records as views, count_only)
    for soql against org.  WriteError on a bad query."""
    q = parse(soql)
    t, names, where, order = _resolve(org, soql, q)
    rows = [org.view(t, r) for r in org.all(t, include_deleted)]
    rows = [r for r in rows if _match(where, r)]
    rows.sort(key=lambda r: r.get("CreatedDate") or "")
    for f, desc, nulls_last in reversed(order):
        present = [r for r in rows if r.get(f) is not None]
        absent = [r for r in rows if r.get(f) is None]
        present.sort(key=lambda r: _norm(r[f]), reverse=desc)
        rows = present + absent if nulls_last else absent + present
    rows = rows[q.offset:]
    if q.limit is not None:
        rows = rows[:q.limit]
    return t, names, rows, q.count
