"""Identifiers and time in one place, so tests can patch them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ulid import ULID


def new_id() -> str:
    """A new job or event id: a ULID, sortable by creation time."""
    return str(ULID())


def now() -> float:
    """Wall-clock time in seconds since the epoch (stored in SQLite as REAL)."""
    return time.time()


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as the job API shows times."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
