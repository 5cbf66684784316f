"""Build a BEIR-format retrieval set from the Python library reference: find a function, class,
method or attribute by the first sentence of its documentation. A collection of API documentation,
used to check fusion defaults that were chosen without it (research/NOTES.md, "How the defaults were chosen").

Each document is one documented object, titled by its qualified name and parameters
(``shutil.copyfile(src, dst, *, follow_symlinks=True)``), with the rest of its description as text
(cut to about 2,000 characters); each query is the description's first sentence ("Copy the
contents (no metadata) of the file named src to a file named dst and return dst in the most
efficient way possible."), which the document no longer holds. Objects whose description is a
single sentence (the document would be a bare signature), or whose rest another object's repeats
("Availability: Unix."), are left out, and so are queries that two objects share ("Return a copy of
the string.") or that occur verbatim in their own document, so that each query has one right
answer. The reference is the HTML that Debian's ``python3-doc`` installs:

    apt-get install python3-doc
    python examples/python_reference_set.py --out /tmp/python-reference
    mimir-mcp eval --dataset /tmp/python-reference --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, cut_at_word, match_key, write_dataset

MAX_CHARS = 2_000
MIN_WORDS = 5  # of the text left once the first sentence is taken out
_BLOCKS = {"p", "li", "pre", "dt", "dd", "div", "table", "tr", "h1", "h2", "h3", "h4", "br"}
_BREAK = "\x00"  # between blocks; a newline in the HTML source is only a space
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


@dataclass
class Entry:
    id: str
    kind: str  # function, class, method, attribute, data, exception
    signature: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    in_signature: bool = False


class _ReferenceParser(HTMLParser):
    """Collects every ``<dl class="py ...">`` entry: the text of its first ``<dt>`` and of its ``<dd>``,
    less the entries nested inside it (a class's methods are entries of their own)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.entries: list[Entry] = []
        self.stack: list[tuple[str, Entry | None]] = []  # open dl/dt/dd tags, with the entry they feed
        self.skip_depth = 0  # inside a permalink anchor

    def _entry(self) -> Entry | None:
        for _, entry in reversed(self.stack):
            if entry is not None:
                return entry
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "a" and "headerlink" in classes:
            self.skip_depth += 1
            return
        if tag == "dl":
            if "py" in classes and len(classes) == 2:
                self.stack.append(("dl", Entry(id="", kind=classes[1])))
            else:
                self.stack.append(("dl", None))
            return
        entry = self._entry()
        if tag == "dt" and self.stack and self.stack[-1][0] == "dl" and self.stack[-1][1] is not None:
            entry = self.stack[-1][1]
            first = not entry.id and not entry.signature
            if first and attributes.get("id"):
                entry.id = attributes["id"] or ""
            entry.in_signature = first
            self.stack.append(("dt", None))
            return
        if tag in _BLOCKS and entry is not None and not entry.in_signature:
            entry.description.append(_BREAK)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "dt" and self.stack and self.stack[-1][0] == "dt":
            self.stack.pop()
            entry = self._entry()
            if entry is not None:
                entry.in_signature = False
            return
        if tag == "dl" and self.stack:
            _, entry = self.stack.pop()
            if entry is not None:
                self.entries.append(entry)
            return
        entry = self._entry()
        if tag in _BLOCKS and entry is not None and not entry.in_signature:
            entry.description.append(_BREAK)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        entry = self._entry()
        if entry is None:
            return
        (entry.signature if entry.in_signature else entry.description).append(data)


@dataclass(frozen=True)
class Reference:
    id: str
    signature: str
    summary: str
    rest: str


def _split(description: str) -> tuple[str, str]:
    """The first sentence of the first paragraph, and everything after it."""
    paragraphs = [" ".join(block.split()) for block in description.split(_BREAK)]
    paragraphs = [paragraph for paragraph in paragraphs if paragraph]
    if not paragraphs:
        return "", ""
    summary = _SENTENCE_END.split(paragraphs[0], maxsplit=1)[0]
    rest = paragraphs[0][len(summary) :].strip()
    return summary, " ".join(part for part in [rest, *paragraphs[1:]] if part)


def _title(entry: Entry, signature: str) -> str:
    """The qualified name with the signature's parameters: a method's ``<dt>`` names only the method."""
    parameters = signature[signature.index("(") :] if "(" in signature else ""
    kind = f"{entry.kind} " if entry.kind in {"class", "exception"} else ""
    return f"{kind}{entry.id}{parameters}"


def read_reference(html: Path) -> list[Reference]:
    """Every documented object of the ``*.html`` pages under ``html``, first page first."""
    references: list[Reference] = []
    seen: set[str] = set()
    for page in sorted(html.glob("*.html")):
        parser = _ReferenceParser()
        parser.feed(page.read_text(encoding="utf-8"))
        parser.close()
        for entry in parser.entries:
            if not entry.id or entry.id in seen:
                continue
            seen.add(entry.id)
            summary, rest = _split("".join(entry.description))
            signature = " ".join("".join(entry.signature).split())
            if summary and signature:
                references.append(Reference(entry.id, _title(entry, signature), summary, rest))
    return references


def build(
    references: list[Reference], documents: int, queries: int, seed: int
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    rests = Counter(reference.rest for reference in references)
    # a rest that several objects share is boilerplate ("Availability: Unix."), which only the title tells apart
    kept = [
        reference for reference in references if len(reference.rest.split()) >= MIN_WORDS and rests[reference.rest] == 1
    ]
    summaries: dict[str, int] = {}
    for reference in kept:
        summaries[match_key(reference.summary)] = summaries.get(match_key(reference.summary), 0) + 1
    rng = random.Random(seed)
    picked = rng.sample(kept, min(documents, len(kept)))
    askable = [
        reference
        for reference in picked
        if summaries[match_key(reference.summary)] == 1
        and len(match_key(reference.summary).split()) >= 5
        and match_key(reference.summary) not in match_key(cut_at_word(reference.rest, MAX_CHARS))
    ]
    asked = rng.sample(askable, min(queries, len(askable)))
    corpus = [
        Document(reference.id, reference.signature, cut_at_word(reference.rest, MAX_CHARS)) for reference in picked
    ]
    return (
        corpus,
        {f"q-{reference.id}": reference.summary for reference in asked},
        {f"q-{reference.id}": {reference.id: 1} for reference in asked},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--html", type=Path, default=Path("/usr/share/doc/python3/html/library"), help="the library reference"
    )
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    references = read_reference(args.html)
    corpus, queries, qrels = build(references, args.documents, args.queries, args.seed)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(references)} objects read: {len(corpus)} documents, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
