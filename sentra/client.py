"""Sentra's Python client: stream an agent's log lines to a Sentra server. Standard library only.

This one module is all an agent needs: copy it into a project to use it without installing Sentra.

    from sentra.client import Client

    with Client().agent("nightly-42", name="nightly eval", labels={"team": "ml"}) as agent:
        agent.info("loaded the data set", rows=1200)
    # completed on success; failed, with the traceback logged as an ERROR line, if the block raises

    import logging
    from sentra.client import SentraHandler

    logging.getLogger().addHandler(SentraHandler(agent_id="nightly-42"))

The server URL and token default to $SENTRA_URL and $SENTRA_TOKEN, the agent id to $SENTRA_AGENT (else a new
one is made up). Nothing here ever raises into the agent because the network failed.

Delivery
    log() encodes the line, stamped with time.time() at the call, and appends it to an in-memory buffer; it
    never waits on the network. One background thread per agent sends the buffer in batches over one
    keep-alive HTTP connection: when `batch_lines` lines (default 1,000) are waiting, or `flush_interval`
    (default 0.1 s) after the first of them arrived, whichever comes first. One batch is in flight at a time,
    so lines arrive in the order they were logged. flush() and close() block until everything logged before
    the call is acknowledged, or their timeout expires (they then return False).

Long messages
    Sentra refuses a line above its `limits.max_line_size` (message and fields together, in UTF-8 bytes). A
    message too long for one line is sent as consecutive lines in one request (in several only if they are
    more than `limits.max_body_size`), each with the same level, time, source and fields: their messages,
    joined in order, are the message. The cut never falls inside a character (split_message() is the rule;
    `sentra run` cuts over-long output lines with it too). Fields too large to leave half a line for the
    message are not split around: such a line is refused, and reported.

Server limits
    Before its first request, the background thread reads the server's limits from GET /healthz, once per
    Client (a 2 s timeout; retried while the server cannot be reached at all, as a POST would be). Messages are
    split by the `max_line_size` it advertises, and batches kept within its `max_lines_per_request` and
    `max_body_size`. `Client(max_line_size=...)` overrides the advertised size; a server that does not answer
    in time or advertises no limits (an older Sentra) leaves 256 KiB. log() never waits for this: lines logged
    before the limits were known were split by the default, and are split again when they are sent if the
    server's size is smaller.

Retries
    Every batch carries an Idempotency-Key, a fresh UUID reused on each retry of that batch, so a batch the
    server stored but could not acknowledge is never stored twice. Connection errors, timeouts, 408, 429 and
    5xx answers are retried for as long as the agent is open, with exponential backoff from 0.05 s up to
    `retry_cap` (default 2 s), or after the Retry-After the server asks for. Any other 4xx is permanent: a
    line the server refuses (too large, say) is found by splitting the batch and dropped alone; a refusal of
    the whole request (bad token, agent owned by another user or already finished) drops the batch. Each
    kind of refusal is reported once on the `sentra.client` logger and kept in `Agent.last_error`.

Buffer policy
    The buffer holds at most `max_buffer` lines (default 100,000) and `max_buffer_bytes` bytes (default
    64 MiB), so a dead server cannot eat the agent's memory. When it is full, the oldest waiting line is
    dropped to make room for the new one, and the drops are counted (`Agent.dropped`). When the server
    answers again, one WARNING line from source "sentra.client" is sent in the dropped lines' place, saying
    how many were lost.

Steps
    `with agent.step("open google.com"):` tags every line sent inside the block, by any agent or SentraHandler of
    the same thread or asyncio task, and the line of a file attached in it, with `fields.step` (a line that has
    its own `step` field keeps it). If the block raises, an ERROR line "step failed: TimeoutError: …" with
    `fields.step_status` = "failed" goes first; the exception goes on. The viewer groups a step's lines under one
    header.

Stopping
    Someone may ask a run to stop (POST /api/agents/{id}/stop, the viewer's Stop button). Every ingest answer for
    the agent then says so, and `Agent.stop_requested` becomes True (`stop_requested_by` names who asked). Set
    `agent.on_stop = callback` to be told: callback(user) is called once, from a background thread of the client.
    With a callback set, an agent that has sent nothing for a second reads its record (GET /api/agents/{id})
    every STOP_POLL seconds, so the request is seen even while the run logs nothing. Stopping is the run's own
    business: the client only tells; `sentra run` interrupts its command.

Attachments
    `agent.attach("step-3.png")` (a path, or bytes with `name=`) uploads a file to the run, after the lines logged
    before it, and returns the stored record; its type is guessed from the name unless `content_type=` is given.
    SentraHandler sends a PNG, JPEG, GIF or WebP image given as bytes in `extra` (`extra={"screenshot": png}`) with
    its line, as a data URL the server stores as an attachment named after the key: logging never waits for it.

Shutting down
    Agents still open when the interpreter exits are flushed for up to 5 s in all; an Agent's status stays
    "running", a SentraHandler's run is finished (below). Then every agent with lines that did not reach the
    server (still waiting, dropped, or refused) gets one line on stderr: "sentra: 12 lines for agent X could
    not be delivered to http://…: Connection refused". A line split into pieces counts once.

Finishing the run of a SentraHandler (unless `finish_run=False`)
    At exit the run is marked completed, or failed with a reason when the process ends with
    - an uncaught exception in the main thread (seen through sys.excepthook): its traceback is sent as an
      ERROR line from source "traceback", and "ValueError: boom" is the reason;
    - sys.exit(N) called in the main thread with N not 0 or None: "exit code N" (a string S: "exit code 1: S").
      atexit cannot see an exit code, so sys.exit is wrapped to note it; `raise SystemExit(N)`, exit() and
      quit() bypass sys.exit and end the run completed, and a sys.exit(N) whose SystemExit is caught still
      fails it. A process killed by a signal or ended with os._exit() runs no exit code: the run stays running.
    An uncaught exception in another thread (threading.excepthook) is sent as an ERROR line at once; the
    process goes on, and its end decides the status. Closing the handler yourself before exit stops sending
    and leaves the status as it is. The hooks call the ones they replace.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import contextvars
import http.client
import json
import logging
import mimetypes
import os
import random
import re
import sys
import threading
import time
import traceback
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

__all__ = ["Agent", "Client", "SentraError", "SentraHandler", "level_name", "split_message"]

DEFAULT_URL = "http://127.0.0.1:8765"
EXIT_FLUSH_TIMEOUT = 5.0
STOP_POLL = 1.0  # seconds between reads of an idle agent's record, looking for a stop request (with on_stop)
LIMITS_TIMEOUT = 2.0  # for GET /healthz: a server that takes longer leaves the default limits
MAX_LINE_SIZE = 256 * 1024  # the server's default limits.max_line_size: message and fields, in UTF-8 bytes
LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG", "ERR": "ERROR"}
_AGENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_SOURCE = 256
_MAX_REASON = 4096

log = logging.getLogger("sentra.client")
# The step a block of code is in (Agent.step): a context variable, so threads and asyncio tasks each have theirs.
_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("sentra_step", default=None)


class SentraError(Exception):
    """A request Sentra refused, or a server that could not be reached; the message is one line."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @classmethod
    def from_response(cls, status: int, body: bytes, what: str) -> SentraError:
        """The error for a non-2xx answer, with the server's own message when it sent one."""
        code: str | None = None
        message = ""
        try:
            error = json.loads(body)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace").strip().splitlines()[0][:200] if body.strip() else ""
        text = f"{what}: {message} (HTTP {status})" if message else f"{what}: HTTP {status}"
        return cls(text, status=status, code=code)


