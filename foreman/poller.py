"""The poller: what the target has and whether it is there (docs/contract.md section 3, ADR 0006).

A Tornado PeriodicCallback polls `/api/tags`, `/api/ps` and `/api/version` every
`poll_interval` and keeps the last good answers, bytes and all, so the face can
serve them unchanged while the target sleeps. A failed poll, or the worker finding
the target unreachable, marks foreman degraded; quick probes with growing delays
then look for the target's return, and the first good poll clears `degraded`,
wakes the worker and tells the listeners (the embedder warms itself again).
One failed poll never rejects work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.ioloop import PeriodicCallback

from foreman.clock import now
from foreman.errors import NotFound
from foreman.job import model_key
from foreman.target import TargetClient, TargetError

log = logging.getLogger(__name__)

_PROBE_FIRST = 0.25  # seconds before the first re-probe of a vanished target
_PROBE_MAX = 5.0
_POLL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Snapshot:
    """One good answer of the target: its bytes as sent, parsed, and when."""

    raw: bytes
    data: dict[str, Any]
    at: float

    @property
    def model_keys(self) -> set[str]:
        return {model_key(str(m.get("model") or m.get("name") or "")) for m in self.data.get("models") or []}


def snapshot(raw: bytes, path: str) -> Snapshot:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"GET {path} answered a non-object")
    return Snapshot(raw, data, now())


class Poller:
    def __init__(self, target: TargetClient, interval: float) -> None:
        self.target = target
        self.interval = interval
        self.degraded = False
        self.last_poll_at: float | None = None
        self.last_error: str | None = None
        self.polls_failed = 0
        self.tags: Snapshot | None = None
        self.ps: Snapshot | None = None
        self.version: Snapshot | None = None
        self._installed: set[str] = set()
        self._listeners: list[Callable[[bool], None]] = []
        self._up = asyncio.Event()
        self._up.set()  # optimistic until proven otherwise
        self._down = asyncio.Event()
        self._periodic: PeriodicCallback | None = None
        self._probe: asyncio.TimerHandle | None = None
        self._probe_delay = _PROBE_FIRST
        self._polling: asyncio.Task[bool] | None = None
        self._reset: asyncio.Future[None] | None = None

    def on_poll(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(back)` after every good poll; `back` is True for the first one and
        each time the target returns from being unreachable."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._periodic = PeriodicCallback(self.poll_soon, self.interval * 1000)
        self._periodic.start()
        self.poll_soon()

    async def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
        if self._probe is not None:
            self._probe.cancel()
        for task in (self._polling, self._reset):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - stopping: the poll's fate does not matter
                    pass

    def poll_soon(self) -> None:
        if self._polling is None or self._polling.done():
            self._polling = asyncio.ensure_future(self.poll())

    async def poll(self) -> bool:
        """One poll of the target; True when it answered."""
        try:
            tags = await self._get("/api/tags")
            ps = await self._get("/api/ps")
            version = await self._get("/api/version")
        except (TargetError, ValueError) as exc:
            self.polls_failed += 1
            self.report_down(str(exc) or type(exc).__name__)
            return False
        first = self.last_poll_at is None
        self.tags, self.ps, self.version = tags, ps, version
        self._installed = tags.model_keys
        self.last_poll_at = now()
        self.last_error = None
        back = self.degraded
        if back:
            log.info("target is back: degraded cleared")
        self.degraded = False
        self._probe_delay = _PROBE_FIRST
        self._down.clear()
        self._up.set()
        for listener in self._listeners:
            listener(first or back)
        return True

    async def _get(self, path: str) -> Snapshot:
        status, _, body = await self.target.fetch("GET", path, timeout=_POLL_TIMEOUT)
        if status != 200:
            raise ValueError(f"GET {path} answered {status}")
        return snapshot(body, path)

    def saw_ps(self, raw: bytes) -> None:
        """A fresh /api/ps answer fetched by someone else (the face): keep it."""
        try:
            self.ps = snapshot(raw, "/api/ps")
        except ValueError:
            pass

    def report_down(self, reason: str) -> None:
        """The target did not answer: degrade, and probe until it does again."""
        if not self.degraded:
            log.warning("target unreachable, degraded: %s", reason)
            self._reset = asyncio.ensure_future(self.target.reset())
        self.degraded = True
        self.last_error = reason
        self._up.clear()
        self._down.set()
        if self._probe is None:
            self._probe = asyncio.get_running_loop().call_later(self._probe_delay, self._reprobe)
            self._probe_delay = min(self._probe_delay * 2, _PROBE_MAX, self.interval)

    def _reprobe(self) -> None:
        self._probe = None
        self.poll_soon()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    async def wait_up(self) -> None:
        await self._up.wait()

    async def wait_down(self) -> None:
        await self._down.wait()

    async def require_model(self, name: str) -> None:
        """Refuse a model the target lacks, with Ollama's own answer, after one fresh look at
        its list (ADR 0006). When the target cannot be asked, the model is given the benefit."""
        if self.has_model(name):
            return
        if await self.poll() and self.has_model(name) is False:
            raise NotFound(f"model '{name}' not found")

    def has_model(self, name: str) -> bool | None:
        """Whether the last known inventory lists `name` (None: no inventory yet)."""
        if self.tags is None:
            return None
        return model_key(name) in self._installed

    def resident(self) -> set[str] | None:
        """Model keys the target had loaded at the last look (None: never looked)."""
        return None if self.ps is None else self.ps.model_keys
