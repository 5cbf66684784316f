"""Many processes, one data dir (the embedded store): every write kept and findable, deduplication exact
across processes, each process seeing the others' writes at its next search, and the ONNX copies built
once when several processes start together on a fresh cache.

The 3 × 340 test drives ``tests/multiprocess_worker.py`` processes with the hash embedding (a worker
starts in about a second): 1,070 memories in all, past the 1,000 adds after which Chroma writes its
vector index to disk, so the restart check reads an index Chroma persisted while the others wrote. The
two-server test runs real stdio servers with the real bi-encoder, through MCP clients.
``MULTIPROCESS_MEMORIES`` sets the memories per worker (340).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client, StdioServerParameters

from mimir_mcp import locks
from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.locks import ProcessLock, build_once
from mimir_mcp.service.memory import dedup_key
from tests.conftest import PYTHON, REPO, call, server_env
from tests.durability_worker import HashEmbedder
from tests.multiprocess_worker import own_texts, shared_texts
from tests.test_durability import close_service, open_service

WORKERS = 3
PER_WORKER = int(os.environ.get("MULTIPROCESS_MEMORIES", "340"))
SHARED = 50  # texts every worker stores: each must be stored once, and reported new to one worker
STEP_TIMEOUT_S = 300.0


class Worker:
    """A worker process and the JSON lines it answers with, read by a thread (so a wait has a timeout)."""

    def __init__(self, data_dir: Path, number: int) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.multiprocess_worker", "--data-dir", str(data_dir), "--worker", str(number)]
            + ["--count", str(PER_WORKER), "--shared", str(SHARED)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr or []), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout or []:
            self.events.put(json.loads(line))
        self.events.put({"ev": "exited"})

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, event: str) -> dict[str, Any]:
        try:
            got = self.events.get(timeout=STEP_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"no {event!r} from worker {self.process.pid} in {STEP_TIMEOUT_S} s") from None
        assert got["ev"] == event, f"expected {event!r}, got {got}; stderr: {''.join(self.stderr[-20:])}"
        return got

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.mark.integration  # worker processes
def test_three_processes_store_their_memories_at_once(tmp_path: Path) -> None:
    """3 processes × PER_WORKER memories (plus 50 texts all three store) at once on a fresh data dir: every
    memory stored exactly once, each shared text reported new to exactly one process, every process
    finds the others' memories in both arms at its next search, and after a restart Chroma, the
    catalogue and the BM25 index hold the same ids, each memory's vector found by its own query."""
    data_dir = tmp_path / "data"
    started = time.monotonic()
    workers = [Worker(data_dir, number) for number in range(WORKERS)]
    try:
        for worker in workers:
            worker.expect("ready")
        for worker in workers:
            worker.send("go")
        stored = [worker.expect("stored")["results"] for worker in workers]
        writing_s = time.monotonic() - started

        new_ids = Counter(memory_id for results in stored for memory_id, deduplicated in results if not deduplicated)
        every_id = {memory_id for results in stored for memory_id, _ in results}
        assert len(every_id) == WORKERS * PER_WORKER + SHARED
        assert set(new_ids) == every_id, "a memory no process was told it stored"
        assert max(new_ids.values()) == 1, f"reported new to several processes: {new_ids.most_common(3)}"

        # Each worker searches for texts the others stored (and a few shared ones), with no restart.
        probes = []
        for number, worker in enumerate(workers):
            others = [text for other in range(WORKERS) if other != number for text in own_texts(other, PER_WORKER)]
            probes.append(others[::25] + shared_texts(SHARED)[::10])
            worker.send(json.dumps({"check": probes[number]}))
        for number, worker in enumerate(workers):
            seen = worker.expect("seen")
            expected = [dedup_key("default", text) for text in probes[number]]
            assert seen["dense"] == expected, f"worker {number}: the dense arm misses others' memories"
            assert seen["bm25"] == expected, f"worker {number}: the BM25 arm misses others' memories"
            assert seen["chroma"] == seen["catalogue"] == seen["bm25_documents"] == len(every_id), seen
        for worker in workers:
            worker.send("quit")
            worker.expect("closed")
            assert worker.process.wait(timeout=60) == 0
    finally:
        for worker in workers:
            worker.stop()

    embedder = HashEmbedder(EmbeddingSettings(query_backend="torch"))
    service, store, lexical = open_service(data_dir, embedder)
    try:
        chroma_ids = store.all_ids()
        assert chroma_ids == every_id
        assert lexical.catalogue.ids() == every_id
        assert lexical.ids() == every_id
        assert store.count() == lexical.count() == lexical.catalogue.count() == WORKERS * PER_WORKER + SHARED
        records = lexical.get(sorted(every_id))
        ordered = sorted(every_id)
        vectors = embedder.encode([records[memory_id].text for memory_id in ordered])
        lost = [m for m, v in zip(ordered, vectors, strict=True) if store.query(np.asarray(v), 1)[0][0] != m]
        assert not lost, f"{len(lost)} memories' vectors are not in Chroma's HNSW index after restart: {lost[:5]}"
    finally:
        close_service(service, store)
    print(f"{WORKERS} x {PER_WORKER} memories (+{SHARED} shared) written in {writing_s:.1f} s")


def stdio_params(data_dir: Path, cross_encoder: Path) -> StdioServerParameters:
    env = server_env(data_dir, cross_encoder)
    env["MIMIR_RERANKER_ENABLED"] = "false"
    return StdioServerParameters(command=PYTHON, args=["-m", "mimir_mcp"], env=env)


