"""Crash durability: a process using the store is killed (SIGKILL) at random moments while it forgets,
updates and imports memories; after each kill the store is reopened (which reconciles the catalogue and
the BM25 index with Chroma, the store of record) and must hold every acknowledged change, the
unacknowledged operation either done or not done, and no memory half there.

One data dir serves all the trials, so each trial starts from what the last one's crash and recovery
left. The worker (``tests/durability_worker.py``) reports each operation before it starts ("begin",
with what it would change) and once it has returned ("ack"), and every write to Chroma and to the
catalogue in between, so the test knows which changes were acknowledged and where each kill landed.

The kill test kills 12 workers (``DURABILITY_TRIALS``; each starts in about a second with the hash
embedding, and each run draws a new seed, so runs together cover more kill points); every fourth is
held after a Chroma write so that the worst window is always among them.
``DURABILITY_SEED`` replays a run's choices of operations (the kill times still vary);
``DURABILITY_EMBEDDER=real`` runs the worker and the checks with the real bi-encoder instead of the
hash embedding (slower: each worker then loads the model).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.embedding import Embedder
from mimir_mcp.models import MemoryInput, MemoryRecord
from mimir_mcp.service.memory import MemoryService, dedup_key
from mimir_mcp.store.chroma import ChromaStore
from tests.conftest import PYTHON, REPO
from tests.durability_worker import NAMESPACE, HashEmbedder, worker_settings

pytestmark = pytest.mark.integration  # worker processes killed mid-write, and Chroma on disk

TRIALS = int(os.environ.get("DURABILITY_TRIALS", "12"))
SEED_MEMORIES = 300
READY_TIMEOUT_S = 120.0
# Operations take ~0.03-0.2 s each (with the worker's stalls after Chroma writes): a kill up to this
# long after the worker is ready lands anywhere in its first ten or so operations.
MAX_KILL_DELAY_S = 1.5
# Where a kill can leave Chroma ahead of the catalogue: after a Chroma write of memories in the
# operation, before its acknowledgement.
CHROMA_WRITES = {"chroma.add", "chroma.delete", "chroma.set_fields"}


@dataclass(frozen=True)
class Memory:
    text: str
    tags: tuple[str, ...]
    supersedes: str | None = None


State = dict[str, Memory]


@dataclass
class TrialLog:
    """What the worker said before it died."""

    events: list[dict[str, Any]] = field(default_factory=list)
    truncated_tail: bool = False

    def ops(self) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], dict[str, Any] | None]:
        """The acknowledged operations (begin, ack) in order, and the one begun but not acknowledged."""
        done, pending = [], None
        for event in self.events:
            if event["ev"] == "begin":
                assert pending is None, f"operation {pending['n']} began another before its ack"
                pending = event
            elif event["ev"] == "ack":
                assert pending is not None and pending["n"] == event["n"], f"ack without its begin: {event}"
                done.append((pending, event))
                pending = None
        return done, pending

    def phase(self) -> str:
        """Where the kill landed: between operations, or the last step an operation reported."""
        last = self.events[-1] if self.events else {"ev": "start"}
        if last["ev"] in {"ready", "ack", "start"}:
            return "between operations"
        op = self._pending_op()
        if last["ev"] == "begin":
            return f"{op}: before any write"
        return f"{op}: {'inside' if last['ev'] == 'call' else 'after'} {last['fn']}"

    def chroma_ahead(self) -> bool:
        """Whether the unacknowledged operation had finished a Chroma write of memories."""
        _, pending = self.ops()
        if pending is None:
            return False
        after = self.events[self.events.index(pending) + 1 :]
        return any(e["ev"] == "done" and e["fn"] in CHROMA_WRITES for e in after)

    def _pending_op(self) -> str:
        _, pending = self.ops()
        return "?" if pending is None else pending["op"]


# -- the expected state --------------------------------------------------------------------------


def apply(op: dict[str, Any], state: State) -> State:
    """``state`` after ``op`` took full effect."""
    after = dict(state)
    if op["op"] == "import":
        for record in op["records"]:
            after.setdefault(record["id"], Memory(record["text"], tuple(record["tags"])))
    elif op["op"] == "forget":
        for memory_id in op["ids"]:
            after.pop(memory_id, None)
    elif op["op"] == "update_text":
        old = after.pop(op["old"])
        after[op["new"]] = Memory(op["text"], old.tags, supersedes=op["old"])
    elif op["op"] == "update_tags":
        current = after[op["id"]]
        after[op["id"]] = Memory(current.text, tuple(op["tags"]), current.supersedes)
    else:
        raise AssertionError(f"unknown operation {op['op']!r}")
    return after


def check_ack(op: dict[str, Any], ack: dict[str, Any], state: State) -> None:
    """The worker's acknowledgement agrees with the model (``state``: before the operation)."""
    if op["op"] == "import":
        assert sorted(ack["new"]) == sorted({r["id"] for r in op["records"]} - set(state)), op["n"]
    elif op["op"] == "forget":
        assert ack["removed_count"] == len(set(op["ids"]) & set(state)), op["n"]
        assert ack["not_found"] == [op["absent"]], op["n"]
    elif op["op"] == "update_text":
        assert op["new"] == dedup_key(NAMESPACE, op["text"])
        assert (ack["id"], ack["supersedes"]) == (op["new"], op["old"]), op["n"]
    else:
        assert ack["id"] == op["id"] and ack["changed"] == ["tags"], op["n"]