def level_name(level: str | int) -> str:
    """The upper-case level name Sentra stores, from a name in any case or a numeric logging level."""
    if isinstance(level, bool):
        raise TypeError("level must be a name such as 'INFO' or a number such as 20")
    if isinstance(level, int):
        name = "DEBUG"
        for candidate, number in LEVELS.items():
            if level >= number:
                name = candidate
        return name
    upper = str(level).strip().upper()
    upper = _LEVEL_ALIASES.get(upper, upper)
    if upper in LEVELS:
        return upper
    if upper.isdigit():
        return level_name(int(upper))
    raise ValueError(f"unknown level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")


def _new_agent_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def reason_text(exc: BaseException) -> str:
    """A short reason for a network error: "Connection refused", "timed out"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def encode_line(ts: float, level: str, message: str, source: str, fields: Mapping[str, Any]) -> bytes:
    """One NDJSON line; fields that JSON cannot hold are sent as their str() (or repr())."""
    obj: dict[str, Any] = {"ts": ts, "level": level, "message": message}
    if source:
        obj["source"] = source[:_MAX_SOURCE]
    if fields:
        obj["fields"] = dict(fields)
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    except Exception:  # a circular structure, NaN, or a __str__ that raises: never fail the caller
        obj["fields"] = {str(key): _safe_repr(value) for key, value in fields.items()}
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # "replace" turns a lone surrogate into "?", which Sentra would otherwise refuse.
    return text.encode("utf-8", "replace")


def utf8_cut(data: bytes | memoryview, limit: int) -> int:
    """How many of the first `limit` bytes of UTF-8 `data` to keep so that no character is cut in two."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    # A byte 0b10xxxxxx continues a character: back off to its first byte (at most 3 back in valid UTF-8).
    for _ in range(3):
        if cut > 1 and data[cut] & 0xC0 == 0x80:
            cut -= 1
    return cut if data[cut] & 0xC0 != 0x80 else limit  # not UTF-8 there: any cut will do


def split_message(message: str, max_bytes: int) -> list[str]:
    """`message` as consecutive pieces of at most `max_bytes` UTF-8 bytes (at least 4), cut between characters.

    Joined in order, the pieces are `message`: the rule by which a long message becomes several lines.
    """
    limit = max(4, max_bytes)
    if len(message) * 4 <= limit:  # four bytes at most per character: short enough without encoding
        return [message]
    # surrogatepass sizes a lone surrogate as 3 bytes (the line carries it as "?", 1 byte) and gives it back.
    data = memoryview(message.encode("utf-8", "surrogatepass"))
    if len(data) <= limit:
        return [message]
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = start + utf8_cut(data[start:], limit)
        pieces.append(bytes(data[start:end]).decode("utf-8", "surrogatepass"))
        start = end
    return pieces


def encode_pieces(
    ts: float, level: str, message: str, source: str, fields: Mapping[str, Any], max_line_size: int
) -> bytes:
    """The line as NDJSON: one line, or consecutive lines whose messages join to `message` when Sentra would
    find it above `max_line_size` (as the server measures: the message and the fields as JSON, in UTF-8)."""
    line = encode_line(ts, level, message, source, fields)
    # The server's size is at most twice the line's (its fields JSON has a space after each ':' and ','),
    # so a line up to half the limit needs no measuring.
    if len(line) <= max_line_size // 2:
        return line
    budget = max_line_size - _fields_size(line)
    if budget < max_line_size // 2:
        return line  # the fields alone fill the line: pieces would repeat them, and each could be refused
    pieces = split_message(message, budget)
    if len(pieces) == 1:
        return line
    return b"\n".join(encode_line(ts, level, piece, source, fields) for piece in pieces)


