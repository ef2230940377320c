"""http_target.py -- a vendor endpoint for the worker's tests.

A ThreadingHTTPServer on a free 127.0.0.1 port that records every request
it receives, raw (method, path, headers, body, arrival time), and answers
as the test scripted it per path:

    t = HttpTarget()
    t.script("/flaky", [(503, {}, b""), (503, {}, b"")])   # then 200
    t.script("/slow", [("sleep", 2.0)])                    # then 200
    t.script("/rl", [(429, {"Retry-After": "2"}, b"")])
    t.script("/gone", [("close",)])
    t.default("/bad", (400, {"Content-Type": "application/json"}, b"{...}"))
    t.delay("/ord", 0.0, 0.05)       # every answer after a random sleep
    t.default("/echo", ("echo", 500))  # the request's headers and body back

It also counts requests running at once per path (t.max_concurrent(path)).
The tests import it; `make run` runs it on its own as the demo's vendor,
answering 200 to everything and appending one JSON line per request to a
file:

    /usr/bin/python3 tests/fakes/http_target.py --port 8082 --log target.log

Standard library only, so Debian's python3 runs it as it is.
"""

import argparse
import http.server
import json
import random
import signal
import socketserver
import sys
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _serve(self):
        t = self.server.target
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path = self.path.split("?")[0]
        rec = {"method": self.command, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "raw_headers": list(self.headers.items()),
               "body": body, "time": time.time()}
        with t.lock:
            t.requests.append(rec)
            if t.log_file is not None:
                t.log_request(rec)
            t.running[path] = t.running.get(path, 0) + 1
            t.peak[path] = max(t.peak.get(path, 0), t.running[path])
            steps = t.scripts.get(path)
            action = steps.pop(0) if steps else t.defaults.get(path)
            lo_hi = t.delays.get(path)
        try:
            if lo_hi:
                time.sleep(random.uniform(*lo_hi))
            if action is None:
                action = (200, {}, b'{"ok":true}')
            if action[0] == "sleep":
                time.sleep(action[1])
                action = action[2] if len(action) > 2 else (200, {}, b"{}")
            if action[0] == "echo":
                out = b"".join(("%s: %s\n" % kv).encode()
                               for kv in rec["raw_headers"]) + b"\n" + body
                action = (action[1], {}, out)
            if action[0] == "close":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, headers, out = action
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        finally:
            with t.lock:
                t.running[path] -= 1

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _serve


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpTarget:
    def __init__(self, port=0, log_file=None):
        self.log_file = log_file
        self.lock = threading.Lock()
        self.requests = []
        self.scripts = {}
        self.defaults = {}
        self.delays = {}
        self.running = {}
        self.peak = {}
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.target = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def script(self, path, steps):
        with self.lock:
            self.scripts[path] = list(steps)

    def default(self, path, action):
        with self.lock:
            self.defaults[path] = action

    def delay(self, path, lo, hi):
        with self.lock:
            self.delays[path] = (lo, hi)

    def got(self, path=None):
        with self.lock:
            return [r for r in self.requests
                    if path is None or r["path"].split("?")[0] == path]

    def max_concurrent(self, path):
        with self.lock:
            return self.peak.get(path, 0)

    def log_request(self, rec):
        """One JSON line per request, flushed at once (called under lock)."""
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S",
                                      time.localtime(rec["time"])),
                "method": rec["method"], "path": rec["path"],
                "headers": rec["headers"],
                "body": rec["body"].decode("utf-8", "replace")}
        with open(self.log_file, "a") as f:
            f.write(json.dumps(line) + "\n")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    ap = argparse.ArgumentParser(
        description="An HTTP endpoint on 127.0.0.1 that answers 200 "
                    "{\"ok\":true} and logs every request as a JSON line.")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True, help="file the lines go to")
    args = ap.parse_args()

    t = HttpTarget(port=args.port, log_file=args.log)
    done = threading.Event()

    def stop(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)
    print("http_target: listening on 127.0.0.1:%d, logging to %s"
          % (t.port, args.log), flush=True)
    while not done.wait(1):
        pass
    t.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
