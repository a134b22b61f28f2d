"""One foreman per database: an exclusive lock on `<db_path>.lock`, held while the daemon runs.

The kernel drops the lock when the process dies, so a `kill -9` never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os


class DatabaseBusy(Exception):
    """Another foreman holds this database."""


class DatabaseLock:
    def __init__(self, db_path: str) -> None:
        self.path = db_path + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DatabaseBusy(
                f"another foreman (pid {holder}) is already using this database; "
                f"stop it first or give this one its own db_path ({self.path} is locked)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
