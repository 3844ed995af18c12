"""Reading a request's head: the request line, the header block and the framing headers (Content-Length,
Transfer-Encoding, Connection), as Tornado reads them but faster, and stricter where llhttp refuses what Tornado
reads. InputError carries the answer to a request that cannot be read.

The integers of framing (a Content-Length, a chunk's size) and the Transfer-Encoding rule are read as Tornado's
HTTP1Connection reads them, by copies of its helpers here: tornado.http1connection's parse_int, parse_hex_int and
is_transfer_encoding_chunked are not part of its documented API (tests/test_http_framing.py compares the copies with
them)."""

from __future__ import annotations

import re

from tornado import httputil

# The start of an absolute-form target as llhttp reads one: a scheme of letters, "://", and an authority of RFC 3986's
# characters up to the path, the query or the end.
_ABSOLUTE_FORM = re.compile(r"[A-Za-z]+://[A-Za-z0-9._~!$&'()*+,;=:@%\[\]-]*(?:[/?]|\Z)")
# A header line as Tornado's HTTPHeaders.parse reads it without complaint: a token, a colon, and a value of visible
# ASCII with spaces and tabs only inside it (the whitespace around it is dropped).
_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r"(?:[!-~]++(?:[ \t]++[!-~]++)*+)?"
_FIELD_LINE = re.compile(rf"({_NAME}):[ \t]*({_VALUE})[ \t]*\r?\n")
# The header block after the request line, from the line feed that ends it to the blank line, of such lines only.
_PLAIN_FIELDS = re.compile(rf"\n(?:{_NAME}:[ \t]*{_VALUE}[ \t]*\r?\n)*\r?\n")
_FOLDED = re.compile(r"(?:^|\n)[ \t]")  # an obs-fold line (RFC 9112 5.2)
# Digits alone: int() would also take a sign, spaces, underscores and non-ASCII digits, which framing must refuse.
_DIGITS = re.compile(r"[0-9]+")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")


