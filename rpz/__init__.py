"""rpz: the pure policy core of hotline-edge.

Response Policy Zones (draft-vixie-dnsop-dns-rpz-00) parsed, compiled into packed lookup tables, and
evaluated with the draft's precedence rules. No sockets, no clock, no environment.

    zone = compile_text(data, "hotline.rpz")               # or compile_records(origin, records)
    policy = Policy([PolicyZone(zone, ZoneSettings(ede_code=17, ede_text="order {order_ref}"))])
    decision = policy.evaluate(client, qtype, [Stage(qname_wire)])
    batch = policy.decide_qnames(many_qname_wires)       # QNAME rules, vectorized; batch.decision(i)
"""

from .actions import RR, Action, ActionKind
from .batch import QnameDecisions
from .errors import (
    DnsNameError,
    PolicyConfigError,
    RecordError,
    RpzError,
    SnapshotError,
    ZoneReadError,
)
from .policy import NEED_RESPONSE, Decision, Override, Policy, PolicyZone, Stage, ZoneSettings
from .triggers import Prefix, Trigger, TriggerKind
from .zone import CompiledZone, compile_records, compile_text
from .zonetext import Rejection

__all__ = [
    "NEED_RESPONSE",
    "RR",
    "Action",
    "ActionKind",
    "CompiledZone",
    "Decision",
    "DnsNameError",
    "Override",
    "Policy",
    "PolicyConfigError",
    "PolicyZone",
    "Prefix",
    "QnameDecisions",
    "RecordError",
    "Rejection",
    "RpzError",
    "SnapshotError",
    "Stage",
    "Trigger",
    "TriggerKind",
    "ZoneReadError",
    "ZoneSettings",
    "compile_records",
    "compile_text",
]
