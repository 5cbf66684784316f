"""A CPU-fast copy of the bi-encoder for search queries: transformer, mean pooling and normalization in
one ONNX graph run by ONNX Runtime.

Why: a search embeds one short query, and ``SentenceTransformer.encode`` spends most of that time in
torch and Python overhead (9 ms per SciFact query on 2 cores, against 3.2 ms for this graph, with
vectors equal to 1e-7). It is exact fp32, so memories embedded by torch and queries embedded here
share one space. Built once per model in a child process (torch's exporter leaves state behind),
cached per user; any failure leaves the caller on ``SentenceTransformer.encode``. Once checked against
the model, the copy is recorded (``served_copy``) and later starts serve it without torch.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimir_mcp.background import inference_while_loading
from mimir_mcp.locks import build_once
from mimir_mcp.rerank.onnx_int8 import export_graph, model_fingerprint, quiet_threads, run_child
from mimir_mcp.served_copy import FastTokenizer, ServedCopy, describe, input_names, record

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def transformer_folder(model: SentenceTransformer) -> Path | None:
    """The folder of the model's transformer weights, when the model is one that this graph reproduces
    exactly: a transformer, mean pooling, and (optionally) normalization, with no prompts."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modules = list(model)
    if not modules or not isinstance(modules[0], Transformer):
        return None
    rest = modules[1:]
    if not rest or not isinstance(rest[0], Pooling):
        return None
    if getattr(rest[0], "pooling_mode", None) not in ("mean", ("mean",)):
        return None
    if any(not isinstance(module, Normalize) for module in rest[1:]):
        return None
    if model.default_prompt_name and model.prompts.get(model.default_prompt_name):
        return None
    folder = Path(getattr(modules[0].auto_model, "name_or_path", "") or "")
    return folder if (folder / "config.json").exists() else None


def build_query_model(folder: Path, cache_dir: Path, input_names: list[str]) -> Path:
    """Export ``folder`` once (``locks.build_once``: one build at a time on the machine, an atomic
    rename); returns the cached ``query.onnx``."""

    def export(scratch: Path) -> None:
        run_child([sys.executable, "-m", __name__, str(folder), str(scratch / "query.onnx"), ",".join(input_names)])

    path, _ = build_once(cache_dir / f"query-{model_fingerprint(folder)}", "query.onnx", export)
    return path


def _export(folder: Path, target: Path, input_names: list[str]) -> None:
    """The child's work: the transformer, mean pooling over the attention mask and L2 normalization,
    exported as one graph whose output is the sentence embedding."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder)).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            feed = dict(zip(input_names, inputs, strict=True))
            hidden = self.model(**feed).last_hidden_state
            mask = feed["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = {name: torch.ones((1, 4), dtype=torch.long) for name in input_names}
    if "token_type_ids" in sample:
        sample["token_type_ids"].zero_()
    export_graph(MeanPooled(), sample, "embedding", target)


class OnnxQueryEncoder:
    """``encode`` like ``SentenceTransformer.encode(normalize_embeddings=True)``, for queries and documents."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer: FastTokenizer,
        *,
        dimension: int | None = None,
        threads: int | None = None,
        arena: bool = False,
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # ONNX Runtime's arena keeps the largest batch's buffers for good (hundreds of MB after an import of
        # long memories); without it they are freed after each run, at little cost next to the model's work.
        options.enable_cpu_mem_arena = arena
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        quiet_threads(options)
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [item.name for item in self.session.get_inputs()]
        self.tokenizer = tokenizer
        self.dimension = dimension
        self.path = onnx_path

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit vectors in input order. Texts are batched by length so that little padding is computed.
        ONNX Runtime and the tokenizer release the GIL, so the event loop keeps running meanwhile."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = []
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            encoded = self.tokenizer(chunk)
            feed = {name: encoded[name] for name in self.inputs}
            parts.append(np.asarray(self.session.run(["embedding"], feed)[0], dtype=np.float32))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts)
        return vectors


def load_query_encoder(model: SentenceTransformer, cache_dir: Path, root: Path | None = None) -> OnnxQueryEncoder:
    """Build (or reuse) the graph for ``model`` and check it against the model; raises when the model is not
    one it reproduces. Once checked, the copy is recorded for ``root`` (the model's folder), so the next
    start serves it without torch (``open_served``)."""
    folder = transformer_folder(model)
    if folder is None:
        raise ValueError("the model is not transformer + mean pooling (+ normalize); queries use torch")
    path = build_query_model(folder, cache_dir, input_names(model.tokenizer))
    copy = describe(path, model.tokenizer, int(model.max_seq_length or 256))
    # Guard against a graph (or a saved tokenizer) that does not reproduce the model: a custom architecture, say.
    sample = ["a short query", "a somewhat longer query about what the memory server stores"]
    with inference_while_loading() as allowed:  # a loading thread: the process may be exiting
        if not allowed:
            raise RuntimeError("the process is exiting")
        # One thread per run: queries run several at once, and a large batch runs once per core (Embedder).
        encoder = OnnxQueryEncoder(path, FastTokenizer.of(copy), threads=1)
        expected = model.encode(sample, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        vectors = encoder.encode(sample)
        difference = float(np.abs(vectors - expected).max())
        # Freed here, not when this frame is cleared after the block: the array is a view of a torch tensor,
        # whose release takes the GIL again, and a daemon thread taking the GIL once the exit has begun is
        # ended by a forced unwind that torch's frames turn into an abort (seen under gdb).
        del expected
    if difference > 1e-4:
        raise ValueError(f"the ONNX query graph differs from the model by {difference:.2g}; queries use torch")
    encoder.dimension = copy.dimension = int(vectors.shape[1])
    if root is not None:
        record(cache_dir, "query", root, copy)
    return encoder


def open_served(copy: ServedCopy) -> OnnxQueryEncoder:
    """A recorded copy, opened without torch: the graph and its saved tokenizer."""
    return OnnxQueryEncoder(Path(copy.graph), FastTokenizer.of(copy), dimension=copy.dimension, threads=1)


if __name__ == "__main__":
    _export(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","))
