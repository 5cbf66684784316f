"""Build a BEIR-format retrieval set from the GNU manuals a system installs as Info files: find the
passage a manual's own index points to. Short phrases a reader looks up ("exit status", "context
lines, changing") against passages of technical prose stored in reading order: a back-of-book index,
written by each manual's authors, used to check fusion defaults that were chosen without it
(research/NOTES.md, "How the defaults were chosen").

The corpus is every node of every manual (``coreutils``, ``sed``, ``grep``, ``gettext``, ``wget`` and
the rest under /usr/share/info; Python's own manual left out: the Python sets come from it), index
nodes left out, each node's text without its menus and heading underlines, cut into passages of at
most about 2,000 characters at paragraph breaks, manual by manual in reading order. Each query is an
index entry of two words or more (an option or a name alone is left out); its relevant passage is the one
holding the line the entry points to. An entry that two places share (in one manual or two) is left
out, so each query has a right answer of its own. At most 500 queries, drawn with a fixed seed.

    python examples/info_index_set.py --out /tmp/info-index
    mimir-mcp eval --dataset /tmp/info-index --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from debian_faq_set import read_text
from python_faq_set import placed_passages

from mimir_mcp.evaluation.beir import Document, match_key, write_dataset

MAX_QUERIES = 500
SKIPPED = ("python",)  # Python's manual: the Python reference and FAQ sets come from it
_HEADER = re.compile(r"^File: (?P<file>[^,]+?)\.info,\s+Node: (?P<node>[^,\t]+)")
_ENTRY = re.compile(r"^\* (?P<entry>.+?):\s+(?P<node>.+?)\.\s+\(line\s+(?P<line>\d+)\)\s*$")
_UNDERLINE = re.compile(r"^\s*([=*\-.])\1{2,}\s*$")
_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass
class Node:
    manual: str
    name: str
    lines: list[str]  # lines[n] is the node's line n as an index counts it (1: the "File:" header)


def read_nodes(text: str) -> list[Node]:
    """Every node of one Info file (a split manual's parts are read one by one)."""
    nodes = []
    for chunk in text.split("\x1f"):
        lines = chunk.split("\n")
        header = _HEADER.match(lines[1]) if len(lines) > 1 else None
        if header:
            nodes.append(Node(header["file"], header["node"].strip(), lines))
    return nodes


def index_entries(node: Node) -> list[tuple[str, str, int]]:
    """The node's index entries (entry, target node, line), an entry wrapped onto two lines joined."""
    body = re.sub(r"\n\s+\(line", " (line", "\n".join(node.lines))
    found = []
    for line in body.split("\n"):
        entry = _ENTRY.match(line)
        if entry:
            text = re.sub(r"\s*<\d+>$", "", entry["entry"]).strip()
            found.append((text, entry["node"].strip(), int(entry["line"])))
    return found


def paragraphs(node: Node) -> tuple[list[str], list[int]]:
    """The node's paragraphs as plain text, and for each of its lines the paragraph it belongs to (a blank
    line or a dropped one: the next paragraph). Menus (``* Menu:`` and ``* entry::`` lines) and heading
    underlines are left out."""
    texts: list[str] = []
    owner: list[int] = []
    block: list[str] = []
    pending: list[int] = []

    def close() -> None:
        if block and not block[0].startswith("* "):
            texts.append(" ".join(" ".join(block).split()))
        block.clear()

    for number, line in enumerate(node.lines):
        if number < 2 or not line.strip() or _UNDERLINE.match(line):
            close()
            pending.append(number)
            continue
        if not block:
            owner.extend([len(texts)] * len(pending))
            pending.clear()
        block.append(line.strip())
        owner.append(len(texts))
    close()
    last = max(len(texts) - 1, 0)  # lines after the last paragraph (or in a menu that ends the node)
    return texts, [min(paragraph, last) for paragraph in owner] + [last] * len(pending)


def build(nodes: list[Node], limit: int = MAX_QUERIES, seed: int = 0):
    """The corpus (every passage of every non-index node, in order), the queries and their judgements."""
    corpus: list[Document] = []
    located: dict[tuple[str, str], tuple[list[str], list[int]]] = {}  # (manual, node) -> ids, line -> passage
    entries: list[tuple[str, str, str, int]] = []
    for number, node in enumerate(nodes):
        found = index_entries(node)
        if found:
            entries.extend((entry, node.manual, target, line) for entry, target, line in found)
            continue
        texts, owner = paragraphs(node)
        passages, places = placed_passages(texts)
        ids = [f"{node.manual}-{number}-{n}" for n in range(len(passages))]
        corpus.extend(Document(id_, "", text) for id_, text in zip(ids, passages, strict=True))
        if ids:
            located[(node.manual, node.name)] = (ids, [places[paragraph] for paragraph in owner])
    answers: dict[str, set[str]] = defaultdict(set)
    wording: dict[str, str] = {}
    for entry, manual, target, line in entries:
        if (manual, target) not in located or len(entry.split()) < 2 or len(_WORD.findall(entry)) < 2:
            continue
        ids, passage_of_line = located[(manual, target)]
        key = match_key(entry)
        answers[key].add(ids[passage_of_line[min(line, len(passage_of_line) - 1)]])
        wording.setdefault(key, entry)
    eligible = sorted(key for key, found in answers.items() if len(found) == 1)
    chosen = sorted(random.Random(seed).sample(eligible, min(limit, len(eligible))))
    queries = {f"q{n}": wording[key] for n, key in enumerate(chosen)}
    qrels = {f"q{n}": {next(iter(answers[key])): 1} for n, key in enumerate(chosen)}
    return corpus, queries, qrels


def read_manuals(folder: Path) -> list[Node]:
    """Every node of every Info manual in ``folder`` (gzipped or not), manual by manual, parts in order."""

    def part(path: Path) -> tuple[str, int]:
        name = path.name.removesuffix(".gz")
        stem, _, number = name.partition(".info")
        return stem, int(number.lstrip("-") or 0)

    files = [path for path in folder.iterdir() if re.search(r"\.info(-\d+)?(\.gz)?$", path.name)]
    nodes = []
    for path in sorted(files, key=part):
        if part(path)[0].startswith(SKIPPED):
            continue
        nodes.extend(read_nodes(read_text(path)))
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--info", type=Path, default=Path("/usr/share/info"), help="the Info manuals' folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=MAX_QUERIES)
    args = parser.parse_args()
    nodes = read_manuals(args.info)
    corpus, queries, qrels = build(nodes, args.queries)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(nodes)} nodes read: {len(corpus)} passages, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
