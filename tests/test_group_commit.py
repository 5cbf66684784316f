"""Group commit: writes queued during a commit are committed together, each gets its own result."""

import threading
import time

import anyio
import pytest

from mimir_mcp.embedding import HashingEmbedder
from mimir_mcp.models import MemoryInput
from mimir_mcp.service.memory import MemoryService
from mimir_mcp.store.group_commit import GroupCommit, _Entry
from mimir_mcp.store.in_memory import open_in_memory


def test_writes_queued_during_a_commit_share_the_next_one_and_get_their_own_results():
    calls: list[list[int]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def commit(items):
        calls.append(list(items))
        if len(calls) == 1:
            first_started.set()
            release_first.wait(5)
        return [item * 10 for item in items]

    group = GroupCommit(commit)
    results: dict[int, int] = {}

    def submit(item: int) -> None:
        results[item] = group.submit(item)

    leader = threading.Thread(target=submit, args=(1,))
    leader.start()
    assert first_started.wait(5)
    followers = [threading.Thread(target=submit, args=(item,)) for item in (2, 3, 4)]
    for thread in followers:
        thread.start()
    deadline = time.monotonic() + 5
    while len(group._pending) < 3 and time.monotonic() < deadline:  # all three queued behind the first
        time.sleep(0.005)
    release_first.set()
    for thread in [leader, *followers]:
        thread.join(5)
    assert calls[0] == [1]
    assert sorted(calls[1]) == [2, 3, 4] and len(calls) == 2  # one commit for the three that waited
    assert results == {1: 10, 2: 20, 3: 30, 4: 40}
    assert (group.batches, group.items, group.largest) == (2, 4, 3)


def test_a_failed_group_is_committed_item_by_item_so_only_the_bad_write_fails():
    calls: list[list[str]] = []

    def commit(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad write")
        return [item.upper() for item in items]

    group = GroupCommit(commit)
    # Queue three writes as if they had arrived during an earlier commit, then let one submit run them.
    entries = []
    for item in ("a", "bad"):
        entry = _Entry(item)
        entries.append(entry)
        group._pending.append(entry)
    assert group.submit("c") == "C"
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert entries[0].result == "A" and entries[0].error is None
    assert isinstance(entries[1].error, ValueError) and entries[1].result is None


def test_a_single_failed_write_raises_its_own_error_and_the_next_write_still_commits():
    def commit(items):
        if items == ["boom"]:
            raise OSError("disk full")
        return list(items)

    group = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group.submit("boom")
    assert group.submit("fine") == "fine"


@pytest.mark.anyio
async def test_concurrent_remembers_store_each_text_once_and_report_it_new_once(fake_settings):
    """Many remembers at once, several of the same texts: each text stored once, new to exactly one call,
    and the store, the index and status's counts agree."""
    service = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=open_in_memory)
    texts = [f"Concurrent note number {n} about the group commit" for n in range(12)]
    answers = []
    try:

        async def one(text: str) -> None:
            answers.append((text, await service.remember([MemoryInput(text=text)])))

        async with anyio.create_task_group() as tasks:
            for text in texts + texts[:6]:  # six texts sent twice at once
                tasks.start_soon(one, text)
        fresh = {}
        for text, answer in answers:
            fresh.setdefault(text, []).append(answer.stored == 1 and not answer.deduplicated)
        assert {text: sum(flags) for text, flags in fresh.items()} == dict.fromkeys(texts, 1)
        store, lexical = service.storage()
        assert store.count() == 12 and lexical.count() == 12
        status = await service.status()
        assert status.store.memories == 12 and status.bm25 is not None and status.bm25.in_sync
        assert 12 <= service.writes.commits.items <= 18  # a duplicate may reach a commit, and be found there
    finally:
        service.close()


def test_with_a_duty_the_next_commit_waits_and_carries_every_write_that_arrived_meanwhile():
    starts: list[float] = []
    ends: list[float] = []
    calls: list[list[str]] = []

    def commit(items):
        starts.append(time.monotonic())
        calls.append(list(items))
        time.sleep(0.1)
        ends.append(time.monotonic())
        return list(items)

    group = GroupCommit(commit, duty=0.5)  # after a 0.1 s commit, the next starts 0.1 s later at the earliest
    assert group.submit("first") == "first"
    threads = [threading.Thread(target=group.submit, args=(item,)) for item in ("a", "b", "c")]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(5)
    assert calls[0] == ["first"]
    assert sorted(calls[1]) == ["a", "b", "c"] and len(calls) == 2
    assert starts[1] - ends[0] >= 0.095
    with pytest.raises(ValueError, match="duty"):
        GroupCommit(commit, duty=0)


def test_a_lone_writer_is_not_paced_while_nothing_else_is_waiting():
    busy = False
    starts: list[float] = []
    ends: list[float] = []

    def commit(items):
        starts.append(time.monotonic())
        time.sleep(0.05)
        ends.append(time.monotonic())
        return list(items)

    group = GroupCommit(commit, duty=0.1, contended=lambda: busy)  # paced: 0.45 s after a 0.05 s commit
    group.submit("one")
    group.submit("two")
    assert starts[1] - ends[0] < 0.2  # nothing waiting on the writes: no pause
    busy = True
    group.submit("three")
    assert starts[2] - ends[1] >= 0.4  # searches in flight: paced
