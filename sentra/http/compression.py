"""gzip on request: whether a request accepts gzip (RFC 9110 12.5.3), which answers are worth compressing, the
whole-answer compression, and the gzip body an answer written in parts (a download, an event stream) sends.

An answer written in parts is one gzip member whose every part is deflated on its own, with a compressor made for
that part and dropped after it (ending on a sync flush, so the reader has all of it at once): an open stream holds
no compressor between its events, only the running CRC and length of what it sent, so an idle stream costs what it
cost without gzip, and a batch of lines is deflated once for every stream that sends the same bytes. A part cannot
refer back to earlier parts, which costs little: a download's parts are pages of up to 10,000 lines, and an event's
repeated keys and text are found within the event itself.

Levels, measured on a real 1,000-line history page of agent-like lines (244 KB as JSON, answered in 6.2 ms on this
2-core EPYC): level 1 gives 10.1% of the bytes in 0.63 ms, level 2 9.6% in 0.62 ms, level 3 9.4% in 0.71 ms, level
6 7.9% in 1.61 ms, level 9 7.0% in 6.3 ms (NDJSON and text alike). Level 2 is as cheap as the cheapest and smaller;
each level above costs more CPU than the bytes it saves are worth to a server that answers on two cores. The viewer's
files are compressed once, so at level 9.
"""

from __future__ import annotations

import functools
import struct
import zlib

ANSWER_LEVEL = 2  # what Sentra compresses as it answers: history pages, downloads, events
ONCE_LEVEL = 9  # what is compressed once and kept: the viewer's files
# Below this an answer and its head fit in one TCP segment either way: compressing saves no packet, only CPU.
MIN_SIZE = 1024

# Compressible media types beyond text/*; any +json or +xml type is too.
_COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/javascript",
        "application/manifest+json",
        "application/xml",
        "image/svg+xml",
    }
)
# The gzip member's head: no name, no time, no flags (RFC 1952), then the parts' raw deflate blocks.
GZIP_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# The last deflate block: empty, fixed Huffman codes, marked final.
_LAST_BLOCK = b"\x03\x00"
Data = bytes | memoryview
ONCE_HELD = 256  # compressed files kept: the viewer has ~20, and an edited file is a new one
_once: dict[str, bytes] = {}
_SUFFIX = "-gzip"  # an Etag of the gzip variant is the identity's with this suffix, as Apache's mod_deflate writes


@functools.lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """True if an Accept-Encoding value lets the answer be gzip: gzip (or x-gzip), else `*`, with a q above 0 and not
    below identity's. Malformed members are ignored; an empty value accepts identity only."""
    gzip: float | None = None
    star: float | None = None
    identity: float | None = None
    for member in accept_encoding.split(","):
        coding, _, parameters = member.partition(";")
        coding = coding.strip().lower()
        weight = _qvalue(parameters)
        if not coding or weight is None:
            continue
        if coding in ("gzip", "x-gzip"):
            gzip = weight if gzip is None else max(gzip, weight)
        elif coding == "*":
            star = weight
        elif coding == "identity":
            identity = weight
    wanted = gzip if gzip is not None else star
    if not wanted:
        return False
    # identity unnamed and no `*`: no preference against gzip; on a tie gzip, the smaller, wins.
    rival = identity if identity is not None else star
    return rival is None or wanted >= rival


def _qvalue(parameters: str) -> float | None:
    """The weight `;q=` gives (1 without one); None when it is not a qvalue (0 to 1, three decimals at most)."""
    parameters = parameters.strip()
    if not parameters:
        return 1.0
    name, _, value = parameters.partition("=")
    if name.strip().lower() != "q":
        return None
    value = value.strip()
    whole, _, decimals = value.partition(".")
    if whole not in ("0", "1") or len(decimals) > 3 or not (decimals.isdigit() or not decimals):
        return None
    weight = float(value)
    return weight if weight <= 1 else None


@functools.lru_cache(maxsize=64)
def compressible(content_type: str) -> bool:
    """True for the media types gzip shrinks: text/* (event streams among them), JSON, NDJSON, JavaScript, SVG."""
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in _COMPRESSIBLE or media.endswith(("+json", "+xml"))


def gzip_etag(etag: str) -> str:
    """The Etag of the gzip variant of the answer whose Etag is `etag` (RFC 9110 8.8.3: not the identity's, since
    the bytes differ): '"abc"' gives '"abc-gzip"', weak tags stay weak."""
    return etag[:-1] + _SUFFIX + '"' if etag.endswith('"') else etag


def vary(default: str | None) -> str:
    """The Vary of a compressible answer: Accept-Encoding, after what Vary already names (Origin, with CORS)."""
    return "Accept-Encoding" if not default else f"{default}, Accept-Encoding"


def gzip_whole(data: Data, level: int = ANSWER_LEVEL) -> bytes:
    """`data` as one gzip member (the whole of an answer's body)."""
    window = _window_bits(len(data))
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + window, window - 7)
    return compressor.compress(data) + compressor.flush()


def gzip_once(digest: str, data: bytes) -> bytes:
    """The gzip of `data` at ONCE_LEVEL, made the first time `digest` (a hash of `data`) is asked for and kept: a
    file served again and again (the viewer's) is compressed once, not per request."""
    held = _once.get(digest)
    if held is None:
        if len(_once) >= ONCE_HELD:
            del _once[next(iter(_once))]  # the oldest
        held = _once[digest] = gzip_whole(data, ONCE_LEVEL)
    return held


def deflate_part(data: Data, level: int = ANSWER_LEVEL) -> bytes:
    """`data` as raw deflate blocks that stand alone: byte-aligned at the end (a sync flush, so a reader inflates all
    of it at once), none marked last, no reference to anything before. Parts like this, one after another, make one
    deflate stream; being the same for every stream that sends `data`, it can be made once for them all."""
    window = _window_bits(len(data))
    # A window and hash table no larger than the part: a small event costs a small compressor (6 us, not 34 us, for
    # a one-line event, and 3 KB, not 260 KB).
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window, window - 7)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _window_bits(size: int) -> int:
    """The deflate window (as zlib's windowBits, 9 to 15) that covers `size` bytes."""
    return min(15, max(9, (size - 1).bit_length()))


class GzipBody:
    """The gzip body of an answer written in parts: the member's head before the first part, each part deflated on
    its own (deflate_part), the last block and the CRC and length of all parts at the end. It holds two integers."""

    __slots__ = ("_crc", "_size", "_started")

    def __init__(self) -> None:
        self._crc = 0
        self._size = 0
        self._started = False

    def part(self, data: Data) -> bytes:
        """What to send for `data`."""
        size = len(data)
        head = b"" if self._started else GZIP_HEAD
        self._started = True
        if not size:
            return head
        self._crc = zlib.crc32(data, self._crc)
        self._size += size
        return head + deflate_part(data)

    def count(self, data: Data) -> None:
        """`data` is being sent as a deflate_part made elsewhere (shared by the streams that send the same bytes),
        after the first part."""
        assert self._started, "the member's head goes with the first part"
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def end(self) -> bytes:
        """The end of the member: the last block, the CRC and the length (mod 2**32) of all parts."""
        head = b"" if self._started else GZIP_HEAD
        self._started = True
        return head + _LAST_BLOCK + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
