"""The writer's fast paths give exactly what the plain ones give: leaf digests hashed in one C call
(resolver/_leafhash.c) equal hashlib's, record for record; a connection's template table kept
between batches (Columns.stable) maps every record to the template it names, across growth of the
table, tcp and udp, several tables, eviction, and a rolled-back write. Real SQLite files."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from nacl.public import PrivateKey

from resolver import blocklog
from resolver.blocklog import LEAF_W, TABLES_KEPT, BlocklogStore, Columns, Template, sha256_rows_py
from resolver.blocklog_seal import ADDR_W, pack_address
from resolver.errors import BlocklogError

from .helpers import T0, ZONE

try:
    from resolver import _leafhash
    from resolver._leafhash import leaves as c_leaves
    from resolver._leafhash import sha256_rows as c_rows
except ImportError:          # pragma: no cover - depends on the install
    _leafhash = c_rows = c_leaves = None

needs_c = pytest.mark.skipif(c_rows is None, reason="resolver._leafhash not built: the install had no gcc, "
                             "python3-dev or libssl-dev (Debian packages)")


def plain(rows: np.ndarray) -> bytes:
    return b"".join(hashlib.sha256(r.tobytes()).digest() for r in rows)


@pytest.fixture(params=["pairs", "openssl"])
def pairs(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Rows hashed two at a time with the CPU's SHA extensions, or one at a time with OpenSSL."""
    assert _leafhash is not None
    on = _leafhash._use_pairs(request.param == "pairs")
    if request.param == "pairs" and not on:
        pytest.skip("this CPU has no SHA extensions (SHA-NI): only OpenSSL's one-at-a-time hashing runs here")
    yield on
    _leafhash._use_pairs(True)


@needs_c
@pytest.mark.parametrize("width", [1, 31, 55, 56, 63, 64, 65, LEAF_W, 119, 120, 128, 200])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_c_rows_equal_hashlib(width: int, n: int, pairs: bool) -> None:
    """Every padding case (one or two final blocks, whole blocks), odd and even row counts."""
    rows = np.random.default_rng(width * 1000 + n).integers(0, 256, (n, width), dtype=np.uint8)
    want = plain(rows)
    assert c_rows(rows, width) == want
    assert c_rows(rows.tobytes(), width) == want
    assert sha256_rows_py(rows, width) == want


@needs_c
def test_the_cpus_sha_extensions_are_used_where_it_has_them() -> None:
    assert _leafhash is not None
    has = "sha_ni" in Path("/proc/cpuinfo").read_text().split()
    assert _leafhash._use_pairs(True) == has


def test_rows_of_the_wrong_length_are_refused() -> None:
    for f in [sha256_rows_py, *([c_rows] if c_rows else [])]:
        with pytest.raises(ValueError, match="not made of rows of 67 bytes"):
            f(b"x" * 100, 67)
        with pytest.raises(ValueError):
            f(b"x" * 10, 0)


@needs_c
def test_the_extension_is_the_one_in_use() -> None:
    assert blocklog.LEAF_HASHING == "openssl" and blocklog.sha256_rows is c_rows
    assert blocklog._segment_leaves_c is c_leaves


