"""The local cross-encoder: its length cap, how a hub model that is not cached fails when it cannot be had, and
how it comes back when the hub could not be reached."""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mimir_mcp.background import BackgroundLoad
from mimir_mcp.config import DEFAULT_RERANKER_MODEL, RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.rerank import cross_encoder as cross_encoder_module
from mimir_mcp.rerank.cross_encoder import HOW_TO_CONFIGURE, HOW_TO_GET_THE_MODEL, RerankerLoadError, check_hub


@pytest.mark.anyio
@pytest.mark.parametrize("cap, expected", [(256, 256), (None, 512), (4096, 512), (64, 64)])
async def test_max_length_caps_the_model_length(cross_encoder_path, cap, expected):
    reranker = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder_path), backend="torch", max_length=cap))
    reranker.start()
    await reranker.wait_ready(300)
    assert reranker.status().max_length == expected
    # The cap is what inference uses: words past it change nothing, words before it do.
    base = "zebrafish heart regeneration " * 300
    scores = await reranker.score("query", [base, base + " comets and asteroids", "comets " + base])
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    assert scores[0] != pytest.approx(scores[2], abs=1e-5)


@contextmanager
def hub_answering(status: int, body: dict, headers: dict[str, str] | None = None) -> Iterator[str]:
    """A local stand-in for the Hugging Face hub's API that gives every request the same answer."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The tests' HF_HUB_OFFLINE lifted, so the reranker asks the hub (its endpoint set by each test)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


@pytest.mark.integration  # sentence-transformers' own loading code, against a stand-in hub
@pytest.mark.anyio
async def test_an_uncached_hub_model_fails_at_once_when_the_hub_cannot_be_reached(hub_online):
    """Offline, the default reranker fails in seconds (the download's retries took 51 s) and says how to fix it."""
    import huggingface_hub.constants
    import sentence_transformers  # noqa: F401 - imported before the clock starts: the load is what is timed

    hub_online.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    reranker = LocalCrossEncoder(RerankerSettings(model=DEFAULT_RERANKER_MODEL, backend="torch"))  # not cached here
    started = time.perf_counter()
    await reranker.wait_ready(120)
    assert time.perf_counter() - started < 10
    status = reranker.status()
    assert status.state == "failed" and status.model == DEFAULT_RERANKER_MODEL
    assert status.error is not None and "cannot be reached" in status.error
    fix = HOW_TO_GET_THE_MODEL.format(model=DEFAULT_RERANKER_MODEL)
    assert status.error.endswith(fix) and "--reranker-model" in fix and "--no-rerank" in fix
    reason = reranker.unavailable_reason()
    assert reason is not None and reason.endswith(fix) and HOW_TO_CONFIGURE not in reason


def test_check_hub_names_a_model_the_hub_does_not_have(hub_online):
    import huggingface_hub.constants

    with hub_answering(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}) as endpoint:
        hub_online.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        with pytest.raises(RerankerLoadError, match="has no such model") as raised:
            check_hub("nobody/no-such-cross-encoder")
    assert endpoint in str(raised.value) and "hf download nobody/no-such-cross-encoder" in str(raised.value)


def test_check_hub_leaves_a_model_the_hub_has_to_the_download(hub_online):
    import huggingface_hub.constants

    with hub_answering(200, {"id": DEFAULT_RERANKER_MODEL, "sha": "0" * 40, "private": False}) as endpoint:
        hub_online.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        check_hub(DEFAULT_RERANKER_MODEL)  # no error: the real download goes ahead


def test_a_failed_load_can_be_started_again():
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise OSError("no network")
        return "loaded"

    load = BackgroundLoad("flaky", flaky)
    assert not load.retry()  # never started: nothing to retry
    with pytest.raises(OSError):
        load.wait(10)
    assert load.state == "failed" and load.ended_at is not None
    first_end = load.ended_at
    assert load.retry()
    assert load.wait(10) == "loaded" and load.state == "ready" and load.error is None
    assert load.ended_at is not None and load.ended_at >= first_end
    assert not load.retry() and attempts == [0, 1]  # a ready load is not loaded again


