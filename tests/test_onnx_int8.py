"""The int8 ONNX copy of a cross-encoder: built once and cached, close to the torch scores, used by the
server once ready, and never a reason for reranking to fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimir_mcp import served_copy
from mimir_mcp.config import RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.rerank.onnx_int8 import OnnxInt8CrossEncoder, build_int8_model
from mimir_mcp.served_copy import FastTokenizer

from .conftest import copies_of, small_bert

QUERY = "how do glaciers shape valleys"
TEXTS = [
    "Glaciers carve U-shaped valleys as compacted ice slowly flows downhill.",
    "Volcanoes erupt molten basalt and ash when magma pressure builds under the crust.",
    "Coral reefs bleach when warm water makes polyps expel their symbiotic algae.",
    "Tornadoes form when rotating supercell thunderstorms stretch a vortex to the ground.",
    "Auroras glow when solar wind particles excite oxygen and nitrogen high in the atmosphere.",
    "Monsoons reverse seasonal winds and bring heavy summer rain to South Asia.",
    "Tsunamis are long ocean waves launched by undersea earthquakes displacing water.",
    "Geysers periodically spout superheated groundwater through narrow vents.",
    "A spreadsheet of invoices for the second quarter.",
    "Ice ages advanced glaciers across northern Europe several times.",
]


@pytest.fixture(scope="module")
def int8_path(cross_encoder_path):
    """The run's int8 copy of the test cross-encoder (``cross_encoder_path`` built and recorded it)."""
    copy = served_copy.find(copies_of(cross_encoder_path), "rerank", cross_encoder_path)
    assert copy is not None
    return Path(copy.graph)


@pytest.fixture(scope="module")
def small_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer, 64-wide random BERT cross-encoder with the bundled tokenizer: its int8 build takes a
    few seconds, so the test of the switch measures the server's code, not the exporter."""
    import torch
    from transformers import BertForSequenceClassification

    tokenizer, config = small_bert(num_labels=1)
    torch.manual_seed(7)
    model = BertForSequenceClassification(config)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)  # scores with some spread
    folder = tmp_path_factory.mktemp("small-cross-encoder")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.anyio
async def test_server_reranker_switches_to_int8_once_built_and_serves_it_from_then_on(small_cross_encoder, tmp_path):
    from sentence_transformers import CrossEncoder  # here, not at the top: a unit run never loads torch

    settings = RerankerSettings(model=str(small_cross_encoder), backend="onnx-int8")
    reranker = LocalCrossEncoder(settings, onnx_cache_dir=tmp_path)
    reranker.start()
    await reranker.wait_ready(120)
    assert reranker.status().state == "ready"  # ready on torch; the int8 copy builds behind it
    assert await reranker.wait_backend(300) == "onnx-int8"
    assert reranker.status().backend == "onnx-int8"
    scores = await reranker.score(QUERY, TEXTS[:3])
    torch_scores = CrossEncoder(str(small_cross_encoder), device="cpu").predict([(QUERY, t) for t in TEXTS[:3]])
    assert np.max(np.abs(np.array(scores) - torch_scores)) < 0.05
    # The copy was recorded: the next start serves it at once, with no torch model loaded.
    again = LocalCrossEncoder(settings, onnx_cache_dir=tmp_path)
    again.start()
    await again.wait_ready(120)
    assert again.status().backend == "onnx-int8" and again._load.result_now() is None
    assert np.allclose(await again.score(QUERY, TEXTS[:3]), scores)


def test_int8_scores_track_the_torch_model(cross_encoder_path, int8_path):
    from scipy.stats import kendalltau
    from sentence_transformers import CrossEncoder

    pairs = [(QUERY, text) for text in TEXTS]
    torch_scores = CrossEncoder(str(cross_encoder_path), device="cpu").predict(pairs, batch_size=32)
    tokenizer = FastTokenizer(cross_encoder_path / "tokenizer.json", pad_id=0, pad_token="[PAD]", max_length=512)
    fast = OnnxInt8CrossEncoder(int8_path, tokenizer)
    int8_scores = fast.predict(pairs, batch_size=4)  # several batches, sorted by length, back in order
    assert int8_scores.shape == (len(TEXTS),)
    assert np.max(np.abs(int8_scores - torch_scores)) < 0.05
    assert kendalltau(int8_scores, torch_scores).statistic > 0.8
    assert fast.predict([], batch_size=4).shape == (0,)


def test_export_is_cached(cross_encoder_path, int8_path):
    before = int8_path.stat().st_mtime_ns
    assert build_int8_model(cross_encoder_path, int8_path.parent.parent) == int8_path
    assert int8_path.stat().st_mtime_ns == before
    # no intermediate file left: the graph, and the tokenizer the server saved beside it
    assert sorted(p.name for p in int8_path.parent.iterdir()) == ["model.int8.onnx", "tokenizer"]


@pytest.mark.anyio
async def test_a_failed_int8_build_leaves_torch_scoring(cross_encoder_path, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    reranker = LocalCrossEncoder(
        RerankerSettings(model=str(cross_encoder_path), backend="onnx-int8"), onnx_cache_dir=blocker
    )
    reranker.start()
    assert (await reranker.wait_backend(120)).startswith("torch (onnx-int8 failed:")
    status = reranker.status()
    assert status.available and status.backend.startswith("torch (onnx-int8 failed:")
    assert len(await reranker.score(QUERY, TEXTS[:2])) == 2
