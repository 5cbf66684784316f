"""The exit waits for inference in flight in a loading thread, and none starts after."""

import shutil
import subprocess
import sys
import threading
import time

import pytest

from mimir_mcp.background import _ExitGuard

from .conftest import copies_of


def test_exit_waits_for_inference_in_flight_and_refuses_new_work():
    guard = _ExitGuard()
    inside = threading.Event()
    finished: list[float] = []

    def work() -> None:
        with guard.running() as allowed:
            assert allowed
            inside.set()
            time.sleep(0.3)
            finished.append(time.monotonic())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert inside.wait(5)
    guard.exit(timeout=5)
    returned = time.monotonic()
    assert finished and finished[0] <= returned  # the exit returned only after the work ended
    with guard.running() as allowed:
        assert allowed is False
    guard.exit(timeout=0.1)  # nothing in flight: returns at once, and again


def test_exit_gives_up_after_its_timeout():
    guard = _ExitGuard()
    release = threading.Event()

    def stuck() -> None:
        with guard.running():
            release.wait(5)

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    guard.exit(timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 2
    release.set()
    thread.join(5)


@pytest.mark.integration  # a Python process of its own
def test_the_guard_waits_before_any_atexit_handler_runs():
    # torch and onnxruntime register atexit handlers after mimir_mcp.background is imported, and atexit runs
    # the last registered first: the guard must have finished waiting before any of them starts.
    script = (
        "import atexit\n"
        "from mimir_mcp import background\n"
        "atexit.register(lambda: print('exiting before atexit:', background._exit_guard._exiting))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exiting before atexit: True"


@pytest.mark.integration  # a Python process of its own
def test_a_process_that_ends_while_the_models_load_exits_cleanly(tmp_path, cross_encoder_path):
    """A short script, run twice: the store answers, the process ends while the ONNX query encoder is still
    being opened and, on the first run (the graph built but not recorded), checked against the torch model
    in a loading thread; the second run finds the copy recorded and opens it without torch. Before the guard
    ran ahead of atexit, half such runs aborted; before the check's torch-backed array was freed inside the
    guard, about one in 25."""
    cache = tmp_path / "onnx-cache"
    cache.mkdir()
    for built in copies_of(cross_encoder_path).glob("query-*"):
        (cache / built.name).symlink_to(built)  # the graph, without its record: checked before it serves
    script = (
        "import asyncio, sys\n"
        "from mimir_mcp.config import Settings\n"
        "from mimir_mcp.service.memory import MemoryService\n"
        "from mimir_mcp.models import MemoryInput\n"
        f"store = {{'data_dir': {str(tmp_path / 'data')!r}, 'onnx_cache_dir': {str(cache)!r}}}\n"
        "service = MemoryService(Settings(store=store, reranker={'enabled': False}))\n"
        "service.start()\n"
        "asyncio.run(service.remember([MemoryInput(text=f'memory {n}') for n in range(20)]))\n"
        "service.close()\n"
        "print(sorted({'torch', 'sentence_transformers'} & set(sys.modules)))\n"
    )
    for loaded in (["sentence_transformers", "torch"], []):
        for record in cache.glob("serve-*.json"):  # the first run's check may have recorded it
            record.unlink()
        if not loaded:
            for record in copies_of(cross_encoder_path).glob("serve-query-*.json"):
                shutil.copy(record, cache)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == str(loaded)


@pytest.mark.integration  # a Python process of its own
def test_a_server_process_ends_with_its_output_flushed_and_no_teardown():
    """cli.serve.end_process, where a stopped server ends: what it printed and logged is written out, the status
    is the one given, and no atexit handler runs (the interpreter's teardown is what crashed under
    loading threads)."""
    script = (
        "import atexit, logging, sys\n"
        "from mimir_mcp.cli.serve import end_process\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n"
        "atexit.register(lambda: print('teardown ran', flush=True))\n"
        "print('protocol line', end='')\n"  # no newline: sits in stdout's buffer until flushed
        "logging.getLogger('mimir_mcp').info('stopped')\n"
        "end_process(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "protocol line"
    assert "stopped" in done.stderr and "teardown ran" not in done.stdout + done.stderr
