"""A fast copy ready to serve: an ONNX graph checked against its model, the model's tokenizer saved beside
it, and a record of what running it needs, so later starts open it with onnxruntime and tokenizers alone.

Why: importing torch and sentence-transformers and loading two models took most of a server's first
seconds and half its memory, on every start. Torch is needed only to build a copy (a first start, a new
model); every start after opens the copies directly. The record is keyed by the model's folder (its path,
and the size and time of its weights, config and tokenizer files), so a retrained or replaced model is
never served from an old copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

Kind = Literal["query", "rerank"]

# The files whose change makes a model a different model for its copies.
_MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)


class ServedCopy(BaseModel):
    """What opening a copy without its model needs."""

    graph: str
    tokenizer: str
    pad_id: int
    pad_token: str
    max_length: int
    dimension: int | None = None


def looks_like_path(name: str) -> bool:
    """Hub names are ``org/name``; anything absolute, relative or deeper is meant as a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def model_root(name: str, cache_dir: str | None = None, *, default_org: str | None = None) -> Path | None:
    """The local folder of a model: the path itself, or its snapshot in the Hugging Face cache (a bare name
    also under ``default_org``, as sentence-transformers looks up its own models); ``None`` when neither is on
    this machine (nothing is downloaded here)."""
    path = Path(os.path.expanduser(name))
    if path.exists():
        return path
    if looks_like_path(name):
        return None
    from huggingface_hub import snapshot_download

    repos = [name] if "/" in name or default_org is None else [name, f"{default_org}/{name}"]
    for repo in repos:
        try:
            return Path(snapshot_download(repo, local_files_only=True, cache_dir=cache_dir))
        except Exception:  # noqa: BLE001 - not cached (or not a repo name): no copy to look up
            continue
    return None


def _record_path(cache_dir: Path, kind: Kind, root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode())
    for name in _MODEL_FILES:
        path = root / name
        if path.exists():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir / f"serve-{kind}-{digest.hexdigest()[:16]}.json"


def find(cache_dir: Path, kind: Kind, root: Path | None) -> ServedCopy | None:
    """The recorded copy of the model in ``root``, if one was checked and its files are all there."""
    if root is None:
        return None
    path = _record_path(cache_dir, kind, root)
    try:
        copy = ServedCopy.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        logger.warning("the record of a fast copy could not be read (%s); building it again: %s", path, exc)
        return None
    if not (Path(copy.graph).is_file() and Path(copy.tokenizer).is_file()):
        return None
    return copy


def save_tokenizer(tokenizer: Any, copy_dir: Path) -> Path:
    """Save a transformers fast tokenizer beside the graph (once; another process may have saved it);
    returns its ``tokenizer.json``. A slow tokenizer has no such file: its model keeps the torch path."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the model's tokenizer is not a fast tokenizer; it stays on torch")
    target = copy_dir / "tokenizer"
    if not (target / "tokenizer.json").is_file():
        scratch = copy_dir / f".tokenizer-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        tokenizer.save_pretrained(str(scratch))
        try:
            scratch.rename(target)
        except OSError:  # saved by another process meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
    return target / "tokenizer.json"


def record(cache_dir: Path, kind: Kind, root: Path, copy: ServedCopy) -> None:
    """Write the record once the copy was checked, so the next start serves it without torch (atomically:
    a reader sees the whole record or none)."""
    path = _record_path(cache_dir, kind, root)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(copy.model_dump_json())
    os.replace(scratch, path)


def input_names(tokenizer: Any) -> list[str]:
    """The graph inputs a transformers tokenizer feeds, in the order the graphs take them."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    return [name for name in names if name in tokenizer.model_input_names]


def describe(graph: Path, tokenizer: Any, max_length: int) -> ServedCopy:
    """The record of a built ``graph`` for a model with this transformers ``tokenizer``, saved beside it."""
    if tokenizer.pad_token is None or tokenizer.pad_token_id is None:
        raise ValueError("the model's tokenizer has no padding token; it stays on torch")
    return ServedCopy(
        graph=str(graph),
        tokenizer=str(save_tokenizer(tokenizer, graph.parent)),
        pad_id=int(tokenizer.pad_token_id),
        pad_token=str(tokenizer.pad_token),
        max_length=max_length,
    )


class FastTokenizer:
    """The saved ``tokenizer.json`` run by the tokenizers library: the ids, masks and type ids that the
    transformers tokenizer gives with ``truncation=True, padding=True`` (longest first, padded to the
    longest in the batch), as int64 arrays, without importing transformers."""

    def __init__(self, path: str | Path, *, pad_id: int, pad_token: str, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def of(cls, copy: ServedCopy, max_length: int | None = None) -> FastTokenizer:
        return cls(
            copy.tokenizer, pad_id=copy.pad_id, pad_token=copy.pad_token, max_length=max_length or copy.max_length
        )

    def __call__(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        batch: list[Any] = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        encoded = self._tokenizer.encode_batch(batch)
        return {
            "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
            "attention_mask": np.array([item.attention_mask for item in encoded], dtype=np.int64),
            "token_type_ids": np.array([item.type_ids for item in encoded], dtype=np.int64),
        }
