"""Errors of the resolver package.

    ResolverError                 root: everything resolver raises on purpose
    ├── WireError                 a DNS message we cannot use (query or upstream reply); carries the
    │                             rcode to answer with, or None when the message must be dropped
    ├── UpstreamError             no usable answer from any upstream (timeouts, refusals, bad replies)
    ├── PolicyLoadError           a policy zone could not be loaded; the running policy stays in force
    ├── ConfigError (rpz)         configuration errors come from rpz.tomlconf (file:line: key: reason)
    ├── ControlError              the control socket could not be reached or answered an error
    └── BlocklogError             the blocked-lookup log: database unusable, a record or sealed
        │                         address that does not check out, a bad legal hold
        └── HoldError             a legal hold that cannot be created or released as asked

Messages say what was wrong, where (peer address, zone file, socket path) and what to do, so they
can go straight into a log line or a CLI error.
"""

from __future__ import annotations


class ResolverError(Exception):
    """Root of every error raised by the resolver package."""


class WireError(ResolverError):
    """A DNS message that cannot be used.

    ``rcode`` is what to answer (FORMERR, NOTIMP, ...) or None when the message must be dropped
    without a reply (too short to carry an ID, or a response sent to our query port).
    """

    __slots__ = ("rcode", "reason")

    def __init__(self, reason: str, rcode: int | None = 1) -> None:
        self.reason = reason
        self.rcode = rcode
        super().__init__(reason)


class UpstreamError(ResolverError):
    """No upstream gave a usable answer; the client gets SERVFAIL."""


class PolicyLoadError(ResolverError):
    """A policy zone could not be loaded (missing file, unreadable zone, bad snapshot)."""


class ControlError(ResolverError):
    """The control socket is unreachable or the resolver answered with an error."""


class BlocklogError(ResolverError):
    """The blocked-lookup log: its database cannot be opened or written, a record or a sealed
    address does not check out."""


class HoldError(BlocklogError):
    """A legal hold that cannot be created or released as asked (bad scope, unknown id)."""
