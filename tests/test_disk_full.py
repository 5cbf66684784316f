"""A full disk, for real: the data dir on a small tmpfs, the server over stdio, memories remembered until the
disk fills. The failed call must say the disk is full and where (not blame a killed process), reads must keep
answering, ``status`` must show the failure until a write succeeds after space is freed, and every
acknowledged memory must still be there when the store is opened again. Needs ``mount`` (root); skipped otherwise."""

from __future__ import annotations

import errno
import random
import sqlite3
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from mimir_mcp import errors
from mimir_mcp.config import RerankerSettings, Settings, StoreSettings
from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.errors import InvalidInputError, no_space
from mimir_mcp.server.app import create_server
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.store.in_memory import InMemoryStore

from .conftest import PYTHON, call, call_error, server_env
from .durability_worker import HashEmbedder

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DISK_MB = 6
FILLER_BYTES = 2 * 2**20  # taken by a file of the test's own, removed to free space
TEXT_BYTES = 30_000  # under limits.max_text_bytes (32 KiB)
MOST_WRITES = 200  # the disk is full well before this many memories
WRITE_AFTER_FREEING_S = 30  # a write takes well under a second; Chroma has been seen to hang on it for good
NOTE = "Project Falcon's launch date moved to March 3rd."


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_MB`` MiB, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)  # a server process still holding a file


def server(data_dir: Path, cross_encoder: Path) -> StdioServerParameters:
    env = server_env(data_dir, cross_encoder)
    env["MIMIR_RERANKER_ENABLED"] = "false"  # not what this test is about, and a model less to load
    return StdioServerParameters(command=PYTHON, args=["-m", "mimir_mcp"], env=env)


def large_text(rng: random.Random, number: int) -> str:
    words = " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(TEXT_BYTES // 8))
    return f"filler memory {number}: {words}"


async def test_a_full_disk_is_named_reads_go_on_and_nothing_acknowledged_is_lost(
    small_disk: Path, cross_encoder_path: Path
):
    data_dir = small_disk / "data"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * FILLER_BYTES)
    rng = random.Random(3)
    acknowledged: dict[str, str] = {}
    async with Client(server(data_dir, cross_encoder_path), mode="legacy") as client:
        note = (await call(client, "remember", {"text": NOTE}))["ids"][0]
        acknowledged[note] = NOTE
        message = None
        for number in range(MOST_WRITES):
            text = large_text(rng, number)
            result = await client.call_tool("remember", {"text": text})
            if result.is_error:
                message = "\n".join(getattr(block, "text", "") for block in result.content)
                break
            assert result.structured_content is not None
            acknowledged[result.structured_content["ids"][0]] = text
        assert message is not None, f"{MOST_WRITES} memories fitted on a {DISK_MB} MiB disk"
        assert "disk" in message and "full" in message and str(data_dir) in message, message
        assert "killed" not in message, message

        got = await call(client, "get", {"ids": [note]})
        assert [memory["text"] for memory in got["memories"]] == [NOTE]
        found = await call(client, "search", {"query": "when does Falcon launch?", "top_k": 3})
        assert note in [hit["id"] for hit in found["hits"]], found
        listed = await call(client, "list_memories", {"limit": 1})
        assert listed["total"] >= len(acknowledged)
        problems = (await call(client, "status")).get("problems", [])
        assert any(line.startswith("writes: ") and "full" in line and str(data_dir) in line for line in problems), (
            problems
        )
        # A remember of a text already stored writes nothing, so it says nothing of the disk either.
        assert (await call(client, "remember", {"text": NOTE}))["ids"] == [note]
        assert (await call(client, "status")).get("problems", []) == problems

        filler.unlink()
        after = "Written once space was freed."
        try:
            with anyio.fail_after(WRITE_AFTER_FREEING_S):
                acknowledged[(await call(client, "remember", {"text": after}))["ids"][0]] = after
        except TimeoutError:
            pytest.fail(f"remember hung once space was freed (no answer in {WRITE_AFTER_FREEING_S} s)")
        assert not any(line.startswith("writes: ") for line in (await call(client, "status")).get("problems", []))

    # Opened again as a server opens it (the store, then the catalogue reconciled with it), in this process:
    # a second server process would spend most of this test's time loading the bi-encoder.
    settings = Settings(store=StoreSettings(data_dir=data_dir), reranker=RerankerSettings(enabled=False))
    reopened = MemoryService(settings, embedder=HashEmbedder(settings.embedding))
    try:
        store, lexical = reopened.storage()
        assert {record.id: record.text for record in store.get(list(acknowledged))} == acknowledged
        assert {key: record.text for key, record in lexical.get(list(acknowledged)).items()} == acknowledged
    finally:
        reopened.close()


