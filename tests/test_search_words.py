"""The match rule on its own (sentra.storage.words): how a query reads, which lines it matches, what the index holds."""

from __future__ import annotations

from typing import Any

import pytest

from sentra.errors import BadRequest
from sentra.storage.words import Term, index_words, parse_query, words_of


def matches(q: str, message: str, fields: dict[str, Any] | None = None) -> bool:
    """Whether a line with this message and fields matches q."""
    return parse_query(q).matches(message, fields or {})


def test_words_are_runs_of_letters_and_digits_case_folded() -> None:
    assert words_of("Card_DECLINED: https://api.stripe.com/v1?x=1") == [
        "card",
        "declined",
        "https",
        "api",
        "stripe",
        "com",
        "v1",
        "x",
        "1",
    ]
    assert words_of("Straße — 東京 ÜBER") == ["strasse", "東京", "über"]


def test_terminal_escape_sequences_are_not_part_of_words() -> None:
    assert words_of("\x1b[31mFAILED\x1b[0m tests/x.py") == ["failed", "tests", "x", "py"]
    assert words_of("\x1b[1;38;2;255;0;0mERR\x1b[22;39m:\x1b[K done") == ["err", "done"]
    assert words_of("\x1b]0;window title\x07build \x1b]8;;https://x.io\x1b\\link\x1b]8;;\x1b\\ ok") == [
        "build",
        "link",
        "ok",
    ]
    assert words_of("\x1b[1mStra\x1b[0mße") == ["strasse"]  # as a terminal prints it: one word
    assert words_of("\x1b]0;left open\nnext line") == ["next", "line"]  # an open OSC ends with its line
    assert words_of("\x1b[1mERROR\x1b(B\x1b[m: \x1b7saved\x1b8 \x1b(B\x1b[mfailed") == ["error", "saved", "failed"]
    assert index_words("\x1b[32mPASSED\x1b[0m", {"out": "\x1b[31mred\x1b[0m"}).split() == ["passed", "red"]


def test_a_query_splits_into_terms_phrases_and_prefixes() -> None:
    terms = parse_query('"card declined" STRIPE declin* api.stripe.com "open quote')
    assert terms.terms == (
        Term(("card", "declined")),
        Term(("stripe",)),
        Term(("declin",), prefix=True),
        Term(("api", "stripe", "com")),
        Term(("open", "quote")),
    )
    assert parse_query('"quoted*"').terms == (Term(("quoted",)),)  # a star counts outside quotes only
    assert parse_query("tail-*").terms == (Term(("tail",)),)  # a star after a separator is no prefix
    assert not parse_query("") and not parse_query("   ")


@pytest.mark.parametrize("q", ["!!!", "- * -", '""'])
def test_a_query_with_text_but_no_word_is_refused(q: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_query(q)
    assert refused.value.code == "invalid_query" and "letters and digits" in refused.value.message


@pytest.mark.parametrize("q", ["a*", "ok*", "card_de*", "ß*"])
def test_a_prefix_shorter_than_three_characters_is_refused(q: str) -> None:
    with pytest.raises(BadRequest, match="at least 3 letters or digits before the"):
        parse_query(q)
    parse_query(q.replace("*", ""))  # the word itself is fine


def test_too_many_words_are_refused() -> None:
    parse_query(" ".join(f"w{n}" for n in range(64)))
    with pytest.raises(BadRequest, match="65 words; at most 64"):
        parse_query(" ".join(f"w{n}" for n in range(65)))


@pytest.mark.parametrize(
    ("q", "message", "fields", "expected"),
    [
        ("declined", "Card DECLINED", None, True),
        ("declin", "card declined", None, False),  # whole words only
        ("declin*", "card declined", None, True),
        ("STRASSE", "Hauptstraße 1", None, False),
        ("hauptstrasse", "Hauptstraße 1", None, True),  # full case folding
        ("éCOLE", "ÉCOLE", None, True),
        ("ecole", "école", None, False),  # accents count
        ("stripe", "paid", {"url": "https://api.stripe.com/v1"}, True),
        ("url", "paid", {"url": "https://api.stripe.com/v1"}, False),  # keys are not searched
        ("404", "done", {"status": 404}, True),
        ("true", "done", {"ok": True, "n": None}, True),
        ("null", "done", {"ok": True, "n": None}, True),
        ("deep", "done", {"a": {"b": [1, {"c": "deep value"}]}}, True),
        ("paid stripe", "paid", {"url": "https://api.stripe.com"}, True),  # each word anywhere
        ("paid visa", "paid", {"url": "https://api.stripe.com"}, False),
        ('"card declined"', "Card: declined!", None, True),  # only non-word characters between
        ('"card declined"', "declined card", None, False),
        ('"card declined"', "card was declined", None, False),
        ("card_declined", "card declined", None, True),
        ("api.stripe.com", "api stripe com", None, True),
        ('"card declined"', "card", {"why": "declined"}, False),  # a phrase stands in one value
        ('"card decl*"', "card declined", None, False),  # inside quotes a star is no prefix
        ("card_decl*", "card declined", None, True),
        ("card_decl*", "card redeclined", None, False),
        ("failed", "\x1b[31mFAILED\x1b[0m test_x", None, True),  # colours are not part of words
        ("31mfailed", "\x1b[31mFAILED\x1b[0m test_x", None, False),
        ('"failed test_x"', "\x1b[31mFAILED\x1b[0m test_x", None, True),
        ("fail*", "\x1b[1;31mFAILED", None, True),
        ("failed", "\x1b(B\x1b[mfailed", None, True),  # tput sgr0
        ("error", "ok", {"stderr": "\x1b[31mError\x1b[0m"}, True),
    ],
)
def test_which_lines_match(q: str, message: str, fields: dict[str, Any] | None, expected: bool) -> None:
    assert matches(q, message, fields) is expected


def test_the_index_holds_every_word_a_match_needs() -> None:
    text = index_words("Hello WORLD", {"url": "https://x.io", "n": 1e-05, "list": [True, None]})
    assert text.split() == ["hello", "world", "https", "x", "io", "1e", "05", "true", "null"]
    long_word = "a" * 250
    assert index_words(long_word + " end", {}).split() == ["a" * 200, "end"]
    assert parse_query(long_word).required_words() == [("a" * 200, True)]
    assert parse_query("card_decl* x").required_words() == [("card", False), ("decl", True), ("x", False)]