@needs_c
@pytest.mark.parametrize("sealed", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 1000])
def test_a_segments_leaves_in_one_pass_equal_the_numpy_ones(n: int, sealed: bool, pairs: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Times across int64 (negative ones too), seqs past 2**32, a template table larger than what
    the records use, in any order."""
    rng = np.random.default_rng(n * 2 + sealed)
    digests = rng.integers(0, 256, (37, 32), dtype=np.uint8)
    li = rng.integers(0, 37, n).astype(np.int64)
    times = rng.integers(-(2**62), 2**62, n).astype(np.int64)
    ct = rng.integers(0, 256, n * ADDR_W, dtype=np.uint8).tobytes() if sealed else None
    first = (1 << 40) + 3
    fast = blocklog.segment_leaves(first, times, digests, li, ct)
    rows = [struct.pack("<Qq", first + i, int(times[i])) + digests[li[i]].tobytes()
            + (ct[i * ADDR_W:(i + 1) * ADDR_W] if ct is not None else bytes(ADDR_W)) for i in range(n)]
    assert fast == b"".join(hashlib.sha256(r).digest() for r in rows)
    monkeypatch.setattr(blocklog, "_segment_leaves_c", None)
    assert blocklog.segment_leaves(first, times, digests, li, ct) == fast


@needs_c
def test_a_segments_leaves_refuse_buffers_that_disagree() -> None:
    digests = np.zeros((4, 32), dtype=np.uint8)
    times, li = np.arange(3, dtype=np.int64), np.array([0, 3, 1], dtype=np.int64)
    assert len(c_leaves(1, times, digests, li, None)) == 96
    with pytest.raises(ValueError, match="not one of the digests"):
        c_leaves(1, times, digests, np.array([0, 4, 1], dtype=np.int64), None)
    with pytest.raises(ValueError, match="not one of the digests"):
        c_leaves(1, times, digests, np.array([0, -1, 1], dtype=np.int64), None)
    with pytest.raises(ValueError, match="do not describe the same records"):
        c_leaves(1, times, digests, li[:2], None)
    with pytest.raises(ValueError, match="do not describe the same records"):
        c_leaves(1, times, digests, li, bytes(3 * ADDR_W - 1))
    with pytest.raises(ValueError, match="do not describe the same records"):
        c_leaves(1, times, digests[:, :31].copy(), li, None)


def tpl(i: int, order: str | None = "TW-1") -> Template:
    return (f"n{i}.fraud.test.", 1, ZONE, 7, "QNAME", "*.fraud.test." + ZONE, "nxdomain", order)


def cols(table: list[Template], idx: list[int], tcp: list[int] | None, t0: int, stable: bool = True) -> Columns:
    n = len(idx)
    addrs = np.frombuffer(b"".join(pack_address(f"198.51.100.{i % 250 + 1}", 1024 + i) for i in range(n)),
                          dtype=np.uint8).reshape(n, ADDR_W)
    return Columns(np.arange(t0, t0 + n, dtype=np.int64), np.array(idx, dtype=np.int64),
                   None if tcp is None else np.array(tcp, dtype=np.uint8), addrs, table, stable)


def test_a_stable_table_maps_every_record_across_batches(tmp_path: Path) -> None:
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="n")
    table: list[Template] = [tpl(i) for i in range(5)]
    want: list[tuple[str, str]] = []
    batches = [([0, 1, 2, 1, 0], None), ([4, 3, 3], [1, 0, 1])]
    for idx, tcp in batches:
        store.write_columns(cols(table, idx, tcp, T0 + len(want)), now_ms=T0, public_key=None)
        want += [(table[i][0], "tcp" if tcp and tcp[k] else "udp") for k, i in enumerate(idx)]
    table += [tpl(i, None) for i in range(5, 9)]          # the connection's table grows between batches
    idx, tcp2 = [8, 0, 5, 4, 7], [0, 1, 0, 1, 0]
    store.write_columns(cols(table, idx, tcp2, T0 + len(want)), now_ms=T0, public_key=None)
    want += [(table[i][0], "tcp" if tcp2[k] else "udp") for k, i in enumerate(idx)]
    got = list(store.records())
    assert [(r.qname, r.transport) for r in got] == want
    assert [r.order_ref for r in got][-5:] == [None, "TW-1", None, "TW-1", None]
    assert store.verify().ok
    assert sum(d["hits"] for d in store.daily("TW-1")) == 10 and sum(d["hits"] for d in store.daily("")) == 3
    # the same templates under another transport and the same names through a fresh (unstable) list
    # are the same rows of ``templates``: one row per (name, type, transport, context)
    store.write_columns(cols(list(table), [8, 0], None, T0 + 99, stable=False), now_ms=T0, public_key=None)
    assert store.conn.execute("SELECT count(*) FROM templates").fetchone()[0] == 10
    store.close()


def test_leaves_are_the_same_with_and_without_the_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = [tpl(i) for i in range(3)]

    def write(name: str) -> list[tuple[bytes, bytes]]:
        store = BlocklogStore(str(tmp_path / name), node="n")
        for k in range(3):
            store.write_columns([cols(table, [0, 1, 2, 2], [0, 0, 1, 0], T0 + 10 * k),
                                 cols(table, [1], None, T0 + 10 * k + 5)], now_ms=T0, public_key=None)
        assert store.verify().ok
        out = [(bytes(a), bytes(b)) for a, b in store.conn.execute("SELECT leaves, link FROM segments ORDER BY id")]
        store.close()
        return out

    fast = write("c.sqlite")
    monkeypatch.setattr(blocklog, "sha256_rows", sha256_rows_py)
    monkeypatch.setattr(blocklog, "_segment_leaves_c", None)
    assert write("py.sqlite") == fast
    assert len(fast) == 3 and all(len(leaves) == 5 * 32 for leaves, _ in fast)


def test_a_stored_leaf_is_sha256_of_the_documented_record(tmp_path: Path) -> None:
    """The leaf as the module docstring defines it, rebuilt with struct from what the segment holds
    (seq u64 LE, time i64 LE, the template's digest, the address ciphertext): independent of how
    the writer lays the record out."""
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="n")
    table = [tpl(i) for i in range(3)]
    pk = bytes(PrivateKey.generate().public_key)
    store.write_columns(cols(table, [0, 2, 1, 2], [0, 1, 0, 0], T0), now_ms=T0, public_key=None)
    store.write_columns(cols(table, [1, 0, 2], None, T0 + 50), now_ms=T0, public_key=pk)
    digests = {int(i): bytes(d) for i, d in store.conn.execute("SELECT id, digest FROM templates")}
    checked = 0
    for first, count, times_b, tpls_b, addrs_b, leaves_b in store.conn.execute(
            "SELECT first_seq, count, times, tpls, addrs, leaves FROM segments ORDER BY id"):
        for i in range(count):
            (t_ms,) = struct.unpack_from("<q", times_b, 8 * i)
            (tid,) = struct.unpack_from("<I", tpls_b, 4 * i)
            addr = bytes(addrs_b[ADDR_W * i:ADDR_W * (i + 1)]) if addrs_b is not None else bytes(ADDR_W)
            record = struct.pack("<Qq", first + i, t_ms) + digests[tid] + addr
            assert len(record) == LEAF_W
            assert hashlib.sha256(record).digest() == bytes(leaves_b[32 * i:32 * (i + 1)])
            checked += 1
    assert checked == 7 and store.verify().ok
    store.close()


def test_many_tables_and_eviction(tmp_path: Path) -> None:
    """More connections than the store keeps maps for: every record still names its template."""
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="n")
    tables = [[tpl(100 * j + i) for i in range(3)] for j in range(TABLES_KEPT + 3)]
    want = []
    for rnd in range(2):
        for j, table in enumerate(tables):
            store.write_columns(cols(table, [2, 0], None, T0 + rnd * 1000 + 10 * j), now_ms=T0, public_key=None)
            want += [table[2][0], table[0][0]]
    assert [r.qname for r in store.records()] == want
    assert len(store._tables) == TABLES_KEPT
    assert store.verify().ok


def test_a_rolled_back_write_forgets_the_templates_it_created(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    store = BlocklogStore(path, node="n")
    table = [tpl(i) for i in range(4)]
    store.write_columns(cols(table, [0, 1], None, T0), now_ms=T0, public_key=None)
    store.conn.execute("CREATE TRIGGER no_more BEFORE INSERT ON segments "
                       "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(BlocklogError, match="disk says no"):
        store.write_columns(cols(table, [2, 3, 0], None, T0 + 10), now_ms=T0, public_key=None)
    store.conn.execute("DROP TRIGGER no_more")
    # templates 2 and 3 were created in the rolled-back transaction: ids the store must not reuse
    store.write_columns(cols(table, [3, 2, 0], None, T0 + 20), now_ms=T0, public_key=None)
    assert [r.qname for r in store.records()] == [table[i][0] for i in (0, 1, 3, 2, 0)]
    assert store.verify().ok
    store.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM templates").fetchone()[0] == 4


def test_a_record_naming_a_template_outside_the_table_is_refused(tmp_path: Path) -> None:
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="n")
    table = [tpl(0), tpl(1)]
    with pytest.raises(BlocklogError, match="template 2 of 2"):
        store.write_columns([cols(table, [1], None, T0), cols(table, [0, 2], None, T0)], now_ms=T0, public_key=None)
    with pytest.raises(BlocklogError, match="neither 0 \\(udp\\) nor 1 \\(tcp\\)"):
        store.write_columns(cols(table, [0], [2], T0), now_ms=T0, public_key=None)
    assert store.counts()["records"] == 0
    # the first part's template was created in the refused batch's transaction, then rolled back:
    # the store must not keep its id
    store.write_columns(cols(table, [1, 0], None, T0 + 5), now_ms=T0, public_key=None)
    assert [r.qname for r in store.records()] == [table[1][0], table[0][0]]
    assert store.verify().ok


def test_the_remembered_templates_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of new names (a wildcard rule under random labels) does not grow the writer's memory
    without end: past TEMPLATES_KEPT it starts again, and every record still names its template."""
    monkeypatch.setattr(blocklog, "TEMPLATES_KEPT", 10)
    store = BlocklogStore(str(tmp_path / "b.sqlite"), node="n")
    table: list[Template] = []
    want = []
    for k in range(6):
        table += [tpl(100 + 4 * k + i) for i in range(4)]          # 4 new names a batch, one connection
        idx = [len(table) - 1, len(table) - 4, 0, len(table) - 2]
        store.write_columns(cols(table, idx, None, T0 + 10 * k), now_ms=T0, public_key=None)
        want += [table[i][0] for i in idx]
        assert len(store._li) <= 10 + 4
    assert [r.qname for r in store.records()] == want
    assert store.verify().ok
    assert store.conn.execute("SELECT count(*) FROM templates").fetchone()[0] == 18


def test_new_templates_and_templates_of_a_previous_run_are_one_row_each(tmp_path: Path) -> None:
    """New templates in one batch, an equal template at two indices of one table, one template
    under both transports, and templates a previous run of the writer created: one row each, and
    every record names its own."""
    path = str(tmp_path / "b.sqlite")
    first = BlocklogStore(path, node="n")
    old = [tpl(i) for i in range(5)]
    first.write_columns(cols(old, [0, 1, 2, 3, 4], None, T0), now_ms=T0, public_key=None)
    first.close()
    store = BlocklogStore(path, node="n")               # a restart: nothing remembered in memory
    table = [tpl(i) for i in range(30)] + [tpl(3)]      # 25 new, 5 written before, tpl(3) twice by value
    idx = [30, *range(30), 3, 7]
    tcp = [0] * 31 + [1, 1]                             # tpl(3) and tpl(7) also over tcp
    store.write_columns(cols(table, idx, tcp, T0 + 100), now_ms=T0, public_key=None)
    got = [(r.qname, r.transport) for r in store.records()]
    want = [(tpl(i)[0], "udp") for i in range(5)] + [(table[i][0], "tcp" if tcp[k] else "udp") for k, i in
                                                     enumerate(idx)]
    assert got == want
    rows = store.conn.execute("SELECT qname, transport, count(*) FROM templates GROUP BY qname, transport").fetchall()
    assert len(rows) == 32 and all(n == 1 for _, _, n in rows)       # 30 names over udp, 2 over tcp
    assert store.verify().ok
    store.close()
