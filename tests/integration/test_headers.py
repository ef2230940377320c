"""test_headers.py -- vantage_set_header, vantage_remove_header and
vantage_rename_header on the request and on the response.

One nginx (two workers) serves every location; each test runs over
HTTP/1.1 and over HTTP/2 with TLS.  What reached the upstream is read from
the header-echoing backend, with every value and count exact; response
headers come from a second server of the same nginx (the "origin") or from
nginx's own static files, whose ETag, Last-Modified, Content-Type and
Server nginx keeps outside the header list.  Tokens are minted by PyJWT.
"""

import os
import re

import pytest

import vantage_harness as vh
from vantage_harness import RESPONDER_SERVER, assert_one_emerg, header_values
from vantage_tokens import claims, mint


ORIGIN_SERVER = """
    server {
        listen unix:@PREFIX@/origin.sock;
        access_log off;
        location / {
            add_header X-Multi one;
            add_header X-Multi two;
            add_header X-Origin yes;
            add_header X-Target stale;
            return 200 "origin";
        }
        location /missing {
            add_header X-Origin yes always;
            return 404;
        }
    }
"""


@pytest.fixture(scope="module")
def server(module_available, module_nginx_factory, keys, backend):
    echo = "http://%s" % backend.address
    hs = keys.path("hs.secret")
    n = module_nginx_factory(name="headers", http=RESPONDER_SERVER
                             + ORIGIN_SERVER, server=f"""
        # inherited where a location has none of a side
        vantage_set_header request X-Srv server-level;
        vantage_set_header response X-Srv-Resp server-level;

        location /inherit/ {{
            proxy_pass {echo};
        }}
        location /set/ {{
            vantage_set_header request X-Advisor $http_x_in;
            vantage_set_header request X-Fixed "fixed value";
            vantage_set_header request X-Empty $http_x_missing;
            vantage_set_header request User-Agent "vantage-test/1";
            proxy_set_header X-UA-Var $http_user_agent;
            proxy_pass {echo};
        }}
        location /remove/ {{
            vantage_remove_header request X-Secret Cookie X-Forwarded-For
                                          Authorization;
            proxy_set_header X-Cookie-Var $http_cookie;
            proxy_set_header X-Xff-Var $http_x_forwarded_for;
            proxy_set_header X-Auth-Var $http_authorization;
            proxy_pass {echo};
        }}
        location /rename/ {{
            vantage_rename_header request X-Old X-New;
            vantage_rename_header request Cookie X-Was-Cookie;
            proxy_set_header X-Cookie-Var $http_cookie;
            proxy_pass {echo};
        }}
        location /xff/ {{
            vantage_set_header request X-Forwarded-For 10.0.0.1;
            proxy_set_header X-Chain $proxy_add_x_forwarded_for;
            proxy_pass {echo};
        }}
        location /claim/ {{
            vantage_jwt on;
            vantage_jwt_keys {hs};
            vantage_set_header request X-Advisor-Sub $vantage_jwt_claim_sub;
            vantage_set_header request X-Tenant "t=$vantage_jwt_claim_tenant";
            vantage_remove_header request Authorization;
            vantage_set_header response X-Sub "sub=$vantage_jwt_claim_sub";
            proxy_pass {echo};
        }}
        location /once/ {{
            vantage_set_header request X-Once "$http_x_count-once";
            try_files /nonexistent @named;
        }}
        location @named {{
            vantage_set_header request X-Named yes;
            proxy_pass {echo};
        }}
        location /resp/ {{
            vantage_set_header response X-Added "v=$upstream_http_x_origin";
            vantage_remove_header response X-Origin;
            vantage_rename_header response X-Multi X-Target;
            proxy_pass http://unix:@PREFIX@/origin.sock:/;
        }}
        location /resp-missing/ {{
            vantage_set_header response X-Added "v=$upstream_http_x_origin";
            vantage_rename_header response X-Origin X-Was-Origin;
            proxy_pass http://unix:@PREFIX@/origin.sock:/missing;
        }}
        location /deny/ {{
            vantage_set_header response X-Always yes;
            vantage_set_header response X-Empty $http_x_missing;
            return 403;
        }}
        location /static/ {{
            vantage_set_header response Content-Type
                                        "application/x-vantage; charset=utf-8";
            vantage_remove_header response Server ETag Last-Modified Date;
        }}
        location /static-set/ {{
            alias @PREFIX@/html/static/;
            vantage_set_header response Server vantage;
            vantage_set_header response ETag '"v1"';
            vantage_set_header response Last-Modified
                                        "Mon, 01 Jan 2024 00:00:00 GMT";
            vantage_remove_header response Content-Type;
        }}
        location /static-plain/ {{
            alias @PREFIX@/html/static/;
            vantage_set_header response X-Unrelated yes;
        }}
""", start=False)
    vh.make_dir(os.path.join(n.html, "static"))
    vh.write_file(os.path.join(n.html, "static", "file.txt"), "static\n")
    n.start()
    return n


