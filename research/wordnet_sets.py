"""Build BEIR-format retrieval sets from Princeton WordNet 3.0, for checking fusion on collections
other than SciFact (research/NOTES.md, "How the defaults were chosen").

WordNet comes from Debian's ``wordnet-base`` package (``apt-get install wordnet-base``, or
``apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn`` without root, then
``--wordnet wn/usr/share/wordnet``). Two tasks:

- ``reverse`` (a reverse dictionary, shaped like entity search): each document is a term, titled by
  its synonyms, with the sentences WordNet gives as examples of its use; each query is a definition.
  The definition's words rarely occur in the examples, so BM25 is the weak arm.
- ``senses`` (word senses): each document is one sense of a word (titled by its synonyms, the
  definition as text); each query is an example sentence, which must find its own sense among every
  sense of its words. Both arms carry signal.

    python examples/wordnet_sets.py --task reverse --out /tmp/wn/reverse
    python examples/wordnet_sets.py --task senses --out /tmp/wn/senses
    python examples/wordnet_sets.py --task reverse --pos va --seed 1 --out /tmp/wn/reverse-va
    mimir-mcp eval --dataset /tmp/wn/reverse --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, write_dataset

PARTS_OF_SPEECH = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
Synset = tuple[list[str], str, list[str]]  # synonyms, definition, examples


def read_synsets(wordnet: Path) -> dict[str, Synset]:
    """Every synset of the ``data.*`` files, keyed by part of speech and offset (``n00002684``)."""
    synsets: dict[str, Synset] = {}
    for name, pos in PARTS_OF_SPEECH.items():
        for line in (wordnet / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            count = int(fields[3], 16)
            words = [re.sub(r"\((a|p|ip)\)$", "", fields[4 + 2 * i].replace("_", " ")) for i in range(count)]
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = re.sub(r';?\s*"[^"]*"', "", gloss).strip().rstrip(";").strip()
            synsets[f"{pos}{fields[0]}"] = (words, definition, examples)
    return synsets


def build(
    synsets: dict[str, Synset], task: str, queries: int, pos: str, seed: int
) -> tuple[list[Document], dict[str, str], dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    with_examples = sorted(key for key, (_, definition, examples) in synsets.items() if examples and definition)
    if task == "senses":
        senses_of: dict[str, set[str]] = {}
        for key, (words, _, _) in synsets.items():
            for word in words:
                senses_of.setdefault(word.lower(), set()).add(key)
        # ambiguous words only: the example must pick one sense among several
        candidates = [key for key in with_examples if len(senses_of[synsets[key][0][0].lower()]) >= 2]
        picked = rng.sample(candidates, queries)
        documents: set[str] = set()
        for key in picked:
            for word in synsets[key][0]:
                documents |= senses_of[word.lower()]
        corpus = [Document(key, ", ".join(synsets[key][0]), synsets[key][1]) for key in sorted(documents)]
        query_rows = {f"q{key}": rng.choice(synsets[key][2]) for key in picked}
    else:
        terms = [key for key in with_examples if key[0] in pos]
        corpus = [Document(key, ", ".join(synsets[key][0]), " ".join(synsets[key][2])) for key in terms]
        picked = rng.sample(terms, queries)
        query_rows = {f"q{key}": synsets[key][1] for key in picked}
    return corpus, query_rows, {f"q{key}": {key: 1} for key in picked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="WordNet 3.0 dict folder")
    parser.add_argument("--task", choices=["reverse", "senses"], required=True)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--pos", default="n", help="reverse: parts of speech of the terms (n, v, a, r)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    corpus, queries, qrels = build(read_synsets(args.wordnet), args.task, args.queries, args.pos, args.seed)
    write_dataset(args.out, corpus, queries, qrels)
    print(f"{args.task}: {len(corpus)} documents, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
