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

Since schema 2 (segments, docs/decisions/0004-blocklog.md, second amendment) a batch's addresses
are one column of fixed-width slots (``pack_address``: family byte 4 or 6, 16 address bytes, the
IPv4 address in the first 4 and the rest zero, port big endian) encrypted with ONE ChaCha20
keystream under the batch's fresh data key (nonce zero: the key is used once). Integrity comes from
the record's leaf digest in the log's chain, which covers the ciphertext. Handed out alone:

    b"HLB2" || crypto_box_seal(pk, data_key) (80 bytes) || record index in its batch (4 bytes, big
            endian) || the record's ADDR_W ciphertext bytes

``open_client`` opens HLB2, HLB1 and a plain ``crypto_box_seal`` (the older form, which tests and
the demo still produce with ``admin_api.blocklog.seal_client``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _jstr

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from .errors import BlocklogError

PREFIX = b"HLB1"
SEALED_KEY_LEN = 80          # 32-byte ephemeral public key + 32-byte data key + 16-byte MAC
NONCE_LEN = 12
MIN_BLOB = len(PREFIX) + SEALED_KEY_LEN + NONCE_LEN + 16
PREFIX2 = b"HLB2"
ADDR_W = 19                  # family byte, 16 address bytes, 2 port bytes
BLOB2_LEN = len(PREFIX2) + SEALED_KEY_LEN + 4 + ADDR_W
_V4_PAD = bytes(12)
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


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


def pack_address(ip: str, port: int) -> bytes:
    """The fixed-width slot of one client address (ADDR_W bytes). ValueError for what is not an
    IP address and port (a scoped IPv6 address keeps its address, not its interface)."""
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    try:
        if ":" in ip:
            return b"\x06" + socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0]) + port.to_bytes(2, "big")
        return b"\x04" + socket.inet_pton(socket.AF_INET, ip) + _V4_PAD + port.to_bytes(2, "big")
    except OSError:
        raise ValueError(f"not an IP address: {ip!r:.60}") from None


def unpack_address(slot: bytes) -> tuple[str, int]:
    """(ip, port) of a slot written by ``pack_address``; ValueError for anything else (a wrong key
    gives random bytes, which this refuses with probability 1 - 2**-97 for IPv4)."""
    if len(slot) != ADDR_W or slot[0] not in _FAMILY or (slot[0] == 4 and slot[5:17] != _V4_PAD):
        raise ValueError("not an address slot")
    fam = _FAMILY[slot[0]]
    return socket.inet_ntop(fam, slot[1:5] if fam == socket.AF_INET else slot[1:17]), int.from_bytes(slot[17:], "big")


def seal_column(public_key: bytes, plain: bytes, random: Callable[[int], bytes] = os.urandom) -> tuple[bytes, bytes]:
    """(sealed data key, ciphertext) of one batch's address column: a fresh data key, sealed once
    to the compliance key, one ChaCha20 keystream over the whole column. The key is not kept."""
    key = random(32)
    enc = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return SealedBox(PublicKey(public_key)).encrypt(key), enc.update(plain)


def blob2(sealed_key: bytes, index: int, ciphertext: bytes) -> bytes:
    """The self-contained sealed address of record ``index`` of a segment (its ADDR_W bytes)."""
    return PREFIX2 + sealed_key + index.to_bytes(4, "big") + ciphertext


def _open_blob2(private_key: PrivateKey, sealed: bytes) -> tuple[str, int]:
    start = len(PREFIX2)
    key = SealedBox(private_key).decrypt(sealed[start:start + SEALED_KEY_LEN])
    index = int.from_bytes(sealed[start + SEALED_KEY_LEN:start + SEALED_KEY_LEN + 4], "big")
    offset = index * ADDR_W                      # where this record's bytes are in the keystream
    skip = offset % 64
    counter = (offset // 64).to_bytes(4, "little")
    dec = Cipher(algorithms.ChaCha20(key, counter + bytes(12)), mode=None).decryptor()
    return unpack_address(dec.update(bytes(skip) + sealed[start + SEALED_KEY_LEN + 4:])[skip:])


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
        if sealed.startswith(PREFIX2) and len(sealed) == BLOB2_LEN:
            try:
                return _open_blob2(private_key, sealed)
            except (CryptoError, ValueError):
                pass   # a plain sealed box that happens to start with the prefix (1 in 2**32)
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
