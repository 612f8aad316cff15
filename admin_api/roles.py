"""Roles and what each may do, as a table (issue 6 "Actors and access"; research note C.2 "Roles").

    officer   compliance: intake, verification, scoping, prepares and executes the release
    approver  legal / senior: approves or rejects; never the preparer of the same case
    hotline   feed side only: takedown orders and their enforcement; no subscriber data
    operator  runs the appliance and feeds; imports subscriber sessions; no subscriber data out
    auditor   read-only: audit log, chain verification, statistics; no subscriber data

Every route declares one permission as a FastAPI dependency; this table decides which roles hold
it. A token carries exactly one role. Result data (the sealed package) is further limited to the
preparer and the approver of that case (``app.py``).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"
    APPROVER = "approver"
    HOTLINE = "hotline"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Permission(StrEnum):
    WHOAMI = "whoami"                    # see one's own token: subject, role, expiry
    REGISTRY_READ = "registry:read"      # agencies and registered requesters
    REGISTRY_WRITE = "registry:write"
    CASE_CREATE = "case:create"          # intake of a request
    CASE_READ = "case:read"              # state, scope, reason codes; never results
    CASE_WORK = "case:work"              # verification, callbacks, amendments, scoping, execution, delivery
    CASE_REJECT = "case:reject"
    CASE_APPROVE = "case:approve"
    CASE_RESULTS = "case:results"        # the package (and only for the case's preparer or approver)
    SESSIONS_IMPORT = "sessions:import"  # subscriber sessions in; there is no route that reads them out
    AUDIT_READ = "audit:read"
    AUDIT_VERIFY = "audit:verify"
    STATS_READ = "stats:read"            # transparency counts, no personal data
    HOTLINE_READ = "hotline:read"        # hotline verification routes (blocked-lookup part)
    BLOCKLOG_HOLD = "blocklog:hold"      # create and release legal holds on the blocked-lookup log
    BLOCKLOG_HOLDS_READ = "blocklog:holds:read"
    METRICS_READ = "metrics:read"        # Prometheus scrape with a bearer token


R, P = Role, Permission

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    R.OFFICER: frozenset({P.WHOAMI, P.REGISTRY_READ, P.REGISTRY_WRITE, P.CASE_CREATE, P.CASE_READ,
                          P.CASE_WORK, P.CASE_REJECT, P.CASE_RESULTS, P.STATS_READ, P.BLOCKLOG_HOLD,
                          P.BLOCKLOG_HOLDS_READ}),
    R.APPROVER: frozenset({P.WHOAMI, P.REGISTRY_READ, P.CASE_READ, P.CASE_REJECT, P.CASE_APPROVE,
                           P.CASE_RESULTS, P.BLOCKLOG_HOLDS_READ}),
    R.HOTLINE: frozenset({P.WHOAMI, P.HOTLINE_READ}),
    R.OPERATOR: frozenset({P.WHOAMI, P.SESSIONS_IMPORT, P.HOTLINE_READ, P.METRICS_READ}),
    R.AUDITOR: frozenset({P.WHOAMI, P.REGISTRY_READ, P.CASE_READ, P.AUDIT_READ, P.AUDIT_VERIFY,
                          P.STATS_READ, P.BLOCKLOG_HOLDS_READ}),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def roles_with(permission: Permission) -> tuple[Role, ...]:
    return tuple(r for r in Role if permission in ROLE_PERMISSIONS[r])
