"""test_worker_config.py -- vantage-worker's configuration file, for real.

The built binary against the file of docs/WORKER.md: --check (exact
message and exit code, touching neither Redis nor the socket), the example
conf/vantage-worker.conf, starting with -c and the command line winning
over the file, SIGHUP reloading a good file and refusing a bad one while
the socket keeps answering, the Redis password read from a file and sent
on both of the worker's connections, secrets never printed or logged, and
`make install` into a staging DESTDIR.  The exhaustive table of messages
is in tests/unit/test_vw_conf.c; here a few of them cross the process
boundary exactly.
"""

import grp
import os
import re
import select
import signal
import socket
import stat
import subprocess
import tempfile

import pytest

import vantage_harness as vh
import worker_harness as wh
from worker_harness import (DISPATCH, FETCH, PING, REPLY, T_FETCH_KIND,
                            T_IDP, T_JOB_ID)


EXAMPLE = os.path.join(vh.REPO, "conf", "vantage-worker.conf")
UNIT = os.path.join(vh.REPO, "conf", "vantage-worker.service")
SECRET = "Bearer tok-9f8e7d6c5b4a"
PASSWORD = "pw-3c2b1a0f9e8d"


def conf_text(jobs="", worker="", job_extra=""):
    """A valid file: [worker] on lines 1-3 (+ worker), then one job."""
    return ("[worker]\n"
            "listen = {listen}\n"
            "redis = {redis}\n"
            + worker +
            "[job http.example]\n"
            "connector = http\n"
            "url = https://hooks.example.com/in\n"
            + job_extra + jobs)


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture
def tmp(base_dir):
    return vh.make_dir(tempfile.mkdtemp(prefix="worker-conf-", dir=base_dir))


@pytest.fixture
def worker_factory(worker_factory):
    """conftest's: worker_factory(config=None, args=(), redis=None,
    start=True)."""
    # nothing a test used as a secret may reach the log
    worker_factory.secrets = (SECRET, PASSWORD, "wrong-" + PASSWORD)
    return worker_factory


def check(worker_bin, path, cwd=None):
    try:
        return subprocess.run([worker_bin, "--check", path], cwd=cwd,
                              capture_output=True, text=True,
                              stdin=subprocess.DEVNULL,
                              timeout=vh.timeout(10))
    except subprocess.TimeoutExpired:
        pytest.fail("vantage-worker --check %s did not exit" % path)


def write(path, text, mode=0o644):
    return vh.write_file(path, text, mode=mode)


def wait_log(w, pred, seconds=5, what="log line"):
    def found():
        if not w.running():
            raise RuntimeError("worker exited:\n" + w.log_tail())
        return next((o for o in w.log_lines() if pred(o)), None)
    try:
        return vh.wait_for(found, seconds, what=what)
    except TimeoutError:
        raise AssertionError("no %s in the log:\n%s" % (what, w.log_tail()))


def msgs(w, msg):
    return [o for o in w.log_lines() if o.get("msg") == msg]


def ping_ok(w, fid=7):
    with wh.FrameClient(w.socket_path) as c:
        r = c.ping(fid)
    assert r.type == PING | REPLY and r.id == fid and r.status == 200, r


def dispatch_ok(w, job_type="http.example", fid=11):
    # the queue takes jobs once its connection has checked Redis: PING 200
    w.wait_ping(200)
    with wh.FrameClient(w.socket_path) as c:
        r = c.dispatch(fid, wh.dispatch_fields(job_type), seconds=5)
    assert r.type == DISPATCH | REPLY and r.id == fid, r
    assert r.status == 202, r
    return r.get(T_JOB_ID)


# --------------------------------------------------------------------------
# --check