@pytest.mark.anyio
async def test_two_stdio_servers_on_one_embedded_folder(tmp_path: Path, cross_encoder_path: Path) -> None:
    """Two stdio servers on one embedded data dir, through MCP clients: the same text remembered by both
    at the same moment is one memory that exactly one of them reports new, and each sees what the
    other remembers, forgets and updates at its next call."""
    data_dir = tmp_path / "shared"
    params = stdio_params(data_dir, cross_encoder_path)
    async with Client(params, mode="legacy") as first, Client(params, mode="legacy") as second:
        for client in (first, second):  # both loaded, so the remembers below really start together
            await call(client, "search", {"query": "warm up", "rerank": False})

        texts = [
            f"Concurrent note {i}: the {['blue', 'green', 'red'][i % 3]} deploy window is {i} pm" for i in range(20)
        ]
        pairs: list[list[dict[str, Any]]] = []
        for text in texts:  # each text sent to both servers at the same moment
            pair: list[dict[str, Any]] = []

            async def remember(client: Client, text: str = text, pair: list[dict[str, Any]] = pair) -> None:
                pair.append(await call(client, "remember", {"memories": [{"text": text}]}))

            async with anyio.create_task_group() as group:
                group.start_soon(remember, first)
                group.start_soon(remember, second)
            pairs.append(pair)
        for pair in pairs:
            assert pair[0]["ids"] == pair[1]["ids"]
            # One stored it; the other found it stored (``deduplicated`` lists it, and is left out when empty).
            assert sorted((answer["stored"], answer.get("deduplicated", [])) for answer in pair) == [
                (0, pair[0]["ids"]),
                (1, []),
            ], pair
        listed = await call(second, "list_memories", {"limit": 100})
        assert listed["total"] == len(texts)

        ids = (
            await call(
                first,
                "remember",
                {
                    "memories": [
                        {"text": "The billing service retries failed charges three times."},
                        {"text": "Project Falcon's launch date moved to March 3rd."},
                    ]
                },
            )
        )["ids"]

        async def seen_by_second(query: str) -> list[str]:
            found = await call(second, "search", {"query": query, "rerank": False, "top_k": 3})
            return [hit["id"] for hit in found["hits"]]

        found = await call(second, "search", {"query": "billing retries", "rerank": False, "top_k": 3, "explain": True})
        assert found["hits"][0]["id"] == ids[0]
        assert found["hits"][0]["scores"]["dense_rank"] == 1 and found["hits"][0]["scores"]["bm25_rank"] == 1
        await call(first, "forget", {"ids": [ids[0]]})
        assert ids[0] not in await seen_by_second("billing retries")
        new = (await call(first, "update", {"id": ids[1], "text": "Project Falcon now launches on June 1st."}))["id"]
        falcon = await seen_by_second("Falcon launch date")
        assert ids[1] not in falcon and falcon[0] == new
        status = await call(second, "status", {"detail": True})
        assert status["memories"] == len(texts) + 1 and status["detail"]["bm25"]["in_sync"]


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a lock of its own: the machine-wide one may be held by a model build in another process
    monkeypatch.setattr(locks, "build_lock_path", lambda: tmp_path / "build.lock")

    def broken(scratch: Path) -> None:
        (scratch / "model.fused-inferred.onnx").write_text("an intermediate file")
        raise RuntimeError("the exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        build_once(tmp_path / "cache" / "abc", "model.onnx", broken)
    assert list((tmp_path / "cache").iterdir()) == []

    def working(scratch: Path) -> None:
        (scratch / "model.fused-inferred.onnx").write_text("an intermediate file")
        (scratch / "model.onnx").write_text("the graph")

    path, built = build_once(tmp_path / "cache" / "abc", "model.onnx", working)
    assert built and path.read_text() == "the graph"
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    assert build_once(tmp_path / "cache" / "abc", "model.onnx", broken) == (path, False)


BUILDER = """
import logging, sys
from sentence_transformers import SentenceTransformer
from mimir_mcp.query_encoder import load_query_encoder
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
model = SentenceTransformer(sys.argv[2], device="cpu")
print("ready", flush=True)
sys.stdin.readline()
encoder = load_query_encoder(model, __import__("pathlib").Path(sys.argv[1]))
print("onnx", encoder.path, flush=True)
"""


@pytest.mark.integration  # worker processes
def test_two_processes_build_the_onnx_query_encoder_once(tmp_path: Path, small_sentence_model: Path) -> None:
    """Two processes asking at the same moment for the ONNX query encoder on a fresh cache: both end up
    with it, with no error, and one build ran (the other waited for it and used its result)."""
    cache = tmp_path / "onnx-cache"
    processes = [
        subprocess.Popen(
            [PYTHON, "-c", BUILDER, str(cache), str(small_sentence_model)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=600) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert out.startswith("onnx "), (out, err[-2000:])
    paths = {out.split(" ", 1)[1].strip() for out, _ in outputs}
    assert len(paths) == 1
    builds = sum(err.count("mimir_mcp.locks built ") for _, err in outputs)
    assert builds == 1, [err[-2000:] for _, err in outputs]
    folder = Path(next(iter(paths))).parent
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]
    # the graph and the tokenizer saved beside it once, nothing half-written (both processes saved one)
    assert sorted(p.name for p in folder.iterdir()) == ["query.onnx", "tokenizer"]


TRY_LOCK = """
import sys
from filelock import FileLock, Timeout
try:
    FileLock(sys.argv[1]).acquire(timeout=0)
    print("acquired")
except Timeout:
    print("held")
"""


@pytest.mark.integration  # worker processes
def test_the_store_lock_is_held_against_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"

    def other_process_gets_it() -> str:
        result = subprocess.run([PYTHON, "-c", TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60)
        return result.stdout.strip()

    with ProcessLock(path), ProcessLock(path):  # reentrant, and one lock per path in a process
        assert other_process_gets_it() == "held"
    assert other_process_gets_it() == "acquired"
