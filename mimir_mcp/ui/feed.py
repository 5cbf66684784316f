"""Live changes for the web page: the memories each write through this process added, changed or removed,
told to every open page whose token may read their namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mimir_mcp.service.scope import Scope

Change = dict[str, str]
# Batches of changes a page may have waiting; one that falls further behind is dropped, and reloads.
BACKLOG = 256


class ChangeFeed:
    """A ``MemoryService`` watcher that fans each write's changes out to the listening pages, each held to
    its scope: a page never hears of a namespace its token may not read."""

    def __init__(self) -> None:
        self._listeners: dict[int, tuple[Scope, MemoryObjectSendStream[list[Change]]]] = {}
        self._closed = False

    def close(self) -> None:
        """End every page's stream, now and from now on: a server shutting down waits for open responses."""
        self._closed = True
        for _, stream in self._listeners.values():
            stream.close()
        self._listeners.clear()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def changed(self, memories: list[tuple[str, str]]) -> None:
        for key, (scope, stream) in list(self._listeners.items()):
            shown = [{"namespace": space, "id": memory_id} for space, memory_id in memories if scope.allows(space)]
            if not shown:
                continue
            try:
                stream.send_nowait(shown)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                # Too far behind (or gone): its stream ends, and the page reconnects and lists afresh.
                self._listeners.pop(key, None)
                stream.close()

    @asynccontextmanager
    async def listen(self, scope: Scope) -> AsyncIterator[MemoryObjectReceiveStream[list[Change]]]:
        """The batches of changes in ``scope`` from now on, until the context ends (or the page falls behind)."""
        send, receive = anyio.create_memory_object_stream[list[Change]](BACKLOG)
        key = id(send)
        if self._closed:
            send.close()
        else:
            self._listeners[key] = (scope, send)
        try:
            yield receive
        finally:
            self._listeners.pop(key, None)
            send.close()
            receive.close()
