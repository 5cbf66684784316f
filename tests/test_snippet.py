"""Exact snippets of small texts: the window, its cuts and its ellipses."""

import pytest

from mimir_mcp.search.snippet import MIN_SNIPPET_CHARS, snippet

FILLER = "one two three four five six seven eight nine ten "


def test_text_that_fits_is_returned_whole():
    assert snippet("Vault holds the deploy key.", "deploy", 40) == "Vault holds the deploy key."
    assert snippet("x" * 40, "x", 40) == "x" * 40


def test_the_window_is_centred_on_the_match_and_cut_between_words():
    text = FILLER * 3 + "We are Deploying the new build tonight. " + FILLER * 3
    assert snippet(text, "deploy", 60) == "…eight nine ten We are Deploying the new build tonight.…"


def test_ellipses_count_toward_max_chars():
    text = FILLER * 3 + "We are Deploying the new build tonight. " + FILLER * 3
    for max_chars in range(MIN_SNIPPET_CHARS, 120):
        shown = snippet(text, "deploy", max_chars)
        assert len(shown) <= max_chars
        assert shown.startswith("…") and shown.endswith("…")
        assert "Deploying" in shown
        inner = shown[1:-1]
        start = text.index(inner)
        assert text[start - 1] == " " and text[start + len(inner)] == " "  # whole words only


def test_without_a_match_the_start_is_shown():
    text = FILLER * 3
    assert snippet(text, "nothing here", 60) == "one two three four five six seven eight nine ten one two…"


def test_a_match_at_either_end_needs_only_one_ellipsis():
    assert snippet(FILLER * 4 + "the key is in Vault", "vault key", 50) == (
        "…five six seven eight nine ten the key is in Vault"
    )
    assert snippet("Vault holds the key. " + FILLER * 4, "VAULT", 50) == (
        "Vault holds the key. one two three four five six…"
    )


def test_the_window_with_more_query_terms_wins():
    text = "Deploy notes. " + FILLER * 2 + "Deploy, then roll back: the rollback script. " + FILLER * 2
    shown = snippet(text, "deploy rollback", 60)
    assert shown == "…nine ten Deploy, then roll back: the rollback script.…"


def test_distinct_terms_beat_repeats_and_ties_go_to_the_first():
    text = "deploy deploy deploy " + FILLER * 2 + "deploy rollback " + FILLER * 2 + "deploy rollback " + FILLER
    shown = snippet(text, "deploy rollback", 50)
    assert shown == "…eight nine ten deploy rollback one two three…"
    assert text.index(shown.strip("…")) < text.index("deploy rollback")  # the first of the two


def test_stemming_case_and_unicode_forms_match_as_bm25_does():
    text = FILLER * 2 + "CAFE\u0301S nearby " + FILLER * 2  # a decomposed accent, NFKC-equal to "CAFÉS"
    assert "CAFE\u0301S" in snippet(text, "café", 40)
    assert "Deployments" in snippet(FILLER * 2 + "Deployments " + FILLER * 2, "deployment", 40)


def test_text_without_spaces_is_cut_at_punctuation_or_anywhere():
    cjk = "東京は日本の首都です。" * 20
    assert snippet(cjk, "首都", 40) == "東京は日本の首都です。東京は日本の首都です。東京は日本の首都です。…"
    assert snippet("x" * 100, "x", 40) == "x" * 39 + "…"
    assert len(snippet("a b " + "x" * 100, "b", 40)) <= 40


def test_max_chars_below_the_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 40"):
        snippet("text", "q", MIN_SNIPPET_CHARS - 1)
