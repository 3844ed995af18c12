"""What a handler reads of a request, read as Tornado's request object and RequestHandler read it: the Host, the query
string and its arguments, the path's arguments, integers, the declared body size and a JSON object body."""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from tornado import httputil

from sentra.errors import BadRequest

if TYPE_CHECKING:
    from sentra.http.exchange import Exchange

MAX_QUERY_FIELDS = 1000  # the fields of a query string, as Tornado's request object limits them
MAX_INT_ARGUMENT = 2**63 - 1  # SQLite's largest integer

_DECIMAL = re.compile(r"-?[0-9]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")  # what Tornado's query arguments turn into spaces
# A Host value as Tornado's HTTPServerRequest takes it (RFC 3986's host characters and a port), without commas.
_HOST = re.compile(r"(?:[\[\]:A-Za-z0-9\-._~!$&'()*+;=]++|%[0-9A-Fa-f]{2})*+")


def check_host(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> None:
    """Refuse (400 in words, then close) a request with no Host, several, or one no host is spelled like: RFC 9112
    3.2 requires it of HTTP/1.1 requests, as Tornado's request object does."""
    hosts = headers.get_list("Host")
    if len(hosts) == 1 and _well_formed_host(hosts[0]):
        return
    if not hosts:
        if start_line.version != "HTTP/1.0":
            raise httputil.HTTPInputError("Missing Host header")
        return
    host = ",".join(hosts)
    if not _well_formed_host(host):
        if "," in host:
            raise httputil.HTTPInputError(f"Multiple host headers not allowed: {host[:100]!r}")
        raise httputil.HTTPInputError(f"Invalid Host header: {host[:100]!r}")


@functools.lru_cache(maxsize=16)  # at most 16 values of 64 KiB (the head's limit) held
def _well_formed_host(host: str) -> bool:
    """Whether `host` is spelled as a Host value. Clients send the same few (the server's names) on every request:
    remembering them spares the match, 0.5% of a one-line POST (callgrind)."""
    return _HOST.fullmatch(host) is not None


def parse_query(uri: str) -> dict[str, list[bytes]]:
    """The query arguments of `uri` as Tornado's request object parses them (with tornado.escape.parse_qs_bytes, which
    Tornado does not document: this is its reading, keeping blank values): fields split at "&", names and values at
    the first "=", "+" as a space, percent escapes decoded, names as latin-1 text; at most MAX_QUERY_FIELDS fields."""
    query = uri.partition("?")[2]
    if not query:
        return {}
    data = query.encode("latin1")
    if 1 + data.count(b"&") > MAX_QUERY_FIELDS:
        raise BadRequest("Invalid query string: Max number of fields exceeded")
    arguments: dict[str, list[bytes]] = {}
    for field in data.split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        key = urllib.parse.unquote_to_bytes(name.replace(b"+", b" ")).decode("latin1")
        arguments.setdefault(key, []).append(urllib.parse.unquote_to_bytes(value.replace(b"+", b" ")))
    return arguments


def argument_values(arguments: dict[str, list[bytes]], name: str) -> list[str]:
    """Every value of a query argument, read as Tornado reads them: UTF-8, control characters as spaces, stripped."""
    values = []
    for raw in arguments.get(name, ()):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Invalid unicode in {name}: {raw[:40]!r}") from None
        values.append(_CONTROL_CHARS.sub(" ", text).strip())
    return values


def path_argument(raw: str, name: str) -> str:
    """A path argument as Tornado handed it to a handler: percent-decoded, then read as UTF-8."""
    if "%" not in raw:
        return raw  # the request line is ASCII (sentra.http.parsing refuses any other), so this is the argument
    data = urllib.parse.unquote_to_bytes(raw)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"Invalid unicode in {name}: {data[:40]!r}") from None


