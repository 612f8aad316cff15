"""Apply receipts: what this node applied, signed with its Ed25519 key, for the hotline.

    body = canonical JSON {"type": "hotline-edge-receipt/1", "node": ..., "feed": ..., "serial": ...,
                           "zone_serial": ..., "digest": "sha256:...", "applied_at": "...Z",
                           "counts": {"entries": .., "in_force": .., "added": .., "removed": .., "rejected": ..}}
    signature = base64(Ed25519(node key, body)),  key_id = first 16 hex of SHA-256(raw public key)

The node key lives at ``<state_dir>/node.key`` (PKCS#8 PEM, mode 0600), created on first use; the
public half is ``node.pub`` (PEM) and is what the hotline registers. Receipts are stored in the state
database; ``push`` POSTs them to the feed's ``receipt_url`` and the hotline may also fetch them
(admin API ``/hotline/receipts``, or ``hotline-edge feed receipts``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rpz import hashchain

from .store import atomic_write

RECEIPT_TYPE = "hotline-edge-receipt/1"


@dataclass(frozen=True, slots=True)
class NodeKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body)).decode("ascii")


def load_or_create_node_key(state_dir: str) -> NodeKey:
    path = os.path.join(state_dir, "node.key")
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except FileNotFoundError:
        os.makedirs(state_dir, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        atomic_write(path, pem, mode=0o600)
        nk = NodeKey(key)
        atomic_write(os.path.join(state_dir, "node.pub"), nk.public_pem())
        return nk
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return NodeKey(key)


def make_receipt(node: str, feed: str, serial: int, zone_serial: int, *, digest: str, applied_at: str,
                 counts: Mapping[str, int]) -> bytes:
    return hashchain.canonical({"type": RECEIPT_TYPE, "node": node, "feed": feed, "serial": serial,
                                "zone_serial": zone_serial, "digest": digest, "applied_at": applied_at,
                                "counts": dict(counts)})


def verify_receipt(body: bytes, signature: str, public_key: bytes) -> dict[str, Any] | None:
    """The receipt when the signature holds for ``public_key`` (raw 32 bytes or PEM), else None."""
    try:
        if public_key.startswith(b"-----"):
            pub = serialization.load_pem_public_key(public_key)
        else:
            pub = Ed25519PublicKey.from_public_bytes(public_key)
        if not isinstance(pub, Ed25519PublicKey):
            return None
        pub.verify(base64.b64decode(signature), body)
    except (InvalidSignature, ValueError):
        return None
    doc = json.loads(body)
    return doc if isinstance(doc, dict) else None


def push(url: str, body: bytes, signature: str, key_id: str, public_pem: bytes, *, timeout: float = 10.0) -> str | None:
    """POST one receipt; None on success, else the error text (kept, retried next cycle)."""
    payload = json.dumps({"receipt": json.loads(body), "body": body.decode("utf-8"), "signature": signature,
                          "key_id": key_id, "public_key": public_pem.decode("ascii")}).encode()
    req = urllib.request.Request(url, data=payload, method="POST",  # noqa: S310 (http(s) only, checked in config)
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            if 200 <= resp.status < 300:
                return None
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.close()
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
