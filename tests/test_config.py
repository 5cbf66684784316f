import pytest
from pydantic import ValidationError

from mimir_mcp.cli import build_parser, settings_overrides
from mimir_mcp.config import DEFAULT_RERANKER_MODEL, Settings
from mimir_mcp.embedding import bundled_minilm_path, resolve_model


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("MIMIR_") or key in {"CROSS_ENCODER_MODEL"}:
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults(clean_env):
    settings = Settings()
    assert settings.reranker.model == DEFAULT_RERANKER_MODEL
    assert settings.embedding.model == "all-MiniLM-L6-v2"
    assert settings.limits.max_text_bytes == 32 * 1024
    assert settings.server.host == "127.0.0.1"
    assert settings.search.fusion == "zscore" and settings.search.rrf_k == 10
    assert settings.search.context == "auto" and settings.search.context_min_coherence == 0.05
    assert settings.search.context_max_terms == 50.0 and settings.search.context_query_words == 4
    assert settings.search.default_max_chars == 400
    assert (settings.search.bm25_coverage_power, settings.search.dense_coverage_power) == (None, None)
    assert (
        settings.search.tail_from,
        settings.search.tail_dense_factor,
        settings.search.tail_dense_factor_context,
    ) == (
        10,
        100.0,
        0.1,
    )
    assert settings.reranker.backend == "onnx-int8" and settings.reranker.max_length == 256
    assert settings.reranker.blend is None  # the model's saved weight, else the cross-encoder alone


def test_environment_variables_fill_nested_groups(clean_env, tmp_path):
    clean_env.setenv("MIMIR_RERANKER_MODEL", "/models/ce")
    clean_env.setenv("MIMIR_LIMITS_MAX_TEXT_BYTES", "100")
    clean_env.setenv("MIMIR_STORE_DATA_DIR", str(tmp_path))
    clean_env.setenv("MIMIR_SERVER_PORT", "9001")
    clean_env.setenv("MIMIR_RERANKER_BLEND", "0.3")
    clean_env.setenv("MIMIR_SEARCH_BM25_COVERAGE_POWER", "2.5")
    clean_env.setenv("MIMIR_SEARCH_DEFAULT_MAX_CHARS", "1200")
    clean_env.setenv("MIMIR_SEARCH_TAIL_DENSE_FACTOR", "3")
    clean_env.setenv("MIMIR_SEARCH_CONTEXT_QUERY_WORDS", "0")
    settings = Settings()
    assert settings.search.context_query_words == 0
    assert settings.search.bm25_coverage_power == 2.5
    assert settings.search.default_max_chars == 1200
    assert settings.search.tail_dense_factor == 3.0
    assert settings.reranker.model == "/models/ce"
    assert settings.reranker.blend == 0.3
    assert settings.limits.max_text_bytes == 100
    assert settings.store.data_dir == tmp_path
    assert settings.server.port == 9001


def test_cross_encoder_model_variable_is_honoured(clean_env):
    clean_env.setenv("CROSS_ENCODER_MODEL", "cross-encoder/ms-marco-TinyBERT-L-2-v2")
    assert Settings().reranker.model == "cross-encoder/ms-marco-TinyBERT-L-2-v2"
    clean_env.setenv("MIMIR_RERANKER_MODEL", "/mine")
    assert Settings().reranker.model == "/mine"  # the project's own variable wins


def test_flags_override_environment_and_keep_the_rest(clean_env, tmp_path):
    clean_env.setenv("MIMIR_STORE_COLLECTION", "team_memories")
    clean_env.setenv("MIMIR_SERVER_PORT", "9001")
    args = build_parser().parse_args(
        ["--transport", "streamable-http", "--port", "9100", "--data-dir", str(tmp_path), "--no-rerank"]
    )
    settings = Settings(**settings_overrides(args))
    assert settings.server.transport == "streamable-http"
    assert settings.server.port == 9100
    assert settings.store.data_dir == tmp_path
    assert settings.store.collection == "team_memories"
    assert settings.reranker.enabled is False


def test_blend_outside_0_to_1_is_refused_by_name(clean_env):
    clean_env.setenv("MIMIR_RERANKER_BLEND", "1.5")
    with pytest.raises(ValidationError, match=r"reranker\.blend[\s\S]*less than or equal to 1"):
        Settings()


def test_cross_field_check(clean_env):
    with pytest.raises(ValidationError, match="default_top_k"):
        Settings(search={"default_top_k": 500})


def test_default_embedding_model_resolves_to_bundled_weights():
    bundled = bundled_minilm_path()
    assert bundled is not None and (bundled / "model.safetensors").exists()
    assert resolve_model("all-MiniLM-L6-v2") == str(bundled)
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == str(bundled)
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