class InputError(httputil.HTTPInputError):
    """A request Sentra cannot read: answered with `status` (Tornado's own HTTPInputError: 400) and the message,
    then the connection closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_headers(text: str) -> httputil.HTTPHeaders:
    """The header block after the request line (from the line feed that ends it) as HTTPHeaders.parse reads it.

    HTTPHeaders.parse checks each line with a few regular expressions and calls in Python, a twentieth of a
    one-line POST. A block of plain lines (the usual case) is checked and split by two regular expressions here;
    anything else (folded lines, control or non-ASCII bytes, no colon) goes to HTTPHeaders.parse, which answers
    it as before.
    """
    if _PLAIN_FIELDS.fullmatch(text) is None:
        if _FOLDED.search(text) is not None:
            # Tornado before 6.6 unfolds such lines (a first one even into the request line's last header):
            # refused here whatever the Tornado release, as RFC 9112 5.2 allows and 6.6 does.
            raise httputil.HTTPInputError("header line cannot start with whitespace, folding not supported")
        return httputil.HTTPHeaders.parse(text)
    headers = httputil.HTTPHeaders()
    for name, value in _FIELD_LINE.findall(text):
        # Setting a first value skips the name and value checks `add` would repeat (the regex made them).
        if name in headers:
            headers.add(name, value)
        else:
            headers[name] = value
    return headers


def parse_request_line(line: str) -> httputil.RequestStartLine:
    """The request line as Tornado's parse_request_start_line reads it, less what it lets through and llhttp refuses
    (found by tests/test_http1_differential.py): versions other than HTTP/1.0 and HTTP/1.1, and targets that are no
    path, no "*" and no absolute URL, or not ASCII."""
    start_line = httputil.parse_request_start_line(line)
    version, target = start_line.version, start_line.path
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        # Tornado would read HTTP/1.2 to HTTP/1.9 by HTTP/1.0's rules of keep-alive, RFC 9110 2.5 by HTTP/1.1's.
        raise InputError(f"Unsupported HTTP version {version}: send HTTP/1.1 or HTTP/1.0")
    if not (target[0] in "/*" or _ABSOLUTE_FORM.match(target)) or not target.isascii():
        # RFC 9112 3.2: a server SHOULD answer 400 to a target in none of the forms, which are all ASCII. Tornado
        # reads any visible bytes, obs-text too.
        raise InputError(
            f"Invalid request target {target[:100]!r}: send a path, an absolute URL or *, in ASCII"
            " (percent-encode other bytes)"
        )
    return start_line


def parse_int(text: str) -> int:
    """A non-negative decimal integer written with digits alone; ValueError for anything else."""
    if _DIGITS.fullmatch(text) is None:
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def parse_hex_int(text: str) -> int:
    """A non-negative hexadecimal integer written with hex digits alone (no 0x); ValueError for anything else."""
    if _HEX_DIGITS.fullmatch(text) is None:
        raise ValueError(f"not a hexadecimal integer: {text!r}")
    return int(text, 16)


def header_value(headers: httputil.HTTPHeaders, name: str) -> str | None:
    """headers.get(name) (repeated fields joined by commas), without the KeyError HTTPHeaders raises and catches
    inside for a name the request did not send: a cost that showed in profiles of opening streams."""
    # Kept for speed: for a name not sent (Expect, Connection: most requests) HTTPHeaders.get takes 420 ns, this 150.
    values = headers.get_list(name)
    return ",".join(values) if values else None


def is_chunked(headers: httputil.HTTPHeaders) -> bool:
    """Whether the body is chunked, decided as Tornado decides it: Transfer-Encoding exactly "chunked" (in any case,
    in one field), and an InputError (400) for any other transfer coding or for one beside Content-Length, which
    front servers frame differently (request smuggling)."""
    codings = headers.get_list("Transfer-Encoding")
    if not codings:
        return False
    if headers.get_list("Content-Length"):
        raise InputError("Message with both Transfer-Encoding and Content-Length")
    coding = ",".join(codings)
    if coding.lower() == "chunked":
        return True
    raise InputError(f"Unsupported Transfer-Encoding {coding}")


def content_length(headers: httputil.HTTPHeaders) -> int | None:
    """The body's length by Content-Length as Tornado reads it, None without one; InputError for a value Tornado or
    llhttp refuses, or beside Transfer-Encoding. A list of equal values is left in the headers as one value."""
    length_header = header_value(headers, "Content-Length")
    if length_header is None:
        return None
    if headers.get_list("Transfer-Encoding"):
        raise InputError("Message with both Transfer-Encoding and Content-Length")
    if "," in length_header:
        # Only spaces and tabs may follow a comma, as Tornado splits it: "\s" would also take "\xa0" or
        # "\x85" (obs-text), and read "5,\xa05" as 5 where Tornado and llhttp refuse it.
        pieces = re.split(r",[ \t]*", length_header)
        if any(piece != pieces[0] for piece in pieces):
            raise InputError(f"Multiple unequal Content-Lengths: {length_header!r}")
        length_header = headers["Content-Length"] = pieces[0]
    try:
        return parse_int(length_header)
    except ValueError:
        raise InputError(f"Only integer Content-Length is allowed: {length_header}") from None


def can_keep_alive(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> bool:
    """Whether the connection may read another request after this one, by its version and framing headers."""
    connection = header_value(headers, "Connection")
    if connection is not None:
        connection = connection.lower()
        # RFC 9112 9.6: a "close" option anywhere in the list closes (Tornado closes only for the value "close";
        # llhttp reads the list, and a front server reading it so would see a connection Sentra keeps reading).
        if "close" in connection and "close" in {option.strip(" \t") for option in connection.split(",")}:
            return False
    if start_line.version == "HTTP/1.1":
        return True
    if headers.get_list("Transfer-Encoding"):
        # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is read, but its framing is suspect (an HTTP/1.0
        # hop may have kept part of it), so the connection closes after it. Tornado and llhttp keep it open.
        return False
    if headers.get_list("Content-Length") or start_line.method in ("HEAD", "GET"):
        return connection == "keep-alive"
    return False
