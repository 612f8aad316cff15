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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from . import bundle as bfmt
from . import bundlebulk as bulk
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
    compile_full: Any = None       # bundles: (source) -> the whole version compiled (instead of full_records)
    next_change_at: float | None = None
    texts: Any = None              # () -> (source, rpz_text), produced when written (source and rpz_text
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


def prepare_bundle(data: bytes, feed: FeedConfig, now: float, *, zone_serial: int,
                   is_public_suffix: Callable[[str], bool] | None, declared_sequence: int | None = None,
                   signer_keys: Sequence[str] = ()) -> Prepared:
    """A TUF-verified bundle -> Prepared, or FeedRefused for the whole version. Read, screened and
    compiled by column (feedsync.bundlebulk; feedsync.bundle is the entry-at-a-time reference).
    The zone text is produced when the version is written, after the resolver was asked."""
    expect = feed.feed_id or feed.name
    try:
        head, cols, parse_rejected = bulk.read_bundle(data, f"{feed.name} bundle")
    except BundleFormatError as exc:
        raise FeedRefused(RefusalCode.INTEGRITY, feed.name, declared_sequence, "bundle_format", exc.reason) from exc
    if declared_sequence is not None and head.sequence != declared_sequence:
        raise FeedRefused(RefusalCode.INCONSISTENT, feed.name, head.sequence, "sequence",
                          f"the signed target says sequence {declared_sequence}, the bundle says {head.sequence}")
    if head.feed != expect:
        raise FeedRefused(RefusalCode.SCOPE, feed.name, head.sequence, "feed_id",
                          f"the bundle is for feed {head.feed!r}, this feed accepts {expect!r}")
    if cols.n > feed.max_entries:
        raise FeedRefused(RefusalCode.TOO_LARGE, feed.name, head.sequence, "max_entries",
                          f"{cols.n} entries, the cap is {feed.max_entries}")
    scope = bulk.out_of_scope(cols, feed.categories, feed.authorities)
    if scope:
        raise FeedRefused(RefusalCode.SCOPE, feed.name, head.sequence, "scope", scope)
    screened = bulk.screen_columns(cols, parse_rejected, guards_for(feed, is_public_suffix))
    compiled = bulk.rule_table(cols, screened.accepted, feed.stop_pages, now)
    rejected = tuple(r.to_json() for r in (*screened.rejected, *compiled.conflicts))
    accepted = screened.accepted.copy()
    accepted[[r.index for r in compiled.conflicts]] = False
    rows = np.flatnonzero(accepted)
    ids = frozenset(cols.entry_id) if len(rows) == cols.n else frozenset(cols.entry_id[i] for i in rows.tolist())
    times = np.concatenate([cols.effective_at[rows], cols.expires_at[rows]])
    future = times[times > now]
    table, zone, ttl = compiled.rules, feed.zone, feed.ttl
    return Prepared(head.sequence, digest_of(data), b"", b"", zone_serial, ids, compiled.in_force, rejected,
                    rules=table, next_change_at=int(future.min()) if len(future) else None,
                    signer_keys=tuple(signer_keys), texts=lambda: (data, table.text(zone, zone_serial, ttl)),
                    compile_full=lambda source: table.compile(zone, zone_serial, ttl, source),
                    extra={"rules": len(table), "gap_names": compiled.gap_names,
                           "generated_at": head.generated_at})


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
