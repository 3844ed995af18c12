"""Sentra's copies of the Tornado helpers that frame a request read exactly as Tornado's own.

sentra.http.parsing and sentra.http.reading keep their own parse_int, parse_hex_int, is_chunked and parse_query,
because tornado.http1connection's parse_int, parse_hex_int and is_transfer_encoding_chunked and tornado.escape's
parse_qs_bytes are not part of Tornado's documented API. They are imported here, and only here, to check the copies
against the originals on generated input: what one accepts, the other accepts with the same value, and what one
refuses, the other refuses in the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.escape import parse_qs_bytes
from tornado.http1connection import is_transfer_encoding_chunked
from tornado.http1connection import parse_hex_int as tornado_parse_hex_int
from tornado.http1connection import parse_int as tornado_parse_int
from tornado.httputil import HTTPHeaders, HTTPInputError

from sentra.errors import BadRequest
from sentra.http.parsing import is_chunked, parse_hex_int, parse_int
from sentra.http.reading import MAX_QUERY_FIELDS, parse_query

# Digits, hex digits, and what int() would take beside them: signs, spaces, underscores, "0x", non-ASCII digits.
NUMBERS = st.text(alphabet="0123456789abcdefABCDEFxX+-_ \t\u0661\u00b2\uff11", max_size=12) | st.text(max_size=6)
CODINGS = st.sampled_from(
    ["chunked", "Chunked", "CHUNKED", "gzip", "chunked, gzip", "gzip, chunked", "", "chunked,chunked", "identity"]
)
QUERY = st.text(alphabet="ab=&+%;2fF0Z9 .~-_?", max_size=40)


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    """What reading gives: ("ok", the value) or ("refused", the error's words)."""
    try:
        return "ok", read()
    except (ValueError, HTTPInputError) as exc:
        return "refused", str(exc)


@settings(max_examples=1000)
@given(NUMBERS)
def test_integers_are_read_as_tornado_reads_them(text: str) -> None:
    assert outcome(lambda: parse_int(text)) == outcome(lambda: tornado_parse_int(text))
    assert outcome(lambda: parse_hex_int(text)) == outcome(lambda: tornado_parse_hex_int(text))


@settings(max_examples=300)
@given(st.lists(CODINGS, max_size=3), st.lists(st.sampled_from(["5", "0", "x"]), max_size=2))
def test_transfer_encoding_is_decided_as_tornado_decides_it(codings: list[str], lengths: list[str]) -> None:
    headers = HTTPHeaders()
    for coding in codings:
        headers.add("Transfer-Encoding", coding)
    for length in lengths:
        headers.add("Content-Length", length)
    assert outcome(lambda: is_chunked(headers)) == outcome(lambda: is_transfer_encoding_chunked(headers))


@settings(max_examples=1000)
@given(QUERY)
def test_query_arguments_are_read_as_tornado_reads_them(query: str) -> None:
    expected = parse_qs_bytes(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    assert parse_query(f"/api/agents?{query}") == expected


def test_a_query_over_the_field_limit_is_refused_in_tornados_words() -> None:
    query = "&".join(["a=1"] * (MAX_QUERY_FIELDS + 1))
    with pytest.raises(ValueError) as tornado_refusal:
        parse_qs_bytes(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    with pytest.raises(BadRequest) as refusal:
        parse_query(f"/?{query}")
    assert refusal.value.message == f"Invalid query string: {tornado_refusal.value}"
    assert len(parse_query("/?" + "&".join(["a=1"] * MAX_QUERY_FIELDS))["a"]) == MAX_QUERY_FIELDS
