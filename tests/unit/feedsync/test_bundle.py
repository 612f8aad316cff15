"""The bundle format: shape checks, guards, whole-version scope, and compilation to RPZ text that
the rpz core loads and enforces (including DNS wildcard semantics, DESIGN.md section 5)."""

from __future__ import annotations

import json

import pytest

import rpz
from feedsync import bundle as b
from feedsync.errors import BundleFormatError
from rpz import names

from .helpers import DAY, T0, entry

GUARDS = b.Guards(max_duration_s=400 * DAY, protected=("isp.test", "112.emergency.test"),
                  stop_pages={"default": "stop.hotline-edge.test"},
                  is_public_suffix=lambda n: n in {"test", "co.test", "github.test"})


def parse(e: dict) -> b.Entry | b.EntryRejection:
    return b.parse_entry(e, 0)


def reason(e: dict) -> b.Reason | None:
    got = parse(e)
    if isinstance(got, b.EntryRejection):
        return got.reason
    why = b.check_entry(got, 0, GUARDS)
    return None if why is None else why.reason


def test_good_entry_parses_normalised() -> None:
    got = parse(entry(1, target="WWW.Bad.TEST.", match="Subdomains"))
    assert isinstance(got, b.Entry)
    assert got.target == "www.bad.test"
    assert got.match is b.Match.SUBDOMAINS
    assert got.effective_at == T0 - 3600
    assert b.check_entry(got, 0, GUARDS) is None


@pytest.mark.parametrize(("over", "expected"), [
    ({"order_ref": ""}, b.Reason.MISSING_FIELD),
    ({"legal_basis": None}, b.Reason.MISSING_FIELD),
    ({"issuing_authority": "  "}, b.Reason.MISSING_FIELD),
    ({"expires_at": ""}, b.Reason.MISSING_FIELD),
    ({"retention_days": None}, b.Reason.MISSING_FIELD),
    ({"action": "stop_page", "stop_page": ""}, b.Reason.MISSING_FIELD),
    ({"match": "prefix"}, b.Reason.BAD_VALUE),
    ({"action": "redirect"}, b.Reason.BAD_VALUE),
    ({"effective_at": "2026-11-18 10:00"}, b.Reason.BAD_VALUE),   # no zone
    ({"retention_days": "x"}, b.Reason.BAD_VALUE),
    ({"order_ref": 'TW"1'}, b.Reason.BAD_VALUE),
    ({"target": "https://bad.test/kit/login.php"}, b.Reason.URL_TARGET),
    ({"target": "bad.test/path"}, b.Reason.URL_TARGET),
    ({"target": "bad..test"}, b.Reason.MALFORMED_NAME),
    ({"target": "-bad.test"}, b.Reason.MALFORMED_NAME),
    ({"target": "x" * 64 + ".test"}, b.Reason.MALFORMED_NAME),
    ({"target": "32.1.0.0.127.rpz-ip"}, b.Reason.MALFORMED_NAME),     # would become an rpz-ip trigger
    ({"target": "evil.rpz-passthru"}, b.Reason.MALFORMED_NAME),
    ({"target": "test"}, b.Reason.PUBLIC_SUFFIX),
    ({"target": "co.test"}, b.Reason.PUBLIC_SUFFIX),
    ({"target": "isp.test"}, b.Reason.PROTECTED),
    ({"target": "mail.isp.test"}, b.Reason.PROTECTED),
    ({"target": "emergency.test", "match": "subdomains"}, b.Reason.PROTECTED),   # would cover 112.emergency.test
    ({"target": "stop.hotline-edge.test"}, b.Reason.PROTECTED),                   # the stop page host
    ({"expires_at": b.format_time(T0 - 7200)}, b.Reason.BAD_TIMES),              # before effective_at
    ({"issued_at": b.format_time(T0)}, b.Reason.BAD_TIMES),                      # effect before issue
    ({"expires_at": b.format_time(T0 + 500 * DAY)}, b.Reason.TOO_LONG),
    ({"action": "stop_page", "stop_page": "nope"}, b.Reason.UNKNOWN_STOP_PAGE),
])
def test_each_guard_refuses_with_its_reason(over: dict, expected: b.Reason) -> None:
    assert reason(entry(7, **over)) is expected


