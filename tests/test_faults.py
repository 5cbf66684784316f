"""Fault injection: with the server stopped, each file of a data dir holding acknowledged memories is
deleted, cut to half its length, or has 4 KB of garbage written into its middle; then the store is opened
as the server opens it. Every memory must come back readable, by id and by a vector query, with the
repair said (never silent loss, never a crash), or the start must be refused naming what is wrong.
docs/operations.md has the table this test checks."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
from functools import partial
from pathlib import Path

import anyio
import pytest

from mimir_mcp.config import Settings
from mimir_mcp.models import MemoryInput
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.store.chroma_tombstones import TOMBSTONE_SUFFIX
from mimir_mcp.store.probe import VERIFIED
from tests.conftest import PYTHON, REPO
from tests.durability_worker import HashEmbedder

pytestmark = pytest.mark.integration  # Chroma on disk, a worker process

MEMORIES = 1000  # enough for Chroma to write every file of its vector index (it persists them every 1,000)
DAMAGES = ("delete", "truncate", "garbage")
KEPT, STORE, CATALOGUE = "kept", "store rebuilt", "catalogue rebuilt"
# What opening may do, per file: keep every memory as it is, or rebuild the damaged part from the other. A
# damaged vector index file is either rebuilt by Chroma from its own log or found unreadable and rebuilt
# from the catalogue, depending on where the damage falls: both keep everything.
HNSW_FILES = ("data_level0", "header", "length", "link_lists", "index_metadata")
EXPECTED = {
    "catalogue": {"delete": {KEPT}, "truncate": {CATALOGUE}, "garbage": {CATALOGUE}},
    # The BM25 index saved beside it at the last close: read, or built again from the catalogue.
    "saved bm25 index": dict.fromkeys(DAMAGES, {KEPT}),
    # Garbage can fall where SQLite finds nothing wrong and Chroma reads every memory: kept, then.
    "chroma.sqlite3": {"delete": {STORE}, "truncate": {STORE}, "garbage": {STORE, KEPT}},
    "store.lock": dict.fromkeys(DAMAGES, {KEPT}),
    **{f"hnsw {name}": dict.fromkeys(DAMAGES, {KEPT, STORE}) for name in HNSW_FILES},
    # The tombstones' own vector index (the record of deletions): rebuilt by Chroma, set aside and begun
    # again, or the folder set aside and the store rebuilt; the forgotten memories stay forgotten in each.
    # (Ten tombstones: too few for Chroma to have written index_metadata.pickle.)
    **{f"tombstones {name}": dict.fromkeys(DAMAGES, {KEPT, STORE}) for name in HNSW_FILES[:-1]},
}
FORGOTTEN = 10  # memories forgotten after the seeding, so the tombstones have files of their own


def damage(path: Path, how: str, rng: random.Random) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:
        with open(path, "r+b") as file:
            file.seek(max(0, path.stat().st_size // 2 - 2048))
            file.write(rng.randbytes(4096))


def label(relative: Path, tombstone_segments: set[str]) -> str:
    if relative.name.startswith("bm25-"):
        return "saved bm25 index" if relative.suffix == ".npz" else "catalogue"
    if relative.suffix in (".bin", ".pickle"):
        return f"{'tombstones' if relative.parent.name in tombstone_segments else 'hnsw'} {relative.stem}"
    return relative.name


def tombstone_segments(data_dir: Path) -> set[str]:
    """The segment folders of the tombstones' collection, from Chroma's own catalogue."""
    with sqlite3.connect(data_dir / "chroma" / "chroma.sqlite3") as db:
        rows = db.execute(
            "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id WHERE c.name LIKE ?",
            (f"%{TOMBSTONE_SUFFIX}",),
        )
        return {row[0] for row in rows}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("seeded")
    settings = Settings(store={"data_dir": data_dir}, reranker={"enabled": False})
    service = MemoryService(settings, embedder=HashEmbedder(settings.embedding))
    service.storage()
    texts = [f"memory number {i} about topic {i % 7}" for i in range(MEMORIES)]
    answer = anyio.run(service.remember, [MemoryInput(text=text) for text in texts])
    forgot = anyio.run(partial(service.forget, answer.ids[:FORGOTTEN], None, confirm=False, dry_run=False))
    service.close()
    assert answer.stored == MEMORIES and forgot.removed_count == FORGOTTEN
    return data_dir, dict(list(zip(answer.ids, texts, strict=True))[FORGOTTEN:])


# The default run's cases: one of each outcome and each past failure (the full table: ``pytest -m long``).
COMMON = {
    ("catalogue", "garbage"),
    ("saved bm25 index", "garbage"),
    ("chroma.sqlite3", "delete"),
    ("chroma.sqlite3", "truncate"),
    ("hnsw data_level0", "garbage"),
    ("hnsw link_lists", "garbage"),
    ("hnsw header", "delete"),
}


def test_the_damages_seen_before_are_rebuilt_never_lost(seeded, tmp_path: Path):
    check_damages(seeded, tmp_path, COMMON)


@pytest.mark.long
def test_every_damaged_file_is_rebuilt_or_refused_never_lost(seeded, tmp_path: Path):
    check_damages(seeded, tmp_path, {(name, how) for name in EXPECTED for how in DAMAGES})


def check_damages(seeded: tuple[Path, dict[str, str]], tmp_path: Path, chosen: set[tuple[str, str]]) -> None:
    source, acknowledged = seeded
    rng = random.Random(7)
    cases: dict[str, tuple[str, str]] = {}
    tombstones = tombstone_segments(source)
    assert tombstones, "the forgets left no tombstones"
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = file.relative_to(source)
        if relative.name == VERIFIED:
            continue  # not the store's: what the last probe found whole
        name = label(relative, tombstones)
        assert name in EXPECTED, f"{relative}: a file of the data dir the table does not cover"
        for how in DAMAGES:
            if (name, how) not in chosen:
                continue
            copy = tmp_path / f"case-{len(cases)}"
            shutil.copytree(source, copy)
            damage(copy / relative, how, rng)
            cases[str(copy)] = (name, how)
    assert set(cases.values()) == chosen, "the data dir's files are not the ones expected"

    # One worker for every case: a crash ends it, and the cases it did not reach are reported as the crash.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [PYTHON, "-m", "tests.fault_worker", *cases], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    reports = {report["data_dir"]: report for report in map(json.loads, done.stdout.splitlines())}
    table, wrong = [], []
    for data_dir, (name, how) in cases.items():
        report = reports.get(data_dir)
        if report is None:
            outcome = f"CRASH (exit {done.returncode}): {done.stderr[-300:]}"
        elif "refused" in report:
            outcome = f"refused: {report['refused']}"
        elif report["texts"] != acknowledged or set(report["store_ids"]) != set(acknowledged) or not report["found"]:
            outcome = f"LOST: {len(report['texts'])} texts, {len(report['store_ids'])} in the store"
        elif report["repaired"]:
            outcome = STORE
        elif report["catalogue_repaired"]:
            outcome = CATALOGUE
        else:
            outcome = KEPT
        table.append(f"{name:18} {how:9} {outcome}")
        if outcome not in EXPECTED[name][how]:
            wrong.append(table[-1])
    print("\n".join(table))
    assert wrong == [], "\n".join(wrong)
