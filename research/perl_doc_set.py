"""Build two BEIR-format retrieval sets from Perl's documentation (Debian's ``perl-doc``), both stores of
long passages in reading order, told apart only by their queries:

- ``--kind index``: find the passage a manual's own index entry points to (POD's ``X<...>`` codes, e.g.
  ``X<operator, precedence>``): short phrases a reader looks up, the shape of the Info index set.
- ``--kind faq``: answer a question of the Perl FAQ (``perlfaq1`` to ``perlfaq9``, "How do I ...?") from
  the documentation's prose: plain-sentence questions, the shape of the Python FAQ set.

Built after the context arm's keyword-query rule was fixed (research/NOTES.md, "Keyword
queries") to check it on collections that played no part in it.

The corpus is every POD under the folder except the release notes (``perl5*delta``, ``perldelta``) and
the tables of contents (``perltoc`` repeats every heading, ``perlfaq`` every FAQ question word for word),
file by file in order, each paragraph as plain text (formatting codes to the words a reader sees, index
codes removed), cut into passages of at most about 2,000 characters at paragraph breaks. ``index`` keeps
headings as paragraphs; each query is an index entry of two words or more, its relevant passage the one
holding the paragraph the entry sits in (an entry alone in its paragraph: the next one); an entry two
places share is left out, and at most 100 come from one POD (the glossary holds over half). ``faq``
leaves headings out (the question is not in the corpus); each query is a FAQ ``=head2`` that asks a
question, its relevant passages those of the section it heads; a question whose answer is under five
words, that two sections share, or that its answer repeats verbatim is left out. At most 500 queries,
drawn with a fixed seed.

    apt-get download perl-doc && dpkg-deb -x perl-doc_*.deb /tmp/perl-doc
    python examples/perl_doc_set.py --kind index --pod /tmp/perl-doc/usr/share/perl/5.36.0/pod --out /tmp/perl-index
    mimir-mcp eval --dataset /tmp/perl-index --methods bm25,dense,context,hybrid
"""

from __future__ import annotations

import argparse
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from python_faq_set import MIN_WORDS, placed_passages

from mimir_mcp.evaluation.beir import Document, match_key, write_dataset

MAX_QUERIES = 500
MAX_PER_POD = 100  # the glossary holds 683 of the 1,214 entries: no one POD decides the set
# release notes; the tables of contents: perltoc repeats every heading, perlfaq every FAQ question
SKIPPED = re.compile(r"perl(5\d+)?delta|perltoc|perlfaq")
_INDEX = re.compile(r"X<<+\s+(.*?)\s+>>+|X<([^<>]*)>")
_CODE = re.compile(r"[A-Z]<<+\s+(.*?)\s+>>+|[A-Z]<([^<>]*)>")
_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}
_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass
class Paragraph:
    text: str  # as a reader sees it ("" for a paragraph of index codes or directives alone)
    heading: str | None = None  # the heading it is (=head1 to =head4), if it is one
    entries: list[str] = field(default_factory=list)  # its X<> index entries


def plain(text: str) -> str:
    """POD formatting codes to their text, innermost first: ``L<text|target>`` to text, ``E<lt>`` to
    ``<``, ``X<>`` and ``Z<>`` to nothing, the rest (B, I, C, F, S) to what they hold."""
    text = _INDEX.sub("", text).replace("Z<>", "")

    def code(match: re.Match[str]) -> str:
        letter, inner = match.group(0)[0], match.group(1) if match.group(1) is not None else match.group(2)
        if letter == "E":
            return _ESCAPES.get(inner) or _character(inner)
        if letter == "L":
            return inner.split("|", 1)[0] if "|" in inner else inner.strip('"')
        return inner

    while True:
        changed = _CODE.sub(code, text)
        if changed == text:
            return " ".join(text.split())
        text = changed


def _character(number: str) -> str:
    """``E<number>``: decimal, ``0x`` hexadecimal or ``0`` octal; anything else kept as written."""
    try:
        value = int(number, 16) if number.startswith("0x") else int(number, 8 if number.startswith("0") else 10)
        return chr(value)
    except ValueError:
        return number


def read_pod(source: str) -> list[Paragraph]:
    """One POD file's paragraphs in order (``=begin``/``=end`` blocks and ``=for`` left out)."""
    out: list[Paragraph] = []
    skipping = False
    for block in re.split(r"\n[ \t]*\n", source):
        block = block.strip("\n")
        if not block.strip():
            continue
        entries = [(a or b).strip() for a, b in _INDEX.findall(block)]
        command = re.match(r"=(\w+)\s*(.*)", block, re.S) if block.startswith("=") else None
        if command and command[1] == "begin":
            skipping = True
        if skipping:
            skipping = not (command is not None and command[1] == "end")
            continue
        if command is None:
            out.append(Paragraph(plain(block), entries=entries))
        elif command[1].startswith("head"):
            out.append(Paragraph(plain(command[2]), heading=plain(command[2]), entries=entries))
        elif command[1] == "item":
            out.append(Paragraph(plain(command[2]), entries=entries))
        else:  # =over, =back, =cut, =pod, =encoding, =for: no text of their own
            out.append(Paragraph("", entries=entries))
    return out


