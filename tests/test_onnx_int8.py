"""The int8 ONNX copy of a cross-encoder: built once and cached, close to the torch scores, used by the
server once ready, and never a reason for reranking to fail."""

from __future__ import annotations

import numpy as np
import pytest

from mimir_mcp.config import RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.rerank.onnx_int8 import OnnxInt8CrossEncoder, build_int8_model

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

# One worker runs the module (and the bench test), so its one int8 export serves every test here.
pytestmark = pytest.mark.xdist_group("onnx-int8")


@pytest.fixture(scope="module")
def int8_path(cross_encoder_path, onnx_cache):
    return build_int8_model(cross_encoder_path, onnx_cache)


@pytest.mark.anyio
async def test_server_reranker_switches_to_int8_once_built(cross_encoder_path, onnx_cache):
    from sentence_transformers import CrossEncoder  # here, not at the top: a unit run never loads torch

    reranker = LocalCrossEncoder(
        RerankerSettings(model=str(cross_encoder_path), backend="onnx-int8"), onnx_cache_dir=onnx_cache
    )
    reranker.start()
    await reranker.wait_ready(120)
    assert reranker.status().state == "ready"  # ready on torch; the int8 copy builds behind it
    assert await reranker.wait_backend(300) == "onnx-int8"
    assert reranker.status().backend == "onnx-int8"
    scores = await reranker.score(QUERY, TEXTS[:3])
    torch_scores = CrossEncoder(str(cross_encoder_path), device="cpu").predict([(QUERY, t) for t in TEXTS[:3]])
    assert np.max(np.abs(np.array(scores) - torch_scores)) < 0.05


def test_int8_scores_track_the_torch_model(cross_encoder_path, int8_path):
    from scipy.stats import kendalltau
    from sentence_transformers import CrossEncoder

    pairs = [(QUERY, text) for text in TEXTS]
    torch_scores = CrossEncoder(str(cross_encoder_path), device="cpu").predict(pairs, batch_size=32)
    fast = OnnxInt8CrossEncoder(cross_encoder_path, int8_path, max_length=512)
    int8_scores = fast.predict(pairs, batch_size=4)  # several batches, sorted by length, back in order
    assert int8_scores.shape == (len(TEXTS),)
    assert np.max(np.abs(int8_scores - torch_scores)) < 0.05
    assert kendalltau(int8_scores, torch_scores).statistic > 0.8
    assert fast.predict([], batch_size=4).shape == (0,)


def test_export_is_cached(cross_encoder_path, int8_path):
    before = int8_path.stat().st_mtime_ns
    assert build_int8_model(cross_encoder_path, int8_path.parent.parent) == int8_path
    assert int8_path.stat().st_mtime_ns == before
    assert sorted(p.name for p in int8_path.parent.iterdir()) == ["model.int8.onnx"]


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
