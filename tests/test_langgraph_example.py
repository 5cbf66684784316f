"""The LangGraph example (examples/langgraph/), in the environment of its own requirements.txt.

langchain-mcp-adapters requires mcp<2, this project mcp>=2: the example cannot run in the test environment.
Its environment is built here once, from PyPI, and cached by the hash of requirements.txt under
``$MIMIR_TEST_CACHE`` (default ``~/.cache/mimir-mcp-tests``): a build runs in a scratch folder and is renamed
into place whole, under a file lock, so a build killed halfway is never taken for a finished one and two
test processes never build it at once. Delete the folder to rebuild it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from .conftest import PYTHON, REPO, start_http_server

pytestmark = pytest.mark.integration  # builds an environment from PyPI (once) and starts a server process

EXAMPLE = REPO / "examples" / "langgraph"
REQUIREMENTS = EXAMPLE / "requirements.txt"
INSTALL_TIMEOUT_S = 1200


def cache_dir() -> Path:
    return Path(os.environ.get("MIMIR_TEST_CACHE") or Path.home() / ".cache" / "mimir-mcp-tests").expanduser()


def _run(command: list[str], what: str, timeout: float) -> str:
    """Run a step of the build; a failure fails the test with the step's own output (not a skip: CI has PyPI)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} took over {timeout:.0f} s; is PyPI reachable?", pytrace=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        pytest.fail(f"{what} failed (exit {done.returncode}); is PyPI reachable?\n{output}", pytrace=False)
    return done.stdout


def example_environment() -> Path:
    """The python of the example's environment: the cached one, or one built now (minutes at most)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    cache = cache_dir()
    target = cache / f"langgraph-{digest}"
    python = target / "bin" / "python"
    if python.exists():  # only a finished build is ever renamed to this name
        return python
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"langgraph-{digest}.lock"), timeout=INSTALL_TIMEOUT_S + 300):
        if python.exists():  # another process built it while this one waited
            return python
        # Whatever is left under the lock is from a build that died: a scratch folder, or an environment
        # whose interpreter has gone (its base Python removed).
        for stale in cache.glob(f".langgraph-{digest}-build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        scratch = Path(tempfile.mkdtemp(prefix=f".langgraph-{digest}-build-", dir=cache))
        try:
            _run([PYTHON, "-m", "venv", str(scratch)], "python -m venv", timeout=300)
            pip = [str(scratch / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            _run([*pip, "install", "-r", str(REQUIREMENTS)], f"pip install -r {REQUIREMENTS}", INSTALL_TIMEOUT_S)
            (scratch / "versions.txt").write_text(_run([*pip, "freeze"], "pip freeze", timeout=120))
            # The venv is used through bin/python only, which still works under the new name (the console
            # scripts' shebangs keep the scratch path).
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return python


@pytest.fixture(scope="session")
def langgraph_python() -> Path:
    return example_environment()


@pytest.fixture
def mimir_url(tmp_path: Path, cross_encoder_path: Path) -> Iterator[str]:
    """A streamable-HTTP server of its own, on a fresh store: the example's memories meet no other test's."""
    process, port = start_http_server("streamable-http", tmp_path / "data", cross_encoder_path)
    # Keep reading its log: a full pipe would block the server mid-request.
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_langgraph_agents_share_memory(langgraph_python: Path, mimir_url: str):
    """Through langchain-mcp-adapters, offline with a scripted model: the writer agent finds and cites what
    the researcher agent stored, on one streamable-HTTP server."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(langgraph_python), str(EXAMPLE / "agents.py"), "--url", mimir_url],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    report = next(line for line in lines if line.startswith("[researcher]"))
    answer = next(line for line in lines if line.startswith("[writer]"))
    assert report.startswith("[researcher] stored mem_")
    assert answer.startswith("[writer] Answer from shared memory: ")
    stored = set(re.findall(r"mem_[0-9a-f]{32}", report))
    cited = re.findall(r"\[(mem_[0-9a-f]{32}), by (\w+)\]", answer)
    assert len(stored) == 3 and len(cited) == 2
    assert {memory_id for memory_id, _ in cited} <= stored and {agent for _, agent in cited} == {"researcher"}
