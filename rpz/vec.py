"""Vectorized helpers for building name tables from many names at once (numpy).

Names are held as a matrix: one row per name, the canonical wire bytes left-aligned, zero padded
to the matrix width, plus a vector of lengths. Zero padding is harmless for the polynomial hash
(``sum(b_i * 256**i) mod p``), so a whole column of bytes is hashed per numpy operation, and the
result equals ``rpz.index.name_hash`` computed one name at a time on the lookup path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

U8M = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

SECOND_PRIME = 4294967279  # second-largest prime below 2**32: an independent hash for deduplication

MERSENNE = (1 << 61) - 1


def table_hash(m: U8M) -> U64:
    """Per row, ``hash(int.from_bytes(row, "little"))`` as CPython computes it on the lookup path:
    the value modulo the Mersenne prime 2**61-1 (sys.hash_info.modulus; ints are not salted).

    The row's little-endian value is cut into 61-bit chunks whose sum is congruent to it, so each
    row costs a handful of 64-bit operations per 61 bits, whatever its bytes.
    """
    n, width = m.shape
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    mp = np.zeros((n, width + 16), dtype=np.uint8)
    mp[:, :width] = m
    mm = np.uint64(MERSENNE)
    acc = np.zeros(n, dtype=np.uint64)
    nchunks = -(-8 * width // 61)
    for j in range(nchunks):
        bit = 61 * j
        q, r = divmod(bit, 8)
        x = np.ascontiguousarray(mp[:, q : q + 8]).view("<u8").reshape(-1)
        if r:
            y = mp[:, q + 8].astype(np.uint64)
            chunk = ((x >> np.uint64(r)) | (y << np.uint64(64 - r))) & mm
        else:
            chunk = x & mm
        acc += chunk
        if j % 4 == 3:
            acc = (acc & mm) + (acc >> np.uint64(61))
    acc = (acc & mm) + (acc >> np.uint64(61))
    acc = (acc & mm) + (acc >> np.uint64(61))
    acc[acc >= mm] -= mm
    return acc


def hash64(m: U8M) -> U64:
    """A fast 64-bit mixing hash of each row, the grouping key for deduplication. Groups are
    always verified byte by byte, so this only has to spread well, not be collision-free."""
    n, width = m.shape
    if width % 8:
        m = np.pad(m, ((0, 0), (0, 8 - width % 8)))
    words = np.ascontiguousarray(m).view("<u8")
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=np.uint64)
    mul = np.uint64(0xFF51AFD7ED558CCD)
    for k in range(words.shape[1]):
        h ^= words[:, k]
        h *= mul
        h ^= h >> np.uint64(31)
    return h


def _hashes(m: U8M, primes: tuple[int, ...]) -> list[U32]:
    """Polynomial hashes by 64-bit words: sum(b_i * 256**i) = sum(word_k * 2**(64k)), so each
    8-byte word is reduced mod p and multiplied by 2**(64k) mod p (both below 2**32: the product
    fits in 64 bits). Rows must be zero padded; the width is padded to a multiple of 8 here."""
    n, width = m.shape
    if n == 0:
        return [np.zeros(0, dtype=np.uint32) for _ in primes]
    if width % 8:
        m = np.pad(m, ((0, 0), (0, 8 - width % 8)))
    words = np.ascontiguousarray(m).view("<u8")
    out = []
    for p in primes:
        pu = np.uint64(p)
        acc = np.zeros(n, dtype=np.uint64)
        for k in range(words.shape[1]):
            w = words[:, k] % pu
            w *= np.uint64(pow(2, 64 * k, p))
            w %= pu
            acc += w
            acc %= pu
        out.append(acc.astype(np.uint32))
    return out


def from_keys(keys: list[bytes], width: int | None = None) -> tuple[U8M, I64]:
    """Matrix and lengths of a list of wire names."""
    n = len(keys)
    lens = np.fromiter((len(k) for k in keys), dtype=np.int64, count=n)
    w = int(lens.max()) if n else 1
    if width is not None:
        w = max(w, width)
    w = max(8, -(-w // 8) * 8)  # at least 8 columns, a multiple of 8 (whole 64-bit words)
    flat = np.frombuffer(b"".join(keys), dtype=np.uint8)
    m = np.zeros((n, w), dtype=np.uint8)
    if n:
        mask = np.arange(w)[None, :] < lens[:, None]
        m[mask] = flat
    return m, lens


def from_names(names: list[str]) -> tuple[U8M, I64]:
    """Matrix and lengths of relative names in presentation form (``a.b``, ``*.a.b``; ASCII, no
    escapes, no final dot), each as its wire labels followed by a zero byte: the key form of
    ``from_keys``. ValueError names the first name with an empty or over-long label."""
    n = len(names)
    if n == 0:
        return np.zeros((0, 8), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    # ".a.b\0.c.d\0": every label behind a dot, whose byte becomes the label's length
    try:
        text = ("." + "\0.".join(names) + "\0").encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not an ASCII name near {exc.object[max(0, exc.start - 20):exc.end + 20]!r}") from exc
    a = np.frombuffer(text, dtype=np.uint8).copy()
    sep = np.flatnonzero((a == 46) | (a == 0))
    if len(sep) != int((a == 46).sum()) + n:   # a NUL inside a name
        raise ValueError("a name contains a NUL character")
    cur, nxt = sep[:-1], sep[1:]
    dots = a[cur] == 46
    lab = nxt - cur - 1
    bad = dots & ((lab < 1) | (lab > 63))
    ends = np.flatnonzero(a == 0)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1] + 1])
    lens = (ends - starts + 1).astype(np.int64)
    if bad.any() or (lens > 255).any():
        pos = int(cur[bad][0]) if bad.any() else int(starts[np.flatnonzero(lens > 255)[0]])
        row = int(np.searchsorted(ends, pos))
        raise ValueError(f"{names[row]!r} has an empty label, a label over 63 octets or is over 255 octets")
    a[cur[dots]] = lab[dots].astype(np.uint8)
    w = max(8, -(-int(lens.max()) // 8) * 8)
    m = np.zeros((n, w), dtype=np.uint8)
    mask = np.arange(w)[None, :] < lens[:, None]
    m[mask] = a
    return m, lens


def to_blob(m: U8M, lens: I64) -> bytes:
    """Concatenate each row's first ``lens`` bytes."""
    if len(lens) == 0:
        return b""
    mask = np.arange(m.shape[1])[None, :] < lens[:, None]
    return m[mask].tobytes()


