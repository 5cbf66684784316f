import logging
import math
import mmap
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from mimir_mcp.lexical.analysis import ANALYZER_VERSION, analyze, cjk_bigrams, fold_accents, query_terms, tokenize
from mimir_mcp.lexical.bm25 import K1, bm25_idf
from mimir_mcp.lexical.index import LexicalIndex, cosine_deviation
from mimir_mcp.models import MemoryRecord, RecordFilter


def record(memory_id: str, text: str, **fields) -> MemoryRecord:
    return MemoryRecord(
        id=memory_id,
        text=text,
        namespace=fields.pop("namespace", "default"),
        created_at="2026-01-01T00:00:00+00:00",
        **fields,
    )


def test_tokenize_exact():
    assert tokenize("The Cats, and the DOGS!") == ["cats", "dogs"]
    assert tokenize("Ｆｕｌｌ-width café_au_lait 42") == ["full", "width", "cafe_au_lait", "42", "cafe", "au", "lait"]
    assert tokenize("the and of") == []
    assert tokenize("the and of", drop_stop_words=False) == ["the", "and", "of"]
    assert tokenize("___ x") == ["x"]
    assert tokenize("a" * 100) == ["a" * 64]


def test_identifiers_are_kept_whole_and_by_their_parts_exact():
    assert tokenize("call load_config() or loadConfig") == ["call", "load_config", "loadconfig", "load", "config"] + [
        "load",
        "config",
    ]
    assert tokenize("HTTPServer, __init__, is_valid, iPhone, get_HTTP_response") == [
        *("httpserver", "__init__", "is_valid", "iphone", "get_http_response"),
        *("http", "server", "init", "valid", "phone", "get", "http", "response"),  # "is": a stop word
    ]
    assert tokenize("A plain sentence, in CAPITALS too.") == ["plain", "sentence", "capitals", "too"]  # no parts
    assert query_terms("load_config") == ["load_config", "load", "config"]


def test_analyze_and_query_terms_exact():
    assert analyze("The cats are running, studies show") == ["cat", "run", "studi", "show"]
    assert query_terms('cats NOT "dogs*" NEAR(x) cats') == ["cat", "dog", "near", "x"]
    assert query_terms("the the") == ["the"]  # only stop words: keep them rather than match nothing
    assert query_terms("?!") == []


def test_accents_are_folded_exact():
    assert analyze("Café au lait") == ["cafe", "au", "lait"]
    assert tokenize("naïve Zürich résumé Việt") == ["naive", "zurich", "resume", "viet"]
    assert tokenize("cafe\u0301 nai\u0308ve") == ["cafe", "naive"]  # decomposed input: marks are part of the word
    assert tokenize("Ἀθῆναι Ёлка") == ["αθηναι", "елка"]  # Greek and Cyrillic diacritics fold too
    assert tokenize("à la") == ["la"]  # folded before stop words: "à" becomes the stop word "a"
    assert fold_accents("crème brûlée") == "creme brulee"
    assert fold_accents("ø ß ł") == "ø ß ł"  # letters of their own, not a base letter plus a mark


def test_marks_that_are_letters_are_kept():
    # Devanagari vowel signs and the virama are marks, but \w alone would cut the word at each of them.
    assert tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert analyze("हिन्दी") == ["हिन्दी"]
    assert tokenize("❤️ ok") == ["ok"]  # a mark with no word before it (emoji variation selector) is no word


