"""The content digest of a transferred zone without ZONEMD, kept up to date per owner.

An IXFR changes a few owners of a large zone; hashing the whole zone text per version (36 MB at a
million rules) would cost more than the rest of the IXFR. This digest is a two-level hash tree over
the records of the seed text (the primary's zone as ``XfrIndex`` renders it: one record per line,
``<owner relative to the zone> <ttl> IN <type> <rdata>``, the apex as ``@``), independent of the
order of owners and of records, so that an IXFR recomputes only the buckets it touched:

    block(owner)  = the owner's lines (each ending in "\\n"), sorted bytewise, concatenated
    bucket(owner) = the first two bytes of SHA-256(owner field, UTF-8), big-endian: 0 .. 65535
    H_b           = SHA-256(the blocks of the owners in bucket b, sorted bytewise, concatenated)
    digest        = SHA-256("hotline-edge-xfr-digest/1 " || origin || "\\n" || H_0 || ... || H_65535)

written ``xfrtree-sha256:<hex>``. Lines never contain a newline and every line starts with its
owner, so a bucket's bytes determine its records: two seed texts have the same digest exactly when
they hold the same records (SHA-256 collisions aside). ``of_text`` computes it from a stored seed
text, which is how a kept or reconstructed version is verified (docs/feeds.md, "Digest").
"""

from __future__ import annotations

import hashlib

TAG = b"hotline-edge-xfr-digest/1 "
PREFIX = "xfrtree-sha256:"
BUCKETS = 65536
_EMPTY = hashlib.sha256(b"").digest()


def bucket_of(owner: str) -> int:
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:2], "big")


def block(lines: list[str]) -> bytes:
    """An owner's block: its lines (each ending in a newline) sorted and concatenated."""
    return "".join(sorted(lines)).encode()


class TreeDigest:
    """The digest of a set of owner blocks, updated owner by owner."""

    __slots__ = ("_dirty", "_hashes", "_members", "origin")

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip(".").lower() + "."
        self._members: dict[int, set[bytes]] = {}
        self._hashes = [_EMPTY] * BUCKETS
        self._dirty: set[int] = set()

    def clear(self) -> None:
        self._members.clear()
        self._hashes = [_EMPTY] * BUCKETS
        self._dirty.clear()

    def add(self, owner: str, blk: bytes) -> None:
        b = bucket_of(owner)
        m = self._members.get(b)
        if m is None:
            m = self._members[b] = set()
        m.add(blk)
        self._dirty.add(b)

    def discard(self, owner: str, blk: bytes) -> None:
        b = bucket_of(owner)
        m = self._members.get(b)
        if m is not None and blk in m:
            m.discard(blk)
            self._dirty.add(b)

    def hexdigest(self) -> str:
        for b in self._dirty:
            m = self._members.get(b)
            self._hashes[b] = hashlib.sha256(b"".join(sorted(m))).digest() if m else _EMPTY
        self._dirty.clear()
        h = hashlib.sha256(TAG + self.origin.encode() + b"\n")
        h.update(b"".join(self._hashes))
        return PREFIX + h.hexdigest()


def of_text(origin: str, text: bytes) -> str:
    """The digest of a seed text (directives such as ``$ORIGIN`` and empty lines are not records)."""
    blocks: dict[bytes, list[str]] = {}
    for line in text.split(b"\n"):
        if not line or line.startswith(b"$"):
            continue
        owner = line.split(b" ", 1)[0]
        lst = blocks.get(owner)
        if lst is None:
            lst = blocks[owner] = []
        lst.append(line.decode() + "\n")
    t = TreeDigest(origin)
    for owner, lines in blocks.items():
        t.add(owner.decode(), block(lines))
    return t.hexdigest()
