"""Keys and certificates made for the tests (never a provider's): generated once per run."""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@functools.cache
def ec_key(number: int = 0) -> ec.EllipticCurvePrivateKey:
    """A P-256 key pair; ``number`` tells several apart (rotation tests)."""
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_ui_key(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's UI shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def pem_public_key(private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The public half in PEM (``-----BEGIN PUBLIC KEY-----``)."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@functools.cache
def rsa_key(number: int = 0) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key pair, as SNS signs with."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate_pem(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    common_name: str = "sns.amazonaws.com",
    ip: str | None = None,
) -> bytes:
    """A self-signed certificate (no CA) for ``private_key``'s public key, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    certificate = builder.sign(private_key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The private key in unencrypted PKCS#8 PEM (for the local TLS server)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
