"""Checks on tool input against the configured limits.

Every check runs before anything is written, and every failure is an ``InvalidInputError`` naming the
field and the limit, so an agent can correct its call and nothing already stored is touched.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from mimir_mcp.config import LimitSettings
from mimir_mcp.errors import InvalidInputError
from mimir_mcp.models import MemoryInput, MetadataValue

ID_PATTERN = re.compile(r"mem_[0-9a-f]{32}")
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
# C0 controls other than tab, newline and carriage return, DEL, and C1 controls.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_LABEL_CHARS = 256


def check_text(field: str, text: Any, max_bytes: int) -> str:
    """A memory or document text: non-empty, within ``max_bytes`` of UTF-8, no control characters."""
    if not isinstance(text, str):
        raise InvalidInputError(field, f"must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(field, "must not be empty or only whitespace")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise InvalidInputError(field, f"is {size} bytes of UTF-8; the limit is {max_bytes} bytes")
    _check_no_controls(field, text)
    return text.strip()


def check_query(field: str, query: Any, max_chars: int) -> str:
    if not isinstance(query, str):
        raise InvalidInputError(field, f"must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InvalidInputError(field, "must not be empty or only whitespace")
    if len(query) > max_chars:
        raise InvalidInputError(field, f"is {len(query)} characters; the limit is {max_chars}")
    _check_no_controls(field, query)
    return query.strip()


def check_namespace(field: str, namespace: Any) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidInputError(
            field,
            f"{namespace!r} is not a valid namespace: use 1-64 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit",
        )
    return namespace


def check_label(field: str, value: Any) -> str | None:
    """``source`` and ``agent``: optional short single-line strings."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_LABEL_CHARS:
        raise InvalidInputError(field, f"is {len(value)} characters; the limit is {MAX_LABEL_CHARS}")
    _check_no_controls(field, value, allow_whitespace_controls=False)
    return value.strip() or None


def check_tags(field: str, tags: Any, limits: LimitSettings) -> list[str]:
    if not isinstance(tags, list):
        raise InvalidInputError(field, "must be a list of strings")
    if len(tags) > limits.max_tags:
        raise InvalidInputError(field, f"has {len(tags)} tags; the limit is {limits.max_tags}")
    cleaned: list[str] = []
    for position, tag in enumerate(tags):
        name = f"{field}[{position}]"
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInputError(name, "must be a non-empty string")
        if len(tag) > limits.max_tag_chars:
            raise InvalidInputError(name, f"is {len(tag)} characters; the limit is {limits.max_tag_chars}")
        _check_no_controls(name, tag, allow_whitespace_controls=False)
        if tag.strip() not in cleaned:
            cleaned.append(tag.strip())
    return cleaned


def check_metadata(field: str, metadata: Any, limits: LimitSettings) -> dict[str, MetadataValue]:
    """Flat metadata: string keys, scalar values, so it can be stored in Chroma and filtered on."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInputError(field, "must be an object of key/value pairs")
    if len(metadata) > limits.max_metadata_keys:
        raise InvalidInputError(field, f"has {len(metadata)} keys; the limit is {limits.max_metadata_keys}")
    cleaned: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not METADATA_KEY_PATTERN.fullmatch(key):
            raise InvalidInputError(
                f"{field} key {key!r}",
                "keys are 1-64 characters from A-Z a-z 0-9 _ . - and start with a letter or _",
            )
        name = f"{field}.{key}"
        if isinstance(value, bool | int):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
                raise InvalidInputError(name, "integers must fit in 64 bits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError(name, "numbers must be finite (no NaN or infinity)")
        elif isinstance(value, str):
            if len(value) > limits.max_metadata_value_chars:
                raise InvalidInputError(
                    name, f"is {len(value)} characters; the limit is {limits.max_metadata_value_chars}"
                )
            _check_no_controls(name, value)
        else:
            raise InvalidInputError(
                name,
                f"metadata is flat: values must be a string, number or boolean, got {_json_type(value)}",
            )
        cleaned[key] = value
    return cleaned


def check_count(field: str, value: Any, maximum: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"must be an integer between {minimum} and {maximum}")
    if value < minimum or value > maximum:
        raise InvalidInputError(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def check_min_score(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(field, f"must be a finite number, got {value!r}")
    return float(value)


def check_memory(field: str, memory: MemoryInput, limits: LimitSettings) -> MemoryInput:
    """All checks on one memory, returning a cleaned copy; ``field`` prefixes the names in errors."""

    def name(part: str) -> str:
        return f"{field}.{part}" if field else part

    return MemoryInput(
        text=check_text(name("text"), memory.text, limits.max_text_bytes),
        tags=check_tags(name("tags"), memory.tags, limits),
        source=check_label(name("source"), memory.source),
        agent=check_label(name("agent"), memory.agent),
        namespace=check_namespace(name("namespace"), memory.namespace),
        metadata=check_metadata(name("metadata"), memory.metadata, limits),
    )


def check_batch(memories: list[MemoryInput], limits: LimitSettings) -> list[MemoryInput]:
    if not memories:
        raise InvalidInputError("memories", "give at least one memory (or use `text` for a single one)")
    if len(memories) > limits.max_batch:
        raise InvalidInputError("memories", f"has {len(memories)} memories; the limit is {limits.max_batch} per call")
    return [check_memory(f"memories[{i}]", memory, limits) for i, memory in enumerate(memories)]


def check_time(field: str, value: Any) -> float | None:
    """An ISO 8601 date or time (``2026-05-01``, ``2026-05-01T12:00:00Z``, with any offset; none means
    UTC) as Unix seconds."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be an ISO 8601 date or time string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(
            field, f"{value[:64]!r} is not an ISO 8601 date or time (e.g. 2026-05-01 or 2026-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_time_range(after: Any, before: Any) -> tuple[float | None, float | None]:
    start, end = check_time("created_after", after), check_time("created_before", before)
    if start is not None and end is not None and start >= end:
        raise InvalidInputError("created_before", "must be later than created_after")
    return start, end


def check_ids(field: str, ids: Any, maximum: int) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise InvalidInputError(field, "must be a non-empty list of memory ids")
    if len(ids) > maximum:
        raise InvalidInputError(field, f"has {len(ids)} ids; the limit is {maximum} per call")
    for position, memory_id in enumerate(ids):
        if not isinstance(memory_id, str) or not ID_PATTERN.fullmatch(memory_id):
            raise InvalidInputError(
                f"{field}[{position}]", f"{str(memory_id)[:80]!r} is not a memory id (mem_ and 32 hex digits)"
            )
    return list(dict.fromkeys(ids))


def _check_no_controls(field: str, value: str, *, allow_whitespace_controls: bool = True) -> None:
    found = CONTROL_CHARACTERS.search(value)
    if found is None and not allow_whitespace_controls:
        found = re.search(r"[\t\n\r]", value)
    if found is not None:
        raise InvalidInputError(
            field,
            f"contains control character U+{ord(found.group()):04X} at position {found.start()}; "
            "control characters are not allowed" + ("" if allow_whitespace_controls else " (single line)"),
        )


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__
