"""Locks shared by every process on the machine: one writer at a time on a data dir, and one build at a
time of the model copies cached beside it.

Why: several stdio servers (one per agent) often share one data dir. Chroma's embedded store keeps its
HNSW index in each process's memory and writes it back whole, so two processes writing at once each
write back an index without the other's vectors; the record catalogue and exact deduplication need the
same one-at-a-time rule. The ONNX builds take tens of seconds of CPU each and write intermediate files:
run twice at once they compete for the cores and trip over each other's files.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)

# How often a waiting process tries the lock again (filelock polls); small, since writes are short.
POLL_INTERVAL_S = 0.002
# A writer holds the store lock for one batch of Chroma and catalogue writes: seconds at most.
STORE_LOCK_TIMEOUT_S = 300.0
# A build takes up to a minute of CPU; a process may wait behind a few.
BUILD_LOCK_TIMEOUT_S = 900.0


class ProcessLock:
    """Held by one thread of one process at a time, among every process that opens the same lock file.
    Reentrant within a thread; every ``ProcessLock`` of one path in a process is the same lock (two
    stores on one data dir in one process, as ``reindex`` opens, never wait on each other's file lock).
    The operating system releases it when a holder dies, so a killed process never leaves it held."""

    _shared: ClassVar[dict[str, tuple[threading.RLock, FileLock]]] = {}
    _shared_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path | str, *, timeout_s: float = STORE_LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        with self._shared_guard:
            if key not in self._shared:
                self._shared[key] = (
                    threading.RLock(),
                    FileLock(key, thread_local=False, poll_interval=POLL_INTERVAL_S),
                )
            self._thread_lock, self._file_lock = self._shared[key]
        self._timeout_s = timeout_s

    def __enter__(self) -> ProcessLock:
        self._thread_lock.acquire()
        try:
            self._file_lock.acquire(timeout=self._timeout_s)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._file_lock.release()
        finally:
            self._thread_lock.release()


def build_lock_path() -> Path:
    """One lock for every model build by this user on this machine (per user: another user's file
    would not be writable)."""
    return Path(tempfile.gettempdir()) / f"mimir-mcp-build-{getpass.getuser()}.lock"


def build_once(folder: Path, product: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """``folder / product``, built if no process has built it yet: under the machine-wide build lock
    (so at most one build runs at a time, and a process that waited finds the other's result), into a
    scratch folder of this call's own beside ``folder`` (``build(scratch)`` writes ``scratch /
    product`` and any intermediate files there), then moved into place with one rename. Returns the
    path and whether this call built it."""
    path = folder / product
    if path.exists():
        return path, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(build_lock_path()), thread_local=False, poll_interval=0.05)
        lock.acquire(timeout=BUILD_LOCK_TIMEOUT_S)
    except Timeout as exc:
        raise RuntimeError(f"another process held the model build lock {exc.lock_file} too long") from exc
    try:
        if path.exists():
            return path, False
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
        try:
            build(scratch)
            if not (scratch / product).exists():
                raise RuntimeError(f"the build finished without writing {product}")
            for leftover in scratch.iterdir():
                if leftover.name != product:
                    leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)
            if folder.exists():
                shutil.rmtree(folder)  # an incomplete folder an older version left: never read
            os.replace(scratch, folder)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logger.info("built %s", path)
        return path, True
    finally:
        lock.release()
