"""A blend weight saved with a cross-encoder: read by the reranker, followed by search, overridable."""

from __future__ import annotations

import json
import shutil

import pytest

from mimir_mcp.config import RerankerSettings
from mimir_mcp.models import MemoryInput
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.rerank.blend import BLEND_FILE, load_blend, save_blend
from mimir_mcp.search.fusion import blend_scores
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.service.memory import MemoryService

from .test_server import FACTS

pytestmark = pytest.mark.anyio


def test_blend_file_round_trip_and_bad_files(tmp_path):
    assert load_blend(tmp_path) is None
    save_blend(tmp_path, 0.35, {"dev_queries": 3})
    assert load_blend(tmp_path) == 0.35
    assert json.loads((tmp_path / BLEND_FILE).read_text())["dev_queries"] == 3
    for broken in ('{"blend": 1.5}', '{"weight": 0.3}', "not json", '{"blend": "x"}'):
        (tmp_path / BLEND_FILE).write_text(broken)
        assert load_blend(tmp_path) is None


@pytest.fixture
def blended_model(tmp_path, cross_encoder_path):
    folder = tmp_path / "blended-model"
    shutil.copytree(cross_encoder_path, folder)
    save_blend(folder, 0.4, {"dev_queries": 1})
    return folder


async def test_reranker_reads_the_saved_weight_and_the_setting_wins(blended_model, cross_encoder_path):
    saved = LocalCrossEncoder(RerankerSettings(model=str(blended_model), backend="torch"))
    saved.start()
    await saved.wait_ready(300)
    assert saved.blend == 0.4
    assert saved.status().blend == 0.4 and BLEND_FILE in saved.status().blend_source

    overridden = LocalCrossEncoder(RerankerSettings(model=str(blended_model), backend="torch", blend=1.0))
    overridden.start()
    await overridden.wait_ready(300)
    assert overridden.blend == 1.0 and "setting" in overridden.status().blend_source

    plain = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder_path), backend="torch"))
    plain.start()
    await plain.wait_ready(300)
    assert plain.blend == 1.0 and plain.status().blend_source.startswith("default")


async def test_search_follows_the_blended_order(settings, embedder, blended_model):
    reranker = LocalCrossEncoder(RerankerSettings(model=str(blended_model), backend="torch"))
    reranker.start()
    await reranker.wait_ready(300)
    service = MemoryService(settings, embedder=embedder, reranker=reranker)
    service.start()
    try:
        await service.remember([MemoryInput(text=fact) for fact in FACTS])
        query = "which database runs in production?"
        found = await service.search(SearchRequest(query=query, top_k=5, rerank=True, rerank_top_k=5))
        assert found.search_method == "hybrid+rerank"
        assert "blended with the hybrid order (cross-encoder weight 0.4" in found.message
        hits = found.hits
        # Every candidate was reranked and shown, so the blend can be recomputed from the hits' own scores.
        rerank_scores = [hit.scores.rerank_score for hit in hits]
        expected = blend_scores(rerank_scores, [hit.scores.fused_score for hit in hits], 0.4)
        assert [hit.scores.blended_score for hit in hits] == pytest.approx(expected, abs=1e-5)
        assert [hit.score for hit in hits] == [hit.scores.blended_score for hit in hits]
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
        # min_score still compares the cross-encoder's own scores.
        rerank_scores = sorted(hit.scores.rerank_score for hit in hits)
        threshold = (rerank_scores[1] + rerank_scores[2]) / 2
        kept = await service.search(
            SearchRequest(query=query, top_k=5, rerank=True, rerank_top_k=5, min_score=threshold)
        )
        assert {hit.id for hit in kept.hits} == {hit.id for hit in hits if hit.scores.rerank_score >= threshold}
    finally:
        service.close()
