"""The access log: one line per HTTP request, with every token in its URL masked."""

from __future__ import annotations

import logging
import re
import threading
from typing import TextIO

_TOKEN_IN_URL = re.compile(r"((?:^|[?&])(?:token|ticket)=)[^&]*")
access_log = logging.getLogger("sentra.access")
ACCESS_FLUSH_SECONDS = 0.5  # the longest an access line waits to be written
ACCESS_BATCH_LINES = 256


def mask_tokens(uri: str) -> str:
    """The URI with the value of every token= or ticket= parameter replaced by ***."""
    return _TOKEN_IN_URL.sub(r"\1***", uri)


def log_access(status: int, method: str, uri: str, remote_ip: str | None, seconds: float) -> None:
    """Log one answered request: warnings for 4xx, errors for 5xx."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %s (%s) %.1fms", status, method, mask_tokens(uri), remote_ip, 1000.0 * seconds)


class BatchedLogHandler(logging.Handler):
    """Formats each record when it is logged and writes them together: every `seconds`, once `lines` wait, and at
    once for a warning or worse (with everything before it). One write per request cost a quarter of a one-line
    POST; nginx's `access_log ... buffer= flush=` makes the same trade."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter | None, seconds: float, lines: int) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(formatter)
        self.lines = lines
        self.pending: list[str] = []
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(seconds,), name="sentra-log", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self.pending) >= self.lines:
            self.flush()

    def flush(self) -> None:
        """Write what is waiting, in one go."""
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            if not self.pending:
                return
            text = "\n".join(self.pending) + "\n"
            self.pending.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:
                pass  # stderr is gone (closed pipe): nothing can be told of it

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()


def batch_access_log(seconds: float = ACCESS_FLUSH_SECONDS, lines: int = ACCESS_BATCH_LINES) -> None:
    """Send the access log through a BatchedLogHandler writing where the root logger's first handler writes
    (`sentra serve` sets that up with logging.basicConfig)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    if not handlers:
        return
    access_log.addHandler(BatchedLogHandler(handlers[0].stream, handlers[0].formatter, seconds, lines))
    access_log.propagate = False
