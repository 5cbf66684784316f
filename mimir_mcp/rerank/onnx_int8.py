"""A CPU-fast copy of a cross-encoder: exported to ONNX, fused, quantized to int8, run by ONNX Runtime.

Why: on a laptop CPU, ``CrossEncoder.predict`` spends most of its time in fp32 matrix products.
The fused int8 graph does the same work several times faster with nearly the same ranking (the
``bench`` command reports the speed-up, top-10 agreement and Kendall tau against the stock model).
The build runs once per model in a child process and is cached per user; any failure leaves the
caller on the ordinary torch ``CrossEncoder``. Once built, the copy is recorded (``served_copy``) and
later starts serve it without torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mimir_mcp.config import default_onnx_cache_dir

if TYPE_CHECKING:
    from mimir_mcp.served_copy import FastTokenizer

logger = logging.getLogger(__name__)

# Where ONNX copies go unless the caller names a folder (the server passes ``store.onnx_cache_dir``).
DEFAULT_ONNX_CACHE = default_onnx_cache_dir()


def model_fingerprint(model_dir: Path) -> str:
    """Changes when the weights or the config change, so a retrained model is exported again."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = model_dir / name
        if path.exists():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def build_int8_model(model_dir: Path, cache_dir: Path) -> Path:
    """Export, fuse and quantize ``model_dir`` once, in a child process; returns the cached
    ``model.int8.onnx``. The child keeps the server's memory clean: torch's exporter leaves state
    behind, and the ONNX protobufs that fusing and quantizing load (several hundred MB at peak) would
    stay in the server's heap after they are freed. ``locks.build_once`` runs one build at a time on
    the machine, with every intermediate file in a scratch folder of the build's own, renamed into
    place when done."""
    from mimir_mcp.locks import build_once

    def build(scratch: Path) -> None:
        run_child([sys.executable, "-m", __name__, str(model_dir), str(scratch)])

    path, _ = build_once(cache_dir / model_fingerprint(model_dir), "model.int8.onnx", build)
    return path


def run_child(command: list[str]) -> None:
    """Run a build step in a child process; a failure is raised with the child's last error line."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"exit {result.returncode}: {lines[-1] if lines else 'no error output'}")


def export_graph(module: Any, sample: dict[str, Any], output_name: str, target: Path) -> None:
    """``torch.onnx.export`` of ``module(*sample.values())`` with batch and sequence axes left dynamic.
    Call it in a child process only: torch's exporter leaves state behind."""
    import torch

    names = list(sample)
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output_name] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(sample.values()),
            str(target),
            input_names=names,
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _export(model_dir: Path, exported: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    encoded = AutoTokenizer.from_pretrained(str(model_dir))([("query", "a document")], return_tensors="pt")
    sample = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
    export_graph(model, sample, "logits", exported)


def _build(model_dir: Path, target: Path) -> None:
    """The child's work: export, fuse the attention and layer-norm subgraphs, quantize to int8, all in
    ``target`` (a scratch folder; ``build_once`` keeps only ``model.int8.onnx``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    exported = target / "model.onnx"
    _export(model_dir, exported)
    config = json.loads((model_dir / "config.json").read_text())
    fused = optimize_model(
        str(exported),
        model_type="bert",
        num_heads=int(config.get("num_attention_heads", 12)),
        hidden_size=int(config.get("hidden_size", 384)),
    )
    fused_path = target / "model.fused.onnx"
    fused.save_model_to_file(str(fused_path))
    quantize_dynamic(
        str(fused_path),
        str(target / "model.int8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def quiet_threads(options: Any) -> None:
    """No busy-waiting between runs: ONNX Runtime's worker threads otherwise spin on the cores after each
    run, taking them from the event loop and the other model (``status`` and searches wait for a core)."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")


class OnnxInt8CrossEncoder:
    """``predict`` like ``CrossEncoder.predict`` (sigmoid scores for one-logit models), on ONNX Runtime."""

    def __init__(self, onnx_path: Path, tokenizer: FastTokenizer, *, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        quiet_threads(options)
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {item.name for item in self.session.get_inputs()}
        self.tokenizer = tokenizer
        self.path = onnx_path

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 8, **_: Any) -> np.ndarray:
        scores: list[np.ndarray] = []
        # Sorting by length keeps padding small inside each batch; results go back in input order.
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), batch_size):
            chunk = [pairs[i] for i in order[start : start + batch_size]]
            encoded = self.tokenizer([query for query, _ in chunk], [text for _, text in chunk])
            feed = {name: encoded[name] for name in self.inputs}
            logits = np.asarray(self.session.run(["logits"], feed)[0])
            scores.append(logits[:, 0])
        ordered = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        result = np.empty_like(ordered)
        result[order] = ordered
        return 1.0 / (1.0 + np.exp(-result))


if __name__ == "__main__":
    _build(Path(sys.argv[1]), Path(sys.argv[2]))
