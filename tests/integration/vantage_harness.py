"""vantage_harness.py -- run Debian's nginx with the Vantage module for tests.

Everything a test needs to drive a real nginx: a config rendered into a
fresh prefix, start/stop/reload with bounded waits, `nginx -t`, an HTTP/1.1
and an HTTP/2-over-TLS client, a header-echoing backend, a test CA, and the
error.log checks run after every test.  No pytest imports here: conftest.py
wires these into fixtures.
"""

import atexit
import base64
import collections
import datetime
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NGINX = os.environ.get("VANTAGE_NGINX", "/usr/sbin/nginx")
DEFAULT_MODULE = os.path.join(REPO, "build", "ngx_vantage_module.so")

TRANSPORTS = ("http", "h2")

# what must never appear in an error.log (sanitizer reports land there,
# because nginx points its stderr at the log)
LOG_FORBIDDEN = (
    re.compile(r"\[alert\]"),
    re.compile(r"\[emerg\]"),
    re.compile(r"ERROR: AddressSanitizer"),
    re.compile(r"AddressSanitizer:DEADLYSIGNAL"),
    re.compile(r"runtime error:"),
    re.compile(r"LeakSanitizer"),
)


def module_path():
    return os.environ.get("VANTAGE_MODULE", DEFAULT_MODULE)


def sanitize():
    return os.environ.get("VANTAGE_SANITIZE", "") not in ("", "0")


def valgrind():
    """VANTAGE_VALGRIND=1: the master and workers run under memcheck, each
    process reporting into <prefix>/valgrind.<pid>.log.  Leak checking is
    off (nginx frees its pools wholesale at exit); any report fails."""
    return os.environ.get("VANTAGE_VALGRIND", "") not in ("", "0")




def scale():
    """VANTAGE_TEST_TIMEOUT multiplies every wait (e.g. 3 under ASan)."""
    try:
        return max(float(os.environ.get("VANTAGE_TEST_TIMEOUT", "1")), 0.1)
    except ValueError:
        return 1.0


def timeout(seconds):
    return seconds * scale()


def wait_for(predicate, seconds, interval=0.02, what="condition"):
    """Polls predicate until it returns a true value; raises on timeout."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s"
                               % (timeout(seconds), what))
        time.sleep(interval)


_PORTS_GIVEN = collections.deque(maxlen=512)


def free_port():
    """A loopback TCP port nobody listens on right now, and none of the
    last ports this process was given: the kernel may hand a port just
    released out again, and two of them in one nginx.conf fail with "a
    duplicate listen"."""
    for _ in range(64):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.append(port)
            return port
    raise RuntimeError("no fresh loopback port after 64 tries")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def make_dir(path):
    """A directory nginx's workers (user nobody) can traverse."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def write_file(path, data, mode=0o644, atomic=False):
    """Writes data (str or bytes); atomic: a new inode renamed into place."""
    if isinstance(data, str):
        data = data.encode()
    target = path
    if atomic:
        target = path + ".tmp%d" % os.getpid()
    with open(target, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(target, mode)
    if atomic:
        os.rename(target, path)
    return path


def sanitizer_env(env=None):
    """The environment nginx runs in: the sanitizer runtimes preloaded when
    VANTAGE_SANITIZE=1 (the module is built with -fsanitize, nginx is not,
    so the runtime must come first)."""
    env = dict(os.environ if env is None else env)
    if sanitize():
        libs = []
        for lib in ("libasan.so", "libubsan.so"):
            p = subprocess.run(["gcc", "-print-file-name=" + lib],
                               capture_output=True, text=True,
                               check=True).stdout.strip()
            libs.append(os.path.realpath(p))
        env["LD_PRELOAD"] = " ".join(libs)
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    return env


# --------------------------------------------------------------------------
# TLS: a throw-away CA and a certificate for 127.0.0.1 / localhost

class TestPKI:
    """A CA and a server certificate for 127.0.0.1 and localhost."""

    def __init__(self, directory):
        make_dir(directory)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                "Vantage test CA")])
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                             critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=True, key_cert_sign=True, crl_sign=True,
                  content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False,
                  encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(
                    NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.BasicConstraints(ca=False,
                                                     path_length=None),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                    critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca_file = write_file(os.path.join(directory, "ca.pem"),
                                  ca.public_bytes(pem))
        self.cert_file = write_file(os.path.join(directory, "server.pem"),
                                    cert.public_bytes(pem))
        self.key_file = write_file(
            os.path.join(directory, "server.key"),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
        self.ssl_context = ssl.create_default_context(cafile=self.ca_file)


# --------------------------------------------------------------------------
# the backend: echoes what nginx forwarded, as JSON

class _EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            # a list of pairs, so that a duplicated header shows
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _echo

    def log_message(self, fmt, *args):
        pass


class EchoBackend:
    """A threaded HTTP/1.1 server on loopback answering every request with
    {"method", "path", "headers": [[name, value], ...], "body"}."""

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      _EchoHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def header_values(echo, name):
    """Every value the backend received for header name (lower case)."""
    return [v for k, v in echo["headers"] if k == name.lower()]


# --------------------------------------------------------------------------
# processes

def _proc_children(ppid):
    """(pid, cmdline) of the processes whose parent is ppid, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
            # the comm field may hold spaces and parentheses: split after it
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[1]) != ppid:
                continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(d), cmd))
    return out


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


