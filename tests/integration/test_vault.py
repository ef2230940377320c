"""test_vault.py -- the credential vault, for real.

build/vantagectl against a real redis-server: put, get, list, delete and
rotate-master with exact outputs and exit codes.  The record format of
docs/VAULT.md is checked from outside with Python's own primitives (hmac
for the key id, cryptography's AESGCM for the record), both ways: what
vantagectl seals opens in Python, what Python seals opens in vantagectl.
No secret may appear in clear in Redis (every key dumped, the append-only
file read, every command seen by MONITOR), in vantagectl's output other
than get's stdout, or in the worker's log.
"""

import hashlib
import hmac
import os
import pty
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import vantage_harness as vh


CTL = os.environ.get("VANTAGECTL", os.path.join(vh.REPO, "build",
                                                "vantagectl"))
HASH = b"{vv}:vault"

K1 = bytes(range(32))                       # written raw
K2 = bytes(range(100, 132))                 # written as hex
K3 = bytes(range(200, 232))                 # written as base64

AUTH_FAILED = ("record does not authenticate: it was altered, or sealed "
               "for another name")


def key_id(k):
    return hmac.new(k, b"vantage vault key id", hashlib.sha256) \
        .digest()[:8]


def kid(k):
    return key_id(k).hex()


def py_seal(k, name, value, nonce=None):
    """A record as docs/VAULT.md describes it, sealed by Python."""
    nonce = nonce or os.urandom(12)
    head = b"\x01" + key_id(k)
    return head + nonce + AESGCM(k).encrypt(nonce, value,
                                            head + name.encode())


def py_open(k, name, rec):
    """Opens a record by the documented format alone."""
    assert rec[0] == 1, "version"
    assert rec[1:9] == key_id(k), "key id"
    return AESGCM(k).decrypt(rec[9:21], rec[21:], rec[:9] + name.encode())


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def ctl_bin():
    if not (os.path.exists(CTL) and os.access(CTL, os.X_OK)):
        pytest.skip("vantagectl not built: %s (run make ctl)" % CTL)
    return CTL


@pytest.fixture
def keys(base_dir):
    """{name: path} of key files, mode 0600: k1 raw, k2 hex, k3 base64."""
    import base64
    d = vh.make_dir(tempfile.mkdtemp(prefix="vault-keys-", dir=base_dir))
    files = {}
    for name, data in (("k1", K1), ("k2", (K2.hex() + "\n").encode()),
                       ("k3", base64.b64encode(K3) + b"\n")):
        path = os.path.join(d, name)
        vh.write_file(path, data, mode=0o600)
        files[name] = path
    files["dir"] = d
    return files


@pytest.fixture
def rc(module_redis):
    """A clean database for each test (bytes)."""
    c = module_redis.client()
    c.flushall()
    return c


def _env(extra=None):
    env = dict(os.environ)
    for k in ("VANTAGE_REDIS", "VANTAGE_VAULT_KEY", "VANTAGE_VAULT_KEY_FILE"):
        env.pop(k, None)
    env.update(extra or {})
    return env


@pytest.fixture
def ctl(ctl_bin, module_redis):
    """ctl(*args, input=b"", env=None, redis=None, **popen) ->
    CompletedProcess with bytes stdout and str stderr."""

    def run(*args, input=b"", env=None, redis=None, **kw):
        cmd = [ctl_bin, "--redis", redis or module_redis.address] + list(args)
        if "stdin" not in kw:
            kw["input"] = input
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.run(cmd, env=_env(env), timeout=vh.timeout(20), **kw)
        p.err = p.stderr.decode()
        p.out = (p.stdout or b"").decode("utf-8", "replace")
        return p

    return run


def put(ctl, keys, name, value, key="k1", *extra):
    p = ctl("vault", "put", name, "--key-file", keys[key], *extra,
            input=value)
    assert p.returncode == 0, p.err
    return p


# --------------------------------------------------------------------------
# put, get, list, delete

