"""Build a conversation stored in chunks from a BEIR folder of turns: each memory a window of ``--turns``
consecutive turns of one session, one line each, as an agent that saves a transcript piece by piece
keeps it. A question is relevant to the windows that hold its judged turns. The conversations of
``../shared`` are stored a turn a memory; this is the other way agents store them, and the shape where
the hybrid fell furthest below its better arm (research/NOTES.md, "A conversation stored in chunks").

A turn's session is its id up to ``--session-separator`` (LoCoMo's pooled ids: ``26-D3:7`` is turn 7 of
conversation 26's session 3); windows never span two sessions and keep the corpus order.

    python research/conversation_windows_set.py --dataset ../shared/datasets/locomo-dev --turns 5 \\
        --out /tmp/sets/locomo-w5
    mimir-mcp eval --dataset /tmp/sets/locomo-w5 --group-by-prefix - --methods bm25,dense,context,hybrid
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mimir_mcp.evaluation.beir import Dataset, Document, load_dataset, write_dataset


def windows(dataset: Dataset, turns: int, separator: str) -> tuple[list[Document], dict[str, str]]:
    """The windows, in corpus order, and the window of each turn: ``<session>w<k>``."""
    sessions: dict[str, list[Document]] = {}
    for document in dataset.corpus.values():
        sessions.setdefault(document.id.split(separator, 1)[0], []).append(document)
    built: list[Document] = []
    owner: dict[str, str] = {}
    for session, said in sessions.items():
        for start in range(0, len(said), turns):
            window = said[start : start + turns]
            window_id = f"{session}w{start // turns}"
            built.append(Document(window_id, "", "\n".join(turn.memory_text for turn in window)))
            owner.update((turn.id, window_id) for turn in window)
    return built, owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="a BEIR folder of turns")
    parser.add_argument("--turns", type=int, default=5, help="turns a memory")
    parser.add_argument("--session-separator", default=":", help="a turn's id up to this names its session")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    built, owner = windows(dataset, args.turns, args.session_separator)
    qrels: dict[str, dict[str, int]] = {}
    for query_id, judged in dataset.qrels.items():
        for turn_id, grade in judged.items():
            if turn_id in owner:  # a judged turn missing from the corpus (LoCoMo has one) judges nothing
                window = qrels.setdefault(query_id, {})
                window[owner[turn_id]] = max(grade, window.get(owner[turn_id], 0))
    queries = {query_id: dataset.queries[query_id] for query_id in qrels if query_id in dataset.queries}
    write_dataset(args.out, built, queries, {query_id: qrels[query_id] for query_id in queries})
    print(f"{len(built)} windows of up to {args.turns} turns, {len(queries)} questions -> {args.out}")


if __name__ == "__main__":
    main()
