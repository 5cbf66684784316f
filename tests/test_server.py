"""The tools through a real MCP client session (in memory), with the real models; the tests of logic alone
(schemas, deduplication, filters, how arguments arrive) on the in-memory store (``fake_client``)."""

from __future__ import annotations

import json
import math
import re

import pytest
from mcp import Client

from mimir_mcp.config import RerankerSettings
from mimir_mcp.rerank import LocalCrossEncoder
from mimir_mcp.search.pipeline import LOAD_FAILED
from mimir_mcp.search.policy import FusionPolicy
from mimir_mcp.search.request import SearchRequest
from mimir_mcp.server.app import create_server
from mimir_mcp.server.tools import RERANK_ONLY
from mimir_mcp.service.memory import MemoryService

from .conftest import call, call_error

pytestmark = pytest.mark.anyio

SHIPPED = FusionPolicy()

FACTS = [
    "The staging deploy key is stored in Vault under secret/staging/deploy.",
    "Alice prefers tabs over spaces in Python code.",
    "The production database is PostgreSQL 16 running on db-prod-1.",
    "Our on-call rotation changes every Monday at 09:00 UTC.",
    "The mobile app uses React Native and ships every two weeks.",
]


async def test_tools_are_listed_with_schemas_and_read_only_hints(client: Client):
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"remember", "search", "rerank", "status", "list_memories", "get", "forget", "update"}
    # Only the hints that differ from the spec's defaults (read_only false, destructive true, idempotent false).
    hints = {name: tool.annotations.model_dump(by_alias=True, exclude_none=True) for name, tool in tools.items()}
    for name in ("search", "rerank", "status", "list_memories", "get"):
        assert hints[name] == {"readOnlyHint": True}, name
    assert hints["remember"] == {"destructiveHint": False, "idempotentHint": True}  # so not read-only
    assert hints["update"] == hints["forget"] == {"idempotentHint": True}
    for tool in tools.values():
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.description and "\n" not in tool.description, tool.name  # one line each
        for schema in (tool.input_schema, tool.output_schema):  # lean: no titles, no anyOf with null
            published = json.dumps(schema)
            assert '"title"' not in published and '{"type": "null"}' not in published, tool.name
    search_props = tools["search"].input_schema["properties"]
    assert search_props["top_k"]["default"] == 10
    assert search_props["rerank_top_k"]["default"] == 50
    assert search_props["rerank"]["default"] is True
    assert search_props["max_chars"]["default"] == 400
    assert (search_props["max_chars"]["minimum"], search_props["max_chars"]["maximum"]) == (40, 32 * 1024)
    assert search_props["min_score"]["type"] == "number" and "default" not in search_props["min_score"]
    assert (search_props["explain"]["type"], search_props["explain"]["default"]) == ("boolean", False)
    assert tools["rerank"].input_schema["properties"]["explain"]["default"] is False
    assert tools["status"].input_schema["properties"]["detail"]["default"] is False
    assert set(tools["search"].output_schema["required"]) == {"hits", "search_method"}


async def test_remember_search_rerank_status(client: Client, cross_encoder_path):
    stored = await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS], "agent": "planner"})
    assert stored["stored"] == 5 and "deduplicated" not in stored
    assert len(set(stored["ids"])) == 5

    found = await call(
        client, "search", {"query": "where is the staging deploy key kept?", "top_k": 3, "explain": True}
    )
    assert found["search_method"] == "hybrid+rerank"
    assert found["reranker_model"] == str(cross_encoder_path)
    assert len(found["hits"]) == 3
    assert found["candidates"]["reranked"] == 5
    stages = {"embed_ms", "dense_ms", "spread_ms", "bm25_ms", "fusion_ms", "rerank_ms", "total_ms"}
    assert set(found["timings_ms"]) >= stages
    # Hits come in rerank-score order, and each carries every stage's view.
    rerank_scores = [hit["scores"]["rerank_score"] for hit in found["hits"]]
    assert rerank_scores == sorted(rerank_scores, reverse=True)
    for hit in found["hits"]:
        assert hit["score"] == hit["scores"]["rerank_score"]
        assert hit["agent"] == "planner" and hit["namespace"] == "default"
    # The test cross-encoder's scores are meaningless, so look for the relevant memory in all five.
    everything = await call(
        client, "search", {"query": "where is the staging deploy key kept?", "top_k": 5, "explain": True}
    )
    deploy = next(hit for hit in everything["hits"] if "deploy key" in hit["text"])
    assert deploy["scores"]["dense_rank"] == 1 and deploy["scores"]["bm25_rank"] == 1
    assert deploy["scores"]["fused_score"] == max(hit["scores"]["fused_score"] for hit in everything["hits"])

    reranked = await call(client, "rerank", {"query": "tabs or spaces?", "documents": FACTS[:3]})
    assert sorted(item["index"] for item in reranked["results"]) == [0, 1, 2]
    scores = [item["score"] for item in reranked["results"]]
    assert scores == sorted(scores, reverse=True)  # best first

    summary = await call(client, "status")
    assert "detail" not in summary and "problems" not in summary
    assert summary["ready"] is True and summary["memories"] == 5 and summary["namespaces"] == {"default": 5}
    assert summary["reranker"].startswith(f"{cross_encoder_path} (ready, ")
    assert " (ready, " in summary["embedding"] and summary["store"].startswith("embedded: ")
    full = await call(client, "status", {"detail": True})
    # (the backends may change between two calls, as an ONNX copy becomes ready: compare within one answer)
    status = full["detail"]
    assert {key: full[key] for key in ("ready", "memories", "namespaces", "store")} == {
        key: summary[key] for key in ("ready", "memories", "namespaces", "store")
    }
    assert full["reranker"] == f"{status['reranker']['model']} (ready, {status['reranker']['backend']})"
    embedding = status["embedding"]
    assert full["embedding"] == f"{embedding['model']} (ready, {embedding['query_backend']})"
    assert status["reranker"]["state"] == "ready" and status["reranker"]["available"] is True
    assert status["store"]["memories"] == 5 and status["store"]["namespaces"] == {"default": 5}
    assert status["bm25"]["documents"] == 5 and status["bm25"]["in_sync"] is True
    assert status["search"]["searches"] == 2 and status["search"]["reranked_searches"] == 2
    assert status["embedding"]["dimension"] == 384 and status["embedding"]["state"] == "ready"
    assert status["versions"]["mcp"].startswith("2.")


