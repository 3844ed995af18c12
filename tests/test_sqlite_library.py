"""SQLite's memory statistics, which make every thread of the server wait on one mutex, are off in the library the
sqlite3 module really uses once the server's process turned them off (a fresh interpreter each: it restarts SQLite)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Opens a database, writes to it, and prints what SQLite counts as its memory in use (sqlite3_status64), read
# through the same extension-module lookup as the code under test, so a lookup of another copy would show.
_MEMORY_IN_USE = """
import ctypes, sqlite3, sys
from sentra.storage import sqlite_library
turned_off = sqlite_library.turn_off_memory_statistics() if sys.argv[1] == "off" else None
conn = sqlite3.connect(":memory:")
conn.execute("CREATE TABLE t (x TEXT)")
conn.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 1000)
assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
library = sqlite_library._library()
used, highest = ctypes.c_int64(), ctypes.c_int64()
assert library.sqlite3_status64(0, ctypes.byref(used), ctypes.byref(highest), 0) == 0
print(turned_off, used.value)
"""


def _memory_in_use(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_IN_USE, mode], capture_output=True, text=True, timeout=60, check=True
    )
    turned_off, used = done.stdout.split()
    return turned_off, int(used)


@pytest.mark.skipif(sys.platform != "linux", reason="the library is left as it is off Linux (sqlite_library._library)")
def test_memory_statistics_are_off_in_the_library_sqlite3_uses_and_it_still_works() -> None:
    assert _memory_in_use("on")[1] > 100_000, "SQLite counts its memory unless told not to"
    assert _memory_in_use("off") == ("True", 0)
