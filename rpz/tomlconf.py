"""TOML configuration that remembers where each key was written, for line-precise errors.

    doc = load_config("/etc/hotline-edge/config.toml")
    doc.data["resolver"]["listen"]                      # what tomllib parsed
    doc.line_of(("policy", "zone", 1, "ede"))           # -> 23 (falls back to the nearest parent)
    raise doc.error(("resolver", "listen", 0), "port 70000 is out of range")
    # -> ConfigError: /etc/hotline-edge/config.toml:4: resolver.listen[0]: port 70000 is out of range

Each package validates its own sections and reports through ``doc.error``; ``collect`` gathers many
errors so checkconf can print them all at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RpzError

KeyPath = tuple[str | int, ...]


class ConfigError(RpzError):
    """One configuration error, located."""

    def __init__(self, file: str, line: int | None, key: str, reason: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.reason = reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


class ConfigErrors(RpzError):
    """Several configuration errors, reported together."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class ConfigDoc:
    file: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    def error(self, path: KeyPath, reason: str) -> ConfigError:
        return ConfigError(self.file, self.line_of(path), format_key(path), reason)

    def collect(self, path: KeyPath, reason: str) -> None:
        self.errors.append(self.error(path, reason))

    def raise_collected(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def load_config(path: str) -> ConfigDoc:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read the configuration: {exc.strerror}") from exc
    return parse_config(raw, path)


def parse_config(raw: bytes, file: str = "<config>") -> ConfigDoc:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, "", f"not UTF-8 (byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(file, int(m.group(1)) if m else None, "", f"TOML syntax: {exc}") from exc
    return ConfigDoc(file, data, _key_lines(text))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*=')


def _split_key(k: str) -> list[str]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+', k)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _key_lines(text: str) -> dict[KeyPath, int]:
    lines: dict[KeyPath, int] = {}
    table: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str | int, ...], int] = {}
    depth = 0
    in_multi: str | None = None
    for no, line in enumerate(text.splitlines(), start=1):
        if in_multi:
            if in_multi in line:
                in_multi = None
            continue
        if depth > 0:
            depth += _bracket_delta(line)
            continue
        m = _HEADER.match(line)
        if m:
            names = _split_key(m.group(2))
            if m.group(1) == "[[":
                base = tuple(names)
                idx = array_counts.get(base, 0)
                array_counts[base] = idx + 1
                table = (*base, idx)
            else:
                table = tuple(names)
            lines.setdefault(table, no)
            continue
        k = _KEY.match(line)
        if k:
            path = (*table, *_split_key(k.group(1)))
            lines[path] = no
            rest = line[k.end():]
            for q in ('"""', "'''"):
                if rest.count(q) == 1:
                    in_multi = q
            depth = max(_bracket_delta(rest), 0)
    return lines


def _bracket_delta(s: str) -> int:
    d = 0
    quote: str | None = None
    for c in s:
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        elif c in "[{":
            d += 1
        elif c in "]}":
            d -= 1
    return d
