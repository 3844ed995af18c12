"""Static files of the viewer, with security headers that forbid inline script and framing.

The files are read through importlib.resources, so a checkout, an installed wheel and sentra.pyz (a zip) serve
them by the same code; each is read once and served from memory, and its gzip is made once (at level 9) when a
browser first asks for it.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from importlib.resources.abc import Traversable
from pathlib import Path

from sentra.errors import NotFound
from sentra.http.compression import gzip_once
from sentra.http.handler import Handler

# Fixed here rather than taken from the OS: some machines map .js to text/plain, and with nosniff the browser
# then refuses to run the viewer's modules.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

HELD_FILES = 256  # files kept in memory: the viewer has ~20, and an edited file is a new one
_held: dict[str, tuple[bytes, str]] = {}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def find_file(root: Traversable, path: str) -> Traversable:
    """The file at `path` under `root` (index.html for ""); NotFound unless it is plainly one of root's files."""
    segments = (path or "index.html").split("/")
    for segment in segments:
        # Refuses "..", ".", hidden files, "//", a leading "/", drive letters, backslashes and NUL.
        if not segment or segment.startswith(".") or any(char in segment for char in "\\:\0"):
            raise NotFound(f"no such file {path[:200]!r}")
    node = root
    for segment in segments:
        node = node / segment
    if not node.is_file():
        raise NotFound(f"no such file {path[:200]!r}")
    # A symlink among the files may point anywhere on the disk: serve only what really lies under the root.
    if isinstance(node, Path) and isinstance(root, Path) and not node.resolve().is_relative_to(root.resolve()):
        raise NotFound(f"no such file {path[:200]!r}")
    return node


def file_bytes(node: Traversable) -> tuple[bytes, str]:
    """A viewer file's bytes and their SHA-256, read once and kept in memory: read again when a file on disk changes
    (its modification time or size), never for one inside sentra.pyz, which does not."""
    key = str(node)
    if isinstance(node, Path):
        stat = node.stat()
        key = f"{key}\0{stat.st_mtime_ns}\0{stat.st_size}"
    held = _held.get(key)
    if held is None:
        if len(_held) >= HELD_FILES:
            del _held[next(iter(_held))]  # the oldest
        data = node.read_bytes()
        held = _held[key] = (data, hashlib.sha256(data).hexdigest())
    return held


def content_type(name: str) -> str:
    """The Content-Type of a viewer file, by its extension."""
    extension = name[name.rfind(".") :].lower() if "." in name else ""
    return CONTENT_TYPES.get(extension) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class StaticHandler(Handler):
    """The viewer at /: index.html for /, its files by name, never anything outside them; JSON 404 otherwise."""

    def get(self, url: str) -> None:
        """The file (gzip when asked for), or 304 when the browser's copy is current (HEAD: the same headers). The
        argument is `url`, the name Tornado gave an unnamed path argument, so a path that is not UTF-8 is refused in
        the same words."""
        node = find_file(self.services.viewer, url)
        data, digest = file_bytes(node)
        self.set_header("Content-Type", content_type(node.name))
        # The viewer changes with releases; revalidate rather than cache for a day.
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Etag", f'"{digest}"')
        # A 304 when the browser holds it; gzip (compressed once, kept in memory) when it asks for it.
        self.end(data, functools.partial(gzip_once, digest, data))

    def default_headers(self) -> tuple[tuple[str, str], ...]:
        """Every answer's headers (an allowed origin may import sentra.js), then those that guard the viewer's
        pages: on its errors, OPTIONS and 405s too."""
        return (*super().default_headers(), ("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"))
