"""test_correlation.py -- $vantage_request_id and vantage_request_id: one
correlation id from the client to the upstream, the worker's job, the
worker's log and its target, back to the client and into the access log.

The id is the client's X-Request-Id when well-formed (1 to 128 of
[A-Za-z0-9._:-], sent once), else its X-Correlation-ID by the same rule,
else the trace-id of a valid W3C traceparent, else nginx's $request_id.
What the upstream received is read from the header-echoing backend; the
worker, its Redis and its HTTP target are real (tests/fakes/http_target.py).
"""

import itertools
import json
import os
import re
import socket

import pytest

import vantage_harness as vh
import worker_harness as wh
from vantage_harness import header_values


HEX32 = re.compile(r"[0-9a-f]{32}")
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID_TP = "00-%s-%s-01" % (TRACE, PARENT)

ORIGIN_SERVER = """
    server {
        listen unix:@PREFIX@/origin.sock;
        access_log off;
        location / {
            add_header X-Request-Id from-upstream always;
            return 200 "origin";
        }
    }
    log_format corr '$vantage_request_id "$request_uri" $status';
"""


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, backend):
    echo = "http://%s" % backend.address
    return module_nginx_factory(name="correlation", http=ORIGIN_SERVER,
                                server=f"""
        access_log @PREFIX@/corr.log corr;

        location /on/ {{
            vantage_request_id on;
            proxy_pass {echo};
        }}
        location /off/ {{
            add_header X-Var $vantage_request_id always;
            proxy_pass {echo};
        }}
        location /local/ {{
            vantage_request_id on;
            return 404;
        }}
        location /origin/ {{
            vantage_request_id on;
            proxy_pass http://unix:@PREFIX@/origin.sock:/;
        }}
        location /redirect/ {{
            vantage_request_id on;
            set $first $vantage_request_id;
            add_header X-First $first always;
            error_page 404 = /on/redirected;
            return 404;
        }}
        location /removed/ {{
            vantage_request_id on;
            vantage_remove_header request X-Request-Id;
            proxy_pass {echo};
        }}
""")


_seq = itertools.count()


def uniq(path):
    """path with a suffix no other request of the run has, so that its
    access log line is its own"""
    return "%s-%d" % (path, next(_seq))


def get(client, path, headers=()):
    return client.request("GET", path, headers=list(headers))


def upstream(r):
    assert r.status == 200, r
    return r.json


def one(values):
    assert len(values) == 1, values
    return values[0]


def log_ids(nginx, uri):
    """The ids of the access log's lines for uri."""
    path = os.path.join(nginx.prefix, "corr.log")

    def lines():
        if not os.path.exists(path):
            return None
        with open(path) as f:
            got = [l.split()[0] for l in f if '"%s"' % uri in l]
        return got or None

    return vh.wait_for(lines, 5, what="the access log line for " + uri)


# --------------------------------------------------------------------------
# which id

@pytest.mark.parametrize("rid", ["abc-123_x.y:z", "A" * 128, "1"])
def test_client_request_id_kept(server, client, rid):
    uri = uniq("/on/kept")
    r = get(client, uri, [("X-Request-Id", rid)])
    echo = upstream(r)
    assert header_values(echo, "x-request-id") == [rid]
    assert r.headers.get_list("x-request-id") == [rid]
    tp = TRACEPARENT.fullmatch(one(header_values(echo, "traceparent")))
    assert tp and tp.group(2) != "0" * 16, echo
    # not 32 lower case hex: the new trace gets a random trace-id
    assert HEX32.fullmatch(tp.group(1)) and tp.group(1) != rid
    assert log_ids(server, uri) == [rid]


@pytest.mark.parametrize("rid", ["bad id", "A" * 129, "semi;colon", "é",
                                 ""], ids=["space", "129", "semicolon",
                                           "non-ascii", "empty"])
def test_invalid_request_id_replaced(server, client, rid):
    uri = uniq("/on/invalid")
    r = get(client, uri, [("X-Request-Id", rid.encode())])
    echo = upstream(r)
    made = one(header_values(echo, "x-request-id"))
    assert HEX32.fullmatch(made), echo
    assert r.headers.get_list("x-request-id") == [made]
    # a generated id is 32 hex: the trace continues under it
    tp = TRACEPARENT.fullmatch(one(header_values(echo, "traceparent")))
    assert tp and tp.group(1) == made, echo
    assert log_ids(server, uri) == [made]


def test_repeated_request_id_is_not_well_formed(client):
    r = get(client, "/on/twice", [("X-Request-Id", "one"),
                                  ("X-Request-Id", "two")])
    made = one(header_values(upstream(r), "x-request-id"))
    assert HEX32.fullmatch(made), r