# every Nginx started in this process and not yet forgotten, for the log
# checks in conftest.py
LIVE = []


class Nginx:
    """One nginx instance in its own prefix.

    http:  text placed inside http {} before the main server
    server: text placed inside the main server {}, which listens on
            127.0.0.1:<http_port> (HTTP/1.1) and 127.0.0.1:<tls_port>
            (TLS, HTTP/2)
    main:  text placed at the top level (before events {})
    module: path of the module to load_module, or None for plain nginx
    """

    def __init__(self, base_dir, pki, http="", server="", main="",
                 worker_processes=2, module="default", log_level="info",
                 name="nginx"):
        self.prefix = make_dir(tempfile.mkdtemp(prefix=name + "-",
                                                dir=base_dir))
        self.pki = pki
        self.http_snippet = http
        self.server_snippet = server
        self.main_snippet = main
        self.worker_processes = worker_processes
        self.module = module_path() if module == "default" else module
        self.log_level = log_level
        self.http_port = free_port()
        self.tls_port = free_port()
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.error_log = os.path.join(self.prefix, "error.log")
        self.stdout_log = os.path.join(self.prefix, "stdout.log")
        self.pid_file = os.path.join(self.prefix, "nginx.pid")
        self.html = make_dir(os.path.join(self.prefix, "html"))
        self.proc = None
        self.master = None
        make_dir(os.path.join(self.prefix, "tmp"))
        self.write_conf()

    # -- configuration -----------------------------------------------------

    def render(self):
        """The config; "@PREFIX@" in the snippets stands for the prefix."""
        p = self.prefix
        load = "load_module %s;\n" % self.module if self.module else ""
        temps = "".join("    %s_temp_path %s/tmp/%s;\n" % (t, p, t)
                        for t in ("client_body", "proxy", "fastcgi",
                                  "uwsgi", "scgi"))
        return f"""# rendered by vantage_harness.py
{load}daemon off;
master_process on;
worker_processes {self.worker_processes};
pid {p}/nginx.pid;
error_log {p}/error.log {self.log_level};
worker_shutdown_timeout 10s;
{self.main_snippet}
events {{
    worker_connections 1024;
}}

http {{
    access_log {p}/access.log;
{temps}    default_type text/plain;
    keepalive_timeout 30s;

{self.http_snippet}

    server {{
        listen 127.0.0.1:{self.http_port};
        listen 127.0.0.1:{self.tls_port} ssl http2;
        server_name localhost;
        ssl_certificate {self.pki.cert_file};
        ssl_certificate_key {self.pki.key_file};
        root {self.html};

{self.server_snippet}
    }}
}}
""".replace("@PREFIX@", p)

    def write_conf(self, http=None, server=None, main=None):
        if http is not None:
            self.http_snippet = http
        if server is not None:
            self.server_snippet = server
        if main is not None:
            self.main_snippet = main
        write_file(self.conf, self.render())

    def _cmd(self, *args):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf] + list(args)

    def test_config(self):
        """`nginx -t`: (returncode, everything it printed)."""
        r = subprocess.run(self._cmd("-t", "-e", "stderr"),
                           env=sanitizer_env(), capture_output=True,
                           text=True, timeout=timeout(30))
        return r.returncode, r.stdout + r.stderr

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        """Starts the master (in the foreground, daemon off) and waits until
        both ports answer and every worker is up."""
        assert self.proc is None, "already started"
        out = open(self.stdout_log, "ab")
        cmd = self._cmd("-e", self.error_log)
        if valgrind():
            cmd = ["valgrind", "--quiet", "--trace-children=yes",
                   "--leak-check=no", "--error-limit=no", "--vgdb=no",
                   "--log-file=" + os.path.join(self.prefix,
                                                "valgrind.%p.log")] + cmd
        self.proc = subprocess.Popen(
            cmd, env=sanitizer_env(),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        out.close()
        self.master = self.proc.pid
        LIVE.append(self)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "nginx exited with %s at start:\n%s"
                    % (self.proc.returncode, self.startup_output()))
            return (port_open(self.http_port) and port_open(self.tls_port)
                    and len(self.workers()) == self.worker_processes)

        try:
            wait_for(up, 10, what="nginx to start")
        except TimeoutError:
            self.stop()
            raise RuntimeError("nginx did not start:\n%s"
                               % self.startup_output())
        return self

    def startup_output(self):
        return "%s\n--- error.log tail:\n%s" % (
            _read(self.stdout_log), _read(self.error_log)[-4000:])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def workers(self, include_shutting_down=False):
        """Worker pids of the running master."""
        if not self.running():
            return []
        pids = []
        for pid, cmd in _proc_children(self.master):
            if valgrind() and "valgrind" in cmd:
                # under valgrind nginx's process titles are not visible:
                # every child of the master counts as a worker
                pids.append(pid)
                continue
            if "worker process" not in cmd:
                continue
            if "shutting down" in cmd and not include_shutting_down:
                continue
            pids.append(pid)
        return sorted(pids)

    def children(self):
        if self.master is None:
            return []
        return [pid for pid, _ in _proc_children(self.master)]

    def reload(self, wait_old_exit=False, signaller=False):
        """Reloads and waits until worker_processes new workers are up.
        Returns (old, new) worker pids.  By default the master gets SIGHUP
        directly, which is all `nginx -s reload` does after parsing the
        config once more (and that parse fails, or logs, when a test has
        broken a file on purpose); signaller=True runs `nginx -s reload`."""
        assert self.running()
        old = set(self.workers(include_shutting_down=True))
        mark = self.log_size()
        if signaller:
            r = subprocess.run(self._cmd("-e", self.error_log, "-s",
                                         "reload"),
                               env=sanitizer_env(), capture_output=True,
                               text=True, timeout=timeout(30))
            assert r.returncode == 0, r.stdout + r.stderr
        else:
            os.kill(self.master, signal.SIGHUP)

        def new_up():
            if not self.running():
                raise RuntimeError("nginx master died on reload:\n%s"
                                   % self.log_since(mark))
            new = [p for p in self.workers() if p not in old]
            return new if len(new) == self.worker_processes else None

        new = wait_for(new_up, 10, what="new workers after reload")
        if wait_old_exit:
            self.wait_exited(old)
        return sorted(old), sorted(new)

    def wait_exited(self, pids, seconds=5):
        wait_for(lambda: not any(pid_alive(p) for p in pids), seconds,
                 what="old workers %s to exit" % sorted(pids))

    def stop(self):
        """Graceful quit, then terminate, then kill; always returns with
        no process of this instance left."""
        if self.proc is None:
            return
        pids = set(self.children())
        if self.proc.poll() is None:
            _signal(self.master, signal.SIGQUIT)
            try:
                self.proc.wait(timeout(8))
            except subprocess.TimeoutExpired:
                _signal(self.master, signal.SIGTERM)
                try:
                    self.proc.wait(timeout(3))
                except subprocess.TimeoutExpired:
                    _signal(self.master, signal.SIGKILL)
                    self.proc.wait(5)
        for pid in pids | set(self.children()):
            if pid_alive(pid):
                _signal(pid, signal.SIGKILL)
        self.proc = None

    # -- the error log -----------------------------------------------------

    def log_size(self):
        try:
            return os.path.getsize(self.error_log)
        except OSError:
            return 0

    def log_since(self, offset=0):
        with open(self.error_log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log_problems(self, offset=0):
        """Lines of error.log (from offset) and of the early stdout/stderr
        capture that show an alert, an emerg or a sanitizer report."""
        text = ""
        if os.path.exists(self.error_log):
            text += self.log_since(offset)
        if offset == 0:
            text += _read(self.stdout_log)
        problems = problem_lines(text)
        for name in sorted(os.listdir(self.prefix)):
            if name.startswith("valgrind.") and name.endswith(".log"):
                report = _read(os.path.join(self.prefix, name))
                # --quiet: anything memcheck wrote is an error report
                if report.strip():
                    problems.append("%s:\n%s" % (name, report[-4000:]))
        return problems

    # -- URLs --------------------------------------------------------------

    def base_url(self, transport):
        if transport == "h2":
            return "https://127.0.0.1:%d" % self.tls_port
        return "http://127.0.0.1:%d" % self.http_port


# A server block for the http snippet: answers every request with the value
# of its X-Body request header.  `return` runs in the rewrite phase, before
# any access-phase check (vantage_jwt, auth_basic), so a protected location
# must produce its content after the access phase: respond() proxies here,
# and the variables in the body are evaluated after authentication.
RESPONDER_SERVER = """
    server {
        listen unix:@PREFIX@/responder.sock;
        access_log off;
        location / { return 200 $http_x_body; }
        location = /json {
            default_type application/json;
            return 200 $http_x_body;
        }
    }
"""


def respond(body, json=False):
    """Directives for a location whose content is body (variables allowed,
    no double quote) sent by RESPONDER_SERVER; json: as application/json
    (only in a prefix location: the proxied URI is replaced)."""
    return ('proxy_set_header X-Body "%s";\n'
            '            proxy_pass http://unix:@PREFIX@/responder.sock:%s;'
            % (body, "/json" if json else ""))


def assert_one_emerg(rc, out, *texts):
    """nginx -t failed with exactly one [emerg] line, holding each of
    texts and naming the line of nginx.conf it is about."""
    lines = [l for l in out.splitlines() if "[emerg]" in l]
    assert rc != 0 and len(lines) == 1, out
    for t in texts:
        assert t in lines[0], out
    assert re.search(r"nginx\.conf:\d+$", lines[0]), out


def problem_lines(text):
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if any(p.search(line) for p in LOG_FORBIDDEN):
            bad.append("\n".join(lines[i:i + 12]) if "Sanitizer" in line
                       or "runtime error" in line else line)
    return bad


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# the client

class Response:
    def __init__(self, r):
        self.status = r.status_code
        self.headers = r.headers            # httpx.Headers: case-insensitive
        self.content = r.content
        self.body = r.content.decode("utf-8", "replace")
        self.http_version = r.http_version
        self.json = None
        ctype = r.headers.get("content-type", "")
        if ctype.split(";")[0].strip().endswith("json"):
            try:
                self.json = json.loads(self.content)
            except ValueError:
                self.json = None

    def __repr__(self):
        return "<Response %s %s %r %r>" % (self.status, self.http_version,
                                           dict(self.headers),
                                           self.body[:300])


class Client:
    """Requests to one Nginx over one transport ("http": HTTP/1.1 in the
    clear; "h2": HTTP/2 over TLS, verified against the test CA).  Every
    token sent is remembered so that the log checks can assert that none
    of them reached error.log."""

    def __init__(self, nginx, transport):
        assert transport in TRANSPORTS
        self.nginx = nginx
        self.transport = transport
        self.sent_tokens = []
        self._client = None

    def _new_client(self):
        h2 = self.transport == "h2"
        return httpx.Client(
            base_url=self.nginx.base_url(self.transport),
            http1=not h2, http2=h2,
            verify=self.nginx.pki.ssl_context if h2 else False,
            timeout=timeout(10), follow_redirects=False, trust_env=False)

    def remember(self, token):
        if token and len(token) >= 16:
            self.sent_tokens.append(token)

    def get(self, path, token=None, headers=None, params=None,
            new_connection=False, method="GET"):
        """token: sent as "Authorization: Bearer <token>".  new_connection:
        a fresh TCP (and TLS) connection for this request alone, so that
        successive calls spread over the workers."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
            self.remember(token)
        for k, v in hdrs.items():
            if k.lower() in ("authorization", "cookie") or \
                    k.lower().startswith("x-token"):
                for part in re.split(r"[ ;=]", v):
                    self.remember(part)
        for v in (params or {}).values():
            self.remember(str(v))
        if new_connection:
            with self._new_client() as c:
                r = c.request(method, path, headers=hdrs, params=params)
        else:
            if self._client is None:
                self._client = self._new_client()
            r = self._client.request(method, path, headers=hdrs,
                                     params=params)
        want = "HTTP/2" if self.transport == "h2" else "HTTP/1.1"
        assert r.http_version == want, \
            "expected %s, got %s" % (want, r.http_version)
        return Response(r)

    def request(self, method, path, content=None, headers=None):
        """Any method with a body (bytes, or an iterator of bytes for a
        chunked HTTP/1.1 body); headers may repeat as a list of pairs."""
        if self._client is None:
            self._client = self._new_client()
        r = self._client.request(method, path, content=content,
                                 headers=headers)
        want = "HTTP/2" if self.transport == "h2" else "HTTP/1.1"
        assert r.http_version == want, \
            "expected %s, got %s" % (want, r.http_version)
        return Response(r)

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


def leaked_tokens(text, tokens):
    """The tokens (or their long segments) that appear in text."""
    leaked = []
    for t in set(tokens):
        pieces = [t] + [s for s in t.split(".") if len(s) >= 24]
        if any(p in text for p in pieces):
            leaked.append(t[:40] + "...")
    return leaked


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# --------------------------------------------------------------------------
# Redis: a real redis-server for the tests that need one

REDIS_SERVER = os.environ.get("VANTAGE_REDIS_SERVER", "/usr/bin/redis-server")

# every RedisServer started in this process and not yet closed: the session
# hook in conftest.py and the atexit handler below stop what is left
REDIS_LIVE = []

# sun_path holds 108 bytes, the terminating NUL included
_UNIX_PATH_MAX = 107

# the nanosleep/clock_nanosleep syscall numbers, to see DEBUG SLEEP running
_NANOSLEEP_SYSCALLS = {
    "x86_64": ("35", "230"),
    "aarch64": ("101", "115"),
}


def _redis_module():
    import redis        # python3-redis; imported only by the Redis tests
    return redis


def _redis_quote(arg):
    """arg as one redis.conf argument."""
    return '"%s"' % str(arg).replace("\\", "\\\\").replace('"', '\\"')


class _ReplyThread(threading.Thread):
    """Reads the reply to a command already sent on conn, then closes conn.
    After join(): .result (the reply) or .error (the exception)."""

    def __init__(self, conn, what):
        super().__init__(name="redis " + what, daemon=True)
        self.conn = conn
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.conn.read_response()
        except Exception as e:          # handed to whoever joins
            self.error = e
        finally:
            self.conn.disconnect()


class RedisServer:
    """One redis-server in its own directory, listening on 127.0.0.1:<port>
    and (unix=True) on <unix_path>, mode 0700.  Nothing is saved: no RDB,
    and an append-only file only with appendonly=True (fsync'd at every
    write).  password without user: requirepass; with user: that ACL user
    (all keys, channels and commands) and the default user disabled.
    socket_perm: the unixsocketperm (nginx's workers run as nobody: a
    socket they must reach needs "777").  DEBUG works from loopback."""

    def __init__(self, base_dir, name="redis", password=None, user=None,
                 unix=True, appendonly=False, socket_perm="700"):
        os.makedirs(base_dir, exist_ok=True)
        self.dir = make_dir(tempfile.mkdtemp(prefix=name + "-",
                                             dir=base_dir))
        self.name = name
        self.password = password
        self.user = user
        self.appendonly = appendonly
        self.socket_perm = socket_perm
        self._port = free_port()
        self._sock_dir = None           # the short fallback under /tmp
        self._unix_path = None
        if unix:
            path = os.path.join(self.dir, "redis.sock")
            if len(os.fsencode(path)) > _UNIX_PATH_MAX:
                self._sock_dir = make_dir(tempfile.mkdtemp(prefix="vr-",
                                                           dir="/tmp"))
                path = os.path.join(self._sock_dir, "redis.sock")
            self._unix_path = path
        self.conf = os.path.join(self.dir, "redis.conf")
        self.log_file = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.pid = None                 # the last pid, kept after stop()
        self.paused = False
        self._clients = []
        self._monitor = None
        self.write_conf()

    # -- configuration -----------------------------------------------------

    def render(self):
        lines = [
            "# rendered by vantage_harness.py",
            "bind 127.0.0.1",
            "port %d" % self._port,
            "protected-mode yes",
            "daemonize no",
            "dir %s" % _redis_quote(self.dir),
            "logfile %s" % _redis_quote(self.log_file),
            'save ""',
            "appendonly %s" % ("yes" if self.appendonly else "no"),
            "enable-debug-command local",
        ]
        if self.appendonly:
            lines.append("appendfsync always")
        if self._unix_path:
            lines += ["unixsocket %s" % _redis_quote(self._unix_path),
                      "unixsocketperm %s" % self.socket_perm]
        if self.user is not None:
            secret = (">" + self.password) if self.password is not None \
                else "nopass"
            lines += ["user %s on %s ~* &* +@all"
                      % (_redis_quote(self.user), _redis_quote(secret)),
                      "user default off"]
        elif self.password is not None:
            lines.append("requirepass %s" % _redis_quote(self.password))
        return "\n".join(lines) + "\n"

    def write_conf(self):
        write_file(self.conf, self.render(), mode=0o600)

    @property
    def port(self):
        return self._port

    @property
    def address(self):
        return "127.0.0.1:%d" % self._port

    @property
    def unix_path(self):
        return self._unix_path

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        """Starts redis-server (on the same port and socket path every
        time) and waits until it answers PING over TCP."""
        assert self.proc is None, "already started"
        cmd = [REDIS_SERVER, self.conf]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # killed with the test run, however that ends
            cmd = [setpriv, "--pdeathsig", "KILL", "--"] + cmd
        out = open(self.log_file, "ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        self.pid = self.proc.pid
        self.paused = False
        if self not in REDIS_LIVE:
            REDIS_LIVE.append(self)

        def up():
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError("redis-server exited with %s at start:\n%s"
                                   % (rc, self.log_tail()))
            return self._ping()

        try:
            wait_for(up, 10, what="redis-server to start")
        except TimeoutError:
            self.stop()
            raise RuntimeError("redis-server did not start:\n%s"
                               % self.log_tail())
        return self

    def _ping(self):
        redis = _redis_module()
        c = self.client(socket_timeout=timeout(0.5),
                        socket_connect_timeout=timeout(0.5), _track=False)
        try:
            return c.ping()
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            c.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (the server is resumed if paused), SIGKILL when it has not
        exited after a while; always returns with the process gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal(self.pid, signal.SIGTERM)
            _signal(self.pid, signal.SIGCONT)
            try:
                self.proc.wait(timeout(5))
            except subprocess.TimeoutExpired:
                _signal(self.pid, signal.SIGKILL)
                self.proc.wait(timeout(5))
        self._after_exit()

    def kill(self):
        """SIGKILL at once: a crash (the socket file stays behind)."""
        if self.proc is None:
            return
        _signal(self.pid, signal.SIGKILL)
        self.proc.wait(timeout(5))
        self._after_exit()

    def _after_exit(self):
        self.proc = None
        self.paused = False
        self._close_clients()

    def restart(self):
        self.stop()
        return self.start()

    def pause(self):
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        assert self.running(), "not running"
        _signal(self.pid, signal.SIGSTOP)
        wait_for(lambda: self._state() in ("T", "t"), 5,
                 interval=0.005, what="redis-server to stop")
        self.paused = True

    def resume(self):
        assert self.running(), "not running"
        _signal(self.pid, signal.SIGCONT)
        wait_for(lambda: self._state() not in ("T", "t"), 5,
                 interval=0.005, what="redis-server to continue")
        self.paused = False

    def _state(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                stat = f.read()
        except OSError:
            return None
        return stat[stat.rindex(")") + 2:].split()[0]

    def close(self, keep=False):
        """Stops the server and forgets it; removes its directory unless
        keep or VANTAGE_KEEP_TMP (the short socket directory always goes)."""
        self.stop()
        self._close_clients()
        if self in REDIS_LIVE:
            REDIS_LIVE.remove(self)
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        if not keep and not os.environ.get("VANTAGE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, size=4000):
        return "--- %s tail:\n%s" % (self.log_file,
                                     _read(self.log_file)[-size:])

    # -- clients -----------------------------------------------------------

    def client(self, _track=True, **kw):
        """A redis.Redis over TCP, authenticated as configured, bytes in
        and out, short timeouts; keyword arguments override."""
        redis = _redis_module()
        args = dict(host="127.0.0.1", port=self._port,
                    username=self.user, password=self.password,
                    decode_responses=False,
                    socket_timeout=timeout(2),
                    socket_connect_timeout=timeout(2))
        args.update(kw)
        c = redis.Redis(**args)
        if _track:
            self._clients.append(c)
        return c

    def unix_client(self, **kw):
        """client() over the unix socket."""
        assert self._unix_path, "no unix socket configured"
        kw.setdefault("unix_socket_path", self._unix_path)
        args = dict(username=self.user, password=self.password,
                    decode_responses=False,
                    socket_timeout=timeout(2),
                    socket_connect_timeout=timeout(2))
        args.update(kw)
        c = _redis_module().Redis(**args)
        self._clients.append(c)
        return c

    def _close_clients(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        self._monitor = None

    def debug_sleep(self, seconds):
        """Sends DEBUG SLEEP <seconds> on a connection of its own and
        returns a started thread that waits for the reply (join() it; then
        .result is b"OK" or .error the exception).  Returns once the
        server is inside the sleep, when /proc lets that be seen."""
        redis = _redis_module()
        conn = redis.Connection(host="127.0.0.1", port=self._port,
                                username=self.user, password=self.password,
                                socket_timeout=seconds + timeout(10),
                                socket_connect_timeout=timeout(2))
        conn.connect()
        conn.send_command("DEBUG", "SLEEP", repr(float(seconds)))
        t = _ReplyThread(conn, "DEBUG SLEEP")
        t.start()
        deadline = time.monotonic() + timeout(2)
        while t.is_alive() and time.monotonic() < deadline:
            s = self._sleeping()
            if s is None:
                time.sleep(0.05)        # cannot tell: give it a moment
                break
            if s:
                break
            time.sleep(0.002)
        return t

    def _sleeping(self):
        """Whether the server's main thread is in nanosleep (None: /proc
        does not say)."""
        try:
            with open("/proc/%d/wchan" % self.pid) as f:
                wchan = f.read().strip()
            if wchan and wchan != "0":
                return "nanosleep" in wchan
        except OSError:
            pass
        nrs = _NANOSLEEP_SYSCALLS.get(os.uname().machine)
        if nrs:
            try:
                with open("/proc/%d/syscall" % self.pid) as f:
                    nr = f.read().split()
                if nr and nr[0] != "running":
                    return nr[0] in nrs
            except OSError:
                pass
        return None

    def _commandstats(self):
        if self._monitor is None:
            self._monitor = self.client()
        calls = {}
        for key, val in self._monitor.info("commandstats").items():
            if key.startswith("cmdstat_") and isinstance(val, dict):
                calls[key[len("cmdstat_"):]] = (
                    int(val.get("calls", 0)) +
                    int(val.get("rejected_calls", 0)))
        return calls

    def command_calls(self, fn):
        """{command: count} of the commands Redis ran or rejected while fn()
        ran ("client|setname" for a subcommand), without the INFO calls
        made here.  Commands Redis does not know are not counted."""
        before = self._commandstats()
        fn()
        after = self._commandstats()
        # the first INFO is counted once it has run, the second is not yet
        before["info"] = before.get("info", 0) + 1
        diff = {}
        for cmd, n in after.items():
            d = n - before.get(cmd, 0)
            if d:
                diff[cmd] = d
        return diff

    def monitor_count(self, fn):
        """How many commands Redis processed during fn() (0: nothing
        reached it)."""
        return sum(self.command_calls(fn).values())

    def cpu_seconds(self):
        """utime + stime of the server process, in seconds."""
        assert self.running(), "not running"
        with open("/proc/%d/stat" % self.pid) as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime and stime are fields 14, 15
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def __repr__(self):
        return "<RedisServer %s pid=%s %s>" % (
            self.address, self.pid, "running" if self.running() else "down")


def stop_all_redis():
    """Stops every RedisServer still registered (their directories are
    left for the session's cleanup); returns them."""
    left = list(REDIS_LIVE)
    for r in left:
        try:
            r.close(keep=True)
        except Exception as e:
            print("vantage: stopping %r: %s" % (r, e), file=sys.stderr)
            if r.pid and pid_alive(r.pid):
                _signal(r.pid, signal.SIGKILL)
    return left


atexit.register(stop_all_redis)


if __name__ == "__main__":
    print("module:", module_path(), "sanitize:", sanitize(), "scale:",
          scale(), file=sys.stderr)
