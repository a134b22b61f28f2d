"""Identifiers, time and timed waits in one place, so tests can patch them."""

from __future__ import annotations

import asyncio
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


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives in the
    same loop turn as the event is set (CPython gh-86296), and a loop that is cancelled to
    stop it then runs on, so the stop hangs. `asyncio.timeout` has no inner task to race.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
