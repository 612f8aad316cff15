"""The admin API: a thin FastAPI layer over ``DisclosureService``.

Every route declares the permission it needs as a dependency (``need(Permission.X)``), which
authenticates the bearer token and checks the role table (``roles.py``). ``/healthz`` is the only
route without one. No SQL and no workflow decisions here: parse, call the service, shape the answer.

    app = create_app(config, clock=ManualClock(...), blocklog=InMemoryBlocklog([...]))
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nacl.public import PrivateKey
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from .blocklog import BlocklogOpener, BlocklogSource, load_private_key
from .checks import REASON_HELP, Check
from .clock import Clock, SystemClock, iso
from .config import ApiConfig
from .errors import (
    AccessDenied,
    AdminApiError,
    ChecksFailed,
    Conflict,
    IllegalTransition,
    KeyMaterialError,
    NotFound,
    SealedRecordError,
    SessionImportError,
    StoreError,
)
from .model import Requester
from .package import load_signing_key
from .roles import Permission, allows
from .schemas import (
    AgencyIn,
    AmendIn,
    CallbackIn,
    CaseIn,
    DeliverIn,
    FollowupIn,
    HoldIn,
    NoteIn,
    NoticeIn,
    RejectIn,
    RequesterIn,
    RequesterStatusIn,
    SessionsIn,
)
from .service import DisclosureService, Intake, case_json, package_json
from .sessions import parse_rows
from .store import Store
from .tokens import Principal, TokenAuthority, make_hasher
from .workflow import Event

log = logging.getLogger("hotline_edge.api")
bearer = HTTPBearer(auto_error=False, description="hle_<id>_<secret>, issued with `hotline-edge api token issue`")

CaseId = Annotated[str, Path(min_length=1, max_length=40, description="ISP case id, e.g. HE-2026-000001")]
RequesterId = Annotated[int, Path(ge=1, le=2**62)]


def need(permission: Permission) -> Callable[..., Principal]:
    """The dependency a route declares: a valid, unexpired token whose role holds ``permission``."""

    def dependency(request: Request,
                   creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        who = getattr(request.state, "principal", None)
        if who is None:  # the middleware authenticated every request but /healthz already
            authority: TokenAuthority = request.app.state.tokens
            who = authority.authenticate(creds.credentials if creds else None)
        if who.role is None or not allows(who.role, permission):
            raise AccessDenied(f"role {who.role} may not {permission.value}", 403)
        request.state.subject = who.subject
        return who

    dependency.__name__ = f"need_{permission.name.lower()}"
    return dependency


# What each route declares: "the caller holds this permission" (roles.py decides which roles do).
AsAuditRead = Annotated[Principal, Depends(need(Permission.AUDIT_READ))]
AsAuditVerify = Annotated[Principal, Depends(need(Permission.AUDIT_VERIFY))]
AsCaseApprove = Annotated[Principal, Depends(need(Permission.CASE_APPROVE))]
AsCaseCreate = Annotated[Principal, Depends(need(Permission.CASE_CREATE))]
AsCaseRead = Annotated[Principal, Depends(need(Permission.CASE_READ))]
AsCaseReject = Annotated[Principal, Depends(need(Permission.CASE_REJECT))]
AsCaseResults = Annotated[Principal, Depends(need(Permission.CASE_RESULTS))]
AsCaseWork = Annotated[Principal, Depends(need(Permission.CASE_WORK))]
AsMetricsRead = Annotated[Principal, Depends(need(Permission.METRICS_READ))]
AsRegistryRead = Annotated[Principal, Depends(need(Permission.REGISTRY_READ))]
AsRegistryWrite = Annotated[Principal, Depends(need(Permission.REGISTRY_WRITE))]
AsSessionsImport = Annotated[Principal, Depends(need(Permission.SESSIONS_IMPORT))]
AsStatsRead = Annotated[Principal, Depends(need(Permission.STATS_READ))]
AsWhoami = Annotated[Principal, Depends(need(Permission.WHOAMI))]


def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def _install_error_handlers(app: FastAPI, refused: Counter) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, AccessDenied):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            resp = _error(exc.status, "ACCESS_DENIED", str(exc))
            if headers:
                resp.headers.update(headers)
            return resp
        if isinstance(exc, ChecksFailed):
            for r in exc.results:
                refused.labels(reason=str(r.reason)).inc()
            return _error(422, "CHECKS_FAILED", str(exc), case_id=exc.case_id, step=exc.step,
                          reasons=[{"code": str(r.reason), "check": r.check, "detail": r.detail,
                                    "help": REASON_HELP.get(r.reason, "") if r.reason else ""}
                                   for r in exc.results])
        if isinstance(exc, IllegalTransition):
            return _error(409, "ILLEGAL_TRANSITION", str(exc), state=exc.state, event=exc.event)
        if isinstance(exc, NotFound):
            return _error(404, "NOT_FOUND", str(exc))
        if isinstance(exc, Conflict | SealedRecordError):
            return _error(409, "CONFLICT", str(exc))
        if isinstance(exc, SessionImportError):
            return _error(422, "UNREADABLE_INPUT", str(exc))
        if isinstance(exc, StoreError | KeyMaterialError):
            log.error(json.dumps({"event": "error", "error": str(exc)}))
            return _error(503, "UNAVAILABLE", str(exc))
        return _error(400, "BAD_REQUEST", str(exc))

    app.add_exception_handler(AdminApiError, handle)

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return _error(422, "INVALID_REQUEST", "the request does not match the schema", errors=errors)

    app.add_exception_handler(RequestValidationError, validation)


def create_app(config: ApiConfig, *, clock: Clock | None = None, store: Store | None = None,
               signing_key: Ed25519PrivateKey | None = None, compliance_key: PrivateKey | None = None,
               blocklog: BlocklogSource | None = None, gates: dict[Event, tuple[Check, ...]] | None = None,
               routers: Sequence[APIRouter] = ()) -> FastAPI:
    """``routers``: more routes from other parts (e.g. the hotline verification routes); each route
    must declare ``need(Permission.X)`` like these, and the token middleware covers them too."""
    clock = clock or SystemClock()
    store = store or Store(config.database)
    if signing_key is None and config.signing_key:
        signing_key = load_signing_key(config.signing_key)
    if compliance_key is None and config.compliance_private_key:
        compliance_key = load_private_key(config.compliance_private_key)
    opener = BlocklogOpener(compliance_key) if compliance_key is not None else None
    service = DisclosureService(store, config, clock, signing_key, opener=opener, blocklog=blocklog, gates=gates)
    tokens = TokenAuthority(store, clock, make_hasher(config.argon2_time_cost, config.argon2_memory_kib),
                            timedelta(days=config.token_max_ttl_days))

    app = FastAPI(title="hotline-edge admin API", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                  description="Warrant-checked disclosure of subscriber data, audit and transparency. "
                              "Every route but /healthz needs a bearer token of a role allowed to use it. "
                              "See docs/disclosure.md.")
    app.state.service = service
    app.state.tokens = tokens
    app.state.store = store
    registry = CollectorRegistry()
    requests = Counter("hotline_edge_api_requests", "API requests by route and status",
                       ["method", "route", "status"], registry=registry)
    refused = Counter("hotline_edge_disclosure_checks_refused", "Steps refused by a check, by reason code",
                      ["reason"], registry=registry)
    app.state.metrics = registry
    _install_error_handlers(app, refused)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """No route but /healthz answers anything -- not even a validation error -- without a valid token."""
        if request.url.path != "/healthz":
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            try:
                if scheme.lower() != "bearer":
                    raise AccessDenied("no token: send 'Authorization: Bearer <token>'")
                request.state.principal = await run_in_threadpool(tokens.authenticate, presented.strip())
            except AccessDenied as exc:
                resp = _error(401, "ACCESS_DENIED", str(exc))
                resp.headers["WWW-Authenticate"] = "Bearer"
                return resp
            request.state.subject = request.state.principal.subject
        return await call_next(request)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        requests.labels(request.method, path, str(response.status_code)).inc()
        log.info(json.dumps({"event": "request", "method": request.method, "route": path,
                             "status": response.status_code, "subject": getattr(request.state, "subject", None),
                             "ms": round((time.perf_counter() - started) * 1000, 1)}))
        return response

    _routes(app, service, registry)
    for router in routers:
        app.include_router(router)
    return app


def _routes(app: FastAPI, svc: DisclosureService, registry: CollectorRegistry) -> None:

    @app.get("/healthz", tags=["meta"], summary="liveness and schema version; the only route without a token")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "schema_version": svc.store.schema_version()}

    @app.get("/openapi.json", tags=["meta"], summary="this API's OpenAPI description (any valid token)")
    def openapi(who: AsWhoami) -> dict[str, Any]:
        return app.openapi()

    @app.get("/whoami", tags=["meta"])
    def whoami(who: AsWhoami) -> dict[str, Any]:
        return {"subject": who.subject, "role": who.role, "token_id": who.token_id, "expires": iso(who.expires_at)}

    @app.get("/reasons", tags=["meta"], summary="every reason code and what to do about it")
    def reasons(who: AsWhoami) -> dict[str, str]:
        return {k.value: v for k, v in REASON_HELP.items()}

    @app.get("/metrics", tags=["meta"], summary="Prometheus metrics (bearer token of role operator)")
    def metrics(who: AsMetricsRead) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # -- registry --------------------------------------------------------------------------------

    @app.get("/registry/agencies", tags=["registry"])
    def agencies(who: AsRegistryRead) -> list[dict[str, Any]]:
        return [{"code": a.code, "name": a.name, "jurisdiction": a.jurisdiction} for a in svc.list_agencies()]

    @app.post("/registry/agencies", tags=["registry"], status_code=201)
    def add_agency(body: AgencyIn, who: AsRegistryWrite) -> dict[str, Any]:
        a = svc.add_agency(who, body.to_model())
        return {"code": a.code, "name": a.name, "jurisdiction": a.jurisdiction}

    @app.get("/registry/requesters", tags=["registry"])
    def requesters(who: AsRegistryRead) -> list[dict[str, Any]]:
        return [_requester_json(r) for r in svc.list_requesters()]

    @app.post("/registry/requesters", tags=["registry"], status_code=201)
    def add_requester(body: RequesterIn, who: AsRegistryWrite) -> dict[str, Any]:
        return _requester_json(svc.add_requester(who, body.to_model()))

    @app.post("/registry/requesters/{requester_id}/status", tags=["registry"])
    def requester_status(requester_id: RequesterId, body: RequesterStatusIn,
                         who: AsRegistryWrite) -> dict[str, Any]:
        return _requester_json(svc.set_requester_status(who, requester_id, body.status, body.note))

    # -- disclosure cases ------------------------------------------------------------------------

    @app.post("/disclosures", tags=["disclosures"], status_code=201, summary="intake of a request (RECEIVED)")
    def intake(body: CaseIn, who: AsCaseCreate) -> dict[str, Any]:
        data = Intake(body.channel, body.agency_request_number, body.requester_id, body.claimed.to_model(),
                      body.to_scope())
        return case_json(svc.intake(who, data))

    @app.get("/disclosures", tags=["disclosures"])
    def cases(who: AsCaseRead,
              state: Annotated[str | None, Query(max_length=32)] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[dict[str, Any]]:
        return [case_json(c) for c in svc.list_cases(state, limit, offset)]

    @app.get("/disclosures/{case_id}", tags=["disclosures"])
    def case(case_id: CaseId, who: AsCaseRead) -> dict[str, Any]:
        return case_json(svc.get_case(case_id))

    @app.put("/disclosures/{case_id}/scope", tags=["disclosures"],
             summary="amend instrument, queries, delivery or gag; a frozen scope goes back to LEGAL_REVIEW")
    def amend(case_id: CaseId, body: AmendIn, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.amend(who, case_id, body.to_scope(), body.note))

    @app.post("/disclosures/{case_id}/verification", tags=["disclosures"], summary="RECEIVED -> VERIFYING")
    def start_verification(case_id: CaseId, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.start_verification(who, case_id))

    @app.get("/disclosures/{case_id}/callbacks", tags=["disclosures"])
    def callbacks(case_id: CaseId, who: AsCaseRead) -> list[dict[str, Any]]:
        return [{"person": c.person.value, "requester_id": c.requester_id, "number": c.number,
                 "number_source": c.number_source, "outcome": c.outcome.value, "called_by": c.called_by,
                 "at": iso(c.at)} for c in svc.callbacks(case_id)]

    @app.post("/disclosures/{case_id}/callbacks", tags=["disclosures"], status_code=201,
              summary="record a callback; the number dialled is the registry's, never the request's")
    def callback(case_id: CaseId, body: CallbackIn,
                 who: AsCaseWork) -> dict[str, Any]:
        c = svc.record_callback(who, case_id, body.person, body.outcome, body.note)
        return {"person": c.person.value, "requester_id": c.requester_id, "number": c.number,
                "number_source": c.number_source, "outcome": c.outcome.value, "called_by": c.called_by,
                "at": iso(c.at)}

    @app.post("/disclosures/{case_id}/legal-review", tags=["disclosures"],
              summary="identity and instrument checks; VERIFYING -> LEGAL_REVIEW")
    def legal_review(case_id: CaseId, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.complete_verification(who, case_id))

    @app.post("/disclosures/{case_id}/preservation", tags=["disclosures"], status_code=201,
              summary="preservation hold: keep the records the queries cover past retention, release nothing")
    def preservation(case_id: CaseId, body: HoldIn, who: AsCaseWork) -> dict[str, Any]:
        return {"case_id": case_id, "held_addresses": svc.preserve(who, case_id, body.until, body.reason),
                "until": iso(body.until)}

    @app.post("/disclosures/{case_id}/request-info", tags=["disclosures"])
    def request_info(case_id: CaseId, body: NoteIn,
                     who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.request_info(who, case_id, body.note))

    @app.post("/disclosures/{case_id}/freeze", tags=["disclosures"],
              summary="all checks; LEGAL_REVIEW -> SCOPED with the scope digest frozen")
    def freeze(case_id: CaseId, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.freeze_scope(who, case_id))

    @app.post("/disclosures/{case_id}/submit", tags=["disclosures"], summary="SCOPED -> PENDING_APPROVAL")
    def submit(case_id: CaseId, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.submit(who, case_id))

    @app.post("/disclosures/{case_id}/approve", tags=["disclosures"],
              summary="four eyes: the approver is not the preparer; PENDING_APPROVAL -> APPROVED")
    def approve(case_id: CaseId, body: NoteIn, who: AsCaseApprove) -> dict[str, Any]:
        return case_json(svc.approve(who, case_id, body.note))

    @app.post("/disclosures/{case_id}/reject", tags=["disclosures"])
    def reject(case_id: CaseId, body: RejectIn, who: AsCaseReject) -> dict[str, Any]:
        return case_json(svc.reject(who, case_id, body.reasons, body.note))

    @app.post("/disclosures/{case_id}/withdraw", tags=["disclosures"])
    def withdraw(case_id: CaseId, body: NoteIn, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.withdraw(who, case_id, body.note))

    @app.post("/disclosures/{case_id}/execute", tags=["disclosures"],
              summary="run the approved queries, seal and sign the package; APPROVED -> EXECUTED")
    def execute(case_id: CaseId, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.execute(who, case_id))

    @app.get("/disclosures/{case_id}/package", tags=["disclosures"],
             summary="the signed package; only the case's preparer or approver")
    def package(case_id: CaseId, who: AsCaseResults) -> dict[str, Any]:
        return package_json(svc.package(who, case_id))

    @app.post("/disclosures/{case_id}/deliver", tags=["disclosures"], summary="EXECUTED -> DELIVERED (then notice)")
    def deliver(case_id: CaseId, body: DeliverIn, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.deliver(who, case_id, body.receipt))

    @app.post("/disclosures/{case_id}/followup", tags=["disclosures"],
              summary="the follow-up instrument of an emergency release")
    def followup(case_id: CaseId, body: FollowupIn,
                 who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.record_followup(who, case_id, body.instrument.to_model()))

    @app.post("/disclosures/{case_id}/notice", tags=["disclosures"], summary="customer notice sent; -> CLOSED")
    def notice(case_id: CaseId, body: NoticeIn, who: AsCaseWork) -> dict[str, Any]:
        return case_json(svc.notice_sent(who, case_id, body.method))

    # -- audit, statistics, sessions -------------------------------------------------------------

    @app.get("/disclosures/{case_id}/audit", tags=["audit"])
    def case_audit(case_id: CaseId, who: AsAuditRead) -> list[dict[str, Any]]:
        return [_audit_json(e) for e in svc.audit_entries(who, case_id, 0, 10000)]

    @app.get("/audit", tags=["audit"])
    def audit(who: AsAuditRead,
              after: Annotated[int, Query(ge=0, le=2**62)] = 0,
              limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[dict[str, Any]]:
        return [_audit_json(e) for e in svc.audit_entries(who, None, after, limit)]

    @app.get("/audit/verify", tags=["audit"], summary="recompute the audit hash chain")
    def audit_verify(who: AsAuditVerify) -> dict[str, Any]:
        return svc.verify_audit(who)

    @app.get("/stats/transparency", tags=["audit"], summary="counts by agency, instrument type, outcome, reason")
    def transparency(who: AsStatsRead,
                     year: Annotated[int, Query(ge=2000, le=2100)]) -> dict[str, Any]:
        return svc.transparency(year)

    @app.post("/subscribers/sessions", tags=["subscribers"],
              summary="import RADIUS accounting, DHCP leases, CGNAT port blocks or accounts (idempotent)")
    def sessions(body: SessionsIn, who: AsSessionsImport) -> dict[str, Any]:
        parsed = parse_rows(body.kind, ((f"records[{n}]", r) for n, r in enumerate(body.records)))
        digest = hashlib.sha256(json.dumps(body.records, sort_keys=True, default=str).encode()).hexdigest()
        counts = svc.import_sessions(who, parsed, "api", digest)
        return {"kind": parsed.kind.value, "inserted": counts.inserted, "updated": counts.updated,
                "unchanged": counts.unchanged, "rejected": [{"where": r.where, "reason": r.reason}
                                                            for r in parsed.rejected]}


def _requester_json(r: Requester) -> dict[str, Any]:
    return {"id": r.id, "agency": r.agency, "name": r.name, "rank": r.rank, "warrant_card": r.warrant_card,
            "official_phone": r.official_phone, "phone_source": r.phone_source, "supervisor_id": r.supervisor_id,
            "status": r.status.value}


def _audit_json(e: Any) -> dict[str, Any]:
    return {"seq": e.seq, "at": iso(e.at), "actor": e.actor, "role": e.role, "case_id": e.case_id,
            "kind": e.kind, "data": e.data, "link": e.link}


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object per line on stderr (the access log and errors)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("hotline_edge")
    root.handlers[:] = [handler]
    root.setLevel(level)
