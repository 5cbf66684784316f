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
from mimir_mcp.server.validation import LIMITS, check_arguments, check_memory, check_time, json_type, limits_of, refusal
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.service.writes import stored_now

DEFAULT_IMPORT_BATCH = 256


def _metadata_value(value: object) -> MetadataValue:
    """One check for the union, so an error names the key (``metadata.colour``), not each member type."""
    if isinstance(value, str | int | float):  # bool is an int
        return value
    raise InvalidInputError("", f"metadata is flat: values must be a string, number or boolean, got {json_type(value)}")


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
            # A line from elsewhere: what remember would give a memory without them, the namespace and
            # the time as remember's defaults (stored now), the id as the hash of both.
            data = {"namespace": MemoryInput.model_fields["namespace"].default, "created_at": stored_now(), **data}
            text, namespace = data.get("text"), data.get("namespace")
            if "id" not in data:
                # Without a text to hash, the text's own error is the one to tell (fields are checked in order,
                # the id first): the placeholder is never stored.
                computable = isinstance(text, str) and isinstance(namespace, str)
                data["id"] = dedup_key(namespace, text) if computable else ""
        return data

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Self:
        """The checks ``remember`` makes on a memory; nothing is changed, only refused."""
        fields = ("text", "tags", "source", "agent", "namespace", "metadata")
        check_memory("", MemoryInput(**{name: getattr(self, name) for name in fields}), limits_of(info))
        check_time("created_at", self.created_at)
        check_time("updated_at", self.updated_at)
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
        refused = refusal(exc)  # told as a tool's refusals are: the field, then what is wrong
        raise LineError(line, refused.field if refused.field != "arguments" else "the line", refused.problem) from None
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
