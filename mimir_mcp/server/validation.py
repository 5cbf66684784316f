"""The rules on input, read against the configured limits: the raw shape of a call, then each field's rule.

The request models (``requests.py``) and the import of an export (``transfer.py``) call them from their
validators; every failure is an ``InvalidInputError`` naming the field and the limit, raised before anything
is written, so a caller can correct its call and nothing already stored is touched.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError, ValidationInfo

from mimir_mcp.config import LimitSettings
from mimir_mcp.errors import InvalidInputError
from mimir_mcp.models import MemoryInput, MetadataValue
from mimir_mcp.search.when import normalized

ID_PATTERN = re.compile(r"mem_[0-9a-f]{32}")
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
# C0 controls other than tab, newline and carriage return, DEL, and C1 controls.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_LABEL_CHARS = 256
TIME_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
SHOWN_CHARS = 64
MAX_KEY_CHARS = 64
# Type tags pydantic puts in an error's location for a member of a union (`documents: list[str | RerankDocument]`).
UNION_TAGS = frozenset({"str", "RerankDocument"})
# Deepest nesting of objects and arrays in a call's arguments: the deepest valid call has 3 levels, so
# deeper input is refused before anything walks it further.
MAX_INPUT_DEPTH = 8
# The validation context's key for the ``LimitSettings`` a model's validators read.
LIMITS = "limits"


def limits_of(info: ValidationInfo) -> LimitSettings:
    """The limits a request is validated against: always given as the validation context, never assumed."""
    limits = (info.context or {}).get(LIMITS)
    if not isinstance(limits, LimitSettings):
        raise TypeError(f"validate with context={{{LIMITS!r}: LimitSettings}}")
    return limits


def check_arguments(arguments: Any, limits: LimitSettings, *, accepted: frozenset[str] | None = None) -> None:
    """The shape of a call's raw arguments, before anything parses, validates or stores them: known names,
    nesting at most ``MAX_INPUT_DEPTH`` deep, at most ``limits.max_input_items`` values, no string
    longer than any field takes, no lone surrogate (in keys too), no NaN or infinity.

    Iterative and stopped at the first fault, so a payload 100,000 levels deep or with millions of values
    costs no more than the limits allow."""
    if not isinstance(arguments, dict):
        raise InvalidInputError("arguments", f"must be an object, got {json_type(arguments)}")
    if accepted is not None:
        for name in arguments:
            if name not in accepted:
                raise InvalidInputError(
                    _shown_key(name), f"unknown argument; this tool takes {', '.join(sorted(accepted)) or 'none'}"
                )
    longest = max(limits.max_text_bytes, limits.max_query_chars, limits.max_metadata_value_chars)
    items = 0
    pending: list[tuple[str, Any, int]] = [("", arguments, 0)]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, str):
            _check_plain_string(path, value, longest)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError(path, f"must be a finite number, got {value!r} (no NaN or infinity)")
        elif isinstance(value, dict | list):
            if depth >= MAX_INPUT_DEPTH:
                raise InvalidInputError(path, f"nested deeper than {MAX_INPUT_DEPTH} levels")
            items += len(value)
            if items > limits.max_input_items:
                raise InvalidInputError(
                    path or "arguments",
                    f"more than {limits.max_input_items} values in one call (limits.max_input_items)",
                )
            if isinstance(value, list):
                pending.extend((f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value))
                continue
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidInputError(f"{path} key {key!r}", "object keys must be strings")
                name = f"{path}.{key}" if path else key
                if not _is_plain_name(key):
                    name = f"{path} key {_shown(key)}" if path else f"key {_shown(key)}"
                    _check_plain_string(name, key, MAX_KEY_CHARS, "keys")
                pending.append((name, item, depth + 1))
        elif value is not None and not isinstance(value, bool | int):
            raise InvalidInputError(
                path, f"must be JSON (a string, number, boolean, array or object), got {json_type(value)}"
            )


def refusal(error: ValidationError) -> InvalidInputError:
    """A request model's complaint told the way every refusal is: the field, then what is wrong, never the
    input echoed back. A rule's own ``InvalidInputError`` (raised in a validator) is kept, its field placed
    under the location it was raised at; of pydantic's own complaints the one deepest in the input is told."""
    errors = error.errors(include_url=False, include_input=True)
    for err in errors:
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):
            return InvalidInputError(_location(err["loc"]) + cause.field or "arguments", cause.problem)
    # Of a union's complaints, the branch that got furthest says the most (a {id, text} missing its text);
    # otherwise the first.
    _, _, chosen = max((len(err["loc"]), -position, err) for position, err in enumerate(errors))
    return InvalidInputError(_location(chosen["loc"]) or "arguments", _problem(chosen))