def test_cjk_bigrams_exact():
    assert cjk_bigrams("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert cjk_bigrams("東") == ["東"]
    assert analyze("東京タワーに行きました and visited Tokyo") == [
        *["東京", "京タ", "タワ", "ワー", "ーに", "に行", "行き", "きま", "まし", "した"],
        *["visit", "tokyo"],  # Latin words around CJK text: stop words, stemming as ever
    ]
    assert analyze("我喜欢北京烤鸭") == ["我喜", "喜欢", "欢北", "北京", "京烤", "烤鸭"]
    assert analyze("2024年に") == ["2024", "年に"]
    assert analyze("東京、京都と大阪") == ["東京", "京都", "都と", "と大", "大阪"]  # punctuation ends a run
    # Hangul: syllables stay precomposed; a word is bigrammed so that 서울 matches 서울에서 (particle fused on)
    assert analyze("서울에서 친구를 만났어요 밥") == [
        "서울",
        "울에",
        "에서",
        "친구",
        "구를",
        "만났",
        "났어",
        "어요",
        "밥",
    ]


def test_query_terms_for_cjk_queries():
    assert query_terms("東京タワー、東京") == ["東京", "京タ", "タワ", "ワー"]  # distinct, in order, not stemmed
    assert query_terms("東") == ["東"]
    assert query_terms("Tokyoのカフェ") == ["tokyo", "のカ", "カフ", "フェ"]


def test_bm25_idf_exact():
    assert bm25_idf(1, 3) == pytest.approx(math.log(1 + 2.5 / 1.5))
    assert bm25_idf(3, 3) == pytest.approx(math.log(1 + 0.5 / 3.5))  # never negative


def test_attainable_score_is_the_sum_of_query_idf(index):
    index.add([record("a", "cat cat dog"), record("b", "cat bird"), record("c", "fish")])
    # N=3: "cat" n=2, "dog" n=1; "zebra" is in no memory (n=0); "the" is a stop word; "cats" repeats "cat"
    expected = bm25_idf(2, 3) + bm25_idf(1, 3) + bm25_idf(0, 3)
    assert index.attainable_score("the cats and dogs, cats and a zebra") == pytest.approx(expected)
    assert index.attainable_score("?!") == 0.0
    # a memory holding each query term once at average length scores exactly this
    assert index.search("dog fish", 3)[0].score < index.attainable_score("dog fish")


def test_scores_are_bm25_exactly(index):
    index.add([record("a", "cat cat dog"), record("b", "cat bird"), record("c", "fish")])
    # N=3, avgdl=2; "cat": n=2; "dog": n=1
    idf_cat, idf_dog = bm25_idf(2, 3), bm25_idf(1, 3)

    def part(tf: float, dl: float) -> float:
        return tf * (K1 + 1) / (tf + K1 * (1 - 0.75 + 0.75 * dl / 2.0))

    hits = {hit.id: hit.score for hit in index.search("cat dog", 10)}
    assert hits["a"] == pytest.approx(idf_cat * part(2, 3) + idf_dog * part(1, 3), rel=1e-6)
    assert hits["b"] == pytest.approx(idf_cat * part(1, 2), rel=1e-6)
    assert "c" not in hits


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
    # The pipeline's in-memory namespace check: unknown and removed ids are simply absent.
    index.remove(["b"])
    assert index.namespaces_of(["c", "a", "b", "zzz"]) == {"c": "other", "a": "default"}


def test_a_filter_leaves_each_memory_its_score(index):
    # Scored by the namespace's statistics (idf and mean length) whatever a filter lets through: once the
    # context arm's mean length was taken over the filtered memories alone (0 here, where no memory let
    # through or its neighbours holds a word: numpy warned and filled the norms with inf and nan).
    index.add(
        [
            record("x", "deploy notes"),
            record("a", "?!"),
            record("b", "::"),
            record("y", "--", tags=["t"]),
            record("z", ".."),
        ]
    )
    with np.errstate(all="raise"):
        for context in (False, True):
            assert index.search("deploy", 10, tags=["t"], context=context) == []
            assert [hit.id for hit in index.search("deploy", 10, context=context)][:1] == ["x"]
    index.add([record("w", "deploy notes again", tags=["t"])])
    for context in (False, True):
        everything = {hit.id: hit.score for hit in index.search("deploy notes", 10, context=context)}
        filtered = {hit.id: hit.score for hit in index.search("deploy notes", 10, tags=["t"], context=context)}
        assert set(filtered) == {"w"} and len(everything) > 1
        assert all(filtered[key] == pytest.approx(everything[key]) for key in filtered)


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
    # Same terms on both sides, so this compares the BM25 scoring, not the analyzers.
    reference = BM25Okapi([analyze(text) for text in corpus], k1=K1, b=0.75)
    for term in ["sunlight", "electricity", "ocean", "wind", "batteries"]:
        # One term: idf is a common factor, so the whole order must match, not just the first.
        scores = reference.get_scores(analyze(term))
        expected = sorted((i for i in range(len(corpus)) if scores[i] > 0), key=lambda i: (-scores[i], i))
        assert [hit.id for hit in index.search(term, 10)] == [str(i) for i in expected], term


def test_reopen_rebuilds_postings_and_later_adds_are_incremental(tmp_path):
    path = tmp_path / "bm25.sqlite3"
    first = LexicalIndex(path)
    first.add([record(f"d{i}", f"document number {i} about topic{i % 3}") for i in range(30)])
    before = [(hit.id, round(hit.score, 5)) for hit in first.search("topic1 number", 30)]
    first.close()
    again = LexicalIndex(path)
    assert [(hit.id, round(hit.score, 5)) for hit in again.search("topic1 number", 30)] == before
    assert again.add([record("new", "topic1 topic1 topic1")]) == 1
    assert again.search("topic1", 1)[0].id == "new"
    assert again.remove(["new"]) == 1 and again.count() == 30
    assert [(hit.id, round(hit.score, 5)) for hit in again.search("topic1 number", 30)] == before
    again.close()


def test_index_written_by_the_fts5_version_is_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE memories (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, namespace TEXT NOT NULL, "
            "text TEXT NOT NULL, tags TEXT NOT NULL, source TEXT, agent TEXT, created_at TEXT NOT NULL, "
            "metadata TEXT NOT NULL); CREATE VIRTUAL TABLE memories_fts USING fts5(tokens);"
        )
        db.execute(
            "INSERT INTO memories VALUES (1, 'a', 'default', 'Glaciers carve valleys', '[]', NULL, NULL, 't', '{}')"
        )
    index = LexicalIndex(path)
    assert [hit.id for hit in index.search("glacier", 5)] == ["a"]
    index.close()


def test_accented_and_unaccented_words_find_each_other(index):
    index.add([record("accented", "Un café à Zürich"), record("plain", "a naive resume"), record("other", "tea")])
    assert [hit.id for hit in index.search("cafe zurich", 5)] == ["accented"]
    assert [hit.id for hit in index.search("Café", 5)] == ["accented"]
    assert [hit.id for hit in index.search("naïve résumé", 5)] == ["plain"]


def test_an_identifier_and_its_words_find_each_other(index):
    index.add(
        [
            record("code", "Settings are read by load_config() in cli.py"),
            record("prose", "We load the config before parsing the arguments"),
            record("camel", "parseArgs handles --verbose"),
            record("other", "Lunch is at noon"),
        ]
    )
    assert {hit.id for hit in index.search("load config", 5)} == {"code", "prose"}
    assert {hit.id for hit in index.search("load_config", 5)} == {"code", "prose"}
    for query in ("parse args", "parse_args", "ParseArgs"):  # "parsing" shares the stem: second
        assert [hit.id for hit in index.search(query, 5)] == ["camel", "prose"]


def test_japanese_query_ranks_the_memory_sharing_most_bigrams_first(index):
    index.add(
        [
            record("station", "東京駅で友達に会いました"),
            record("tower", "昨日東京タワーに行きました"),
            record("kyoto", "京都の寺を訪ねました"),
            record("english", "We visited Tokyo Tower yesterday"),
        ]
    )
    assert [hit.id for hit in index.search("東京タワー", 5)] == ["tower", "station"]  # 4 shared bigrams, then 1
    assert {hit.id for hit in index.search("東京", 5)} == {"station", "tower"}  # a two-character word
    assert [hit.id for hit in index.search("京都", 5)] == ["kyoto"]  # 京 alone matches nothing
    assert {hit.id for hit in index.search("tokyo タワー", 5)} == {"tower", "english"}  # mixed query


def test_index_written_by_the_previous_analyzer_is_reanalyzed_once(tmp_path, caplog):
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as db:  # what the version-1 code wrote: no meta table, \w+ tokens unfolded
        db.executescript(
            "CREATE TABLE memories (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, namespace TEXT NOT NULL, "
            "text TEXT NOT NULL, tags TEXT NOT NULL, source TEXT, agent TEXT, created_at TEXT NOT NULL, "
            "metadata TEXT NOT NULL, tokens TEXT NOT NULL DEFAULT ''); "
            "CREATE INDEX memories_namespace ON memories(namespace);"
        )
        db.executemany(
            "INSERT INTO memories VALUES (?, ?, 'default', ?, '[]', NULL, NULL, 't', '{}', ?)",
            [
                (1, "cafe", "Un café à Zürich", "un café à zürich"),
                (2, "tokyo", "東京タワーに行きました", "東京タワーに行きました"),
                (3, "plain", "Dogs running", "dog run"),
            ],
        )
    with caplog.at_level(logging.INFO, logger="mimir_mcp.lexical.index"):
        index = LexicalIndex(path)
    assert "re-analyzed: 3 memories from analyzer version 1 to 3" in caplog.text
    assert [hit.id for hit in index.search("cafe", 5)] == ["cafe"]
    assert [hit.id for hit in index.search("東京", 5)] == ["tokyo"]
    assert [hit.id for hit in index.search("dog", 5)] == ["plain"]
    assert index.remove(["tokyo"]) == 1  # document frequencies come from the re-analyzed tokens
    assert index.search("東京", 5) == []
    index.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'analyzer_version'").fetchone() == (
            str(ANALYZER_VERSION),
        )
        assert db.execute("SELECT tokens FROM memories WHERE id = 'cafe'").fetchone() == ("un cafe zurich",)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mimir_mcp.lexical.index"):
        again = LexicalIndex(path)  # up to date now: tokens are read, not analyzed again
    assert "re-analyzed" not in caplog.text
    assert [hit.id for hit in again.search("Zürich", 5)] == ["cafe"]
    again.close()


