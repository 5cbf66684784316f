"""The lab's scripts in research/: the weak-arm and leave-one-out tables and the WordNet and Debian
package set builders, each run on tiny inputs through the product's own code."""

import json
import re
import sys
from pathlib import Path

import pytest

from mimir_mcp.evaluation.beir import load_dataset
from tests.conftest import run_cli

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
    assert "chosen on all: confidence^" in stdout
    met = sum(float(row[4]) >= -0.005 for row in held_out[:2])
    assert re.search(rf"held out: mean margin [+-]\d\.\d{{4}}, worst [+-]\d\.\d{{4}}, {met} of 2 within 0.005", stdout)
    chosen_rows = [row for row in rows if len(row) == 7 and row[0].strip() in ("first", "second")][2:]
    for row in chosen_rows:  # 12 documents: every top 50 holds all of them, so Recall@50's margin is 0
        assert float(row[5]) == 1.0 and float(row[6]) == 0.0


def test_the_setting_is_chosen_by_the_floor_then_the_mean():
    """fusion_loo.choose: the setting that keeps the most collections within 0.005 of their better arm,
    not the best worst case, which one collection no setting serves would decide alone."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fusion_loo  # pyright: ignore[reportMissingImports]
    finally:
        sys.path.remove(str(EXAMPLES))
    Setting = fusion_loo.Setting
    steady, lopsided, rescuer = Setting(0.5, 0.25, 2.0), Setting(1.0, 0.25, 1.5), Setting(0.0, 0.35, 1.5)
    margins = {
        steady: [0.03, 0.02, -0.08],  # two collections met, one far below
        lopsided: [0.05, -0.006, -0.08],  # one met
        rescuer: [-0.01, -0.02, -0.05],  # none met, the best worst case
    }
    assert fusion_loo.choose(margins) == steady
    assert fusion_loo.choose(margins, "leximin") == rescuer
    # equal counts: the better mean
    assert fusion_loo.choose({steady: [0.01, -0.08], lopsided: [0.05, -0.08]}) == lopsided
    assert Setting(0.5, 0.25, 2.0).policy() == fusion_loo.SHIPPED  # the shipped setting is in the grid
    assert Setting(0.5, 0.25, 2.0) in fusion_loo.settings_grid()
    assert fusion_loo.settings_grid((0.5,)) == [s for s in fusion_loo.settings_grid() if s.confidence == 0.5]


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of every Markdown table row a script printed, header rows included."""
    return [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]


def test_fusion_ideas_read_the_leave_one_out_cache(tmp_path, cross_encoder_path, loo_run):
    """research/fusion_ideas.py (research/NOTES.md, "Issue 35") on fusion_loo.py's cache: the learned
    weights held out on each collection, the arms' agreement and the predecessor's share, each row's
    margin the hybrid minus the better arm."""
    cache, collections, stdout = loo_run
    arms = {
        row.split("|")[1].strip(): [float(cell) for cell in row.split("|")[2:5]] for row in stdout.splitlines()[2:4]
    }
    script = str(EXAMPLES / "fusion_ideas.py")
    learned = run_cli([script, "learned", "--cache", str(cache), *collections], tmp_path, cross_encoder_path)
    assert learned.returncode == 0, learned.stderr[-2000:]
    rows = table_rows(learned.stdout)
    assert sorted(row[0].strip() for row in rows[1:]) == ["first", "second"]
    for row in rows[1:]:
        ndcg, best, margin = (float(cell) for cell in row[1:4])
        assert best == pytest.approx(max(arms[row[0].strip()]), abs=1e-4)
        assert margin == pytest.approx(ndcg - best, abs=2e-4) and 0 <= ndcg <= 1
    agreement = run_cli([script, "agreement", "--cache", str(cache), *collections], tmp_path, cross_encoder_path)
    assert agreement.returncode == 0, agreement.stderr[-2000:]
    rows = table_rows(agreement.stdout)
    for row in rows[1:]:  # the same collection twice: the same supports, within 0..1
        dense, bm25, gap = (float(cell) for cell in row[1:4])
        assert 0 <= dense <= 1 and 0 <= bm25 <= 1
        assert gap == pytest.approx(arms[row[0].strip()][0] - arms[row[0].strip()][1], abs=2e-3)
    chain = run_cli([script, "chain", "--cache", str(cache), *collections], tmp_path, cross_encoder_path)
    assert chain.returncode == 0, chain.stderr[-2000:]
    assert chain.stdout.count("context arm also from a share of") == 5
    shares = [row[1].strip() for row in table_rows(chain.stdout) if row[0].strip() in ("first", "second")]
    assert len(shares) == 2 and shares[0] == shares[1]  # the same memories: the same share
    assert all(0 <= float(value) <= 1 for value in shares[0].split(", "))
    length = run_cli([script, "length", "--cache", str(cache), *collections], tmp_path, cross_encoder_path)
    assert length.returncode == 0, length.stderr[-2000:]
    rows = [row for row in table_rows(length.stdout) if len(row) == 9][1:]
    assert [(row[0].strip(), float(row[1])) for row in rows] == [
        (name, norm) for name in ("first", "second") for norm in (0.75, 0.5, 0.25, 0.0)
    ]
    for row in rows:  # the dense arm is the cache's at every b; BM25 at the shipped b is the cache's too
        name, norm, bm25, dense = row[0].strip(), float(row[1]), float(row[2]), float(row[3])
        assert dense == pytest.approx(arms[name][0], abs=1e-4)
        if norm == 0.75:
            assert bm25 == pytest.approx(arms[name][1], abs=1e-4)
        assert all(0 <= float(cell) <= 1 for cell in row[2:])
    held_out = [row for row in table_rows(length.stdout) if len(row) == 5][1:]
    for row in held_out:  # b chosen on the other collection, measured on this one
        name, chosen, ndcg, shipped, gain = row[0].strip(), float(row[1]), *(float(cell) for cell in row[2:])
        assert chosen in (0.75, 0.5, 0.25, 0.0) and gain == pytest.approx(ndcg - shipped, abs=2e-4)
    assert sorted(row[0].strip() for row in held_out) == ["first", "second"]


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