def hub_cache_with(model: str, folder: Path, cache: Path) -> None:
    """``folder``'s model laid out as the Hugging Face cache holds ``model`` once downloaded."""
    revision = "0" * 40
    root = cache / f"models--{model.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        if file.is_file():
            shutil.copy2(file, snapshot / file.name)


@pytest.mark.integration  # sentence-transformers' own loading code, against a hub that cannot be reached
@pytest.mark.anyio
async def test_a_load_that_failed_for_want_of_the_hub_is_tried_again(hub_online, tmp_path, cross_encoder_path):
    """A server started offline reranks once the model can be had, without a restart: the first search
    HUB_RETRY_S after a failed try loads it again; until then the failure stands, saying it will be retried."""
    import huggingface_hub.constants
    import sentence_transformers  # noqa: F401

    hub_online.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    cache = tmp_path / "hf-cache"
    reranker = LocalCrossEncoder(RerankerSettings(model=DEFAULT_RERANKER_MODEL, backend="torch"), cache_dir=str(cache))
    await reranker.wait_ready(120)
    status = reranker.status()
    assert status.state == "failed" and status.error is not None and "cannot be reached" in status.error
    assert "tried again at the first search 5 minutes after each try" in status.error
    reason = reranker.unavailable_reason()  # not yet due: still the failure
    assert reason is not None and "failed to load" in reason and reranker.status().state == "failed"

    hub_cache_with(DEFAULT_RERANKER_MODEL, cross_encoder_path, cache)  # the network came back: it downloaded
    hub_online.setattr(cross_encoder_module, "HUB_RETRY_S", 0.0)
    reason = reranker.unavailable_reason()  # the search that finds it due starts the load, and does not wait
    assert reason is not None and "still loading" in reason
    await reranker.wait_ready(120)
    assert reranker.unavailable_reason() is None and reranker.status().state == "ready"
    scores = await reranker.score("who owns the migration?", ["Dana owns it.", "Lunch is at noon."])
    assert len(scores) == 2 and all(isinstance(score, float) for score in scores)


NOT_CACHED_LOAD = """
import sys, anyio
from mimir_mcp.config import DEFAULT_RERANKER_MODEL, RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder
reranker = LocalCrossEncoder(RerankerSettings(model=DEFAULT_RERANKER_MODEL, backend="torch"), cache_dir=sys.argv[1])
anyio.run(reranker.wait_ready, 60)
print(reranker.status().state, "torch" in sys.modules, "sentence_transformers" in sys.modules)
print(reranker.status().error)
"""


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_a_model_that_cannot_be_had_fails_before_torch_is_imported(tmp_path, env):
    """Offline, or with the hub out of reach, the load fails before torch is imported: the server does not
    spend seconds and half a gigabyte on a model it cannot have."""
    done = subprocess.run(
        [sys.executable, "-c", NOT_CACHED_LOAD, str(tmp_path / "hf-cache")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    state, torch_imported, st_imported = done.stdout.splitlines()[0].split()
    assert (state, torch_imported, st_imported) == ("failed", "False", "False")
    error = done.stdout.splitlines()[1]
    assert ("HF_HUB_OFFLINE is set" in error) if env["HF_HUB_OFFLINE"] == "1" else ("cannot be reached" in error)
    assert "hf download cross-encoder/ms-marco-MiniLM-L-6-v2" in error


@pytest.mark.anyio
async def test_a_load_that_cannot_succeed_by_waiting_is_not_tried_again(monkeypatch, tmp_path):
    """Offline on purpose (HF_HUB_OFFLINE) or a folder that is missing: no retry, whatever the time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(cross_encoder_module, "HUB_RETRY_S", 0.0)
    for model in (DEFAULT_RERANKER_MODEL, str(tmp_path / "missing")):
        reranker = LocalCrossEncoder(RerankerSettings(model=model, backend="torch"), cache_dir=str(tmp_path / "c"))
        await reranker.wait_ready(120)
        assert reranker.status().state == "failed"
        assert reranker.unavailable_reason() is not None and reranker.status().state == "failed"
        assert "tried again" not in (reranker.status().error or "")