def test_context_scores_each_memory_with_its_neighbours_exactly(index):
    # namespace "talk": a -> b -> c; "other": d (no neighbour). Context documents, own text plus the ones
    # stored just before and just after: a = "cat fish" + "dog" (3), b = "dog" + "cat fish" + "bird bird"
    # (5), c = "bird bird" + "dog" (3), d = "dog fish" (2)
    index.add([record("a", "cat fish", namespace="talk"), record("d", "dog fish", namespace="other")])
    index.add([record("b", "dog", namespace="talk"), record("c", "bird bird", namespace="talk")])
    average = (3 + 5 + 3 + 2) / 4
    # "cat" holds in a and (carried to the next) in b: n = 2 of N = 4
    idf_cat = bm25_idf(2, 4)

    def part(tf: float, dl: float) -> float:
        return tf * (K1 + 1) / (tf + K1 * (1 - 0.75 + 0.75 * dl / average))

    hits = {hit.id: hit.score for hit in index.search("cat", 10, context=True)}
    assert hits == pytest.approx({"a": idf_cat * part(1, 3), "b": idf_cat * part(1, 5)}, rel=1e-6)
    assert [hit.id for hit in index.search("cat", 10)] == ["a"]  # without context only a holds it
    # "bird" holds in c twice, carried back to b (twice) and no further: a does not get it
    birds = {hit.id: hit.score for hit in index.search("bird", 10, context=True)}
    assert set(birds) == {"b", "c"}
    # "dog" holds in b, carried to both its neighbours a and c, and in d; searched in "talk", only talk's
    # statistics count: n = 3 (a, b, c) of N = 3, mean context length (3 + 5 + 3) / 3
    dog = {hit.id: hit.score for hit in index.search("dog", 10, context=True, namespace="talk")}
    assert set(dog) == {"a", "b", "c"}
    in_talk = 1 * (K1 + 1) / (1 + K1 * (1 - 0.75 + 0.75 * 5 / (11 / 3)))
    assert dog["b"] == pytest.approx(bm25_idf(3, 3) * in_talk, rel=1e-6)
    assert index.attainable_score("cat", context=True) == pytest.approx(idf_cat)
    assert index.attainable_score("cat") == pytest.approx(bm25_idf(1, 4))
    # the pipeline's one-pass call gives both at once, the same to the last digit
    for context in (False, True):
        for query in ("cat dog", "cat unseen"):
            hits, attainable = index.search_with_attainable(query, 10, context=context)
            assert hits == index.search(query, 10, context=context)
            assert attainable == pytest.approx(index.attainable_score(query, context=context), rel=1e-12)


