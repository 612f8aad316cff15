"""hotline-edge inside Unbound: the pythonmod module script (docs/unbound-plugin.md).

Unbound loads this file with its embedded Python (Debian: python3.11, package python3-unbound for
``unboundmodule``); it adds the hotline-edge environment to ``sys.path`` and applies the policy of
the resolver's own configuration file, ``[[policy.zone]]`` in order, to every client query:

    server:
        module-config: "validator python iterator"
        ignore-cd-flag: yes             # CD=1 clients get no unchecked (unfiltered) cache entries
        minimal-responses: no           # keeps the policy zone's SOA in the additional section
    python:
        python-script: "/opt/hotline-edge/venv/lib/python3.11/site-packages/resolver/unbound_plugin.py"

    # environment of unbound.service (a drop-in)
    PYTHONPATH=/usr/lib/python3/dist-packages       # Debian's unboundmodule.py
    HOTLINE_EDGE_CONFIG=/etc/hotline-edge/config.toml
    HOTLINE_EDGE_VENV=/opt/hotline-edge/venv         # optional: found from this file's location

How a query goes through (module events; the decisions are resolver.unbound_glue's):

    NEW      client query: CLIENT-IP and QNAME; a rewrite is answered here and never reaches the
             iterator; otherwise down to the iterator (cache, then the network)
    MODDONE  the answer is back: CNAME/DNAME targets and rpz-ip on it; rewrite or relay.
             ``no_cache_store`` keeps the validator from storing the answer as validated, so
             Unbound's cache only ever holds entries it must validate before serving: with the
             validator in module-config, every client query reaches this module again (no answer
             leaves Unbound's cache without the current policy deciding on it)
    PASS     a walled-garden target resolved as a sub-query (inform_super brought its answer)

Queries Unbound makes for itself (sub-queries, prefetch) pass through untouched: RPZ section 6.
"""

from __future__ import annotations

import os
import site
import sys
import time
from collections.abc import Callable
from typing import Any

DEFAULT_CONFIG = "/etc/hotline-edge/config.toml"


