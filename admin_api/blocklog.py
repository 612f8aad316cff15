"""The opening side of the blocked-lookup log: who looked up a blocked order/name, for one case.

The resolver (issue 5) writes one record per policy hit and seals the client address to the
compliance public key at write time (X25519 sealed box, libsodium ``crypto_box_seal``): the node can
write it but not read it. This module defines what the disclosure workflow needs from that log, as
a Protocol, and opens sealed addresses with the compliance private key -- only for a case in state
APPROVED (the execution step), only for records inside the query's window and order/name, and only
for queries that are part of the frozen scope.

Sealed plaintext (the contract with the writer): UTF-8 JSON ``{"ip": "<address>", "port": <int>}``,
sealed as resolver.blocklog_seal describes (a per-batch data key sealed with ``crypto_box_seal`` to the
compliance key, the address under it; a plain ``crypto_box_seal`` of the plaintext opens too).
Keys on disk: base64 of the 32 raw key bytes, one line (private key mode 0600).

``SqliteBlocklog`` is the source over the node's log (resolver.blocklog, read-only).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from .clock import to_ms
from .errors import KeyMaterialError, SealedRecordError, StoreError
from .model import CaseRecord, Query, QueryKind
from .workflow import RELEASE_REQUIRES


@dataclass(frozen=True, slots=True)
class SealedHit:
    time_ms: int          # UTC epoch milliseconds
    qname: str
    qtype: str
    order_ref: str
    zone: str
    action: str
    node: str
    sealed_client: bytes  # crypto_box_seal(compliance public key, {"ip": ..., "port": ...})


@dataclass(frozen=True, slots=True)
class ClientAddress:
    ip: str
    port: int


class BlocklogSource(Protocol):
    """Records for an order_ref or qname inside [start, end]; client addresses stay sealed."""

    def sealed_hits(self, *, order_ref: str | None, qname: str | None,
                    start: datetime, end: datetime) -> Iterable[SealedHit]: ...


class InMemoryBlocklog:
    """A BlocklogSource over a list of records (tests, demo). The SQLite-backed one plugs in the same way."""

    def __init__(self, hits: Sequence[SealedHit] = ()) -> None:
        self.hits = list(hits)

    def add(self, hit: SealedHit) -> None:
        self.hits.append(hit)

    def sealed_hits(self, *, order_ref: str | None, qname: str | None,
                    start: datetime, end: datetime) -> Iterable[SealedHit]:
        lo, hi = to_ms(start), to_ms(end)
        for h in self.hits:
            if lo <= h.time_ms <= hi and ((order_ref is not None and h.order_ref == order_ref)
                                          or (qname is not None and h.qname == qname)):
                yield h


class SqliteBlocklog:
    """A BlocklogSource over the node's blocked-lookup log (``[blocklog] path``), read-only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def sealed_hits(self, *, order_ref: str | None, qname: str | None,
                    start: datetime, end: datetime) -> Iterable[SealedHit]:
        import dns.rdatatype

        from resolver.blocklog import BlocklogStore
        from resolver.errors import BlocklogError
        try:
            store = BlocklogStore(self.path, readonly=True)
        except BlocklogError as exc:
            if "no blocked-lookup log here" in str(exc):
                return []
            raise StoreError(str(exc)) from exc
        lo, hi = to_ms(start), to_ms(end)
        try:
            rows: dict[int, Any] = {}
            for kw in ({"order_ref": order_ref} if order_ref is not None else None,
                       {"qname": qname} if qname is not None else None):
                if kw is not None:
                    rows.update((r.seq, r) for r in store.records(start_ms=lo, end_ms=hi, **kw))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the blocked-lookup log: {exc}") from exc
        finally:
            store.close()
        return [SealedHit(r.time_ms, r.qname, dns.rdatatype.to_text(dns.rdatatype.RdataType.make(r.qtype)),
                          r.order_ref or "", r.zone, r.action, r.node, r.sealed_client or b"")
                for _seq, r in sorted(rows.items())]


def seal_client(public_key: PublicKey, ip: str, port: int) -> bytes:
    """What the writer does (kept here for tests and the demo; the resolver owns its own writer)."""
    return SealedBox(public_key).encrypt(json.dumps({"ip": ip, "port": port}).encode("utf-8"))


def hit_in_query(hit: SealedHit, query: Query) -> bool:
    if query.kind is not QueryKind.BLOCKED_LOOKUP:
        return False
    if not to_ms(query.start) <= hit.time_ms <= to_ms(query.end):
        return False
    by_order = query.order_ref is not None and hit.order_ref == query.order_ref
    by_name = query.qname is not None and hit.qname.rstrip(".").lower() == query.qname
    return by_order or by_name


class BlocklogOpener:
    """Holds the compliance private key; opens a sealed address only when the case allows it."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._key = private_key

    def open_for(self, case: CaseRecord, query: Query, hit: SealedHit) -> ClientAddress:
        if case.state is not RELEASE_REQUIRES:
            raise SealedRecordError(f"case {case.id} is {case.state.value}; addresses are opened only for an "
                                    f"{RELEASE_REQUIRES.value} case, while it is executed")
        if query not in case.scope.queries or case.frozen_digest != case.scope.digest():
            raise SealedRecordError(f"case {case.id}: the query is not part of the approved scope")
        if not hit_in_query(hit, query):
            raise SealedRecordError(f"case {case.id}: record at {hit.time_ms} for {hit.order_ref}/{hit.qname} "
                                    f"is outside the query's window or order/name")
        from resolver.blocklog_seal import open_client
        from resolver.errors import BlocklogError
        try:
            ip, port = open_client(self._key, hit.sealed_client)
            return ClientAddress(ip, port)
        except BlocklogError as exc:
            raise SealedRecordError(f"case {case.id}: {exc}") from exc


def load_private_key(path: str) -> PrivateKey:
    try:
        with open(path, encoding="ascii") as f:
            raw = base64.b64decode(f.read().strip(), validate=True)
        return PrivateKey(raw)
    except (OSError, ValueError, CryptoError) as exc:
        raise KeyMaterialError(f"{path}: not a compliance private key (base64 of 32 bytes): {exc}") from exc


def encode_key(key: PrivateKey | PublicKey) -> str:
    return base64.b64encode(bytes(key)).decode("ascii")