def test_context_skips_a_forgotten_neighbour(index):
    index.add([record("a", "apples", namespace="n"), record("b", "yes, last May", namespace="n")])
    assert [hit.id for hit in index.search("apples", 10, context=True)] == ["a", "b"]
    assert {hit.id for hit in index.search("May", 10, context=True)} == {"a", "b"}  # the reply, carried back
    index.remove(["a"])
    assert index.search("apples", 10, context=True) == []
    assert [hit.id for hit in index.search("May", 10, context=True)] == ["b"]


def test_context_neighbours_survive_a_restart(tmp_path):
    ix = LexicalIndex(tmp_path / "bm25.sqlite3")
    ix.add([record("q", "where did Maria travel", namespace="chat"), record("x", "taxes due", namespace="todo")])
    ix.add([record("r", "Lisbon, in spring", namespace="chat")])
    before = [(hit.id, hit.score) for hit in ix.search("Maria travel", 10, context=True)]
    ix.close()
    reopened = LexicalIndex(tmp_path / "bm25.sqlite3")
    assert [(hit.id, hit.score) for hit in reopened.search("Maria travel", 10, context=True)] == before
    assert [memory_id for memory_id, _ in before] == ["q", "r"]
    reopened.close()


def test_mean_length_counts_each_namespace_s_live_memories_terms(index):
    """What the context rule's length test reads (``policy.FusionPolicy.context_runs``): how many terms a
    namespace's memories hold on average, their BM25 lengths (stop words out: "the" and "was" do not count)."""
    index.add(
        [
            record("a", "volcano magma eruption", namespace="geo"),
            record("b", "the glacier was icy", namespace="geo"),
            record("c", "coral reef algae fish sharks", namespace="sea"),
        ]
    )
    assert analyze("the glacier was icy") == ["glacier", "ici"]
    assert index.mean_length("geo") == 2.5
    assert index.mean_length("sea") == 5.0
    assert index.mean_length() == pytest.approx(10 / 3)
    assert index.mean_length("missing") is None
    index.remove(["a"])  # a forgotten memory no longer counts
    assert index.mean_length("geo") == 2.0


