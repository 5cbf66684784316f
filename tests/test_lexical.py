import pytest
from rank_bm25 import BM25Okapi

from mimir_mcp.lexical import LexicalIndex, match_expression, tokenize
from mimir_mcp.models import MemoryRecord


def record(memory_id: str, text: str, **fields) -> MemoryRecord:
    return MemoryRecord(id=memory_id, text=text, namespace=fields.pop("namespace", "default"), created_at="t", **fields)


def test_tokenize_exact():
    assert tokenize("The Cats, and the DOGS!") == ["cats", "dogs"]
    assert tokenize("Ｆｕｌｌ-width café_au_lait 42") == ["full", "width", "café_au_lait", "42"]
    assert tokenize("the and of") == []
    assert tokenize("the and of", drop_stop_words=False) == ["the", "and", "of"]
    assert tokenize("___ x") == ["x"]
    assert tokenize("a" * 100) == ["a" * 64]


def test_match_expression_quotes_tokens_and_neutralises_operators():
    assert match_expression('cats NOT "dogs*" NEAR(x)') == '"cats" OR "dogs" OR "near" OR "x"'
    assert match_expression("the the") == '"the"'
    assert match_expression("?!") is None


@pytest.fixture
def index(tmp_path):
    ix = LexicalIndex(tmp_path / "bm25.sqlite3")
    yield ix
    ix.close()


def test_incremental_add_search_and_stemming(index):
    assert index.add([record("a", "The cat is running fast"), record("b", "A dog walks slowly")]) == 2
    assert [hit.id for hit in index.search("runs", 10)] == ["a"]  # porter: runs/running -> run
    assert index.add([record("c", "Dogs run in the park")]) == 1  # no rebuild: one insert
    assert {hit.id for hit in index.search("dog", 10)} == {"b", "c"}
    assert {hit.id for hit in index.search("dog run", 10)} == {"a", "b", "c"}
    assert index.search("dog run", 10)[0].id == "c"  # matches both terms
    assert index.add([record("a", "duplicate id ignored")]) == 0
    assert index.count() == 3


def test_filters_namespace_tags_and_metadata(index):
    index.add(
        [
            record("a", "deploy notes", tags=["ops", "prod"], metadata={"priority": 1, "team": "infra", "ok": True}),
            record("b", "deploy notes staging", tags=["ops"], metadata={"priority": 2.0, "ok": False}),
            record("c", "deploy notes elsewhere", namespace="other", tags=["ops", "prod"]),
        ]
    )
    ids = lambda **kw: sorted(hit.id for hit in index.search("deploy", 10, **kw))  # noqa: E731
    assert ids() == ["a", "b", "c"]
    assert ids(namespace="default") == ["a", "b"]
    assert ids(tags=["prod"]) == ["a", "c"]
    assert ids(tags=["prod", "ops"], namespace="default") == ["a"]
    assert ids(metadata={"priority": 1}) == ["a"]
    assert ids(metadata={"priority": 2}) == ["b"]  # numbers compare by value
    assert ids(metadata={"team": "infra"}) == ["a"]
    assert ids(metadata={"ok": False}) == ["b"]
    assert ids(metadata={"priority": "1"}) == []  # a string never equals a number
    assert ids(metadata={"missing": 1}) == []


def test_remove_and_persistence(tmp_path):
    path = tmp_path / "bm25.sqlite3"
    first = LexicalIndex(path)
    first.add([record("a", "alpha beta"), record("b", "beta gamma")])
    assert first.remove(["a", "zzz"]) == 1
    first.close()
    again = LexicalIndex(path)
    assert again.ids() == {"b"}
    assert [hit.id for hit in again.search("beta", 5)] == ["b"]
    assert again.get(["b"])["b"].text == "beta gamma"
    assert again.namespace_counts() == {"default": 1}
    again.close()


def test_ranking_agrees_with_rank_bm25_reference(index):
    """FTS5's BM25 and rank_bm25's Okapi BM25 put the same document first on single-term queries."""
    corpus = [
        "solar panels convert sunlight into electricity",
        "wind turbines convert wind into electricity electricity",
        "hydro power uses water to make electricity",
        "sunlight sunlight warms the ocean surface",
        "batteries store electricity for later use",
        "the ocean covers most of the planet",
    ]
    index.add([record(str(i), text) for i, text in enumerate(corpus)])
    # Same tokens on both sides, so this compares the BM25 scoring, not the tokenizers.
    reference = BM25Okapi([tokenize(text) for text in corpus])
    for term in ["sunlight", "electricity", "ocean", "wind", "batteries"]:
        scores = reference.get_scores([term])
        expected = max(range(len(corpus)), key=lambda i: scores[i])
        assert index.search(term, 1)[0].id == str(expected), term
