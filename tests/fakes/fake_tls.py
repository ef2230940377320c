"""fake_tls.py -- an emulator's certificate: the test CA's, or its own.

The vendors serve their APIs only over TLS, so the emulators (idp.py,
salesforce/, hubspot/) do too.  Given tests/integration/vantage_harness
.TestPKI (anything with ca_file, cert_file and key_file) an emulator uses
that CA's server certificate; otherwise it makes a CA of its own in a
directory, or (untrusted) a lone self-signed certificate no client trusts.
Standard library and python3-cryptography only.
"""

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_ca(directory, untrusted=False, ca_cn="Vantage emulator test CA"):
    """Writes a CA and a server certificate for 127.0.0.1 and localhost
    (untrusted: a self-signed certificate only) into directory.
    Returns (ca_file, cert_file, key_file); ca_file is None untrusted."""
    now = datetime.datetime.now(datetime.timezone.utc)
    pem = serialization.Encoding.PEM
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    builder = (x509.CertificateBuilder()
               .subject_name(_name("localhost"))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(san, critical=False))
    ca_file = None
    if untrusted:
        cert = builder.issuer_name(_name("localhost")).sign(key,
                                                            hashes.SHA256())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name(ca_cn)
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        cert = (builder.issuer_name(ca_name)
                .add_extension(x509.BasicConstraints(ca=False,
                                                     path_length=None),
                               critical=True)
                .sign(ca_key, hashes.SHA256()))
        ca_file = _write(os.path.join(directory, "ca.pem"),
                         ca.public_bytes(pem))
    cert_file = _write(os.path.join(directory, "server.pem"),
                       cert.public_bytes(pem))
    key_file = _write(os.path.join(directory, "server.key"),
                      key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def server_context(directory, pki=None, untrusted=False,
                   ca_cn="Vantage emulator test CA"):
    """(ssl.SSLContext for the server side, the CA file a client should
    trust or None)"""
    if pki is not None and not untrusted:
        ca_file, cert, key = pki.ca_file, pki.cert_file, pki.key_file
    else:
        ca_file, cert, key = make_ca(directory, untrusted, ca_cn)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, ca_file