def test_check_valid(worker_bin, tmp):
    path = write(os.path.join(tmp, "worker.conf"),
                 conf_text().replace("{listen}", "unix:/run/vantage/w.sock")
                 .replace("{redis}", "127.0.0.1:6379"))
    p = check(worker_bin, path)
    assert (p.returncode, p.stdout, p.stderr) == \
        (0, "", "vantage-worker: %s: configuration is valid\n" % path)


BAD = [
    ("not-a-duration", conf_text(job_extra="backoff_base = ten\n"),
     'worker.conf:7: backoff_base: "ten" is not a duration'),
    ("unknown-key", conf_text(worker="threads = 4\n"),
     "worker.conf:4: threads: unknown key in [worker]"),
    ("duplicate-key", conf_text(job_extra="url = http://b\n"),
     "worker.conf:7: url: duplicate key, first at line 6"),
    ("missing-listen", "[worker]\nredis = 127.0.0.1:6379\n",
     "worker.conf:1: listen: missing in [worker]"),
    ("undefined-target", conf_text(job_extra="target = crm\n"),
     "worker.conf:7: target: no section [target crm]"),
    ("bad-url", "[worker]\nlisten = {listen}\nredis = {redis}\n"
     "[job a]\nconnector = http\nurl = hooks.example.com\n",
     'worker.conf:6: url: "hooks.example.com" is not an http:// or '
     "https:// URL"),
    ("visibility", conf_text(worker="visibility_timeout = 14s\n"),
     "worker.conf:4: visibility_timeout: 14s must be more than the longest "
     "job timeout (10s, in [job http.example]) + 5s, or another worker "
     "takes over an attempt still running and runs the job twice"),
    # FETCH may name a provider by URL: one URL, one [idp]
    ("idp-shared-url", conf_text("[idp a]\ndiscovery = https://idp/t1\n"
                                 "[idp b]\njwks_url = https://idp/t1\n"),
     "worker.conf:10: jwks_url: the same URL as discovery in [idp a] at "
     "line 8: a URL names one [idp] only"),
    # a target's connection
    ("proxy-credentials", conf_text("[target t]\nproxy = "
                                    "http://user:pw@proxy:3128\n"),
     "worker.conf:8: proxy: the proxy URL holds credentials; they do not "
     "belong in the configuration file"),
    ("proxy-scheme", conf_text("[target t]\nproxy = ftp://proxy\n"),
     'worker.conf:8: proxy: "ftp://proxy" is not an http://, https:// or '
     'socks5h:// URL, nor "none"'),
    ("connect-timeout", conf_text("[target t]\nconnect_timeout = 10m\n"),
     'worker.conf:8: connect_timeout: "10m" is more than 5m'),
    ("target-ca-file", conf_text("[target t]\nca_file = ca.pem\n"),
     'worker.conf:8: ca_file: "ca.pem" is not an absolute path'),
]


@pytest.mark.parametrize("text,err", [(t, e) for _, t, e in BAD],
                         ids=[n for n, _, _ in BAD])
def test_check_invalid(worker_bin, tmp, text, err):
    write(os.path.join(tmp, "worker.conf"),
          text.replace("{listen}", "unix:/run/vantage/w.sock")
          .replace("{redis}", "127.0.0.1:6379"))
    # the path as given: relative here
    p = check(worker_bin, "worker.conf", cwd=tmp)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: %s\n" % err)


def test_check_missing_file(worker_bin, tmp):
    p = check(worker_bin, "nope.conf", cwd=tmp)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: nope.conf: cannot open: No such file or "
         "directory\n")


