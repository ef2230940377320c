"""worker_harness.py -- run build/vantage-worker and talk to it in frames.

The framing of docs/PROTOCOL.md, written again here with struct (never by
calling common/vc_frame.c, so that the tests check the C code rather than
share its mistakes), a client over the worker's Unix socket, and a Worker
that starts the binary against a Redis and makes sure no worker process
outlives the test run.  No pytest imports at module level: the test module
wires these into fixtures.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import vantage_harness as vh


WORKER = os.environ.get("VANTAGE_WORKER",
                        os.path.join(vh.REPO, "build", "vantage-worker"))

# -- the protocol, version 1 ------------------------------------------------

MAGIC = b"VW"
VERSION = 1
HEADER = struct.Struct(">2sBBQI")      # magic, version, type, id, length
FIELD = struct.Struct(">HI")           # tag, length
HEADER_LEN = HEADER.size               # 16
REPLY = 0x80
OPTIONAL = 0x8000

PING = 1
DISPATCH = 2
JOB_STATUS = 3
FETCH = 4

T_STATUS = 1
T_ERROR = 2
T_RETRY_AFTER = 3
T_JOB_TYPE = 16
T_TENANT = 17
T_SUBJECT = 18
T_IDEMPOTENCY_KEY = 19
T_CORRELATION_ID = 20
T_HEADER = 21
T_BODY = 22
T_JOB_ID = 23
T_JOB_STATE = 24
T_METHOD = 25
T_URI = 26
T_ORDERING_KEY = 27
T_REPLAYED = 28
T_IDP = 29
T_FETCH_KIND = 30
T_TOKEN = 31
T_AGE = 32
T_MAX_AGE = 33
T_STALE = 34

# what a decoder here accepts from the worker before calling it broken
MAX_REPLY = 64 << 20

# the default --max-frame: 16 MiB + 64 KiB
DEFAULT_MAX_FRAME = (16 << 20) + (64 << 10)


def _b(v):
    if isinstance(v, str):
        return v.encode()
    return bytes(v)


def u32(n):
    return struct.pack(">I", n)


def encode_header(ftype, fid, length, magic=MAGIC, version=VERSION):
    return HEADER.pack(magic, version, ftype, fid, length)


def encode_field(tag, value):
    value = _b(value)
    return FIELD.pack(tag, len(value)) + value


def encode_fields(fields):
    return b"".join(encode_field(t, v) for t, v in fields)


def encode_frame(ftype, fid, fields=(), magic=MAGIC, version=VERSION):
    """A whole frame: fields is a list of (tag, bytes-or-str)."""
    body = encode_fields(fields)
    return encode_header(ftype, fid, len(body), magic, version) + body


def decode_fields(data):
    """[(tag, bytes)] from a frame's field bytes; ValueError if malformed."""
    fields = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < FIELD.size:
            raise ValueError("truncated field header at %d" % pos)
        tag, n = FIELD.unpack_from(data, pos)
        pos += FIELD.size
        if n > len(data) - pos:
            raise ValueError("field %d runs past the frame (%d > %d)"
                             % (tag, n, len(data) - pos))
        fields.append((tag, bytes(data[pos:pos + n])))
        pos += n
    return fields


class Frame:
    """A decoded frame."""

    def __init__(self, ftype, fid, fields, magic=MAGIC, version=VERSION):
        self.type = ftype
        self.id = fid
        self.fields = fields
        self.magic = magic
        self.version = version

    def all(self, tag):
        return [v for t, v in self.fields if t == tag]

    def get(self, tag, default=None):
        vals = self.all(tag)
        return vals[0] if vals else default

    def tags(self):
        return [t for t, _ in self.fields]

    def _u32(self, tag):
        v = self.get(tag)
        if v is None:
            return None
        assert len(v) == 4, "tag %d: a 4-byte integer expected, got %r" \
            % (tag, v)
        return struct.unpack(">I", v)[0]

    @property
    def status(self):
        return self._u32(T_STATUS)

    @property
    def retry_after(self):
        return self._u32(T_RETRY_AFTER)

    @property
    def error(self):
        v = self.get(T_ERROR)
        return None if v is None else v.decode("utf-8", "replace")

    def __repr__(self):
        shown = []
        for t, v in self.fields:
            shown.append("%d=%r" % (t, v if len(v) <= 80 else
                                    v[:80] + b"...(%d)" % len(v)))
        return "<Frame type=0x%02x id=0x%x %s>" % (self.type, self.id,
                                                   " ".join(shown))


