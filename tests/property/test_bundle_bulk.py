"""feedsync.bundlebulk reads, screens and compiles a bundle by column; feedsync.bundle does it one
entry at a time and defines what every entry means. Both must agree on every document: the same
rejections (reason, position, detail), the same accepted entries, the same rules, the same zone
text, and a compiled zone that decides every name alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rpz
from feedsync import bundle as b
from feedsync import bundlebulk as bulk
from feedsync.sync import public_suffix_check
from rpz import names
from rpz.policy import Policy, PolicyZone, Stage, ZoneSettings

T0 = 1_795_341_600            # 2026-11-22T10:00:00Z
ZONE = "feed.rpz.test"
STOP = {"sp": "stop.example.test", "sp2": "warn.example.net"}
PSL = public_suffix_check()
GUARDS = b.Guards(400 * 86400, ("isp.example.test", "emergency.example.net"), STOP, PSL)

# well-formed values (some still refused by the guards, some in need of normalizing) ...
GOOD: dict[str, list[Any]] = {
    "entry_id": ["E-{i}", "E-{i}", "E-{i}", "E-{m}", " E-pad "],
    "order_ref": ["TW-{i}", "TW-1", " R-2 ", "TW-{m}"],
    "issuing_authority": ["Court A", "Court B"],
    "legal_basis": ["Example Act art. 8"],
    "category": ["fraud", "CSAM", " fraud "],
    "target": ["bad.example.test", "a.bad.example.test", "x.a.bad.example.test", "shop.example.test",
               "deep.x.a.bad.example.test", "s{i}.bad.example.test", "Bad.Example.TEST", "bad.example.test.",
               " spaced.example.test ", "b\u00fccher.example.test", "example.test", "co.uk", "github.io",
               "x.ck", "www.ck", "under_score.example.test", "isp.example.test", "mail.isp.example.test",
               "example.net", "stop.example.test", "warn.example.net", "x" * 63 + ".test",
               ("a." * 127)[:251].rstrip(".") + ".test", "a1-b.example.test", "xrpz-y.example.test",
               "shop.rpz-x.example.test"],
    "match": ["exact", "subdomains", "exact", "Subdomains"],
    "action": ["nxdomain", "nodata", "stop_page", "passthru", "nxdomain", "NXDOMAIN"],
    "stop_page": ["sp", "sp2", "", "nope"],
    "issued_at": ["2026-11-21T10:00:00Z", "2026-11-22T09:00:00Z", "2026-11-22T18:00:00+08:00"],
    "effective_at": ["2026-11-21T10:00:00Z", "2026-11-22T09:00:00Z", "2026-11-23T10:00:00Z",
                     "2024-02-29T00:00:00Z", "2026-11-22T18:00:00+08:00"],
    "expires_at": ["2027-02-01T00:00:00Z", "2026-11-23T10:00:00Z", "2026-11-22T09:00:00Z", "2099-01-01T00:00:00Z",
                   "2027-02-01T08:00:00+08:00"],
    "appeal_contact": ["appeals@hotline.test"],
    "retention_days": [180, 0, "180"],
}
# ... and malformed ones, one of which may replace a field
BAD: dict[str, list[Any]] = {
    "entry_id": ["", 9, None, "   "],
    "order_ref": ['bad"ref', "x" * 129, "\u00e9", "", "a\\b", "tab\there"],
    "issuing_authority": ["", 3],
    "category": [None, ""],
    "target": ["http://bad.example.test/x", "com", "rpz-ip.example.test", "x.rpz-y.test", "a..example.test",
               "-a.example.test", "a-.example.test", "x" * 64 + ".test", ("a." * 130) + "test", "", 7, None,
               "a b.example.test", ".lead.example.test", "bad.example.test\n"],
    "match": ["all", "", 1],
    "action": ["block", "", None],
    "stop_page": [None, 4],
    "issued_at": ["2026-11-22 10:00:00Z", "2026-11-22T10:00:00", "", None, 5],
    "effective_at": ["2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z",
                     "2026-11-22T10:00:60Z", "\u0662026-11-22T10:00:00Z", "0000-01-01T00:00:00Z"],
    "expires_at": ["2026-11-31T00:00:00Z", "2026-11-22T10:00Z", "2026-11-22T10:00:00.5Z"],
    "appeal_contact": ["  ", None],
    "retention_days": [-1, True, 1.5, None, "", "x"],
}


def _fill(v: Any, i: int) -> Any:
    return v.format(i=i, m=i % 3) if isinstance(v, str) and "{" in v else v


@st.composite
def entries_st(draw: Any) -> list[Any]:
    n = draw(st.integers(0, 16))
    out: list[Any] = []
    for i in range(n):
        if draw(st.integers(0, 40)) == 0:
            out.append(draw(st.sampled_from([None, 5, "text", ["a"]])))
            continue
        e = {k: _fill(draw(st.sampled_from(v)), i) for k, v in GOOD.items()}
        if draw(st.integers(0, 3)) == 0:
            k = draw(st.sampled_from(sorted(BAD)))
            e[k] = draw(st.sampled_from(BAD[k]))
        if draw(st.integers(0, 25)) == 0:
            e.pop(draw(st.sampled_from(b.ALL_FIELDS)), None)
        out.append(e)
    return out


def _doc(entries: list[Any], columns: bool = False) -> bytes:
    """A /1 document of the entries as given, or (columns) the /2 document of its object entries."""
    if columns:
        return b.dump_bundle("f", 1, T0, [e for e in entries if isinstance(e, dict)])
    return json.dumps({"format": b.FORMAT, "feed": "f", "sequence": 1, "generated_at": "2026-11-22T10:00:00Z",
                       "entries": entries}).encode()


def _decide(zone: Any, qname: str) -> Any:
    p = Policy([PolicyZone(zone, ZoneSettings())])
    d = p.evaluate(None, 1, [Stage(names.from_text(qname))])
    return d and (d.action, d.owner, d.order_ref, d.records)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries_st(), st.sampled_from([T0, T0 + 86400 * 2]), st.booleans())
def test_columns_equal_the_reference(entries, now, columns):
    data = _doc(entries, columns)
    ref = b.parse_bundle(data)
    rs = b.screen(ref, GUARDS)
    rc = b.compile_zone(ZONE, 7, rs.accepted, STOP, now=now)
    head, cols, rej = bulk.read_bundle(data)
    assert (head.feed, head.sequence, head.generated_at) == (ref.feed, ref.sequence, ref.generated_at)
    assert sorted(int(i) for i in cols.valid.nonzero()[0]) == list(ref.indices)
    for i, e in zip(ref.indices, ref.entries, strict=True):
        assert cols.entry(i) == e
    cs = bulk.screen_columns(cols, rej, GUARDS)
    assert [r.to_json() for r in cs.rejected] == [r.to_json() for r in rs.rejected]
    assert sorted(int(i) for i in cs.accepted.nonzero()[0]) == [i for i, _ in rs.accepted]
    cr = bulk.rule_table(cols, cs.accepted, STOP, now)
    assert [r.to_json() for r in cr.conflicts] == [r.to_json() for r in rc.conflicts]
    assert dict(cr.rules.items()) == rc.rules
    assert (cr.gap_names, cr.in_force) == (rc.gap_names, len(rc.in_force))
    assert sorted(cols.entry_id[i] for i in cr.used.nonzero()[0]) == sorted(rc.in_force)
    assert cr.rules.text(ZONE, 7, 60) == rc.text
    if len(cr.rules):
        fast = cr.rules.compile(ZONE, 7, 60, "columns")
        slow = rpz.compile_records(ZONE, b.zone_records(ZONE, 7, rc.rules, list(rc.rules)), "records")
        assert (fast.stats.rules, fast.stats.by_action) == (slow.stats.rules, slow.stats.by_action)
        hits = 0
        for owner in rc.rules:
            for q in (owner.replace("*", "w"), "z." + owner.replace("*.", ""), owner.replace("*.", "")):
                got = _decide(fast, q + ".")
                assert got == _decide(slow, q + "."), q
                hits += got is not None
        assert hits >= len(rc.rules)   # every owner decides its own name (or, a wildcard, one below)


def test_wildcard_gaps_by_column():
    """A rule below a subdomains rule makes names between them exist; the gap owners the reference
    adds for that are added by column too (fill_gaps finds them through the parents)."""
    entries = [
        {"entry_id": "E-1", "order_ref": "R-1", "target": "bad.example.test", "match": "subdomains"},
        {"entry_id": "E-2", "order_ref": "R-2", "target": "x.y.z.bad.example.test", "match": "exact",
         "action": "passthru"},
        {"entry_id": "E-3", "order_ref": "R-3", "target": "q.other.example.test", "match": "subdomains"},
    ]
    base = {"issuing_authority": "Court A", "legal_basis": "Act", "category": "fraud", "action": "nxdomain",
            "stop_page": "", "issued_at": "2026-11-21T10:00:00Z", "effective_at": "2026-11-21T10:00:00Z",
            "expires_at": "2027-01-01T00:00:00Z", "appeal_contact": "a@hotline.test", "retention_days": 180}
    data = _doc([{**base, **e} for e in entries])
    _, cols, rej = bulk.read_bundle(data)
    cr = bulk.rule_table(cols, bulk.screen_columns(cols, rej, GUARDS).accepted, STOP, T0)
    rc = b.compile_zone(ZONE, 1, b.screen(b.parse_bundle(data), GUARDS).accepted, STOP, now=T0)
    assert cr.gap_names == rc.gap_names > 0
    assert dict(cr.rules.items()) == rc.rules
    assert "*.y.z.bad.example.test" in cr.rules and cr.rules["z.bad.example.test"].added


def test_public_suffixes_by_column_match_the_package():
    names_ = ["co.uk", "example.co.uk", "github.io", "x.github.io", "x.ck", "www.ck", "a.b.ck", "com",
              "example.com", "kobe.jp", "city.kobe.jp", "x.city.kobe.jp", "bad.example.test", "test",
              "blogspot.com", "x.blogspot.com"]
    assert PSL.which(names_) == [k for k, n in enumerate(names_) if PSL(n)]
    assert {names_[k] for k in PSL.which(names_)} >= {"co.uk", "github.io", "x.ck", "com"}


def test_orjson_refusal_falls_back_to_json():
    """A document orjson refuses but json reads (NaN) is read as json reads it: the entry with
    NaN is refused on its own, the rest apply."""
    good = {"entry_id": "E-1", "order_ref": "R-1", "issuing_authority": "Court A", "legal_basis": "Act",
            "category": "fraud", "target": "bad.example.test", "match": "exact", "action": "nxdomain",
            "stop_page": "", "issued_at": "2026-11-21T10:00:00Z", "effective_at": "2026-11-21T10:00:00Z",
            "expires_at": "2027-01-01T00:00:00Z", "appeal_contact": "a@hotline.test", "retention_days": 180}
    data = _doc([good, {**good, "entry_id": "E-2"}]).replace(b'"retention_days": 180}]', b'"retention_days": NaN}]')
    _, cols, rej = bulk.read_bundle(data)
    assert [r.reason for r in rej] == [b.Reason.BAD_VALUE] and rej[0].entry_id == "E-2"
    assert cols.valid.tolist() == [True, False]


def _compare(entries: list[Any], now: float = T0, columns: bool = False) -> None:
    data = _doc(entries, columns)
    ref = b.parse_bundle(data)
    rs = b.screen(ref, GUARDS)
    rc = b.compile_zone(ZONE, 7, rs.accepted, STOP, now=now)
    _, cols, rej = bulk.read_bundle(data)
    assert sorted(int(i) for i in cols.valid.nonzero()[0]) == list(ref.indices)
    assert [cols.entry(i) for i in ref.indices] == list(ref.entries)
    cs = bulk.screen_columns(cols, rej, GUARDS)
    assert [r.to_json() for r in cs.rejected] == [r.to_json() for r in rs.rejected]
    cr = bulk.rule_table(cols, cs.accepted, STOP, now)
    assert [r.to_json() for r in cr.conflicts] == [r.to_json() for r in rc.conflicts]
    assert dict(cr.rules.items()) == rc.rules


def test_every_value_of_every_field():
    """Each well-formed and malformed value of each field, in an otherwise valid entry, is read,
    refused or accepted exactly as the reference does (deterministic sweep beside the property)."""
    for k, good in GOOD.items():
        values = good + BAD.get(k, [])
        entries = []
        for j, v in enumerate(values):
            e = {f: _fill(GOOD[f][0], 100 + j) for f in GOOD}
            e["target"] = f"t{j}.example.test" if k != "target" else v
            e[k] = _fill(v, 100 + j)
            entries.append(e)
        for columns in (False, True):
            _compare(entries, columns=columns)
            _compare(entries, T0 + 86400 * 400, columns)


def test_compile_rule_columns_takes_rpz_dash_inside_a_label_and_refuses_it_at_the_start():
    from rpz.bulk import compile_rule_columns
    from rpz.errors import ZoneReadError
    head = b.zone_records(ZONE, 1, {}, (), 60)
    apex = b._wire(ZONE + ".")
    z = compile_rule_columns(apex, head, ["xrpz-y.example.test"], [0], [b"\x00"], 60, [b"R-1"], "t")
    assert _decide(z, "xrpz-y.example.test.")[1] == f"xrpz-y.example.test.{ZONE}."
    try:
        compile_rule_columns(apex, head, ["rpz-ip.example.test"], [0], [b"\x00"], 60, [b"R-1"], "t")
    except ZoneReadError as exc:
        assert "rpz-ip.example.test" in str(exc)
    else:
        raise AssertionError("an owner under an rpz- label was compiled as a QNAME rule")


def test_the_two_formats_hold_the_same_entries():
    """A /2 document (columns, few-valued fields encoded) reads as the /1 document of the same
    entries, by both readers; a field missing from some entries is absent there in both."""
    rows = [{f: _fill(GOOD[f][0], i) for f in GOOD} for i in range(12)]
    rows[3].pop("appeal_contact")
    rows[5]["extra"] = "kept as an unknown field"
    one, two = _doc(rows), _doc(rows, columns=True)
    doc2 = json.loads(two)
    assert doc2["format"] == b.FORMAT_COLUMNS and isinstance(doc2["columns"]["legal_basis"], dict)
    r1, r2 = b.parse_bundle(one), b.parse_bundle(two)
    assert (r1.entries, r1.rejected, r1.indices) == (r2.entries, r2.rejected, r2.indices)
    assert [r.reason for r in r1.rejected] == [b.Reason.MISSING_FIELD]
    (_, c1, j1), (_, c2, j2) = bulk.read_bundle(one), bulk.read_bundle(two)
    assert j1 == j2 and c1.valid.tolist() == c2.valid.tolist()
    assert [c1.entry(i) for i in r1.indices] == [c2.entry(i) for i in r1.indices]


def test_malformed_columns_refuse_the_document():
    base = json.loads(_doc([{f: _fill(GOOD[f][0], i) for f in GOOD} for i in range(8)], columns=True))
    def index(value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["columns"]["legal_basis"]["index"].__setitem__(0, value)

    cases = [
        ("count", lambda d: d.update(count=-1)),
        ("columns must be an object", lambda d: d.update(columns=[1])),
        ("has 7 values", lambda d: d["columns"].update(entry_id=d["columns"]["entry_id"][:7])),
        ("index must hold positions", index(9)),
        ("index must hold positions", index(-1)),
        ("index must hold positions", index(True)),     # a JSON true is not a position
        ("index must hold positions", index(0.0)),
        ("index must hold positions", index(2**70)),
        ("index must hold positions", index("0")),
        ("index must hold positions", index([0])),
        ("encoded column", lambda d: d["columns"]["legal_basis"].update(extra=1)),
        ("must be a list", lambda d: d["columns"].update(target="bad.example.test")),
        ("has 7 values", lambda d: d["columns"]["legal_basis"].update(index=[0] * 7)),
    ]
    for words, change in cases:
        doc = json.loads(json.dumps(base))
        change(doc)
        data = json.dumps(doc).encode()
        for reader in (b.parse_bundle, bulk.read_bundle):
            try:
                reader(data)
            except b.BundleFormatError as exc:
                assert words in str(exc), (words, str(exc))
            else:
                raise AssertionError(f"{words}: accepted")


def test_target_shape_check_never_passes_a_name_the_reference_would_change():
    """bulk._target_bad may send a canonical name to the reference (harmless), never the other way:
    every row it passes is one normalize_target returns unchanged. Rows are checked side by side,
    so a fault at one row's edge must be charged to that row, not to its neighbour."""
    tricky = ["a.example.test", "-a.example.test", "a-.example.test", "a.-b.test", "a.b-.test", ".a.test",
              "a.test.", "a..test", "rpz-x.example.test", "x.rpz-y.test", "xrpz-y.test", "a\nb.test",
              "a.test\n", "Upper.test", "a_b.test", "a" * 63 + ".test", "a" * 64 + ".test",
              "b." + "c" * 64, "x" * 250 + ".test", "nodot", "", "ü.test", "a.b.c.d.e.f.test", "-", ".",
              "a-b.c-d.test", "rpz-", "a.rpz-", "1.2.3.4", "a.test-", "-a.test"]
    rng = __import__("random").Random(7)
    for _ in range(40):
        col = [rng.choice(tricky) for _ in range(rng.randint(1, 12))]
        bad = bulk._target_bad(col)
        for k, t in enumerate(col):
            if not bad[k]:
                assert b.normalize_target(t) == (t, None, ""), (col, k)
    assert not bulk._target_bad(["a.example.test", "a" * 63 + ".test", "a-b.c-d.test", "xrpz-y.test"]).any()


def test_rows_ending_finds_exactly_the_rows_by_tail_or_whole_name():
    col = ["a.isp.example.test", "isp.example.test", "xisp.example.test", "example.test", "b.example.test",
           "isp.example.test.evil.test", "test", "c.isp.example.test"]
    tails, whole = [".isp.example.test"], ["isp.example.test", "example.test", "test"]
    want = [k for k, t in enumerate(col) if t.endswith(tuple(tails)) or t in whole]
    assert bulk._rows_ending(col, tails, whole).tolist() == want == [0, 1, 3, 6, 7]
    assert bulk._rows_ending([], tails, whole).tolist() == []