def test_check_touches_neither_redis_nor_the_socket(worker_bin, tmp):
    """A Redis that would notice a connection, and a socket directory that
    does not exist: --check uses neither."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        sock_dir = os.path.join(tmp, "no-such-dir")
        path = write(os.path.join(tmp, "worker.conf"),
                     conf_text().replace("{listen}",
                                         "unix:%s/w.sock" % sock_dir)
                     .replace("{redis}", "127.0.0.1:%d" % port))
        p = check(worker_bin, path)
        assert p.returncode == 0, p.stderr
        readable, _, _ = select.select([listener], [], [], 0.2)
        assert not readable, "--check connected to Redis"
        assert not os.path.exists(sock_dir)
    finally:
        listener.close()


def test_example_conf_passes_check(worker_bin):
    """conf/vantage-worker.conf as installed: /run/vantage need not exist,
    and it names no secret file that would."""
    p = check(worker_bin, EXAMPLE)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: %s: configuration is valid\n" % EXAMPLE)
    with open(EXAMPLE) as f:
        text = f.read()
    assert re.search(r"^listen\s*=\s*unix:/run/vantage/", text, re.M)
    assert re.search(r"^redis\s*=\s*127\.0\.0\.1:6379\s", text, re.M)
    assert len(re.findall(r"^\[target [^]]+\]", text, re.M)) == 1
    assert re.findall(r"^\[job [^]]+\]", text, re.M) == ["[job http.example]"]


def test_worker_md_example_passes_check(worker_bin, tmp):
    """The file shown in docs/WORKER.md, its secret files made in tmp."""
    with open(os.path.join(vh.REPO, "docs", "WORKER.md")) as f:
        blocks = re.findall(r"^```ini\n(.*?)^```", f.read(), re.M | re.S)
    # the whole file, then the [idp] and [vault] sections on their own
    assert len(blocks) == 3 and blocks[1].startswith("[idp ")
    assert blocks[2].startswith("[vault]")
    secret = write(os.path.join(tmp, "secret"), "x\n", mode=0o600)
    ca = write(os.path.join(tmp, "ca.pem"), "x\n")
    key = write(os.path.join(tmp, "vault.key"), "ab" * 32 + "\n",
                mode=0o600)
    text, n = re.subn(r"/etc/vantage/secrets/\w+", secret,
                      blocks[0] + blocks[1] + blocks[2])
    assert n == 3
    text = text.replace("/etc/vantage/idp-ca.pem", ca)
    text = text.replace("/etc/vantage/vault.key", key)
    path = write(os.path.join(tmp, "worker.conf"), text)
    p = check(worker_bin, path)
    assert (p.returncode, p.stderr) == \
        (0, "vantage-worker: %s: configuration is valid\n" % path)


def test_check_never_prints_a_secret(worker_bin, tmp):
    """A secret file with a line break inside, and a secret pasted where
    the path belongs: the messages name the file or the rule only."""
    secret = os.path.join(tmp, "token")
    write(secret, SECRET + "\n" + SECRET + "\n", mode=0o600)
    for extra, err in [
            ("secret_header = Authorization %s\n" % secret,
             'worker.conf:7: secret_header: "%s" holds CR, LF or another '
             "control character before its end" % secret),
            ("secret_header = Authorization %s\n" % SECRET,
             'worker.conf:7: secret_header: expected "Name /path/to/file" '
             "(the value is read from the file)")]:
        write(os.path.join(tmp, "worker.conf"),
              conf_text(job_extra=extra)
              .replace("{listen}", "unix:/w").replace("{redis}", "r:1"))
        p = check(worker_bin, "worker.conf", cwd=tmp)
        assert (p.returncode, p.stdout, p.stderr) == \
            (1, "", "vantage-worker: %s\n" % err)


# --------------------------------------------------------------------------
# starting with -c

def test_start_with_config(worker_factory):
    w = worker_factory(config=conf_text(
        "[target crm]\n[job crm.note]\nconnector = http\n"
        "url = https://crm.example.com/notes\ntarget = crm\n"))
    ping_ok(w)
    dispatch_ok(w)
    loaded = msgs(w, "configuration loaded")
    assert len(loaded) == 1, w.log_tail()
    assert loaded[0]["file"] == w.config_file
    assert (loaded[0]["jobs"], loaded[0]["targets"]) == ("2", "2")


def test_start_with_a_bad_config_exits_1(worker_factory):
    w = worker_factory(config=conf_text(job_extra="on_dead = stop\n"),
                       start=False)
    w.spawn()
    assert w.wait(5) == 1, w.log_tail()
    assert w.log_text() == ('vantage-worker: %s:7: on_dead: "stop" is not '
                            "proceed or block\n" % w.config_file)
    assert not os.path.exists(w.socket_path)


def test_command_line_wins_over_the_file(worker_factory, tmp):
    """The file names a socket elsewhere and a Redis nobody runs; --listen
    and --redis given as well are the ones used."""
    w = worker_factory(config=conf_text()
                       .replace("{listen}", "unix:%s/file.sock" % tmp)
                       .replace("{redis}", "127.0.0.1:%d" % vh.free_port()),
                       start=False)
    w.args = ["--listen", "unix:" + w.socket_path, "--redis", w.redis]
    w.start()
    dispatch_ok(w)
    assert not os.path.exists(os.path.join(tmp, "file.sock"))


# --------------------------------------------------------------------------
# the socket's permissions (listen_mode, listen_group)

def listening(w):
    return wait_log(w, lambda o: o.get("msg") == "listening",
                    what="the listening line")


def test_socket_mode_and_group(worker_factory):
    """A group that exists on Debian, and a mode other than the default:
    the file has both, and the log says so."""
    gid = grp.getgrnam("nogroup").gr_gid
    w = worker_factory(config=conf_text(
        worker="listen_mode = 0620\nlisten_group = nogroup\n"))
    st = os.stat(w.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o620, oct(st.st_mode)
    assert st.st_gid == gid
    line = listening(w)
    assert (line["socket"], line["mode"], line["group"]) == \
        (w.socket_path, "0620", "nogroup"), line
    ping_ok(w)


def test_socket_default_mode_keeps_the_workers_group(worker_factory):
    w = worker_factory(config=conf_text())
    st = os.stat(w.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert st.st_gid == os.getegid()
    line = listening(w)
    assert (line["mode"], line["group"]) == \
        ("0660", grp.getgrgid(os.getegid()).gr_name), line


def test_socket_reachable_by_another_user_through_the_group(worker_factory):
    """What listen_group is for: a process of another user (nobody) in
    that group connects; one outside it is refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    w = worker_factory(config=conf_text(
        worker="listen_mode = 0660\nlisten_group = nogroup\n"))
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             "    s.connect(sys.argv[1])\n"
             "except PermissionError:\n"
             "    sys.exit(13)\n")

    def connect_as(group):
        return subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=" + group,
             "--clear-groups", "/usr/bin/python3", "-c", probe,
             w.socket_path], capture_output=True, text=True,
            timeout=vh.timeout(10)).returncode

    # the worker's directories are searchable by all (vh.make_dir)
    assert connect_as("nogroup") == 0
    assert connect_as("daemon") == 13


