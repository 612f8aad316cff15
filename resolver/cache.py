"""A cache of upstream truth (never of policy decisions).

What is stored is the upstream's answer as it came, minus its OPT record: RCODE, flags, the
sections after the question, where each TTL sits, and the CNAME chain for the policy's response
stage. Policy is applied when an answer is served, so a policy swap changes the very next answer
and a CLIENT-IP decision can never leak to another client through the cache.

TTLs (RFC 1035 section 3.2.1, RFC 2308 section 5):

| reply                                  | kept for                                               |
|----------------------------------------|--------------------------------------------------------|
| NOERROR with records                   | the smallest TTL of its records, within [min, max]     |
| NXDOMAIN, or NOERROR without an answer | min(SOA TTL, SOA MINIMUM), <= negative_max_ttl (no SOA: not kept) |
| SERVFAIL, REFUSED, anything else, TC=1 | not cached                                             |

Served answers show TTLs aged by the seconds spent in the cache (recomputed at most once a second).
"""

from __future__ import annotations

from typing import Any

from .wire import T_RRSIG, T_SOA, TC, Chain, Reply, ReplyRR, age_body, walk_chain

Key = tuple[bytes, int, int, bool, bool]


class CacheEntry:
    """One upstream answer, ready to be relayed or used as the response stage of the policy."""

    __slots__ = (
        "aged",
        "aged_at",
        "an",
        "answer",
        "ar",
        "body",
        "chain",
        "expires",
        "flags",
        "ns",
        "post",
        "post_gen",
        "rcode",
        "signed",
        "stored",
        "ttl",
        "ttl_offsets",
    )

    def __init__(self, reply: Reply, data: bytes, qname_lower: bytes, now: int, ttl: int) -> None:
        self.rcode = reply.rcode
        self.flags = reply.flags
        self.body = data[reply.body_start : reply.body_end]
        self.an = len(reply.answer)
        self.ns = len(reply.authority)
        self.ar = len(reply.additional)
        base = reply.body_start
        self.ttl_offsets = tuple((rr.ttl_off - base, rr.ttl) for rr in (*reply.answer, *reply.authority,
                                                                          *reply.additional))
        self.answer: tuple[ReplyRR, ...] = reply.answer
        self.chain: Chain = walk_chain(qname_lower, reply.answer)
        self.signed = any(rr.rtype == T_RRSIG for rr in (*reply.answer, *reply.authority))
        self.stored = now
        self.ttl = ttl
        self.expires = now + ttl
        self.aged_at = now
        self.aged = self.body
        self.post_gen = -1
        self.post: Any = None

    def body_at(self, now: int) -> bytes:
        """The body with TTLs aged to ``now`` (memoized per second)."""
        if now != self.aged_at:
            self.aged = age_body(self.body, self.ttl_offsets, now - self.stored)
            self.aged_at = now
        return self.aged

    def elapsed(self, now: int) -> int:
        return max(0, now - self.stored)


def cache_ttl(reply: Reply, min_ttl: int, max_ttl: int, negative_max_ttl: int) -> int:
    """How long a reply may be kept (the table in the module docstring); 0 means not at all."""
    if reply.flags & TC:
        return 0
    rcode = reply.rcode
    if rcode == 0 and reply.answer:
        ttl = min(rr.ttl for rr in (*reply.answer, *reply.authority, *reply.additional))
        return max(min_ttl, min(ttl, max_ttl))
    if rcode in (0, 3):
        for rr in reply.authority:
            if rr.rtype == T_SOA and len(rr.rdata) >= 20:
                minimum = int.from_bytes(rr.rdata[-4:], "big")
                return min(rr.ttl, minimum, negative_max_ttl)
        return 0
    return 0


class AnswerCache:
    """Bounded map key -> CacheEntry; the oldest insertions go first when full."""

    __slots__ = ("entries", "hits", "max_entries", "max_ttl", "min_ttl", "misses", "negative_max_ttl")

    def __init__(self, max_entries: int, min_ttl: int = 0, max_ttl: int = 86_400,
                 negative_max_ttl: int = 3_600) -> None:
        self.entries: dict[Key, CacheEntry] = {}
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_max_ttl = negative_max_ttl
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: Key, now: int) -> CacheEntry | None:
        e = self.entries.get(key)
        if e is not None:
            if e.expires > now:
                self.hits += 1
                return e
            del self.entries[key]
        self.misses += 1
        return None

    def store(self, key: Key, reply: Reply, data: bytes, now: int) -> CacheEntry:
        """An entry for ``reply``; kept in the cache when its TTL allows."""
        ttl = cache_ttl(reply, self.min_ttl, self.max_ttl, self.negative_max_ttl)
        entry = CacheEntry(reply, data, key[0], now, ttl)
        if ttl > 0 and self.max_entries > 0:
            entries = self.entries
            if len(entries) >= self.max_entries:
                for old in list(entries)[: max(1, self.max_entries // 16)]:
                    del entries[old]
            entries[key] = entry
        return entry

    def clear(self) -> None:
        self.entries.clear()