async def test_search_order_follows_the_cross_encoder(client: Client, cross_encoder_path):
    from sentence_transformers import CrossEncoder  # here: a unit run never loads torch

    await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
    query = "database server"
    found = await call(client, "search", {"query": query, "top_k": 5, "explain": True})
    model = CrossEncoder(str(cross_encoder_path), device="cpu")
    expected = model.predict([(query, hit["text"]) for hit in found["hits"]])
    assert [hit["scores"]["rerank_score"] for hit in found["hits"]] == pytest.approx(
        sorted(map(float, expected), reverse=True), abs=1e-5
    )


async def test_rerank_tool_orders_by_score_with_top_k_and_min_score(client: Client, cross_encoder_path):
    from sentence_transformers import CrossEncoder  # here: a unit run never loads torch

    documents = [FACTS[0], {"id": "tabs", "text": FACTS[1]}, FACTS[2], {"id": "oncall", "text": FACTS[3]}]
    full = await call(client, "rerank", {"query": "who likes tabs", "documents": documents})
    model = CrossEncoder(str(cross_encoder_path), device="cpu")
    texts = [doc if isinstance(doc, str) else doc["text"] for doc in documents]
    expected = [float(score) for score in model.predict([("who likes tabs", text) for text in texts])]
    order = sorted(range(4), key=lambda i: -expected[i])
    assert [item["index"] for item in full["results"]] == order
    assert [item["score"] for item in full["results"]] == pytest.approx([expected[i] for i in order], abs=1e-5)
    by_index = {item["index"]: item for item in full["results"]}
    assert by_index[1]["id"] == "tabs" and by_index[3]["id"] == "oncall" and "id" not in by_index[0]
    assert set(full) == {"results", "model"} and all("text" not in item for item in full["results"])
    explained = await call(client, "rerank", {"query": "who likes tabs", "documents": documents, "explain": True})
    assert explained["query"] == "who likes tabs" and "total_ms" in explained["timings_ms"]
    assert [item["index"] for item in explained["results"]] == order
    assert [item["text"] for item in explained["results"]] == [texts[i] for i in order]

    top2 = await call(client, "rerank", {"query": "who likes tabs", "documents": documents, "top_k": 2})
    assert [item["index"] for item in top2["results"]] == order[:2]

    threshold = (expected[order[1]] + expected[order[2]]) / 2
    kept = await call(client, "rerank", {"query": "who likes tabs", "documents": documents, "min_score": threshold})
    assert [item["index"] for item in kept["results"]] == order[:2]
    assert all(item["score"] >= threshold for item in kept["results"])


async def test_search_top_k_min_score_and_rerank_off(client: Client):
    await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
    everything = await call(client, "search", {"query": "code and servers", "top_k": 5, "explain": True})
    scores = [hit["score"] for hit in everything["hits"]]  # unrounded, with explain
    assert len(scores) == 5
    threshold = (scores[1] + scores[2]) / 2
    filtered = await call(client, "search", {"query": "code and servers", "top_k": 5, "min_score": threshold})
    assert [hit["id"] for hit in filtered["hits"]] == [hit["id"] for hit in everything["hits"][:2]]

    one = await call(client, "search", {"query": "code and servers", "top_k": 1})
    assert len(one["hits"]) == 1

    asked = {"query": "code and servers", "rerank": False, "min_score": 0.9}
    plain = await call(client, "search", {**asked, "explain": True})
    assert plain["search_method"] == "hybrid"
    assert "rerank=false" in plain["message"] and "min_score was not applied" in plain["message"]
    assert all("rerank_score" not in hit["scores"] for hit in plain["hits"])
    rrf = [hit["scores"]["fused_score"] for hit in plain["hits"]]
    assert rrf == sorted(rrf, reverse=True) and plain["hits"][0]["score"] == rrf[0]

    # By default the message says only what did not run as asked: rerank=false was asked, min_score not applied.
    concise = await call(client, "search", asked)
    assert "min_score was not applied" in concise["message"] and "rerank=false" not in concise["message"]
    assert [hit["id"] for hit in concise["hits"]] == [hit["id"] for hit in plain["hits"]]

    partial = await call(
        client, "search", {"query": "code and servers", "top_k": 5, "rerank_top_k": 2, "explain": True}
    )
    assert partial["candidates"]["reranked"] == 2
    assert ["rerank_score" in hit["scores"] for hit in partial["hits"]] == [True, True, False, False, False]