def test_round_trip(ctl, keys, rc):
    p = ctl("vault", "put", "salesforce.client_secret", "--key-file",
            keys["k1"], input=b"3MVG9-client-secret-value\n")
    assert (p.returncode, p.out, p.err) == (
        0, 'stored "salesforce.client_secret": 25 bytes, key id %s\n'
        % kid(K1), "")

    put(ctl, keys, "docusign.private_key",
        b"-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY-----\n")

    p = ctl("vault", "get", "salesforce.client_secret", "--key-file",
            keys["k1"])
    assert (p.returncode, p.stdout, p.err) == (
        0, b"3MVG9-client-secret-value", "")

    p = ctl("vault", "list")
    assert (p.returncode, p.err) == (0, "")
    assert p.out == (
        "NAME                      KEY_ID            BYTES\n"
        "docusign.private_key      %s  62\n"
        "salesforce.client_secret  %s  25\n" % (kid(K1), kid(K1)))

    p = ctl("--json", "vault", "list")
    import json
    assert json.loads(p.out) == {"secrets": [
        {"name": "docusign.private_key", "key_id": kid(K1), "bytes": 62},
        {"name": "salesforce.client_secret", "key_id": kid(K1),
         "bytes": 25}]}

    p = ctl("vault", "delete", "salesforce.client_secret")
    assert (p.returncode, p.out, p.err) == (
        0, 'deleted "salesforce.client_secret"\n', "")

    p = ctl("vault", "delete", "salesforce.client_secret")
    assert (p.returncode, p.out, p.err) == (
        1, "", 'vantagectl: no secret "salesforce.client_secret" in the '
        'vault\n')

    p = ctl("vault", "get", "salesforce.client_secret", "--key-file",
            keys["k1"])
    assert (p.returncode, p.stdout, p.err) == (
        1, b"", 'vantagectl: no secret "salesforce.client_secret" in the '
        'vault\n')

    assert rc.hkeys(HASH) == [b"docusign.private_key"]


def test_put_replace_and_json(ctl, keys, rc):
    put(ctl, keys, "hubspot.token", b"pat-na1-old")

    p = ctl("vault", "put", "hubspot.token", "--key-file", keys["k1"],
            input=b"pat-na1-new")
    assert (p.returncode, p.out, p.err) == (
        1, "", 'vantagectl: secret "hubspot.token" is in the vault already: '
        'give --replace to overwrite it\n')
    assert py_open(K1, "hubspot.token", rc.hget(HASH, "hubspot.token")) \
        == b"pat-na1-old"

    p = ctl("--json", "vault", "put", "hubspot.token", "--replace",
            "--key-file", keys["k1"], input=b"pat-na1-new")
    import json
    assert (p.returncode, json.loads(p.out), p.err) == (
        0, {"name": "hubspot.token", "key_id": kid(K1), "bytes": 11,
            "replaced": True}, "")
    assert py_open(K1, "hubspot.token", rc.hget(HASH, "hubspot.token")) \
        == b"pat-na1-new"


def test_values_from_a_file_newlines_and_raw(ctl, keys, rc, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="vault-values-", dir=base_dir))
    binary = bytes(range(256)) + b"\n"
    path = os.path.join(d, "blob")
    vh.write_file(path, binary)

    # --raw keeps every byte, the trailing newline too
    p = ctl("vault", "put", "orion.p12", "--raw", "--from-file", path,
            "--key-file", keys["k1"])
    assert (p.returncode, p.out) == (
        0, 'stored "orion.p12": 257 bytes, key id %s\n' % kid(K1))
    assert ctl("vault", "get", "orion.p12", "--key-file",
               keys["k1"]).stdout == binary

    # without it one LF or CRLF is cut, no more
    vh.write_file(path, b"line one\r\n")
    put(ctl, keys, "crlf", b"", "k1", "--from-file", path)
    assert py_open(K1, "crlf", rc.hget(HASH, "crlf")) == b"line one"

    put(ctl, keys, "two", b"two newlines\n\n")
    assert py_open(K1, "two", rc.hget(HASH, "two")) == b"two newlines\n"

    p = ctl("vault", "put", "nothing", "--key-file", keys["k1"], input=b"\n")
    assert (p.returncode, p.err) == (
        2, "vantagectl: the value is empty: nothing stored\n")

    p = ctl("vault", "put", "huge", "--key-file", keys["k1"],
            input=b"x" * (64 * 1024 + 1))
    assert (p.returncode, p.err) == (
        2, "vantagectl: the value is larger than 64k: nothing stored\n")
    put(ctl, keys, "largest", b"x" * (64 * 1024))

    p = ctl("vault", "put", "x", "--from-file", os.path.join(d, "missing"),
            "--key-file", keys["k1"])
    assert (p.returncode, p.err) == (
        2, 'vantagectl: --from-file "%s": No such file or directory\n'
        % os.path.join(d, "missing"))

    assert sorted(rc.hkeys(HASH)) == [b"crlf", b"largest", b"orion.p12",
                                      b"two"]