def add_environment(script: str) -> str:
    """Put the hotline-edge environment's site-packages on ``sys.path`` (pythonmod starts Python
    without ``site``, so .pth files are processed here). Returns the environment directory."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = os.environ.get("HOTLINE_EDGE_VENV", "")
    here = os.path.dirname(os.path.abspath(script))
    pkg_parent = os.path.dirname(here)
    candidates = []
    if venv:
        candidates.append(os.path.join(venv, "lib", ver, "site-packages"))
    if os.path.basename(pkg_parent) == "site-packages":          # installed: <venv>/lib/pythonX.Y/site-packages
        candidates.append(pkg_parent)
        venv = venv or os.path.dirname(os.path.dirname(os.path.dirname(pkg_parent)))
    else:                                                        # a source checkout with its .venv
        candidates.append(os.path.join(pkg_parent, ".venv", "lib", ver, "site-packages"))
        venv = venv or os.path.join(pkg_parent, ".venv")
        if pkg_parent not in sys.path:
            sys.path.insert(0, pkg_parent)
    for sp in candidates:
        if os.path.isdir(sp):
            site.addsitedir(sp)
    os.environ.setdefault("HOTLINE_EDGE_VENV", venv)
    return venv


if __name__ == "__main__":     # run by pythonmod: the environment first, then our imports
    add_environment(globals().get("__file__") or sys.argv[0])

from resolver.logs import Logger  # noqa: E402
from resolver.service import make_sink  # noqa: E402
from resolver.unbound_abi import (  # noqa: E402
    BIT_CD,
    BIT_RD,
    Abi,
    checkconf_file,
    loopback_target,
    pointer_of,
    unbound_config_file,
    unbound_option,
    unbound_version,
)
from resolver.unbound_glue import (  # noqa: E402
    PASS,
    Answer,
    Client,
    Engine,
    Mode,
    Outcome,
    PluginRefused,
    garden_answer,
    garden_fallback,
)
from resolver.unbound_runtime import Runtime  # noqa: E402
from resolver.wire import ReplyRR  # noqa: E402
from rpz import names  # noqa: E402 - after add_environment

EDE_OPTION = 15
T_AAAA = 28
FLUSH_CHUNK = 2000               # answers expired per flush request (about 10-20 ms of one thread)
POST_NOT_NEEDED = PASS
EDE_PROHIBITED = b"\x00\x12"     # RFC 8914 info-code 18: DROP when it cannot be a silent drop
GARDEN_WAIT_S = 30.0


class Plugin:
    """The adapter between Unbound's query states and the engine. One per Unbound process."""

    def __init__(self, ub: Any) -> None:
        self.ub = ub
        self.log = Logger("unbound-plugin")
        self.engine = Engine()
        self.runtime: Runtime | None = None
        self.abi: Abi | None = None
        self.not_ready_rcode = ub.RCODE_REFUSED
        self.serve_without_policy = False
        self.garden: dict[int, tuple[float, int, list[ReplyRR]]] = {}
        self._state = ub._unboundmodule._ext_state_set      # qstate.ext_state[id] = s, without the proxy
        self._records = False      # the sink keeps records (not only counts): the clients are looked at
        self._sink_error = ""
        self._profile: tuple[Any, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def reply_callback(self) -> Callable[..., bool]:
        """inplace_cb_reply (every reply from a finished query state): ``reply`` when any vetted
        answer is on its way into Unbound's cache, else nothing (one test)."""
        inflight = self.engine.vetting.inflight
        plugin = self

        def reply_cb(qinfo: Any, qstate: Any, rep: Any, rcode: int, edns: Any, opt_list_out: Any, region: Any,
                     **_more: Any) -> bool:
            if inflight:
                try:
                    plugin.reply(qstate)
                except Exception as exc:
                    plugin.log("error", "reply_callback_failed", error=repr(exc))
            return True

        return reply_cb

    def init(self, env: Any, mid: int) -> bool:
        self._start_profile()
        modules = (env.cfg.module_conf or "").split()
        if "validator" not in modules or "python" not in modules or \
                modules.index("validator") > modules.index("python"):
            why = "without the validator above this module Unbound would serve cached answers without asking the policy"
            self.log("critical", "module_config_refused", module_config=" ".join(modules),
                     required="validator python iterator", why=why)
            raise PluginRefused(f'module-config "{" ".join(modules)}": use "validator python iterator" ({why})')
        checked = checkconf_file()
        conf = checked or unbound_config_file()
        self._check_unbound(conf)
        if checked is not None:      # unbound-checkconf initialises modules: settings checked, no policy loaded
            self.log("info", "plugin_settings_ok", unbound_config=checked, module_config=" ".join(modules))
            return True
        config = os.environ.get("HOTLINE_EDGE_CONFIG", DEFAULT_CONFIG)
        self.abi = Abi(unbound_version(), self.log)
        self.runtime = Runtime(config, self.engine, self.log)
        self.runtime.flush_target = loopback_target(unbound_option(conf, "interface") or [], int(env.cfg.port))
        if self.runtime.flush_target is None:
            self.log("warning", "no_loopback_interface", unbound_config=conf,
                     effect="answers a new policy hits are expired only as client queries arrive",
                     hint='add interface: 127.0.0.1 to the server: section')
        self.runtime.on_config = self._configure
        self.runtime.start()
        if self.runtime.cfg is None and self._sink_error:
            raise PluginRefused(f"the blocked-lookup log cannot be opened: {self._sink_error} (fix [blocklog] path "
                                "or the state directory's permissions for Unbound's user, or set [blocklog] "
                                "enabled = false to serve without it)")
        self.ub.register_inplace_cb_reply(self.reply_callback(), env, mid)
        self.ub.register_inplace_cb_reply_cache(self.cache_callback(), env, mid)
        self.log("info", "plugin_started", config=config, unbound=self.abi.version, module_config=" ".join(modules),
                 python=sys.version.split()[0], ready=self.engine.active is not None)
        return True

    def _start_profile(self) -> None:
        """``HOTLINE_EDGE_PROFILE=FILE``: cProfile the module's work in the thread Unbound initialised
        it in (with ``num-threads: 1``, all of it), written to FILE when Unbound stops. For
        measuring (bench/README.md), never in production: it slows every call."""
        path = os.environ.get("HOTLINE_EDGE_PROFILE")
        if path:
            import cProfile
            self._profile = (cProfile.Profile(), path)
            self._profile[0].enable()
            self.log("warning", "profiling", file=path)

    def _stop_profile(self) -> None:
        if self._profile is not None:
            prof, path = self._profile
            prof.disable()
            prof.dump_stats(path)

    def _configure(self, cfg: Any) -> None:
        """The first configuration that loads (before its policy takes effect): the hit sink, as our
        resolver's supervisor chooses it, and the [resolver] settings that apply inside Unbound."""
        ub = self.ub
        spec = os.environ.get("HOTLINE_EDGE_HIT_SINK")
        if spec:                                     # tests and experiments: module:factory
            self.engine.sink = make_sink(spec, cfg)
            self._records = self.engine.wants_records
        elif cfg.blocklog.enabled:                   # the node's one blocked-lookup log writer, in this process
            from resolver.blocklog_ship import BlocklogWriter
            from resolver.errors import BlocklogError
            try:
                writer = BlocklogWriter(cfg.blocklog, self.log.child("resolver.blocklog"), listen=False).start()
            except BlocklogError as exc:
                self._sink_error = str(exc)
                self.log("error", "blocklog_unavailable", error=str(exc), effect="no policy is applied (queries are "
                         "refused) until the log opens", hint="fix [blocklog] path / the state directory, or set "
                         "[blocklog] enabled = false to serve without it")
                raise
            self.engine.sink = writer                    # submit_hits, as docs/contracts.md describes it
            self._records = True
            self.log("info", "blocklog_open", path=cfg.blocklog.path, head_seq=writer.stats.head_seq,
                     sealed=cfg.blocklog.compliance_public_key is not None)
            if cfg.blocklog.compliance_public_key is None:
                self.log("warning", "blocklog_without_client_addresses", hint="no [blocklog] compliance_public_key: "
                         "hits are logged without who asked")
        r = cfg.resolver
        self.not_ready_rcode = ub.RCODE_SERVFAIL if r.not_ready_rcode == "servfail" else ub.RCODE_REFUSED
        self.serve_without_policy = r.serve_without_policy
        if not r.break_dnssec:
            self.log("warning", "break_dnssec_ignored", why="Unbound shares one query state among clients "
                     "with and without DO=1; the plugin applies the policy to every client (break_dnssec "
                     "= true)")

    def _check_unbound(self, conf: str) -> None:
        """Options without which cached answers could bypass the policy: refuse to start."""
        required = {"ignore-cd-flag": "yes", "serve-expired": "no"}
        for name, want in required.items():
            got = unbound_option(conf, name)
            if got is not None and got != [want]:
                why = "with it Unbound would serve cached answers the policy never saw"
                self.log("critical", "unbound_option_refused", option=name, value=" ".join(got), required=want,
                         unbound_config=conf, why=why)
                raise PluginRefused(f"{conf}: {name}: {' '.join(got)}: set {name}: {want} ({why}; "
                                    "docs/unbound-plugin.md, 'Unbound settings')")
        if unbound_option(conf, "minimal-responses") == ["yes"]:
            self.log("warning", "minimal_responses_on", effect="Unbound strips the policy zone's SOA from the "
                     "additional section of rewritten answers", hint="minimal-responses: no")

    def deinit(self) -> bool:
        self._stop_profile()
        if self.runtime is not None:
            self.runtime.stop()
        close = getattr(self.engine.sink, "close", None)
        if close is not None:
            close()
        self.log("info", "plugin_stopped")
        return True

    # -- events ------------------------------------------------------------------------------
    def operate(self, mid: int, event: int, qstate: Any, qdata: Any) -> bool:
        ub = self.ub
        if event == ub.MODULE_EVENT_NEW:
            self._new(mid, qstate, qdata)
        elif event == ub.MODULE_EVENT_MODDONE:
            self._moddone(mid, qstate, qdata)
        elif event == ub.MODULE_EVENT_PASS:
            if "garden" in qdata:
                self._garden_done(mid, qstate, qdata)
            elif "pre" in qdata or "internal" in qdata:
                self._state(qstate, mid, ub.MODULE_WAIT_MODULE)
            else:
                self._new(mid, qstate, qdata)
        else:
            self._state(qstate, mid, ub.MODULE_ERROR)
        return True

    def inform_super(self, mid: int, qstate: Any, superqstate: Any, qdata: Any) -> bool:
        """A garden target's sub-query finished: keep its answer for the query that waits on it."""
        rcode = qstate.return_rcode
        msg = qstate.return_msg
        rrs: list[ReplyRR] = []
        if msg is not None and rcode == self.ub.RCODE_NOERROR:
            rcode = msg.rep.flags & 0xF
            rrs = self._answer_rrs(msg.rep)
        now = time.monotonic()
        if len(self.garden) > 10_000:
            self.garden = {k: v for k, v in self.garden.items() if now - v[0] < GARDEN_WAIT_S}
        self.garden[pointer_of(superqstate)] = (now, rcode, rrs)
        return True

    # -- the query arrives -------------------------------------------------------------------
    def _new(self, mid: int, qstate: Any, qdata: Any) -> None:
        ub = self.ub
        self.engine.counters.queries += 1
        mi = qstate.mesh_info
        rl = mi.reply_list if mi is not None else None
        q = qstate.qinfo
        if rl is None or q.qclass != ub.RR_CLASS_IN:
            qdata["internal"] = True            # Unbound's own sub-queries and prefetches: section 6
            self._state(qstate, mid, ub.MODULE_WAIT_MODULE)
            return
        qname = bytes(q.qname).lower()
        if qname == self.engine.flush_name:              # the runtime's request: work through the queue
            self._invalidate(qstate, FLUSH_CHUNK)
            qstate.return_rcode = ub.RCODE_REFUSED
            self._state(qstate, mid, ub.MODULE_FINISHED)
            return
        if self.engine.vetting.queue:
            self._invalidate(qstate, 16)                 # every query helps if that request got lost
        active = self.engine.active
        if active is None:
            if self.serve_without_policy:
                qdata["internal"] = True
                self._state(qstate, mid, ub.MODULE_WAIT_MODULE)
                return
            self.engine.counters.not_ready += 1
            qstate.return_rcode = self.not_ready_rcode
            self._state(qstate, mid, ub.MODULE_FINISHED)
            return
        client = rl.query_reply.addr if active.client_dependent else None
        out = self.engine.pre(active, qname, q.qtype, client)
        qdata["pre"] = out
        qdata["active"] = active
        self._apply(mid, qstate, qdata, out)

    # -- the answer is back ------------------------------------------------------------------
    def _moddone(self, mid: int, qstate: Any, qdata: Any) -> None:
        ub = self.ub
        self._state(qstate, mid, ub.MODULE_FINISHED)
        rd = qstate.query_flags & BIT_RD
        vetted = False
        try:
            pre: Outcome | None = qdata.get("pre")
            if pre is None:       # Unbound's own queries (prefetch, garden targets): never vetted
                return
            if pre.mode in (Mode.PASSTHRU, Mode.TCP_ONLY):        # PASSTHRU; TCP-Only asked over TCP
                self._emit(qstate, pre.hits)
                return
            msg = qstate.return_msg
            if msg is None or qstate.return_rcode != ub.RCODE_NOERROR:
                return
            active = qdata["active"]
            q = qstate.qinfo
            qname, qtype = bytes(q.qname).lower(), q.qtype
            rrs = self._answer_rrs(msg.rep)
            stages = None
            out = POST_NOT_NEEDED
            if self.engine.needs_post(active, pre, rrs):
                rl = qstate.mesh_info.reply_list
                client = rl.query_reply.addr if rl is not None and active.client_dependent else None
                out, stages = self.engine.post(active, qname, qtype, client, rrs)
            if out.mode in (Mode.PASS, Mode.POST):
                if rd and not active.client_dependent:
                    vetted = self._vet(qstate, active, qname, qtype, q.qclass, msg.rep, rrs, stages)
                return
            if out.mode is Mode.PASSTHRU:
                self._emit(qstate, out.hits)
                return
            self._apply(mid, qstate, qdata, out)
        finally:
            if rd and not vetted:
                qstate.no_cache_store = 1          # the validator stores it unvalidated: not servable

    def _vet(self, qstate: Any, active: Any, qname: bytes, qtype: int, qclass: int, rep: Any,
             rrs: list[ReplyRR], stages: tuple[Any, ...] | None) -> bool:
        """Let Unbound serve this answer from its cache (the policy hits nothing in it, for anyone)."""
        if rep.flags & 0xF not in (self.ub.RCODE_NOERROR, self.ub.RCODE_NXDOMAIN):
            return False
        if stages is None:
            stages = self.engine.stages(qname, rrs)
        expires = time.monotonic() + min(int(rep.ttl), 86_400) + 1
        return self.engine.vetting.vet(active, self.engine.active, pointer_of(qstate), (qname, qtype, qclass),
                                       stages, expires)

    def reply(self, qstate: Any) -> None:
        """Unbound replies from a finished query state (inplace_cb_reply): a vetted answer is in the
        cache by now; expire it if a policy that hits it took effect since it was vetted."""
        if qstate is None:
            return
        key = self.engine.vetting.stored(pointer_of(qstate), self.engine.active)
        if key is not None:
            self.ub.invalidateQueryInCache(qstate, qstate.qinfo)
            self.engine.vetting.invalidated += 1

    # -- expiring answers a new policy hits ---------------------------------------------------
    def _invalidate(self, qstate: Any, limit: int) -> int:
        """Expire up to ``limit`` queued answers in Unbound's message cache (their records too)."""
        ub = self.ub
        keys = self.engine.vetting.take(limit)
        if not keys:
            return 0
        saved_msg, saved_flags = qstate.return_msg, qstate.query_flags
        try:
            for qname, qtype, qclass in keys:
                qinfo = self._qinfo(qstate, qname, qtype, qclass)
                if qinfo is None:
                    continue
                for flags in ((BIT_RD, BIT_RD | BIT_CD) if qtype == T_AAAA else (BIT_RD,)):
                    qstate.query_flags = flags     # the cache files AAAA answers apart for CD=1 (DNS64)
                    ub.invalidateQueryInCache(qstate, qinfo)
        finally:
            qstate.return_msg, qstate.query_flags = saved_msg, saved_flags
        return len(keys)

    def _qinfo(self, qstate: Any, qname: bytes, qtype: int, qclass: int) -> Any | None:
        """A query_info for any name: built directly (ABI), else through set_return_msg, which
        replaces ``qstate.return_msg`` (callers restore it)."""
        assert self.abi is not None
        qi = self.abi.qinfo(self.ub.query_info, qname, qtype, qclass)
        if qi is not None:
            return qi
        if not self.ub.set_return_msg(qstate, names.to_text(qname), qtype, qclass, 0, 0, [], [], [], []):
            return None
        return qstate.return_msg.qinfo

    # -- policy answers Unbound may serve from its cache ---------------------------------------
    def _store(self, qstate: Any, out: Outcome) -> None:
        """Put a policy answer (NXDOMAIN or NODATA, the same for every client) into Unbound's cache,
        so repeats are answered there; the cache callback reports their hits and adds the EDE."""
        msg = qstate.return_msg
        active = self.engine.active
        if msg is None or active is None:
            return
        key = (bytes(qstate.qinfo.qname).lower(), qstate.qinfo.qtype, qstate.qinfo.qclass)
        if self.engine.vetting.synthesized(active, self.engine.active, key, self.engine.stored(active, out)):
            self.ub.storeQueryInCache(qstate, msg.qinfo, msg.rep, 0)

    def cache_callback(self) -> Callable[..., bool]:
        """inplace_cb_reply_cache: Unbound answers from its cache. A stored policy answer gets its
        EDE and its hits reported; anything else passes untouched.

        Unbound calls this for every answer it serves from its cache (pythonmod first wraps each of
        its seven arguments in a proxy object), so it is written for speed: pythonmod's C functions
        called directly instead of the proxies' properties, everything bound to locals, the stored
        answer a plain tuple, the counting one list append (``Engine.count_served`` folds them),
        and with a log the hits handed to the sink here, in the order the answers leave."""
        unb = self.ub._unboundmodule
        get_qname, get_qtype, get_qclass = unb._get_qname, unb.query_info_qtype_get, unb.query_info_qclass_get
        opt_append = unb.edns_opt_list_append
        synth = self.engine.vetting.synth          # the same dict for the life of the process
        served = self.engine.served.append
        plugin = self

        def cache_cb(qinfo: Any, qstate: Any, rep: Any, rcode: int, edns: Any, opt_list_out: Any, region: Any,
                     repinfo: Any = None, **_more: Any) -> bool:
            if not synth:
                return True
            try:
                by_type = synth.get(get_qname(qinfo).lower())
                if by_type is None:
                    return True
                got = by_type.get((get_qtype(qinfo), get_qclass(qinfo)))
                if got is None:
                    return True
                if got[2] is not None:
                    opt_append(opt_list_out, EDE_OPTION, got[2], region)
                served(got[3])
                if plugin._records and repinfo is not None and got[1]:
                    plugin._record_cached(got[1], repinfo)
            except Exception as exc:
                plugin.log("error", "cache_callback_failed", error=repr(exc))
            return True

        return cache_cb

    def _record_cached(self, hits: tuple[Any, ...], cr: Any) -> None:
        """The hits of an answer from Unbound's cache to the log, with the client of that answer."""
        unb = self.ub._unboundmodule
        ss = unb.comm_reply__addr_get(cr)
        self.engine.record(hits, [Client(unb._sockaddr_storage_addr(ss) or "", unb._sockaddr_storage_port(ss) or 0,
                                         self._transport(cr) or "unknown")])

    # -- acting on an outcome ----------------------------------------------------------------
    def _apply(self, mid: int, qstate: Any, qdata: Any, out: Outcome) -> None:
        ub = self.ub
        mode = out.mode
        if mode in (Mode.PASS, Mode.POST, Mode.PASSTHRU):
            self._state(qstate, mid, ub.MODULE_WAIT_MODULE)         # hits (PASSTHRU) at MODDONE, every client
            return
        if mode is Mode.TCP_ONLY:
            rl = qstate.mesh_info.reply_list
            if rl is not None and self._transport(rl.query_reply) == "tcp":
                if qstate.return_msg is None:                       # before resolution: get the truth
                    self._state(qstate, mid, ub.MODULE_WAIT_MODULE)
                else:
                    self._emit(qstate, out.hits)
                    self._state(qstate, mid, ub.MODULE_FINISHED)
                return
        if mode is Mode.GARDEN:
            assert out.decision is not None
            if self._start_garden(mid, qstate, qdata, out):
                return
            self.engine.counters.garden_fallbacks += 1
            self._answer(qstate, garden_fallback(out.decision, out.links))
        elif mode is Mode.DROP:
            assert self.abi is not None
            self._answer(qstate, Answer(ub.RCODE_NOERROR, 0))     # a placeholder the validator skips
            if not self.abi.drop(qstate):
                self._answer(qstate, Answer(ub.RCODE_SERVFAIL, 0, ede=EDE_PROHIBITED + b"dropped by policy"))
        else:
            assert out.answer is not None
            self._answer(qstate, out.answer)
            if out.cacheable:
                self._store(qstate, out)
        self.engine.count_answer(out.label)
        self._emit(qstate, out.hits)
        self._state(qstate, mid, ub.MODULE_FINISHED)

    def _answer(self, qstate: Any, a: Answer) -> None:
        """Make ``a`` the response (set_return_msg parses the records; EDE as an EDNS option)."""
        ub = self.ub
        q = qstate.qinfo
        if a.rcode not in (ub.RCODE_NOERROR, ub.RCODE_NXDOMAIN):
            qstate.return_msg = None
            qstate.return_rcode = a.rcode
        else:
            if not ub.set_return_msg(qstate, a.question or names.to_text(q.qname), q.qtype, q.qclass, a.flags, 0,
                                     [], list(a.answer), [], list(a.additional)):
                self.log("error", "answer_rejected_by_unbound", qname=names.to_text(q.qname),
                         records=list(a.answer) + list(a.additional))
                qstate.return_msg = None
                qstate.return_rcode = ub.RCODE_SERVFAIL
                return
            rep = qstate.return_msg.rep
            rep.flags = (rep.flags & ~0xF) | a.rcode
            rep.security = ub.sec_status_insecure   # policy data: the validator above leaves it alone
            qstate.return_rcode = ub.RCODE_NOERROR
        if a.ede:
            ub.edns_opt_list_append(qstate.edns_opts_front_out, EDE_OPTION, bytearray(a.ede), qstate.region)

    # -- walled gardens ----------------------------------------------------------------------
    def _start_garden(self, mid: int, qstate: Any, qdata: Any, out: Outcome) -> bool:
        """Resolve the garden target as a sub-query; its answer comes back through inform_super."""
        ub = self.ub
        assert out.decision is not None and self.abi is not None
        if not self.abi.sub_ok:
            return False
        saved = qstate.return_msg
        q = qstate.qinfo
        if not ub.set_return_msg(qstate, names.to_text(out.decision.cname_target), q.qtype, q.qclass,
                                 0, 0, [], [], [], []):
            return False
        target_qinfo = qstate.return_msg.qinfo     # a query_info for the target, in this query's region
        started = self.abi.attach_sub(qstate, target_qinfo, BIT_RD | (qstate.query_flags & BIT_CD))
        qstate.return_msg = saved   # (attach_sub copied the name into the sub-query's own region)
        if not started:
            return False
        qdata["garden"] = out
        self._state(qstate, mid, ub.MODULE_WAIT_SUBQUERY)
        return True

    def _garden_done(self, mid: int, qstate: Any, qdata: Any) -> None:
        out: Outcome = qdata.pop("garden")
        assert out.decision is not None
        got = self.garden.pop(pointer_of(qstate), None)
        if got is None:
            self.engine.counters.garden_fallbacks += 1
            ans = garden_fallback(out.decision, out.links)
        else:
            ans = garden_answer(out.decision, out.links, got[1], got[2])
        self._answer(qstate, ans)
        self.engine.count_answer(out.label)
        self._emit(qstate, out.hits)
        self._state(qstate, mid, self.ub.MODULE_FINISHED)

    # -- reading Unbound's structures --------------------------------------------------------
    def _emit(self, qstate: Any, hits: tuple[Any, ...]) -> None:
        """The hits of this query state, once per client it answers (Unbound may have joined several)."""
        if not hits:
            return
        if self._records:
            self.engine.emit(hits, self._clients(qstate))
            return
        n = 0
        r = qstate.mesh_info.reply_list
        while r is not None:
            n += 1
            r = r.next
        self.engine.count_hits(hits, n)

    def _clients(self, qstate: Any) -> list[Client]:
        out = []
        mi = qstate.mesh_info
        r = mi.reply_list if mi is not None else None
        while r is not None:
            cr = r.query_reply
            out.append(Client(cr.addr or "", cr.port or 0, self._transport(cr) or "unknown"))
            r = r.next
        return out

    def _transport(self, comm_reply: Any) -> str:
        return self.abi.transport(comm_reply) if self.abi is not None else ""

    def _answer_rrs(self, rep: Any) -> list[ReplyRR]:
        """The answer section as ReplyRRs (owner lowered, RDATA without Unbound's length prefix)."""
        ntohs = self.ub.ntohs
        out = []
        rrsets = rep.rrsets
        for i in range(rep.an_numrrsets):
            key = rrsets[i]
            rk = key.rk
            owner = bytes(rk.dname).lower()
            rtype, rclass = ntohs(rk.type), ntohs(rk.rrset_class)
            d = key.entry.data
            ttls, datas = d.rr_ttl, d.rr_data
            for j in range(d.count):
                out.append(ReplyRR(owner, rtype, rclass, ttls[j], bytes(datas[j])[2:], 0))
        return out


# -- pythonmod's entry points (module globals of the script Unbound runs) --------------------------

if __name__ == "__main__":
    import unboundmodule  # provided by Unbound's pythonmod (Debian: python3-unbound)

    _PLUGIN = Plugin(unboundmodule)

    def init_standard(id: int, env: Any) -> bool:
        return _PLUGIN.init(env, id)

    def deinit(id: int) -> bool:
        return _PLUGIN.deinit()

    def inform_super(id: int, qstate: Any, superqstate: Any, qdata: Any) -> bool:
        try:
            return _PLUGIN.inform_super(id, qstate, superqstate, qdata)
        except Exception as exc:
            _PLUGIN.log("error", "inform_super_failed", error=repr(exc))
            return True

    def operate(id: int, event: int, qstate: Any, qdata: Any) -> bool:
        try:
            return _PLUGIN.operate(id, event, qstate, qdata)
        except Exception as exc:
            _PLUGIN.log("error", "operate_failed", module_event=event, error=repr(exc))
            qstate.ext_state[id] = unboundmodule.MODULE_ERROR
            return True
