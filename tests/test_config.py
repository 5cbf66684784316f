import pytest
from pydantic import ValidationError

from mimir_mcp.cli.serve import build_parser, settings_overrides
from mimir_mcp.config import DEFAULT_RERANKER_MODEL, Settings, unknown_environment
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
    assert settings.search.context == "auto" and settings.search.candidate_depth == 100
    assert settings.search.default_max_chars == 400
    # what a user may change about search; how the arms are fused is the policy's (search/policy.py)
    assert set(type(settings.search).model_fields) == {
        "candidate_depth",
        "context",
        "default_top_k",
        "default_rerank_top_k",
        "default_diversity",
        "default_deadline_ms",
        "default_max_chars",
        "default_when",
        "timezone",
        "recency_half_life_days",
        "now",
    }
    assert settings.search.timezone is None and settings.search.now is None
    assert settings.search.recency_half_life_days == 30.0 and settings.search.default_when == "auto"
    assert all(field.description for field in type(settings.search).model_fields.values())
    assert settings.reranker.backend == "onnx-int8" and settings.reranker.max_length == 256
    assert settings.reranker.blend is None  # the model's saved weight, else the cross-encoder alone


def test_a_default_when_is_read_at_start_up(clean_env):
    assert Settings(search={"default_when": "OFF"}).search.default_when is None  # pyright: ignore[reportArgumentType]
    assert Settings(search={"default_when": " the last 90 days "}).search.default_when == "the last 90 days"  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="could not read 'blue moon'"):
        Settings(search={"default_when": "blue moon"})  # pyright: ignore[reportArgumentType]


def test_a_fixed_clock_must_carry_its_offset(clean_env):
    clean_env.setenv("MIMIR_SEARCH_NOW", "2026-12-09T15:30:00+01:00")
    assert Settings().search.now is not None and Settings().search.now.isoformat() == "2026-12-09T15:30:00+01:00"
    clean_env.setenv("MIMIR_SEARCH_NOW", "2026-12-09T15:30:00")
    with pytest.raises(ValueError, match="timezone"):
        Settings()


def test_environment_variables_fill_nested_groups(clean_env, tmp_path):
    clean_env.setenv("MIMIR_RERANKER_MODEL", "/models/ce")
    clean_env.setenv("MIMIR_LIMITS_MAX_TEXT_BYTES", "100")
    clean_env.setenv("MIMIR_STORE_DATA_DIR", str(tmp_path))
    clean_env.setenv("MIMIR_SERVER_PORT", "9001")
    clean_env.setenv("MIMIR_RERANKER_BLEND", "0.3")
    clean_env.setenv("MIMIR_SEARCH_CONTEXT", "on")
    clean_env.setenv("MIMIR_SEARCH_DEFAULT_MAX_CHARS", "1200")
    clean_env.setenv("MIMIR_SEARCH_CANDIDATE_DEPTH", "300")
    settings = Settings()
    assert settings.search.context == "on"
    assert settings.search.default_max_chars == 1200
    assert settings.search.candidate_depth == 300
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


# Outside the search group: what a user or operator has a reason to change, and nothing else.
SETTINGS_BY_GROUP = {
    "store": {
        "data_dir",
        "onnx_cache_dir",
        "collection",
        "chroma_host",
        "chroma_port",
        "chroma_ssl",
        "sync_interval_s",
    },
    "embedding": {"model", "device", "batch_size", "query_backend"},
    "reranker": {
        "enabled",
        "model",
        "device",
        "backend",
        "batch_size",
        "max_length",
        "timeout_s",
        "budget_s",
        "cache_entries",
        "cache_bytes",
        "blend",
    },
    "remote": {"provider", "url", "api_key", "model", "timeout_s", "max_documents", "retries"},
    "limits": {
        "max_text_bytes",
        "max_batch",
        "max_top_k",
        "max_rerank_top_k",
        "max_rerank_documents",
        "max_query_chars",
        "max_tags",
        "max_tag_chars",
        "max_metadata_keys",
        "max_metadata_value_chars",
        "max_list_limit",
        "forget_confirm_threshold",
        "max_input_items",
    },
    "server": {
        "transport",
        "host",
        "port",
        "log_level",
        "allowed_hosts",
        "allowed_origins",
        "max_body_bytes",
        "tools",
        "read_only",
        "ui",
        "tool_descriptions",
    },
    "auth": {"tokens", "tokens_file", "allow_unauthenticated"},
}


@pytest.mark.parametrize("group", sorted(SETTINGS_BY_GROUP))
def test_each_setting_outside_search_is_one_a_user_changes_and_says_why(group):
    model = Settings.model_fields[group].annotation
    assert model is not None
    fields = model.model_fields
    assert set(fields) == SETTINGS_BY_GROUP[group]
    assert [name for name, field in fields.items() if not field.description] == []


def test_former_settings_left_in_the_environment_are_ignored(clean_env):
    """Internal tuning, now constants of the module that uses it: an old variable is no error and no change."""
    from mimir_mcp.rerank.admission import MIN_CANDIDATES
    from mimir_mcp.server.validation import MAX_INPUT_DEPTH
    from mimir_mcp.service.writes import MAX_FORGET_IDS_SHOWN, WRITE_DUTY

    former = {
        "store": "write_duty",
        "reranker": "onnx_batch_size",
        "limits": "max_input_depth",
    }
    for group, name in former.items():
        clean_env.setenv(f"MIMIR_{group}_{name}".upper(), "40")
    clean_env.setenv("MIMIR_RERANKER_MIN_CANDIDATES", "40")
    clean_env.setenv("MIMIR_LIMITS_MAX_FORGET_IDS_SHOWN", "40")
    dumped = Settings().model_dump()
    assert [name for group, name in former.items() if name in dumped[group]] == []
    assert "min_candidates" not in dumped["reranker"] and "max_forget_ids_shown" not in dumped["limits"]
    assert (WRITE_DUTY, MIN_CANDIDATES, MAX_INPUT_DEPTH, MAX_FORGET_IDS_SHOWN) == (0.2, 10, 8, 1000)


def test_unknown_environment_names_the_variables_that_do_nothing():
    """A MIMIR_* variable that names no setting (a typo, or one this version dropped) is ignored by the
    settings; the server warns of it by name."""
    environ = {
        "MIMIR_SEARCH_CONTEXT": "on",  # a setting
        "MIMIR_STORE_DATA_DIR": "/tmp/x",  # a setting
        "MIMIR_SEARCH_FUSION": "equal",  # a research knob, not a setting
        "MIMIR_RERANKER_MODLE": "x",  # a typo
        "MIMIR_NOPE": "1",  # no such group
        "HF_HUB_OFFLINE": "1",  # not ours
    }
    assert unknown_environment(environ) == ["MIMIR_NOPE", "MIMIR_RERANKER_MODLE", "MIMIR_SEARCH_FUSION"]