def parents(m: U8M, lens: I64) -> tuple[U8M, I64, npt.NDArray[np.bool_]]:
    """Each row's parent name (first label cut off), left-aligned and zero padded; and which rows
    have one (every name but the root)."""
    n, w = m.shape
    if n == 0:
        return m.copy(), lens.copy(), np.zeros(0, dtype=bool)
    first = m[:, 0].astype(np.int64)
    has = first > 0
    cut = np.where(has, first + 1, 0)
    flat = np.concatenate([np.ascontiguousarray(m).reshape(-1), np.zeros(w, dtype=np.uint8)])
    out = np.array(sliding_window_view(flat, w)[np.arange(n, dtype=np.int64) * w + cut])
    out *= np.arange(w, dtype=np.int16)[None, :] < (w - cut).astype(np.int16)[:, None]
    plens = np.where(has, lens - cut, 1)
    return out, plens, has


def unique_keys(key: U64) -> tuple[I64, I64]:
    """(first index of each distinct value, inverse map), sort-based (numpy's hash-based unique is
    slower here for millions of 64-bit keys)."""
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    flag = np.empty(n, dtype=bool)
    flag[0] = True
    np.not_equal(sk[1:], sk[:-1], out=flag[1:])
    grp = np.cumsum(flag) - 1
    inv = np.empty(n, dtype=np.int64)
    inv[order] = grp
    return order[flag].astype(np.int64), inv


def row_keys(m: U8M, lens: I64, h64: U64 | None = None) -> U64:
    """The 64-bit grouping key of each row: both hashes, with the length folded in."""
    if h64 is None:
        h64 = hash64(m)
    return h64 ^ (lens.astype(np.uint64) << np.uint64(56))


def unique_rows(m: U8M, lens: I64, h64: U64 | None = None) -> tuple[I64, I64]:
    """Exact row deduplication: (index of one representative per distinct row, inverse map).

    Rows are grouped by a 64-bit hash, then every row is compared with its group's representative;
    the rare rows that differ (a hash collision) are grouped again exactly.
    """
    n = len(lens)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rep, inv = unique_keys(row_keys(m, lens, h64))
    if len(rep) == n:
        return rep, inv
    shared = np.flatnonzero(np.bincount(inv)[inv] > 1)  # a row alone under its key is distinct
    r = rep[inv[shared]]
    same = (m[shared] == m[r]).all(axis=1) & (lens[shared] == lens[r])
    if same.all():
        return rep, inv
    bad = shared[~same]
    extra: dict[bytes, int] = {}
    reps = list(rep.tolist())
    inv = inv.copy()
    for r in bad.tolist():
        k = m[r].tobytes()
        j = extra.get(k)
        if j is None:
            j = extra[k] = len(reps)
            reps.append(r)
        inv[r] = j
    return np.asarray(reps, dtype=np.int64), inv
