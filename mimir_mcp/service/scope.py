"""What one caller may touch, and how its writes are signed: the access policy the service enforces.

The server builds a ``Scope`` per call from the bearer token behind it and hands it to every service method;
a caller with no token (stdio, in-process, the commands) gets ``OWNER``: whoever starts the process owns the
store. A namespace outside the scope is refused by name when asked for, left out when "every namespace" is
asked for, and a memory stored there reads as one never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from mimir_mcp.errors import AccessDeniedError
from mimir_mcp.models import MemoryInput, MetadataValue, RecordFilter

# The metadata key that records which token stored or last changed a memory.
WRITTEN_BY = "written_by"


@dataclass(frozen=True)
class Scope:
    """``name``: the token behind the call, written into what it stores or changes (``written_by``); None
    for the owner. ``namespaces``: those it may read (and write, unless ``read_only``); None: every
    namespace."""

    name: str | None = None
    namespaces: frozenset[str] | None = None
    read_only: bool = False

    def check_write(self, tool: str) -> None:
        """Refuse any write (remember, update, forget) to a read-only token."""
        if self.read_only:
            raise AccessDeniedError(f"{tool}: the token {self.name!r} is read-only; it may search and read, not write")

    @property
    def home(self) -> str | None:
        """The one namespace a token is held to, where a call that names none goes ('default', which such a
        token may not use, would only be refused); None for any other scope."""
        return next(iter(self.namespaces)) if self.namespaces is not None and len(self.namespaces) == 1 else None

    @property
    def confined(self) -> bool:
        """Whether some namespaces are out of reach (so reads must be filtered)."""
        return self.namespaces is not None

    def allows(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def check(self, field: str, namespace: str) -> None:
        """Refuse a namespace outside the scope, saying the same whether it holds memories or not."""
        if not self.allows(namespace):
            assert self.namespaces is not None
            raise AccessDeniedError(
                f"{field}: the token {self.name!r} may not use namespace {namespace!r} "
                f"(it may use: {', '.join(sorted(self.namespaces))})"
            )

    def confine(self, where: RecordFilter) -> RecordFilter:
        """The filter bounded to the scope: a named namespace is checked; none (every namespace) becomes the
        scope's namespaces, as one namespace when it holds one."""
        if where.namespace is not None or self.namespaces is None:
            if where.namespace is not None:
                self.check("namespace", where.namespace)
            return where
        if self.home is not None:
            return where.model_copy(update={"namespace": self.home, "namespaces": None})
        return where.model_copy(update={"namespaces": sorted(self.namespaces)})

    def writable(self, memories: list[MemoryInput], field: str) -> list[MemoryInput]:
        """``memories`` checked against the scope and signed. ``field`` is the argument they came in, for a
        refusal's name: ``memories`` (``memories[1].namespace``), or '' for a single one (``namespace``)."""
        if self.name is None:
            return memories
        for index, memory in enumerate(memories):
            self.check(f"{field}[{index}].namespace" if field else "namespace", memory.namespace)
        return [memory.model_copy(update={"metadata": self.signed(memory.metadata)}) for memory in memories]

    def signed(self, metadata: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        """``metadata`` with the token's name as ``written_by`` (what the caller sent there is replaced)."""
        return metadata if self.name is None else {**metadata, WRITTEN_BY: self.name}

    def counts(self, namespaces: dict[str, int]) -> dict[str, int]:
        """Counts per namespace of the scope's namespaces only: nothing about what the others hold."""
        return {name: count for name, count in namespaces.items() if self.allows(name)}


OWNER = Scope()
