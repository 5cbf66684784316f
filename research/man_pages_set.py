"""Build a BEIR-format retrieval set from manual pages: find a page by the one-line summary of its
NAME section. A collection of technical reference text, used to check fusion defaults that were
chosen without it (research/NOTES.md, "How the defaults were chosen").

Each document is a page, titled by the names its NAME line lists and its section (``cp (1)``), with
its DESCRIPTION section as text (cut to about 2,000 characters); each query is the summary the NAME
line gives ("copy files and directories"), which the document no longer holds. A query is dropped
when its text occurs verbatim in its document, when it is shorter than three words, when it is
help2man's placeholder ("manual page for ...") or when two pages share it, so that each query has
one right answer; documents with the same text are kept once. Pages are read from their roff
source (``man(7)`` macros; ``mdoc`` pages and ``.so`` aliases are skipped), so the set does not
depend on the installed groff. The pages are those installed under ``/usr/share/man``
(``apt-get install manpages manpages-dev`` adds the Linux man-pages project's):

    python examples/man_pages_set.py --out /tmp/man-pages
    mimir-mcp eval --dataset /tmp/man-pages --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import random
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, cut_at_word, match_key, write_dataset

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")
MAX_CHARS = 2_000
MIN_WORDS = 5  # a DESCRIPTION shorter than this says too little to be found by

# Named glyphs that carry meaning in plain text; the rest (rules, boxes) are dropped.
GLYPHS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "oq": "'",
    "cq": "'",
    "lq": '"',
    "rq": '"',
    "dq": '"',
    "bu": "•",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "ga": "`",
    "aa": "'",
    ">=": "≥",
    "<=": "≤",
    "!=": "≠",
    "->": "→",
    "<-": "←",
    "mu": "×",
    "de": "°",
    "sl": "/",
    "ba": "|",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "la": "⟨",
    "ra": "⟩",
    "pl": "+",
    "eq": "=",
    "fo": "«",
    "fc": "»",
    "Fo": "«",
    "Fc": "»",
    "sq": "□",
    "ul": "_",
    "at": "@",
    "sh": "#",
}
# pod2man's strings for quotes; other strings (version numbers, dates) are dropped.
STRINGS = {'L"': '"', 'R"': '"', "C`": '"', "C'": '"', "lq": '"', "rq": '"', "Aq": "'"}

_ESCAPE = re.compile(
    r"""\\(?:
      f(?:\[[^\]]*\]|\(..|.)               # font change
    | s[+-]?(?:\(\d\d|\[\d+\]|\d)           # size change
    | [nk*](?:\[([^\]]*)\]|\((..)|(.))      # register, string
    | \((..)                                # glyph \(xx
    | \[([^\]]*)\]                          # glyph \[name] or \[u00E9]
    | [hvwlLoXbDxSRZ]'[^']*'                # motions, widths, device controls
    | N'(\d+)'                              # glyph by number
    | (.)                                   # one-character escapes
    )""",
    re.VERBOSE,
)
_ONE_CHAR = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": " ", "'": "'", "`": "`", ".": "."}
_SKIPPED_MACROS = re.compile(r"^\.\s*(TS|EQ|de|ig)\b")
_BLOCK_END = {"TS": ".TE", "EQ": ".EN", "de": "..", "ig": ".."}


def _escape(match: re.Match[str]) -> str:
    string = match.group(1) or match.group(2) or match.group(3)
    if string is not None:
        return STRINGS.get(string, "") if match.group(0)[1] == "*" else ""
    glyph = match.group(4) or match.group(5)
    if glyph is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", glyph):
            return chr(int(glyph[1:], 16))
        return GLYPHS.get(glyph, "")
    if match.group(6) is not None:
        return chr(int(match.group(6)))
    if match.group(7) is not None:
        return _ONE_CHAR.get(match.group(7), "")
    return ""


def plain(roff: str) -> str:
    """A line of roff text with its escapes replaced by the characters they print (or nothing)."""
    roff = re.sub(r'\\".*', "", roff)  # inline comment
    return _ESCAPE.sub(_escape, roff)


def _arguments(rest: str) -> list[str]:
    try:
        return shlex.split(rest.replace("\\", "\\\\"), posix=True)
    except ValueError:
        return rest.split()


def _macro_text(name: str, rest: str) -> str | None:
    """What a macro line prints as running text; None for layout macros that print nothing."""
    if name in {"B", "I", "SM", "SB", "SS"}:
        return " ".join(_arguments(rest))
    if name in {"BR", "BI", "IB", "IR", "RB", "RI"}:
        return "".join(_arguments(rest))
    if name in {"IP", "TP", "HP"} and rest.strip():
        arguments = _arguments(rest)
        return arguments[0] if arguments else None
    return None


@dataclass(frozen=True)
class Page:
    id: str  # file name without compression suffix: ``cp.1``
    section: str
    names: str
    summary: str
    description: str


def read_page(path: Path) -> Page | None:
    """The NAME line and DESCRIPTION text of a ``man(7)`` page; None for aliases, mdoc pages and
    pages that lack either (or whose DESCRIPTION has under five words)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        source = raw.decode("latin-1")
    lines = source.replace("\\\n", "").splitlines()
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    pending_header = False
    block_end: str | None = None
    for line in lines:
        if block_end is not None:
            if line.strip().startswith(block_end):
                block_end = None
            continue
        if line.startswith(('.\\"', "'\\\"")) or line.strip() in {".", "'"}:
            continue
        if line.startswith(".so ") and not sections:
            return None
        if line.startswith((".Dd", ".Sh")):
            return None  # mdoc: a different macro set
        skipped = _SKIPPED_MACROS.match(line)
        if skipped:
            block_end = _BLOCK_END[skipped.group(1)]
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name == "SH":
                heading = " ".join(_arguments(plain(rest))).strip().upper()
                if heading:
                    current = sections.setdefault(heading, [])
                else:
                    pending_header = True
                continue
            text = _macro_text(name, rest)
            if text is None or current is None:
                continue
            line = text
        elif pending_header:
            current = sections.setdefault(plain(line).strip().strip('"').upper(), [])
            pending_header = False
            continue
        if current is not None:
            current.append(plain(line))
    name_line = " ".join(" ".join(sections.get("NAME", [])).split())
    names, separator, summary = name_line.partition(" - ")
    if not separator:
        names, separator, summary = name_line.partition(" — ")
    description = " ".join(" ".join(sections.get("DESCRIPTION", [])).split())
    if not (separator and names.strip() and summary.strip()) or len(description.split()) < MIN_WORDS:
        return None
    file_name = path.name.removesuffix(".gz")
    section = file_name.rpartition(".")[2]
    return Page(file_name, section, names.strip(), summary.strip(), description)


