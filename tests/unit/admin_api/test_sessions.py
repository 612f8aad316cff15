from datetime import UTC, datetime

import pytest

from admin_api.errors import SessionImportError
from admin_api.sessions import (
    Account,
    DhcpLease,
    PortBlock,
    RadiusEvent,
    SessionKind,
    infer_kind,
    parse_text,
)

RADIUS_CSV = """\
Acct-Status-Type,Acct-Session-Id,User-Name,Framed-IP-Address,Event-Timestamp
Start,s1,acct-1001,198.51.100.7,2026-03-01T18:00:00+08:00
Stop,s1,acct-1001,198.51.100.7,1772366400
Start,s2,acct-1002,198.51.100.999,2026-03-01T10:00:00Z
Start,s3,acct-1003,198.51.100.8,2026-03-01T10:00:00
Bogus,s4,acct-1004,198.51.100.9,2026-03-01T10:00:00Z

Start,s5,acct-1005
"""


def test_radius_csv_rows_are_validated_one_by_one_with_their_line():
    r = parse_text(RADIUS_CSV, "acct.csv")
    assert r.kind is SessionKind.RADIUS
    assert r.rows == (
        RadiusEvent("start", "s1", "acct-1001", "198.51.100.7", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        RadiusEvent("stop", "s1", "acct-1001", "198.51.100.7", datetime(2026, 3, 1, 12, tzinfo=UTC)),
    )
    assert [str(x) for x in r.rejected] == [
        "acct.csv:4: framed_ip_address: '198.51.100.999' is not an IPv4 or IPv6 address",
        "acct.csv:5: event_timestamp: '2026-03-01T10:00:00' has no time zone (add Z or an offset such as +08:00)",
        "acct.csv:6: acct_status_type: 'Bogus' is not Start, Stop or Interim-Update",
        "acct.csv:8: 3 fields, the header has 5",
    ]


def test_json_array_elements_keep_their_line_numbers():
    text = """[
  {"public_ip": "203.0.113.10", "port_start": 1024, "port_end": 2047, "inside_ip": "100.64.0.5",
   "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z", "protocol": "TCP"},
  {"public_ip": "203.0.113.10", "port_start": 3000, "port_end": 2048, "inside_ip": "100.64.0.6",
   "start": "2026-03-01T00:00:00Z"},
  "not an object"
]"""
    r = parse_text(text, "blocks.json")
    assert r.kind is SessionKind.CGNAT
    assert r.rows == (PortBlock("203.0.113.10", 1024, 2047, "100.64.0.5", datetime(2026, 3, 1, tzinfo=UTC),
                                datetime(2026, 3, 2, tzinfo=UTC), "tcp"),)
    assert [str(x) for x in r.rejected] == ["blocks.json:4: port_end 2048 is below port_start 3000",
                                            "blocks.json:6: not an object with named fields"]


def test_json_lines_and_kind_given():
    text = ('{"ip_address": "2001:db8::5", "account": "acct-4001", "starts": 1772323200, "ends": 1772409600}\n'
            '\n{"ip_address": "2001:db8::6", "account": "acct-4002", "starts": 1772409600, "ends": 1772323200}\n'
            '{broken\n')
    r = parse_text(text, "leases.jsonl", SessionKind.DHCP)
    assert r.rows == (DhcpLease("2001:db8::5", "acct-4001", datetime(2026, 3, 1, tzinfo=UTC),
                                datetime(2026, 3, 2, tzinfo=UTC)),)
    assert [x.where for x in r.rejected] == ["leases.jsonl:3", "leases.jsonl:4"]
    assert "ends is before starts" in r.rejected[0].reason and "not JSON" in r.rejected[1].reason


def test_accounts_and_inference():
    r = parse_text("account,name,phone\nacct-1,Chan Tai Man,+852 5550 0001\n", "crm.csv")
    assert r.rows == (Account("acct-1", "Chan Tai Man", "", "+852 5550 0001", ""),)
    assert infer_kind(["public_ip", "port_start", "port_end", "inside_ip", "start"]) is SessionKind.CGNAT
    assert infer_kind(["x", "y"]) is None


def test_unreadable_inputs_are_file_errors_with_a_line():
    with pytest.raises(SessionImportError) as ei:
        parse_text("a,b\n1,2\n", "what.csv")
    assert "cannot tell the kind" in str(ei.value)
    with pytest.raises(SessionImportError) as ei:
        parse_text('[\n  {"a": 1},\n  {"b": \n', "cut.json")
    assert ei.value.line is not None
    with pytest.raises(SessionImportError):
        parse_text("", "empty.csv")