def test_usage_errors(ctl, keys, rc):
    cases = [
        (("vault", "put", "a b", "--key-file", keys["k1"]),
         "not a secret name (1 to 128 printable ASCII characters without "
         "space, '\"' or '\\'): argument 1"),
        (("vault", "put", "x" * 129, "--key-file", keys["k1"]),
         "not a secret name (1 to 128 printable ASCII characters without "
         "space, '\"' or '\\'): argument 1"),
        (("vault", "get"), '"vault get" needs a secret name'),
        (("vault", "get", "a", "b"), 'unexpected argument to "vault get"'),
        (("vault", "list", "--key-file", keys["k1"]),
         '--key-file does not apply to "vault list"'),
        (("vault", "delete", "a", "--force"),
         '--force does not apply to "vault delete"'),
        (("vault", "get", "a", "--raw"),
         '--raw does not apply to "vault get"'),
        (("vault", "rotate-master", "--key-file", keys["k1"]),
         "vault rotate-master needs --new-key-file"),
        (("--json", "vault", "get", "a", "--key-file", keys["k1"]),
         "vault get writes the secret's bytes as they are: --json does not "
         "apply"),
        (("vault", "get", "a"),
         "no master key: give --key-file, or set VANTAGE_VAULT_KEY_FILE or "
         "VANTAGE_VAULT_KEY"),
        (("vault",), '"vault" needs a subcommand: see vantagectl --help'),
    ]
    for args, err in cases:
        p = ctl(*args)
        assert (p.returncode, p.stdout, p.err) == (
            2, b"", "vantagectl: " + err + "\n"), args
    assert rc.exists(HASH) == 0


def test_help_names_the_vault(ctl):
    p = ctl("--help")
    assert p.returncode == 0
    assert "vault put <name> [--from-file F] [--replace] [--raw]" in p.out
    assert "vault rotate-master --new-key-file F" in p.out


# --------------------------------------------------------------------------
# the format, from outside

def test_a_record_sealed_by_vantagectl_opens_in_python(ctl, keys, rc):
    value = b"refresh-token-5f0e1d2c3b4a"
    put(ctl, keys, "orion.refresh_token", value)
    rec = rc.hget(HASH, "orion.refresh_token")

    assert len(rec) == 1 + 8 + 12 + len(value) + 16
    assert rec[0] == 1
    assert rec[1:9] == key_id(K1)
    assert py_open(K1, "orion.refresh_token", rec) == value

    # the name and the header are associated data
    from cryptography.exceptions import InvalidTag
    with pytest.raises(InvalidTag):
        AESGCM(K1).decrypt(rec[9:21], rec[21:], rec[:9] + b"other.name")
    with pytest.raises(InvalidTag):
        AESGCM(K1).decrypt(rec[9:21], rec[21:], b"orion.refresh_token")

    # a fresh nonce at every seal: the same value twice, two records
    put(ctl, keys, "orion.refresh_token", value, "k1", "--replace")
    again = rc.hget(HASH, "orion.refresh_token")
    assert again[9:21] != rec[9:21] and again[21:] != rec[21:]


def test_a_record_sealed_by_python_opens_in_vantagectl(ctl, keys, rc):
    value = b"\x00binary\xffsecret\n"
    rc.hset(HASH, "py.secret", py_seal(K2, "py.secret", value))

    # k2's file holds hex; the same key from the environment, as base64
    p = ctl("vault", "get", "py.secret", "--key-file", keys["k2"])
    assert (p.returncode, p.stdout, p.err) == (0, value, "")

    import base64
    p = ctl("vault", "get", "py.secret",
            env={"VANTAGE_VAULT_KEY": base64.b64encode(K2).decode()})
    assert (p.returncode, p.stdout, p.err) == (0, value, "")

    p = ctl("vault", "list")
    assert p.out.splitlines()[1].split() == ["py.secret", kid(K2), "15"]


def test_wrong_master_key(ctl, keys, rc):
    put(ctl, keys, "docusign.secret", b"ds-secret-value")

    p = ctl("vault", "get", "docusign.secret", "--key-file", keys["k2"])
    assert (p.returncode, p.stdout, p.err) == (
        1, b"", 'vantagectl: secret "docusign.secret": wrong master key '
        '(record was sealed under key id %s, this key is %s)\n'
        % (kid(K1), kid(K2)))

    # a put under another key would leave a record no worker can open
    p = ctl("vault", "put", "other", "--key-file", keys["k3"], input=b"v")
    assert (p.returncode, p.out, p.err) == (
        1, "", "vantagectl: wrong master key (the vault's secrets are "
        "sealed under key id %s, this key is %s): nothing stored\n"
        % (kid(K1), kid(K3)))
    assert rc.hkeys(HASH) == [b"docusign.secret"]


