"""What a search matches, one rule for /api/search, history's and the streams' `q`, and the word index.

A query is split into terms: text in double quotes is one term (a quote left open runs to the end), elsewhere
spaces separate terms. A term's words are its runs of letters and digits (Unicode, after case folding, so `STRASSE`
finds `straße`), read after terminal escape sequences are dropped (ANSI colours and styles, cursor moves, OSC titles
and links: a red `ESC[31mFAILED ESC[0m` holds the word `failed`); everything else separates words. A line matches
when every term occurs in its message or in any value of its fields (strings; numbers, true, false and null as JSON
writes them; inside objects and arrays; keys are not searched):

- a term of one word occurs where that whole word does: `declin` does not find `declined`;
- a term ending in `*` (outside quotes) makes its last word a prefix of at least MIN_PREFIX characters: `declin*`
  finds `declined`;
- a term of several words (`"card declined"`, `card_declined`, `api.stripe.com`) occurs where they stand one after
  another, in that order, in the message or in one field value, with only other characters between them.

The index holds each line's words (`index_words`) and finds the lines holding every word of the query (and its
prefixes); `Terms.matches` then decides, so every backend and the live streams give the same answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sentra.errors import BadRequest

# Bumped whenever the words this rule makes of a text change (2: escape sequences dropped): an index holding words
# of another version is built again, in the background.
WORDS_VERSION = 2
# The most words a query may hold: each is one more list the index intersects.
MAX_QUERY_WORDS = 64
# The shortest prefix: an index finds a prefix by reading every word that starts with it, and every line of those
# (on 1,000,000 lines: `a*` 250 ms, `ca*` 64 ms, `car*` 7 ms).
MIN_PREFIX = 3
# The index keeps a word's first characters only (PostgreSQL refuses lexemes past 2,047 bytes); the rule still
# compares whole words.
INDEXED_WORD_CHARS = 200

_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')
_NON_WORD = re.compile(r"[\W_]+")
# What a terminal does not print, as the viewer's ansi.js drops it: CSI (ESC [ parameters, intermediates, final
# byte), OSC (ESC ] ... BEL or ESC \\, or to the end of the line if left open: never past a newline, since a line's
# message and field values are joined by newlines for the index) and other escapes (ESC, intermediates, a final
# byte: tput sgr0's ESC ( B, ESC 7 and ESC 8 that save and restore the cursor).
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[ -/]*[0-~])")
# For ASCII text, one translate() replaces the regex: every ASCII character that is not a letter or digit is a space.
_ASCII_SEPARATORS = str.maketrans({chr(code): " " for code in range(128) if not chr(code).isalnum()})


def words_text(text: str) -> str:
    """`text` without terminal escape sequences, case-folded, with every run of characters that are not letters or
    digits made spaces."""
    if "\x1b" in text:
        text = _ESCAPE.sub("", text)
    folded = text.casefold()
    if folded.isascii():
        return folded.translate(_ASCII_SEPARATORS)
    return _NON_WORD.sub(" ", folded)


def words_of(text: str) -> list[str]:
    """The words of `text`, case-folded, in order."""
    return words_text(text).split()


def field_texts(value: Any) -> Iterator[str]:
    """The searchable values of a line's fields: strings as they are, other scalars as JSON writes them."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from field_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from field_texts(item)
    else:
        yield json.dumps(value)


def index_words(message: str, fields: dict[str, Any]) -> str:
    """What the index holds for a line: the words of its message and field values, space-separated (a word cut
    to INDEXED_WORD_CHARS)."""
    text = message if not fields else "\n".join((message, *field_texts(fields)))
    folded = words_text(text)
    if len(folded) <= INDEXED_WORD_CHARS:
        return folded
    return " ".join(word[:INDEXED_WORD_CHARS] for word in folded.split())


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must stand together in one value (one word: anywhere); the last a prefix if `prefix`."""

    words: tuple[str, ...]
    prefix: bool = False

    def found_in(self, words: list[str]) -> bool:
        """True when this term occurs in a value made of `words`."""
        if len(self.words) == 1:
            word = self.words[0]
            if not self.prefix:
                return word in words
            return any(candidate.startswith(word) for candidate in words)
        count = len(self.words)
        first = self.words[0]
        return any(
            words[start] == first and all(self._fits(words[start + i], i) for i in range(1, count))
            for start in range(len(words) - count + 1)
        )

    def _fits(self, word: str, position: int) -> bool:
        wanted = self.words[position]
        return word == wanted or (self.prefix and position == len(self.words) - 1 and word.startswith(wanted))


@dataclass(frozen=True, slots=True)
class Terms:
    """A parsed query: every term must occur in the line's message or one of its field values."""

    terms: tuple[Term, ...]

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, message: str, fields: dict[str, Any]) -> bool:
        """True when every term occurs in `message` or in a value of `fields`."""
        values = [words_of(message)]
        remaining = [term for term in self.terms if not term.found_in(values[0])]
        if not remaining or not fields:
            return not remaining
        values = [words_of(text) for text in field_texts(fields)]
        return all(any(term.found_in(words) for words in values) for term in remaining)

    def required_words(self) -> list[tuple[str, bool]]:
        """Each word the index must find, as (word cut to INDEXED_WORD_CHARS, prefix?): a line that matches holds
        them all."""
        found: dict[tuple[str, bool], None] = {}
        for term in self.terms:
            last = len(term.words) - 1
            for position, word in enumerate(term.words):
                prefix = term.prefix and position == last
                if len(word) > INDEXED_WORD_CHARS:
                    # An index may hold the word whole or cut: its start finds it either way.
                    word, prefix = word[:INDEXED_WORD_CHARS], True
                found[(word, prefix)] = None
        return list(found)


NO_TERMS = Terms(())  # the query that matches every line


def parse_query(q: str) -> Terms:
    """The terms of `q` (none for an empty q); BadRequest when q holds text but no word, or too many words."""
    if not q:
        # Every stream parses its q, mostly empty. Iterating a pattern's finditer over "" leaves a few small blocks
        # allocated (CPython 3.11), and each pins an arena the stream's objects could otherwise give back when it
        # closes: 10,000 closed streams gave back 46-63% of their memory with the loop, 70-79% without.
        return NO_TERMS
    terms: list[Term] = []
    for match in _TERM.finditer(q):
        quoted, bare = match.group(1), match.group(2)
        text = quoted if quoted is not None else bare
        words = tuple(words_of(text))
        if words:
            prefix = bare is not None and bare.endswith("*") and words_text(bare.rstrip("*"))[-1:] != " "
            if prefix and len(words[-1]) < MIN_PREFIX:
                raise BadRequest(
                    f"q: a prefix needs at least {MIN_PREFIX} letters or digits before the *, not {bare[:40]!r}",
                    code="invalid_query",
                )
            terms.append(Term(words, prefix))
    if not terms and q.strip():
        raise BadRequest(
            f"q {q[:60]!r} holds no word to search for: words are made of letters and digits", code="invalid_query"
        )
    count = sum(len(term.words) for term in terms)
    if count > MAX_QUERY_WORDS:
        raise BadRequest(f"q holds {count} words; at most {MAX_QUERY_WORDS}", code="invalid_query")
    return Terms(tuple(terms))
