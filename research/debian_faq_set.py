"""Build a BEIR-format retrieval set from Debian's own manuals: answer a question of the Debian FAQ from
the FAQ and the Debian Reference together, stored in reading order. The same shape as
``python_faq_set.py`` (plain questions against passages of prose stored in order) from another source,
so that leaving one collection out has two of that shape (research/NOTES.md, "How the defaults
were chosen").

The corpus is every section of the plain-text FAQ and Debian Reference that the ``debian-faq`` and
``debian-reference-en`` packages install (title pages and tables of contents left out), each section's
text without its numbered heading, cut into passages of at most about 2,000 characters at paragraph
breaks. Each query is a FAQ heading that asks a question ("How do I install a package?"); its relevant
passages are those of the section it heads. Left out as in ``python_faq_set.py``: an answer under five
words, a question two sections share, a question its answer repeats.

    apt-get install debian-faq debian-reference-en
    python examples/debian_faq_set.py --out /tmp/debian-faq
    mimir-mcp eval --dataset /tmp/debian-faq --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

from python_faq_set import Section, build, joined

from mimir_mcp.evaluation.beir import write_dataset

_HEADING = re.compile(r"^(?:\d+(?:\.\d+)+\.|Chapter \d+\.|Appendix [A-Z]\.)\s+(\S.*)$")


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8", errors="replace")


def read_sections(text: str, name: str, faq: bool, first: int) -> list[Section]:
    """The numbered sections of one manual in order (what comes before its first chapter is left out);
    a heading goes on over the lines after it that are not indented, the body is indented."""
    lines = text.replace("\xa0", " ").splitlines()
    sections: list[Section] = []
    heading: str | None = None
    blocks: list[list[str]] = [[]]

    def close() -> None:
        paragraphs = joined(blocks)
        if heading is not None and paragraphs:
            sections.append(Section(f"{name}-{first + len(sections)}", heading, paragraphs, faq))

    i = 0
    while i < len(lines):
        match = _HEADING.match(lines[i])
        if match:
            close()
            parts = [match.group(1).strip()]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i][0].isspace():
                parts.append(lines[i].strip())
                i += 1
            heading, blocks = " ".join(parts), [[]]
            continue
        if not lines[i].strip():
            blocks.append([])
        else:
            blocks[-1].append(lines[i].strip())
        i += 1
    close()
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faq", type=Path, default=Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"))
    parser.add_argument(
        "--reference", type=Path, default=Path("/usr/share/debian-reference/debian-reference.en.txt.gz")
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sections = read_sections(read_text(args.faq), "faq", True, 0)
    sections += read_sections(read_text(args.reference), "reference", False, len(sections))
    corpus, queries, qrels = build(sections)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(sections)} sections read: {len(corpus)} passages, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
