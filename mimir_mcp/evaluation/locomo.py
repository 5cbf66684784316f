"""Reading LoCoMo conversations (Maharana et al., 2024) as an evaluation set an agent would face: every
turn of a conversation stored in that conversation's namespace, every question searched there.

A folder holds one JSON file per conversation: ``speaker_a``, ``speaker_b``, ``session_N`` turn lists
(``speaker``, ``dia_id``, ``text``, sometimes ``blip_caption``), ``session_N_date_time`` (each turn is stored
at its session's time) and ``qa``
(``question``, ``evidence``: the ``dia_id`` of the turns holding the answer, ``category``). The turns
nest under ``conversation`` in the original release; both shapes are read, as is one file listing
several conversations (each named by its ``sample_id``).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mimir_mcp.evaluation.beir import Dataset, Document
from mimir_mcp.server.validation import check_namespace

_SESSION = re.compile(r"session_(\d+)")
# A few evidence entries hold several ids in one string ("D8:6; D9:17"); each is read on its own.
_EVIDENCE_SEPARATORS = re.compile(r"[;,\s]+")


def conversation_files(folder: Path) -> list[Path]:
    """The conversation files of a LoCoMo folder: its ``*.json``, or those of its ``conversations/``."""
    for candidate in (folder, folder / "conversations"):
        files = sorted(candidate.glob("*.json"))
        if files:
            return files
    return []


def is_locomo_folder(folder: Path) -> bool:
    """A folder of conversation files with no BEIR ``corpus.jsonl`` beside them."""
    return not (folder / "corpus.jsonl").exists() and bool(conversation_files(folder))


def turn_text(turn: dict[str, Any]) -> str:
    """A turn as an agent would store it: ``"Speaker: text [shares caption]"``, whitespace runs collapsed."""
    text = f"{turn['speaker']}: {turn.get('text') or ''}"
    if turn.get("blip_caption"):
        text += f" [shares {turn['blip_caption']}]"
    return " ".join(text.split())


def load_locomo(folder: Path | str, split: str = "test") -> Dataset:
    """Every turn a document (id ``<conversation>-<dia_id>``), every question with at least one evidence
    turn a query (id ``<conversation>-q<index in qa>``), grouped by conversation."""
    folder = Path(folder)
    if split != "test":
        raise ValueError(f"a LoCoMo folder has one split, 'test'; got {split!r}")
    files = conversation_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no LoCoMo conversation (*.json) files")
    name = folder.parent.name if folder.name == "conversations" else folder.name
    dataset = Dataset(name=name, corpus={}, queries={}, qrels={})
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        samples = raw if isinstance(raw, list) else [raw]
        for sample in samples:
            conversation = str(sample["sample_id"]) if isinstance(raw, list) else path.stem
            _add_conversation(dataset, check_namespace(f"conversation {path.name}", conversation), sample)
    if len(dataset.document_times) < len(dataset.corpus):
        return replace(dataset, document_times={})  # a session without a readable time: stored now, as before
    # Every question is asked a day after the last session of all.
    last = max(datetime.fromisoformat(stamp) for stamp in dataset.document_times.values())
    return replace(dataset, now=(last + timedelta(days=1)).isoformat(), tz="UTC")


def session_time(text: str) -> datetime | None:
    """A session's ``date_time`` ("1:56 pm on 8 May, 2023"), read as UTC; None when it has another shape."""
    try:
        return datetime.strptime(" ".join(text.split()).upper(), "%I:%M %p ON %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def _add_conversation(dataset: Dataset, conversation: str, sample: dict[str, Any]) -> None:
    turns = sample.get("conversation", sample)
    sessions = sorted(
        (int(match.group(1)), key)
        for key in turns
        if (match := _SESSION.fullmatch(key)) and isinstance(turns[key], list)
    )
    dia_ids: set[str] = set()
    for session, key in sessions:
        date = str(turns.get(f"{key}_date_time") or "")
        started = session_time(date)
        for position, turn in enumerate(turns[key]):
            doc_id = f"{conversation}-{turn['dia_id']}"
            metadata: dict[str, str | int] = {"dia_id": turn["dia_id"], "session": session, "session_date": date}
            dataset.corpus[doc_id] = Document(doc_id, "", turn_text(turn), metadata)
            if started is not None:  # stored as it was said: a turn a second after the one before
                dataset.document_times[doc_id] = (started + timedelta(seconds=position)).isoformat()
            dataset.document_groups[doc_id] = conversation
            dia_ids.add(turn["dia_id"])
    for index, qa in enumerate(sample.get("qa", [])):
        evidence = [
            dia_id
            for entry in qa.get("evidence", [])
            for dia_id in _EVIDENCE_SEPARATORS.split(str(entry))
            if dia_id in dia_ids
        ]
        if not evidence:
            continue  # nothing to find: its evidence is missing or names no turn of this conversation
        query_id = f"{conversation}-q{index}"
        dataset.queries[query_id] = qa["question"]
        dataset.qrels[query_id] = {f"{conversation}-{dia_id}": 1 for dia_id in evidence}
        dataset.query_groups[query_id] = conversation
        dataset.query_categories[query_id] = str(qa.get("category", ""))