def test_coherence_tells_a_conversation_from_unrelated_memories(index):
    topics = [
        "volcano magma eruption",
        "glacier ice valley",
        "coral reef algae",
        "tornado storm vortex",
        "aurora solar wind",
        "monsoon rain winds",
        "tsunami wave earthquake",
        "geyser steam vent",
    ]
    # a conversation: each topic discussed over three consecutive turns
    turns = [
        f"{speaker}: the {topic} {filler}"
        for topic in topics
        for speaker, filler in (("Ann", "was amazing"), ("Bob", "really?"), ("Ann", "yes, truly"))
    ]
    index.add([record(f"t{i}", text, namespace="chat") for i, text in enumerate(turns)])
    # the same texts stored in an order that keeps no topic together
    shuffled = [turns[(i * 7) % len(turns)] + f" #{i}" for i in range(len(turns))]
    index.add([record(f"s{i}", text, namespace="facts") for i, text in enumerate(shuffled)])
    chat, facts = index.coherence("chat"), index.coherence("facts")
    assert chat is not None and facts is not None
    assert chat > 0.2
    assert abs(facts) < 0.1
    assert index.coherence("missing") is None
    small = LexicalIndex(":memory:")
    small.add([record(f"m{i}", text, namespace="few") for i, text in enumerate(turns[:5])])
    assert small.coherence("few") is None  # too few memories to tell
    small.close()


def test_cosine_deviation_is_the_spread_of_every_pair_of_cosines():
    # three unit vectors: pairs at 90, 90 and 45 degrees -> cosines 0, 0, sqrt(1/2)
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 1.0]])  # lengths do not count
    pairs = [0.0, 0.0, math.sqrt(0.5)]
    assert cosine_deviation(vectors) == pytest.approx(float(np.std(pairs)))
    assert cosine_deviation(vectors[:1]) is None
    assert cosine_deviation(np.ones((4, 3))) == pytest.approx(0.0)  # all alike


def test_cosine_spread_measures_an_even_sample_once_per_tenth_of_growth(index):
    """The dense arm's unit: the deviation of the cosines between a namespace's memories, from up to 200
    of them evenly spaced in the order stored, read once and kept until the namespace grows by a tenth."""
    from mimir_mcp.lexical.index import SPREAD_SAMPLE

    rng = np.random.default_rng(7)
    vectors = {f"m{i}": rng.normal(size=8) for i in range(450)}
    reads: list[list[str]] = []

    def vectors_of(ids):
        reads.append(list(ids))
        return {memory_id: vectors[memory_id] for memory_id in ids if memory_id != "m4"}  # m4: gone from the store

    index.add([record(f"m{i}", f"turn {i}", namespace="chat") for i in range(19)])
    assert index.cosine_spread("chat", vectors_of) is None and reads == []  # too few to tell
    index.add([record(f"m{i}", f"turn {i}", namespace="chat") for i in range(19, 30)])
    spread = index.cosine_spread("chat", vectors_of)
    assert reads == [[f"m{i}" for i in range(30)]]
    assert spread == pytest.approx(cosine_deviation(np.array([vectors[f"m{i}"] for i in range(30) if i != 4])))
    index.add([record("m30", "turn 30", namespace="chat"), record("x", "elsewhere", namespace="other")])
    assert index.cosine_spread("chat", vectors_of) == spread and len(reads) == 1  # kept: grew by less than a tenth
    assert index.cosine_spread(["chat"], vectors_of) == spread  # the same scope named as a list
    index.add([record(f"m{i}", f"turn {i}", namespace="chat") for i in range(31, 450)])
    index.cosine_spread("chat", vectors_of)
    assert reads[-1] == [f"m{i}" for i in range(0, 400, 2)] and len(reads[-1]) == SPREAD_SAMPLE  # spans all 450
    assert index.cosine_spread("missing", vectors_of) is None


def _figures(index: LexicalIndex, namespaces: list[str], queries: list[str]) -> list:
    """Everything a search of ``namespaces`` can show of BM25: hits with scores and attainable scores, with
    and without context, the coherence and mean length that decide the context arm."""
    where = (
        RecordFilter(namespace=namespaces[0])
        if len(namespaces) == 1
        else RecordFilter(namespace=None, namespaces=namespaces)
    )
    figures: list = [index.coherence(namespaces), index.mean_length(namespaces)]
    for context in (False, True):
        for query in queries:
            hits, attainable = index.search_with_attainable(query, 10, where=where, context=context)
            figures.append(([(hit.id, round(hit.score, 9)) for hit in hits], round(attainable, 9)))
    return figures


