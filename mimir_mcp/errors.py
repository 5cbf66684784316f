"""The ``MimirError`` family.

They subclass the SDK's ``ToolError`` because in mcp 2 only a ``ToolError`` reaches the agent with its
message; anything else is reported as a crash with no detail. Messages say what was wrong and what to do.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError


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
