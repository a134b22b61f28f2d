"""The live event feed: who listens to job events, each listener's bounded backlog (docs/adr/0031).

The recorder publishes every committed event here (`publish`), which only appends it to the
backlog of each subscription that wants it: nothing on that path waits for a reader. Each
reader takes its backlog in its own coroutine (`handlers/event_stream.py`). A subscription
whose backlog would pass its limit is dropped: the backlog is let go, the subscription
leaves the feed, and its reader learns it (`ended`, `dropped`) and sends a last event
saying so. `close` ends every subscription (foreman is stopping).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Sequence

from foreman.events import Event

log = logging.getLogger(__name__)

BACKLOG = 1000  # events a reader of GET /events may fall behind by before it is dropped
JOB_BACKLOG = 100  # the same for one job's feed (a job has a handful of events; retries add two each)


class Subscription:
    """One reader's view of the feed: the events it wants, not yet taken, at most `limit`."""

    def __init__(
        self,
        feed: Feed,
        limit: int,
        job_id: str | None = None,
        model: str | None = None,
        states: Collection[str] | None = None,
    ) -> None:
        self._feed = feed
        self.limit = limit
        self.job_id = job_id
        self.model = model
        self.states = states
        self._pending: deque[Event] = deque()
        self._ready = asyncio.Event()
        self.ended = asyncio.Event()  # dropped, closed by the feed, or left
        self.dropped = False
        self.peak = 0  # the most events it ever held (tests check the bound)

    def wants(self, event: Event) -> bool:
        return (
            (self.job_id is None or event.job_id == self.job_id)
            and (self.model is None or event.model == self.model)
            and (self.states is None or event.state in self.states)
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, event: Event) -> None:
        """Append `event` (never waits); past `limit`, drop this subscription instead."""
        if self.ended.is_set():
            return
        if len(self._pending) >= self.limit:
            self.dropped = True
            self._pending.clear()
            log.warning("job=%s event feed reader dropped: more than %d events pending", self.job_id or "-", self.limit)
            self.leave()
            return
        self._pending.append(event)
        self.peak = max(self.peak, len(self._pending))
        self._ready.set()

    def take(self) -> list[Event]:
        """Every pending event, oldest first."""
        events = list(self._pending)
        self._pending.clear()
        self._ready.clear()
        return events

    async def wait(self, timeout: float) -> None:
        """Until an event is pending, the subscription ends, or `timeout` seconds pass."""
        if self._pending or self.ended.is_set():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass

    def leave(self, keep_pending: bool = False) -> None:
        """Stop listening (idempotent); what was pending is let go, unless `keep_pending`."""
        if not keep_pending:
            self._pending.clear()
        if not self.ended.is_set():
            self._feed._remove(self)
            self.ended.set()
            self._ready.set()


class Feed:
    """The subscriptions, by job (a job's own feed) and for every job (GET /events)."""

    def __init__(self) -> None:
        self._by_job: dict[str, set[Subscription]] = {}
        self._every: set[Subscription] = set()

    def subscribe(
        self,
        *,
        job_id: str | None = None,
        model: str | None = None,
        states: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Subscription:
        """A new subscription: to one job's events, or to every job's matching `model` and `states`."""
        if limit is None:
            limit = JOB_BACKLOG if job_id is not None else BACKLOG
        sub = Subscription(self, limit, job_id, model, states)
        if job_id is not None:
            self._by_job.setdefault(job_id, set()).add(sub)
        else:
            self._every.add(sub)
        return sub

    def publish(self, events: Sequence[Event]) -> None:
        """Committed events, in commit order, to every subscription that wants them."""
        if not (self._every or self._by_job):
            return
        for event in events:
            for sub in (*self._by_job.get(event.job_id, ()), *self._every):
                if sub.wants(event):
                    sub.put(event)

    @property
    def listeners(self) -> int:
        return len(self._every) + sum(len(subs) for subs in self._by_job.values())

    def close(self) -> None:
        """End every subscription: their readers send what is pending and finish their streams."""
        for sub in [*self._every, *(s for subs in self._by_job.values() for s in subs)]:
            sub.leave(keep_pending=True)

    def _remove(self, sub: Subscription) -> None:
        if sub.job_id is None:
            self._every.discard(sub)
            return
        subs = self._by_job.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_job[sub.job_id]
