"""A stored record as the tools show it."""

from __future__ import annotations

from mimir_mcp.models import MemoryOut, MemoryRecord


def memory_out(record: MemoryRecord, max_chars: int | None) -> MemoryOut:
    """A record as ``list``, ``get`` and ``update`` show it; with ``max_chars``, a longer text is cut at a word."""
    text = record.text
    if max_chars is not None and len(text) > max_chars:
        cut = text[: max_chars - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip() + "…"
    return MemoryOut.shown(record, text)
