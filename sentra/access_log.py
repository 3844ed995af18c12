"""The access log: one line per HTTP request, with every token in its URL masked."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_URL = re.compile(r"((?:^|[?&])(?:token|ticket)=)[^&]*")
access_log = logging.getLogger("sentra.access")


def mask_tokens(uri: str) -> str:
    """The URI with the value of every token= or ticket= parameter replaced by ***."""
    return _TOKEN_IN_URL.sub(r"\1***", uri)


def log_access(status: int, method: str, uri: str, remote_ip: str | None, seconds: float) -> None:
    """Log one answered request: warnings for 4xx, errors for 5xx."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %s (%s) %.1fms", status, method, mask_tokens(uri), remote_ip, 1000.0 * seconds)