@pytest.mark.parametrize("extra,err", [
    ("listen_mode = 0o660\n",
     'worker.conf:4: listen_mode: "0o660" is not an octal mode from 0000 '
     "to 0777, e.g. 0660"),
    ("listen_mode = 1777\n",
     'worker.conf:4: listen_mode: "1777" is not an octal mode from 0000 '
     "to 0777, e.g. 0660"),
    ("listen_group = no-such-group-vantage\n",
     'worker.conf:4: listen_group: "no-such-group-vantage" is not a group '
     "on this system"),
])
def test_check_refuses_a_bad_mode_or_group(worker_bin, tmp, extra, err):
    write(os.path.join(tmp, "worker.conf"),
          conf_text(worker=extra)
          .replace("{listen}", "unix:/run/vantage/w.sock")
          .replace("{redis}", "127.0.0.1:6379"))
    p = check(worker_bin, "worker.conf", cwd=tmp)
    assert (p.returncode, p.stdout, p.stderr) == \
        (1, "", "vantage-worker: %s\n" % err)


def test_sighup_says_a_new_mode_or_group_needs_a_restart(worker_factory):
    w = worker_factory(config=conf_text())
    w.write_config(conf_text(
        worker="listen_mode = 0666\nlisten_group = nogroup\n"))
    w.send_signal(signal.SIGHUP)
    r = reloaded(w)
    assert r["restart_needed"] == "listen_group listen_mode", r
    st = os.stat(w.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    ping_ok(w)


# --------------------------------------------------------------------------
# SIGHUP

def reloaded(w, n=1):
    return wait_log(w, lambda o: o.get("msg") == "configuration reloaded"
                    and len(msgs(w, "configuration reloaded")) >= n,
                    what="reload #%d" % n)


def test_sighup_reloads_a_good_file(worker_factory):
    w = worker_factory(config=conf_text())
    ping_ok(w)
    w.write_config(conf_text(
        "[target crm]\nmax_concurrency = 2\n"
        "[job crm.note]\nconnector = http\n"
        "url = https://crm.example.com/notes\ntarget = crm\n"
        "[job crm.task]\nconnector = http\nurl = https://crm.example.com/t\n",
        worker="concurrency = 8\n"))
    w.send_signal(signal.SIGHUP)
    r = reloaded(w)
    assert r == {"ts": r["ts"], "level": "info",
                 "msg": "configuration reloaded", "file": w.config_file,
                 "jobs": "3", "targets": "3"}, r
    ping_ok(w)
    dispatch_ok(w)
    assert w.running()


def test_sighup_keeps_the_old_file_when_the_new_one_is_bad(worker_factory):
    w = worker_factory(config=conf_text())
    w.write_config(conf_text(job_extra="backoff_base = ten\n"))
    w.send_signal(signal.SIGHUP)
    e = wait_log(w, lambda o: o.get("level") == "error",
                 what="the reload's error")
    assert e["msg"] == "configuration not reloaded: the old one stays in " \
        "force", e
    assert e["reason"] == '%s:7: backoff_base: "ten" is not a duration' \
        % w.config_file, e
    assert msgs(w, "configuration reloaded") == []
    ping_ok(w)
    dispatch_ok(w)

    # the same file, mended, goes in
    w.write_config(conf_text(job_extra="backoff_base = 10s\n"))
    w.send_signal(signal.SIGHUP)
    assert reloaded(w)["jobs"] == "1"
    ping_ok(w)


def test_sighup_refuses_idp_sections_sharing_a_url(worker_factory, tmp):
    """The rule --check applies holds at a reload too: the new file is
    refused and the old one, without [idp b], stays in force."""
    secret = write(os.path.join(tmp, "secret"), "s\n", mode=0o600)
    idp_a = ("[idp a]\ndiscovery = https://idp/t1\n"
             "introspection_url = https://idp/introspect\n"
             "client_id = a\nclient_secret_file = %s\n" % secret)
    w = worker_factory(config=conf_text(idp_a))
    w.write_config(conf_text(idp_a + "[idp b]\njwks_url = https://idp/keys\n"
                             "introspection_url = https://idp/introspect\n"
                             "client_id = b\nclient_secret_file = %s\n"
                             % secret))
    w.send_signal(signal.SIGHUP)
    e = wait_log(w, lambda o: o.get("level") == "error",
                 what="the reload's error")
    assert e["msg"] == "configuration not reloaded: the old one stays in " \
        "force", e
    assert e["reason"] == ("%s:14: introspection_url: the same URL as "
                           "introspection_url in [idp a] at line 9: a URL "
                           "names one [idp] only" % w.config_file), e
    assert msgs(w, "configuration reloaded") == []
    with wh.FrameClient(w.socket_path) as c:
        r = c.request(FETCH, 5, [(T_IDP, "b"), (T_FETCH_KIND, "jwks")])
    assert (r.type, r.id, r.status, r.error) == \
        (FETCH | REPLY, 5, 404, "no such identity provider"), r
    ping_ok(w)


def test_sighup_says_what_needs_a_restart(worker_factory, base_dir):
    w = worker_factory(config=conf_text())
    other = os.path.join(base_dir, "elsewhere.sock")
    w.write_config(conf_text(worker="consumer = renamed\nmax_frame = 1m\n")
                   .replace("{listen}", "unix:" + other))
    w.send_signal(signal.SIGHUP)
    r = reloaded(w)
    assert r["restart_needed"] == "listen consumer max_frame", r
    # still the socket it started with
    ping_ok(w)
    assert not os.path.exists(other)

    # reloading the same file again says so again: the values in force
    # are still the old ones
    w.send_signal(signal.SIGHUP)
    assert reloaded(w, 2)["restart_needed"] == "listen consumer max_frame"


def test_sighup_without_a_file_is_harmless(worker_factory):
    w = worker_factory()
    w.send_signal(signal.SIGHUP)
    wait_log(w, lambda o: o.get("msg") == "SIGHUP ignored: no configuration "
             "file (-c) to reload", what="the SIGHUP warning")
    ping_ok(w)


# --------------------------------------------------------------------------
# secrets

def test_redis_password_from_a_file(worker_factory, redis_factory, tmp):
    """Redis with requirepass: the worker's start-up check and its event
    loop's connection both authenticate (a 202 needs the second)."""
    r = redis_factory(password=PASSWORD)
    pw = write(os.path.join(tmp, "redis.pw"), PASSWORD + "\n", mode=0o600)
    token = write(os.path.join(tmp, "token"), SECRET + "\n", mode=0o600)
    extra = "secret_header = Authorization %s\n" % token
    w = worker_factory(config=conf_text(
        worker="redis_password_file = %s\n" % pw, job_extra=extra),
        redis=r.address)
    dispatch_ok(w)

    # a reload reads both files again; neither reaches the log
    w.send_signal(signal.SIGHUP)
    assert "restart_needed" not in reloaded(w)
    dispatch_ok(w, fid=12)


def test_redis_password_changed_and_restored(worker_factory, redis_factory,
                                             tmp):
    """A password changed under a running worker: its next connection is
    refused and PING says why; once Redis takes the password again, the
    worker's next attempt (within 5 s) is ready, without a restart."""
    r = redis_factory(password=PASSWORD)
    pw = write(os.path.join(tmp, "redis.pw"), PASSWORD + "\n", mode=0o600)
    w = worker_factory(config=conf_text(
        worker="redis_password_file = %s\n" % pw), redis=r.address)
    dispatch_ok(w)

    admin = r.client()
    admin.config_set("requirepass", "rotated-" + PASSWORD)
    admin.execute_command("CLIENT", "KILL", "TYPE", "normal",
                          "SKIPME", "yes")
    def refused():
        # "the connection to Redis was lost" comes first, then the refusal
        a = w.ping_reply()
        return a if a is not None and "password" in (a.error or "") else None

    p = vh.wait_for(refused, vh.timeout(5), what="PING naming the password")
    assert (p.status, p.error, p.retry_after) == \
        (503, "the worker is not ready: Redis refused the password", 1), p

    admin.config_set("requirepass", PASSWORD)
    w.wait_ping(200, seconds=vh.timeout(8))
    dispatch_ok(w, fid=13)
    # one refusal logged per attempt, not one a second
    refusals = [o for o in w.log_lines()
                if o.get("msg") == "Redis refused the password: taking no job"]
    assert 1 <= len(refusals) <= 3, w.log_tail()


def test_wrong_redis_password_refuses_to_start(worker_factory, redis_factory,
                                               tmp):
    r = redis_factory(password=PASSWORD)
    pw = write(os.path.join(tmp, "redis.pw"), "wrong-" + PASSWORD,
               mode=0o600)
    w = worker_factory(config=conf_text(
        worker="redis_password_file = %s\n" % pw), redis=r.address,
        start=False)
    w.spawn()
    assert w.wait(5) == 1, w.log_tail()
    refused = [o for o in w.log_lines() if o.get("msg") ==
               "refusing to start: Redis refused the password"]
    assert len(refused) == 1, w.log_tail()
    assert not os.path.exists(w.socket_path)


# --------------------------------------------------------------------------
# make install

def make(*args):
    p = subprocess.run(["make", "-C", vh.REPO] + list(args),
                       capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=vh.timeout(900))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["/usr/local", "/usr"])