def test_each_namespace_scores_as_if_it_were_alone():
    """No figure of a search in A moves when B writes, and none tells whether a word occurs in B; a search
    over several namespaces scores as an index holding only those would."""
    turns = [f"Ann: the {word} trip was {i}" for i, word in enumerate(["lake", "river", "alps", "coast"] * 6)]
    other = [f"Bob: zebra {word} secret merger {i}" for i, word in enumerate(["lake", "quasar", "nebula"] * 9)]
    queries = ["lake trip", "zebra merger", "quasar", "alps coast"]
    alone = LexicalIndex(":memory:")
    alone.add([record(f"a{i}", text, namespace="A") for i, text in enumerate(turns)])
    before = _figures(alone, ["A"], queries)
    shared = LexicalIndex(":memory:")
    shared.add([record(f"a{i}", text, namespace="A") for i, text in enumerate(turns)])
    shared.add([record(f"b{i}", text, namespace="B") for i, text in enumerate(other)])
    shared.add([record("c0", "lake lake lake", namespace="C")])
    assert _figures(shared, ["A"], queries) == before
    # "zebra" (only in B) and a word stored nowhere look the same from A
    in_a = RecordFilter(namespace="A")
    assert shared.search_with_attainable("zebra", 5, where=in_a) == shared.search_with_attainable(
        "unheardof", 5, where=in_a
    )
    # A and B together score as an index of A and B alone (C's one memory changes nothing)
    pair = LexicalIndex(":memory:")
    pair.add([record(f"a{i}", text, namespace="A") for i, text in enumerate(turns)])
    pair.add([record(f"b{i}", text, namespace="B") for i, text in enumerate(other)])
    expected = _figures(pair, ["A", "B"], queries)
    assert _figures(shared, ["A", "B"], queries) == expected
    # and B's forgetting moves nothing in A either
    shared.remove([f"b{i}" for i in range(5)])
    assert _figures(shared, ["A"], queries) == before
    for index in (alone, shared, pair):
        index.close()


def _same_index(one, other) -> None:
    """Two BM25 indexes hold the same documents, postings and statistics."""
    import numpy as np

    for name in ("_keys", "_lengths", "_alive", "_groups", "_previous", "_next"):
        assert np.array_equal(getattr(one, name).view, getattr(other, name).view), name
    assert one._position == other._position and one._group_codes == other._group_codes
    assert one._last_in_group == other._last_in_group and one._group_totals == other._group_totals
    assert one._live == other._live and one._total_length == pytest.approx(other._total_length)
    assert one._postings.keys() == other._postings.keys()
    for term, postings in one._postings.items():
        theirs = other._postings[term]
        assert np.array_equal(postings.documents.view, theirs.documents.view), term
        assert np.array_equal(postings.frequencies.view, theirs.frequencies.view), term
        assert (postings.document_frequency, postings.by_group) == (theirs.document_frequency, theirs.by_group), term


TERMS = st.lists(st.sampled_from([f"t{n}" for n in range(12)]), max_size=9)


@settings(max_examples=60, deadline=None)
@given(
    documents=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), TERMS), max_size=40),
    chunk=st.integers(1, 30),
)
def test_the_bulk_build_leaves_the_index_adding_one_by_one_would(documents, chunk):
    """Start-up builds the postings in bulk (``BM25Index.built``), a chunk of terms at a time; adds, removals
    and searches after it behave as on an index built by ``add``."""
    from mimir_mcp.lexical import bm25

    numbered = [(7 * n + 3, group, terms) for n, (group, terms) in enumerate(documents)]
    one_by_one = bm25.BM25Index()
    for document in numbered:
        one_by_one.add(*document)
    original = bm25.BUILD_CHUNK_TERMS
    bm25.BUILD_CHUNK_TERMS = chunk
    try:
        bulk = bm25.BM25Index.built(numbered)
    finally:
        bm25.BUILD_CHUNK_TERMS = original
    _same_index(one_by_one, bulk)
    for index in (one_by_one, bulk):
        index.add(1_000_001, "a", ["t1", "t1", "t99"])
        if numbered:
            index.remove(numbered[0][0], numbered[0][2])
    _same_index(one_by_one, bulk)
    for terms in (["t1"], ["t2", "t3"], ["t99", "t5"]):
        for context in (False, True):
            for scope in (None, ["a"], ["b", "c"]):
                assert one_by_one.search(terms, 10, scope=scope, context=context) == bulk.search(
                    terms, 10, scope=scope, context=context
                )


