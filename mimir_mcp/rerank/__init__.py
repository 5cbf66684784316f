"""Second-stage reranking: the reranker protocol, the local cross-encoder, and the fallback that
records whether reranking ran."""

from mimir_mcp.rerank.base import Reranker
from mimir_mcp.rerank.cross_encoder import LocalCrossEncoder
from mimir_mcp.rerank.fallback import RerankOutcome, rerank_or_fallback, rerank_or_raise

__all__ = ["LocalCrossEncoder", "RerankOutcome", "Reranker", "rerank_or_fallback", "rerank_or_raise"]