def outcome(op: dict[str, Any] | None, before: State, actual: State) -> str:
    """Which outcome of the unacknowledged operation ``actual`` shows: "done", "not done", or for an
    import or forget (several memories, which the service does not promise to change at once)
    "partial"; raises ``AssertionError`` for any other state."""
    if op is None:
        assert_same_state(actual, before, "no operation was pending")
        return "none pending"
    after = apply(op, before)
    if op["op"] in {"update_text", "update_tags"}:
        if actual == after:
            return "done"
        if actual == before:
            return "not done"
        if op["op"] == "update_text" and op["old"] in actual and op["new"] in actual:
            raise AssertionError(
                f"update {op['old']} -> {op['new']} half done: both the superseded memory and its replacement "
                "are stored after reconcile"
            )
        if op["op"] == "update_text" and op["old"] not in actual and op["new"] not in actual:
            raise AssertionError(f"update {op['old']} -> {op['new']} lost the memory: neither id is stored")
        assert_same_state(actual, after, f"neither the state before nor after the unacknowledged {op['op']}")
        raise AssertionError("unreachable")
    touched = {r["id"] for r in op["records"]} if op["op"] == "import" else set(op["ids"])
    untouched = lambda state: {k: v for k, v in state.items() if k not in touched}  # noqa: E731
    assert_same_state(untouched(actual), untouched(before), f"memories the unacknowledged {op['op']} did not touch")
    for memory_id in touched:
        assert actual.get(memory_id) in {before.get(memory_id), after.get(memory_id)}, (
            f"{memory_id} after the unacknowledged {op['op']}: {actual.get(memory_id)}; before "
            f"{before.get(memory_id)}, after {after.get(memory_id)}"
        )
    if actual == after:
        return "done"
    return "not done" if actual == before else "partial"


def assert_same_state(actual: State, expected: State, context: str) -> None:
    if actual == expected:
        return
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    raise AssertionError(
        f"{context}: {len(missing)} expected memories missing {missing[:5]}, {len(extra)} unexpected "
        f"{extra[:5]}, {len(changed)} changed "
        f"{[(k, expected[k], actual[k]) for k in changed[:3]]}"
    )


# -- the store after a crash -----------------------------------------------------------------------


def imported(texts: list[str], tags: tuple[str, ...] = ()) -> list[MemoryRecord]:
    """Records of ``texts`` as ``import_records`` takes them: the store's own ids, one time for all."""
    now = "2025-01-01T00:00:00.000+00:00"
    return [
        MemoryRecord(id=dedup_key(NAMESPACE, t), text=t, namespace=NAMESPACE, tags=list(tags), created_at=now)
        for t in texts
    ]


def open_service(data_dir: Path, embedder: Embedder) -> tuple[MemoryService, ChromaStore, Any]:
    service = MemoryService(worker_settings(str(data_dir)), embedder=embedder)
    store, lexical = service.storage()  # opening reconciles the catalogue and BM25 with Chroma
    return service, store, lexical


