"""Process-wide settings of the SQLite library under Python's sqlite3 module, made through SQLite's C API.

SQLite keeps memory statistics unless built without them (SQLITE_CONFIG_MEMSTATUS): every malloc and free of the
whole library takes one mutex to count it. The server's threads that use SQLite (the group commit, the search index,
the checkpoints, the readers) then wait for each other on it. Measured with 1,000-line batches of agent lines
(docs/performance.md, fourteenth round): the event loop's thread slept on that mutex about 3,500 times a second and
ingest went at about 330,000 lines/s; with the statistics off, 80 times a second and 390,000-425,000 lines/s.
SQLite's own list of recommended compile-time options turns them off (SQLITE_DEFAULT_MEMSTATUS=0); Python's builds
leave them on.

The setting can only change while the library is shut down, so it restarts the library: only the server's own
process does it, before it opens any database (the CLI's `serve`).
"""

from __future__ import annotations

import ctypes
import sqlite3
import sys

SQLITE_CONFIG_MEMSTATUS = 9  # sqlite3.h


def _library() -> ctypes.CDLL | None:
    """The SQLite library the sqlite3 module calls, or None where it cannot be reached for certain.

    Symbols looked up through the sqlite3 module's extension find the library it is linked to (or its own copy when
    it was built in), not some other libsqlite3 on the system. Only on Linux: elsewhere the lookup does not follow
    the extension's dependencies, and sqlite3_config's variadic argument is passed differently.
    """
    if sys.platform != "linux":
        return None
    try:
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)
        number = library.sqlite3_libversion_number()
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    major, minor, patch = sqlite3.sqlite_version_info
    return library if number == major * 1_000_000 + minor * 1_000 + patch else None


def turn_off_memory_statistics() -> bool:
    """Turn SQLite's memory statistics off for this process; True if they are off now.

    It shuts the library down and starts it again: call it before any connection is opened, from one thread.
    """
    library = _library()
    if library is None or library.sqlite3_shutdown() != 0:
        return False
    done: bool = library.sqlite3_config(SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
    # sqlite3_open would start the library again by itself; started here, a failure shows where it happened.
    if library.sqlite3_initialize() != 0:
        raise sqlite3.OperationalError("SQLite did not start again after its memory statistics were turned off")
    return done