def integer(name: str, raw: str, minimum: int) -> int:
    """The integer a query argument spells in plain decimal, at least `minimum`; BadRequest naming it otherwise."""
    # int() would also take " 5", "1_000" and other scripts' digits; the API documents plain decimal.
    if not _DECIMAL.fullmatch(raw):
        raise BadRequest(f"query parameter {name!r} must be an integer, not {raw[:40]!r}")
    if len(raw) > 40:  # no value in range is that long, and int() refuses thousands of digits
        raise BadRequest(f"query parameter {name!r} must be between {minimum} and {MAX_INT_ARGUMENT}")
    value = int(raw)
    if value < minimum:
        raise BadRequest(f"query parameter {name!r} must be at least {minimum}")
    if value > MAX_INT_ARGUMENT:
        raise BadRequest(f"query parameter {name!r} must be at most {MAX_INT_ARGUMENT}")
    return value


def declared_length(content_length: str | None) -> int | None:
    """The body size a Content-Length value announces, if it is a plain decimal number."""
    if content_length is None or not content_length.isascii() or not content_length.isdigit():
        return None
    # int() refuses thousands of digits; any length that long is far above every limit anyway.
    return int(content_length) if len(content_length) <= 18 else 10**18


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object ({} for none); BadRequest if it is anything else."""
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    try:
        # JSON may spell lone UTF-16 surrogates (\ud800), which no UTF-8 column can store.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the body contains an unpaired UTF-16 surrogate", code="invalid_json") from None
    return value


class RequestReading:
    """What a Handler reads of its request, by name (the Handler gives the request line, headers, connection and
    body it reads them from)."""

    __slots__ = ("_arguments",)

    if TYPE_CHECKING:
        start_line: httputil.RequestStartLine
        request_headers: httputil.HTTPHeaders
        connection: Exchange

        @property
        def body(self) -> bytes:
            """The request body."""

    @property
    def method(self) -> str:
        """The request's method."""
        return self.start_line.method

    @property
    def uri(self) -> str:
        """The request target as sent: path and query."""
        return self.start_line.path

    @property
    def path(self) -> str:
        """The request's path, without the query."""
        return self.start_line.path.partition("?")[0]

    @property
    def remote_ip(self) -> str:
        """The client's address."""
        return str(self.connection.context.remote_ip)

    @property
    def protocol(self) -> str:
        """The scheme the request came over: "http" (TLS ends before Sentra)."""
        return str(self.connection.context.protocol)

    def header(self, name: str) -> str | None:
        """A request header's value (repeated fields joined by commas), or None if it was not sent.

        HTTPHeaders.get raises and catches a KeyError for a name the request did not send, a cost that showed in
        profiles of ingest and of opening streams: the fields are read as a list instead."""
        values = self.request_headers.get_list(name)
        return ",".join(values) if values else None

    def declared_length(self) -> int | None:
        """The body size the Content-Length header announces, if it is a plain decimal number."""
        return declared_length(self.header("Content-Length"))

    @property
    def arguments(self) -> dict[str, list[bytes]]:
        """The query arguments, parsed on first use (BadRequest past Tornado's limit of fields)."""
        try:
            return self._arguments
        except AttributeError:  # not read yet (the slot is left unset, which spares each request a call to set it)
            self._arguments: dict[str, list[bytes]] = parse_query(self.start_line.path)
            return self._arguments

    def get_query_arguments(self, name: str) -> list[str]:
        """Every value of a query argument, read as Tornado reads them: UTF-8, control characters as spaces,
        stripped."""
        return argument_values(self.arguments, name)

    def query_argument(self, name: str) -> str | None:
        """The last value of a query argument, or None."""
        values = self.get_query_arguments(name)
        return values[-1] if values else None

    def int_argument(self, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        """An integer query argument; BadRequest naming it if it is not one."""
        raw = self.query_argument(name)
        return default if raw is None else integer(name, raw, minimum)

    def cookie(self, name: str) -> str | None:
        """A cookie the request carries, or None."""
        sent = self.header("Cookie")
        return (httputil.parse_cookie(sent).get(name) or None) if sent else None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object ({} for none); BadRequest if it is anything else."""
        return json_object(self.body)
