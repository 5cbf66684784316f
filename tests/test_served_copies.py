"""Serving from recorded ONNX copies: a start after the first opens both models' copies without torch, with
the vectors and scores of the models; a copy is served only for the model it was checked against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mimir_mcp import served_copy
from mimir_mcp.embedding import bundled_minilm_path
from mimir_mcp.served_copy import FastTokenizer, ServedCopy

from .conftest import copies_of

TEXTS = [
    "what did we decide about the database migration?",
    "Wie lange überleben Tardigraden im Vakuum? 水熊虫 🎉",
    "",
    "x",
    " ".join(["the billing team moved the release to the second week of March"] * 60),  # truncated
]

SCRIPT = """
import asyncio, json, sys
from mimir_mcp.config import Settings
from mimir_mcp.models import MemoryInput
from mimir_mcp.service.memory import MemoryService

texts = json.loads(sys.argv[3])
settings = Settings(
    store={"data_dir": sys.argv[1], "onnx_cache_dir": sys.argv[2]}, reranker={"model": sys.argv[4], "max_length": 64}
)
service = MemoryService(settings)
service.start()

async def main():
    stored = await service.remember([MemoryInput(text=text) for text in texts if text])
    status = await service.status()
    return {
        "stored": stored.stored,
        "vectors": service.embedder.encode(texts).tolist(),
        "query": service.embedder.encode_query(texts[0]).tolist(),
        "scores": await service.reranker.score(texts[0], texts),
        "query_backend": status.embedding.query_backend,
        "dimension": status.embedding.dimension,
        "reranker": [status.reranker.state, status.reranker.backend, status.reranker.max_length],
    }

answer = asyncio.run(main())
answer["modules"] = sorted({"torch", "transformers", "sentence_transformers"} & set(sys.modules))
service.close()
print(json.dumps(answer))
"""


@pytest.mark.integration  # a Python process of its own, on the real models' copies
def test_a_start_with_recorded_copies_serves_both_models_without_torch(cross_encoder_path, tmp_path):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path / "data"),
            str(copies_of(cross_encoder_path)),
            json.dumps(TEXTS),
            str(cross_encoder_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert answer["modules"] == []  # neither torch nor transformers was imported
    assert answer["stored"] == 4 and answer["dimension"] == 384 and answer["query_backend"] == "onnx"
    assert answer["reranker"] == ["ready", "onnx-int8", 64]  # the copy, with max_length capping its inputs
    model = SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    exact = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert float(np.abs(np.array(answer["vectors"]) - exact).max()) < 1e-5
    assert float(np.abs(np.array(answer["query"]) - exact[0]).max()) < 1e-5
    cross_encoder = CrossEncoder(str(cross_encoder_path), device="cpu", max_length=64)
    torch_scores = cross_encoder.predict([(TEXTS[0], text) for text in TEXTS], show_progress_bar=False)
    assert float(np.abs(np.array(answer["scores"]) - torch_scores).max()) < 0.05  # the int8 tolerance


@pytest.mark.integration  # transformers' tokenizers, the reference
@pytest.mark.parametrize("model", ["bi-encoder", "cross-encoder"])
def test_the_saved_tokenizer_gives_the_ids_of_the_transformers_tokenizer(model, cross_encoder_path):
    from transformers import AutoTokenizer

    folder = bundled_minilm_path() if model == "bi-encoder" else cross_encoder_path
    reference = AutoTokenizer.from_pretrained(str(folder))
    copies = copies_of(cross_encoder_path)
    copy = served_copy.find(copies, "query" if model == "bi-encoder" else "rerank", folder)
    assert copy is not None
    for length in (copy.max_length, 16):
        fast = FastTokenizer.of(copy, length)
        expected = reference(TEXTS, truncation=True, max_length=length, padding=True, return_tensors="np")
        got = fast(TEXTS)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert np.array_equal(got[name], expected[name]), (name, length)
        pairs = [(query, text) for query in TEXTS for text in TEXTS]
        queries, texts = [query for query, _ in pairs], [text for _, text in pairs]
        expected = reference(queries, texts, truncation=True, max_length=length, padding=True, return_tensors="np")
        got = fast(queries, texts)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert np.array_equal(got[name], expected[name]), (name, length)


def _recorded(tmp_path: Path) -> tuple[Path, Path, ServedCopy]:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"weights")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "graph.onnx").write_bytes(b"graph")
    (cache / "tokenizer.json").write_text("{}")
    copy = ServedCopy(
        graph=str(cache / "graph.onnx"),
        tokenizer=str(cache / "tokenizer.json"),
        pad_id=0,
        pad_token="[PAD]",
        max_length=128,
        dimension=384,
    )
    served_copy.record(cache, "query", root, copy)
    return root, cache, copy


def test_a_recorded_copy_is_found_for_its_model_only(tmp_path):
    root, cache, copy = _recorded(tmp_path)
    assert served_copy.find(cache, "query", root) == copy
    assert served_copy.find(cache, "rerank", root) is None  # the other kind of copy
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    assert served_copy.find(cache, "query", other) is None
    assert served_copy.find(cache, "query", None) is None  # a hub model not on this machine


def test_a_retrained_model_is_not_served_from_its_old_copy(tmp_path):
    root, cache, _ = _recorded(tmp_path)
    (root / "model.safetensors").write_bytes(b"new weights")
    assert served_copy.find(cache, "query", root) is None


def test_a_damaged_record_or_a_missing_graph_means_no_copy(tmp_path, caplog):
    root, cache, copy = _recorded(tmp_path)
    Path(copy.graph).unlink()
    assert served_copy.find(cache, "query", root) is None
    (record,) = cache.glob("serve-query-*.json")
    record.write_text('{"graph": ')
    assert served_copy.find(cache, "query", root) is None
    assert "could not be read" in caplog.text


def test_a_model_folder_or_a_cached_hub_name_is_a_root_and_anything_else_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert served_copy.model_root(str(tmp_path)) == tmp_path
    assert served_copy.model_root(str(tmp_path / "missing")) is None
    assert served_copy.model_root("no-such-org/no-such-model", str(tmp_path / "hub")) is None
