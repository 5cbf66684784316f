"""The exact fp32 ONNX encoder: same vectors as ``SentenceTransformer.encode`` for queries and documents,
and a plain fallback to torch for models it does not reproduce."""

from pathlib import Path

import numpy as np
import pytest

from mimir_mcp.config import EmbeddingSettings
from mimir_mcp.embedding import Embedder, bundled_minilm_path
from mimir_mcp.query_encoder import load_query_encoder, transformer_folder

from .conftest import copies_of

pytestmark = pytest.mark.integration  # the real bi-encoder and its ONNX graph

QUERIES = [
    "zebrafish heart regeneration",
    "Wie lange überleben Tardigraden im Vakuum? 水熊虫",
    "x",
    # Longer than the model's 256-token window: both paths must truncate the same way.
    " ".join(["mitochondrial dysfunction in neurodegenerative disease"] * 80),
]


@pytest.fixture(scope="module")
def reference():
    """The sentence-transformers model itself (the ``embedder`` fixture serves its ONNX copy, without torch)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_minilm_path()), device="cpu")


@pytest.fixture
def torch_vectors(reference):
    def encode(texts: list[str]) -> np.ndarray:
        return reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    return encode


@pytest.mark.anyio
async def test_onnx_query_vectors_equal_torch_vectors(embedder, torch_vectors):
    assert await embedder.wait_query_backend(600) == "onnx"
    assert embedder.status().query_backend == "onnx"
    for query in QUERIES:
        fast = embedder.encode_query(query)
        exact = torch_vectors([query])[0]
        assert fast.shape == exact.shape == (384,)
        assert float(np.abs(fast - exact).max()) < 1e-5, query
        assert abs(float(np.linalg.norm(fast)) - 1.0) < 1e-5


@pytest.mark.anyio
async def test_onnx_document_vectors_equal_torch_vectors_in_input_order(embedder, torch_vectors):
    """Documents go through the same graph once it is built, batched by length (two per batch here, so
    the batches mix lengths and the order is restored from the sort)."""
    assert await embedder.wait_query_backend(600) == "onnx"
    documents = [*QUERIES, "", "a memory of medium length about the release of version two", *QUERIES[:2]]
    fast = embedder._fast.result_now().encode(documents, batch_size=2)
    exact = torch_vectors(documents)
    assert fast.shape == exact.shape == (len(documents), 384)
    assert float(np.abs(fast - exact).max()) < 1e-5
    assert np.allclose(embedder.encode(documents), fast)  # what remember stores


@pytest.mark.anyio
async def test_a_large_batch_runs_once_per_core_and_keeps_input_order(embedder, torch_vectors):
    """An import's batch is split across the cores (every n-th text to one run of the one-thread session)
    and put back in order: the same vectors as torch's, row by row."""
    assert await embedder.wait_query_backend(600) == "onnx"
    documents = [f"{QUERIES[n % len(QUERIES)]} (note {n}){' and more' * (n % 7)}" for n in range(70)]
    vectors = embedder.encode(documents)
    exact = torch_vectors(documents)
    assert vectors.shape == exact.shape == (70, 384)
    assert float(np.abs(vectors - exact).max()) < 1e-5


@pytest.fixture(scope="module")
def cls_pooled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled backbone with CLS pooling: a model the mean-pooling graph must refuse to imitate."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    backbone = Transformer(str(bundled_minilm_path()))
    model = SentenceTransformer(modules=[backbone, Pooling(384, pooling_mode="cls")], device="cpu")
    path = tmp_path_factory.mktemp("cls-pooled")
    model.save(str(path))
    return path


def test_models_the_graph_does_not_reproduce_are_refused(cls_pooled_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(cls_pooled_model), device="cpu")
    assert transformer_folder(model) is None
    with pytest.raises(ValueError, match="mean pooling"):
        load_query_encoder(model, tmp_path)


@pytest.mark.anyio
async def test_refused_models_keep_embedding_queries_with_torch(cls_pooled_model, tmp_path):
    embedder = Embedder(EmbeddingSettings(model=str(cls_pooled_model)), onnx_cache_dir=tmp_path)
    embedder.start()
    backend = await embedder.wait_query_backend(600)
    assert backend.startswith("torch (onnx failed: ValueError"), backend
    query = QUERIES[0]
    assert np.array_equal(embedder.encode_query(query), embedder.encode([query])[0])


@pytest.mark.anyio
async def test_torch_query_backend_builds_nothing(tmp_path):
    embedder = Embedder(EmbeddingSettings(query_backend="torch"), onnx_cache_dir=tmp_path)
    embedder.start()
    assert await embedder.wait_query_backend(600) == "torch"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_onnx_copies_are_built_once_per_user_not_per_data_dir(tmp_path, small_sentence_model):
    """Two stores (two data dirs, as two projects or two examples would have) share one build in the
    per-user cache, and the second serves it from its record without loading the torch model; nothing
    model-derived is written into either data dir."""
    from mimir_mcp.config import Settings
    from mimir_mcp.models import MemoryInput
    from mimir_mcp.service.memory import MemoryService

    cache = tmp_path / "user-cache"
    builds, torch_models = [], []
    for name in ("first", "second"):
        settings = Settings(
            store={"data_dir": tmp_path / name, "onnx_cache_dir": cache},
            embedding={"model": str(small_sentence_model), "query_backend": "onnx"},
            reranker={"enabled": False},
        )
        service = MemoryService(settings)
        service.start()
        try:
            assert await service.embedder.wait_query_backend(600) == "onnx"
            stored = await service.remember([MemoryInput(text=f"a memory kept in the {name} store")])
            assert stored.stored == 1
            torch_models.append(service.embedder._load.result_now() is not None)
        finally:
            service.close()
        builds.append({path: path.stat().st_mtime_ns for path in cache.rglob("*.onnx")})
        assert (tmp_path / name / "chroma").is_dir() and not list((tmp_path / name).rglob("*.onnx"))
    assert len(builds[0]) == 1 and builds[1] == builds[0]  # the second store reused the first one's build
    assert torch_models == [True, False]


@pytest.mark.anyio
async def test_a_one_off_command_builds_no_copy_and_serves_a_recorded_one(tmp_path, cross_encoder_path):
    """``build_copy=False`` (export, import, reindex): torch where no copy is recorded, and no build spent on a
    process about to end; the recorded copy where there is one, with no torch model loaded."""
    bare = Embedder(EmbeddingSettings(), onnx_cache_dir=tmp_path, build_copy=False)
    bare.start()
    assert await bare.wait_query_backend(600) == "torch"
    assert list(tmp_path.iterdir()) == []
    served = Embedder(EmbeddingSettings(), onnx_cache_dir=copies_of(cross_encoder_path), build_copy=False)
    served.start()
    assert await served.wait_query_backend(600) == "onnx"
    assert served._load.result_now() is None  # no sentence-transformers model behind it
    assert np.allclose(served.encode([QUERIES[0]]), bare.encode([QUERIES[0]]), atol=1e-5)