def close_service(service: MemoryService, store: ChromaStore) -> None:
    """Close the catalogue and release Chroma's client, so the next worker is the store's only user and
    the next open reads the files afresh (Chroma caches one client per path in a process)."""
    service.close()
    store.close()


def observed_state(store: ChromaStore, lexical: Any) -> tuple[State, dict[str, np.ndarray]]:
    """The memories after reconcile, checked to agree across Chroma, the catalogue and the BM25 index;
    with each memory's vector from Chroma."""
    chroma: dict[str, MemoryRecord] = {}
    vectors: dict[str, np.ndarray] = {}
    for records, embeddings in store.records(embeddings=True):
        for record, vector in zip(records, embeddings, strict=True):
            chroma[record.id] = record
            vectors[record.id] = np.asarray(vector, dtype=np.float32)
    catalogue_ids = lexical.catalogue.ids()
    bm25_ids = lexical.ids()
    assert set(chroma) == store.all_ids()
    assert set(chroma) == catalogue_ids, (
        f"Chroma and the catalogue differ after reconcile: only in Chroma {sorted(set(chroma) - catalogue_ids)[:5]}, "
        f"only in the catalogue {sorted(catalogue_ids - set(chroma))[:5]}"
    )
    assert bm25_ids == catalogue_ids, f"BM25 index and catalogue differ: {sorted(bm25_ids ^ catalogue_ids)[:5]}"
    assert lexical.count() == len(catalogue_ids) == store.count()
    catalogued = lexical.get(sorted(catalogue_ids))
    for memory_id, record in chroma.items():
        assert catalogued[memory_id] == record, (
            f"{memory_id}: the catalogue's record {catalogued[memory_id]} is not Chroma's {record}"
        )
    state = {r.id: Memory(r.text, tuple(r.tags), r.supersedes) for r in chroma.values()}
    replaced = {m.supersedes for m in state.values() if m.supersedes is not None} & set(state)
    assert not replaced, f"superseded memories still stored beside their replacements: {sorted(replaced)[:5]}"
    return state, vectors


def check_search_arms(
    store: ChromaStore,
    lexical: Any,
    embed: Any,
    state: State,
    vectors: dict[str, np.ndarray],
    probe: list[str],
    removed: list[str],
    removed_texts: dict[str, str],
) -> None:
    """Both arms find what is stored (its vector in Chroma's HNSW index, its terms in BM25) and never
    a memory removed."""
    for memory_id in probe:
        dense = store.query(vectors[memory_id], 3)
        assert dense and dense[0][0] == memory_id, f"{memory_id}: its own vector finds {dense}"
        assert {hit for hit, _ in dense} <= set(state), f"dense search returns memories not stored: {dense}"
        lexical_hits = [hit.id for hit in lexical.search(state[memory_id].text, 10)]
        assert memory_id in lexical_hits, f"{memory_id}: BM25 search for its own text finds {lexical_hits}"
    if removed:
        gone_vectors = embed([removed_texts[memory_id] for memory_id in removed])
        for memory_id, vector in zip(removed, gone_vectors, strict=True):
            dense = [hit for hit, _ in store.query(vector, 3)]
            assert memory_id not in dense and set(dense) <= set(state), f"removed {memory_id}: dense finds {dense}"
            lexical_hits = [hit.id for hit in lexical.search(removed_texts[memory_id], 10)]
            assert memory_id not in lexical_hits, f"removed {memory_id}: BM25 finds it"


# -- the worker ----------------------------------------------------------------------------------


def start_worker(
    data_dir: Path, seed: int, stall_ms: float, embedder: str, stderr_path: Path, hold_at: int = 0
) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIMIR_")}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    command = [
        PYTHON, "-m", "tests.durability_worker",
        "--data-dir", str(data_dir), "--seed", str(seed), "--stall-ms", str(stall_ms), "--embedder", embedder,
        "--hold-at-write", str(hold_at),
    ]  # fmt: skip
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr)


