"""The execution package: exactly the authorised fields, hashed and signed by the ISP key.

    body      canonical JSON (sorted keys, no whitespace, UTF-8) of the package dict
    sha256    SHA-256 of body, hex
    signature Ed25519 over body by the ISP's signing key, base64
    key_id    first 16 hex digits of SHA-256 of the raw public key

The requester verifies with the ISP's published public key; ``verify`` does the same here.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rpz.hashchain import canonical

from .errors import KeyMaterialError

FORMAT = "hotline-edge-disclosure/1"


@dataclass(frozen=True, slots=True)
class SignedPackage:
    body: str
    sha256: str
    signature: str
    key_id: str


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(package: dict[str, Any], private_key: Ed25519PrivateKey) -> SignedPackage:
    body = canonical(package)
    return SignedPackage(body.decode("utf-8"), hashlib.sha256(body).hexdigest(),
                         base64.b64encode(private_key.sign(body)).decode("ascii"), key_id(private_key.public_key()))


def verify(signed: SignedPackage, public_key: Ed25519PublicKey) -> bool:
    body = signed.body.encode("utf-8")
    if hashlib.sha256(body).hexdigest() != signed.sha256:
        return False
    try:
        public_key.verify(base64.b64decode(signed.signature), body)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_signing_key(path: str) -> Ed25519PrivateKey:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{path}: cannot read the package signing key (PEM, PKCS#8, Ed25519, "
                               f"unencrypted): {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"{path}: the package signing key must be Ed25519")
    return key


def pem_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
