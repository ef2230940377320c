"""test_jwt_rotation.py -- a key file changed on disk is picked up by every
worker process within vantage_jwt_keys_check_interval (+ up to a second),
without a reload; an invalid new file is logged and the old keys stay."""

import json
import os
import re
import time

import pytest

import vantage_harness as vh
from vantage_tokens import claims, jwk, mint, pem_public

INTERVAL = 1.0
# the interval, up to a second more, and slack for a loaded machine
DEADLINE = INTERVAL + 1.0 + 0.5


@pytest.fixture
def rotation(module_available, nginx_factory, base_dir, keys):
    d = vh.make_dir(os.path.join(base_dir, "rot-%d" % time.monotonic_ns()))
    path = vh.write_file(os.path.join(d, "keys.pem"), pem_public(keys.rsa))
    n = nginx_factory(
        name="jwt-rot", worker_processes=2,
        http=vh.RESPONDER_SERVER + """
    vantage_jwt_keys_check_interval 1s;
    vantage_jwt_cache zone=vjwt_rot:1m;
""",
        server=f"""
        location /r/ {{
            vantage_jwt on;
            vantage_jwt_keys {path};
            add_header X-Worker $pid always;
            {vh.respond("ok $vantage_jwt_claim_sub")}
        }}""")
    return n, path


def _round(client, nginx, token, want_ok, reason=None, max_requests=60):
    """Requests on new connections until every worker answered at least
    twice; returns the set of workers whose every answer was as wanted,
    and the workers seen."""
    workers = set(nginx.workers())
    seen, good, bad = {}, set(), set()
    for _ in range(max_requests):
        r = client.get("/r/x", token=token, new_connection=True)
        pid = int(r.headers["X-Worker"])
        seen[pid] = seen.get(pid, 0) + 1
        if want_ok:
            ok = r.status == 200 and r.body == "ok alice"
        else:
            ok = r.status == 401 and r.json == {
                "error": "invalid_token", "error_description": reason}
        (good if ok else bad).add(pid)
        if all(seen.get(w, 0) >= 2 for w in workers):
            break
    assert set(seen) == workers, \
        "new connections reached %s, workers are %s" % (set(seen), workers)
    return good - bad


def _all_workers(client, nginx, token, want_ok, reason=None):
    return _round(client, nginx, token, want_ok, reason) == \
        set(nginx.workers())


def _converge(client, nginx, checks, seconds):
    """Polls until every (token, want_ok, reason) holds in every worker;
    returns the seconds it took."""
    start = time.monotonic()
    deadline = start + vh.timeout(seconds)
    while True:
        if all(_all_workers(client, nginx, *c) for c in checks):
            return time.monotonic() - start
        if time.monotonic() > deadline:
            state = [(c[1], c[2], _round(client, nginx, *c)) for c in checks]
            pytest.fail("keys not rotated in every worker %s within %.1fs: "
                        "(want_ok, reason, workers that comply) %s"
                        % (nginx.workers(), vh.timeout(seconds), state))
        time.sleep(0.1)


def test_key_file_rotation_without_reload(rotation, client_for, keys):
    nginx, path = rotation
    client = client_for(nginx)
    workers = nginx.workers()
    assert len(workers) == 2
    old = mint(keys.rsa, "RS256", claims())
    new = mint(keys.rsa2, "RS256", claims(), headers={"kid": "k2"})
    ec = keys.ec["ES256"]
    third = mint(ec, "ES256", claims())
    sig_failed = "signature verification failed"

    # the old key works everywhere (and its tokens are now cached)
    assert _all_workers(client, nginx, old, True)
    assert _all_workers(client, nginx, new, False, sig_failed)

    # 1. a new file renamed into place: a JWKS with kid k2
    vh.write_file(path, json.dumps({"keys": [jwk(keys.rsa2, kid="k2")]}),
                  atomic=True)
    took = _converge(client, nginx, [(new, True, None),
                                     (old, False, sig_failed)], DEADLINE)
    assert nginx.workers() == workers, "rotation must not restart workers"

    # 2. an invalid file written in place: logged, the keys stay
    mark = nginx.log_size()
    vh.write_file(path, "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n"
                        "-----END PUBLIC KEY-----\n")
    error = re.compile(r"\[error\] (\d+)#\d+: .*vantage jwt: ")
    # each worker checks the file, so each one says so
    vh.wait_for(lambda: set(int(p) for p in error.findall(
                    nginx.log_since(mark))) == set(workers), DEADLINE,
                what="an [error] about the invalid key file from every "
                     "worker")
    time.sleep(vh.timeout(INTERVAL))
    assert _all_workers(client, nginx, new, True)
    assert _all_workers(client, nginx, old, False, sig_failed)

    # 3. a valid file again, in place, of another type and size
    vh.write_file(path, pem_public(ec))
    _converge(client, nginx, [(third, True, None),
                              (old, False, "no key for algorithm")],
              DEADLINE)
    assert nginx.workers() == workers
    assert took <= vh.timeout(DEADLINE)