def _location(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part not in UNION_TAGS:
            name += f".{part}" if name else str(part)
    return name


def _problem(err: Any) -> str:
    kind, context, given = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {json_type(given)}"
    match kind:
        case "missing":
            return "is required"
        case "extra_forbidden":
            return "unknown field"
        case "string_type":
            return "must be a string" + got
        case "int_type" | "int_parsing" | "int_from_float" | "int_parsing_size":
            return "must be an integer" + got
        case "float_type" | "float_parsing":
            return "must be a number" + got
        case "finite_number":
            return "must be a finite number (no NaN or infinity)"
        case "bool_type" | "bool_parsing":
            return "must be true or false" + got
        case "list_type":
            return "must be an array" + got
        case "dict_type" | "model_type" | "model_attributes_type":
            return "must be an object" + got
        case "json_invalid":
            return f"is not valid JSON ({context.get('error')})"
        case "literal_error":
            return f"must be {context.get('expected')}"
        case "greater_than_equal":
            return f"must be greater than or equal to {context.get('ge')}, got {_shown(given)}"
        case "less_than_equal":
            return f"must be less than or equal to {context.get('le')}, got {_shown(given)}"
        case _:
            return f"is not valid ({kind}){got}"


def _check_plain_string(field: str, value: str, longest: int, what: str = "") -> None:
    if len(value) > longest:
        if what:
            raise InvalidInputError(field, f"is {len(value)} characters; {what} are at most {longest}")
        raise InvalidInputError(
            field, f"is {len(value)} characters, over the limit of {longest} bytes of UTF-8 (limits.max_text_bytes)"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                field,
                f"contains a lone surrogate U+{ord(value[exc.start]):04X} at position {exc.start}; "
                "text must be valid Unicode",
            ) from None


def _is_plain_name(key: str) -> bool:
    return METADATA_KEY_PATTERN.fullmatch(key) is not None


def _shown_key(key: Any) -> str:
    return key if isinstance(key, str) and _is_plain_name(key) else f"key {_shown(key)}"


def _shown(value: Any) -> str:
    """A caller's value quoted in a message: never more than ``SHOWN_CHARS`` characters of it."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS]) + f"… ({len(value)} characters)"
    if isinstance(value, dict | list):
        return json_type(value)
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _invisible(text: str) -> bool:
    """Only whitespace and format characters (zero-width spaces and joiners, byte-order marks): nothing a
    reader would see, so stored it would be a memory nobody can read or find."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def check_text(field: str, text: Any, max_bytes: int) -> str:
    """A memory or document text: non-empty, within ``max_bytes`` of UTF-8, no control characters."""
    if not isinstance(text, str):
        raise InvalidInputError(field, f"must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(field, "must not be empty or only whitespace")
    if _invisible(text):
        raise InvalidInputError(
            field, "has only invisible characters (zero-width or format characters such as U+200B); it would be empty"
        )
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
            f"{_shown(namespace)} is not a valid namespace: use 1-64 characters from A-Z a-z 0-9 . _ - "
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
                f"{field} key {_shown(key)}",
                "keys are 1-64 characters from A-Z a-z 0-9 _ . - and start with a letter or _",
            )
        name = f"{field}.{key}"
        if isinstance(value, bool | int):
            if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value <= 2**63 - 1:
                raise InvalidInputError(name, "integers must fit in 64 bits (-2^63 to 2^63 - 1)")
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
                f"metadata is flat: values must be a string, number or boolean, got {json_type(value)}",
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
        raise InvalidInputError(field, f"must be a finite number, got {_shown(value)}")
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
        # Python's own parser also takes a run of digits ("1111111111111" is 1111-11-11 11:11:11), so the
        # shape is checked first: a date with hyphens, then an optional time and offset.
        if not TIME_PATTERN.fullmatch(value.strip()):
            raise ValueError(value)
        moment = datetime.fromisoformat(value.strip())
        return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()
    except (ValueError, OverflowError):
        raise InvalidInputError(
            field, f"{_shown(value)} is not an ISO 8601 date or time (e.g. 2026-05-01 or 2026-05-01T12:00:00Z)"
        ) from None


def check_time_range(after: Any, before: Any) -> tuple[float | None, float | None]:
    start, end = check_time("created_after", after), check_time("created_before", before)
    if start is not None and end is not None and start >= end:
        raise InvalidInputError("created_before", "must be later than created_after")
    return start, end


def check_when(when: str | None, tz: str | None) -> tuple[str | None, str | None]:
    """A time phrase and its zone as single-line strings, the phrase as applied (``when.normalized``: 'off' is
    None); what they mean is read at the call (``search.time_scope``), against the clock."""
    if when is not None and check_label("when", when) is None:
        raise InvalidInputError("when", "must not be empty: give a time phrase, 'off', or leave it out")
    if tz is not None and check_label("tz", tz) is None:
        raise InvalidInputError("tz", "must not be empty: give an IANA zone such as 'Europe/Paris', or leave it out")
    return normalized(when), (None if tz is None else tz.strip())


def check_ids(field: str, ids: Any, maximum: int) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise InvalidInputError(field, "must be a non-empty list of memory ids")
    if len(ids) > maximum:
        raise InvalidInputError(field, f"has {len(ids)} ids; the limit is {maximum} per call")
    return list(dict.fromkeys(check_id(f"{field}[{position}]", memory_id) for position, memory_id in enumerate(ids)))


def check_id(field: str, memory_id: Any) -> str:
    if not isinstance(memory_id, str) or not ID_PATTERN.fullmatch(memory_id):
        raise InvalidInputError(field, f"{_shown(memory_id)} is not a memory id (mem_ and 32 hex digits)")
    return memory_id


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


def json_type(value: Any) -> str:
    """How a complaint names the JSON type of what was sent (``got an array``)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
