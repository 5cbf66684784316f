"""Export and import: every memory as one JSON line, with its id, times and update history, so a store
can be backed up, moved to another machine or merged into another store without changing what it holds.

Ids are content hashes (``dedup_key``), so importing a file twice, or into a store that already holds
some of its memories, stores each memory once. A line is held to the rules ``remember`` applies (the same
checks, against the store's configured limits), so an import never stores what a tool would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Self, TextIO

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from mimir_mcp.config import LimitSettings
from mimir_mcp.errors import InvalidInputError
from mimir_mcp.models import MemoryInput, MemoryRecord, MetadataValue
from mimir_mcp.server.validation import LIMITS, check_arguments, check_memory, limits_of
from mimir_mcp.service.memory import MemoryService, dedup_key

DEFAULT_IMPORT_BATCH = 256


def _metadata_value(value: object) -> MetadataValue:
    """One check for the union, so an error names the key (``metadata.colour``), not each member type."""
    if isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError(f"a metadata value must be a string, number or boolean, not {type(value).__name__}")


class ExportedMemory(MemoryRecord):
    """One line of an export. Unknown fields are refused: a misspelt ``tag`` would otherwise be dropped
    without a word and the memory stored without its tags."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Annotated[MetadataValue, PlainValidator(_metadata_value)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):  # anything else is refused by the type check, in pydantic's words
            check_arguments(data, limits_of(info))
            text, namespace = data.get("text"), data.get("namespace")
            if "id" not in data and isinstance(text, str) and isinstance(namespace, str):
                data = {**data, "id": dedup_key(namespace, text)}  # a line from elsewhere: the id it would get
        return data

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        """The checks ``remember`` makes on a memory; nothing is changed, only refused."""
        fields = ("text", "tags", "source", "agent", "namespace", "metadata")
        check_memory("", MemoryInput(**{name: getattr(self, name) for name in fields}), limits_of(info))
        return self


class ImportSummary(BaseModel):
    """What an import did: every memory read was either stored or already there."""

    read: int = 0
    stored: int = 0
    already_present: int = 0


class LineError(ValueError):
    """One line of an import file that is not a memory; ``field`` is a dotted path into the line."""

    def __init__(self, line: int, field: str, problem: str) -> None:
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(f"line {line}, {field}: {problem}")


class ImportFileError(ValueError):
    """An import stopped at a bad line. The batches before it are stored (they were complete and valid);
    nothing from the batch holding the bad line, or after it, is."""

    def __init__(self, error: LineError, imported: ImportSummary, imported_through: int) -> None:
        self.error = error
        self.imported = imported
        self.imported_through = imported_through
        if imported.read:
            done = (
                f"lines 1-{imported_through} were imported before it ({imported.read} memories: "
                f"{imported.stored} stored, {imported.already_present} already present) and nothing after line "
                f"{imported_through} was; fix the line and import the file again (memories already stored are "
                "skipped)"
            )
        else:
            done = "nothing was imported"
        super().__init__(f"{error}; {done}")


def export_line(record: MemoryRecord) -> str:
    """A memory as one JSON line: every field, in the model's order, so equal stores export equal bytes."""
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n"


def export_memories(service: MemoryService, out: TextIO, *, namespace: str | None = None) -> int:
    """Write every memory (of ``namespace``, or all) oldest first; returns how many. Blocking."""
    count = 0
    for record in service.export_records(namespace):
        out.write(export_line(record))
        count += 1
    return count


def parse_line(text: str, line: int, limits: LimitSettings | None = None) -> MemoryRecord:
    """A line of an export as a record, or a ``LineError`` naming the field that is wrong. ``limits``: the
    store's (the defaults when None)."""
    try:
        exported = ExportedMemory.model_validate_json(text, context={LIMITS: limits or LimitSettings()})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):
            raise LineError(line, cause.field or "the line", cause.problem) from None
        field = ".".join(str(part) for part in first["loc"]) or "the line"
        raise LineError(line, field, first["msg"]) from None
    record = MemoryRecord(**dict(exported))
    expected = dedup_key(record.namespace, record.text)
    if record.id != expected:
        raise LineError(
            line,
            "id",
            f"{record.id} is not the hash of this line's namespace and text ({expected}); leave id out to have "
            "it computed: get, update and forget take only such ids, and remembering the same text again would "
            "otherwise store it twice",
        )
    return record


def import_memories(
    service: MemoryService,
    lines: Iterable[str],
    *,
    batch: int = DEFAULT_IMPORT_BATCH,
    on_progress: Callable[[int], object] | None = None,
) -> ImportSummary:
    """Store the memories of an export, ``batch`` at a time, each exactly as exported; ids already stored
    are skipped and counted. Every line of a batch is checked before any of it is stored, so a bad line
    raises ``ImportFileError`` with the earlier batches stored and nothing of its own. Blocking."""
    if batch < 1:
        raise ValueError(f"batch: must be at least 1, got {batch}")
    summary = ImportSummary()
    imported_through = 0
    pending: list[MemoryRecord] = []

    def store(last_line: int) -> None:
        nonlocal imported_through
        new_ids = service.import_records(pending)
        summary.read += len(pending)
        summary.stored += len(new_ids)
        summary.already_present = summary.read - summary.stored
        imported_through = last_line
        if on_progress is not None:
            on_progress(len(pending))
        pending.clear()

    number = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            pending.append(parse_line(text, number, service.settings.limits))
        except LineError as exc:
            raise ImportFileError(exc, summary, imported_through) from None
        if len(pending) == batch:
            store(number)
    if pending:
        store(number)
    return summary
