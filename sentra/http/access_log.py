"""The access log: one line per HTTP request, with every token in its URL masked."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TextIO

_TOKEN_IN_URL = re.compile(r"((?:^|[?&])(?:token|ticket)=)[^&]*")
access_log = logging.getLogger("sentra.access")
ACCESS_FLUSH_SECONDS = 0.5  # the longest an access line waits to be written
ACCESS_BATCH_LINES = 256
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # what `sentra serve` logs with
_direct: BatchedLogHandler | None = None  # where log_access writes its INFO lines itself (see batch_access_log)


def mask_tokens(uri: str) -> str:
    """The URI with the value of every token= or ticket= parameter replaced by ***."""
    return _TOKEN_IN_URL.sub(r"\1***", uri)


def log_access(status: int, method: str, uri: str, remote_ip: str | None, seconds: float) -> None:
    """Log one answered request: warnings for 4xx, errors for 5xx."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    if "token=" in uri or "ticket=" in uri:
        uri = mask_tokens(uri)
    direct = _direct
    if direct is not None and level == logging.INFO:
        direct.write_info(f"{status} {method} {uri} ({remote_ip}) {1000.0 * seconds:.1f}ms")
    else:
        access_log.log(level, "%d %s %s (%s) %.1fms", status, method, uri, remote_ip, 1000.0 * seconds)


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
        self._second = -1
        self._second_text = ""
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

    def format_info(self, message: str, now: float) -> str:
        """An INFO line of the access log as LOG_FORMAT's formatter writes it, without a LogRecord: making one
        (caller, thread and process lookups, then the formatter) cost a sixth of a one-line POST."""
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        return f"{self._second_text},{int((now - second) * 1000):03d} INFO {access_log.name}: {message}"

    def write_info(self, message: str) -> None:
        """Queue an INFO line of the access log (see format_info)."""
        line = self.format_info(message, time.time())
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            self.pending.append(line)
            full = len(self.pending) >= self.lines
        if full:
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
    global _direct
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    if not handlers:
        return
    formatter = handlers[0].formatter
    batched = BatchedLogHandler(handlers[0].stream, formatter, seconds, lines)
    access_log.addHandler(batched)
    access_log.propagate = False
    if (
        type(formatter) is logging.Formatter
        and formatter._fmt == LOG_FORMAT
        and formatter.datefmt is None
        and formatter.converter is time.localtime
    ):
        _direct = batched