@settings(max_examples=60, deadline=None)
@given(
    documents=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), TERMS), max_size=40),
    removed=st.sets(st.integers(0, 39), max_size=10),
)
def test_the_saved_arrays_read_back_into_the_same_index(documents, removed):
    """A restart reads the index a close saved (``arrays`` / ``from_arrays``) instead of building it; a
    memory whose terms are lost is removed from the postings alone (``remove_unread``) as ``remove`` would."""
    from mimir_mcp.lexical import bm25

    numbered = [(7 * n + 3, group, terms) for n, (group, terms) in enumerate(documents)]
    index, copy = bm25.BM25Index(), bm25.BM25Index()
    for document in numbered:
        index.add(*document)
        copy.add(*document)
    doomed = [numbered[n] for n in sorted(removed) if n < len(numbered)]
    for key, _, terms in doomed[::2]:
        index.remove(key, terms)
        copy.remove(key, terms)
    for key, _, terms in doomed[1::2]:
        index.remove(key, terms)
    assert copy.remove_unread([key for key, _, _ in doomed[1::2]] + [123_456]) == len(doomed[1::2])
    _same_index(index, copy)
    again = bm25.BM25Index.from_arrays(index.arrays())
    _same_index(index, again)
    for other in (index, again):
        other.add(1_000_001, "b", ["t1", "t1", "t99"])
        other.add(1_000_002, "d", ["t2"])
    _same_index(index, again)
    for terms in (["t1"], ["t2", "t3"], ["t99", "t5"]):
        for context in (False, True):
            for scope in (None, ["a"], ["b", "d"]):
                assert index.search(terms, 10, scope=scope, context=context) == again.search(
                    terms, 10, scope=scope, context=context
                )


def _scores(index: LexicalIndex, query: str) -> list[tuple[str, float]]:
    return [(hit.id, round(hit.score, 5)) for hit in index.search(query, 50)]


def test_a_restart_reads_the_saved_index_and_takes_in_what_changed_since(tmp_path, monkeypatch):
    """A close saves the postings beside the catalogue; the next start reads them instead of building them.
    Rows another process added or removed since (here one that never saved: killed), a row number reused
    for another memory included, are taken in: the result equals an index built from the catalogue (context
    neighbours aside: a forgotten neighbour stays one that counts for nothing, as before the restart)."""
    from mimir_mcp.lexical import bm25

    path = tmp_path / "bm25.sqlite3"
    first = LexicalIndex(path)
    first.add([record(f"d{i}", f"document number {i} about topic{i % 3}", namespace="ab"[i % 2]) for i in range(30)])
    first.close()
    assert first.saved_path is not None and first.saved_path.exists()
    killed = LexicalIndex(path)
    killed.add([record("late", "a late topic1 document"), record("last", "the last one, topic2")])
    killed.remove(["d3", "d4", "last"])  # "last" held the highest row number: SQLite gives it out again
    killed.add([record("reused", "topic2 topic2 again")])
    assert killed.catalogue.rowids(["reused"]) == {"reused": 32}
    killed.catalogue.close()  # no save

    def no_build(documents):
        raise AssertionError("built again instead of read")

    monkeypatch.setattr(bm25.BM25Index, "built", staticmethod(no_build))
    read = LexicalIndex(path)
    monkeypatch.undo()
    assert read.ids() == {f"d{i}" for i in range(30)} - {"d3", "d4"} | {"late", "reused"}
    # Postings no document was added to since stay mapped from the file, not read into memory.
    base = read._index._postings[analyze("number")[0]].documents.data
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, mmap.mmap)
    first.saved_path.unlink()
    built = LexicalIndex(path)
    for query in ("topic1 number", "topic2", "late document", "again"):
        assert _scores(read, query) == _scores(built, query), query
    assert read.namespace_counts() == built.namespace_counts() == {"a": 14, "b": 14, "default": 2}
    assert read.mean_length("a") == built.mean_length("a")
    read.close()
    built.close()


def test_a_saved_index_that_cannot_be_read_is_built_again(tmp_path, caplog):
    path = tmp_path / "bm25.sqlite3"
    first = LexicalIndex(path)
    first.add([record("a", "alpha beta"), record("b", "beta gamma")])
    first.close()
    assert first.saved_path is not None
    first.saved_path.write_bytes(first.saved_path.read_bytes()[:100])  # torn
    with caplog.at_level("WARNING"):
        again = LexicalIndex(path)
    assert "cannot be read" in caplog.text and "building it again" in caplog.text
    assert {hit.id for hit in again.search("beta", 5)} == {"a", "b"} and again.ids() == {"a", "b"}
    again.close()