def test_a_full_disk_is_found_wherever_it_is_held():
    full = sqlite3.OperationalError("database or disk is full")
    wrapped = RuntimeError("the write failed")
    wrapped.__context__ = full
    assert no_space(ExceptionGroup("arms", [ValueError("other"), wrapped])) is full
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert no_space(quota) is quota
    # A message that quotes a caller's text is not the storage layer speaking.
    assert no_space(InvalidInputError("text", "'No space left on device' is not an id")) is None
    assert no_space(OSError(errno.EACCES, "Permission denied")) is None


class LogStuckStore(InMemoryStore):
    """A store in the state a full disk can leave embedded Chroma in: a write's changes in its log that it must
    apply before it answers anything, and cannot, so every query and catch-up fails as Chroma reports it."""

    stuck = False

    def _fail(self) -> None:
        if self.stuck:
            from chromadb.errors import InternalError

            raise InternalError(
                "Error executing plan: Error sending backfill request to compactor: Failed to apply logs to the "
                "metadata segment"
            )

    def change_token(self) -> int:
        return super().change_token() + (1_000_000 if self.stuck else 0)  # the failed write touched the files

    def catch_up(self) -> int:
        self._fail()
        return super().catch_up()

    def query(self, embedding, limit, *, where=None):  # noqa: ANN001 - InMemoryStore's signature
        self._fail()
        return super().query(embedding, limit, where=where)


async def test_reads_go_on_while_chroma_cannot_apply_its_log_for_want_of_space(tmp_path: Path, monkeypatch):
    """Chroma reports a compaction that failed for want of space only as its internal error: while the disk is
    all but full, reads that must catch up first serve what this process holds, a search answers from keywords
    and says so, and only a write answers with the full disk."""
    settings = Settings(store={"data_dir": tmp_path / "data"}, reranker={"enabled": False})
    store = LogStuckStore(name=settings.store.collection, embedding_model=settings.embedding.model)
    service = MemoryService(settings, embedder=HashingEmbedder(), open_store=lambda settings, embedder: store)
    try:
        async with Client(create_server(settings, service=service)) as client:
            note = (await call(client, "remember", {"text": NOTE}))["ids"][0]
            store.stuck = True
            # With room on the disk the same error is a damaged store, not a full disk: reads fail as before.
            assert "Chroma cannot read the memory store" in await call_error(client, "get", {"ids": [note]})

            monkeypatch.setattr(errors, "LOW_SPACE_BYTES", 2**62)  # every disk all but full
            got = await call(client, "get", {"ids": [note]})
            assert [memory["text"] for memory in got["memories"]] == [NOTE]
            assert (await call(client, "list_memories", {}))["total"] == 1
            # A text already stored writes nothing, so it needs no space: the catalogue tells it is there.
            assert (await call(client, "remember", {"text": NOTE}))["ids"] == [note]
            found = await call(client, "search", {"query": "when does Falcon launch?"})
            assert [hit["id"] for hit in found["hits"]] == [note] and found["search_method"] == "keywords"
            assert "disk is full" in found["message"] and "keywords alone" in found["message"]
            # A search that needs the stored vectors (MMR) cannot do without them: it says the disk is full.
            refused = await call_error(client, "search", {"query": "Falcon", "diversity": 0.3})
            assert "is full" in refused and str(settings.store.data_dir) in refused

            store.stuck = False  # space freed: the log applies, the dense arm runs again
            found = await call(client, "search", {"query": "when does Falcon launch?"})
            assert found["search_method"] == "hybrid" and "message" not in found  # ran as asked (no reranker here)
    finally:
        service.close()
