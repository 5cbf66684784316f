"""Group commit: writes that arrive while one is being committed are committed together, in one turn.

A Chroma ``add`` costs about 4 ms however few rows it carries, and holds the GIL all along (its Rust
bindings do not release it), so under load one add per ``remember`` stalled every other thread, the event
loop with it. Writers queue their work here; whoever gets the turn commits everything queued so far, and
the others find their work done. Nobody waits for a timer: a writer alone commits at once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Entry(Generic[Item, Result]):
    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[Item, Result]):
    """Calls ``commit`` with every item submitted since its last call, one call at a time.

    ``commit`` takes the items in the order they were submitted and returns one result per item. When a
    batch of several fails, each item is committed again alone, so one bad write fails only its own
    caller. With ``duty``, commits take at most that share of the time: after a commit of ``d`` seconds
    the next starts ``d * (1/duty - 1)`` later at the earliest, and the writes arriving meanwhile join it.
    A commit's cost is mostly fixed, so under a steady stream of writes this trades a little latency
    per write for far fewer commits; a write after a quiet spell commits at once. With ``contended``,
    commits are paced only while it returns ``True`` (other work is waiting on what a commit holds up):
    a lone writer is never slowed.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        duty: float | None = None,
        contended: Callable[[], bool] | None = None,
    ) -> None:
        if duty is not None and not 0 < duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        self._commit = commit
        self._duty = duty
        self._contended = contended
        self._next_at = 0.0  # time.monotonic() before which the next commit waits (``duty``)
        self._pending: list[_Entry[Item, Result]] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self.batches = 0
        self.items = 0
        self.largest = 0

    def submit(self, item: Item) -> Result:
        """Commit ``item`` (with whatever else is waiting) and return its result, or raise its error."""
        entry: _Entry[Item, Result] = _Entry(item)
        with self._queue_lock:
            self._pending.append(entry)
        with self._turn:
            if not entry.done:
                wait = self._next_at - time.monotonic()
                if wait > 0 and (self._contended is None or self._contended()):
                    time.sleep(wait)  # commits are paced (``duty``): more writes join this one meanwhile
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                started = time.monotonic()
                self._run(batch)
                if self._duty is not None:
                    ended = time.monotonic()
                    self._next_at = ended + (ended - started) * (1 / self._duty - 1)
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value] - set with done, and done before the turn is released

    def _run(self, batch: list[_Entry[Item, Result]]) -> None:
        self.batches += 1
        self.items += len(batch)
        self.largest = max(self.largest, len(batch))
        try:
            try:
                results = list(self._commit([entry.item for entry in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"commit returned {len(results)} results for {len(batch)} writes")
            except Exception as error:
                if len(batch) == 1:
                    self._finish(batch[0], error=error)
                    return
                logger.warning("a group of %d writes failed (%s); committing each alone", len(batch), error)
                for entry in batch:
                    try:
                        (result,) = self._commit([entry.item])
                    except Exception as alone:
                        self._finish(entry, error=alone)
                    else:
                        self._finish(entry, result=result)
                return
            for entry, result in zip(batch, results, strict=True):
                self._finish(entry, result=result)
        finally:
            for entry in batch:  # interrupted (KeyboardInterrupt, SystemExit): nobody returns as if written
                if not entry.done:
                    self._finish(entry, error=RuntimeError("the write was interrupted"))

    @staticmethod
    def _finish(
        entry: _Entry[Item, Result], *, result: Result | None = None, error: BaseException | None = None
    ) -> None:
        entry.result, entry.error, entry.done = result, error, True