def read_pods(folder: Path) -> dict[str, list[Paragraph]]:
    """Every POD in ``folder`` but the release notes, by name."""
    return {
        path.stem: read_pod(path.read_text(encoding="utf-8", errors="replace"))
        for path in sorted(folder.glob("*.pod"))
        if not SKIPPED.fullmatch(path.stem)
    }


def build_index(pods: dict[str, list[Paragraph]], limit: int = MAX_QUERIES, seed: int = 0):
    """Headings kept; each entry of two words or more to the passage of its paragraph (or the next)."""
    corpus: list[Document] = []
    answers: dict[str, set[str]] = defaultdict(set)
    wording: dict[str, str] = {}
    source: dict[str, str] = {}
    for name, paragraphs in pods.items():
        texts = [p.text for p in paragraphs if p.text]
        passages, places = placed_passages(texts)
        ids = [f"{name}-{n}" for n in range(len(passages))]
        corpus.extend(Document(id_, "", text) for id_, text in zip(ids, passages, strict=True))
        pending: list[str] = []
        number = 0
        for paragraph in paragraphs:
            pending.extend(paragraph.entries)
            if not paragraph.text:
                continue
            for entry in pending:
                if len(entry.split()) >= 2 and len(_WORD.findall(entry)) >= 2:
                    answers[match_key(entry)].add(ids[places[number]])
                    wording.setdefault(match_key(entry), entry)
                    source.setdefault(match_key(entry), name)
            pending.clear()
            number += 1
    eligible = sorted(key for key, found in answers.items() if len(found) == 1)
    by_pod: dict[str, list[str]] = defaultdict(list)
    for key in eligible:
        by_pod[source[key]].append(key)
    rng = random.Random(seed)
    capped = sorted(key for keys in by_pod.values() for key in rng.sample(keys, min(MAX_PER_POD, len(keys))))
    chosen = sorted(rng.sample(capped, min(limit, len(capped))))
    queries = {f"q{n}": wording[key] for n, key in enumerate(chosen)}
    qrels = {f"q{n}": {next(iter(answers[key])): 1} for n, key in enumerate(chosen)}
    return corpus, queries, qrels


def build_faq(pods: dict[str, list[Paragraph]], limit: int = MAX_QUERIES, seed: int = 0):
    """Headings left out; each FAQ question to the passages of the section it heads."""
    corpus: list[Document] = []
    sections: list[tuple[str, str, list[str]]] = []  # (pod, heading, section's passage ids)
    for name, paragraphs in pods.items():
        parts: list[tuple[str, list[str]]] = [("", [])]
        for paragraph in paragraphs:
            if paragraph.heading is not None:
                parts.append((paragraph.heading, []))
            elif paragraph.text:
                parts[-1][1].append(paragraph.text)
        for heading, texts in parts:
            passages = placed_passages(texts)[0]
            ids = [f"{name}-{len(sections)}-{n}" for n in range(len(passages))]
            corpus.extend(Document(id_, "", text) for id_, text in zip(ids, passages, strict=True))
            sections.append((name, heading, ids))
    texts = {document.id: document.text for document in corpus}
    questions = [s for s in sections if re.fullmatch(r"perlfaq\d", s[0]) and s[1].endswith("?") and s[2]]
    asked: dict[str, int] = defaultdict(int)
    for _, heading, _ in questions:
        asked[match_key(heading)] += 1
    eligible = []
    for _, heading, ids in questions:
        answer = " ".join(texts[id_] for id_ in ids)
        if (
            asked[match_key(heading)] == 1
            and len(answer.split()) >= MIN_WORDS
            and match_key(heading) not in match_key(answer)
        ):
            eligible.append((heading, ids))
    chosen = sorted(random.Random(seed).sample(range(len(eligible)), min(limit, len(eligible))))
    queries = {f"q{n}": eligible[i][0] for n, i in enumerate(chosen)}
    qrels = {f"q{n}": {id_: 1 for id_ in eligible[i][1]} for n, i in enumerate(chosen)}
    return corpus, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("index", "faq"), required=True)
    parser.add_argument("--pod", type=Path, default=Path("/usr/share/perl/5.36.0/pod"), help="perl-doc's POD folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=MAX_QUERIES)
    args = parser.parse_args()
    pods = read_pods(args.pod)
    corpus, queries, qrels = (build_index if args.kind == "index" else build_faq)(pods, args.queries)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{len(pods)} PODs read: {len(corpus)} passages, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
