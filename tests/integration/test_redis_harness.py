"""test_redis_harness.py -- the RedisServer fixture itself (no nginx)."""

import os
import socket
import stat
import time

import pytest
import redis

import vantage_harness as vh


def _raw(port, *lines):
    """The server's raw replies to inline commands (one line each)."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=vh.timeout(2)) as s:
        s.sendall(b"".join(l + b"\r\n" for l in lines))
        out = b""
        while out.count(b"\r\n") < len(lines):
            data = s.recv(4096)
            if not data:
                break
            out += data
    return out.decode()


def _error(fn):
    """The redis error fn() raises (fails when it raises none)."""
    with pytest.raises(redis.exceptions.RedisError) as e:
        fn()
    return str(e.value)


def test_ping_over_tcp_and_unix_socket(redis_server):
    assert redis_server.address == "127.0.0.1:%d" % redis_server.port
    assert redis_server.running()
    assert vh.pid_alive(redis_server.pid)
    assert redis_server.client().ping() is True
    mode = os.stat(redis_server.unix_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700
    u = redis.Redis(unix_socket_path=redis_server.unix_path,
                    socket_timeout=vh.timeout(2))
    try:
        assert u.ping() is True
        assert u.set(b"k", b"\x00\xff") is True
    finally:
        u.close()
    # both listeners reach the same server
    assert redis_server.client().get(b"k") == b"\x00\xff"
    assert redis_server.unix_client().get(b"k") == b"\x00\xff"


def test_no_unix_socket_when_not_asked(redis_factory):
    r = redis_factory(unix=False)
    assert r.unix_path is None
    assert "unixsocket" not in open(r.conf).read()
    assert r.client().ping() is True


def test_bitfield_saturating_incrby(redis_server):
    c = redis_server.client()
    assert c.execute_command("BITFIELD", "k", "OVERFLOW", "SAT",
                             "INCRBY", "u63", "0", "-5") == [0]
    assert c.execute_command("BITFIELD", "k", "OVERFLOW", "SAT",
                             "INCRBY", "u63", "0", "7") == [7]
    assert c.execute_command("BITFIELD", "k", "OVERFLOW", "SAT",
                             "INCRBY", "u63", "0", "-9") == [0]


def test_requirepass(redis_factory):
    r = redis_factory(password="s3cr\"et pw")
    assert r.client().ping() is True
    anon = redis.Redis(host="127.0.0.1", port=r.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anon.ping()
    anon.close()
    assert _raw(r.port, b"PING").startswith("-NOAUTH ")
    assert _raw(r.port, b"AUTH nope", b"PING") \
        .startswith("-WRONGPASS ")
    wrong = r.client(password="nope")
    assert "invalid username-password pair" in _error(wrong.ping)
    u = redis.Redis(unix_socket_path=r.unix_path, password=r.password)
    assert u.ping() is True
    u.close()


def test_acl_user(redis_factory):
    r = redis_factory(user="vantage", password="pw-1")
    assert r.client().ping() is True
    assert _raw(r.port, b"PING").startswith("-NOAUTH ")
    # the default user is off, even with the right password
    assert _raw(r.port, b"AUTH pw-1", b"PING").startswith("-WRONGPASS ")
    assert _raw(r.port, b"AUTH vantage pw-2", b"PING") \
        .startswith("-WRONGPASS ")
    assert _raw(r.port, b"AUTH vantage pw-1", b"PING") == "+OK\r\n+PONG\r\n"
    assert "WRONGPASS" in _error(r.client(username=None).ping)
    assert r.client().acl_whoami() == "vantage"


def test_stop_then_restart_on_same_port_loses_data(redis_factory):
    r = redis_factory()
    c = r.client()
    assert c.set(b"k", b"v") is True
    port, path, pid = r.port, r.unix_path, r.pid
    r.stop()
    assert not r.running() and not vh.pid_alive(pid)
    assert not vh.port_open(port)
    assert not os.path.exists(path)
    with pytest.raises(redis.exceptions.ConnectionError):
        r.client().ping()
    r.restart()
    assert (r.port, r.unix_path) == (port, path) and r.pid != pid
    assert r.client().get(b"k") is None
    assert r.unix_client().ping() is True


def test_appendonly_survives_a_crash(redis_factory):
    r = redis_factory(appendonly=True)
    assert r.client().set(b"k", b"v") is True
    r.kill()
    r.restart()
    assert r.client().get(b"k") == b"v"


def test_kill_leaves_no_process(redis_factory):
    r = redis_factory()
    pid = r.pid
    r.kill()
    assert not r.running()
    assert not vh.pid_alive(pid)
    assert not vh.port_open(r.port)
    # crash: the socket file is left; a restart replaces it
    assert os.path.exists(r.unix_path)
    r.restart()
    assert r.unix_client().ping() is True


def test_debug_sleep_blocks_other_clients(redis_server):
    c = redis_server.client()
    c.ping()                            # connected before the sleep
    t = redis_server.debug_sleep(0.5)
    t0 = time.monotonic()
    assert c.ping() is True
    assert time.monotonic() - t0 >= 0.4
    t.join(vh.timeout(5))
    assert not t.is_alive()
    assert t.error is None and t.result == b"OK"


def test_pause_and_resume(redis_server):
    c = redis_server.client(socket_timeout=0.3)
    assert c.ping() is True
    redis_server.pause()
    assert redis_server.paused and redis_server.running()
    with pytest.raises(redis.exceptions.TimeoutError):
        c.ping()
    redis_server.resume()
    assert not redis_server.paused
    assert redis_server.client().ping() is True


def test_stop_while_paused(redis_factory):
    r = redis_factory()
    pid = r.pid
    r.pause()
    t0 = time.monotonic()
    r.stop()
    assert time.monotonic() - t0 < vh.timeout(3)
    assert not vh.pid_alive(pid)


def test_monitor_count(redis_server):
    c = redis_server.client()
    c.ping()

    def three_sets():
        for i in range(3):
            c.set(b"k%d" % i, b"v")

    assert redis_server.monitor_count(three_sets) == 3
    assert redis_server.monitor_count(lambda: None) == 0
    assert redis_server.command_calls(three_sets) == {"set": 3}
    assert redis_server.command_calls(lambda: c.info()) == {"info": 1}
    # a rejected command counts too
    bad = redis.Redis(host="127.0.0.1", port=redis_server.port)
    assert redis_server.monitor_count(
        lambda: _error(lambda: bad.execute_command("SET", "k"))) == 1
    bad.close()


def test_cpu_seconds(redis_server):
    before = redis_server.cpu_seconds()
    assert isinstance(before, float) and before >= 0
    c = redis_server.client()
    for _ in range(50):
        c.ping()
    assert redis_server.cpu_seconds() >= before


def test_start_failure_raises_with_the_log(redis_factory):
    r = redis_factory(start=False)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", r.port))
        with pytest.raises(RuntimeError) as e:
            r.start()
    finally:
        s.close()
    assert "Address already in use" in str(e.value)
    assert not r.running() and not vh.pid_alive(r.pid)


def test_long_socket_path_falls_back_to_tmp(base_dir):
    deep = os.path.join(base_dir, "d" * 60, "e" * 60)
    r = vh.RedisServer(deep)
    try:
        assert r.unix_path.startswith("/tmp/vr-")
        assert len(r.unix_path) < 40
        r.start()
        u = redis.Redis(unix_socket_path=r.unix_path)
        assert u.ping() is True
        u.close()
    finally:
        r.close()
    assert not os.path.exists(os.path.dirname(r.unix_path))
    assert not os.path.exists(r.dir) or os.environ.get("VANTAGE_KEEP_TMP")


def test_stop_all_redis(redis_factory):
    a, b = redis_factory(), redis_factory()
    stopped = vh.stop_all_redis()
    assert a in stopped and b in stopped
    assert a not in vh.REDIS_LIVE and b not in vh.REDIS_LIVE
    assert not vh.pid_alive(a.pid) and not vh.pid_alive(b.pid)
    # the factory's teardown closes them once more: harmless


# the fixtures: module_redis lives through the module, redis_server is gone
# after its test

_seen = {}


def test_module_redis_first(module_redis):
    _seen["module"] = module_redis.pid
    module_redis.client().set(b"shared", b"1")


def test_module_redis_second(module_redis):
    if "module" not in _seen:
        pytest.skip("runs after test_module_redis_first")
    assert module_redis.pid == _seen["module"]
    assert module_redis.client().get(b"shared") == b"1"


def test_fixture_server_used(redis_server):
    _seen["function"] = redis_server
    assert redis_server in vh.REDIS_LIVE


def test_fixture_server_gone_after_its_test():
    if "function" not in _seen:
        pytest.skip("runs after test_fixture_server_used")
    r = _seen["function"]
    assert not r.running()
    assert not vh.pid_alive(r.pid)
    assert not vh.port_open(r.port)
    assert r not in vh.REDIS_LIVE
