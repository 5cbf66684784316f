"""Text analysis for the BM25 arm and for snippets: what a text's terms are.

Unicode words, lower-cased and accent-folded, identifiers also by their parts (Lucene's word-delimiter
filter), Chinese, Japanese and Korean text as overlapping character bigrams (Lucene's CJKAnalyzer),
Lucene's English stop words dropped, Porter stemming (the
Snowball project's ``snowballstemmer``, the algorithm FTS5 uses). Kept apart from the index so the
snippet maker and the index agree on what a term is, and a change here is one version bump.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

import snowballstemmer

# Lucene's English stop words: frequent enough to carry no ranking signal, rare enough not to hurt.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
# Han (with its iteration marks), Hiragana, Katakana and Hangul syllables. Chinese and Japanese put no
# spaces between words; Korean does, but fuses particles and endings onto them (서울에서, 서울은), so a
# whole Korean word would rarely match another sentence's. Without a dictionary, overlapping bigrams
# are the standard answer: most words are one or two characters, and a longer one is matched gram by gram.
_CJK_RUN = re.compile(
    "([\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]+)"
)
# Of those, the scripts written without spaces between words: Han and kana (Korean puts spaces).
_UNSPACED_RUN = re.compile(
    "[\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+"
)
# The generic combining diacritics (acute, grave, diaeresis, cedilla, tilde, breve...) that Latin,
# Greek and Cyrillic letters decompose into. Marks that are letters of their own script (Devanagari
# vowel signs, Hebrew points, Arabic harakat) live in that script's block and are kept.
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
MAX_TOKEN_CHARS = 64
# An identifier: a word joined by underscores or changing case inside it (load_config, loadConfig,
# HTTPServer). It is kept whole and also yields its parts, as Lucene's word-delimiter filter with
# ``preserve_original`` does, so "load config" finds it and it finds a memory saying "load config".
_IDENTIFIER = re.compile(r"_|[a-z][A-Z]|[A-Z][A-Z][a-z]")
_CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# What ``analyze`` returns for a text, as stored with each memory: bump it whenever that changes, so an
# index written by the previous analyzer is analyzed again once when it is opened. 1: \w+ words, stop
# words, Porter. 2: accents folded, CJK bigrams. 3: identifiers' parts.
ANALYZER_VERSION = 3


@cache
def _word_pattern() -> re.Pattern[str]:
    """A word character, then word characters and combining marks: Python's ``\\w`` leaves out vowel
    signs and viramas (Devanagari, Bengali, Thai...), which would cut those words apart. Only the Basic
    Multilingual Plane's marks, those of nearly every script in use: a class reaching past it is matched
    range by range, several times slower. Built from the Unicode database on first use, not at import."""
    marks = "".join(chr(code_point) for code_point in range(0x10000) if unicodedata.category(chr(code_point))[0] == "M")
    return re.compile(rf"\w[\w{re.escape(marks)}]*")


def tokenize(text: str, *, drop_stop_words: bool = True) -> list[str]:
    """Lower-cased Unicode word tokens, NFKC-normalized and accent-folded, runs of CJK characters as
    bigrams, identifiers' parts after the words, stop words dropped, over-long tokens cut."""
    text = unicodedata.normalize("NFKC", text)
    folded = text.casefold()
    words = _word_pattern().findall(folded)
    if not folded.isascii():
        words = [token for word in words for token in ((word,) if word.isascii() else _non_ascii_word_tokens(word))]
    if _IDENTIFIER.search(text):
        words.extend(identifier_parts(text))
    return [
        word[:MAX_TOKEN_CHARS] for word in words if word.strip("_") and not (drop_stop_words and word in STOP_WORDS)
    ]


def identifier_parts(text: str) -> list[str]:
    """The parts of each identifier in ``text``, split at underscores and case changes, lower-cased and
    accent-folded like words; a part of one character (the ``i`` of ``iPhone``) is left out."""
    parts: list[str] = []
    for word in _word_pattern().findall(text):
        if not _IDENTIFIER.search(word):
            continue
        for piece in _CASE_CHANGE.sub("_", word).split("_"):
            part = piece.casefold()
            if len(part) > 1:
                parts.extend((part,) if part.isascii() else _non_ascii_word_tokens(part))
    return parts


@lru_cache(maxsize=200_000)
def _non_ascii_word_tokens(word: str) -> tuple[str, ...]:
    """A word's CJK runs as bigrams, the rest of it accent-folded (cached: words repeat, Unicode
    normalization is not free)."""
    tokens: list[str] = []
    for position, piece in enumerate(_CJK_RUN.split(word)):
        if position % 2:  # split() puts the captured CJK runs at odd positions
            tokens.extend(cjk_bigrams(piece))
        elif piece:
            tokens.append(fold_accents(piece))
    return tuple(tokens)


def fold_accents(word: str) -> str:
    """``café`` -> ``cafe``: NFKD, drop the generic combining diacritics, recompose. A word without
    them comes back unchanged, so other scripts (and precomposed Hangul) are never decomposed."""
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = _DIACRITICS.sub("", decomposed)
    return word if stripped == decomposed else unicodedata.normalize("NFC", stripped)


def count_words(text: str) -> int:
    """Words as query-log studies count them: runs of non-space. Chinese and Japanese put no spaces
    between words, so there a run of their characters counts a word per two characters (about a Chinese
    word's mean length), with any other letters or digits beside it one more: without it a question
    asked in Japanese would count as one word, a keyword look-up."""
    count = 0
    for token in text.split():
        runs = _UNSPACED_RUN.findall(token)
        if not runs:
            count += 1
            continue
        count += sum((len(run) + 1) // 2 for run in runs)
        count += sum(1 for piece in _UNSPACED_RUN.split(token) if any(char.isalnum() for char in piece))
    return count


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character bigrams of a CJK run, as Lucene's CJKBigramFilter; one character stays itself."""
    if len(run) == 1:
        return [run]
    return [run[start : start + 2] for start in range(len(run) - 1)]


_STEMMER = snowballstemmer.stemmer("porter")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stemming; CJK grams are left as they are."""
    return word if _CJK_RUN.match(word) else _STEMMER.stemWord(word)


def analyze(text: str) -> list[str]:
    """The terms BM25 indexes and matches: ``tokenize`` then Porter stemming."""
    return [stem(word) for word in tokenize(text)]


def query_terms(query: str) -> list[str]:
    """Distinct query terms; a query made only of stop words keeps them rather than matching nothing."""
    words = tokenize(query) or tokenize(query, drop_stop_words=False)
    return list(dict.fromkeys(stem(word) for word in words))
