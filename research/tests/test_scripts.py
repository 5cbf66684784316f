"""The lab's scripts in research/: the weak-arm and leave-one-out tables, the tail's calibration and the
WordNet and Debian package set builders, each run on tiny inputs through the product's own code."""

import json
import math
import sys
from pathlib import Path

import pytest

from mimir_mcp.evaluation.beir import load_dataset
from tests.conftest import run_cli
from tests.evaluation.conftest import TOPICS

EXAMPLES = Path(__file__).resolve().parents[1]


def test_weak_arm_example_reproduces_the_eval_figures(tiny_beir, tmp_path, cross_encoder_path):
    """The README's weak-arm tables come from research/weak_arm_fusion.py; its full-query BM25 column is
    the same search as `eval --methods bm25` on the same index."""
    index = tmp_path / "index"
    out = tmp_path / "bm25.json"
    args = ["-m", "mimir_mcp", "eval", "--dataset", str(tiny_beir), "--methods", "bm25"]
    made = run_cli([*args, "--data-dir", str(index), "--json", str(out)], tmp_path, cross_encoder_path)
    assert made.returncode == 0, made.stderr[-2000:]
    script = EXAMPLES / "weak_arm_fusion.py"
    example = ["--dataset", str(tiny_beir), "--data-dir", str(index), "--split", "test"]
    result = run_cli([str(script), *example], tmp_path, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| nDCG@10, tiny-beir") and len(rows) == 8
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names[0] == "full queries" and names[1] == "BM25 sees 3 words" and names[-1] == "dense sees 1 word"
    figures = {name: [float(cell) for cell in row.split("|")[2:-1]] for name, row in zip(names, rows[1:], strict=True)}
    assert all(len(values) == 8 and all(0 <= v <= 1 for v in values) for values in figures.values())
    assert figures["full queries"][1] == pytest.approx(
        json.loads(out.read_text())["methods"]["bm25"]["ndcg@10"], abs=1e-3
    )


@pytest.fixture(scope="module")
def loo_run(tiny_beir, tmp_path_factory, cross_encoder_path) -> tuple[Path, list[str], str]:
    """research/fusion_loo.py run once on two copies of the tiny set: its cache, the collections, its output."""
    folder = tmp_path_factory.mktemp("loo")
    collections = [f"first={tiny_beir}", f"second={tiny_beir}"]
    args = [str(EXAMPLES / "fusion_loo.py"), "--cache", str(folder / "cache"), *collections]
    result = run_cli(args, folder, cross_encoder_path)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "cache", collections, result.stdout


def test_leave_one_out_example_measures_the_arms_as_eval_does(tiny_beir, tmp_path, cross_encoder_path, loo_run):
    """research/fusion_loo.py makes the README's leave-one-collection-out table from the project's own
    index, bi-encoder and fusion functions: its arms score what `eval` scores on the same collection."""
    out = tmp_path / "arms.json"
    args = ["-m", "mimir_mcp", "eval", "--dataset", str(tiny_beir), "--methods", "bm25,dense", "--json", str(out)]
    made = run_cli(args, tmp_path, cross_encoder_path)
    assert made.returncode == 0, made.stderr[-2000:]
    _, _, stdout = loo_run
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    arms = {row[0].strip(): row for row in rows[1:3]}
    methods = json.loads(out.read_text())["methods"]
    for name in ("first", "second"):
        assert float(arms[name][1]) == pytest.approx(methods["dense"]["ndcg@10"], abs=1e-3)
        assert float(arms[name][2]) == pytest.approx(methods["bm25"]["ndcg@10"], abs=1e-3)
        assert arms[name][4].strip() == "n/a"  # 12 documents: too few to measure coherence
    held_out = [row for row in rows if len(row) == 7 and row[0].strip() in ("first", "second")]
    assert len(held_out) == 4  # the leave-one-out table and the table of the setting chosen on both
    for row in held_out[:2]:
        hybrid, better, margin = float(row[2]), float(row[3]), float(row[4])
        assert margin == pytest.approx(hybrid - better, abs=2e-4)
        assert better == pytest.approx(max(methods["dense"]["ndcg@10"], methods["bm25"]["ndcg@10"]), abs=1e-3)
    assert "chosen on all: coverage^" in stdout
    # the tail's leave-one-out table and the tail chosen on both: 12 documents, so every top 50 holds all of
    # them and every Recall@50 margin is 0
    tail_rows = [row for row in rows if len(row) == 5 and "with context" in row[1]]
    assert len(tail_rows) == 2 and all(float(row[2]) == 0.0 and float(row[4]) == 0.0 for row in tail_rows)
    chosen_rows = [row for row in rows if len(row) == 4 and row[0].strip() in ("first", "second")]
    assert len(chosen_rows) == 2 and all(float(row[2]) == 0.0 for row in chosen_rows)
    assert "tail chosen on all: dense x" in stdout


def test_the_tail_is_chosen_farthest_from_failing_the_floor():
    """fusion_loo.choose_tail: of the pairs meeting Recall@50's floor on every collection, the one farthest
    (log scale, along each factor) from a pair that fails it, not the one with the best margins."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fusion_loo  # pyright: ignore[reportMissingImports]
    finally:
        sys.path.remove(str(EXAMPLES))
    Tail = fusion_loo.Tail
    grid = (0.1, 1.0, 10.0)

    def margins(context: float, plain: float) -> tuple[float, ...]:
        # one collection fails where the context factor is over 1, another where the plain one is under 1;
        # both do best at 1
        first = -0.01 if context > 1 else 0.02 - 0.01 * abs(math.log10(context))
        second = -0.01 if plain < 1 else 0.02 - 0.01 * abs(math.log10(plain))
        return tuple(sorted((round(first, 3), round(second, 3))))

    table = {Tail(c, p): margins(c, p) for c in grid for p in grid}
    assert fusion_loo.choose_tail(table, "leximin") == Tail(1.0, 1.0)
    assert fusion_loo.choose_tail(table) == Tail(0.1, 10.0)  # two grid steps from failing along each factor
    # where no pair meets the floor, the best worst case
    failing = {tail: (values[0] - 0.05, values[1]) for tail, values in table.items()}
    assert fusion_loo.choose_tail(failing) == Tail(1.0, 1.0)
    # where every pair meets it, nothing fails to be far from: the best margins again
    passing = {tail: tuple(value + 0.02 for value in values) for tail, values in table.items()}
    assert fusion_loo.choose_tail(passing) == Tail(1.0, 1.0)


def test_wordnet_sets_example_builds_beir_folders(tmp_path, cross_encoder_path):
    """research/wordnet_sets.py turns WordNet's data files into the README's extra fusion sets."""
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    lines = {
        "noun": [
            "  1 This software and database is being provided",
            "00000001 05 n 02 bank 0 depository_financial_institution 0 000 | "
            'a financial institution; "he cashed a check at the bank"',
            '00000002 17 n 01 bank 1 000 | sloping land beside a body of water; "they pulled the canoe up on the bank"',
            "00000003 05 n 01 vault 0 000 | a strongroom for valuables",
        ],
        "verb": ['00000004 40 v 01 bank 0 000 | do business with a bank; "Where do you bank?"'],
        "adj": ['00000005 00 a 01 steep(a) 0 000 | having a sharp inclination; "a steep bank"'],
        "adv": [],
    }
    for name, rows in lines.items():
        (wordnet / f"data.{name}").write_text("".join(row + "  \n" for row in rows), encoding="latin-1")
    script = EXAMPLES / "wordnet_sets.py"
    base = [str(script), "--wordnet", str(wordnet), "--queries", "2"]

    made = run_cli([*base, "--task", "reverse", "--out", str(tmp_path / "reverse")], tmp_path, cross_encoder_path)
    assert made.returncode == 0, made.stderr[-2000:]
    reverse = load_dataset(tmp_path / "reverse", "test")
    # nouns with examples are the terms: titled by their synonyms, their examples as text
    assert set(reverse.corpus) == {"n00000001", "n00000002"}
    assert reverse.corpus["n00000001"].memory_text == (
        "bank, depository financial institution\nhe cashed a check at the bank"
    )
    assert sorted(reverse.queries.values()) == ["a financial institution", "sloping land beside a body of water"]
    assert all(reverse.qrels[query] == {query[1:]: 1} for query in reverse.queries)

    made = run_cli([*base, "--task", "senses", "--out", str(tmp_path / "senses")], tmp_path, cross_encoder_path)
    assert made.returncode == 0, made.stderr[-2000:]
    senses = load_dataset(tmp_path / "senses", "test")
    # every sense of the picked words is a document (not the unambiguous "steep"); queries are examples
    assert set(senses.corpus) == {"n00000001", "n00000002", "v00000004"}
    assert senses.corpus["n00000002"].memory_text == "bank\nsloping land beside a body of water"
    assert all(
        senses.queries[query]
        in {"he cashed a check at the bank", "they pulled the canoe up on the bank", "Where do you bank?"}
        for query in senses.queries
    )
    assert all(senses.qrels[query] == {query[1:]: 1} for query in senses.queries)


def test_debian_packages_example_builds_a_beir_folder(tmp_path, cross_encoder_path):
    """research/debian_packages_set.py: one document per distinct long description, synopses as queries."""
    translations = tmp_path / "Translation-en"
    translations.write_text(
        "Package: git\nDescription-md5: 1\nDescription-en: fast, scalable, distributed revision control system\n"
        " Git is popular.\n .\n It is fast.\n\n"
        "Package: 0ad\nDescription-md5: 2\nDescription-en: Real-time strategy game of ancient warfare\n"
        " 0 A.D. is a game.\n\n"
        "Package: 0ad-copy\nDescription-md5: 3\nDescription-en: Real-time strategy game (copy)\n"
        " 0 A.D. is a game.\n\n"
        "Package: empty\nDescription-md5: 4\nDescription-en: no long description\n",
        encoding="utf-8",
    )
    script = EXAMPLES / "debian_packages_set.py"
    args = [str(script), "--translations", str(translations), "--queries", "5", "--out", str(tmp_path / "debian")]
    made = run_cli(args, tmp_path, cross_encoder_path)
    assert made.returncode == 0, made.stderr[-2000:]
    dataset = load_dataset(tmp_path / "debian", "test")
    # the copy repeats 0ad's description and the last package has none: two documents remain
    assert set(dataset.corpus) == {"git", "0ad"}
    assert dataset.corpus["git"].memory_text == "git\nGit is popular. It is fast."
    assert dataset.queries == {
        "q-git": "fast, scalable, distributed revision control system",
        "q-0ad": "Real-time strategy game of ancient warfare",
    }
    assert dataset.qrels == {"q-git": {"git": 1}, "q-0ad": {"0ad": 1}}


def test_tail_calibration_example_keeps_the_default_head(tmp_path, tiny_beir, cross_encoder_path, loo_run, embedder):
    """research/tail_calibration.py (research/NOTES.md, "Can a store calibrate its own tail?") reads
    fusion_loo.py's cache: at m = 1 its list is the default fusion's, at any m the default's top 10 stay
    and only the order below them moves; pseudo-queries come only from memories of two sentences or more."""
    import pickle

    cache, collections, _ = loo_run
    result = run_cli(
        [str(EXAMPLES / "tail_calibration.py"), "--cache", str(cache), *collections], tmp_path, cross_encoder_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    curves = [row for row in rows if len(row) == 15 and row[0].strip() in ("first", "second")]
    assert len(curves) == 2
    # 12 documents: every list holds all of them within 50, so every tail finds what the better arm finds
    assert all(float(cell) == 0.0 for row in curves for cell in row[2:])
    assert "chosen on all ten: worst +0.000" in result.stdout

    sys.path.insert(0, str(EXAMPLES))
    try:
        import tail_calibration  # pyright: ignore[reportMissingImports]
    finally:
        sys.path.remove(str(EXAMPLES))
    runs = pickle.loads((cache / "first.pickle").read_bytes())["runs"]
    for arms in runs.values():
        default = tail_calibration.fuse(arms, tail_calibration.DEFAULT)
        assert tail_calibration.tailed(arms, 1.0) == default
        for multiplier in (0.1, 100.0):
            tailed = tail_calibration.tailed(arms, multiplier, keep=3)
            assert tailed[:3] == default[:3] and sorted(tailed) == sorted(default)
    # Two arms in opposite orders: a heavy dense tail follows the dense arm below the kept head, a light one BM25.
    ids = [f"m{i}" for i in range(14)]
    arms = {
        "dense": [(item, 0.9 - 0.03 * rank) for rank, item in enumerate(ids)],
        "bm25": [(item, 14.0 - rank) for rank, item in enumerate(reversed(ids))],
        "context": [],
        "attainable": {"bm25": 14.0, "context": 0.0},
        "coherence": None,
    }
    assert tail_calibration.fuse(arms, tail_calibration.DEFAULT) == ids  # the default sides with dense
    assert tail_calibration.tailed(arms, 100.0, keep=3) == ids
    assert tail_calibration.tailed(arms, 0.01, keep=3) == ids[:3] + ids[:2:-1]

    # Pseudo-queries: each of the 8 titled memories (a title, then one sentence) gives its sentence, asked with
    # the sentence taken out of it; the 4 one-sentence notes give none. What is left of the memory is its
    # title, which BM25 matches (stemmed) and nothing else does; left in, the sentence would give its memory a
    # cosine of about 0.99 with the query, the title alone 0.45-0.66.
    pseudo = tail_calibration.pseudo_collection(tiny_beir, None, None, embedder)
    assert sorted(pseudo["runs"]) == [f"d-{name}" for name in sorted(TOPICS)]
    for source, found in pseudo["runs"].items():
        assert pseudo["qrels"][source] == {source: 1}
        assert [item for item, _ in found["bm25"]] == [source]
        assert found["dense"][0][0] == source and found["dense"][0][1] < 0.8