def test_a_cleanly_closed_catalogue_is_not_read_through_at_the_next_start(tmp_path, monkeypatch):
    """SQLite's check of the catalogue reads the whole file; it is skipped when the files are as the last
    clean close recorded them, never after a process that wrote was killed, or after damage."""
    from mimir_mcp.lexical.index import closed_whole
    from mimir_mcp.store.catalogue import Catalogue

    path = tmp_path / "bm25.sqlite3"
    first = LexicalIndex(path)
    first.add([record("a", "alpha beta")])
    assert not closed_whole(path)  # open
    first.close()
    assert closed_whole(path)
    LexicalIndex(path).close()  # read only
    assert closed_whole(path)
    killed = LexicalIndex(path)
    killed.add([record("b", "beta gamma")])
    killed.catalogue.close()  # no clean close
    assert not closed_whole(path)
    again = LexicalIndex(path)
    assert again.ids() == {"a", "b"}
    again.close()
    assert closed_whole(path)
    with monkeypatch.context() as patched:  # the saved index holds exactly its rows: they are not listed
        patched.setattr(Catalogue, "row_ids", lambda self: pytest.fail("listed the catalogue's rows"))
        listed = LexicalIndex(path)
        assert listed.ids() == {"a", "b"} and [hit.id for hit in listed.search("gamma", 5)] == ["b"]
        listed.close()
    with open(path, "r+b") as file:  # damage that keeps the size
        file.seek(path.stat().st_size // 2)
        file.write(b"garbage")
    assert not closed_whole(path)


def test_postings_saved_by_a_process_that_missed_another_s_writes_are_levelled_at_the_next_start(tmp_path):
    """Two processes share a catalogue; the one closing last never took in the other's write, so its saved
    postings lack it. The catalogue's generation (every insert and delete moves it on) tells the next start
    to compare the rows instead of trusting them."""
    path = tmp_path / "bm25.sqlite3"
    first, second = LexicalIndex(path), LexicalIndex(path)
    second.add([record("b1", "from the second process")])
    first.add([record("a1", "the harbour, from the first process")])
    first.close()
    second.close()  # saved last, without "a1"
    again = LexicalIndex(path)
    assert again.ids() == {"a1", "b1"} and [hit.id for hit in again.search("harbour", 5)] == ["a1"]
    again.close()


def test_level_takes_in_another_process_s_rows_and_reads_one_value_when_there_are_none(tmp_path, monkeypatch):
    """A search from the catalogue alone, while the store opens, first levels the index with what other
    processes sharing the catalogue inserted or deleted: their writes move its generation on."""
    path = tmp_path / "bm25.sqlite3"
    reader, writer = LexicalIndex(path), LexicalIndex(path)
    writer.add([record("w1", "the harbour crane"), record("w2", "the ledger")])
    reader.level()
    assert reader.ids() == {"w1", "w2"} and [hit.id for hit in reader.search("harbour", 5)] == ["w1"]
    writer.remove(["w1"])
    reader.level()
    assert reader.ids() == {"w2"} and reader.search("harbour", 5) == []

    loads = []
    monkeypatch.setattr(LexicalIndex, "_load", lambda self, **_: loads.append(self))
    reader.level()  # nothing written since: the generation alone is read
    assert loads == []
    writer.add([record("w3", "the canary")])
    reader.level()
    assert loads == [reader]
    reader.close()
    writer.close()


@settings(max_examples=80, deadline=None)
@given(
    documents=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.lists(st.sampled_from(["common"] * 6 + ["often"] * 3 + [f"rare{n}" for n in range(6)]), max_size=8),
        ),
        min_size=1,
        max_size=60,
    ),
    query=st.lists(st.sampled_from(["common", "often", "rare0", "rare1", "rare2", "missing"]), min_size=1, max_size=4),
    limit=st.integers(1, 8),
    scope=st.sampled_from([None, ["a"], ["b"]]),
    every_third=st.booleans(),
)
def test_pruned_search_gives_the_exhaustive_answer(documents, query, limit, scope, every_third):
    """Search skips the common terms' postings where they cannot lift a document into the top ``limit``
    (MaxScore); the answer, scores included, is the one scoring every posting gives."""
    from mimir_mcp.lexical import bm25

    index = bm25.BM25Index()
    for n, (group, terms) in enumerate(documents):
        index.add(n, group, terms)
    allowed = list(range(0, len(documents), 3)) if every_third else None
    assert index.search(query, limit, scope=scope, allowed=allowed) == index.search(
        query, limit, scope=scope, allowed=allowed, prune=False
    )


def test_the_common_terms_postings_are_skipped_where_they_cannot_change_the_top(monkeypatch):
    from mimir_mcp.lexical import bm25

    index = bm25.BM25Index()
    for n in range(200):
        index.add(n, "a", ["common", "filler"] + (["rare"] if n % 50 == 0 else []))
    pruned: list[int] = []
    reachable = bm25.BM25Index._reachable

    def spy(*args):
        found = reachable(*args)
        pruned.append(-1 if found is None else len(found))
        return found

    monkeypatch.setattr(bm25.BM25Index, "_reachable", staticmethod(spy))
    hits, _ = index.search(["rare", "common"], 3)
    assert [key for key, _ in hits] == [0, 50, 100] and pruned == [4]  # "common" added to 4 of 200
    monkeypatch.undo()
    assert index.search(["rare", "common"], 3, prune=False) == (hits, _)
