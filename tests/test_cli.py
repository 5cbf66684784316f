"""The ``mimir-mcp`` command itself: a fast ``--help``, help for every flag, refusals before anything is
created, and what an import prints while it runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mimir_mcp.cli.data import export_main, reindex_main
from mimir_mcp.service.memory import dedup_key

from .conftest import PYTHON, run_cli

HEAVY = ("torch", "chromadb", "sentence_transformers", "transformers", "onnxruntime")


@pytest.mark.integration  # a Python process per command
@pytest.mark.parametrize("command", [[], ["serve"], ["export"], ["import"], ["reindex"]])
def test_help_imports_no_model_and_no_store(command: list[str]):
    """``--help`` of the server and of the store's commands loads no model library and no store."""
    probe = (
        "import sys\n"
        "from mimir_mcp.cli.main import main\n"
        "try:\n"
        f"    main({[*command, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    result = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True)
    assert "usage: mimir-mcp" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


def test_finetune_help_names_every_training_default():
    from mimir_mcp.cli.evaluate import build_finetune_parser
    from mimir_mcp.evaluation.finetune import TrainingPlan

    plan = TrainingPlan()
    helps = {action.dest: action.help or "" for action in build_finetune_parser()._actions}
    assert f"(default: {plan.epochs:g})" in helps["epochs"]
    assert f"(default: {plan.batch_size})" in helps["batch_size"]
    assert f"(default: {plan.learning_rate:g})" in helps["learning_rate"]
    undocumented = [dest for dest, text in helps.items() if not text and dest not in ("help", "log_level")]
    assert undocumented == []


@pytest.mark.parametrize("main", [export_main, reindex_main])
def test_export_and_reindex_refuse_a_data_dir_without_a_store(main, tmp_path: Path, capsys, monkeypatch):
    """A mistyped --data-dir is one line naming it and exit status 2, not an empty store created there
    (whose export would pass for a backup of no memories)."""
    monkeypatch.delenv("MIMIR_STORE_CHROMA_HOST", raising=False)
    typo = tmp_path / "memroies"
    assert main(["--data-dir", str(typo)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"no data dir at {typo}" in err
    assert not typo.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--data-dir", str(empty)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"no memory store in {empty}" in err
    assert list(empty.iterdir()) == []


def test_import_into_a_new_data_dir_shows_one_bar(tmp_path: Path, cross_encoder_path: Path):
    """Import may create its store. Its progress bar is the only one (no model's loading bar in between),
    and it ends once."""
    texts = [f"memory number {number} about tea" for number in range(5)]
    dump = tmp_path / "memories.jsonl"
    dump.write_text(
        "".join(
            json.dumps(
                {
                    "id": dedup_key("default", text),
                    "text": text,
                    "namespace": "default",
                    "created_at": "2024-05-01T10:00:00",
                }
            )
            + "\n"
            for text in texts
        ),
        encoding="utf-8",
    )
    fresh = tmp_path / "new" / "store"
    result = run_cli(
        ["-m", "mimir_mcp", "import", str(dump), "--data-dir", str(fresh), "--batch", "2"], tmp_path, cross_encoder_path
    )
    assert result.returncode == 0, result.stderr
    assert "Loading" not in result.stderr and "it/s" not in result.stderr
    assert result.stderr.count("5/5") == 1 and result.stderr.count("import: 100%") == 1
    assert result.stderr.rstrip().splitlines()[-1] == "mimir-mcp import: read 5, stored 5, already present 0"
    assert (fresh / "chroma").is_dir()