def test_tampered_records_are_refused(ctl, keys, rc):
    put(ctl, keys, "a", b"value-a")
    rec = bytearray(rc.hget(HASH, "a"))

    for pos in (9, 21, len(rec) - 1):       # nonce, ciphertext, tag
        bad = bytearray(rec)
        bad[pos] ^= 0x01
        rc.hset(HASH, "a", bytes(bad))
        p = ctl("vault", "get", "a", "--key-file", keys["k1"])
        assert (p.returncode, p.stdout, p.err) == (
            1, b"", 'vantagectl: secret "a": %s\n' % AUTH_FAILED), pos

    # a good record moved to another name
    rc.hset(HASH, "b", bytes(rec))
    p = ctl("vault", "get", "b", "--key-file", keys["k1"])
    assert (p.returncode, p.err) == (1, 'vantagectl: secret "b": %s\n'
                                     % AUTH_FAILED)

    rc.hset(HASH, "c", b"short")
    p = ctl("vault", "get", "c", "--key-file", keys["k1"])
    assert (p.returncode, p.err) == (
        1, 'vantagectl: secret "c": record of 5 bytes: too short for a '
        'vault record (37 bytes at least)\n')

    rc.hset(HASH, "d", b"\x02" + bytes(rec[1:]))
    p = ctl("vault", "get", "d", "--key-file", keys["k1"])
    assert (p.returncode, p.err) == (
        1, 'vantagectl: secret "d": record version 2 is not supported '
        '(version 1 expected)\n')

    # list shows what it can, names the bad records, and exits 1
    rc.hset(HASH, "a", bytes(rec))
    p = ctl("vault", "list")
    assert p.returncode == 1
    assert p.out == ("NAME  KEY_ID            BYTES\n"
                     "a     %s  7\n"
                     "b     %s  7\n"
                     "c     -                 -\n"
                     "d     -                 -\n" % (kid(K1), kid(K1)))
    assert p.err == (
        'vantagectl: secret "c": record of 5 bytes: too short for a vault '
        'record (37 bytes at least)\n'
        'vantagectl: secret "d": record version 2 is not supported (version '
        '1 expected)\n')


# --------------------------------------------------------------------------
# the master key

def test_key_sources(ctl, keys, rc):
    put(ctl, keys, "s", b"v-123")

    def get(*args, env=None):
        return ctl("vault", "get", "s", *args, env=env)

    assert get(env={"VANTAGE_VAULT_KEY_FILE": keys["k1"]}).stdout == b"v-123"
    assert get(env={"VANTAGE_VAULT_KEY": K1.hex()}).stdout == b"v-123"
    assert get(env={"VANTAGE_VAULT_KEY": K1.hex().upper() + "\n"}) \
        .stdout == b"v-123"

    # --key-file, then VANTAGE_VAULT_KEY_FILE, then VANTAGE_VAULT_KEY
    p = get("--key-file", keys["k1"],
            env={"VANTAGE_VAULT_KEY_FILE": keys["k2"],
                 "VANTAGE_VAULT_KEY": K3.hex()})
    assert p.stdout == b"v-123"
    p = get(env={"VANTAGE_VAULT_KEY_FILE": keys["k2"],
                 "VANTAGE_VAULT_KEY": K1.hex()})
    assert "this key is %s)" % kid(K2) in p.err

    p = get(env={"VANTAGE_VAULT_KEY": "not-a-key"})
    assert (p.returncode, p.err) == (
        1, "vantagectl: VANTAGE_VAULT_KEY: not a master key: 64 hex digits "
        "or the base64 of 32 bytes expected\n")

    path = keys["k1"]
    os.chmod(path, 0o640)
    p = get("--key-file", path)
    assert (p.returncode, p.stdout, p.err) == (
        1, b"", 'vantagectl: --key-file "%s": permissions 0640 are too '
        'open: a master key must be readable by its owner alone (chmod '
        '600)\n' % path)
    p = get(env={"VANTAGE_VAULT_KEY_FILE": path})
    assert p.err == (
        'vantagectl: VANTAGE_VAULT_KEY_FILE "%s": permissions 0640 are too '
        'open: a master key must be readable by its owner alone (chmod '
        '600)\n' % path)
    os.chmod(path, 0o400)
    assert get("--key-file", path).stdout == b"v-123"

    text = os.path.join(keys["dir"], "passphrase")
    vh.write_file(text, b"correct horse battery staple 123", mode=0o600)
    p = get("--key-file", text)
    assert (p.returncode, p.err) == (
        1, 'vantagectl: --key-file "%s": not a master key: 32 random '
        'bytes, 64 hex digits or the base64 of 32 bytes expected\n' % text)

    p = get("--key-file", os.path.join(keys["dir"], "none"))
    assert (p.returncode, p.err) == (
        1, 'vantagectl: --key-file "%s": cannot open: No such file or '
        'directory\n' % os.path.join(keys["dir"], "none"))


