"""Vectorized reading of large zones (placeholder: delegates to the careful reader)."""

from __future__ import annotations

from .zone import CompiledZone, Progress


def compile_text_fast(data: bytes, source: str, apex: bytes | None, progress: Progress | None) -> CompiledZone:
    from .zone import compile_text
    return compile_text(data, source, apex, progress, fast=False)