def refit_pieces(entry: bytes, max_line_size: int) -> bytes:
    """`entry` (what encode_pieces made of one message, by a larger limit) made again by `max_line_size`, when
    one of its lines is above it: the message is joined and split by the same rule."""
    if len(entry) <= max_line_size // 2:
        return entry
    pieces = [json.loads(piece) for piece in entry.split(b"\n")]
    if all(_line_size(piece) <= max_line_size for piece in pieces):
        return entry
    first = pieces[0]
    message = "".join(piece["message"] for piece in pieces)
    source, fields = first.get("source", ""), first.get("fields") or {}
    return encode_pieces(first["ts"], first["level"], message, source, fields, max_line_size)


def _fields_size(line: bytes) -> int:
    """The size Sentra gives an encoded line's fields: its own JSON of them, in UTF-8 bytes."""
    return _json_size(json.loads(line).get("fields"))


def _line_size(line: Mapping[str, Any]) -> int:
    """The size Sentra gives a decoded line: its message and its fields' JSON, in UTF-8 bytes."""
    return len(line["message"].encode("utf-8")) + _json_size(line.get("fields"))


def _json_size(fields: Any) -> int:
    return len(json.dumps(fields, ensure_ascii=False).encode("utf-8")) if fields else 0


def advertised_limits(status: int, body: bytes) -> dict[str, int]:
    """The ingest limits in a /healthz answer: the positive integers among `limits`, {} from a server without."""
    if status != 200:
        return {}
    try:
        limits = json.loads(body)["limits"]
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(limits, dict):
        return {}
    return {
        name: value
        for name in ("max_line_size", "max_body_size", "max_lines_per_request")
        if type(value := limits.get(name)) is int and value > 0
    }


IMAGE_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


