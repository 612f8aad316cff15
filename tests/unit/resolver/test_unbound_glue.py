"""The Unbound plugin's engine in memory: the policy answers it lets Unbound keep and serve from
its cache (looked up by the cache callback), and how the answers Unbound serves are counted.
Policies compiled from text; no Unbound here (tests/integration/unbound_plugin has the real one)."""

from __future__ import annotations

import threading

import rpz
from resolver.unbound_glue import Engine, Mode, Stored
from rpz import names

ZONE = """\
$ORIGIN rpz.test.
@ SOA ns.rpz.test. admin.rpz.test. 7 3600 600 86400 60
  NS localhost.
blocked.example CNAME .
                TXT "order=TW-1"
nodata.example  CNAME *.
local.example   A 192.0.2.80
"""
NEWER = ZONE.replace(" 7 3600", " 8 3600") + "other.example CNAME .\n"
CLIENT_IP = """\
$ORIGIN cip.rpz.test.
@ SOA ns.cip.rpz.test. admin.cip.rpz.test. 3 3600 600 86400 60
  NS localhost.
32.9.2.0.192.rpz-client-ip CNAME .
"""
SETTINGS = rpz.ZoneSettings(name="rpz.test.", ede_code=17, ede_text="order {order_ref}")
A, AAAA, IN = 1, 28, 1


def policy(*texts: str) -> rpz.Policy:
    return rpz.Policy([rpz.PolicyZone(rpz.compile_text(t.encode()), SETTINGS) for t in texts])


def engine(*texts: str) -> Engine:
    e = Engine()
    e.swap(policy(*texts), 1, 0.0)
    return e


def keep(e: Engine, name: str, qtype: int = A) -> tuple[tuple[bytes, int, int], Stored, bool]:
    """What the plugin does when it answers ``name`` and stores the answer in Unbound's cache."""
    active = e.active
    assert active is not None
    qname = names.from_text(name).lower()
    out = e.pre(active, qname, qtype, None)
    assert out.mode is Mode.ANSWER and out.cacheable, out
    key = (qname, qtype, IN)
    stored = e.stored(active, out)
    return key, stored, e.vetting.synthesized(active, e.active, key, stored)


def test_a_stored_policy_answer_carries_its_hits_its_ede_and_what_to_count() -> None:
    e = engine(ZONE)
    key, stored, kept = keep(e, "blocked.example.")
    assert kept
    assert e.vetting.stored_answer(key) == stored
    assert e.vetting.stored_answer((key[0], AAAA, IN)) is None      # per type: the AAAA was not answered
    assert e.vetting.stored_answer((b"\x05other" + key[0], A, IN)) is None
    generation, hits, ede, tally = stored
    assert generation == 1
    assert [(h[0], h[2], h[6], h[7]) for h in hits] == [("blocked.example.", "rpz.test.", "nxdomain", "TW-1")]
    assert isinstance(ede, bytearray)                 # what pythonmod's edns_opt_list_append takes
    assert bytes(ede) == b"\x00\x11order TW-1"      # info-code 17, the zone's text with the order
    assert e.tallies[tally] == ("nxdomain", (("rpz.test.", "nxdomain"),))


def test_the_stored_answers_are_emptied_on_a_swap_and_queued_for_expiry() -> None:
    e = engine(ZONE)
    k1, _, _ = keep(e, "blocked.example.")
    k2, _, _ = keep(e, "nodata.example.", AAAA)
    assert e.vetting.synth_count == 2
    queued = e.vetting.begin_swap(policy(NEWER), 0.0)
    assert e.vetting.synth == {} and e.vetting.synth_count == 0
    assert queued == 2 and set(e.vetting.queue) == {k1, k2}
    # while the new policy is being swapped in, nothing is kept (it could be the old one's answer)
    _, _, kept = keep(e, "blocked.example.")
    assert not kept and e.vetting.synth == {}
    e.swap(policy(NEWER), 2, 0.0)
    e.vetting.end_swap()
    key, stored, kept = keep(e, "blocked.example.")
    assert kept and stored[0] == 2 and stored[1][0][3] == 8       # the new generation, the new serial
    assert e.vetting.stored_answer(key) == stored


def test_an_answer_decided_on_a_policy_no_longer_active_is_not_kept() -> None:
    e = engine(ZONE)
    old = e.active
    assert old is not None
    out = e.pre(old, names.from_text("blocked.example."), A, None)
    e.swap(policy(NEWER), 2, 0.0)
    key = (names.from_text("blocked.example."), A, IN)
    assert not e.vetting.synthesized(old, e.active, key, e.stored(old, out))
    assert e.vetting.synth == {}


def test_no_answer_is_kept_while_any_zone_has_client_ip_rules() -> None:
    """Answers may differ per client: every query must reach the module (and the answer table
    the cache callback reads stays empty)."""
    e = engine(ZONE, CLIENT_IP)
    active = e.active
    assert active is not None and active.client_dependent
    qname = names.from_text("blocked.example.")
    out = e.pre(active, qname, A, "198.51.100.7")
    assert out.mode is Mode.ANSWER
    assert not e.vetting.synthesized(active, e.active, (qname, A, IN), e.stored(active, out))
    assert e.vetting.synth == {} and e.vetting.synth_count == 0


def test_answers_served_from_unbound_s_cache_are_counted_once_with_their_hits() -> None:
    e = engine(ZONE)
    _, nx, _ = keep(e, "blocked.example.")
    _, nodata, _ = keep(e, "nodata.example.")
    e.count_answer("nxdomain")                       # the first answer, from the module itself
    e.count_hits(nx[1], 1)
    for t in (nx[3], nx[3], nodata[3]):              # what the cache callback appends
        e.served.append(t)
    assert e.count_served() == 3
    assert e.count_served() == 0                     # folded once
    c = e.counters.as_dict()
    assert c["cache_answers"] == 3
    assert c["answers"] == {"nxdomain": 3, "nodata": 1}
    assert c["hits"] == {"rpz.test.|nxdomain": 3, "rpz.test.|nodata": 1}
    assert e.counters.total_hits() == 4


def test_answers_reported_while_they_are_being_counted_are_not_lost() -> None:
    """The cache callback appends from Unbound's threads while a runtime thread folds."""
    e = engine(ZONE)
    _, nx, _ = keep(e, "blocked.example.")
    n = 200_000
    done = threading.Event()

    def unbound_thread() -> None:
        append = e.served.append
        for _ in range(n):
            append(nx[3])
        done.set()

    t = threading.Thread(target=unbound_thread)
    t.start()
    folded = 0
    while not done.is_set():
        folded += e.count_served()
    t.join()
    folded += e.count_served()
    assert folded == n
    assert e.counters.cache_answers == n and e.counters.cached_hits == {("rpz.test.", "nxdomain"): n}