async def test_deduplication_single_and_batch(fake_client: Client):
    first = await call(fake_client, "remember", {"text": "Use ruff for linting", "tags": ["tooling"]})
    assert first == {"ids": first["ids"], "stored": 1} and len(first["ids"]) == 1  # no "deduplicated": none were
    again = await call(fake_client, "remember", {"text": "  Use ruff  for linting \n"})
    assert again == {"ids": first["ids"], "stored": 0, "deduplicated": first["ids"]}
    assert (await call(fake_client, "get", {"ids": again["ids"]}))["memories"][0]["namespace"] == "default"

    other_space = await call(fake_client, "remember", {"text": "Use ruff for linting", "namespace": "project-b"})
    assert "deduplicated" not in other_space and other_space["stored"] == 1 and other_space["ids"] != first["ids"]

    batch = await call(
        fake_client,
        "remember",
        {"memories": [{"text": "New fact"}, {"text": "Use ruff for linting"}, {"text": "New fact"}]},
    )
    # the first "New fact" is stored; the already-held ruff text and the repeated "New fact" are not
    assert batch["ids"][0] == batch["ids"][2] and batch["ids"][1] == first["ids"][0] and batch["stored"] == 1
    assert batch["deduplicated"] == [batch["ids"][1], batch["ids"][2]]
    # a text repeated in one batch is listed once in `deduplicated`, though both its copies were not stored
    twice = await call(fake_client, "remember", {"memories": [{"text": "Use ruff for linting"}] * 2})
    assert twice == {"ids": first["ids"] * 2, "stored": 0, "deduplicated": first["ids"]}

    status = await call(fake_client, "status")
    assert status["namespaces"] == {"default": 2, "project-b": 1}


async def test_filters_by_namespace_tags_and_metadata(fake_client: Client):
    await call(
        fake_client,
        "remember",
        {
            "memories": [
                {"text": "Deploy with the blue-green script", "tags": ["ops", "deploy"], "metadata": {"env": "prod"}},
                {"text": "Deploy staging by pushing to main", "tags": ["ops"], "metadata": {"env": "staging", "p": 2}},
                {"text": "Deploy notes for the side project", "namespace": "side", "tags": ["deploy"]},
            ]
        },
    )
    texts = lambda result: sorted(hit["text"] for hit in result["hits"])  # noqa: E731
    named = (await call(fake_client, "search", {"query": "deploy"}))["hits"]
    assert len(named) == 2 and all("namespace" not in hit for hit in named)  # the one asked for: not repeated
    every = (await call(fake_client, "search", {"query": "deploy", "namespace": "*"}))["hits"]
    assert len(every) == 3 and sorted(hit["namespace"] for hit in every) == ["default", "default", "side"]
    assert texts(await call(fake_client, "search", {"query": "deploy", "namespace": "side"})) == [
        "Deploy notes for the side project"
    ]
    assert texts(await call(fake_client, "search", {"query": "deploy", "tags": ["deploy"]})) == [
        "Deploy with the blue-green script"
    ]
    assert texts(await call(fake_client, "search", {"query": "deploy", "metadata": {"env": "staging"}})) == [
        "Deploy staging by pushing to main"
    ]
    assert texts(await call(fake_client, "search", {"query": "deploy", "metadata": {"p": 2.0}})) == [
        "Deploy staging by pushing to main"
    ]
    assert (await call(fake_client, "search", {"query": "deploy", "tags": ["nope"]}))["hits"] == []
    hit = (await call(fake_client, "search", {"query": "blue-green", "top_k": 1}))["hits"][0]
    assert hit["tags"] == ["ops", "deploy"] and hit["metadata"] == {"env": "prod"}


async def test_empty_store_search_answers_without_reranking(client: Client, service: MemoryService):
    await service.loader.ready()  # a new data dir's first search answers before the store opens (test_first_start)
    result = await call(client, "search", {"query": "anything at all", "explain": True})
    assert result["hits"] == [] and result["search_method"] == "hybrid"
    assert "nothing to rerank" in result["message"]
    # nothing was left undone that was asked, so the default answer has no message; `hits` is always there
    assert await call(client, "search", {"query": "anything at all"}) == {"hits": [], "search_method": "hybrid"}


async def test_missing_reranker_falls_back_and_says_so(settings, embedder, tmp_path):
    missing = tmp_path / "no-such-model"
    broken = LocalCrossEncoder(RerankerSettings(model=str(missing)))
    service = MemoryService(settings, embedder=embedder, reranker=broken)
    try:
        async with Client(create_server(settings, service=service)) as client:
            await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
            summary = await call(client, "status", {"detail": True})
            assert summary["reranker"] == f"{missing} (failed, {summary['detail']['reranker']['backend']})"
            [problem] = summary["problems"]
            assert problem.startswith("reranker: ") and str(missing) in problem and "does not exist" in problem
            status = summary["detail"]
            assert status["reranker"]["state"] == "failed" and status["reranker"]["available"] is False
            assert str(missing) in status["reranker"]["error"] and "does not exist" in status["reranker"]["error"]

            result = await call(client, "search", {"query": "database", "top_k": 3, "explain": True})
            assert result["search_method"] == "hybrid" and len(result["hits"]) == 3
            assert "not reranked" in result["message"] and "does not exist" in result["message"]
            assert "MIMIR_RERANKER_MODEL" in result["message"]
            rrf = [hit["scores"]["fused_score"] for hit in result["hits"]]
            assert rrf == sorted(rrf, reverse=True)
            # the search did not run as asked, so the default answer says so, in one line that points to status
            # (the cause and the fix, above, would be repeated in every search until a restart)
            concise = await call(client, "search", {"query": "database", "top_k": 3})
            assert concise["message"] == LOAD_FAILED and "status" in concise["message"]

            error = await call_error(client, "rerank", {"query": "database", "documents": ["a", "b"]})
            assert "Cannot rerank: the cross-encoder failed to load: " in error and "MIMIR_RERANKER_MODEL" in error
    finally:
        service.close()


