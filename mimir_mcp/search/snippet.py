"""Snippets: the part of a long memory a search hit shows.

A whole 30 KB memory in every hit would make a 30 KB answer to a one-line question, so a hit shows at
most ``max_chars`` characters: the window that holds the most query
terms, matched by the BM25 analyzer (``lexical.analysis.tokenize`` and ``stem``, so "deploying"
matches "deploy" and case does not matter), cut at word boundaries, with "…" where text was cut.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

from mimir_mcp.lexical.analysis import query_terms, stem, tokenize

ELLIPSIS = "…"
# Room for a leading and a trailing ellipsis and a few words between them.
MIN_SNIPPET_CHARS = 40

# A word as the analyzer sees it, plus combining marks: "cafe\u0301" is one word, as it is once
# NFKC-normalized ("café"), not "cafe" and a stray accent.
_WORD = re.compile(r"(?:\w|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+")


def snippet(text: str, query: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars`` characters, else its best window of at most ``max_chars``.

    The best window holds the most distinct query terms, then the most matches of them, the earliest
    on a tie; the matched words sit in its middle, with the rest filled by the text around them. With
    no match it is the start of the text. A cut falls between words (at whitespace where the window
    has some, else at punctuation, else, in one word longer than the window, anywhere) and is marked
    with "…", which counts toward ``max_chars``.
    """
    if max_chars < MIN_SNIPPET_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_SNIPPET_CHARS}, got {max_chars}")
    if len(text) <= max_chars:
        return text
    budget = max_chars - 2 * len(ELLIPSIS)
    found = _best_matches(text, set(query_terms(query)), budget)
    if found is None:
        start, end = 0, _cut_end(text, 1, max_chars - len(ELLIPSIS))
    else:
        first, last = found
        slack = budget - (last - first)
        start, end = first - slack // 2, last + slack - slack // 2
        if start <= 0:
            start, end = 0, max_chars - len(ELLIPSIS)
        elif end >= len(text):
            start, end = len(text) - (max_chars - len(ELLIPSIS)), len(text)
        start, end = _cut_start(text, start, first), _cut_end(text, last, end)
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    head = ELLIPSIS if text[:start].strip() else ""
    tail = ELLIPSIS if text[end:].strip() else ""
    return head + text[start:end] + tail


def _best_matches(text: str, terms: set[str], budget: int) -> tuple[int, int] | None:
    """Start and end of the run of matched words that fits in ``budget`` characters and holds the most
    distinct query terms, then the most matches; ``None`` when no matched word fits."""
    if not terms:
        return None
    matches: list[tuple[int, int, list[str]]] = []
    for word in _WORD.finditer(text):
        analyzed = _word_terms(word.group())
        if analyzed and not terms.isdisjoint(analyzed):
            matches.append((word.start(), word.end(), [term for term in analyzed if term in terms]))
    best: tuple[int, int, int, int] | None = None  # (distinct terms, matches, start, end)
    held: Counter[str] = Counter()
    last = 0  # the window holds matches[first:last]
    for first, (start, _, _) in enumerate(matches):
        last = max(last, first)
        while last < len(matches) and matches[last][1] - start <= budget:
            held.update(matches[last][2])
            last += 1
        if last > first:
            key = (len(held), sum(held.values()))
            if best is None or key > best[:2]:
                best = (*key, start, matches[last - 1][1])
            for term in matches[first][2]:
                held[term] -= 1
                if not held[term]:
                    del held[term]
    return None if best is None else (best[2], best[3])


@lru_cache(maxsize=100_000)
def _word_terms(word: str) -> tuple[str, ...]:
    """A word's terms as the BM25 analyzer makes them, stop words kept. Cached across hits and searches:
    memories share most of their words, and analyzing each word of each hit again was most of a
    search's snippet time (0.3 ms a hit of 1.5 KB)."""
    return tuple(stem(token) for token in tokenize(word, drop_stop_words=False))


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or unicodedata.combining(char) > 0


def _cut_start(text: str, start: int, limit: int) -> int:
    """The first word boundary in ``[start, limit]``: after whitespace if there is one, else after
    punctuation; ``limit`` itself is a boundary (it starts a matched word)."""
    if start == 0:
        return 0
    for position in range(start, limit + 1):
        if text[position - 1].isspace() or text[position].isspace():
            return position
    for position in range(start, limit + 1):
        if not (_is_word_char(text[position - 1]) and _is_word_char(text[position])):
            return position
    return limit


def _cut_end(text: str, limit: int, end: int) -> int:
    """The last word boundary in ``[limit, end]`` (``limit`` > 0), preferring whitespace to punctuation;
    when there is none (one word longer than the window) ``end`` itself."""
    if end >= len(text):
        return len(text)
    for position in range(end, limit - 1, -1):
        if text[position - 1].isspace() or text[position].isspace():
            return position
    for position in range(end, limit - 1, -1):
        if not (_is_word_char(text[position - 1]) and _is_word_char(text[position])):
            return position
    return end