def test_guards_that_do_not_apply() -> None:
    # exact block of a parent of a protected name does not touch the protected name
    assert reason(entry(1, target="emergency.test")) is None
    # a passthru never blocks, so the protected list does not stop it
    assert reason(entry(1, target="mail.isp.test", action="passthru")) is None
    assert reason(entry(1, target="emergency.test", match="subdomains", action="passthru")) is None
    assert reason(entry(1, action="stop_page", stop_page="default")) is None


def test_idna_target_becomes_a_label() -> None:
    got = parse(entry(1, target="bücher.bad.test"))
    assert isinstance(got, b.Entry)
    assert got.target == "xn--bcher-kva.bad.test"


def doc(entries: list[dict], feed: str = "hk", seq: int = 3) -> bytes:
    return b.dump_bundle(feed, seq, T0, entries)


def test_bundle_round_trip_and_screen_keeps_the_rest() -> None:
    entries = [entry(1), entry(2, target="https://x.test/a"), entry(3), entry(3, target="dup.bad.test")]
    parsed = b.parse_bundle(doc(entries))
    assert (parsed.feed, parsed.sequence, parsed.generated_at) == ("hk", 3, T0)
    s = b.screen(parsed, GUARDS)
    assert [e.entry_id for _, e in s.accepted] == ["E-1", "E-3"]
    assert [(r.entry_id, r.reason) for r in s.rejected] == [("E-2", b.Reason.URL_TARGET),
                                                            ("E-3", b.Reason.DUPLICATE)]


@pytest.mark.parametrize("data", [b"", b"[]", b'{"format": "other"}', b"\xff",
                                  json.dumps({"format": b.FORMAT, "feed": "hk", "sequence": -1,
                                              "generated_at": "2026-11-18T00:00:00Z", "entries": []}).encode(),
                                  json.dumps({"format": b.FORMAT, "feed": "hk", "sequence": 1,
                                              "generated_at": "2026-11-18T00:00:00Z", "entries": {}}).encode()])
def test_not_a_bundle(data: bytes) -> None:
    with pytest.raises(BundleFormatError):
        b.parse_bundle(data)


def test_scope() -> None:
    parsed = b.parse_bundle(doc([entry(1), entry(2, category="csam")]))
    assert b.out_of_scope(parsed.entries, ["fraud", "csam"], []) is None
    assert "category 'csam'" in (b.out_of_scope(parsed.entries, ["fraud"], []) or "")
    assert "issuing_authority" in (b.out_of_scope(parsed.entries, [], ["Other Court"]) or "")


def test_orders_csv_and_json() -> None:
    rows = [entry(1), entry(2)]
    header = list(rows[0])
    csv_text = ",".join(header) + "\n" + "\n".join(",".join(str(r[h]) for h in header) for r in rows) + "\n"
    from_csv = b.read_orders(csv_text.encode(), "orders.csv")
    assert [r["target"] for r in from_csv] == ["site1.bad.test", "site2.bad.test"]
    assert b.read_orders(json.dumps(rows).encode(), "o.json") == rows
    assert b.read_orders(json.dumps({"entries": rows}).encode(), "o.json") == rows
    with pytest.raises(BundleFormatError, match=r"orders\.csv:1: unknown column"):
        b.read_orders(b"entry_id,colour\nE-1,red\n", "orders.csv")


def accepted(*entries: dict) -> list[tuple[int, b.Entry]]:
    out = []
    for i, e in enumerate(entries):
        got = b.parse_entry(e, i)
        assert isinstance(got, b.Entry)
        out.append((i, got))
    return out


def decide(text: bytes, qname: str) -> rpz.Decision | None:
    zone = rpz.compile_text(text, "t", "feed.rpz.test")
    assert not zone.rejections, zone.rejections
    policy = rpz.Policy([rpz.PolicyZone(zone, rpz.ZoneSettings())])
    got = policy.evaluate("192.0.2.1", 1, [rpz.Stage(names.from_text(qname + "."))])
    assert got is None or isinstance(got, rpz.Decision)
    return got


