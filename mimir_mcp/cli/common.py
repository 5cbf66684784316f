"""What every command shares: logging to stderr, one-line errors for a bad dataset, small argument types."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Libraries whose INFO lines would drown ours; they still log warnings and errors.
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "chromadb", "sentence_transformers", "transformers", "urllib3")


def configure_logging(level: str) -> None:
    """Everything to stderr, once: on stdio, stdout carries only the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # huggingface_hub adds its own stderr handler at import and also passes records up to ours, so each of
    # its warnings would print twice: importing its logging module now lets us drop that handler.
    import huggingface_hub.utils.logging  # noqa: F401 - installs the handler removed below

    logging.getLogger("huggingface_hub").handlers.clear()


def run_command(prog: str, main: Callable[[], Awaitable[Any]]) -> Any | None:
    """Run an async command; a bad dataset or argument is one clear line on stderr, not a traceback."""
    import anyio

    try:
        return anyio.run(main)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def memories(count: int) -> str:
    return f"{count} memory" if count == 1 else f"{count} memories"


def quiet_model_loading() -> None:
    """No "Loading weights" bar from transformers while a command shows its own progress bar: the two
    interleaved on one terminal. A download's bar (huggingface_hub's) still shows."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], object]]:
    """A bar on stderr counting memories; yields the function that advances it. The step that completes it
    leaves the last line to the bar's end, which prints it once, with the overall rate (tqdm would print it
    on both, two lines in a log)."""
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="memory", file=sys.stderr) as bar:

        def advance(count: int) -> None:
            if bar.total is not None and bar.n + count >= bar.total:
                bar.n += count
            else:
                bar.update(count)

        yield advance


def end_process(status: int) -> NoReturn:
    """End a server or store command's process here, without the interpreter's teardown.

    Stopped within seconds of its start, a server still has daemon threads loading models (importing torch,
    opening onnxruntime sessions), and so may a quick ``export``; the interpreter's exit then finalizes
    those libraries under them and crashed in native code (a segmentation fault, exit status -11, seen in CI
    right after "mimir-mcp stopped"; an abort, "terminate called without an active exception", after an
    export). By now the store is closed and every acknowledged write is as durable as after a SIGKILL,
    which the durability tests check, so nothing is left that the teardown would do for the user."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a client that hung up, a stream already closed
            pass
    os._exit(status)
