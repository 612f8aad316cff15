"""Errors of the policy core.

    RpzError                      root: everything rpz raises
    ├── DnsNameError              a name that is not a valid DNS name (text or wire), with the reason
    ├── ZoneReadError             the input cannot be read at all (I/O, encoding, no SOA); the zone fails
    ├── RecordError               one record is unusable; collected as a Rejection, the rest of the zone loads
    ├── SnapshotError             a compiled snapshot is missing, truncated, or from another format version
    └── PolicyConfigError         a zone's policy settings are invalid (override, EDE code, template)

Each message says what was wrong and where (file:line, owner name, snapshot path) so an operator can
act on it without reading code.
"""

from __future__ import annotations


class RpzError(Exception):
    """Root of every error raised by the rpz package."""


class DnsNameError(RpzError, ValueError):
    """A DNS name is malformed (empty label, label > 63 octets, name > 255 octets, bad escape)."""


class ZoneReadError(RpzError):
    """The zone input cannot be used at all; nothing of it is loaded."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


class RecordError(RpzError):
    """One record of a zone is unusable; the loader turns it into a Rejection and goes on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SnapshotError(RpzError):
    """A compiled policy snapshot cannot be used."""


class PolicyConfigError(RpzError, ValueError):
    """Invalid per-zone policy settings."""
