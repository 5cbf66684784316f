"""Build a BEIR-format retrieval set from Python's documentation: answer a question of its FAQ from the
prose of the whole documentation. Questions asked in plain words against passages of prose, the shape
of web-search question answering (MS MARCO), used to check fusion defaults that were chosen without it
(research/NOTES.md, "How the defaults were chosen").

The corpus is every section of the reStructuredText sources that Debian's ``python3-doc`` installs,
outside the library and C API references (those are API entries, the Python reference set's shape):
the FAQ, tutorial, how-tos, language reference, "What's New" and the rest, each section's text without
its heading and its markup, cut into passages of at most about 2,000 characters at paragraph breaks.
Each query is a FAQ heading that asks a question ("How do I copy a file?"); its relevant passages are
those of the section it heads, which no longer holds the question. A question whose answer is under
five words, that two sections share, or that its answer repeats verbatim is left out, so each query
has a right answer of its own. Other passages that also answer it are not judged, as in MS MARCO.

    apt-get install python3-doc
    python examples/python_faq_set.py --out /tmp/python-faq
    mimir-mcp eval --dataset /tmp/python-faq --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, cut_at_word, match_key, write_dataset

MAX_CHARS = 2_000
MIN_WORDS = 5
SKIPPED = ("library", "c-api", "includes")  # API references, and fragments other pages include

_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>_:.])\1{2,}\s*$")
_DIRECTIVE = re.compile(r"^\s*\.\.(\s|$)")  # ".. note::", ".. _label:", ".. index:: ...", a comment
_FIELD = re.compile(r"^\s*:[\w-]+:(\s|$)")  # a directive's option (":linenos:"), a page's (":tocdepth: 2")
_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")
_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPHASIS = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")


def plain(text: str) -> str:
    """One line of reStructuredText as the words a reader sees: roles, links and literals to their text."""

    def role(match: re.Match[str]) -> str:
        inner = match.group(1)
        named = re.match(r"(.*?)\s*<[^>]*>$", inner)  # :ref:`text <target>`
        return named.group(1) if named else inner.lstrip("~!")

    text = _ROLE.sub(role, text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return text.replace("`", "")


@dataclass
class Section:
    id: str
    heading: str
    paragraphs: list[str]
    faq: bool


def read_sections(sources: Path) -> list[Section]:
    """Every section of every source outside the API references, in file order, its body as plain paragraphs."""
    sections: list[Section] = []
    for path in sorted(sources.rglob("*.rst.txt")):
        relative = path.relative_to(sources)
        if relative.parts[0] in SKIPPED:
            continue
        stem = str(relative).removesuffix(".rst.txt")
        for heading, body in _split(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            paragraphs = joined(_blocks(body))
            if paragraphs:
                sections.append(Section(f"{stem}-{len(sections)}", heading, paragraphs, relative.parts[0] == "faq"))
    return sections


def _split(lines: list[str]) -> list[tuple[str, list[str]]]:
    """A page's (heading, body lines) in order; the text before the first heading has the heading ""."""
    parts: list[tuple[str, list[str]]] = [("", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and not _UNDERLINE.match(line)
            and _UNDERLINE.match(following)
            and len(following.rstrip()) >= len(line.strip())
        ):
            body = parts[-1][1]
            if body and _UNDERLINE.match(body[-1]):
                body.pop()  # the heading's overline
            parts.append((plain(line.strip()), []))
            i += 2
            continue
        parts[-1][1].append(line)
        i += 1
    return parts


def _blocks(lines: list[str]) -> list[list[str]]:
    """Paragraphs (runs of non-blank lines), markup-only lines dropped, each line as plain text."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if not line.strip():
            blocks.append([])
        elif _DIRECTIVE.match(line) or _FIELD.match(line) or _UNDERLINE.match(line):
            continue
        else:
            blocks[-1].append(plain(line.strip()))
    return [block for block in blocks if block]


def joined(blocks: list[list[str]]) -> list[str]:
    """Each block of lines as one paragraph, its whitespace runs made single spaces; empty ones dropped."""
    paragraphs = [" ".join(" ".join(block).split()) for block in blocks]
    return [paragraph for paragraph in paragraphs if paragraph]


def passages(paragraphs: list[str]) -> list[str]:
    """Paragraphs joined into passages of at most ``MAX_CHARS``; a longer paragraph is cut at a word."""
    return placed_passages(paragraphs)[0]


def placed_passages(paragraphs: list[str]) -> tuple[list[str], list[int]]:
    """``passages``, and for each paragraph the index of the passage it went into."""
    out: list[str] = []
    places: list[int] = []
    current = ""
    for paragraph in paragraphs:
        if current and len(current) + 1 + len(paragraph) > MAX_CHARS:
            out.append(current)
            current = ""
        current = f"{current} {paragraph}".strip()
        places.append(len(out))
        if len(current) > MAX_CHARS:
            out.append(cut_at_word(current, MAX_CHARS))
            current = ""
    if current:
        out.append(current)
    return out, places


def build(sections: list[Section]) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    corpus: list[Document] = []
    answers: dict[str, list[str]] = {}
    for section in sections:
        ids = []
        for n, text in enumerate(passages(section.paragraphs)):
            ids.append(f"{section.id}-{n}")
            corpus.append(Document(ids[-1], "", text))
        answers[section.id] = ids
    questions = [section for section in sections if section.faq and section.heading.endswith("?")]
    asked = Counter(match_key(section.heading) for section in questions)
    texts = {document.id: document.text for document in corpus}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for section in questions:
        key = match_key(section.heading)
        answer = " ".join(texts[id_] for id_ in answers[section.id])
        if asked[key] > 1 or len(answer.split()) < MIN_WORDS or key in match_key(answer):
            continue
        queries[f"q-{section.id}"] = section.heading
        qrels[f"q-{section.id}"] = {id_: 1 for id_ in answers[section.id]}
    return corpus, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sources",
        type=Path,
        default=Path("/usr/share/doc/python3/html/_sources"),
        help="the documentation's reStructuredText sources",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sections = read_sections(args.sources)
    corpus, queries, qrels = build(sections)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(sections)} sections read: {len(corpus)} passages, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
