"""Static files of the viewer, with security headers that forbid inline script and framing."""

from __future__ import annotations

import tornado.web

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class StaticHandler(tornado.web.StaticFileHandler):
    """static/ at /, index.html for /, never a file outside static/."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def set_extra_headers(self, path: str) -> None:
        # The viewer changes with releases; revalidate rather than cache for a day.
        self.set_header("Cache-Control", "no-cache")
