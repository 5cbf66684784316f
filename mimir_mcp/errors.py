"""The ``MimirError`` family.

They subclass the SDK's ``ToolError`` because in mcp 2 only a ``ToolError`` reaches the agent with its
message; anything else is reported as a crash with no detail. Messages say what was wrong and what to do.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from mcp.server.mcpserver.exceptions import ToolError

# What a full disk (or an exhausted quota) reads as: an OSError's errno, SQLite's result code, and the text
# Chroma's Rust bindings pass on from SQLite or the file system.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NO_SPACE_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")
# Free space under which Chroma's internal error counts as a full disk (``full_disk``).
LOW_SPACE_BYTES = 64 * 2**20


class MimirError(ToolError):
    """Base of every error mimir-mcp reports to a caller on purpose."""


class InvalidInputError(MimirError, ValueError):
    """A tool argument broke a rule; the message names the field and the limit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class RerankerUnavailableError(MimirError):
    """No cross-encoder can score right now; the message says why and how to configure one."""


class StoreUnavailableError(MimirError):
    """The memory store or the embedding model could not be opened."""


class EmbeddingMismatchError(MimirError):
    """The collection holds vectors of another embedding model than the one configured."""


class NotFoundError(MimirError):
    """A memory asked for by id is not stored."""


class AccessDeniedError(MimirError):
    """The caller's token may not use the namespace it named; the message never says what it holds."""


class DiskFullError(MimirError):
    """A write found no space on the disk holding the store; the message names the path and what to do."""


def no_space(error: BaseException | None) -> BaseException | None:
    """The exception that says a disk is full, if ``error`` is one or holds one (as its cause or context,
    or in an exception group: a search runs its arms in a task group); the innermost such, which is the
    one that tells what failed rather than a message that repeats it."""
    return _no_space(error, set())


def _no_space(error: BaseException | None, seen: set[int]) -> BaseException | None:
    if error is None or id(error) in seen:
        return None
    seen.add(id(error))
    inner = [*error.exceptions] if isinstance(error, BaseExceptionGroup) else []
    for held in (*inner, error.__cause__, error.__context__):
        found = _no_space(held, seen)
        if found is not None:
            return found
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return error
    if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return error
    # By its text only where the text is the storage layer's, never a message that may quote a caller's input.
    storage = isinstance(error, OSError | sqlite3.Error) or type(error).__module__.startswith("chromadb")
    return error if storage and any(text in str(error).lower() for text in NO_SPACE_TEXTS) else None


def full_disk(error: BaseException | None, embedded_dir: Path | None) -> BaseException | None:
    """``no_space``, or Chroma's internal error while the disk of the embedded store (``embedded_dir``; None
    for a Chroma server, whose disk is out of reach) is all but full: a compaction that failed for want of
    space, which Chroma reports without the file system's error. The one rule for what a full disk is, for
    the answer to a call and for the reads that go on meanwhile."""
    found = no_space(error)
    if found is not None or embedded_dir is None:
        return found
    chroma = chroma_internal_error(error)
    if chroma is None:
        return None
    free = free_bytes(embedded_dir)
    return chroma if free is not None and free < LOW_SPACE_BYTES else None


def free_bytes(path: Path) -> int | None:
    """Free space on the disk holding ``path`` (``None`` when it cannot be read)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def chroma_internal_error(error: BaseException | None) -> BaseException | None:
    """Chroma's internal error (a damaged collection, among others) if that is what ``error`` is or holds
    (a search's arms run in a task group, which raises a group). chromadb is loaded by then (the store is
    open), so importing its errors costs nothing."""
    if error is None:
        return None
    from chromadb.errors import InternalError

    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = chroma_internal_error(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, InternalError) else None
