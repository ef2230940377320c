"""test_harness.py -- the harness itself, against plain nginx (no module)."""

import os
import re
import signal

import pytest

import vantage_harness as vh


@pytest.fixture(scope="module")
def server(module_nginx_factory, backend):
    return module_nginx_factory(
        module=None, name="plain",
        server=f"""
        location = /hello {{ return 200 "hello $server_protocol\\n"; }}
        location = /pid   {{ return 200 "$pid"; }}
        location = /json  {{
            default_type application/json;
            return 200 '{{"x":"$http_x_thing"}}';
        }}
        location /echo/ {{
            proxy_set_header X-Removed "";
            proxy_pass http://{backend.address};
        }}
        """)


def test_get_over_both_transports(client, transport):
    r = client.get("/hello")
    assert r.status == 200
    want = "HTTP/2.0" if transport == "h2" else "HTTP/1.1"
    assert r.body == "hello %s\n" % want
    assert r.headers["Content-Type"] == "text/plain"
    assert r.json is None


def test_json_parsed_and_headers_case_insensitive(client):
    r = client.get("/json", headers={"X-Thing": "abc"})
    assert r.status == 200
    assert r.headers["content-type"] == r.headers["CONTENT-TYPE"]
    assert r.json == {"x": "abc"}


def test_backend_echoes_forwarded_headers(client):
    r = client.get("/echo/a?b=1", headers={"X-Removed": "gone",
                                           "X-Kept": "here"})
    assert r.status == 200
    assert r.json["path"] == "/echo/a?b=1"
    assert vh.header_values(r.json, "x-kept") == ["here"]
    assert vh.header_values(r.json, "x-removed") == []


def test_new_connections_reach_every_worker(client, server):
    seen = set()
    for _ in range(200):
        seen.add(int(client.get("/pid", new_connection=True).body))
        if seen == set(server.workers()):
            break
    assert seen == set(server.workers())


def test_reload_replaces_workers(nginx_factory, client_for):
    n = nginx_factory(module=None, name="plain-reload",
                      server='location / { return 200 "$pid"; }')
    c = client_for(n)
    for signaller in (False, True):
        old, new = n.reload(wait_old_exit=True, signaller=signaller)
        assert len(new) == 2 and not set(old) & set(new)
        assert int(c.get("/", new_connection=True).body) in new


def test_config_error_reported(nginx_factory):
    n = nginx_factory(module=None, name="plain-t", start=False,
                      server="location / { no_such_directive on; }")
    rc, out = n.test_config()
    assert rc != 0
    assert re.search(r'\[emerg\] \d+#\d+: unknown directive '
                     r'"no_such_directive" in \S+nginx.conf:\d+', out), out
    n.write_conf(server="location / { return 204; }")
    rc, out = n.test_config()
    assert rc == 0, out
    assert "test is successful" in out


def test_log_scan_finds_problems():
    text = ("2024/01/01 00:00:00 [info] 1#1: fine\n"
            "2024/01/01 00:00:00 [alert] 1#1: worker process 2 exited on "
            "signal 11\n"
            "==12==ERROR: AddressSanitizer: heap-buffer-overflow\n"
            "x.c:3:5: runtime error: signed integer overflow\n")
    assert len(vh.problem_lines(text)) == 3
    assert vh.leaked_tokens("Bearer aaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbb.c",
                            ["zz.bbbbbbbbbbbbbbbbbbbbbbbbbbbb.q"])


def test_stop_leaves_no_process(nginx_factory):
    n = nginx_factory(module=None, name="plain-stop",
                      server="location / { return 204; }")
    pids = n.children() + [n.master]
    n.stop()
    assert not any(vh.pid_alive(p) for p in pids)


# Under the sanitizer build ASan catches the SIGSEGV itself and the worker
# exits with code 1 instead: there is no [alert] for this test to find.
@pytest.mark.skipif(vh.sanitize(), reason="ASan handles SIGSEGV itself")
@pytest.mark.log_allow(r"exited on signal 11")
def test_crashed_worker_is_reported(nginx_factory):
    # the check run after every test sees what a crash leaves in error.log
    n = nginx_factory(module=None, name="plain-crash",
                      server="location / { return 204; }")
    victim = n.workers()[0]
    os.kill(victim, signal.SIGSEGV)
    line = "worker process %d exited on signal 11" % victim
    vh.wait_for(lambda: any(line in p for p in n.log_problems()), 5,
                what="the [alert]")
    vh.wait_for(lambda: len(n.workers()) == 2, 5, what="a new worker")
