"""The pure core of a sync cycle: verified content in, a decision out. No I/O, no clock: ``now`` is
passed in.

    prepare_bundle(data, feed, ...)   bundle bytes (already TUF-verified) -> Prepared | FeedRefused
    screen_owner(owner, ...)          the guards for one owner of a transferred RPZ zone
    decide(prev, prepared, feed, approved) -> Decision: apply, hold, no change, or refuse

Decision table (issue 4, "Entries and guards"; research C.1 items 3, 8, 9, 11):

    | check                                              | outcome                          |
    |----------------------------------------------------|----------------------------------|
    | serial older than the last applied (RFC 1982)      | REFUSE FEED_ROLLBACK             |
    | serial equal, same digest                          | NO_CHANGE                        |
    | serial equal, different digest                     | REFUSE FEED_INCONSISTENT         |
    | more entries than max_entries                      | REFUSE FEED_TOO_LARGE            |
    | adds or removes > blast_radius of the previous     | HOLD until `feed approve`        |
    |   entries (previous >= blast_min_entries)          |   (APPLY once approved)          |
    | otherwise                                          | APPLY                            |
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import bundle as bfmt
from . import serial as serials
from .config import FeedConfig
from .errors import BundleFormatError, FeedRefused, RefusalCode


class Verdict(Enum):
    APPLY = "apply"
    HOLD = "hold"
    NO_CHANGE = "no_change"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A verified version, compiled and screened, ready for the decision."""

    serial: int
    digest: str                         # "sha256:<hex>" of the verified source
    source: bytes                       # what was verified (bundle JSON / full zone text)
    rpz_text: bytes                     # what the resolver will load
    zone_serial: int
    ids: frozenset[str]                 # accepted entry ids / rule owners, for diffs
    in_force: int
    rejected: tuple[dict[str, Any], ...]
    records: list[tuple[bytes, int, int, bytes]] | None = None   # what still has to be proven with rpz
    rules: Mapping[str, bfmt.Rule] | None = None                  # bundle feeds: owner -> rule
    delta: tuple[int, int, int] | None = None     # (added, removed, previous count) when known incrementally
    compiled: Any = None           # the whole policy as an rpz CompiledZone, when the proof compiled all of it
    changes: Any = None            # else: {owner wire: [rpz RR]} changed since the last-known-good (for
                                   #   CompiledZone.with_owners), and full_records() for a full compile
    full_records: Any = None
    next_change_at: float | None = None
    texts: Any = None              # xfr: () -> (source, rpz_text), produced when written (source and rpz_text
                                   #   are empty until then)
    signer_keys: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    code: RefusalCode | None = None
    check: str = ""
    detail: str = ""
    added: int = 0
    removed: int = 0
    share: float = 0.0


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def diff(prev: frozenset[str] | set[str], new: frozenset[str] | set[str]) -> tuple[int, int]:
    return len(new - prev), len(prev - new)


def decide(prev_serial: int | None, prev_digest: str | None, prev_ids: frozenset[str] | None,
           prepared: Prepared, *, feed: FeedConfig, approved: bool) -> Decision:
    if prev_serial is not None:
        order = serials.compare(prepared.serial, prev_serial)
        if order in (serials.Order.OLDER, serials.Order.UNDEFINED):
            return Decision(Verdict.REFUSE, RefusalCode.ROLLBACK, "serial",
                            f"serial {prepared.serial} is not newer than the applied {prev_serial} (RFC 1982)")
        if order is serials.Order.EQUAL:
            if prepared.digest == prev_digest:
                return Decision(Verdict.NO_CHANGE)
            return Decision(Verdict.REFUSE, RefusalCode.INCONSISTENT, "digest",
                            f"serial {prepared.serial} is already applied with different content "
                            f"({prev_digest} vs {prepared.digest})")
    if prepared.entries > feed.max_entries:
        return Decision(Verdict.REFUSE, RefusalCode.TOO_LARGE, "max_entries",
                        f"{prepared.entries} entries, the cap is {feed.max_entries}")
    if prepared.delta is not None:
        added, removed, prev_n = prepared.delta
    elif prev_ids is None:
        return Decision(Verdict.APPLY, added=prepared.entries)
    else:
        (added, removed), prev_n = diff(prev_ids, prepared.ids), len(prev_ids)
    share = max(added, removed) / max(prev_n, 1)
    if prev_n >= feed.blast_min_entries and share > feed.blast_radius and not approved:
        return Decision(Verdict.HOLD, None, "blast_radius",
                        f"adds {added} and removes {removed} of {prev_n} entries ({share:.0%} > "
                        f"{feed.blast_radius:.0%}): held until `hotline-edge feed approve {feed.name}`",
                        added, removed, share)
    return Decision(Verdict.APPLY, added=added, removed=removed, share=share)


# --- bundle feeds --------------------------------------------------------------------------------

