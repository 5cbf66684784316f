"""Reading and writing a BEIR-format dataset folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from mimir_mcp.server.validation import check_namespace

# Scraped corpora carry stray control characters (SciFact has U+0096 from mis-decoded cp1252), which
# `remember` rightly refuses; they carry no meaning, so documents are cleaned the way a careful agent would.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    metadata: dict[str, str | int] = field(default_factory=dict, hash=False)

    @property
    def memory_text(self) -> str:
        """How a document becomes a memory: the title is part of what an agent would have written."""
        text = f"{self.title}\n{self.text}" if self.title else self.text
        return _CONTROL.sub(" ", text).strip()


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    # Optional grouping, one namespace per group (say, per conversation): document id -> group and
    # query id -> group; a query is searched in its own group only. Empty: one namespace for all.
    document_groups: dict[str, str] = field(default_factory=dict)
    query_groups: dict[str, str] = field(default_factory=dict)
    # Optional label per query (LoCoMo's question category; ``category`` in queries.jsonl), for figures by label.
    query_categories: dict[str, str] = field(default_factory=dict)
    # Optional times (``created_at`` in corpus.jsonl; ``clock.json``): each memory is stored at its time, and
    # time phrases are read against ``now`` in zone ``tz``. Per query, a ``when`` phrase and the ``plain`` query
    # without it, for the evaluation of `when` given apart from the query.
    document_times: dict[str, str] = field(default_factory=dict)
    now: str | None = None
    tz: str | None = None
    query_when: dict[str, str] = field(default_factory=dict)
    query_plain: dict[str, str] = field(default_factory=dict)

    @property
    def judged_queries(self) -> dict[str, str]:
        """Queries with at least one relevant document in this split, in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels if qid in self.queries}


def group_by_prefix(dataset: Dataset, separator: str) -> Dataset:
    """``dataset`` with each document and query in the group its id starts with: the part before the
    first ``separator`` (``26-D1:3`` and ``26-q0`` are both in ``26`` with ``-``)."""
    if not separator:
        raise ValueError("--group-by-prefix needs a non-empty separator")

    def group(kind: str, item_id: str) -> str:
        prefix, found, _ = item_id.partition(separator)
        if not found or not prefix:
            raise ValueError(f"{kind} id {item_id!r} does not start with a group followed by {separator!r}")
        return check_namespace(f"the namespace of {kind} {item_id!r}", prefix)

    return replace(
        dataset,
        document_groups={doc_id: group("document", doc_id) for doc_id in dataset.corpus},
        query_groups={query_id: group("query", query_id) for query_id in dataset.judged_queries},
    )


def load_dataset(folder: Path | str, split: str = "test") -> Dataset:
    folder = Path(folder)
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a BEIR-format folder: missing {', '.join(missing)}")
    corpus: dict[str, Document] = {}
    times: dict[str, str] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = Document(str(row["_id"]), row.get("title") or "", row.get("text") or "")
                if row.get("created_at"):
                    times[str(row["_id"])] = str(row["created_at"])
    queries: dict[str, str] = {}
    categories: dict[str, str] = {}
    when: dict[str, str] = {}
    plain: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
                if row.get("category"):
                    categories[str(row["_id"])] = str(row["category"])
                if row.get("when"):
                    when[str(row["_id"])] = str(row["when"])
                    plain[str(row["_id"])] = str(row.get("plain") or row["text"])
    clock = json.loads((folder / "clock.json").read_text(encoding="utf-8")) if (folder / "clock.json").exists() else {}
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as table:
        reader = csv.reader(table, delimiter="\t")
        header = next(reader)
        if [cell.strip().lower() for cell in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"qrels/{split}.tsv must start with the header 'query-id corpus-id score'")
        for row in reader:
            if len(row) >= 3 and row[1] in corpus:
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return Dataset(
        name=folder.name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        query_categories=categories,
        document_times=times,
        now=clock.get("now"),
        tz=clock.get("tz"),
        query_when=when,
        query_plain=plain,
    )


def write_dataset(
    folder: Path | str,
    corpus: Iterable[Document],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    split: str = "test",
) -> None:
    """Write a folder that ``load_dataset`` (and BEIR's own loader) reads back: how the examples turn
    other collections into evaluation sets."""
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for document in corpus:
            out.write(json.dumps({"_id": document.id, "title": document.title, "text": document.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, judged in qrels.items():
            for document_id, score in judged.items():
                out.write(f"{query_id}\t{document_id}\t{score}\n")


def cut_at_word(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a space: how the set builders bound a document."""
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0]


def match_key(text: str) -> str:
    """Lower-cased words only: how the set builders tell whether a query occurs in a document verbatim,
    or two texts repeat each other, whatever the case and punctuation."""
    return " ".join(re.findall(r"\w+", text.lower()))
