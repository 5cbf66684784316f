"""Loading slow resources (models, the store) in a thread, so the MCP handshake never waits for them.

Claude Desktop gives a server 60 s to answer ``initialize``; importing torch and loading two models can
take longer on a cold laptop. Each resource starts loading when the server starts and callers await
it only when they need it, from any event loop or thread.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

from mimir_mcp.status_models import ModelState

logger = logging.getLogger(__name__)

# Held while a loader imports sentence-transformers: the bi-encoder and the cross-encoder load in two
# threads at once, and transformers' lazy modules can fail ("cannot import name ...") when two threads
# first touch them together.
MODEL_IMPORT_LOCK = threading.Lock()
T = TypeVar("T")
_FREEZING = threading.Lock()
# Whether loads freeze the heap: process-wide, like the collector itself. The server process turns it on
# (``enable_heap_freezing``); a library user or a test process, creating and dropping many services, keeps
# the collector as Python ships it.
_freeze_enabled = False


class _ExitGuard:
    """Counts inference running in loading threads, which are daemons, so that the exit can wait for it.

    A process that ends while a daemon thread is inside torch or onnxruntime (an ``eval`` of a few
    queries, a stdio server whose client hung up, a test run) tears their thread pools down under it,
    and the thread's unwinding through their C++ frames aborts the process ("terminate called without an
    active exception", exit status 134). Seen with the reranker's calibration and the ONNX query encoder's
    check against the model. The exit waits for what is in flight; nothing starts after.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._exiting = False

    @contextmanager
    def running(self) -> Iterator[bool]:
        """Yields ``False`` (do not start) once the process is exiting, else ``True`` for the block."""
        with self._changed:
            if self._exiting:
                allowed = False
            else:
                allowed = True
                self._running += 1
        try:
            yield allowed
        finally:
            if allowed:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

    def exit(self, timeout: float = 60.0) -> None:
        with self._changed:
            self._exiting = True
            self._changed.wait_for(lambda: self._running == 0, timeout)


_exit_guard = _ExitGuard()
# Before any atexit handler: torch and onnxruntime register theirs after this module is imported, and
# atexit runs the last registered first, so from atexit the wait came after their teardown had begun (an
# abort in about half the runs of a short script). ``threading._register_atexit`` runs when the main thread
# finishes, before atexit (concurrent.futures uses it for the same reason).
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_exit_guard.exit)
else:  # pragma: no cover - every CPython from 3.9 has it
    atexit.register(_exit_guard.exit)


def inference_while_loading() -> AbstractContextManager[bool]:
    """Wrap model inference a loading thread runs (timings, checks): ``with inference_while_loading() as
    allowed:``, and skip the work when ``allowed`` is ``False`` (the process is exiting)."""
    return _exit_guard.running()


# Nice value of threads doing work nobody is waiting on interactively (embedding new memories): under
# load the kernel then gives the cores to searches first; on an idle machine it changes nothing.
LOW_PRIORITY_NICE = 10


def lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: per-thread nice); elsewhere, do nothing. A thread
    cannot raise its priority again without privileges, so call it only in threads kept for such work."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: the work runs at normal priority
        pass


def low_priority_executor(name: str) -> concurrent.futures.ThreadPoolExecutor:
    """One thread at low CPU priority (``lower_thread_priority``), for work that should yield to searches."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_thread_priority)


def enable_heap_freezing() -> None:
    """Freeze the heap after each resource loads and as the store grows (``freeze_heap``); for servers."""
    global _freeze_enabled
    _freeze_enabled = True


def freeze_heap() -> None:
    """Collect garbage once, then exempt every object alive now from later collections (``gc.freeze``).

    Loaded models, the store's client and the index are millions of long-lived objects; CPython's full
    collections scan them all, which stopped every thread (the event loop with them) for 250-300 ms a few
    times a minute under load, the slowest ``status`` and search answers. Frozen, they are never scanned
    again, and a full collection only walks what was allocated since. Called after each resource loads
    and as the store grows; objects frozen here are freed as usual once their references go, only
    reference cycles among them are never reclaimed. Does nothing unless ``enable_heap_freezing`` was called.
    """
    if not _freeze_enabled or not _FREEZING.acquire(blocking=False):
        return
    try:
        gc.collect()
        gc.freeze()
    finally:
        _FREEZING.release()


class BackgroundLoad(Generic[T]):
    """Runs ``loader`` once, in a daemon thread, and remembers its result, error and duration."""

    def __init__(self, name: str, loader: Callable[[], T]) -> None:
        self.name = name
        self._loader = loader
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = threading.Lock()
        self.load_seconds: float | None = None
        # ``time.monotonic()`` when the last attempt ended, either way (``None`` before).
        self.ended_at: float | None = None

    def start(self) -> None:
        """Begin loading; later calls do nothing."""
        if not self._started.acquire(blocking=False):
            return
        self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            value = self._loader()
        except BaseException as exc:  # noqa: BLE001 - every failure must be reported, not lost in a thread
            self.load_seconds = round(time.perf_counter() - started, 3)
            logger.warning("%s failed to load after %.1f s: %s", self.name, self.load_seconds, exc)
            self.ended_at = time.monotonic()
            self._future.set_exception(exc)
            return
        self.load_seconds = round(time.perf_counter() - started, 3)
        logger.info("%s ready in %.2f s", self.name, self.load_seconds)
        freeze_heap()
        self.ended_at = time.monotonic()
        self._future.set_result(value)

    def retry(self) -> bool:
        """After a failed load, start it again in a new thread; ``False``, doing nothing, in any other state.
        Whoever waited on the failed attempt keeps its error; ``state`` is ``loading`` again at once."""
        with self._again:
            if not self._future.done() or self._future.exception() is None:
                return False
            logger.info("%s: loading again", self.name)
            self._future = concurrent.futures.Future()
            self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
            self._thread.start()
            return True

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def state(self) -> ModelState:
        if not self._future.done():
            return "loading"
        return "failed" if self._future.exception() is not None else "ready"

    @property
    def error(self) -> BaseException | None:
        return self._future.exception() if self._future.done() else None

    def result_now(self) -> T | None:
        """The loaded value, or ``None`` while loading or after a failure."""
        if self._future.done() and self._future.exception() is None:
            return self._future.result()
        return None

    def wait(self, timeout: float | None = None) -> T:
        """Block until loaded (starting the load if needed); re-raises the load error."""
        self.start()
        return self._future.result(timeout)

    async def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a started load to end, either way: its outcome is then read from
        ``state``, ``error`` and ``result_now`` (callers fall back on failure, they do not raise)."""
        if not self.started or self._future.done():
            return
        with anyio.move_on_after(timeout):
            try:
                await self.wait_async()
            except Exception:  # noqa: BLE001 - kept in the future, reported through ``error``
                pass

    async def wait_async(self, timeout: float | None = None) -> T:
        """Await the load without blocking the event loop."""
        if self._future.done():
            return self._future.result()
        self.start()
        return await anyio.to_thread.run_sync(self.wait, timeout, abandon_on_cancel=True)