def test_make_install_and_uninstall(tmp, prefix):
    dest = os.path.join(tmp, "dest")
    args = ["DESTDIR=" + dest]
    if prefix != "/usr/local":
        args.append("PREFIX=" + prefix)
    make("install", *args)

    module = dest + "/usr/lib/nginx/modules/ngx_vantage_module.so"
    worker = dest + prefix + "/bin/vantage-worker"
    conf = dest + "/etc/vantage/worker.conf"
    unit = dest + prefix + "/lib/systemd/system/vantage-worker.service"
    for path, m in [(module, 0o644), (worker, 0o755), (conf, 0o644),
                    (unit, 0o644)]:
        assert os.path.isfile(path), path
        assert mode(path) == m, (path, oct(mode(path)))
    ctl = dest + prefix + "/bin/vantagectl"
    assert os.path.exists(ctl) == \
        os.path.exists(os.path.join(vh.REPO, "build", "vantagectl"))

    with open(conf) as f, open(EXAMPLE) as g:
        assert f.read() == g.read()
    with open(unit) as f:
        text = f.read()
    assert re.findall(r"^Exec\w+=.*$", text, re.M) == [
        "ExecStartPre=%s/bin/vantage-worker --check /etc/vantage/worker.conf"
        % prefix,
        "ExecStart=%s/bin/vantage-worker -c /etc/vantage/worker.conf"
        % prefix,
        "ExecReload=/bin/kill -HUP $MAINPID"]

    # the installed binary checks the installed file
    p = subprocess.run([worker, "--check", conf], capture_output=True,
                       text=True, timeout=vh.timeout(10))
    assert p.returncode == 0, p.stderr

    # an edited configuration survives a second install and an uninstall
    with open(conf, "a") as f:
        f.write("# edited\n")
    make("install", *args)
    with open(conf) as f:
        assert f.read().endswith("# edited\n")

    make("uninstall", *args)
    for path in (module, worker, unit, ctl):
        assert not os.path.exists(path), path
    assert os.path.exists(conf)


def test_unit_file(tmp):
    """The unit as shipped, before install rewrites its paths."""
    keys = {}
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                k, v = line.split("=", 1)
                keys.setdefault(k, []).append(v)
    one = {k: v[0] for k, v in keys.items() if len(v) == 1}
    assert one["Type"] == "simple"
    assert one["ExecStartPre"] == \
        "/usr/local/bin/vantage-worker --check /etc/vantage/worker.conf"
    assert one["ExecStart"] == \
        "/usr/local/bin/vantage-worker -c /etc/vantage/worker.conf"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["KillSignal"] == "SIGTERM"
    assert one["User"] == "vantage"
    assert one["RuntimeDirectory"] == "vantage"
    for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one[k] == "yes", k
    assert one["ProtectSystem"] == "strict"
    # above the default shutdown_timeout of the example
    with open(EXAMPLE) as f:
        m = re.search(r"^shutdown_timeout\s*=\s*(\d+)s", f.read(), re.M)
    assert int(one["TimeoutStopSec"]) > int(m.group(1))
    # the example's socket is in the runtime directory
    with open(EXAMPLE) as f:
        assert re.search(r"^listen\s*=\s*unix:/run/vantage/", f.read(), re.M)
