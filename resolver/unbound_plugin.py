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
from resolver.unbound_abi import BIT_CD, BIT_RD, Abi, pointer_of, unbound_version  # noqa: E402
from resolver.unbound_glue import (  # noqa: E402
    Answer,
    Client,
    Engine,
    Mode,
    Outcome,
    garden_answer,
    garden_fallback,
)
from resolver.unbound_runtime import Runtime  # noqa: E402
from resolver.wire import ReplyRR  # noqa: E402
from rpz import names  # noqa: E402 - after add_environment

EDE_OPTION = 15
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

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self, env: Any) -> bool:
        ub = self.ub
        modules = (env.cfg.module_conf or "").split()
        if "validator" not in modules or "python" not in modules or \
                modules.index("validator") > modules.index("python"):
            self.log("critical", "module_config_refused", module_config=" ".join(modules),
                     required="validator python iterator",
                     why="without the validator above this module Unbound would serve cached answers "
                         "without asking the policy")
            return False
        config = os.environ.get("HOTLINE_EDGE_CONFIG", DEFAULT_CONFIG)
        self.abi = Abi(unbound_version(), self.log)
        self.runtime = Runtime(config, self.engine, self.log)
        self.runtime.start()
        cfg = self.runtime.cfg
        if cfg is not None:
            self.engine.sink = make_sink(os.environ.get("HOTLINE_EDGE_HIT_SINK"))
            r = cfg.resolver
            self.not_ready_rcode = ub.RCODE_SERVFAIL if r.not_ready_rcode == "servfail" else ub.RCODE_REFUSED
            self.serve_without_policy = r.serve_without_policy
            if not r.break_dnssec:
                self.log("warning", "break_dnssec_ignored", why="Unbound shares one query state among clients "
                         "with and without DO=1; the plugin applies the policy to every client (break_dnssec "
                         "= true)")
        self.log("info", "plugin_started", config=config, unbound=self.abi.version, module_config=" ".join(modules),
                 python=sys.version.split()[0], ready=self.engine.active is not None)
        return True

    def deinit(self) -> bool:
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
                qstate.ext_state[mid] = ub.MODULE_WAIT_MODULE
            else:
                self._new(mid, qstate, qdata)
        else:
            qstate.ext_state[mid] = ub.MODULE_ERROR
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
            qstate.ext_state[mid] = ub.MODULE_WAIT_MODULE
            return
        active = self.engine.active
        if active is None:
            if self.serve_without_policy:
                qdata["internal"] = True
                qstate.ext_state[mid] = ub.MODULE_WAIT_MODULE
                return
            self.engine.counters.not_ready += 1
            qstate.return_rcode = self.not_ready_rcode
            qstate.ext_state[mid] = ub.MODULE_FINISHED
            return
        cr = rl.query_reply
        qname = bytes(q.qname).lower()
        out = self.engine.pre(active, qname, q.qtype, cr.addr)
        qdata["pre"] = out
        qdata["active"] = active
        self._apply(mid, qstate, qdata, out)

    # -- the answer is back ------------------------------------------------------------------
    def _moddone(self, mid: int, qstate: Any, qdata: Any) -> None:
        ub = self.ub
        if qstate.query_flags & BIT_RD:
            qstate.no_cache_store = 1          # the validator must not store it as servable
        qstate.ext_state[mid] = ub.MODULE_FINISHED
        pre: Outcome | None = qdata.get("pre")
        if pre is None:
            return
        if pre.mode in (Mode.PASSTHRU, Mode.TCP_ONLY):        # PASSTHRU; TCP-Only asked over TCP
            self.engine.emit(pre.hits, self._clients(qstate))
            return
        msg = qstate.return_msg
        if msg is None or qstate.return_rcode != ub.RCODE_NOERROR:
            return
        active = qdata["active"]
        rrs = self._answer_rrs(msg.rep)
        if not self.engine.needs_post(active, pre, rrs):
            return
        rl = qstate.mesh_info.reply_list
        client = rl.query_reply.addr if rl is not None else None
        out = self.engine.post(active, bytes(qstate.qinfo.qname).lower(), qstate.qinfo.qtype, client, rrs)
        qdata["post"] = out
        if out.mode in (Mode.PASS, Mode.POST):
            return
        if out.mode is Mode.PASSTHRU:
            self.engine.emit(out.hits, self._clients(qstate))
            return
        self._apply(mid, qstate, qdata, out)

    # -- acting on an outcome ----------------------------------------------------------------
    def _apply(self, mid: int, qstate: Any, qdata: Any, out: Outcome) -> None:
        ub = self.ub
        mode = out.mode
        if mode in (Mode.PASS, Mode.POST, Mode.PASSTHRU):
            qstate.ext_state[mid] = ub.MODULE_WAIT_MODULE         # hits (PASSTHRU) at MODDONE, every client
            return
        if mode is Mode.TCP_ONLY:
            rl = qstate.mesh_info.reply_list
            if rl is not None and self._transport(rl.query_reply) == "tcp":
                if qstate.return_msg is None:                       # before resolution: get the truth
                    qstate.ext_state[mid] = ub.MODULE_WAIT_MODULE
                else:
                    self.engine.emit(out.hits, self._clients(qstate))
                    qstate.ext_state[mid] = ub.MODULE_FINISHED
                return
        clients = self._clients(qstate)
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
        self.engine.count_answer(out.decision.action.label if out.decision else mode.name.lower())
        self.engine.emit(out.hits, clients)
        qstate.ext_state[mid] = ub.MODULE_FINISHED

    def _answer(self, qstate: Any, a: Answer) -> None:
        """Make ``a`` the response (set_return_msg parses the records; EDE as an EDNS option)."""
        ub = self.ub
        q = qstate.qinfo
        if a.rcode not in (ub.RCODE_NOERROR, ub.RCODE_NXDOMAIN):
            qstate.return_msg = None
            qstate.return_rcode = a.rcode
        else:
            msg = ub.DNSMessage(names.to_text(bytes(q.qname)), q.qtype, q.qclass, a.flags)
            msg.answer = list(a.answer)
            msg.additional = list(a.additional)
            if not msg.set_return_msg(qstate):
                self.log("error", "answer_rejected_by_unbound", qname=names.to_text(bytes(q.qname)),
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
        qstate.return_msg = saved
        if not started:
            return False
        qdata["garden"] = out
        qstate.ext_state[mid] = ub.MODULE_WAIT_SUBQUERY
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
        self.engine.count_answer(out.decision.action.label)
        self.engine.emit(out.hits, self._clients(qstate))
        qstate.ext_state[mid] = self.ub.MODULE_FINISHED

    # -- reading Unbound's structures --------------------------------------------------------
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
        return _PLUGIN.init(env)

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