async def test_default_hub_model_offline_is_reported_plainly(settings, embedder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = LocalCrossEncoder(RerankerSettings())  # cross-encoder/ms-marco-MiniLM-L-6-v2, not cached here
    service = MemoryService(settings, embedder=embedder, reranker=offline)
    try:
        async with Client(create_server(settings, service=service)) as client:
            await call(client, "remember", {"text": "something to find"})
            await offline.wait_ready(60)
            summary = await call(client, "status", {"detail": True})
            assert summary["reranker"].startswith("cross-encoder/ms-marco-MiniLM-L-6-v2 (failed, ")
            assert any(p.startswith("reranker: ") and "cannot be downloaded" in p for p in summary["problems"])
            status = summary["detail"]
            assert status["reranker"]["model"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"
            assert status["reranker"]["state"] == "failed"
            assert "cannot be downloaded" in status["reranker"]["error"]
            result = await call(client, "search", {"query": "something"})
            assert result["search_method"] == "hybrid" and len(result["hits"]) == 1
            assert result["message"] == LOAD_FAILED
    finally:
        service.close()


async def test_reranker_timeout_and_inference_errors_fall_back(settings, embedder, cross_encoder_path):
    slow = LocalCrossEncoder(RerankerSettings(model=str(cross_encoder_path), timeout_s=1e-6, backend="torch"))
    service = MemoryService(settings, embedder=embedder, reranker=slow)
    try:
        async with Client(create_server(settings, service=service)) as client:
            await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
            await slow.wait_ready(60)
            for explain in (False, True):  # the search did not run as asked: the default answer says so too
                timed_out = await call(client, "search", {"query": "database", "explain": explain})
                assert timed_out["search_method"] == "hybrid" and "took longer than" in timed_out["message"]
                assert len(timed_out["hits"]) == 5

            # A model that raises during inference: a max_length the position table cannot hold.
            slow.settings = slow.settings.model_copy(update={"timeout_s": 60})
            slow.timeout_s = 60
            model = slow._load.result_now()
            model.max_length = 100_000
            long_text = " ".join(["word"] * 2000)
            await call(client, "remember", {"text": long_text})
            for explain in (False, True):
                failed = await call(client, "search", {"query": "word", "explain": explain})
                assert failed["search_method"] == "hybrid" and "raised" in failed["message"]
                assert failed["hits"][0]["text_chars"] == len(long_text) and failed["hits"][0]["truncated"] is True
    finally:
        service.close()


async def test_reranker_disabled(settings, embedder, reranker):
    """Switched off (``--no-rerank``, no remote API), reranking costs an agent nothing: no `rerank` tool, a
    `search` that does not offer it, and answers without a caveat. A client that asks for it anyway is told."""
    disabled = LocalCrossEncoder(RerankerSettings(enabled=False))
    service = MemoryService(settings, embedder=embedder, reranker=disabled)
    reranking = MemoryService(settings, embedder=embedder, reranker=reranker)
    try:
        async with Client(create_server(settings, service=reranking)) as client:
            offered = {tool.name: tool for tool in (await client.list_tools()).tools}
        async with Client(create_server(settings, service=service)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == set(offered) - {"rerank"}
            search, full = tools["search"], offered["search"]
            assert "cross-encoder" in (full.description or "") and "cross-encoder" not in (search.description or "")
            assert set(full.input_schema["properties"]) - set(search.input_schema["properties"]) == set(RERANK_ONLY)
            assert len(search.model_dump_json()) < len(full.model_dump_json()) - 300
            assert "Unknown tool" in await call_error(client, "rerank", {"query": "q", "documents": ["a"]})

            await call(client, "remember", {"text": "a note"})
            status = await call(client, "status", {"detail": True})
            assert status["reranker"] == "off" and status["detail"]["reranker"]["state"] == "disabled"
            result = await call(client, "search", {"query": "note"})
            assert result["search_method"] == "hybrid" and "message" not in result and len(result["hits"]) == 1
            explained = await call(client, "search", {"query": "note", "explain": True})
            assert "switched off" in explained["message"]
            for explain in (False, True):  # asked for by name all the same: not reranked, and why
                result = await call(client, "search", {"query": "note", "rerank": True, "explain": explain})
                assert result["search_method"] == "hybrid" and "disabled" in result["message"]
    finally:
        service.close()
        reranking.close()


async def test_scores_are_finite_numbers(client: Client):
    await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
    result = await call(client, "search", {"query": "python", "explain": True})
    for hit in result["hits"]:
        assert math.isfinite(hit["score"]) and 0.0 <= hit["scores"]["rerank_score"] <= 1.0


async def test_equal_weight_rrf_scores_are_exact(client: Client, service: MemoryService):
    """The lab's equal-weight RRF (k = 60), a policy given in code, through the same pipeline."""
    await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
    equal = FusionPolicy(method="equal", rrf_k=60)
    request = SearchRequest(query="staging deploy key vault", top_k=5, rerank=False, rerank_top_k=50, policy=equal)
    found = (await service.search(request)).model_dump()
    assert found["fusion"]["method"] == "equal" and found["fusion"]["rrf_k"] == 60
    top = found["hits"][0]
    assert top["scores"]["dense_rank"] == 1 and top["scores"]["bm25_rank"] == 1
    assert top["scores"]["fused_score"] == pytest.approx(2 / 61, abs=1e-8)
    for hit in found["hits"]:
        ranks = [hit["scores"]["dense_rank"], hit["scores"]["bm25_rank"]]
        expected = sum(1 / (60 + rank) for rank in ranks if rank is not None)
        assert hit["scores"]["fused_score"] == pytest.approx(expected, abs=1e-8)


async def test_default_fusion_adds_each_arms_scaled_scores_weighted_by_top_z_and_coverage(client: Client):
    import statistics

    from mimir_mcp.lexical.analysis import analyze, query_terms
    from mimir_mcp.lexical.bm25 import bm25_idf

    await call(client, "remember", {"memories": [{"text": fact} for fact in FACTS]})
    query = "staging deploy key of the production database, rotated on Monday"
    found = await call(client, "search", {"query": query, "rerank": False, "top_k": 5, "explain": True})
    hits = found["hits"]
    assert len(hits) == 5 and found["candidates"]["dense"] == 5  # every candidate is shown
    # five unrelated facts: too few to tell a conversation, so no context arm (false and null are left out)
    assert "context" not in found["fusion"] and "coherence" not in found["fusion"]
    assert "context" not in found["candidates"]
    # Rebuild each arm's ranked scores from the hits (an arm that missed a hit has no key), then the fused score.
    arms = {
        arm: [
            s for _, s in sorted((h["scores"][f"{arm}_rank"], h["scores"][key]) for h in hits if h["scores"].get(key))
        ]
        for arm, key in (("dense", "dense_similarity"), ("bm25", "bm25_score"))
    }
    # BM25 coverage: the best score over the sum of the query terms' idf among the five facts
    attainable = sum(bm25_idf(sum(term in analyze(fact) for fact in FACTS), len(FACTS)) for term in query_terms(query))
    coverage = {"dense": arms["dense"][0], "bm25": arms["bm25"][0] / attainable}
    weights = SHIPPED.weights(arms, coverage)
    assert weights != FusionPolicy(method="top_z").weights(arms)
    # the response says how it fused: the same weights and coverage
    assert found["fusion"]["method"] == "zscore" and "rrf_k" not in found["fusion"]  # RRF's constant only under RRF
    assert found["fusion"]["weights"] == pytest.approx(weights, rel=1e-3)  # hits carry rounded scores
    assert found["fusion"]["coverage"] == pytest.approx(coverage, rel=1e-3)
    assert len(arms["bm25"]) >= 3 and weights["dense"] != weights["bm25"]
    # five memories: too few to measure how far apart the namespace's lie, so the cosines are standardized too
    assert "dense_unit" not in found["fusion"]
    spread = {arm: statistics.pstdev(scores) for arm, scores in arms.items()}
    for hit in hits:
        expected = sum(
            weights[arm] * (hit["scores"][key] - min(arms[arm])) / spread[arm]
            for arm, key in (("dense", "dense_similarity"), ("bm25", "bm25_score"))
            if key in hit["scores"]
        )
        assert hit["scores"]["fused_score"] == pytest.approx(expected, rel=1e-3)
    assert [hit["scores"]["fused_score"] for hit in hits] == sorted(
        (h["scores"]["fused_score"] for h in hits), reverse=True
    )


async def test_the_order_is_the_weighted_scaled_scores_all_the_way_down(client: Client):
    """Without a reranker every place, the first ten and the rest, follows the arms' scaled scores (BM25's
    standardized, the cosines in the unit the fusion report shows) under the weights the fusion report shows, each hit
    keeping its fused score."""
    from mimir_mcp.search.fusion import z_fusion

    services = ["billing", "search", "auth", "mail", "cache", "queue", "reports", "uploads"]
    memories = [
        f"The {service} service {event}."
        for service in services
        for event in ("was deployed on Friday", "paged the on-call engineer at night", "ran out of disk space")
    ]
    await call(client, "remember", {"memories": [{"text": text, "namespace": "ops"} for text in memories]})
    query = "which service paged on-call after running out of disk"
    found = await call(
        client, "search", {"query": query, "namespace": "ops", "rerank": False, "top_k": 24, "explain": True}
    )
    hits = found["hits"]
    assert len(hits) == 24 and found["candidates"]["dense"] == 24  # every candidate is shown
    assert "context" not in found["fusion"]  # context false: left out
    weights = found["fusion"]["weights"]
    assert set(weights) == {"dense", "bm25"} and all(weight > 0 for weight in weights.values())
    # each arm's ranked list, rebuilt from the hits, fused again
    arms = {
        arm: sorted(
            ((h["id"], h["scores"][key]) for h in hits if key in h["scores"]),
            key=lambda pair: next(h["scores"][f"{arm}_rank"] for h in hits if h["id"] == pair[0]),
        )
        for arm, key in (("dense", "dense_similarity"), ("bm25", "bm25_score"))
    }
    assert len(arms["bm25"]) >= 11  # the lexical arm reaches past the first ten too
    # 24 memories: the cosines count in a quarter of how far apart the namespace's memories lie
    unit = found["fusion"]["dense_unit"]
    assert 0 < unit < 0.25
    fused = z_fusion(arms, weights=weights, units={"dense": unit})
    assert [hit["id"] for hit in hits] == [item for item, _ in fused]
    for hit, (_, score) in zip(hits, fused, strict=True):
        assert hit["scores"]["fused_score"] == pytest.approx(score, rel=1e-3, abs=1e-5)


async def test_long_memories_are_shown_as_snippets(client: Client, settings):
    """A 30 KB memory does not make a 30 KB answer: a default search stays a few KB."""
    filler = "Notes from the weekly sync: the team reviewed open tickets and agreed on next steps. "
    key = "The canary rollout of the billing service is paused until the Postgres failover drill passes."
    long_text = (filler * 175 + key + " " + filler * 175).strip()
    assert 29_000 < len(long_text) < 32 * 1024
    await call(client, "remember", {"memories": [{"text": long_text}, *({"text": fact} for fact in FACTS)]})
    query = "why is the billing canary rollout paused?"

    found = await call(client, "search", {"query": query})
    max_chars = settings.search.default_max_chars
    # Each hit's text is capped; its id and metadata stay well under 1 KB.
    assert len(json.dumps(found)) < settings.search.default_top_k * (max_chars + 1024)
    long_hit = next(hit for hit in found["hits"] if hit.get("text_chars") == len(long_text))
    assert long_hit["truncated"] is True
    assert len(long_hit["text"]) <= max_chars
    assert long_hit["text"].startswith("…") and long_hit["text"].endswith("…")
    assert key in long_hit["text"]
    for hit in found["hits"]:
        if hit is not long_hit:  # a whole text: neither `truncated` nor `text_chars` is sent
            assert "truncated" not in hit and "text_chars" not in hit and hit["text"] in FACTS

    # The cross-encoder scored the whole memory, not the snippet.
    explained = await call(client, "search", {"query": query, "explain": True})
    assert [hit["id"] for hit in explained["hits"]] == [hit["id"] for hit in found["hits"]]
    assert [hit["text"] for hit in explained["hits"]] == [hit["text"] for hit in found["hits"]]
    # with explain as well, every stage's scores included, each hit stays well under 1 KB past its text
    for hit in explained["hits"]:
        assert len(json.dumps(hit)) < len(hit["text"]) + 1024
    rerank_score = next(hit for hit in explained["hits"] if hit["id"] == long_hit["id"])["scores"]["rerank_score"]
    reranked = await call(client, "rerank", {"query": query, "documents": [long_text, long_hit["text"]]})
    whole = next(item["score"] for item in reranked["results"] if item["index"] == 0)
    assert rerank_score == pytest.approx(whole, abs=1e-5)

    everything = await call(client, "search", {"query": query, "max_chars": 32 * 1024})
    full = next(hit for hit in everything["hits"] if hit["id"] == long_hit["id"])
    assert full["text"] == long_text and "truncated" not in full
    assert [hit["id"] for hit in everything["hits"]] == [hit["id"] for hit in found["hits"]]


CONVERSATION = [
    ("Ann", "Morning Bob! How was the climbing trip to the Dolomites?"),
    ("Bob", "The climbing trip was amazing, the Dolomites stayed sunny for our climbing."),
    ("Ann", "Did your knee survive all that climbing in the Dolomites?"),
    ("Bob", "My knee held up, I wore the knee brace on every climbing day."),
    ("Bob", "Where did you go for your sister's wedding in June?"),
    ("Ann", "Lisbon! We stayed a whole week by the river."),
    ("Bob", "Lisbon by the river sounds lovely, was the food good in Lisbon?"),
    ("Ann", "The food in Lisbon was great, grilled sardines every night by the river."),
    ("Ann", "Have you picked a name for the new puppy yet?"),
    ("Bob", "The puppy is called Biscuit, the kids voted for the puppy name."),
    ("Ann", "Is Biscuit the puppy sleeping through the night?"),
    ("Bob", "Not yet, Biscuit the puppy cries in his crate every night."),
    ("Bob", "How is your pottery class going?"),
    ("Ann", "The pottery class is fun, I threw a pottery bowl on the wheel."),
    ("Bob", "Will the pottery bowl go in the kiln soon?"),
    ("Ann", "The bowl goes in the kiln on Friday, then I glaze the pottery bowl blue."),
    ("Ann", "Are you still training for the Berlin marathon?"),
    ("Bob", "Marathon training is going well, 60 km a week before Berlin."),
    ("Ann", "What time are you aiming for in the Berlin marathon?"),
    ("Bob", "Under four hours in the marathon would make me happy."),
    ("Bob", "Did the job interview at the museum go well?"),
    ("Ann", "The museum interview went well, they offered me the curator job."),
    ("Bob", "When do you start the curator job at the museum?"),
    ("Ann", "I start at the museum in September, right after the summer exhibition."),
]


async def test_a_conversation_is_searched_with_each_turns_predecessor(client: Client):
    """The answer to 'where was the wedding?' is a turn that names neither wedding nor sister; the turn
    before it does. A namespace stored as a conversation is coherent, so its BM25 arm reads each turn
    with the one before it and finds the answer."""
    for speaker, text in CONVERSATION:  # one at a time, as an agent records a conversation
        await call(client, "remember", {"text": f"{speaker}: {text}", "namespace": "ann-and-bob"})
    found = await call(
        client,
        "search",
        {
            "query": "Where was the wedding of Ann's sister?",
            "namespace": "ann-and-bob",
            "rerank": False,
            "explain": True,
        },
    )
    assert found["fusion"]["context"] is True
    assert found["fusion"]["coherence"] >= 0.05
    assert found["candidates"]["context"] > 0
    texts = [hit["text"] for hit in found["hits"]]
    answer = "Ann: Lisbon! We stayed a whole week by the river."
    assert answer in texts[:3]
    hit = found["hits"][texts.index(answer)]
    assert hit["scores"]["context_rank"] <= 2  # its predecessor's words found it
    assert "BM25 with each memory's neighbours" in found["message"]
    assert set(found["fusion"]["weights"]) == {"dense", "bm25", "context"}
    # the same memories stored in an order that keeps no exchange together are not read that way
    for position in range(len(CONVERSATION)):
        speaker, text = CONVERSATION[(position * 7) % len(CONVERSATION)]
        await call(client, "remember", {"text": f"{speaker}: {text}", "namespace": "shuffled"})
    shuffled = await call(
        client,
        "search",
        {"query": "Where was the wedding of Ann's sister?", "namespace": "shuffled", "rerank": False, "explain": True},
    )
    assert "context" not in shuffled["fusion"]  # false: left out
    assert shuffled["fusion"]["coherence"] < 0.05
    assert set(shuffled["fusion"]["weights"]) == {"dense", "bm25"}
    assert "context" not in shuffled["candidates"]  # null: left out
    assert all("context_rank" not in hit["scores"] for hit in shuffled["hits"])
    assert found["fusion"]["mean_terms"] < 10  # a few words a turn
    # the same conversation with every turn a long passage (the same 60 extra words each, which neither
    # distinguish neighbours nor distant turns): as coherent, but too long for the context arm
    padding = " ".join(f"appendix{i}" for i in range(60))
    for speaker, text in CONVERSATION:
        await call(client, "remember", {"text": f"{speaker}: {text} {padding}", "namespace": "long-turns"})
    query = {
        "query": "Where was the wedding of Ann's sister?",
        "namespace": "long-turns",
        "rerank": False,
        "explain": True,
    }
    long = await call(client, "search", query)
    assert long["fusion"]["coherence"] >= 0.05
    assert long["fusion"]["mean_terms"] > 60
    assert "context" not in long["fusion"] and "context" not in long["candidates"]
    assert set(long["fusion"]["weights"]) == {"dense", "bm25"}
    assert long["fusion"]["query_words"] == 7
    # ... except for a keyword query (at most 4 words), which names a topic its answer's neighbours hold
    keywords = await call(client, "search", {**query, "query": "wedding Ann's sister", "max_chars": 2000})
    assert keywords["fusion"]["query_words"] == 3
    assert keywords["fusion"]["context"] is True and keywords["candidates"]["context"] > 0
    assert answer in [hit["text"].removesuffix(f" {padding}") for hit in keywords["hits"]][:3]
    assert set(keywords["fusion"]["weights"]) == {"dense", "bm25", "context"}


async def test_diversity_picks_hits_by_mmr_so_near_duplicates_do_not_fill_the_answer(client):
    notes = [
        "The staging database password rotates every Monday.",
        "The staging database password rotates every Monday!",
        "The staging database password rotates every Monday, as agreed.",
        "Backups of the staging database run nightly at 02:00.",
    ]
    await call(client, "remember", {"memories": [{"text": text} for text in notes]})
    arguments = {"query": "staging database password rotation", "top_k": 2, "rerank": False}
    plain = await call(client, "search", arguments)
    assert plain["search_method"] == "hybrid"
    assert all("password rotates" in hit["text"] for hit in plain["hits"])  # two near-copies of one fact
    diverse = await call(client, "search", {**arguments, "diversity": 0.9, "explain": True})
    assert diverse["search_method"] == "hybrid+mmr"
    assert diverse["hits"][0]["id"] == plain["hits"][0]["id"]  # the most relevant stays first
    assert diverse["hits"][1]["text"] == notes[3]  # then the memory least like it, not its copy
    assert "maximal marginal relevance (diversity 0.9)" in diverse["message"]
    assert "mmr_ms" in diverse["timings_ms"]
    message = await call_error(client, "search", {"query": "x", "diversity": 1.5})
    assert "diversity" in message


async def test_text_arguments_arrive_as_the_strings_sent_even_when_they_look_like_json(fake_client):
    snippet = '{"db": "postgres", "port": 5432}'
    stored = {}
    for text in (snippet, '["a", "b"]', "null", "true", "[]"):
        stored[text] = (await call(fake_client, "remember", {"text": text}))["ids"][0]
    found = await call(fake_client, "get", {"ids": list(stored.values())})
    assert sorted(memory["text"] for memory in found["memories"]) == sorted(stored)
    labelled = await call(
        fake_client, "remember", {"text": "Labelled memory", "namespace": "null", "agent": "null", "source": "null"}
    )
    memory = (await call(fake_client, "get", {"ids": labelled["ids"]}))["memories"][0]
    assert (memory["namespace"], memory["agent"], memory["source"]) == ("null", "null", "null")
    assert labelled["stored"] == 1
    hits = await call(
        fake_client,
        "search",
        {"query": snippet, "namespace": "default", "rerank": False, "top_k": 1, "explain": True},
    )
    assert hits["query"] == snippet and hits["hits"][0]["text"] == snippet
    # Lists and objects sent as JSON text are still decoded (some clients send them so).
    tagged = await call(fake_client, "remember", {"text": "Tagged memory", "tags": '["ops", "db"]'})
    assert (await call(fake_client, "get", {"ids": tagged["ids"]}))["memories"][0]["tags"] == ["ops", "db"]


async def test_invisible_text_is_refused_and_null_tags_in_a_batch_mean_none_and_int64_min_fits(fake_client):
    for text in ("\u200b\u200b", "\ufeff \u2060", "\u200d\n"):
        message = await call_error(fake_client, "remember", {"text": text})
        assert "text: has only invisible characters" in message, text
    message = await call_error(fake_client, "remember", {"memories": [{"text": "ok"}, {"text": "\u200b"}]})
    assert "memories[1].text: has only invisible characters" in message
    assert (await call(fake_client, "list_memories", {}))["memories"] == []  # nothing of that batch was stored
    unlabelled = {"memories": [{"text": "No labels here", "tags": None, "metadata": None}]}
    batch = await call(fake_client, "remember", unlabelled)
    stored = (await call(fake_client, "get", {"ids": batch["ids"]}))["memories"][0]
    assert "tags" not in stored and "metadata" not in stored  # none: empty, so left out of the answer
    edges = {"low": -(2**63), "high": 2**63 - 1}
    kept = await call(fake_client, "remember", {"text": "Edges of int64", "metadata": edges})
    assert (await call(fake_client, "get", {"ids": kept["ids"]}))["memories"][0]["metadata"] == edges
    message = await call_error(fake_client, "remember", {"text": "Too low", "metadata": {"low": -(2**63) - 1}})
    assert "metadata.low: integers must fit in 64 bits (-2^63 to 2^63 - 1)" in message


def _empty_values(value, path="$"):
    """Where in an answer a value is null, false, [] or {} (none should be: such a field is left out)."""
    if value is None or value is False or (isinstance(value, list | dict) and not value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _empty_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _empty_values(item, f"{path}[{index}]")


async def _answer(client: Client, tool: str, arguments: dict) -> dict:
    """A tool's structured content, checked to be what its text content says, as compact JSON."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error and result.structured_content is not None
    [content] = result.content
    assert json.loads(content.text) == result.structured_content
    assert content.text == json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":"))
    return result.structured_content


ABSENT = "mem_" + "0" * 32  # a well-formed id that no memory has
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # UTC to the second


async def test_hits_and_memories_carry_only_what_is_set_and_explain_leaves_out_null_scores(fake_client: Client):
    """(tests/test_lean.py checks the default answers of search over '*', list, remember and status, and explain
    against the default through the real models; here: a search of one namespace, explain's own answer, get.)"""
    labels = {"tags": ["ops"], "metadata": {"env": "staging"}, "source": "wiki"}
    memories = [{"text": FACTS[0], **labels}, *({"text": fact} for fact in FACTS[1:])]
    await call(fake_client, "remember", {"memories": memories})
    found = await _answer(fake_client, "search", {"query": "staging deploy key", "top_k": 5})
    assert not set(found) & {"scores", "timings_ms", "fusion", "candidates", "query", "reranker_model"}
    assert list(_empty_values(found)) == [] and len(found["hits"]) == 5
    for hit in found["hits"]:
        assert hit["score"] == round(hit["score"], 3) and re.fullmatch(TIMESTAMP, hit["created_at"])
        labelled = hit["text"] == FACTS[0]  # the namespace searched is not repeated; unset labels are left out
        assert set(hit) == {"id", "text", "score", "created_at", *(labels if labelled else ())}
        assert not labelled or {key: hit[key] for key in labels} == labels

    # explain: every hit with its namespace and per-arm scores, an arm that missed it left out rather than null
    explained = await _answer(fake_client, "search", {"query": "staging deploy key", "top_k": 5, "explain": True})
    assert {"query", "candidates", "fusion", "timings_ms", "message"} <= set(explained)
    assert [hit["id"] for hit in explained["hits"]] == [hit["id"] for hit in found["hits"]]
    for hit in explained["hits"]:
        assert hit["namespace"] == "default" and "fused_score" in hit["scores"]
        assert list(_empty_values(hit)) == [], hit
    assert any("bm25_rank" not in hit["scores"] for hit in explained["hits"])  # BM25 found only some of five

    tagged = next(hit["id"] for hit in found["hits"] if hit["text"] == FACTS[0])
    got = await _answer(fake_client, "get", {"ids": [tagged]})
    assert set(got) == {"memories"} and re.fullmatch(TIMESTAMP, got["memories"][0]["created_at"])
    assert {key: got["memories"][0][key] for key in labels} == labels
    assert await _answer(fake_client, "get", {"ids": [tagged, ABSENT]}) == {
        "memories": got["memories"],
        "not_found": [ABSENT],
    }