def test_compiled_zone_loads_and_enforces_with_order_refs() -> None:
    acc = accepted(entry(1, target="bad.test", match="subdomains"),
                   entry(2, target="shop.fraud.test", action="stop_page", stop_page="default"),
                   entry(3, target="nodata.test", action="nodata"),
                   entry(4, target="later.test", effective_at=b.format_time(T0 + DAY)),
                   entry(5, target="gone.test", effective_at=b.format_time(T0 - 9 * DAY),
                         expires_at=b.format_time(T0 - DAY)))
    c = b.compile_zone("feed.rpz.test", 42, acc, GUARDS.stop_pages, now=T0)
    assert c.in_force == ("E-1", "E-2", "E-3")
    zone = rpz.compile_text(c.text, "t", "feed.rpz.test")
    assert zone.serial == 42
    for qname, kind, ref in [("bad.test", rpz.ActionKind.NXDOMAIN, "TW-2026-0001"),
                             ("deep.www.bad.test", rpz.ActionKind.NXDOMAIN, "TW-2026-0001"),
                             ("shop.fraud.test", rpz.ActionKind.LOCAL_DATA, "TW-2026-0002"),
                             ("nodata.test", rpz.ActionKind.NODATA, "TW-2026-0003")]:
        d = decide(c.text, qname)
        assert d is not None and d.action is kind, qname
        assert zone.ref_of(zone.qname.match(names.from_text(qname + "."))[0]) == ref  # type: ignore[index]
    assert decide(c.text, "later.test") is None      # not yet in force
    assert decide(c.text, "gone.test") is None       # past its own expiry
    assert decide(c.text, "fraud.test") is None      # exact entries do not cover the parent


def test_wildcard_gap_filling_keeps_every_name_under_a_subdomains_target_covered() -> None:
    """DESIGN.md section 5: `a.sub.bad.test` beside `*.bad.test` makes `sub.bad.test` an empty
    non-terminal, which stops the wildcard; the compiler adds what is needed."""
    acc = accepted(entry(1, target="bad.test", match="subdomains"),
                   entry(2, target="a.sub.bad.test", action="passthru"))
    rules, _, _ = b.rules_for(acc, {}, T0)
    naive = _text(rules)
    # the problem is real in the rpz core (BIND semantics): without gap filling the name escapes
    assert decide(naive, "x.sub.bad.test") is None
    assert decide(naive, "sub.bad.test") is None
    c = b.compile_zone("feed.rpz.test", 1, acc, {}, now=T0)
    assert c.gap_names == 3  # *.sub.bad.test, sub.bad.test, *.a.sub.bad.test
    for qname in ("x.sub.bad.test", "sub.bad.test", "y.x.sub.bad.test", "z.a.sub.bad.test", "q.bad.test"):
        d = decide(c.text, qname)
        assert d is not None and d.action is rpz.ActionKind.NXDOMAIN, qname
    d = decide(c.text, "a.sub.bad.test")
    assert d is not None and d.action is rpz.ActionKind.PASSTHRU


def test_gap_filling_respects_a_nested_subdomains_target() -> None:
    acc = accepted(entry(1, target="bad.test", match="subdomains"),
                   entry(2, target="shop.bad.test", match="subdomains", action="nodata"),
                   entry(3, target="k.z.shop.bad.test", action="passthru"))
    c = b.compile_zone("feed.rpz.test", 1, acc, {}, now=T0)
    d = decide(c.text, "w.z.shop.bad.test")
    assert d is not None and d.action is rpz.ActionKind.NODATA      # the nearer order wins below it
    d = decide(c.text, "z.shop.bad.test")
    assert d is not None and d.action is rpz.ActionKind.NODATA
    d = decide(c.text, "other.bad.test")
    assert d is not None and d.action is rpz.ActionKind.NXDOMAIN


def test_same_owner_conflict() -> None:
    acc = accepted(entry(1, target="dup.test"), entry(2, target="dup.test", action="nodata"),
                   entry(3, target="dup.test"))
    c = b.compile_zone("feed.rpz.test", 1, acc, {}, now=T0)
    assert [(r.entry_id, r.reason) for r in c.conflicts] == [("E-2", b.Reason.CONFLICT)]
    assert c.in_force == ("E-1", "E-3")   # same action: enforced by one rule carrying the first order


def _text(rules: dict[str, b.Rule]) -> bytes:
    lines = ["$ORIGIN feed.rpz.test.", "@ 60 SOA ns.feed.rpz.test. noc.feed.rpz.test. 1 3600 600 864000 60",
             "@ 60 NS localhost."]
    lines += [f"{o} 60 CNAME {r.cname}" for o, r in rules.items()]
    return ("\n".join(lines) + "\n").encode()


def test_rejections_name_the_position_in_the_document() -> None:
    parsed = b.parse_bundle(doc([entry(1, target="http://x.test/"), entry(2), entry(3, target="isp.test")]))
    s = b.screen(parsed, GUARDS)
    assert [(r.entry_id, r.index) for r in s.rejected] == [("E-1", 0), ("E-3", 2)]
    assert [i for i, _ in s.accepted] == [1]