def pairs(client, path, headers):
    """GET with headers as a list of pairs, so that a name may repeat."""
    return client.request("GET", path, headers=headers)


def sent(r):
    """The pairs the echo backend received, in order."""
    assert r.status == 200, r
    return r.json


def values(r, name):
    return header_values(sent(r), name)


def response_values(r, name):
    return r.headers.get_list(name)


# --------------------------------------------------------------------------
# the request

def test_set_literals_variables_and_empty_removes(client):
    r = pairs(client, "/set/", [("X-In", "adv-42"),
                                     ("X-Empty", "from client"),
                                     ("X-Fixed", "client's"),
                                     ("X-Fixed", "client's too"),
                                     ("User-Agent", "curl/8")])
    echo = sent(r)
    assert header_values(echo, "x-advisor") == ["adv-42"]
    assert header_values(echo, "x-fixed") == ["fixed value"]
    assert header_values(echo, "x-empty") == []
    assert header_values(echo, "user-agent") == ["vantage-test/1"]
    # nginx's own pointer (r->headers_in.user_agent) follows the change
    assert header_values(echo, "x-ua-var") == ["vantage-test/1"]
    # this location has request operations: the server's are not inherited
    assert header_values(echo, "x-srv") == []
    # ... but it has no response ones: those are
    assert response_values(r, "x-srv-resp") == ["server-level"]


def test_set_without_the_variable_removes(client):
    echo = sent(client.get("/set/", headers={"X-Advisor": "client's"}))
    assert header_values(echo, "x-advisor") == []


def test_inherited_from_the_server(client):
    r = client.get("/inherit/", headers={"X-Srv": "client's"})
    assert values(r, "x-srv") == ["server-level"]
    assert response_values(r, "x-srv-resp") == ["server-level"]


def test_remove_every_occurrence_and_nginx_pointers(client):
    r = pairs(client, "/remove/", [
        ("X-Secret", "one"), ("X-Secret", "two"), ("X-Keep", "kept"),
        ("Cookie", "session=abc"), ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "5.6.7.8"), ("Authorization", "Basic dTpw")])
    echo = sent(r)
    for name in ("x-secret", "cookie", "x-forwarded-for", "authorization",
                 "x-cookie-var", "x-xff-var", "x-auth-var"):
        assert header_values(echo, name) == [], name
    assert header_values(echo, "x-keep") == ["kept"]


def test_rename_keeps_every_value_in_order(client):
    r = pairs(client, "/rename/", [
        ("X-Old", "a"), ("X-Other", "between"), ("X-Old", "b"),
        ("X-New", "stale"), ("Cookie", "k=v")])
    echo = sent(r)
    assert header_values(echo, "x-old") == []
    assert header_values(echo, "x-new") == ["a", "b"]
    assert header_values(echo, "x-other") == ["between"]
    assert header_values(echo, "cookie") == []
    assert header_values(echo, "x-was-cookie") == ["k=v"]
    assert header_values(echo, "x-cookie-var") == []


def test_rename_of_an_absent_header_keeps_the_target(client):
    echo = sent(client.get("/rename/", headers={"X-New": "client's"}))
    assert header_values(echo, "x-new") == ["client's"]
    assert header_values(echo, "x-old") == []


def test_multi_valued_x_forwarded_for(client):
    r = pairs(client, "/xff/", [("X-Forwarded-For", "1.1.1.1"),
                                     ("X-Forwarded-For", "2.2.2.2")])
    echo = sent(r)
    assert header_values(echo, "x-forwarded-for") == ["10.0.0.1"]
    # $proxy_add_x_forwarded_for reads nginx's array of them
    assert header_values(echo, "x-chain") == ["10.0.0.1, 127.0.0.1"]


