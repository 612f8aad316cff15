"""DNS names as the policy core uses them: uncompressed wire format.

One canonical form everywhere on the lookup path: the name's wire encoding with ASCII letters
lowered (``bytes.lower`` is safe on wire names: length octets are <= 63, below ``A``). Ancestors
are suffix slices, so walking up a name costs one slice per label. Text conversion happens at the
edges (zone loading, CLI, logs), never per query.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import DnsNameError

ROOT = b"\x00"
MAX_NAME = 255
MAX_LABEL = 63

_LEN = [bytes((i,)) for i in range(64)]
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*/")
_PLAIN_BYTES = bytes(sorted(_PLAIN))
_PLAIN_DOT = _PLAIN_BYTES + b"."


def from_text(text: str, origin: bytes | None = None) -> bytes:
    """Parse presentation format into wire format (case kept).

    A name without a final dot is relative and gets ``origin`` appended; with no origin it is
    taken as absolute. ``@`` is the origin. Escapes (``\\.``, ``\\065``) are honoured.
    """
    if text == "@":
        if origin is None:
            raise DnsNameError("'@' used where no $ORIGIN is known")
        return origin
    if text == ".":
        return ROOT
    if not text:
        raise DnsNameError("empty name")
    absolute = text.endswith(".") and not text.endswith("\\.")
    labels = _split_text(text[:-1] if absolute else text)
    out = bytearray()
    for label in labels:
        if not label:
            raise DnsNameError(f"empty label in {text!r}")
        if len(label) > MAX_LABEL:
            raise DnsNameError(f"label of {len(label)} octets (max 63) in {text!r}")
        out += _LEN[len(label)] + label
    if absolute or origin is None:
        out += ROOT
    else:
        out += origin
    if len(out) > MAX_NAME:
        raise DnsNameError(f"name of {len(out)} octets (max 255): {text!r}")
    return bytes(out)


def _split_text(text: str) -> list[bytes]:
    if "\\" not in text:
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise DnsNameError(f"non-ASCII character in {text!r} (use the IDNA A-label)") from exc
        return raw.split(b".")
    labels: list[bytes] = []
    cur = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == ".":
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
        elif c == "\\":
            if i + 3 < len(text) + 0 and text[i + 1 : i + 4].isdigit():
                val = int(text[i + 1 : i + 4])
                if val > 255:
                    raise DnsNameError(f"escape \\{text[i + 1 : i + 4]} out of range in {text!r}")
                cur.append(val)
                i += 4
            elif i + 1 < len(text):
                cur += text[i + 1].encode("latin-1", "strict") if ord(text[i + 1]) < 256 else b"?"
                i += 2
            else:
                raise DnsNameError(f"dangling backslash in {text!r}")
        else:
            if ord(c) > 127:
                raise DnsNameError(f"non-ASCII character in {text!r} (use the IDNA A-label)")
            cur.append(ord(c))
            i += 1
    labels.append(bytes(cur))
    return labels


def to_text(wire: bytes, omit_final_dot: bool = False) -> str:
    """Presentation format of a wire name; unusual octets are escaped as dnspython does."""
    if wire == ROOT:
        return "."
    plain = _plain_text(wire)
    if plain is not None:
        return plain if omit_final_dot else plain + "."
    parts = []
    for label in labels(wire):
        if not label.translate(None, _PLAIN_BYTES):      # nothing outside _PLAIN (one C call)
            parts.append(label.decode("ascii"))
        else:
            parts.append(_escape(label))
    text = ".".join(parts)
    return text if omit_final_dot else text + "."


def _plain_text(wire: bytes) -> str | None:
    """The text of a name whose labels hold only plain octets (most names), else None."""
    parts = []
    pos = 0
    n = len(wire)
    while pos < n:
        ln = wire[pos]
        if ln == 0:
            break
        if ln > MAX_LABEL:
            return None
        parts.append(wire[pos + 1:pos + 1 + ln])
        pos += ln + 1
    joined = b".".join(parts)
    if joined.translate(None, _PLAIN_DOT) or joined.count(b".") != len(parts) - 1:   # an odd octet, a dot in a label
        return None
    return joined.decode("ascii")


def _escape(label: bytes) -> str:
    out = []
    for b in label:
        if b in _PLAIN:
            out.append(chr(b))
        elif b in b'."();\\@$':
            out.append("\\" + chr(b))
        elif 0x20 < b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def labels(wire: bytes) -> list[bytes]:
    """The labels of a wire name, leftmost first, without the root."""
    out: list[bytes] = []
    i = 0
    while True:
        n = wire[i]
        if n == 0:
            return out
        out.append(wire[i + 1 : i + 1 + n])
        i += n + 1


def label_count(wire: bytes) -> int:
    n = 0
    i = 0
    while wire[i]:
        i += wire[i] + 1
        n += 1
    return n


def parent(wire: bytes) -> bytes:
    """The name one label up; the root's parent is the root."""
    if wire == ROOT:
        return ROOT
    return wire[wire[0] + 1 :]


def ancestors(wire: bytes) -> Iterator[bytes]:
    """Proper ancestors from the closest up to and including the root."""
    i = 0
    while wire[i]:
        i += wire[i] + 1
        yield wire[i:]


def is_subdomain(wire: bytes, of: bytes) -> bool:
    """True when ``wire`` equals ``of`` or lies below it (both canonical)."""
    if not wire.endswith(of):
        return False
    cut = len(wire) - len(of)
    if cut == 0:
        return True
    i = 0
    while i < cut:
        i += wire[i] + 1
    return i == cut


def relativize(wire: bytes, origin: bytes) -> bytes | None:
    """``wire`` with ``origin`` cut off, as an absolute name (``a.b.origin.`` -> ``a.b.``).

    Returns None when ``wire`` is not at or below ``origin``; the origin itself becomes the root.
    """
    if not is_subdomain(wire, origin):
        return None
    return wire[: len(wire) - len(origin)] + ROOT


def concat(prefix: bytes, suffix: bytes) -> bytes | None:
    """``prefix`` (absolute) with ``suffix`` appended; None when longer than 255 octets."""
    out = prefix[:-1] + suffix
    return out if len(out) <= MAX_NAME else None


def canonical_key(wire: bytes) -> tuple[bytes, ...]:
    """Sort key for DNSSEC canonical name order (RFC 4034 section 6.1)."""
    return tuple(reversed(labels(wire.lower())))


def validate_wire(wire: bytes) -> None:
    """Raise DnsNameError unless ``wire`` is one well-formed uncompressed name."""
    if len(wire) > MAX_NAME:
        raise DnsNameError(f"name of {len(wire)} octets (max 255)")
    i = 0
    while True:
        if i >= len(wire):
            raise DnsNameError("name not terminated by the root label")
        n = wire[i]
        if n == 0:
            if i != len(wire) - 1:
                raise DnsNameError("octets after the root label")
            return
        if n > MAX_LABEL:
            raise DnsNameError(f"label length {n} (max 63) or a compression pointer")
        i += n + 1
