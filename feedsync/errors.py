"""Errors and stable codes of feedsync.

    FeedError                     root: everything feedsync raises
    ├── FeedConfigError           a [[feed]] section is invalid (wraps rpz.tomlconf errors)
    ├── BundleFormatError         bundle / orders input that cannot be read at all (file:line or entry)
    ├── FeedRefused               a whole version refused; carries a RefusalCode, the feed, serial, check
    ├── FetchFailed               the source could not be reached (no version was seen; nothing refused)
    ├── ActivationError           the resolver did not load what was activated (feedsync reverts)
    ├── ControlError              the resolver's control socket is missing or answered nonsense
    ├── PublishError              the hotline's publish tool cannot build or sign a repository
    └── StateError                the feed state on disk is unusable (database, versions directory)

Each message says what was wrong, where (feed:serial, file:line, URL) and what to do. Refusal codes
are a stable contract: they appear in logs, metrics (label ``code``), ``feed status`` and audit
records, and scripts may match on them.
"""

from __future__ import annotations

from enum import StrEnum


class RefusalCode(StrEnum):
    """Why a whole version was refused (issue 4; research C.1). Values never change."""

    UNTRUSTED_SIGNATURE = "FEED_UNTRUSTED_SIGNATURE"  # TUF signatures below threshold / unknown keys
    TSIG = "FEED_TSIG"                                # TSIG missing, bad key, bad signature, bad time
    ROLLBACK = "FEED_ROLLBACK"                        # serial or version older than what was applied
    EXPIRED = "FEED_EXPIRED"                          # signed metadata expired; SOA expire passed
    STALE = "FEED_STALE"                              # no successful refresh within the freshness limit
    INTEGRITY = "FEED_INTEGRITY"                      # hash/length/ZONEMD mismatch; unreadable content
    INCONSISTENT = "FEED_INCONSISTENT"                # delta does not fit the base; mix-and-match
    TOO_LARGE = "FEED_TOO_LARGE"                      # bytes, entries or transfer time over the caps
    SCOPE = "FEED_SCOPE"                              # content for another feed, issuer or category

    @property
    def help(self) -> str:
        return _HELP[self]


_HELP: dict[RefusalCode, str] = {
    RefusalCode.UNTRUSTED_SIGNATURE: "check the trusted root and the hotline's signing keys; ask the "
                                     "hotline whether it rotated keys",
    RefusalCode.TSIG: "check tsig_name, tsig_algorithm and the secret with the primary's operator; check "
                      "the clock (NTP)",
    RefusalCode.ROLLBACK: "the source serves an older version than this node applied; ask the hotline; "
                          "never reset the state to accept it",
    RefusalCode.EXPIRED: "the source has not re-signed or refreshed in time; ask the hotline; check the clock",
    RefusalCode.STALE: "no refresh succeeded within the freshness limit; check the network path to the source",
    RefusalCode.INTEGRITY: "the data does not match its digest; try again later or ask the hotline",
    RefusalCode.INCONSISTENT: "the update does not fit the applied version; a full transfer is tried next",
    RefusalCode.TOO_LARGE: "the version exceeds the configured caps; raise the caps only if the hotline "
                           "confirms the size",
    RefusalCode.SCOPE: "the version carries content this feed is not authorised for; ask the hotline",
}


class FailureCode(StrEnum):
    """Failures that are not refusals of a version (nothing was verified, or activation failed)."""

    UNREACHABLE = "FEED_UNREACHABLE"            # source down, timeout, HTTP error: no version seen
    RESOLVER_LOAD_FAILED = "RESOLVER_LOAD_FAILED"  # resolver did not load the activated version: reverted
    HELD = "FEED_BLAST_RADIUS"                  # version held for operator approval (not an error)
    PINNED = "FEED_PINNED"                      # an operator pinned the feed; new versions wait (not an error)


class FeedError(Exception):
    """Root of every error feedsync raises."""


class FeedConfigError(FeedError):
    """The feed configuration is invalid; ``errors`` holds each located message."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class BundleFormatError(FeedError):
    """A bundle or an orders file cannot be read at all."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class FeedRefused(FeedError):
    """A whole version refused: the last-known-good version keeps serving."""

    def __init__(self, code: RefusalCode, feed: str, serial: int | None, check: str, detail: str) -> None:
        self.code = code
        self.feed = feed
        self.serial = serial
        self.check = check
        self.detail = detail
        at = f"{feed}:{serial}" if serial is not None else f"{feed}:?"
        super().__init__(f"{code.value}: {at}: {check}: {detail} (what to do: {code.help})")


class FetchFailed(FeedError):
    """The source could not be reached; nothing was received, nothing is refused or applied."""

    def __init__(self, feed: str, where: str, detail: str) -> None:
        self.feed = feed
        self.where = where
        self.detail = detail
        super().__init__(f"{FailureCode.UNREACHABLE.value}: {feed}: {where}: {detail}")


class ControlError(FeedError):
    """The resolver's control socket could not be used."""


class ActivationError(FeedError):
    """The resolver did not load the version feedsync activated."""


class PublishError(FeedError):
    """The publish tool cannot build or sign the repository."""


class StateError(FeedError):
    """The feed state on disk is unusable."""
