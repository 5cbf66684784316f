"""The reranker's length cap: shorter than the model allows when configured, never longer."""

import pytest

from mimir_mcp.config import RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder


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
