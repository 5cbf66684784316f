"""Build a BEIR-format retrieval set from Debian's package descriptions: find a package by its
one-line synopsis. A collection unlike SciFact and WordNet, used to check fusion defaults that were
chosen without it (research/NOTES.md, "How the defaults were chosen").

Each document is a package, titled by its name, with its long description as text; each query is a
package's synopsis (``git``: "fast, scalable, distributed revision control system"). Packages whose
long description repeats another's (``0ad`` and ``0ad-data``) are kept once, so that each query has
one right answer. The descriptions are Debian's ``Translation-en`` file:

    curl -O http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.xz
    python examples/debian_packages_set.py --translations Translation-en.xz --out /tmp/debian
    mimir-mcp eval --dataset /tmp/debian --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import lzma
import random
from pathlib import Path

from mimir_mcp.evaluation.beir import Document, write_dataset


def read_packages(path: Path) -> list[tuple[str, str, str]]:
    """``(name, synopsis, long description)`` of every package, in file order."""
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        stanzas = fh.read().split("\n\n")
    packages = []
    for stanza in stanzas:
        name, synopsis, body = None, None, []
        for line in stanza.splitlines():
            if line.startswith("Package: "):
                name = line.removeprefix("Package: ").strip()
            elif line.startswith("Description-en: "):
                synopsis = line.removeprefix("Description-en: ").strip()
            elif line.startswith(" ") and synopsis is not None:
                body.append("" if line.strip() == "." else line.strip())
        text = " ".join(part for part in body if part)
        if name and synopsis and text:
            packages.append((name, synopsis, text))
    return packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--translations", type=Path, required=True, help="Debian's Translation-en(.xz)")
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    seen: set[str] = set()
    unique = []
    for name, synopsis, text in read_packages(args.translations):
        if text not in seen:
            seen.add(text)
            unique.append((name, synopsis, text))
    rng = random.Random(args.seed)
    documents = rng.sample(unique, min(args.documents, len(unique)))
    queries = rng.sample(documents, min(args.queries, len(documents)))

    write_dataset(
        args.out,
        [Document(name, name, text) for name, _, text in documents],
        {f"q-{name}": synopsis for name, synopsis, _ in queries},
        {f"q-{name}": {name: 1} for name, _, _ in queries},
    )
    print(f"{len(documents)} packages, {len(queries)} queries -> {args.out}")


if __name__ == "__main__":
    main()
