"""The blend weight a cross-encoder folder carries: how much its scores count against the hybrid's.

``finetune-reranker`` chooses it on queries held out from training and saves it beside the weights,
so a model that ranks worse than the hybrid alone is used the way it helps, with no setting to find.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BLEND_FILE = "mimir_reranker.json"


def save_blend(folder: Path, weight: float, evidence: dict[str, Any]) -> Path:
    """Write the weight and how it was chosen (dev queries and their nDCG@10 per weight)."""
    path = Path(folder) / BLEND_FILE
    path.write_text(json.dumps({"blend": weight, **evidence}, indent=2) + "\n", encoding="utf-8")
    return path


def load_blend(folder: Path) -> float | None:
    """The saved weight, or ``None`` when the folder has none (or an unreadable one, which is logged)."""
    path = Path(folder) / BLEND_FILE
    if not path.is_file():
        return None
    try:
        weight = float(json.loads(path.read_text(encoding="utf-8"))["blend"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    if not 0.0 <= weight <= 1.0:
        logger.warning("ignoring %s: blend %s is not between 0 and 1", path, weight)
        return None
    return weight