def test_values_from_jwt_claims(client, keys):
    token = mint(keys.hs, "HS256", claims(sub="advisor-7", tenant="firm-9"))
    r = client.get("/claim/", token=token)
    echo = sent(r)
    assert header_values(echo, "x-advisor-sub") == ["advisor-7"]
    assert header_values(echo, "x-tenant") == ["t=firm-9"]
    assert header_values(echo, "authorization") == []
    assert response_values(r, "x-sub") == ["sub=advisor-7"]


def test_response_operations_on_a_refusal(client):
    r = client.get("/claim/")
    assert r.status == 401, r
    assert response_values(r, "x-sub") == ["sub="]


def test_once_per_main_request(client):
    """try_files redirects to @named after the PRECONTENT handler ran: the
    request's operations are not applied a second time, nor @named's."""
    echo = sent(client.get("/once/", headers={"X-Count": "c"}))
    assert header_values(echo, "x-once") == ["c-once"]
    assert header_values(echo, "x-named") == []


# --------------------------------------------------------------------------
# the response

def test_response_set_remove_rename(client):
    r = client.get("/resp/")
    assert r.status == 200 and r.body == "origin", r
    assert response_values(r, "x-added") == ["v=yes"]
    assert response_values(r, "x-origin") == []
    assert response_values(r, "x-multi") == []
    # the rename replaced the origin's X-Target
    assert response_values(r, "x-target") == ["one", "two"]
    assert response_values(r, "x-srv-resp") == []


def test_response_operations_on_an_upstream_error(client):
    r = client.get("/resp-missing/")
    assert r.status == 404, r
    assert response_values(r, "x-added") == ["v=yes"]
    assert response_values(r, "x-origin") == []
    assert response_values(r, "x-was-origin") == ["yes"]


def test_response_operations_on_a_local_error(client):
    r = client.get("/deny/")
    assert r.status == 403, r
    assert response_values(r, "x-always") == ["yes"]
    assert response_values(r, "x-empty") == []


def test_special_headers_removed_and_content_type_set(client):
    r = client.get("/static/file.txt")
    assert r.status == 200 and r.body == "static\n", r
    assert response_values(r, "content-type") == \
        ["application/x-vantage; charset=utf-8"]
    for name in ("server", "etag", "last-modified", "date"):
        assert response_values(r, name) == [], name
    assert response_values(r, "accept-ranges") == ["bytes"]


def test_removed_last_modified_is_not_compared(client):
    r = client.get("/static/file.txt",
                   headers={"If-Modified-Since": "Thu, 01 Jan 2099 "
                                                 "00:00:00 GMT"})
    assert r.status == 200, r


def test_special_headers_set(client):
    r = client.get("/static-set/file.txt")
    assert r.status == 200 and r.body == "static\n", r
    assert response_values(r, "server") == ["vantage"]
    assert response_values(r, "etag") == ['"v1"']
    assert response_values(r, "last-modified") == \
        ["Mon, 01 Jan 2024 00:00:00 GMT"]
    assert response_values(r, "content-type") == []


def test_set_etag_and_last_modified_drive_conditionals(client):
    r = client.get("/static-set/file.txt", headers={"If-None-Match": '"v1"'})
    assert r.status == 304, r
    r = client.get("/static-set/file.txt", headers={"If-None-Match": '"v0"'})
    assert r.status == 200, r
    r = client.get("/static-set/file.txt",
                   headers={"If-Modified-Since": "Mon, 01 Jan 2024 "
                                                 "00:00:00 GMT"})
    assert r.status == 304, r


def test_special_headers_untouched_elsewhere(client):
    r = client.get("/static-plain/file.txt")
    assert r.status == 200, r
    assert response_values(r, "content-type") == ["text/plain"]
    assert len(response_values(r, "etag")) == 1
    assert len(response_values(r, "last-modified")) == 1
    assert response_values(r, "server")[0].startswith("nginx")
    assert response_values(r, "x-unrelated") == ["yes"]


# --------------------------------------------------------------------------
# configuration errors

