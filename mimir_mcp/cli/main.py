"""The ``mimir-mcp`` entry point: the first word picks a command; anything else is the server's flags."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

# Each command's module and function, imported only when that command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("evaluate", "eval_main"),
    "finetune-reranker": ("evaluate", "finetune_main"),
    "bench": ("evaluate", "bench_main"),
    "stress": ("evaluate", "stress_main"),
    "export": ("data", "export_main"),
    "import": ("data", "import_main"),
    "reindex": ("data", "reindex_main"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``mimir-mcp [serve] FLAGS`` serves; ``mimir-mcp COMMAND ...`` runs one of ``COMMANDS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in COMMANDS:
        module, function = COMMANDS[argv[0]]
        status = getattr(importlib.import_module(f"mimir_mcp.cli.{module}"), function)(argv[1:])
        if module == "data":  # a store command may end with a model still loading in the background
            from mimir_mcp.cli.common import end_process

            end_process(status)
        return status
    from mimir_mcp.cli.serve import serve_main

    return serve_main(argv[1:] if argv and argv[0] == "serve" else argv)
