"""Errors of the admin API (disclosure workflow, subscriber sessions, audit, tokens).

    AdminApiError                   root: everything admin_api raises on purpose
    ├── IllegalTransition           an event that the lifecycle table does not allow in this state
    ├── ChecksFailed                a gate's checks refused the step; carries the reason codes
    ├── NotFound                    a case, requester, agency or token that does not exist
    ├── Conflict                    a write that contradicts what is stored (duplicate code, frozen data)
    ├── AccessDenied                no token, a bad or expired token, or a role without the permission
    ├── SessionImportError          a subscriber-session file that cannot be read at all
    ├── StoreError                  the compliance database cannot be opened, migrated or written
    ├── KeyMaterialError            a signing or compliance key is missing or unreadable
    └── SealedRecordError           a sealed blocked-lookup address cannot be opened with our key

Configuration errors are ``rpz.tomlconf.ConfigError`` (every section reports the same way, with
file:line). Each message says what was wrong, where (case id, file:line, key path) and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checks import CheckResult


class AdminApiError(Exception):
    """Root of every error raised on purpose by admin_api."""


class IllegalTransition(AdminApiError):
    """The lifecycle table has no row for (state, event)."""

    def __init__(self, state: str, event: str, case_id: str = "") -> None:
        self.state = state
        self.event = event
        self.case_id = case_id
        where = f"case {case_id}: " if case_id else ""
        super().__init__(f"{where}event {event} is not allowed in state {state} "
                         f"(see the lifecycle table in docs/disclosure.md)")


class ChecksFailed(AdminApiError):
    """A gate refused a step; ``results`` are the failed checks, each with its reason code."""

    def __init__(self, case_id: str, step: str, results: Sequence[CheckResult]) -> None:
        self.case_id = case_id
        self.step = step
        self.results = tuple(results)
        codes = ", ".join(f"{r.reason}: {r.detail}" for r in self.results if r.reason)
        super().__init__(f"case {case_id}: {step} refused: {codes}")

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(str(r.reason) for r in self.results if r.reason)


class NotFound(AdminApiError):
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r}")


class Conflict(AdminApiError):
    pass


class AccessDenied(AdminApiError):
    def __init__(self, reason: str, status: int = 401) -> None:
        self.status = status
        super().__init__(reason)


class SessionImportError(AdminApiError):
    """The whole input is unusable (unreadable file, unknown kind, no header)."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


class StoreError(AdminApiError):
    pass


class KeyMaterialError(AdminApiError):
    pass


class SealedRecordError(AdminApiError):
    pass
