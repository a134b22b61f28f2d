"""The poller: what the target has and whether it is there (CONTRACT section 3, ADR 0006).

A Tornado PeriodicCallback polls `/api/tags`, `/api/ps` and `/api/version` every
`poll_interval` and keeps the last good answers. A failed poll, or the worker
finding the target unreachable, marks foreman degraded; then quick probes with
growing delays look for the target's return, and the first good poll clears
`degraded` and wakes the worker. One failed poll never rejects work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.ioloop import PeriodicCallback

from foreman.clock import now
from foreman.jobs import model_key
from foreman.target import TargetClient, TargetError

log = logging.getLogger(__name__)

_PROBE_FIRST = 0.25  # seconds before the first re-probe of a vanished target
_PROBE_MAX = 5.0


class Poller:
    def __init__(self, target: TargetClient, interval: float) -> None:
        self.target = target
        self.interval = interval
        self.degraded = False
        self.last_poll_at: float | None = None
        self.last_error: str | None = None
        self.tags: dict[str, Any] | None = None  # last good /api/tags body
        self._installed: set[str] = set()  # model keys in `tags`
        self.ps: dict[str, Any] | None = None
        self.version: dict[str, Any] | None = None
        self._up = asyncio.Event()
        self._up.set()  # optimistic until proven otherwise
        self._down = asyncio.Event()
        self._periodic: PeriodicCallback | None = None
        self._probe: asyncio.TimerHandle | None = None
        self._probe_delay = _PROBE_FIRST
        self._polling: asyncio.Task[bool] | None = None
        self._reset: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._periodic = PeriodicCallback(self.poll_soon, self.interval * 1000)
        self._periodic.start()
        self.poll_soon()

    async def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
        if self._probe is not None:
            self._probe.cancel()
        if self._polling is not None:
            self._polling.cancel()
            try:
                await self._polling
            except BaseException:  # noqa: BLE001 - stopping: the poll's fate does not matter
                pass

    def poll_soon(self) -> None:
        if self._polling is None or self._polling.done():
            self._polling = asyncio.ensure_future(self.poll())

    async def poll(self) -> bool:
        """One poll of the target; True when it answered."""
        try:
            tags = await self._get_json("/api/tags")
            ps = await self._get_json("/api/ps")
            version = await self._get_json("/api/version")
        except (TargetError, ValueError) as exc:
            self.report_down(str(exc) or type(exc).__name__)
            return False
        self.tags, self.ps, self.version = tags, ps, version
        self._installed = {model_key(str(m.get("model") or m.get("name") or "")) for m in tags.get("models") or []}
        self.last_poll_at = now()
        self.last_error = None
        if self.degraded:
            log.info("target is back: degraded cleared")
        self.degraded = False
        self._probe_delay = _PROBE_FIRST
        self._down.clear()
        self._up.set()
        return True

    async def _get_json(self, path: str) -> dict[str, Any]:
        status, _, body = await self.target.fetch("GET", path, timeout=10.0)
        if status != 200:
            raise ValueError(f"GET {path} answered {status}")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError(f"GET {path} answered a non-object")
        return data

    def report_down(self, reason: str) -> None:
        """The target did not answer: degrade, and probe until it does again."""
        if not self.degraded:
            log.warning("target unreachable, degraded: %s", reason)
            self._reset = asyncio.ensure_future(self.target.reset())
        self.degraded = True
        self.last_error = reason
        self._up.clear()
        self._down.set()
        if self._probe is None or self._probe.cancelled():
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

    def has_model(self, name: str) -> bool | None:
        """Whether the last known inventory lists `name` (None: no inventory yet)."""
        if self.tags is None:
            return None
        return model_key(name) in self._installed