def test_generated_when_nothing_is_sent(server, client):
    uri = uniq("/on/none")
    r = get(client, uri)
    echo = upstream(r)
    made = one(header_values(echo, "x-request-id"))
    assert HEX32.fullmatch(made)
    assert r.headers["x-request-id"] == made
    assert TRACEPARENT.fullmatch(one(header_values(echo, "traceparent")))\
        .group(1) == made
    assert log_ids(server, uri) == [made]
    # another request, another id
    assert one(header_values(upstream(get(client, "/on/none")),
                             "x-request-id")) != made


def test_valid_traceparent_gives_the_id(server, client):
    uri = uniq("/on/tp")
    r = get(client, uri, [("traceparent", VALID_TP),
                               ("tracestate", "vendor=1")])
    echo = upstream(r)
    assert header_values(echo, "x-request-id") == [TRACE]
    assert header_values(echo, "traceparent") == [VALID_TP]
    assert header_values(echo, "tracestate") == ["vendor=1"]
    assert r.headers["x-request-id"] == TRACE
    assert log_ids(server, uri) == [TRACE]


@pytest.mark.parametrize("tp", [
    "01-%s-%s-01" % (TRACE, PARENT),                 # a later version
    "cc-%s-%s-09-what-comes-next" % (TRACE, PARENT),
], ids=["v01", "vcc-longer"])
def test_later_traceparent_versions_read_as_00(client, tp):
    echo = upstream(get(client, "/on/tpv", [("traceparent", tp)]))
    assert header_values(echo, "x-request-id") == [TRACE]
    assert header_values(echo, "traceparent") == [tp]


@pytest.mark.parametrize("tp", [
    VALID_TP.upper(),                                # upper case hex
    "00-%s-%s-01" % ("0" * 32, PARENT),              # all-zero trace-id
    "00-%s-%s-01" % (TRACE, "0" * 16),               # all-zero parent-id
    "ff-%s-%s-01" % (TRACE, PARENT),                 # version ff
    VALID_TP + "-extra",                             # 00 is exactly 55
    "01-%s-%s-01x" % (TRACE, PARENT),                # later: no dash
    VALID_TP[:-1],                                   # short
    "00-%s-%s-0g" % (TRACE, PARENT),                 # flags not hex
    "00_%s-%s-01" % (TRACE, PARENT),                 # separator
], ids=["upper", "zero-trace", "zero-parent", "ff", "00-longer",
        "later-no-dash", "short", "flags", "separator"])
def test_invalid_traceparent_restarts_the_trace(client, tp):
    r = get(client, "/on/tpbad", [("traceparent", tp),
                                  ("tracestate", "vendor=1")])
    echo = upstream(r)
    made = one(header_values(echo, "x-request-id"))
    assert HEX32.fullmatch(made) and made != TRACE, echo
    sent = one(header_values(echo, "traceparent"))
    assert TRACEPARENT.fullmatch(sent).group(1) == made, echo
    # the old trace's state does not go with the new one
    assert header_values(echo, "tracestate") == []


def test_two_traceparents_are_invalid(client):
    echo = upstream(get(client, "/on/tp2", [("traceparent", VALID_TP),
                                            ("traceparent", VALID_TP)]))
    assert one(header_values(echo, "x-request-id")) != TRACE


def test_request_id_before_correlation_id_before_traceparent(client):
    echo = upstream(get(client, "/on/order", [
        ("traceparent", VALID_TP), ("X-Correlation-ID", "corr-1"),
        ("X-Request-Id", "req-1")]))
    assert header_values(echo, "x-request-id") == ["req-1"]
    assert header_values(echo, "traceparent") == [VALID_TP]
    echo = upstream(get(client, "/on/order", [
        ("traceparent", VALID_TP), ("X-Correlation-ID", "corr-1"),
        ("X-Request-Id", "bad id")]))
    assert header_values(echo, "x-request-id") == ["corr-1"]
    # the client's correlation header itself is passed on as it was
    assert header_values(echo, "x-correlation-id") == ["corr-1"]


# --------------------------------------------------------------------------
# where it goes

def test_off_changes_nothing_but_the_variable_works(server, client):
    uri = uniq("/off/x")
    r = get(client, uri, [("X-Request-Id", "bad id"),
                               ("traceparent", "junk")])
    echo = upstream(r)
    assert header_values(echo, "x-request-id") == ["bad id"]
    assert header_values(echo, "traceparent") == ["junk"]
    assert "x-request-id" not in r.headers
    made = r.headers["x-var"]
    assert HEX32.fullmatch(made), r
    assert log_ids(server, uri) == [made]


def test_returned_on_a_local_error(server, client):
    uri = uniq("/local/x")
    r = get(client, uri, [("X-Request-Id", "err-1")])
    assert r.status == 404, r
    assert r.headers.get_list("x-request-id") == ["err-1"]
    assert log_ids(server, uri) == ["err-1"]


def test_replaces_the_upstream_s_own(client):
    r = get(client, "/origin/", [("X-Request-Id", "mine")])
    assert r.status == 200 and r.body == "origin", r
    assert r.headers.get_list("x-request-id") == ["mine"]