def run_and_kill(process: subprocess.Popen, delay_s: float, stderr_path: Path, hold_at: int = 0) -> TrialLog:
    """Wait for the worker to be ready, then ``delay_s`` (or, with ``hold_at``, until it reports its
    ``hold_at``-th Chroma write of memories, after which it stops), then SIGKILL it; returns all it
    reported."""
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    raw: list[bytes] = []
    writes_to_go = hold_at
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"worker not ready after {READY_TIMEOUT_S} s: {_tail(stderr_path)}") from None
            if line is None:
                raise AssertionError(f"worker exited before it was ready: {_tail(stderr_path)}")
            raw.append(line)
            event = json.loads(line)
            writes_to_go -= event["ev"] == "done" and event["fn"] in CHROMA_WRITES
            if (event["ev"] == "ready" and not hold_at) or (hold_at and writes_to_go == 0):
                break
        if not hold_at:
            time.sleep(delay_s)
        assert process.poll() is None, f"worker ended before the kill: {_tail(stderr_path)}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    reader.join(timeout=30)
    while (line := lines.get()) is not None:
        raw.append(line)
    assert process.returncode == -signal.SIGKILL, f"worker exit status {process.returncode}: {_tail(stderr_path)}"
    log = TrialLog()
    for index, line in enumerate(raw):
        try:
            log.events.append(json.loads(line))
        except json.JSONDecodeError:
            # Only the last line can be cut short, by the kill in the middle of writing it.
            assert index == len(raw) - 1, f"unreadable line {index} from the worker: {line[:200]!r}"
            log.truncated_tail = True
    assert not any(e["ev"] == "finished" for e in log.events), "the worker ran out of operations before the kill"
    return log


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_during_forget_update_import_leaves_every_acknowledged_change_and_no_half_memory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("DURABILITY_SEED") or random.SystemRandom().randrange(1, 10**6))
    embedder_kind = os.environ.get("DURABILITY_EMBEDDER", "hash")
    embedder: Embedder = (
        request.getfixturevalue("embedder") if embedder_kind == "real" else HashEmbedder(EmbeddingSettings())
    )
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    where = f"(DURABILITY_SEED={seed})"
    print(f"reproduce with {where}")  # pytest shows it with any failure, a library's own error included

    # Seed the store, through the service, with memories the first trials forget and update.
    service, store, lexical = open_service(data_dir, embedder)
    seeded = [
        f"seedx0x{i} the {rng.choice(['canary', 'ledger', 'schema'])} note {rng.randrange(10**6)}"
        for i in range(SEED_MEMORIES)
    ]
    records = imported(seeded, ("seed",))
    assert len(service.import_records(records)) == SEED_MEMORIES
    close_service(service, store)
    model: State = {r.id: Memory(r.text, tuple(r.tags)) for r in records}
    texts = {memory_id: memory.text for memory_id, memory in model.items()}

    phases: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    mid_operation = chroma_ahead = acknowledged = held = 0
    started = time.monotonic()
    for trial in range(TRIALS):
        stall_ms = rng.choice([0.0, 100.0, 100.0])
        delay = rng.uniform(0.0, MAX_KILL_DELAY_S)
        # Every fourth kill lands for certain after a Chroma write and before its ack (the worst window);
        # the others at a random moment.
        hold_at = rng.randint(1, 8) if trial % 4 == 3 else 0
        held += bool(hold_at)
        stderr_path = tmp_path / f"worker-{trial}.stderr"
        process = start_worker(data_dir, seed * 100 + trial, stall_ms, embedder_kind, stderr_path, hold_at)
        log = run_and_kill(process, delay, stderr_path, hold_at)
        context = f"trial {trial} {where}, killed {log.phase()}"

        done, pending = log.ops()
        start = model
        for op, ack in done:
            check_ack(op, ack, model)
            model = apply(op, model)
        acknowledged += len(done)
        for op, _ in done + ([(pending, None)] if pending else []):
            texts.update({r["id"]: r["text"] for r in op.get("records", [])})
            if op["op"] == "update_text":
                texts[op["new"]] = op["text"]

        service, store, lexical = open_service(data_dir, embedder)
        try:
            try:
                actual, vectors = observed_state(store, lexical)
                result = outcome(pending, model, actual)
            except AssertionError as exc:
                raise AssertionError(f"{context}: {exc}") from exc
            # The memories this trial changed, and a few others, in both search arms.
            recent = sorted(k for k in actual if start.get(k) != actual[k])
            probe = rng.sample(recent, min(4, len(recent))) + rng.sample(sorted(actual), 4)
            gone = sorted(set(texts) - set(actual))  # forgotten, superseded, or an import not done
            removed = rng.sample(gone, min(6, len(gone)))
            try:
                check_search_arms(store, lexical, embedder.encode, actual, vectors, probe, removed, texts)
            except AssertionError as exc:
                raise AssertionError(f"{context}: search after recovery: {exc}") from exc
        finally:
            close_service(service, store)

        phases[log.phase()] += 1
        outcomes[f"{pending['op'] if pending else 'none'}: {result}"] += 1
        mid_operation += pending is not None
        chroma_ahead += log.chroma_ahead()
        model = actual

    summary = (
        f"{TRIALS} kills in {time.monotonic() - started:.1f} s {where}: {acknowledged} operations acknowledged; "
        f"{mid_operation} kills mid-operation, {chroma_ahead} after a Chroma write and before the ack; "
        f"where: {dict(phases)}; unacknowledged operations: {dict(outcomes)}; {len(model)} memories at the end"
    )
    print(summary)
    # The kills must have exercised the crash windows, or the checks above prove little: the held ones
    # land after a Chroma write for certain; of the others typically most land mid-operation.
    assert chroma_ahead >= held >= 1, summary
    assert mid_operation >= max(5, held), summary


