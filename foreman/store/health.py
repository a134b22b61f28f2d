"""Whether the database takes writes, and why not (docs/adr/0026).

A write that fails for the storage's sake (disk full, a lock another process held past the
busy timeout, an I/O error, a read-only or corrupt file) marks the store unwell and is raised
as `StorageUnavailable`, which callers answer with 503; the next write that commits marks it
well again. A database file deleted or replaced under foreman is different: whatever foreman
wrote would go to a file nobody will read, so once `check_file` sees it, every write is
refused until foreman restarts.
"""

from __future__ import annotations

import logging
import os
import sqlite3

from foreman.clock import now

log = logging.getLogger(__name__)

# SQLite's primary result codes that mean "the storage", not "this statement".
_STORAGE_CODES = {
    5: "database is locked by another process",  # SQLITE_BUSY
    6: "database table is locked",  # SQLITE_LOCKED
    8: "database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    11: "database file is corrupt",  # SQLITE_CORRUPT
    13: "database or disk is full",  # SQLITE_FULL
    14: "unable to open the database file",  # SQLITE_CANTOPEN
    15: "database lock protocol error",  # SQLITE_PROTOCOL
    26: "file is not a database",  # SQLITE_NOTADB
}


def storage_problem(exc: sqlite3.Error) -> str | None:
    """What is wrong with the storage, if `exc` says so (None: a fault of the statement)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    return _STORAGE_CODES.get(code & 0xFF)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class StorageHealth:
    def __init__(self, path: str) -> None:
        self._path = path
        self._identity = _identity(path)
        self.problem: str | None = None  # the last failed write's reason, until one commits
        self.since: float | None = None
        self.lost: str | None = None  # the file went away under foreman: permanent

    @property
    def ok(self) -> bool:
        return self.problem is None and self.lost is None

    @property
    def reason(self) -> str | None:
        return self.lost or self.problem

    def failed(self, problem: str) -> None:
        if self.problem is None:
            log.error("storage unavailable: %s; writes are refused until one succeeds", problem)
            self.since = now()
        self.problem = problem

    def recovered(self) -> None:
        if self.problem is not None:
            log.warning("storage writes again (it failed with: %s)", self.problem)
            self.problem, self.since = None, None

    def check_file(self) -> None:
        """Mark the store lost once the database file is not the one foreman opened."""
        if self.lost is None and self._path != ":memory:" and _identity(self._path) != self._identity:
            self.lost = f"the database file {self._path} was deleted or replaced; restart foreman"
            self.since = now()
            log.error("storage lost: %s", self.lost)
