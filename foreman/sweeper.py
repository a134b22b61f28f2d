"""The TTL sweep: finished jobs older than `job_ttl` go, with their artifacts and settled events.

A Tornado PeriodicCallback; each run deletes in batches of 500, one short transaction
each, yielding between batches so the API never waits long behind it.
"""

from __future__ import annotations

import asyncio
import logging

from tornado.ioloop import PeriodicCallback

from foreman.clock import now
from foreman.store import Outbox

log = logging.getLogger(__name__)

_BATCH = 500


class Sweeper:
    def __init__(self, store: Outbox, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.swept = 0
        # Often enough that nothing outlives its TTL by more than a tenth, at most every 10 minutes.
        self.interval = min(max(ttl / 10, 1.0), 600.0)
        self._periodic = PeriodicCallback(self.sweep_soon, self.interval * 1000)
        self._task: asyncio.Task[int] | None = None

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        self._periodic.stop()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def sweep_soon(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.sweep())

    async def sweep(self) -> int:
        cutoff = now() - self.ttl
        total = 0
        try:
            while (count := await self.store.sweep(cutoff, _BATCH)) > 0:
                total += count
                await asyncio.sleep(0)
        except Exception:
            log.exception("TTL sweep failed; trying again at the next one")
        if total:
            self.swept += total
            log.info("swept %d finished jobs older than %gs", total, self.ttl)
        return total
