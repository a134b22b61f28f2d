"""The event feeds as Server-Sent Events: `GET /jobs/{id}/events` and `GET /events`
(docs/contract.md section 3, docs/adr/0031).

A job's feed replays the job's events from the outbox (after `Last-Event-ID`, when given),
then follows them live and ends after the terminal one; `GET /events` follows every job's
events live. Each stream is written in its handler's own coroutine: the events its
subscription (`foreman/feed.py`) holds, written and flushed; `progress` while its job works
(and a queued job's position when it changes), read from `JobViews`; `: ping` after
`PING_INTERVAL` of silence. A reader that falls `BACKLOG` events behind is dropped by the
feed: it gets a last `dropped` event, and `DROP_GRACE` seconds to take it, then the
connection is closed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Collection
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream, StreamClosedError

from foreman.compact_json import dump
from foreman.config import Settings
from foreman.errors import BadRequest, NotFound
from foreman.events import Event
from foreman.feed import Feed, Subscription
from foreman.handlers.base import BaseHandler
from foreman.job import model_key
from foreman.job_views import JobViews
from foreman.sse import DROPPED, PING, PROGRESS, frame, retry
from statemachine import State

PING_INTERVAL = 15.0  # seconds of silence before a `: ping` (tests shorten it)
PROGRESS_INTERVAL = 0.25  # at most four `progress` events a second
QUEUE_INTERVAL = 1.0  # a queued job's position is looked up at most once a second
DROP_GRACE = 5.0  # a dropped reader's time to take its last event before the connection closes
RECONNECT_MS = 1000  # the `retry:` a browser's EventSource reconnects after
# The kernel's send buffer of a stream: a stuck reader shows in its backlog within a few hundred
# events, instead of ~3 MB of them hiding in an autotuned loopback buffer.
_SEND_BUFFER = 32 * 1024
_STATES = frozenset(s.value for s in State)


class FeedHandler(BaseHandler):
    def initialize(self, settings: Settings, feed: Feed, views: JobViews) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.feed = feed
        self.views = views
        self._stream: IOStream | None = None
        self._last_write = 0.0
        self._gone = False

    def _begin(self, sub: Subscription) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # a proxy in front must not hold events back
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            self._stream = connection.stream
            self._stream.set_nodelay(True)
            if self._stream.socket is not None:
                self._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)

        def closed() -> None:
            self._gone = True
            sub.leave()

        self.when_closed(closed)

    async def _send(self, chunk: bytes, sub: Subscription) -> bool:
        """Write and flush `chunk`; False once the reader is gone or has been dropped."""
        if self._gone:
            return False
        self.write(chunk)
        self._last_write = time.monotonic()
        flushed = self.flush()
        if not flushed.done():
            ended = asyncio.ensure_future(sub.ended.wait())
            waits: set[asyncio.Future[Any]] = {flushed, ended}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
            if not flushed.done():  # the reader is stuck and the feed dropped it meanwhile
                flushed.add_done_callback(lambda f: f.exception())
                return False
        try:
            flushed.result()
        except StreamClosedError:
            self._gone = True
            return False
        return True

    async def _dropped(self, sub: Subscription) -> None:
        """The last event of a dropped reader, `DROP_GRACE` seconds to take it, then the close."""
        error = f"dropped: this reader fell more than {sub.limit} events behind; reconnect and reconcile"
        self.write(frame(dump({"error": error}), event=DROPPED))
        ended = self.finish()
        try:
            async with asyncio.timeout(DROP_GRACE):
                await ended
        except (TimeoutError, StreamClosedError):
            ended.add_done_callback(lambda f: f.exception())
        if self._stream is not None:
            self._stream.close()  # not kept alive: this reader is to go away
        self._gone = True

    async def _follow(self, sub: Subscription, *, seen: Collection[str] = (), state: str | None = None) -> None:
        """Send the subscription's events as they come (but those in `seen`), with progress and
        pings, until the reader goes, the subscription ends, or (a job's feed) its job ends."""
        next_tick = 0.0
        position: int | None = None
        progress_sent: Any = None
        while not self._gone:
            events = [e for e in sub.take() if e.id not in seen]
            if events:
                if not await self._send(b"".join(frame(e.data, event_id=e.id) for e in events), sub):
                    break
                if sub.job_id is not None:
                    state = events[-1].state
                    if events[-1].terminal:
                        return
            if sub.ended.is_set():
                if sub.dropped:
                    await self._dropped(sub)
                return
            now = time.monotonic()
            if now >= next_tick:
                if sub.job_id is not None and state == State.QUEUED.value:
                    next_tick = now + QUEUE_INTERVAL
                    queued = await self.views.queue_position(sub.job_id)
                    if queued is not None and queued != position:
                        position = queued
                        data = {"job_id": sub.job_id, "state": "queued", "queue_position": queued}
                        if not await self._send(frame(dump(data), event=PROGRESS), sub):
                            break
                        continue
                else:
                    next_tick = now + PROGRESS_INTERVAL
                    progress = self._progress(sub, state)
                    if progress is not None and (progress["job_id"], progress["chunks"]) != progress_sent:
                        progress_sent = (progress["job_id"], progress["chunks"])
                        if not await self._send(frame(dump(progress), event=PROGRESS), sub):
                            break
                        continue
            if now - self._last_write >= PING_INTERVAL:
                if not await self._send(PING, sub):
                    break
                continue
            wake = min(next_tick, self._last_write + PING_INTERVAL)
            await sub.wait(max(0.0, wake - time.monotonic()))
        if sub.dropped and not self._gone:
            await self._dropped(sub)

    def _progress(self, sub: Subscription, state: str | None) -> dict[str, Any] | None:
        """The `progress` event's data: the job of this feed while it works, or (GET /events)
        the working job when it passes the filters."""
        if sub.job_id is not None:
            if state != State.WORKING.value:
                return None
            progress = self.views.progress(sub.job_id)
            return None if progress is None else {"job_id": sub.job_id, "state": state, **progress}
        working = self.views.working()
        if working is None:
            return None
        job, progress = working
        if (sub.model is not None and job.model != sub.model) or (
            sub.states is not None and State.WORKING.value not in sub.states
        ):
            return None
        return {"job_id": job.id, "state": State.WORKING.value, "model": job.model, **progress}


class JobEventsHandler(FeedHandler):
    async def get(self, job_id: str) -> None:
        """The job's events so far (after `Last-Event-ID`), then live, until its terminal one."""
        job = await self.views.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        last_id = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", None)
        sub = self.feed.subscribe(job_id=job_id)  # before the history is read: nothing falls between
        try:
            history = await self.views.events(job_id)
            ids = [e.id for e in history]
            replay: list[Event] = history[ids.index(last_id) + 1 :] if last_id in ids else history
            ended = any(e.terminal for e in history)
            if ended and not replay:
                # Nothing after the terminal event: 204 tells an EventSource not to reconnect.
                self.set_status(204)
                return
            self._begin(sub)
            chunk = retry(RECONNECT_MS) + b"".join(frame(e.data, event_id=e.id) for e in replay)
            if not await self._send(chunk, sub) or ended:
                return
            await self._follow(sub, seen=set(ids), state=history[-1].state if history else job.state)
        finally:
            sub.leave()


class EventsHandler(FeedHandler):
    async def get(self) -> None:
        """Every job's events from now on, filtered by `model` and `state` (repeated or comma-separated)."""
        model = self.get_query_argument("model", None)
        states = {s for value in self.get_query_arguments("state") for s in value.split(",") if s}
        unknown = states - _STATES
        if unknown:
            raise BadRequest(f"unknown state {sorted(unknown)[0]!r}")
        sub = self.feed.subscribe(model=model_key(model) if model else None, states=states or None)
        try:
            self._begin(sub)
            if await self._send(retry(RECONNECT_MS), sub):
                await self._follow(sub)
        finally:
            sub.leave()
