"""Build a BEIR-format retrieval set from FOLDOC, the Free On-line Dictionary of Computing: find a
computing term by the first sentence of its entry. A collection of long encyclopedic entries on a
technical vocabulary, used to check fusion defaults that were chosen without it (research/NOTES.md, "How the
defaults were chosen").

Each document is an entry, titled by its headword (``Pascal``), with the rest of the entry as text
(cut to about 2,000 characters); each query is the entry's first sentence without its subject tags
("(After the French mathematician Blaise Pascal (1623-1662)) A programming language designed by
Niklaus Wirth around 1970."), which the document no longer holds. Entries whose rest is under ten
words (cross-references, abbreviations) or repeats another's are left out, and so are queries under
five words, queries that two entries share and queries that occur verbatim in their own document,
so that each query has one right answer. FOLDOC comes from Debian's ``dict-foldoc`` (a dictd database):

    apt-get install dict-foldoc
    python examples/foldoc_set.py --out /tmp/foldoc
    mimir-mcp eval --dataset /tmp/foldoc --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, cut_at_word, match_key, write_dataset

MAX_CHARS = 2_000
MIN_WORDS = 10  # of the entry once its first sentence is taken out
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SENTENCE_END = re.compile(r"[.!?](?=\s+(?:[A-Z(\"']|\d+\.\s))")  # also before the next sense's number
_NOT_AN_END = re.compile(r"(?:^|\W)(?:[A-Z]|e\.g|i\.e|etc|vs|Inc|Ltd|Dr|Mr|St)$")  # initials, abbreviations
_TAG = re.compile(r"<[a-z][^<>]*>")  # subject tags: "<language>", "<networking, protocol>"
# What an entry's first sentence starts with besides its definition: the headword's aliases, subject
# tags, the sense's number, its pronunciation, the abbreviation it stands for ("(VLAN)").
_LEAD = re.compile(r"^(?:\s*(?:<[^<>]*>|\d+\.(?=\s)|/[^/\s][^/]*/|\([\w./+-]+\)))+\s*")
_DATE = re.compile(r"\s*\(\d{4}-\d{2}-\d{2}\)\s*$")  # the date an entry was last edited


def first_sentence(text: str) -> str:
    for end in _SENTENCE_END.finditer(text):
        if not _NOT_AN_END.search(text[: end.start()]):
            return text[: end.end()]
    return text


def _number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


@dataclass(frozen=True)
class Entry:
    headword: str
    summary: str
    rest: str


def read_entries(dictionary: Path, index: Path) -> list[Entry]:
    """Every entry the index points at, once (several headwords may share one), in file order."""
    raw = gzip.decompress(dictionary.read_bytes()) if dictionary.suffix == ".dz" else dictionary.read_bytes()
    spans: dict[int, int] = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and not fields[0].startswith("00-database"):
            spans.setdefault(_number(fields[1]), _number(fields[2]))
    entries = []
    for offset in sorted(spans):
        lines = raw[offset : offset + spans[offset]].decode("utf-8", errors="replace").strip("\n").split("\n")
        headword, body = lines[0].strip(), " ".join(" ".join(lines[1:]).split())
        body = _DATE.sub("", body.replace("{", "").replace("}", ""))
        tag = _TAG.search(body[:200])
        body = _LEAD.sub("", body[tag.start() :] if tag else body)
        summary = first_sentence(body)
        if headword and summary:
            entries.append(Entry(headword, summary, body[len(summary) :].strip()))
    return entries


def build(
    entries: list[Entry], documents: int, queries: int, seed: int
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    rests = Counter(entry.rest for entry in entries)
    kept: dict[str, Entry] = {}
    for entry in entries:
        if len(entry.rest.split()) >= MIN_WORDS and rests[entry.rest] == 1:
            kept.setdefault(match_key(entry.headword).replace(" ", "_") or entry.headword, entry)  # "C" and "c": one id
    summaries: dict[str, int] = {}
    for entry in kept.values():
        summaries[match_key(entry.summary)] = summaries.get(match_key(entry.summary), 0) + 1
    rng = random.Random(seed)
    ids = sorted(kept)
    picked = rng.sample(ids, min(documents, len(ids)))
    askable = [
        entry_id
        for entry_id in picked
        if summaries[match_key(kept[entry_id].summary)] == 1
        and len(match_key(kept[entry_id].summary).split()) >= 5
        and match_key(kept[entry_id].summary) not in match_key(cut_at_word(kept[entry_id].rest, MAX_CHARS))
    ]
    asked = rng.sample(askable, min(queries, len(askable)))
    return (
        [
            Document(entry_id, kept[entry_id].headword, cut_at_word(kept[entry_id].rest, MAX_CHARS))
            for entry_id in picked
        ],
        {f"q-{entry_id}": kept[entry_id].summary for entry_id in asked},
        {f"q-{entry_id}": {entry_id: 1} for entry_id in asked},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dictionary", type=Path, default=Path("/usr/share/dictd/foldoc.dict.dz"))
    parser.add_argument("--index", type=Path, help="default: the dictionary's .index beside it")
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    index = args.index or args.dictionary.with_name(args.dictionary.name.split(".")[0] + ".index")
    entries = read_entries(args.dictionary, index)
    corpus, queries, qrels = build(entries, args.documents, args.queries, args.seed)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(entries)} entries read: {len(corpus)} documents, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
