"""Reading and writing a BEIR-format dataset folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Scraped corpora carry stray control characters (SciFact has U+0096 from mis-decoded cp1252), which
# `remember` rightly refuses; they carry no meaning, so documents are cleaned the way a careful agent would.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

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

    @property
    def judged_queries(self) -> dict[str, str]:
        """Queries with at least one relevant document in this split, in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels if qid in self.queries}


def load_dataset(folder: Path | str, split: str = "test") -> Dataset:
    folder = Path(folder)
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a BEIR-format folder: missing {', '.join(missing)}")
    corpus: dict[str, Document] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = Document(str(row["_id"]), row.get("title") or "", row.get("text") or "")
    queries: dict[str, str] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as table:
        reader = csv.reader(table, delimiter="\t")
        header = next(reader)
        if [cell.strip().lower() for cell in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"qrels/{split}.tsv must start with the header 'query-id corpus-id score'")
        for row in reader:
            if len(row) >= 3 and row[1] in corpus:
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return Dataset(name=folder.name, corpus=corpus, queries=queries, qrels=qrels)


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