def recv_exact(sock, n, deadline):
    """Exactly n bytes from sock before deadline (time.monotonic()).
    EOFError when the peer closes first (with .partial, what came),
    TimeoutError when the deadline passes."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("%d of %d bytes before the deadline"
                               % (len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise TimeoutError("%d of %d bytes before the deadline"
                               % (len(buf), n))
        if not chunk:
            e = EOFError("connection closed after %d of %d bytes"
                         % (len(buf), n))
            e.partial = bytes(buf)
            raise e
        buf += chunk
    return bytes(buf)


def recv_frame(sock, seconds=2.0):
    """One frame from sock, waiting at most timeout(seconds)."""
    deadline = time.monotonic() + vh.timeout(seconds)
    head = recv_exact(sock, HEADER_LEN, deadline)
    magic, version, ftype, fid, length = HEADER.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise ValueError("bad frame header from the worker: %r" % head)
    if length > MAX_REPLY:
        raise ValueError("reply of %d bytes announced" % length)
    body = recv_exact(sock, length, deadline)
    return Frame(ftype, fid, decode_fields(body), magic, version)


class FrameClient:
    """One connection to the worker's Unix socket."""

    def __init__(self, path, seconds=2.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(vh.timeout(seconds))
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def send_raw(self, data):
        self.sock.settimeout(vh.timeout(10))
        self.sock.sendall(data)

    def send_frame(self, ftype, fid, fields=(), **kw):
        self.send_raw(encode_frame(ftype, fid, fields, **kw))

    def recv_frame(self, seconds=2.0):
        return recv_frame(self.sock, seconds)

    def request(self, ftype, fid, fields=(), seconds=2.0):
        """Sends one frame and returns the next frame received."""
        self.send_frame(ftype, fid, fields)
        return self.recv_frame(seconds)

    def ping(self, fid=1, seconds=2.0):
        return self.request(PING, fid, (), seconds)

    def dispatch(self, fid, fields, seconds=2.0):
        return self.request(DISPATCH, fid, fields, seconds)

    def closed_by_peer(self, seconds=2.0):
        """Waits for the peer to close: returns the bytes received before
        the close (b"" when none), raises TimeoutError if it stays open."""
        deadline = time.monotonic() + vh.timeout(seconds)
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection still open after %.1fs "
                                   "(received %r)" % (vh.timeout(seconds),
                                                      bytes(got)))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dispatch_fields(job_type="http", tenant="acme", extra=()):
    return [(T_JOB_TYPE, job_type), (T_TENANT, tenant)] + list(extra)


def job_state(rc, jid):
    """The state field of {vq}:job:<jid> ("" when there is none); rc is a
    redis client returning bytes."""
    return (rc.hget("{vq}:job:" + jid, "state") or b"").decode()


def wait_job_state(rc, jid, want, seconds=10):
    """Waits until the job's state is want (TimeoutError otherwise)."""
    vh.wait_for(lambda: job_state(rc, jid) == want, seconds, interval=0.05,
                what="job %s %s" % (jid, want))


# -- the worker process -------------------------------------------------------

# every Worker started in this process and not yet closed
WORKER_LIVE = []

_UNIX_PATH_MAX = 107

# the head of a configuration file given to Worker(config=...)
CONFIG_HEAD = "[worker]\nlisten = {listen}\nredis = {redis}\n"


def worker_path():
    return WORKER


def worker_available():
    return os.path.exists(WORKER) and os.access(WORKER, os.X_OK)