@pytest.mark.anyio
async def test_a_memory_stored_again_after_an_update_replaced_it_survives_restart(tmp_path: Path) -> None:
    """Remembering (or importing) a text again after ``update`` replaced it stores it again, acknowledged;
    reopening the store must not drop it because the replacement names it in ``supersedes`` (reconcile
    means that for an update a crash interrupted, not for every memory ever superseded)."""
    data_dir = tmp_path / "data"
    service, store, _ = open_service(data_dir, HashEmbedder(EmbeddingSettings()))
    try:
        [old] = (await service.remember([MemoryInput(text="The launch is on March 3")])).ids
        new = (await service.update(old, text="The launch moved to April 14")).id
        again = await service.remember([MemoryInput(text="The launch is on March 3")])
        assert again.ids == [old] and again.stored == 1 and again.deduplicated == []
        assert (await service.get([old, new], max_chars=None)).not_found == []
    finally:
        close_service(service, store)

    service, store, lexical = open_service(data_dir, HashEmbedder(EmbeddingSettings()))
    try:
        assert store.all_ids() == lexical.catalogue.ids() == lexical.ids()
        assert store.all_ids() == {old, new}, "the memory stored again after the update was dropped on reopening"
    finally:
        close_service(service, store)


def test_after_a_repair_a_reopened_store_sees_what_another_process_wrote(tmp_path: Path) -> None:
    """A rebuild replaces the store's handle: the replaced handles must be closed, and closing the service
    must close its store, or Chroma keeps this process's bindings for the data dir alive and stale: the
    store opened next in this process would not see what another process wrote meanwhile, and reading
    vectors fails ("Error finding id")."""
    from tests.test_repair import damage  # noqa: PLC0415 - the torn index that test builds

    data_dir = tmp_path / "data"
    embedder = HashEmbedder(EmbeddingSettings())

    service, store, _ = open_service(data_dir, embedder)
    service.import_records(imported([f"first note {i}: the ledger moves" for i in range(40)]))
    close_service(service, store)
    damage(data_dir)
    service, store, _ = open_service(data_dir, embedder)
    assert service.repair is not None and store.count() == 40
    service.close()  # lets go of the store as well (not only the catalogue)

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.test_durability import EmbeddingSettings, HashEmbedder, close_service, imported, open_service\n"
        "service, store, _ = open_service(Path(sys.argv[1]), HashEmbedder(EmbeddingSettings()))\n"
        "service.import_records(imported([f'second note {i}: the canary ships' for i in range(25)]))\n"
        "close_service(service, store)\n"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MIMIR_")}, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([PYTHON, "-c", script, str(data_dir)], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    service, store, lexical = open_service(data_dir, embedder)
    try:
        actual, vectors = observed_state(store, lexical)
        assert len(actual) == len(vectors) == 65
    finally:
        close_service(service, store)