def usable_query(page: Page) -> bool:
    """A summary that asks for something and does not occur verbatim in the page's own text."""
    summary = match_key(page.summary)
    return (
        len(summary.split()) >= 3
        and not summary.startswith("manual page for")
        and summary not in match_key(cut_at_word(page.description, MAX_CHARS))
    )


def build(
    pages: list[Page], documents: int, queries: int, seed: int
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    seen: set[str] = set()
    unique = []
    for page in sorted(pages, key=lambda page: page.id):
        if page.description not in seen:
            seen.add(page.description)
            unique.append(page)
    rng = random.Random(seed)
    picked = rng.sample(unique, min(documents, len(unique)))
    summaries: dict[str, int] = {}
    for page in unique:
        summaries[match_key(page.summary)] = summaries.get(match_key(page.summary), 0) + 1
    askable = [page for page in picked if usable_query(page) and summaries[match_key(page.summary)] == 1]
    asked = rng.sample(askable, min(queries, len(askable)))
    corpus = [
        Document(page.id, f"{page.names} ({page.section})", cut_at_word(page.description, MAX_CHARS)) for page in picked
    ]
    return (
        corpus,
        {f"q-{page.id}": page.summary for page in asked},
        {f"q-{page.id}": {page.id: 1} for page in asked},
    )


def find_pages(man_root: Path, sections: str, skip: list[str]) -> list[Path]:
    """Page files (not links) of the sections, less those whose file name matches a ``skip`` glob."""
    paths = []
    for section in sections.split(","):
        folder = man_root / f"man{section}"
        if folder.is_dir():
            paths += [path for path in folder.iterdir() if path.is_file() and not path.is_symlink()]
    return sorted(path for path in paths if not any(fnmatch.fnmatchcase(path.name, pattern) for pattern in skip))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--man", type=Path, default=Path("/usr/share/man"), help="folder holding man1, man2, ...")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, e.g. 1,8")
    parser.add_argument(
        "--skip",
        action="append",
        default=None,
        help="file-name glob of pages to leave out (repeatable); default gcloud*: the Google Cloud CLI's "
        "16,000 generated pages are near-copies of each other and would fill the set",
    )
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    skip = args.skip if args.skip is not None else ["gcloud*"]
    pages = [page for path in find_pages(args.man, args.sections, skip) if (page := read_page(path))]
    corpus, queries, qrels = build(pages, args.documents, args.queries, args.seed)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(pages)} pages read: {len(corpus)} documents, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