def test_get_refuses_a_terminal(ctl, keys, rc):
    put(ctl, keys, "s", b"tty-secret-9a8b")
    master, slave = pty.openpty()
    try:
        p = ctl("vault", "get", "s", "--key-file", keys["k1"], stdout=slave,
                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert p.returncode == 2
        assert p.err == (
            "vantagectl: vault get: stdout is a terminal, whose scrollback "
            "would keep the secret: redirect it (> file, | command), or give "
            "--force\n")
        assert _drain(master) == b""

        p = ctl("vault", "get", "s", "--force", "--key-file", keys["k1"],
                stdout=slave, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL)
        assert (p.returncode, p.err) == (0, "")
        assert _drain(master) == b"tty-secret-9a8b"
    finally:
        os.close(master)
        os.close(slave)


def _drain(fd, wait=0.2):
    out = b""
    while select.select([fd], [], [], vh.timeout(wait))[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_put_asks_a_terminal_without_echo(ctl_bin, module_redis, keys, rc):
    """stdin a terminal: the prompt on stderr, the typed value not echoed
    back, the line stored without its newline."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [ctl_bin, "--redis", module_redis.address, "vault", "put",
             "typed.secret", "--key-file", keys["k1"]],
            stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=_env(),
            start_new_session=True)
        seen = b""
        deadline = time.monotonic() + vh.timeout(10)
        while b"end with Enter): " not in seen:
            assert time.monotonic() < deadline, seen
            seen += _drain(master, 0.05)
        os.write(master, b"typed-9f8e7d\n")
        out, _ = proc.communicate(timeout=vh.timeout(10))
        seen += _drain(master)
    finally:
        os.close(master)
        os.close(slave)

    assert proc.returncode == 0
    assert out == ('stored "typed.secret": 12 bytes, key id %s\n'
                   % kid(K1)).encode()
    assert seen.replace(b"\r", b"") == (
        b'vantagectl: value of "typed.secret" (not shown; end with Enter): '
        b'\n')
    assert py_open(K1, "typed.secret", rc.hget(HASH, "typed.secret")) \
        == b"typed-9f8e7d"


def test_redis_password_file(ctl, keys, redis_factory, base_dir):
    r = redis_factory(password="pw-vault-7c6b")
    pw = os.path.join(base_dir, "vault-redis-pw")
    vh.write_file(pw, "pw-vault-7c6b\n", mode=0o600)

    p = ctl("--password-file", pw, "vault", "put", "s", "--key-file",
            keys["k1"], input=b"behind-a-password", redis=r.address)
    assert (p.returncode, p.err) == (0, "")
    p = ctl("--password-file", pw, "vault", "get", "s", "--key-file",
            keys["k1"], redis=r.address)
    assert (p.returncode, p.stdout) == (0, b"behind-a-password")

    p = ctl("vault", "get", "s", "--key-file", keys["k1"], redis=r.address)
    assert p.returncode == 1
    assert p.err.startswith("vantagectl: redis: NOAUTH")


# --------------------------------------------------------------------------
# rotate-master

def test_rotate_master(ctl, keys, rc):
    values = {"a.token": b"value-a", "b.secret": b"value-bb",
              "c.key": b"-----BEGIN EC PRIVATE KEY-----\nxyz\n"}
    for name, value in values.items():
        put(ctl, keys, name, value, "k1", "--raw")

    p = ctl("vault", "rotate-master", "--key-file", keys["k1"],
            "--new-key-file", keys["k2"])
    assert (p.returncode, p.out, p.err) == (
        0, "re-sealed 3 secrets under key id %s (was %s)\n"
        % (kid(K2), kid(K1)), "")

    for name, value in values.items():
        rec = rc.hget(HASH, name)
        assert py_open(K2, name, rec) == value
        p = ctl("vault", "get", name, "--key-file", keys["k2"])
        assert (p.returncode, p.stdout) == (0, value)
        p = ctl("vault", "get", name, "--key-file", keys["k1"])
        assert (p.returncode, p.stdout, p.err) == (
            1, b"", 'vantagectl: secret "%s": wrong master key (record was '
            'sealed under key id %s, this key is %s)\n'
            % (name, kid(K2), kid(K1)))

    assert [l.split()[1] for l in ctl("vault", "list").out.splitlines()[1:]] \
        == [kid(K2)] * 3

    # again, from the environment, to a base64 key, as JSON
    import json
    p = ctl("--json", "vault", "rotate-master", "--new-key-file", keys["k3"],
            env={"VANTAGE_VAULT_KEY": K2.hex()})
    assert (p.returncode, json.loads(p.out), p.err) == (
        0, {"resealed": 3, "already": 0, "key_id": kid(K3),
            "old_key_id": kid(K2)}, "")
    for name, value in values.items():
        assert py_open(K3, name, rc.hget(HASH, name)) == value


def test_rotate_master_changes_nothing_when_a_record_fails(ctl, keys, rc):
    for name in ("a", "b", "c"):
        put(ctl, keys, name, b"value-" + name.encode())
    rec = bytearray(rc.hget(HASH, "b"))
    rec[-1] ^= 0x01
    rc.hset(HASH, "b", bytes(rec))
    # and one under a third key
    rc.hset(HASH, "d", py_seal(K3, "d", b"value-d"))
    before = rc.hgetall(HASH)

    p = ctl("vault", "rotate-master", "--key-file", keys["k1"],
            "--new-key-file", keys["k2"])
    assert (p.returncode, p.out) == (1, "")
    assert p.err == (
        'vantagectl: rotate-master: secret "b": %s\n'
        'vantagectl: rotate-master: secret "d": wrong master key (record was '
        'sealed under key id %s, this key is %s)\n'
        'vantagectl: rotate-master: 2 of 4 secrets cannot be re-sealed: '
        'nothing was changed\n' % (AUTH_FAILED, kid(K3), kid(K1)))
    assert rc.hgetall(HASH) == before

    # repaired, it goes through
    rc.hset(HASH, "b", py_seal(K1, "b", b"value-b"))
    rc.hdel(HASH, "d")
    p = ctl("vault", "rotate-master", "--key-file", keys["k1"],
            "--new-key-file", keys["k2"])
    assert (p.returncode, p.err) == (0, "")
    for name in ("a", "b", "c"):
        assert py_open(K2, name, rc.hget(HASH, name)) == \
            b"value-" + name.encode()


def test_rotate_master_converges_and_refuses_the_same_key(ctl, keys, rc):
    put(ctl, keys, "a", b"value-a")
    put(ctl, keys, "b", b"value-b")
    rc.hset(HASH, "c", py_seal(K2, "c", b"value-c"))   # under the new key
    c_before = rc.hget(HASH, "c")

    p = ctl("vault", "rotate-master", "--key-file", keys["k1"],
            "--new-key-file", keys["k2"])
    assert (p.returncode, p.out, p.err) == (
        0, "re-sealed 2 secrets under key id %s (was %s); 1 under it "
        "already\n" % (kid(K2), kid(K1)), "")
    assert rc.hget(HASH, "c") == c_before
    assert py_open(K2, "a", rc.hget(HASH, "a")) == b"value-a"

    p = ctl("vault", "rotate-master", "--key-file", keys["k2"],
            "--new-key-file", keys["k2"])
    assert (p.returncode, p.out, p.err) == (
        1, "", "vantagectl: --new-key-file holds the key in use (key id "
        "%s): nothing to re-seal\n" % kid(K2))

    rc.delete(HASH)
    p = ctl("vault", "rotate-master", "--key-file", keys["k2"],
            "--new-key-file", keys["k1"])
    assert (p.returncode, p.out, p.err) == (
        0, "re-sealed 0 secrets under key id %s (was %s)\n"
        % (kid(K1), kid(K2)), "")
    assert rc.exists(HASH) == 0

    os.chmod(keys["k3"], 0o604)
    p = ctl("vault", "rotate-master", "--key-file", keys["k2"],
            "--new-key-file", keys["k3"])
    assert (p.returncode, p.err) == (
        1, 'vantagectl: --new-key-file "%s": permissions 0604 are too open: '
        'a master key must be readable by its owner alone (chmod 600)\n'
        % keys["k3"])


# --------------------------------------------------------------------------
# no secret in clear

class Monitor:
    """Every command Redis runs while it is open, as MONITOR prints them
    (binary arguments escaped as \\xNN, so a value sent in clear shows)."""

    def __init__(self, redis_server):
        self.sock = socket.create_connection(("127.0.0.1",
                                              redis_server.port))
        self.sock.sendall(b"MONITOR\r\n")
        self.data = b""
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        vh.wait_for(lambda: b"+OK" in self.data, 5, what="MONITOR")

    def _read(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.data += chunk

    def close(self):
        time.sleep(vh.timeout(0.2))
        self.stop = True
        self.thread.join()
        self.sock.close()
        return self.data


def test_no_secret_in_clear_anywhere(ctl_bin, keys, redis):
    """Redis with its append-only file: after put, get, list, rotate and
    delete, no key's DUMP, no file in Redis's directory and no command
    MONITOR saw holds a secret; vantagectl never printed one but for
    get's stdout."""
    c = redis.client()
    secrets = {"salesforce.client_secret": b"SF-SECRET-1b2c3d4e5f60718293",
               "hubspot.token": b"HS-TOKEN-a9b8c7d6e5f4a3b2c1d0",
               "docusign.key": b"DS-KEY-0f1e2d3c4b5a69788796a5b4"}

    def run(*args, input=b"", env=None):
        p = subprocess.run([ctl_bin, "--redis", redis.address] + list(args),
                           input=input, capture_output=True, env=_env(env),
                           timeout=vh.timeout(20))
        return p

    mon = Monitor(redis)
    printed = []
    for name, value in secrets.items():
        p = run("vault", "put", name, "--key-file", keys["k1"], input=value)
        assert p.returncode == 0, p.stderr
        printed += [p.stdout, p.stderr]
        p = run("vault", "get", name, "--key-file", keys["k1"])
        assert p.stdout == value
        printed.append(p.stderr)
    for args in (("vault", "list"), ("--json", "vault", "list"),
                 ("vault", "rotate-master", "--key-file", keys["k1"],
                  "--new-key-file", keys["k2"]),
                 ("vault", "get", "hubspot.token", "--key-file", keys["k1"]),
                 ("vault", "put", "hubspot.token", "--key-file", keys["k2"]),
                 ("vault", "delete", "docusign.key")):
        p = run(*args, input=secrets["hubspot.token"])
        printed += [p.stdout, p.stderr]
    seen = mon.close()

    assert b"HSET" in seen and b"HGETALL" in seen
    for name, value in secrets.items():
        assert value not in seen, name
        assert value[:12] not in seen, name
        for out in printed:
            assert value not in out, (name, out)

    dumped = b""
    for key in c.scan_iter(count=100):
        dumped += key + b"\0" + (c.dump(key) or b"")
        if c.type(key) == b"hash":
            for f, v in c.hgetall(key).items():
                dumped += f + b"\0" + v
    assert c.hkeys(HASH) and sorted(c.hkeys(HASH)) == [
        b"hubspot.token", b"salesforce.client_secret"]
    for value in secrets.values():
        assert value not in dumped

    c.execute_command("BGREWRITEAOF")
    time.sleep(vh.timeout(0.5))
    ondisk = b""
    for root, _, files in os.walk(redis.dir):
        for f in files:
            path = os.path.join(root, f)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    ondisk += fh.read()
    assert b"{vv}:vault" in ondisk
    for value in secrets.values():
        assert value not in ondisk


# --------------------------------------------------------------------------
# the worker: [vault] key_file and require

WORKER_SECRETS = {"salesforce.client_secret": b"WK-SF-6d5c4b3a29180716",
                  "docusign.key": b"WK-DS-f0e1d2c3b4a59687"}


def worker_conf(key_file, require=None):
    text = ("[worker]\n"
            "listen = {listen}\n"
            "redis = {redis}\n"
            "[vault]\n"
            "key_file = %s\n" % key_file)
    if require:
        text += "require = %s\n" % require
    return text


def logged(w, msg):
    return [{k: v for k, v in o.items() if k != "ts"}
            for o in w.log_lines() if o.get("msg") == msg]


@pytest.fixture
def vault_worker_factory(worker_factory):
    """worker_factory, with every secret of these tests forbidden in the
    workers' logs (checked at teardown)."""
    worker_factory.secrets = tuple(v.decode() for v in
                                   WORKER_SECRETS.values())
    return worker_factory


def test_worker_opens_the_secrets_it_requires(ctl, keys, worker_redis,
                                              vault_worker_factory):
    for name, value in WORKER_SECRETS.items():
        p = ctl("vault", "put", name, "--key-file", keys["k1"], input=value,
                redis=worker_redis.address)
        assert p.returncode == 0, p.err

    w = vault_worker_factory(config=worker_conf(
        keys["k1"], "salesforce.client_secret docusign.key"))

    assert logged(w, "vault key loaded") == [
        {"level": "info", "msg": "vault key loaded", "file": keys["k1"],
         "key_id": kid(K1)}]
    assert logged(w, "vault secrets open") == [
        {"level": "info", "msg": "vault secrets open", "count": "2",
         "key_id": kid(K1)}]
    for value in WORKER_SECRETS.values():
        assert value.decode() not in w.log_text()


def test_worker_refuses_to_start_when_a_secret_does_not_open(
        ctl, keys, worker_redis, vault_worker_factory):
    c = worker_redis.client()
    name, value = "salesforce.client_secret", WORKER_SECRETS[
        "salesforce.client_secret"]
    c.hset(HASH, name, py_seal(K1, name, value))
    rec = bytearray(py_seal(K2, "docusign.key",
                            WORKER_SECRETS["docusign.key"]))
    rec[-3] ^= 0x10
    c.hset(HASH, "docusign.key", bytes(rec))

    # k2: the first is under k1, the second altered, the third missing
    w = vault_worker_factory(config=worker_conf(
        keys["k2"], "salesforce.client_secret docusign.key hubspot.token"),
        start=False)
    w.spawn()
    assert w.wait(10) == 1, w.log_tail()

    assert logged(w, "refusing to start: a required vault secret does not "
                  "open") == [
        {"level": "error", "msg": "refusing to start: a required vault "
         "secret does not open", "secret": "salesforce.client_secret",
         "reason": "wrong master key (record was sealed under key id %s, "
         "this key is %s)" % (kid(K1), kid(K2))},
        {"level": "error", "msg": "refusing to start: a required vault "
         "secret does not open", "secret": "docusign.key",
         "reason": AUTH_FAILED}]
    assert logged(w, "refusing to start: a required vault secret is "
                  "missing") == [
        {"level": "error", "msg": "refusing to start: a required vault "
         "secret is missing", "secret": "hubspot.token"}]
    assert logged(w, "vault secrets open") == []
    assert not os.path.exists(w.socket_path)


def test_worker_check_validates_the_key_file(worker_bin, keys, base_dir):
    d = vh.make_dir(tempfile.mkdtemp(prefix="vault-check-", dir=base_dir))
    conf = os.path.join(d, "worker.conf")

    def check(text):
        vh.write_file(conf, text)
        return subprocess.run([worker_bin, "--check", conf],
                              capture_output=True, text=True,
                              stdin=subprocess.DEVNULL,
                              timeout=vh.timeout(10))

    body = "[worker]\nlisten = unix:/run/w.sock\nredis = 127.0.0.1:1\n"

    # --check reads the key, touches no Redis: require is not looked up
    p = check(body + "[vault]\nkey_file = %s\nrequire = a b\n" % keys["k2"])
    assert (p.returncode, p.stdout, p.stderr) == (
        0, "", "vantage-worker: %s: configuration is valid\n" % conf)

    os.chmod(keys["k2"], 0o644)
    p = check(body + "[vault]\nkey_file = %s\n" % keys["k2"])
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", 'vantage-worker: %s:5: key_file: "%s": permissions 0644 are '
        'too open: a master key must be readable by its owner alone (chmod '
        '600)\n' % (conf, keys["k2"]))

    # a key pasted in place of its file's path is not echoed
    p = check(body + "[vault]\nkey_file = %s\n" % K2.hex())
    assert (p.returncode, p.stderr) == (
        1, "vantage-worker: %s:5: key_file: expected the absolute path of "
        "a file holding the master key\n" % conf)

    p = check(body + "[vault]\nrequire = a\n")
    assert (p.returncode, p.stderr) == (
        1, "vantage-worker: %s:4: key_file: missing in [vault]\n" % conf)


def test_worker_reload_puts_a_new_key_in_force(ctl, keys, worker_redis,
                                               vault_worker_factory):
    """The end of a rotation: the file names the new key, SIGHUP."""
    w = vault_worker_factory(config=worker_conf(keys["k1"]))
    assert logged(w, "vault key loaded")[0]["key_id"] == kid(K1)

    w.write_config(worker_conf(keys["k3"]))
    w.send_signal(signal.SIGHUP)
    vh.wait_for(lambda: len(logged(w, "vault key loaded")) == 2, 5,
                what="the new key's log line")
    assert logged(w, "vault key loaded")[1] == {
        "level": "info", "msg": "vault key loaded", "file": keys["k3"],
        "key_id": kid(K3)}
    assert w.running()
