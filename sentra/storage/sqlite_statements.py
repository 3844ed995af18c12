"""Many-row statements in few sizes, so that SQLite prepares each size once and sqlite3's statement cache (128)
keeps them: the lines' INSERTs and the run volume's upserts of a group commit."""

from __future__ import annotations

from collections.abc import Iterator

# The last this many rows or fewer go in one statement of their own size: a commit of a few one-line POSTs is one.
SMALL_ROWS = 16


def statement_sizes(rows: int, most: int) -> Iterator[int]:
    """The sizes of the statements that write `rows` rows: `most` each, then powers of two, then the last
    SMALL_ROWS or fewer in one (1,000 rows, at most 1,024: 512 + 256 + 128 + 64 + 32 + 8)."""
    while rows > 0:
        size = rows if rows <= SMALL_ROWS else min(most, 1 << (rows.bit_length() - 1))
        yield size
        rows -= size