def test_one_id_across_an_internal_redirect(server, client):
    uri = uniq("/redirect/x")
    r = get(client, uri)
    echo = upstream(r)
    made = one(header_values(echo, "x-request-id"))
    assert HEX32.fullmatch(made)
    assert r.headers.get_list("x-request-id") == [made]
    assert log_ids(server, uri) == [made]


def test_header_operations_run_after_it(client):
    """The id is read from the client's headers before they change; a
    location may still keep it from the upstream."""
    r = get(client, "/removed/x", [("X-Request-Id", "keep-me")])
    echo = upstream(r)
    assert header_values(echo, "x-request-id") == []
    assert r.headers.get_list("x-request-id") == ["keep-me"]


def test_config_flag(module_available, nginx_factory):
    n = nginx_factory(server="location / { vantage_request_id maybe; }",
                      start=False)
    rc, out = n.test_config()
    vh.assert_one_emerg(rc, out, 'invalid value "maybe" in '
                                 '"vantage_request_id" directive')


# --------------------------------------------------------------------------
# to the worker and its target

@pytest.fixture
def stack(nginx_factory, worker_factory, target, module_available):
    worker_factory.socket_mode = 0o777
    w = worker_factory(wh.CONFIG_HEAD
                       + "[job corr.orders]\nconnector = http\nurl = %s\n"
                         "timeout = 2s\n" % target.url("/in"))
    n = nginx_factory(http="""
    vantage_worker unix:%s timeout=2s;
    log_format corr '$vantage_request_id "$request_uri" $status';
""" % w.socket_path, server="""
        access_log @PREFIX@/corr.log corr;
        vantage_request_id on;
        location = /orders {
            vantage_tenant acme;
            vantage_dispatch corr.orders;
            vantage_dispatch_headers Content-Type X-Request-Id;
        }
""")
    return n, w


@pytest.mark.parametrize("sent", [
    [("X-Request-Id", "e2e-req-1")],
    [("X-Correlation-ID", "e2e-corr-1")],
    [("traceparent", VALID_TP)],
    [],
], ids=["x-request-id", "x-correlation-id", "traceparent", "generated"])
def test_end_to_end_through_the_worker(stack, client_for, rc, target, sent):
    n, w = stack
    c = client_for(n)
    r = c.request("POST", "/orders", content=b'{"order": 1}',
                  headers=[("Content-Type", "application/json")] + sent)
    assert r.status == 202, r
    rid = r.headers["x-request-id"]
    if sent:
        want = sent[0][1] if sent[0][0] != "traceparent" else TRACE
        assert rid == want, r
    else:
        assert HEX32.fullmatch(rid), r
    assert r.headers.get_list("x-request-id") == [rid]
    assert r.headers.get_list("x-correlation-id") == [rid]

    job_id = r.json["job_id"]
    job = rc.hgetall(b"{vq}:job:" + job_id.encode())
    assert job[b"correlation_id"] == rid.encode()
    # the job's copy of the request's headers holds the id vantage set
    assert [v for k, v in json.loads(job[b"headers"])
            if k.lower() == "x-request-id"] == [rid]

    got = vh.wait_for(lambda: target.got("/in"), 10, what="the delivery")
    assert got[0]["headers"]["x-correlation-id"] == rid
    assert got[0]["headers"]["idempotency-key"] == job_id

    def attempt():
        return [o for o in w.log_lines() if o.get("msg") == "attempt"
                and o.get("job") == job_id]

    line = vh.wait_for(attempt, 10, what="the worker's attempt line")[0]
    assert line["level"] == "info" and line["correlation_id"] == rid, line
    assert log_ids(n, "/orders") == [rid]


def test_a_request_nginx_refuses_before_its_headers(module_available,
                                                    nginx_factory):
    """A bad request line is answered 400 from the server's configuration
    before any header is read: the response still gets its id, and the
    access log line has the same one."""
    n = nginx_factory(http="""
    log_format corr '$vantage_request_id "$request" $status';
""", server="""
        access_log @PREFIX@/corr.log corr;
        vantage_request_id on;
        vantage_set_header response X-Seen yes;
        location / { return 204; }
""")
    with socket.create_connection(("127.0.0.1", n.http_port), timeout=5) as s:
        s.sendall(b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode().replace("\r\n", "\n")
    assert head.startswith("HTTP/1.1 400"), head
    ids = re.findall(r"(?mi)^x-request-id: (\S+)$", head)
    assert len(ids) == 1 and HEX32.fullmatch(ids[0]), head
    assert re.search(r"(?mi)^x-seen: yes$", head), head
    path = os.path.join(n.prefix, "corr.log")
    line = vh.wait_for(lambda: os.path.exists(path) and open(path).read(),
                       5, what="the access log line")
    assert line.split()[0] == ids[0], line