class Worker:
    """build/vantage-worker in its own directory, listening on <dir>/w.sock,
    its stdout and stderr in <dir>/worker.log.

    Without config it runs with --listen and --redis.  With config (the
    text of a configuration file) it runs with -c <dir>/worker.conf alone;
    "{listen}" and "{redis}" in the text become unix:<socket_path> and the
    Redis address (write_config() rewrites the file, e.g. before SIGHUP)."""

    def __init__(self, base_dir, redis, args=(), name="worker", config=None,
                 wait_ready=True):
        self.wait_ready = wait_ready
        os.makedirs(base_dir, exist_ok=True)
        self.dir = vh.make_dir(tempfile.mkdtemp(prefix=name + "-",
                                                dir=base_dir))
        self.redis = redis
        self.args = list(args)
        self._sock_dir = None
        path = os.path.join(self.dir, "w.sock")
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            self._sock_dir = vh.make_dir(tempfile.mkdtemp(prefix="vw-",
                                                          dir="/tmp"))
            path = os.path.join(self._sock_dir, "w.sock")
        self.socket_path = path
        self.log_file = os.path.join(self.dir, "worker.log")
        self.config_file = None
        if config is not None:
            self.config_file = os.path.join(self.dir, "worker.conf")
            self.write_config(config)
        self.proc = None
        self.pid = None
        self.returncode = None
        self._clients = []

    def command(self):
        if self.config_file is not None:
            return [WORKER, "-c", self.config_file] + self.args
        return [WORKER, "--listen", "unix:" + self.socket_path,
                "--redis", self.redis] + self.args

    def write_config(self, text):
        """Writes the configuration file (atomically: a reload never reads
        half of it); see the class for the placeholders."""
        assert self.config_file is not None, "started without config"
        text = text.replace("{listen}", "unix:" + self.socket_path)
        text = text.replace("{redis}", self.redis)
        vh.write_file(self.config_file, text, mode=0o644, atomic=True)
        return self.config_file

    def log_lines(self):
        """The JSON objects logged so far (lines that are not JSON, e.g. a
        sanitizer's report, are skipped)."""
        out = []
        for line in self.log_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def spawn(self):
        """Starts the process without waiting for it to listen."""
        assert self.proc is None, "already started"
        cmd = self.command()
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # killed with the test run, however that ends
            cmd = [setpriv, "--pdeathsig", "KILL", "--"] + cmd
        out = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            out.close()
        self.pid = self.proc.pid
        self.returncode = None
        if self not in WORKER_LIVE:
            WORKER_LIVE.append(self)
        return self

    def start(self, seconds=5):
        """Starts the worker and waits until it answers PING with 200: it
        listens and its queue can take jobs (docs/PROTOCOL.md, PING).
        With wait_ready False, any answer to PING will do: a worker whose
        Redis is not up yet answers 503."""
        self.spawn()
        try:
            self.wait_ping(200 if self.wait_ready else None, seconds)
        except RuntimeError:
            self.stop()
            raise
        return self

    def ping_reply(self, fid=0x5057, seconds=0.5):
        """PING's answer (a Frame), or None when the socket does not take
        the connection or answers no PING reply in time."""
        try:
            with FrameClient(self.socket_path, seconds=seconds) as c:
                r = c.ping(fid=fid, seconds=seconds)
        except (OSError, EOFError, TimeoutError, ValueError):
            return None
        if r.type != PING | REPLY or r.id != fid:
            return None
        return r

    def wait_ping(self, status=200, seconds=5):
        """Waits until PING is answered with status (None: answered at
        all) and returns the answer.  RuntimeError, with the last answer
        and the log's tail, when the worker exits or the time is up."""
        last = [None]

        def answered():
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    self.returncode = self.proc.returncode
                    self.proc = None
                raise RuntimeError("vantage-worker exited with %s while "
                                   "waiting for PING:\n%s"
                                   % (self.returncode, self.log_tail()))
            r = self.ping_reply()
            if r is not None:
                last[0] = r
            if r is not None and (status is None or r.status == status):
                return r
            return None

        try:
            return vh.wait_for(answered, seconds,
                               what="vantage-worker to answer PING")
        except TimeoutError:
            r = last[0]
            raise RuntimeError(
                "vantage-worker did not answer PING%s within %.1fs; the "
                "last answer: %s\n%s"
                % (" with %d" % status if status else "", vh.timeout(seconds),
                   "none" if r is None else "%s %r" % (r.status, r.error),
                   self.log_tail()))

    def client(self, seconds=2.0):
        c = FrameClient(self.socket_path, seconds)
        self._clients.append(c)
        return c

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, seconds=5):
        """Waits for the process to exit; returns its exit code (or None
        when it is still running after timeout(seconds))."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(vh.timeout(seconds))
        except subprocess.TimeoutExpired:
            return None
        self.proc = None
        return self.returncode

    def stop(self, sig=signal.SIGTERM, seconds=5):
        """sig, then SIGKILL if the worker has not exited after
        timeout(seconds); returns the exit code (negative: a signal)."""
        self._close_clients()
        if self.proc is None:
            return self.returncode
        self.send_signal(sig)
        rc = self.wait(seconds)
        if rc is None:
            self.send_signal(signal.SIGKILL)
            rc = self.wait(5)
        return rc

    def close(self, keep=False):
        self.stop()
        if self in WORKER_LIVE:
            WORKER_LIVE.remove(self)
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        if not keep and not os.environ.get("VANTAGE_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_clients(self):
        for c in self._clients:
            c.close()
        self._clients = []

    def log_text(self):
        try:
            with open(self.log_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, size=4000):
        return "--- %s tail:\n%s" % (self.log_file, self.log_text()[-size:])

    def __repr__(self):
        return "<Worker %s pid=%s %s>" % (
            self.socket_path, self.pid,
            "running" if self.running() else "down")


def stop_all_workers():
    """Stops (SIGKILL if need be) every Worker still registered."""
    left = list(WORKER_LIVE)
    for w in left:
        try:
            w.close(keep=True)
        except Exception as e:
            print("vantage: stopping %r: %s" % (w, e), file=sys.stderr)
            if w.pid and vh.pid_alive(w.pid):
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return left


atexit.register(stop_all_workers)
