"""Representation: which variant of a 200 to GET or HEAD a handler sends (its Etag, gzip or not, or a 304), read from
the answer's headers and the request's Accept-Encoding and If-None-Match (RFC 9110 8.8.3, 12.5.3, 13.1.2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from sentra.http.answers import etag_matches
from sentra.http.compression import MIN_SIZE, accepts_gzip, compressible, gzip_etag, gzip_whole, vary


class Representation:
    """Mixed into Handler, which gives the answer's status and headers and the request's headers."""

    if TYPE_CHECKING:
        status: int
        _headers: dict[str, tuple[str, str]]

        def header(self, name: str) -> str | None:
            """A request header's value, or None."""

        def default_headers(self) -> tuple[tuple[str, str], ...]:
            """The headers every answer of this handler carries."""

    def _representation(self, body: bytes, gzipped: Callable[[], bytes] | None) -> bytes:
        """The body a 200 to GET or HEAD sends: its Etag is the body's SHA-1 unless the handler set one, suffixed for
        the gzip variant (RFC 9110 8.8.3); gzip when _gzip_chosen; empty with a 304 when If-None-Match names either
        variant (weakly, or by "*"), as the client may hold either."""
        headers = self._headers
        held = headers.get("etag")
        etag = held[1] if held is not None else f'"{hashlib.sha1(body).hexdigest()}"'
        coded = self._gzip_chosen(len(body))
        headers["etag"] = ("Etag", gzip_etag(etag) if coded else etag)
        sent = self.header("If-None-Match")
        if sent is not None and (etag_matches(etag, sent) or etag_matches(gzip_etag(etag), sent)):
            self.status = 304
            return b""
        if not coded:
            return body
        headers["content-encoding"] = ("Content-Encoding", "gzip")
        return gzipped() if gzipped is not None else gzip_whole(body)

    def _gzip_chosen(self, size: int | None) -> bool:
        """Whether a 200 to GET or HEAD is gzip: a compressible type (whose every such answer says Vary:
        Accept-Encoding, since it may depend on it), at least MIN_SIZE bytes (`size` None: written in parts, so
        always) and a request that accepts gzip."""
        content_type = self._headers.get("content-type")
        if content_type is None or not compressible(content_type[1]):
            return False
        default = next((value for name, value in self.default_headers() if name == "Vary"), None)
        self._headers["vary"] = ("Vary", vary(default))
        if size is not None and size < MIN_SIZE:
            return False
        accepted = self.header("Accept-Encoding")
        return accepted is not None and accepts_gzip(accepted)
