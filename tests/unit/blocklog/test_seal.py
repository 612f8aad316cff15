"""Sealed client addresses: the node writes them but cannot read them; the compliance key opens them."""

from __future__ import annotations

import json

import pytest
from nacl.public import PrivateKey, SealedBox

from admin_api.blocklog import seal_client
from resolver.blocklog_seal import PREFIX, BatchSealer, blob, open_client
from resolver.errors import BlocklogError

KEY = PrivateKey.generate()


def sealed(ip: str = "198.51.100.7", port: int = 53124, seq: int = 9) -> bytes:
    s = BatchSealer(bytes(KEY.public_key))
    return blob(s.sealed_key, seq, s.seal(seq, ip, port))


@pytest.mark.parametrize(("ip", "port"), [("198.51.100.7", 53124), ("2001:db8::1", 1), ("203.0.113.250", 65535)])
def test_round_trip_with_the_compliance_key(ip: str, port: int) -> None:
    assert open_client(KEY, sealed(ip, port)) == (ip, port)


def test_unreadable_without_the_key() -> None:
    b = sealed("198.51.100.7", 53124)
    assert b.startswith(PREFIX)
    assert b"198.51.100.7" not in b and b"53124" not in b and b"ip" not in b[4:]
    with pytest.raises(BlocklogError, match="does not open with this key"):
        open_client(PrivateKey.generate(), b)


def test_a_changed_byte_does_not_open() -> None:
    b = bytearray(sealed())
    b[-3] ^= 1
    with pytest.raises(BlocklogError, match="does not open"):
        open_client(KEY, bytes(b))


def test_every_batch_has_its_own_data_key() -> None:
    a, b = BatchSealer(bytes(KEY.public_key)), BatchSealer(bytes(KEY.public_key))
    assert a.sealed_key != b.sealed_key
    assert a.seal(1, "198.51.100.7", 1) != b.seal(1, "198.51.100.7", 1)
    assert a.seal(1, "198.51.100.7", 1) != a.seal(2, "198.51.100.7", 1)   # the nonce is the chain position


def test_the_plaintext_is_the_disclosure_contract() -> None:
    s = BatchSealer(bytes(KEY.public_key), random=lambda n: b"\x07" * n)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    assert SealedBox(KEY).decrypt(s.sealed_key) == b"\x07" * 32
    plain = ChaCha20Poly1305(b"\x07" * 32).decrypt((3).to_bytes(12, "big"), s.seal(3, "192.0.2.1", 53), None)
    assert json.loads(plain) == {"ip": "192.0.2.1", "port": 53}


def test_a_plain_sealed_box_opens_too() -> None:
    assert open_client(KEY, seal_client(KEY.public_key, "203.0.113.9", 4444)) == ("203.0.113.9", 4444)


def test_no_address_recorded() -> None:
    with pytest.raises(BlocklogError, match="no client address was recorded"):
        open_client(KEY, b"")
