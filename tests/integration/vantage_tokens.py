"""vantage_tokens.py -- test keys and tokens, minted independently of Vantage.

Tokens come from PyJWT; where PyJWT refuses to build an attack token (alg
none, HS256 keyed with a public key, wrong-length ES signatures, duplicate
members) they are assembled by hand with hmac and base64.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.x509.oid import NameOID

from vantage_harness import b64url, make_dir, write_file


HASHES = {"256": hashlib.sha256, "384": hashlib.sha384,
          "512": hashlib.sha512}
CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1,
          "ES512": ec.SECP521R1}
EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}
EC_CRV = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def now():
    return int(time.time())


def claims(**kw):
    """Default claims: sub alice, issued now, expiring in five minutes;
    a keyword set to None drops that claim."""
    c = {"sub": "alice", "iat": now(), "exp": now() + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)


def _uint(n, size=None):
    if size is None:
        size = (n.bit_length() + 7) // 8
    return b64url(n.to_bytes(size, "big"))


def jwk(key, kid=None, alg=None, use="sig"):
    """The public JWK of a private key object, or an oct JWK of bytes."""
    if isinstance(key, bytes):
        j = {"kty": "oct", "k": b64url(key)}
    elif isinstance(key, rsa.RSAPrivateKey):
        pn = key.public_key().public_numbers()
        j = {"kty": "RSA", "n": _uint(pn.n), "e": _uint(pn.e)}
    else:
        pn = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[key.curve.key_size]
        j = {"kty": "EC", "crv": crv, "x": _uint(pn.x, size),
             "y": _uint(pn.y, size)}
    if kid is not None:
        j["kid"] = kid
    if alg is not None:
        j["alg"] = alg
    if use is not None:
        j["use"] = use
    return j


def self_signed_cert(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    t = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - datetime.timedelta(hours=1))
            .not_valid_after(t + datetime.timedelta(days=2))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM))


class Keys:
    """Every key the JWT tests use, and their files in a 0755 directory.

    hs        raw HMAC secret (file hs.secret, with a trailing newline)
    hs_b64    32 random bytes (file hs_b64.secret, "base64:...")
    hs_other  another secret (hs_other.secret)
    rsa, rsa2 RSA-2048 (rsa.pem SPKI, rsa_cert.pem certificate,
              rsa_pkcs1.pem "BEGIN RSA PUBLIC KEY", rsa2.pem)
    ec[alg]   P-256/384/521 for ES256/384/512 (ec256.pem ...)
    oct_o1    the oct key of the JWKS
    jwks.json kids r1 (rsa), r2 (rsa2), e1/e2/e3 (EC), o1 (oct)
    jwk_rsa.json  rsa alone as one JWK, kid "jwk-r1"
    nokid.json    two oct keys without kid: hs_a, hs_b
    """

    def __init__(self, directory):
        self.dir = make_dir(directory)
        self.hs = secrets.token_urlsafe(36).encode()       # 48 characters
        self.hs_b64 = secrets.token_bytes(32)
        self.hs_other = secrets.token_urlsafe(36).encode()
        self.oct_o1 = secrets.token_bytes(32)
        self.hs_a = secrets.token_bytes(32)
        self.hs_b = secrets.token_bytes(32)
        self.rsa = rsa.generate_private_key(65537, 2048)
        self.rsa2 = rsa.generate_private_key(65537, 2048)
        self.ec = {alg: ec.generate_private_key(curve())
                   for alg, curve in CURVES.items()}
        self.files = {}
        f = self.put
        f("hs.secret", self.hs + b"\n")
        f("hs_b64.secret", b"base64:" + base64.b64encode(self.hs_b64))
        f("hs_other.secret", self.hs_other)
        f("rsa.pem", pem_public(self.rsa))
        f("rsa2.pem", pem_public(self.rsa2))
        f("rsa_cert.pem", self_signed_cert(self.rsa))
        f("rsa_pkcs1.pem", self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
        for alg, k in self.ec.items():
            f("ec%s.pem" % alg[2:], pem_public(k))
        f("jwk_rsa.json", json.dumps(jwk(self.rsa, kid="jwk-r1")))
        f("jwks.json", json.dumps({"keys": [
            jwk(self.rsa, kid="r1"), jwk(self.rsa2, kid="r2"),
            jwk(self.ec["ES256"], kid="e1"), jwk(self.ec["ES384"], kid="e2"),
            jwk(self.ec["ES512"], kid="e3"), jwk(self.oct_o1, kid="o1")]}))
        f("nokid.json", json.dumps({"keys": [
            jwk(self.hs_a, use=None), jwk(self.hs_b, use=None)]}))

    def put(self, name, data):
        self.files[name] = write_file(os.path.join(self.dir, name), data)
        return self.files[name]

    def path(self, name):
        return self.files[name]


def mint(key, alg, payload=None, headers=None):
    """A token signed by PyJWT; key: bytes (HS) or a private key object."""
    if payload is None:
        payload = claims()
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def assemble(header, payload, sig=b""):
    """header/payload: dict (serialized compactly), str or bytes (as is)."""
    def part(x):
        if isinstance(x, dict):
            x = json.dumps(x, separators=(",", ":"))
        return b64url(x)
    return "%s.%s.%s" % (part(header), part(payload), b64url(sig))


def hs_sign(secret, header, payload, alg="HS256"):
    """An HMAC token built by hand (PyJWT refuses some of these keys)."""
    unsigned = assemble(header, payload).rsplit(".", 1)[0]
    sig = hmac.new(secret, unsigned.encode(), HASHES[alg[2:]]).digest()
    return unsigned + "." + b64url(sig)


def es_sign(key, alg, payload, headers=None, der=False, length=None):
    """An ES token signed with cryptography: R || S, or DER when der, or
    R || S cut/extended to length bytes."""
    header = {"alg": alg, "typ": "JWT"}
    header.update(headers or {})
    unsigned = assemble(header, payload).rsplit(".", 1)[0]
    h = {"ES256": hashes.SHA256, "ES384": hashes.SHA384,
         "ES512": hashes.SHA512}[alg]()
    sig = key.sign(unsigned.encode(), ec.ECDSA(h))
    if not der:
        r, s = utils.decode_dss_signature(sig)
        n = EC_SIZE[alg]
        sig = r.to_bytes(n, "big") + s.to_bytes(n, "big")
        if length is not None:
            sig = (sig + b"\0" * length)[:length]
    return unsigned + "." + b64url(sig)


def hs_token_of_length(secret, length, payload=None):
    """A valid HS256 token exactly length characters long (a "pad" claim
    and the header's typ are varied until it fits)."""
    base = dict(payload or claims())
    for typ in (None, "JWT", "at+jwt", "JWT2"):
        header = {"alg": "HS256"}
        if typ:
            header["typ"] = typ
        short = len(hs_sign(secret, header, dict(base, pad="")))
        for n in range(max(0, (length - short) * 3 // 4 - 8), length):
            p = dict(base, pad="x" * n)
            t = hs_sign(secret, header, p)
            if len(t) == length:
                return t
            if len(t) > length:
                break
    raise ValueError("no token of length %d" % length)
