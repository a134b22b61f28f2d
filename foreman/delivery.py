"""Webhook delivery from the outbox: its own loop, never in the worker's path (docs/contract.md section 5).

At least once, in order per job (a job's next event waits until the one before it is
delivered or given up), concurrently across jobs, with bounded exponential backoff and
jitter. A 2xx means delivered; 410 Gone stops deliveries to that URL; after
`webhook_max_attempts` an event is given up and the job's next one goes. Each attempt is
recorded (durably) before it is sent, so a restart neither forgets nor repeats silently.
"""

from __future__ import annotations

import asyncio
import logging
import random

from foreman.clock import now, wait_event
from foreman.config import Settings
from foreman.store import Outbox, OutboxEvent
from foreman.webhook_client import WebhookClient, safe_url

log = logging.getLogger(__name__)

_CONCURRENCY = 8
_SAFETY_WAKE = 30.0  # look anyway now and then, whatever the wake-ups said


class Deliverer:
    def __init__(self, settings: Settings, store: Outbox, client: WebhookClient) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.delivered = 0
        self.failed_attempts = 0
        self._wake = asyncio.Event()
        self._busy_jobs: set[str] = set()
        self._gone: set[str] = set()  # URLs whose receiver answered 410 Gone (since start)
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """An event with a webhook was committed, or a delivery ended."""
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery loop failed; continuing")
                await asyncio.sleep(1.0)

    async def run_once(self) -> int:
        """Start every due delivery not already running; wait for the next reason to look."""
        self._wake.clear()
        due = [e for e in await self.store.due_events(now(), limit=100) if e.job_id not in self._busy_jobs]
        for event in due:
            self._busy_jobs.add(event.job_id)
            task = asyncio.ensure_future(self._deliver(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        next_at = await self.store.next_delivery_at()
        timeout = _SAFETY_WAKE if next_at is None else min(_SAFETY_WAKE, max(0.0, next_at - now()))
        if timeout == 0 and not due:
            timeout = _SAFETY_WAKE  # what is due is already being delivered; its end wakes us
        await wait_event(self._wake, timeout)
        return len(due)

    def backoff(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`: doubling from `webhook_backoff`, capped, jittered."""
        settings = self.settings
        delay = min(settings.webhook_backoff * 2 ** min(attempt - 1, 60), settings.webhook_backoff_max)
        return float(delay * random.uniform(0.5, 1.0))

    async def _deliver(self, event: OutboxEvent) -> None:
        attempt = event.attempts + 1
        try:
            async with self._slots:
                if event.webhook_url in self._gone:
                    await self.store.give_up_url(event.webhook_url, now(), "the receiver answered 410 Gone")
                    return
                await self.store.attempt_started(event.seq, now() + self.backoff(attempt))
                result = await self.client.deliver(event.webhook_url, event.id, event.payload)
                if result.delivered:
                    self.delivered += 1
                    await self.store.attempt_ended(event.seq, now(), delivered=True, error=None, give_up=False)
                elif result.gone:
                    self._gone.add(event.webhook_url)
                    count = await self.store.give_up_url(event.webhook_url, now(), "the receiver answered 410 Gone")
                    log.warning(
                        "job=%s webhook %s answered 410 Gone: %d events dropped",
                        event.job_id,
                        safe_url(event.webhook_url),
                        count,
                    )
                else:
                    self.failed_attempts += 1
                    give_up = attempt >= self.settings.webhook_max_attempts
                    await self.store.attempt_ended(
                        event.seq, now(), delivered=False, error=result.error, give_up=give_up
                    )
                    log.log(
                        logging.WARNING if give_up else logging.INFO,
                        "job=%s webhook attempt %d %s: %s",
                        event.job_id,
                        attempt,
                        "failed, giving up" if give_up else "failed",
                        result.error,
                    )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job=%s webhook delivery of event %s failed inside foreman", event.job_id, event.id)
        finally:
            self._busy_jobs.discard(event.job_id)
            self.wake()  # the job's next event may be due now