def image_type(data: bytes) -> str | None:
    """The type of a PNG, JPEG, GIF or WebP image by its first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_url(data: bytes) -> Any:
    """An image as the data URL Sentra stores as an attachment at ingest; other bytes as they are."""
    kind = image_type(data)
    return data if kind is None else f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class Client:
    """Where Sentra is and how to authenticate; makes Agent handles and plain API requests."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        batch_lines: int = 1000,
        batch_bytes: int = 1 << 20,
        flush_interval: float = 0.1,
        max_buffer: int = 100_000,
        max_buffer_bytes: int = 64 << 20,
        retry_cap: float = 2.0,
        max_line_size: int | None = None,
    ) -> None:
        raw = (url or os.environ.get("SENTRA_URL") or DEFAULT_URL).strip()
        parts = urlsplit(raw)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"not an http:// or https:// URL: {raw!r}")
        # Without user:password@, ?query or #fragment: the URL appears in messages, and a token must not.
        self.url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}".rstrip("/")
        self.token = token if token is not None else os.environ.get("SENTRA_TOKEN") or None
        self.timeout = timeout
        self.batch_lines = max(1, batch_lines)
        self.batch_bytes = max(1, batch_bytes)
        self.flush_interval = flush_interval
        self.max_buffer = max(1, max_buffer)
        self.max_buffer_bytes = max(1, max_buffer_bytes)
        self.retry_cap = retry_cap
        # The size messages are split by: the one given, else the server's once read, else the default.
        self.max_line_size = MAX_LINE_SIZE if max_line_size is None else max(4, max_line_size)
        self._line_size_given = max_line_size is not None
        # The server's limits, from /healthz: None until read, {} if it advertises none.
        self.server_limits: dict[str, int] | None = None
        self._limits_lock = threading.Lock()
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._base = parts.path.rstrip("/")

    @property
    def batch_caps(self) -> tuple[int, int]:
        """Most lines and bytes in one request: `batch_lines` and `batch_bytes`, within the server's limits."""
        limits = self.server_limits or {}
        lines = min(self.batch_lines, limits.get("max_lines_per_request", self.batch_lines))
        return lines, min(self.batch_bytes, limits.get("max_body_size", self.batch_bytes))

    def read_limits(self) -> None:
        """Read the server's limits from GET /healthz unless they were read; raises OSError if the server cannot
        be reached. An answer without limits, or none within LIMITS_TIMEOUT, leaves the defaults for good."""
        with self._limits_lock:  # the client's agents start together: one of them asks, the others wait
            if self.server_limits is not None:
                return
            conn = self.connect(min(self.timeout, LIMITS_TIMEOUT))
            try:
                conn.request("GET", self.path("/healthz"), headers=self.headers())
                response = conn.getresponse()
                limits = advertised_limits(response.status, response.read())
                if "max_line_size" in limits and not self._line_size_given:
                    self.max_line_size = limits["max_line_size"]
                self.server_limits = limits
            except http.client.RemoteDisconnected:
                raise  # closed without an answer, as a server that is stopping does: an OSError, tried again
            except (TimeoutError, http.client.HTTPException):
                self.server_limits = {}  # it took the connection and did not answer, or not in HTTP
            finally:
                conn.close()

    def connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A new (not yet opened) connection to the server."""
        seconds = self.timeout if timeout is None else timeout
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=seconds)
        return http.client.HTTPConnection(self._host, self._port, timeout=seconds)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Request headers: the bearer token (if any) plus `extra`."""
        headers = {"User-Agent": "sentra-client/1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def path(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The request target for an API path, under the URL's own path prefix."""
        target = self._base + path
        if query:
            target += "?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        return target

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One blocking API call (a JSON `payload`, or `data` of `content_type`); the decoded JSON answer, or
        SentraError in one readable line."""
        body = data if data is not None else None if payload is None else json.dumps(payload).encode()
        extra = {"Content-Type": content_type} if body is not None else {}
        conn = self.connect()
        try:
            conn.request(method, self.path(path, query), body=body, headers=self.headers(extra))
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise SentraError(f"cannot reach Sentra at {self.url}: {reason_text(exc)}") from None
        finally:
            conn.close()
        if response.status >= 300:
            raise SentraError.from_response(response.status, data, f"{method} {path}")
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise SentraError(f"{method} {path}: the answer is not JSON; is {self.url} a Sentra server?") from None

    def agent(
        self,
        id: str | None = None,
        *,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> Agent:
        """A handle that streams lines to agent `id` ($SENTRA_AGENT or a new id if None).

        With `create`, the background thread first creates the agent with `name` and `labels`
        (or sets them on an agent that already exists).
        """
        return self._agent(id, name=name, labels=labels, create=create, hold=False)

    def _agent(self, id: str | None, *, name: str, labels: Mapping[str, str] | None, create: bool, hold: bool) -> Agent:
        """agent(); with `hold`, nothing is sent before the first line, flush() or close()."""
        agent_id = id or os.environ.get("SENTRA_AGENT") or _new_agent_id()
        if not _AGENT_ID.fullmatch(agent_id):
            raise ValueError(f"invalid agent id {agent_id!r}: use 1-128 characters of A-Z a-z 0-9 . _ : -")
        shipper = _Shipper(self, agent_id, name=name, labels=dict(labels or {}), create=create, hold=hold)
        shipper.start()
        return Agent(self, agent_id, shipper)


class Agent:
    """One agent run: log lines to it, then complete() or fail() it. Usable as a context manager."""

    def __init__(self, client: Client, agent_id: str, shipper: _Shipper) -> None:
        self.client = client
        self.id = agent_id
        self._shipper = shipper
        self._closed_warned = False

    @property
    def url(self) -> str:
        """The agent's API URL."""
        return f"{self.client.url}/api/agents/{self.id}"

    @property
    def last_error(self) -> str | None:
        """The last refusal by the server (bad token, line too large…), or None."""
        return self._shipper.error

    @property
    def dropped(self) -> int:
        """Lines dropped because the buffer was full."""
        return self._shipper.dropped_total

    @property
    def rejected(self) -> int:
        """Lines the server refused for good."""
        return self._shipper.rejected_total

    @property
    def pending(self) -> int:
        """Lines logged but not yet acknowledged, refused or dropped."""
        return self._shipper.pending

    @property
    def closed(self) -> bool:
        """True once close(), complete() or fail() was called: lines logged after it are not sent."""
        return self._shipper.closing

    @property
    def reachable(self) -> bool | None:
        """Whether the last request reached the server (None before the first one)."""
        return self._shipper.reachable

    @property
    def stop_requested(self) -> bool:
        """True once the server said someone asked this run to stop."""
        return self._shipper.stop_requested_by is not None

    @property
    def stop_requested_by(self) -> str | None:
        """Who asked this run to stop, once the server said so."""
        return self._shipper.stop_requested_by

    @property
    def on_stop(self) -> Callable[[str], None] | None:
        """Called once, with the user who asked, when a stop request is seen (see "Stopping" above)."""
        return self._shipper.on_stop

    @on_stop.setter
    def on_stop(self, callback: Callable[[str], None] | None) -> None:
        self._shipper.watch_stop(callback)

    def log(self, message: Any, level: str | int = "INFO", *, source: str = "", **fields: Any) -> None:
        """Queue one line; returns at once. `fields` are stored with the line as JSON."""
        self.emit(level_name(level), message if isinstance(message, str) else str(message), source, fields)

    def emit(self, level: str, message: str, source: str, fields: Mapping[str, Any], ts: float | None = None) -> None:
        """Queue an already-normalised line (upper-case level) stamped `ts` (default: now); a message too long
        for one line goes as consecutive lines (see split_message)."""
        stamp = time.time() if ts is None else ts
        step = _current_step.get()
        if step is not None and "step" not in fields:
            fields = {**fields, "step": step}
        limit = self.client.max_line_size
        line = encode_pieces(stamp, level, message, source, fields, limit)
        if not self._shipper.add(line, limit) and not self._closed_warned:
            self._closed_warned = True
            log.warning("agent %s is closed; lines logged after close() are not sent", self.id)

    def debug(self, message: Any, **fields: Any) -> None:
        """Log at DEBUG."""
        self.log(message, "DEBUG", **fields)

    def info(self, message: Any, **fields: Any) -> None:
        """Log at INFO."""
        self.log(message, "INFO", **fields)

    def warning(self, message: Any, **fields: Any) -> None:
        """Log at WARNING."""
        self.log(message, "WARNING", **fields)

    def error(self, message: Any, **fields: Any) -> None:
        """Log at ERROR."""
        self.log(message, "ERROR", **fields)

    def critical(self, message: Any, **fields: Any) -> None:
        """Log at CRITICAL."""
        self.log(message, "CRITICAL", **fields)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Tag every line sent inside the block (by any agent or SentraHandler) with `fields.step` = `name`; if the
        block raises, send an ERROR line "step failed: ValueError: boom" with `fields.step_status` "failed", and
        re-raise."""
        token = _current_step.set(str(name))
        try:
            yield
        except BaseException as exc:
            self.emit("ERROR", f"step failed: {exception_summary(exc)}", "", {"step_status": "failed"})
            raise
        finally:
            _current_step.reset(token)

    def attach(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        content_type: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (a path, or bytes) to the run, after the lines logged before it; the stored record
        {"id", "name", "content_type", "size", "url", "seq"}. SentraError if it was not stored."""
        if isinstance(file, bytes | bytearray | memoryview):
            data = bytes(file)
            name = name or "attachment" + IMAGE_EXTENSIONS.get(image_type(data) or "", "")
        else:
            data = Path(file).read_bytes()
            name = name or Path(file).name
        kind = content_type or mimetypes.guess_type(name)[0] or image_type(data) or "application/octet-stream"
        self.flush()
        # Inside agent.step(), the file's line is one of the step's lines.
        query = {"name": name, "message": message, "step": _current_step.get()}
        path = f"/api/agents/{self.id}/attachments"
        return dict(self.client.request("POST", path, query=query, data=data, content_type=kind))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until every line logged so far is acknowledged; False if `timeout` expired first."""
        return self._shipper.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush and stop the background thread; the agent stays running. False if lines were left unsent."""
        return self._shipper.close(timeout)

    def complete(self, timeout: float | None = 30.0) -> bool:
        """Send every line, then mark the agent completed; False if that did not happen within `timeout`."""
        return self._shipper.close(timeout, final={"status": "completed"})

    def fail(self, reason: str = "", timeout: float | None = 30.0) -> bool:
        """Send every line, then mark the agent failed with `reason`; False if not done within `timeout`."""
        final = {"status": "failed", "reason": reason[:_MAX_REASON]} if reason else {"status": "failed"}
        return self._shipper.close(timeout, final=final)

    def undelivered_report(self) -> str | None:
        """One line saying how many lines did not reach the server and why, or None if all did; once this
        was asked for, the report at exit leaves this agent out."""
        return self._shipper.undelivered_report()

    def __enter__(self) -> Agent:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(exc)

    def end(self, exc: BaseException | None = None, reason: str = "", timeout: float | None = 30.0) -> bool:
        """Complete the run, or fail it: with `exc`, its traceback is logged as an ERROR line and
        "ValueError: boom" is the reason; else with `reason` if one is given. What `with agent:` does."""
        if exc is not None:
            self.emit("ERROR", traceback_text(exc), "traceback", {})
            reason = exception_summary(exc)
        return self.fail(reason, timeout) if reason else self.complete(timeout)


def traceback_text(exc: BaseException) -> str:
    """The traceback Python would print for `exc`, without the final newline."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def exception_summary(exc: BaseException) -> str:
    """The last line of the traceback: "ValueError: boom", or just "KeyboardInterrupt"."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Shipper:
    """The background sender of one agent: buffer, batching, retries, and the final status."""

    def __init__(
        self, client: Client, agent_id: str, *, name: str, labels: dict[str, str], create: bool, hold: bool
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self._agent_name = name
        self._labels = labels
        self._create = create
        self._hold = hold  # send nothing before the first line, flush() or close()
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._added = 0  # lines ever added
        self._head = 0  # index of the first line still in the queue
        self._inflight = 0  # real lines of the batch being sent, not yet settled
        self._refit_below = 0  # lines with a lower index may be split by more than the server's max_line_size
        self._split_by = client.max_line_size  # as the sender last saw it, for add() to compare
        self._lines_cap = client.batch_lines  # lines that make a batch due, as the sender last saw it
        self._dropped = 0  # drops not yet reported to the server
        self._flush_waiters = 0
        self._closing = False
        self._abandoned = False
        self._stopped = False
        self._final: dict[str, str] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._reported: set[str] = set()
        self._told_undelivered = False
        self.dropped_total = 0
        self.rejected_total = 0
        self.error: str | None = None
        self.problem: str | None = None  # why the last line or request did not get through
        self.reachable: bool | None = None
        self.stop_requested_by: str | None = None
        self.on_stop: Callable[[str], None] | None = None
        self._answered_at = 0.0  # monotonic time of the last ingest answer, which says whether to stop
        self._thread = threading.Thread(target=self._run, name=f"sentra-client-{agent_id}", daemon=True)
        _live.add(self)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def is_alive(self) -> bool:
        """True while the background thread runs."""
        return self._thread.is_alive()

    @property
    def closing(self) -> bool:
        """True once close() was called, or the thread stopped."""
        with self._cond:
            return self._closing or self._stopped

    # ---- the calling side ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Lines added but not settled."""
        with self._cond:
            return self._added - self._head + self._inflight

    def add(self, line: bytes, split_by: int) -> bool:
        """Queue a line whose message was split by `split_by`, dropping the oldest if the buffer is full; False
        once closed."""
        with self._cond:
            if self._closing or self._stopped:
                return False
            self._queue.append(line)
            self._queued_bytes += len(line)
            self._added += 1
            if split_by > self._split_by:  # the limit was learned while the line was being encoded
                self._refit_below = self._added
            dropped = False
            while len(self._queue) > self.client.max_buffer or (
                self._queued_bytes > self.client.max_buffer_bytes and len(self._queue) > 1
            ):
                self._queued_bytes -= len(self._queue.popleft())
                self._head += 1
                self._dropped += 1
                self.dropped_total += 1
                dropped = True
            size = len(self._queue)
            if size == 1 or size == self._lines_cap or (dropped and self._flush_waiters):
                self._cond.notify_all()
        return True

    def flush(self, timeout: float | None) -> bool:
        """Wait until every line added before the call is settled."""
        with self._cond:
            target = self._added
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                # Abandoned (a close() timed out): nothing more will be sent, however long the thread stays
                # blocked on the network, so do not wait for it.
                self._cond.wait_for(lambda: self._settled_upto() >= target or self._stopped or self._abandoned, timeout)
            finally:
                self._flush_waiters -= 1
            return self._settled_upto() >= target

    def close(self, timeout: float | None, final: dict[str, str] | None = None) -> bool:
        """Send what is queued (then `final`, a PATCH body), stop the thread; False if cut short."""
        with self._cond:
            if final is not None and not self._closing:
                self._final = final
            self._closing = True
            self._cond.notify_all()
            abandoned = self._abandoned
        if abandoned or threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self._abandoned = True
                self._cond.notify_all()
            return False
        return self.pending == 0 and (final is None or self._final is None)

    def watch_stop(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback` once a stop request is seen; while it is set, read the record of an idle agent."""
        with self._cond:
            watching = self.on_stop is not None
            self.on_stop = callback
            seen = self.stop_requested_by
        if seen is not None and callback is not None:
            self._tell_stop(seen)
        elif callback is not None and not watching:
            threading.Thread(target=self._poll_stop, name=f"sentra-stop-{self.agent_id}", daemon=True).start()

    def stop_seen(self, by: str) -> None:
        """The server said the run was asked to stop by `by`: note it, and call on_stop the first time."""
        with self._cond:
            if self.stop_requested_by is not None:
                return
            self.stop_requested_by = by
            callback = self.on_stop
        if callback is not None:
            self._tell_stop(by)

    def _tell_stop(self, by: str) -> None:
        with self._cond:
            callback, self.on_stop = self.on_stop, None  # once
        if callback is None:
            return
        try:
            callback(by)
        except Exception:
            log.exception("the on_stop callback of agent %s failed", self.agent_id)

    def _poll_stop(self) -> None:
        """While on_stop is set and the agent is open: read its record whenever no ingest answer came for STOP_POLL
        seconds (those say it too)."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._stopped or self.on_stop is None, STOP_POLL)
                if self._closing or self._stopped or self.on_stop is None:
                    return
                idle = time.monotonic() - self._answered_at >= STOP_POLL
            if not idle:
                continue
            try:
                record = self.client.request("GET", f"/api/agents/{self.agent_id}")
            except SentraError:
                continue  # not created yet, or the server is away: the next poll tries again
            if isinstance(record, dict) and record.get("stop_requested"):
                self.stop_seen(str(record.get("stop_requested_by") or ""))

    def _settled_upto(self) -> int:
        return self._head - self._inflight

    def undelivered_report(self) -> str | None:
        """The one-line account of lines that never reached the server (and of a status never set), once."""
        with self._cond:
            if self._told_undelivered:
                return None
            count = self._added - self._head + self._inflight + self.dropped_total + self.rejected_total
            unfinished = self._final["status"] if self._final is not None else None
            self._told_undelivered = count > 0 or unfinished is not None
        why = self.problem or "no answer in time"
        if count:
            text = f"{count} line{'s' * (count != 1)} for agent {self.agent_id} could not be delivered"
            text += f" to {self.client.url}: {why}"
            return text + (f"; the run was not marked {unfinished}" if unfinished else "")
        if unfinished:
            return f"agent {self.agent_id} could not be marked {unfinished} at {self.client.url}: {why}"
        return None

    # ---- the background thread -----------------------------------------------------------------

    def _run(self) -> None:
        _thread_state.sender = True
        try:
            if self._hold:
                # A SentraHandler starts before it is added to a logger: a warning of the client now ("cannot
                # reach Sentra") would find no handler and reach stderr through logging's last resort, or not,
                # by a race. Its first record shows it was added.
                with self._cond:
                    self._cond.wait_for(lambda: self._added or self._closing or self._flush_waiters or self._abandoned)
            self._learn_limits()
            if self._create:
                self._create_agent()
            while True:
                taken = self._take_batch()
                if taken is None:
                    break
                batch, stale = taken
                limit = self.client.max_line_size
                batch[:stale] = [(refit_pieces(line, limit), real) for line, real in batch[:stale]]
                self._send_batch(batch)
            if self._final is not None and not self._abandoned:
                self._finish_agent(self._final)
        except Exception:
            log.exception("the Sentra client thread of agent %s stopped", self.agent_id)
        finally:
            self._disconnect()
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _learn_limits(self) -> None:
        """Read the server's limits before the first request, waiting as long as the server cannot be reached
        (nothing could be sent meanwhile anyway); the lines queued so far are checked against them when sent."""
        delay = 0.05
        while not self._abandoned:
            try:
                self.client.read_limits()
                break
            except OSError as exc:
                self._note_unreachable(exc)
            self._pause(delay)
            delay = min(delay * 2, self.client.retry_cap)
        with self._cond:
            self._refit_below = self._added
            self._split_by = self.client.max_line_size

    def _take_batch(self) -> tuple[list[tuple[bytes, int]], int] | None:
        """Wait for a batch to be due; each entry is (line, 1) or (drop notice, 0), and the first so many
        entries may need splitting again (see refit_pieces). None: stop."""
        lines_cap, bytes_cap = self.client.batch_caps
        with self._cond:
            self._lines_cap = lines_cap
            deadline: float | None = None
            while True:
                if self._abandoned:
                    return None
                if self._queue:
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.client.flush_interval
                    due = len(self._queue) >= lines_cap or now >= deadline
                    if due or self._closing or self._flush_waiters:
                        break
                    self._cond.wait(deadline - now)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            batch: list[tuple[bytes, int]] = []
            if self._dropped:
                batch.append((self._drop_notice(self._dropped), 0))
                self._dropped = 0
            # The body's bytes and lines as the server counts them (a long message's pieces are lines of their
            # own), and the lines logged; the first line logged goes even alone above the caps, split on a 413.
            size = sum(len(line) + 1 for line, _real in batch)
            count = len(batch)
            real = 0
            while self._queue:
                line = self._queue[0]
                pieces = line.count(b"\n") + 1
                if real and (size + len(line) + 1 > bytes_cap or count + pieces > lines_cap):
                    break
                self._queue.popleft()
                self._queued_bytes -= len(line)
                batch.append((line, 1))
                size += len(line) + 1
                count += pieces
                real += 1
            stale = len(batch) - real + max(0, min(real, self._refit_below - self._head))
            self._head += real
            self._inflight = real
            return batch, stale

    def _drop_notice(self, count: int) -> bytes:
        message = (
            f"sentra client dropped {count} log lines: its buffer was full "
            f"({self.client.max_buffer} lines) while the server could not keep up or be reached"
        )
        return encode_line(time.time(), "WARNING", message, "sentra.client", {"dropped": count})

    def _send_batch(self, batch: list[tuple[bytes, int]]) -> None:
        parts = [batch]
        while parts and not self._abandoned:
            part = parts.pop(0)
            outcome = self._post_lines(part)
            if outcome == "split":
                parts[0:0] = _halves(part)
                continue
            with self._cond:
                self._inflight -= sum(real for _line, real in part)
                self._cond.notify_all()

    def _post_lines(self, part: list[tuple[bytes, int]]) -> str:
        body = b"\n".join(line for line, _real in part) + b"\n"
        headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": uuid.uuid4().hex}
        answer = self._exchange("POST", f"/api/agents/{self.agent_id}/logs", body, headers)
        if answer is None:
            return "abandoned"
        status, data = answer
        if status < 300:
            self._answered_at = time.monotonic()
            if b'"stop_requested": true' in data:
                self.stop_seen(str(json.loads(data).get("stop_requested_by") or ""))
            return "sent"
        count = sum(real for _line, real in part)
        what = f"agent {self.agent_id}: {count} line{'s' * (count != 1)} refused"
        error = SentraError.from_response(status, data, what)
        if len(part) > 1 and (status == 413 or error.code == "invalid_line"):
            return "split"
        if status == 413 and b"\n" in part[0][0]:
            return "split"  # the pieces of one long message, too many for one request
        self.rejected_total += count
        self.problem = str(SentraError.from_response(status, data, "refused"))
        self._report(error)
        return "rejected"

    def _create_agent(self) -> None:
        body: dict[str, Any] = {"id": self.agent_id}
        if self._agent_name:
            body["name"] = self._agent_name
        if self._labels:
            body["labels"] = self._labels
        answer = self._exchange("POST", "/api/agents", json.dumps(body).encode(), {"Content-Type": "application/json"})
        if answer is None:
            return
        status, data = answer
        if status == 409 and len(body) > 1:
            body.pop("id")
            answer = self._exchange(
                "PATCH", f"/api/agents/{self.agent_id}", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            if answer is None:
                return
            status, data = answer
        if status >= 300 and status != 409:
            self.problem = str(SentraError.from_response(status, data, "refused"))
            self._report(SentraError.from_response(status, data, f"cannot create agent {self.agent_id}"))

    def _finish_agent(self, final: dict[str, str]) -> None:
        answer = self._exchange(
            "PATCH", f"/api/agents/{self.agent_id}", json.dumps(final).encode(), {"Content-Type": "application/json"}
        )
        if answer is None:
            return
        status, data = answer
        if status >= 300:
            what = f"cannot mark agent {self.agent_id} {final['status']}"
            self.problem = str(SentraError.from_response(status, data, "refused"))
            self._report(SentraError.from_response(status, data, what))
            return
        with self._cond:
            self._final = None

    def _report(self, error: SentraError) -> None:
        self.error = str(error)
        key = f"{error.status}:{error.code}"
        if key in self._reported:
            log.debug("%s", error)
        else:
            self._reported.add(key)
            log.error("%s", error)

    def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes] | None:
        """Send until the server gives a final answer; None if the handle was abandoned first."""
        delay = 0.05
        while not self._abandoned:
            try:
                status, answer_headers, data = self._roundtrip(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._disconnect()
                self._note_unreachable(exc)
                pause = delay
            else:
                if status not in (408, 429) and status < 500:
                    self._note_reachable()
                    return status, data
                pause = _retry_after(answer_headers) or delay
                self._note_busy(status, data)
            self._pause(pause)
            delay = min(delay * 2, self.client.retry_cap)
        return None

    def _pause(self, seconds: float) -> None:
        """Wait about `seconds` before a retry (jittered, so many agents do not retry in step), or until abandoned."""
        with self._cond:
            self._cond.wait_for(lambda: self._abandoned, seconds * random.uniform(0.8, 1.0))

    def _roundtrip(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Message, bytes]:
        if self._conn is None:
            self._conn = self.client.connect()
        self._conn.request(method, self.client.path(path), body=body, headers=self.client.headers(headers))
        response = self._conn.getresponse()
        data = response.read()
        if response.will_close:
            self._disconnect()
        return response.status, response.headers, data

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _note_unreachable(self, exc: BaseException) -> None:
        self.problem = reason_text(exc)
        if self.reachable is not False:
            log.warning(
                "cannot reach Sentra at %s (%s); retrying in the background, keeping up to %d lines",
                self.client.url,
                reason_text(exc),
                self.client.max_buffer,
            )
        self.reachable = False

    def _note_reachable(self) -> None:
        if self.reachable is False:
            log.info("reached Sentra at %s again", self.client.url)
        self.reachable = True

    def _note_busy(self, status: int, data: bytes) -> None:
        self.problem = str(SentraError.from_response(status, data, "busy"))
        if self.reachable is not False:
            error = SentraError.from_response(status, data, f"Sentra at {self.client.url} is busy")
            log.warning("%s; retrying", error)
        self.reachable = False


def _halves(part: list[tuple[bytes, int]]) -> list[list[tuple[bytes, int]]]:
    """A refused batch in two, to find the line at fault; one entry holding a long message's pieces is cut
    between pieces, the first half counting as the line."""
    if len(part) > 1:
        middle = len(part) // 2
        return [part[:middle], part[middle:]]
    ((entry, real),) = part
    pieces = entry.split(b"\n")
    middle = len(pieces) // 2
    return [[(b"\n".join(pieces[:middle]), real)], [(b"\n".join(pieces[middle:]), 0)]]


def _retry_after(headers: Message) -> float | None:
    value = headers.get("Retry-After", "")
    return min(float(value), 60.0) if value.strip().isdigit() else None


_live: weakref.WeakSet[_Shipper] = weakref.WeakSet()
_thread_state = threading.local()


class _ProcessEnd:
    """How the process is ending, as its hooks saw it, and the runs to finish by it at exit."""

    def __init__(self) -> None:
        self.agents: list[Agent] = []
        self.exception: BaseException | None = None  # uncaught in the main thread
        self.exit_reason = ""  # of a sys.exit(N) in the main thread with N not 0
        self._lock = threading.Lock()
        self._hooked = False

    def finish_at_exit(self, agent: Agent) -> None:
        """Finish `agent`'s run at exit by how the process ends; hooks the process the first time."""
        with self._lock:
            self.agents.append(agent)
            if not self._hooked:
                self._hooked = True
                self._hook()

    def _hook(self) -> None:
        previous_excepthook = sys.excepthook
        previous_thread_hook = threading.excepthook
        real_exit = sys.exit

        def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            self.exception = exc
            previous_excepthook(exc_type, exc, tb)

        def thread_excepthook(args: threading.ExceptHookArgs) -> None:
            # The process goes on: say what happened now, and let the process's end decide the status.
            if args.exc_value is not None and not issubclass(args.exc_type, SystemExit):
                name = args.thread.name if args.thread is not None else "?"
                text = f"Exception in thread {name}:\n{traceback_text(args.exc_value)}"
                for agent in list(self.agents):
                    agent.emit("ERROR", text, "traceback", {})
            previous_thread_hook(args)

        def noting_exit(status: str | int | None = None) -> NoReturn:
            # Only the main thread's sys.exit ends the process; in another thread it ends that thread.
            if threading.current_thread() is threading.main_thread():
                self.exit_reason = _exit_reason(status)
            real_exit(status)

        sys.excepthook = excepthook
        threading.excepthook = thread_excepthook
        sys.exit = noting_exit

    def finish_runs(self, deadline: float) -> None:
        """Complete each run, or fail it with the uncaught exception or the exit code."""
        for agent in self.agents:
            if not agent.closed:
                agent.end(self.exception, self.exit_reason, max(0.0, deadline - time.monotonic()))


def _exit_reason(status: object) -> str:
    """The failure reason of sys.exit(status), "" for a success, as Python turns status into an exit code."""
    if status is None or (isinstance(status, int) and status == 0):
        return ""
    if isinstance(status, int):
        return f"exit code {int(status)}"
    return f"exit code 1: {status}"


_process_end = _ProcessEnd()


@atexit.register
def _at_exit() -> None:
    """Finish the handlers' runs and flush every open agent, 5 s in all, then say what could not be sent."""
    deadline = time.monotonic() + EXIT_FLUSH_TIMEOUT
    _process_end.finish_runs(deadline)
    for shipper in list(_live):
        if shipper.is_alive():
            shipper.close(max(0.0, deadline - time.monotonic()))
    for shipper in list(_live):
        report = shipper.undelivered_report()
        if report is not None and sys.stderr is not None:
            try:
                print(f"sentra: {report}", file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass  # stderr is closed: nowhere left to say it


_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class SentraHandler(logging.Handler):
    """A logging handler that streams every record to one Sentra agent, batched like Agent.log().

    Each line carries the record's level, its message (with the exception text appended), the logger's
    name as its source and the `extra=` attributes as fields. Records of the `sentra.client` logger and
    records logged by the client's own thread are skipped, so the client never logs into itself. The agent is
    created with the first record (or at exit), since the handler exists before it is added to a logger.

    At exit the run is marked completed, or failed with the uncaught exception or the sys.exit code as its
    reason (see "Finishing the run" above); `finish_run=False` leaves its status alone.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        agent_id: str | None = None,
        *,
        agent_name: str = "",
        labels: Mapping[str, str] | None = None,
        level: int = logging.NOTSET,
        client: Client | None = None,
        flush_timeout: float = 10.0,
        finish_run: bool = True,
    ) -> None:
        super().__init__(level)
        self.client = client or Client(url, token)
        self.agent = self.client._agent(agent_id, name=agent_name, labels=labels, create=True, hold=True)
        self.flush_timeout = flush_timeout
        self._formatter = logging.Formatter()
        if finish_run:
            _process_end.finish_at_exit(self.agent)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record as one line; never blocks on the network."""
        if record.name == "sentra.client" or record.name.startswith("sentra.client."):
            return
        if getattr(_thread_state, "sender", False):
            return
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            if record.exc_text:
                message = f"{message}\n{record.exc_text}"
            if record.stack_info:
                message = f"{message}\n{self._formatter.formatStack(record.stack_info)}"
            fields = {
                key: image_url(value) if isinstance(value, bytes) else value
                for key, value in record.__dict__.items()
                if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
            }
            self.agent.emit(level_name(record.levelno), message, record.name, fields, record.created)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Block until every record emitted so far is acknowledged (at most `flush_timeout`)."""
        self.agent.flush(self.flush_timeout)

    def close(self) -> None:
        """Flush and stop sending; the agent's status is left as it is."""
        try:
            self.agent.close(self.flush_timeout)
        finally:
            super().close()
