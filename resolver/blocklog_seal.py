"""Sealed client addresses of the blocked-lookup log: the ONE owner of the sealed format.

The node can write an address but never read it back; only the holder of the compliance X25519
private key can (docs/disclosure.md). Sealing every record with its own ``crypto_box_seal`` costs
two X25519 scalar multiplications, measured at 127 us per record here: 50,000 records/s would need
six cores. So each batch the writer commits gets a fresh random 32-byte data key, sealed once with
``crypto_box_seal`` to the compliance public key; each record's address is encrypted under that
key with ChaCha20-Poly1305 (about 2 us), the nonce being the record's chain position (unique per
key, since the key is new per batch). The data key exists only in the writer's memory while the
batch is built (docs/decisions/0004-blocklog.md).

A sealed address handed to the disclosure workflow is self-contained:

    b"HLB1" || crypto_box_seal(pk, data_key) (80 bytes) || nonce (12 bytes)
            || ChaCha20-Poly1305(data_key, nonce, plaintext)

plaintext = UTF-8 JSON ``{"ip": "<address>", "port": <int>}`` (the contract of docs/disclosure.md).
``open_client`` also opens a plain ``crypto_box_seal`` of that plaintext (the older form, which
tests and the demo still produce with ``admin_api.blocklog.seal_client``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _jstr

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from .errors import BlocklogError

PREFIX = b"HLB1"
SEALED_KEY_LEN = 80          # 32-byte ephemeral public key + 32-byte data key + 16-byte MAC
NONCE_LEN = 12
MIN_BLOB = len(PREFIX) + SEALED_KEY_LEN + NONCE_LEN + 16


class BatchSealer:
    """One data key for one batch: ``seal(seq, ip, port)`` gives the record's ciphertext;
    ``sealed_key`` is what the batch row stores."""

    __slots__ = ("aead", "sealed_key")

    def __init__(self, public_key: bytes, random: Callable[[int], bytes] = os.urandom) -> None:
        key = random(32)
        self.sealed_key = SealedBox(PublicKey(public_key)).encrypt(key)
        self.aead = ChaCha20Poly1305(key)

    def seal(self, seq: int, ip: str, port: int) -> bytes:
        """(The writer's loop does the same inline: BlocklogStore._write.)"""
        return self.aead.encrypt(nonce(seq), f'{{"ip": {_jstr(ip)}, "port": {port:d}}}'.encode(), None)


def nonce(seq: int) -> bytes:
    return seq.to_bytes(NONCE_LEN, "big")


def blob(sealed_key: bytes, seq: int, ciphertext: bytes) -> bytes:
    """The self-contained sealed address of record ``seq``."""
    return PREFIX + sealed_key + nonce(seq) + ciphertext


def open_client(private_key: PrivateKey, sealed: bytes) -> tuple[str, int]:
    """(ip, port) of a sealed address. BlocklogError when it does not open with this key."""
    if not sealed:
        raise BlocklogError("no client address was recorded for this record (the node had no "
                            "[blocklog] compliance_public_key when it was written)")
    try:
        if sealed.startswith(PREFIX) and len(sealed) >= MIN_BLOB:
            try:
                return _parse(_open_envelope(private_key, sealed))
            except (CryptoError, InvalidTag, ValueError):
                pass   # a plain sealed box that happens to start with the prefix (1 in 2**32)
        return _parse(SealedBox(private_key).decrypt(sealed))
    except (CryptoError, InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise BlocklogError(f"a sealed client address does not open with this key (wrong compliance "
                            f"key, or a damaged record): {exc.__class__.__name__}") from exc


def _open_envelope(private_key: PrivateKey, sealed: bytes) -> bytes:
    start = len(PREFIX)
    key = SealedBox(private_key).decrypt(sealed[start:start + SEALED_KEY_LEN])
    n = sealed[start + SEALED_KEY_LEN:start + SEALED_KEY_LEN + NONCE_LEN]
    return ChaCha20Poly1305(key).decrypt(n, sealed[start + SEALED_KEY_LEN + NONCE_LEN:], None)


def _parse(plain: bytes) -> tuple[str, int]:
    doc = json.loads(plain)
    return str(doc["ip"]), int(doc["port"])