def guards_for(feed: FeedConfig, is_public_suffix: Callable[[str], bool] | None) -> bfmt.Guards:
    return bfmt.Guards(feed.max_duration_days * 86400, feed.protected, dict(feed.stop_pages), is_public_suffix)


def next_change(entries: Iterable[bfmt.Entry], now: float) -> float | None:
    """The earliest future instant an accepted entry starts or stops being in force."""
    soonest: float | None = None
    for e in entries:
        for t in (e.effective_at, e.expires_at):
            if t > now and (soonest is None or t < soonest):
                soonest = t
    return soonest


def prepare_bundle(data: bytes, feed: FeedConfig, now: float, *, zone_serial: int,
                   is_public_suffix: Callable[[str], bool] | None, declared_sequence: int | None = None,
                   signer_keys: Sequence[str] = (), cache: bfmt.EntryCache | None = None) -> Prepared:
    """A TUF-verified bundle -> Prepared, or FeedRefused for the whole version."""
    expect = feed.feed_id or feed.name
    try:
        b = bfmt.parse_bundle(data, f"{feed.name} bundle", cache)
    except BundleFormatError as exc:
        raise FeedRefused(RefusalCode.INTEGRITY, feed.name, declared_sequence, "bundle_format", exc.reason) from exc
    if declared_sequence is not None and b.sequence != declared_sequence:
        raise FeedRefused(RefusalCode.INCONSISTENT, feed.name, b.sequence, "sequence",
                          f"the signed target says sequence {declared_sequence}, the bundle says {b.sequence}")
    if b.feed != expect:
        raise FeedRefused(RefusalCode.SCOPE, feed.name, b.sequence, "feed_id",
                          f"the bundle is for feed {b.feed!r}, this feed accepts {expect!r}")
    n = len(b.entries) + len(b.rejected)
    if n > feed.max_entries:
        raise FeedRefused(RefusalCode.TOO_LARGE, feed.name, b.sequence, "max_entries",
                          f"{n} entries, the cap is {feed.max_entries}")
    scope = bfmt.out_of_scope(b.entries, feed.categories, feed.authorities)
    if scope:
        raise FeedRefused(RefusalCode.SCOPE, feed.name, b.sequence, "scope", scope)
    screened = bfmt.screen(b, guards_for(feed, is_public_suffix), cache)
    compiled = bfmt.compile_zone(feed.zone, zone_serial, screened.accepted, feed.stop_pages, now=now, ttl=feed.ttl)
    rejected = tuple(r.to_json() for r in (*screened.rejected, *compiled.conflicts))
    conflict_ids = {r.entry_id for r in compiled.conflicts}
    accepted = [e for _, e in screened.accepted if e.entry_id not in conflict_ids]
    return Prepared(b.sequence, digest_of(data), data, compiled.text, zone_serial,
                    frozenset(e.entry_id for e in accepted), len(compiled.in_force), rejected,
                    rules=compiled.rules, next_change_at=next_change(accepted, now), signer_keys=tuple(signer_keys),
                    extra={"rules": compiled.rule_count, "gap_names": compiled.gap_names,
                           "generated_at": b.generated_at})


# --- RPZ (zone transfer) feeds -------------------------------------------------------------------

_SPECIAL_TRIGGERS = ("rpz-ip", "rpz-nsip", "rpz-client-ip", "rpz-nsdname")


@dataclass(frozen=True, slots=True)
class OwnerVerdict:
    owner: str
    reason: bfmt.Reason | None
    detail: str = ""


def screen_owner(rel_owner: str, passthru: bool, feed: FeedConfig,
                 is_public_suffix: Callable[[str], bool] | None) -> OwnerVerdict:
    """Guards for one rule owner of a transferred RPZ zone (relative name, lower case, no final dot).

    Only QNAME triggers name domains; rpz-ip / rpz-nsip / rpz-client-ip / rpz-nsdname owners pass.
    A PASSTHRU rule blocks nothing, so the protected list does not apply to it.
    """
    labels = rel_owner.split(".")
    if labels[-1] in _SPECIAL_TRIGGERS:
        return OwnerVerdict(rel_owner, None)
    base = rel_owner[2:] if rel_owner.startswith("*.") else rel_owner
    wildcard = rel_owner.startswith("*.")
    if is_public_suffix is not None and (("." not in base) or is_public_suffix(base)):
        return OwnerVerdict(rel_owner, bfmt.Reason.PUBLIC_SUFFIX,
                            f"{base} is a public suffix: the rule would block every domain under it")
    if not passthru:
        for p in (*feed.protected, *feed.stop_pages.values()):
            prot = p.rstrip(".").lower()
            if base == prot or base.endswith("." + prot) or (wildcard and prot.endswith("." + base)):
                return OwnerVerdict(rel_owner, bfmt.Reason.PROTECTED, f"the rule would block the protected name {prot}")
    return OwnerVerdict(rel_owner, None)
