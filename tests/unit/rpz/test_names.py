import pytest

from rpz import names
from rpz.errors import DnsNameError


def test_text_wire_round_trip():
    w = names.from_text("Bad.Example.TEST.")
    assert w == b"\x03Bad\x07Example\x04TEST\x00"
    assert names.to_text(w.lower()) == "bad.example.test."


def test_relative_names_take_the_origin():
    origin = names.from_text("rpz.test.")
    assert names.from_text("a.b", origin) == names.from_text("a.b.rpz.test.")
    assert names.from_text("@", origin) == origin


@pytest.mark.parametrize("bad", ["a..b.", "x" * 64 + ".", ".".join(["abcdefgh"] * 30) + "."])
def test_invalid_names_are_refused(bad):
    with pytest.raises(DnsNameError):
        names.from_text(bad)


def test_escapes():
    assert names.from_text(r"a\.b.test.") == b"\x03a.b\x04test\x00"
    assert names.from_text(r"\065.test.") == b"\x01A\x04test\x00"


def test_relativize_and_ancestors():
    w = names.from_text("a.b.rpz.test.")
    assert names.relativize(w, names.from_text("rpz.test.")) == names.from_text("a.b.")
    assert names.relativize(w, names.from_text("other.test.")) is None
    assert list(names.ancestors(names.from_text("a.b."))) == [names.from_text("b."), b"\x00"]


def test_canonical_order_rfc4034_example():
    # RFC 4034 section 6.1 order; the draft's section 5.5 picks the last one
    order = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example."]
    keys = [names.canonical_key(names.from_text(n)) for n in order]
    assert keys == sorted(keys)