CONF_ERRORS = [
    ('vantage_set_header request "X Bad" v;',
     '"vantage_set_header": invalid header name "X Bad"'),
    ('vantage_remove_header response X-Ok "X:Bad";',
     '"vantage_remove_header": invalid header name "X:Bad"'),
    ("vantage_set_header request Host example.com;",
     '"vantage_set_header" cannot change the request header "Host": nginx '
     'reads it itself; use "proxy_set_header" for what the upstream gets'),
    ("vantage_remove_header request Content-Length;",
     '"vantage_remove_header" cannot change the request header '
     '"Content-Length"'),
    ("vantage_rename_header request Transfer-Encoding X-TE;",
     '"vantage_rename_header" cannot change the request header '
     '"Transfer-Encoding"'),
    ("vantage_rename_header request X-A Connection;",
     '"vantage_rename_header" cannot change the request header '
     '"Connection"'),
    ("vantage_set_header response Content-Length 10;",
     '"vantage_set_header" cannot change the response header '
     '"Content-Length": nginx makes it for the connection'),
    ("vantage_remove_header response Transfer-Encoding;",
     '"vantage_remove_header" cannot change the response header '
     '"Transfer-Encoding"'),
    ("vantage_remove_header response Connection;",
     '"vantage_remove_header" cannot change the response header '
     '"Connection"'),
    ("vantage_remove_header both X-A;",
     '"vantage_remove_header": "both" is neither "request" nor "response"'),
    ("vantage_set_header request X-A 1; vantage_set_header request x-a 2;",
     '"vantage_set_header": the request header "x-a" is already named by '
     'another header operation at this level'),
    ("vantage_set_header response X-A 1; vantage_remove_header response "
     "X-A;",
     '"vantage_remove_header": the response header "X-A" is already named'),
    ("vantage_remove_header request X-A X-B X-A;",
     '"vantage_remove_header": the request header "X-A" is already named'),
    ("vantage_rename_header request X-A X-B; vantage_set_header request "
     "X-B v;",
     '"vantage_set_header": the request header "X-B" is already named'),
    ("vantage_rename_header request X-A x-a;",
     '"vantage_rename_header": "X-A" renamed to itself'),
    ("vantage_rename_header response Server X-Server;",
     '"vantage_rename_header": the response header "Server" cannot be '
     'renamed: nginx makes it outside the header list; use '
     '"vantage_set_header" with $sent_http_* instead'),
    ("vantage_rename_header response X-Type Content-Type;",
     '"vantage_rename_header": the response header "Content-Type" cannot '
     'be renamed'),
    ("vantage_set_header request X-A;",
     'invalid number of arguments in "vantage_set_header" directive'),
]


@pytest.mark.parametrize("line,message", CONF_ERRORS,
                         ids=[str(i) for i in range(len(CONF_ERRORS))])
def test_config_errors(module_available, nginx_factory, line, message):
    n = nginx_factory(server="location / { %s return 204; }" % line,
                      start=False)
    rc, out = n.test_config()
    assert_one_emerg(rc, out, message)


def test_config_same_header_on_both_sides_and_levels(module_available,
                                                     nginx_factory):
    n = nginx_factory(server="""
        vantage_set_header request X-A server;
        location / {
            vantage_set_header request X-A location;
            vantage_set_header response X-A location;
            return 204;
        }""", start=False)
    rc, out = n.test_config()
    assert rc == 0, out


# --------------------------------------------------------------------------
# order: after the rate limiter

def test_request_operations_run_after_the_rate_limiter(
        module_available, nginx_factory, client_for, redis_server, backend):
    """The limit is keyed by a header the location removes: the second
    request is refused only if the limiter read the key before the
    removal; the refusal still gets the response operations."""
    n = nginx_factory(http="    vantage_redis %s;\n" % redis_server.address,
                      server="""
        location /rl/ {
            vantage_rate_limit $http_x_k rate=1r/m burst=1;
            vantage_remove_header request X-K;
            vantage_set_header response X-Status "s=$status";
            proxy_pass http://%s;
        }""" % backend.address)
    c = client_for(n)
    key = os.urandom(8).hex()
    r = c.get("/rl/", headers={"X-K": key})
    assert values(r, "x-k") == []
    assert r.headers.get_list("x-status") == ["s=200"]
    r = c.get("/rl/", headers={"X-K": key})
    assert r.status == 429, r
    assert r.headers.get_list("x-status") == ["s=429"]


def test_a_claim_with_a_control_character_is_not_set(client, keys, server):
    token = mint(keys.hs, "HS256", claims(sub="advisor\n7", tenant="f"))
    r = client.get("/claim/", token=token)
    assert values(r, "x-advisor-sub") == []
    assert values(r, "x-tenant") == ["t=f"]
    assert r.headers.get_list("x-sub") == []
    log = open(server.error_log).read()
    assert 'vantage headers: the value for "X-Advisor-Sub" holds control ' \
           'characters, header not set' in log
