"""Which models are resident, for how long, and what a cold load costs.

Mirrors Ollama's scheduler closely enough for a proxy to be tested against it: a load takes
`load_delay`, at most `max_loaded` models are resident (an idle one is evicted to make room,
the shortest keep_alive first and then by name, as Ollama's scheduler does; or the request
waits until one goes idle), and each model carries the
`keep_alive` of its most recent request, counted from the moment it goes idle.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import ModelInfo
from .records import now

DEFAULT_KEEP_ALIVE = 300.0

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")
_UNIT = re.compile(r"[^\d.]*")


def parse_go_duration(text: str) -> float:
    """Go's `time.ParseDuration`, in seconds, with Go's error texts."""
    original, rest, sign = text, text, 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    while rest:
        number = _NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        if not number.group(1) and not number.group(2):
            raise ValueError(f'time: invalid duration "{original}"')
        value = float(number.group(0))
        rest = rest[number.end() :]
        unit_match = _UNIT.match(rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f'time: missing unit in duration "{original}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += value * _UNITS[unit]
        rest = rest[len(unit) :]
    return sign * total


def parse_keep_alive(value: object) -> float | None:
    """Ollama's `api.Duration` decoding: seconds, `math.inf` for forever, None for "no override"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        return math.inf if value < 0 else float(value)
    if isinstance(value, str):
        seconds = parse_go_duration(value)
        return math.inf if seconds < 0 else seconds
    go_type = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise ValueError(f"Unsupported type: '{go_type}'")


DEFAULT_CONTEXT = 4096  # the simulated target's context length when a request sets none


def runner_defaults_removed(options: dict[str, Any]) -> dict[str, Any]:
    """Runner options as a loaded runner compares them: an explicit default is no change."""
    return {k: v for k, v in options.items() if not (k == "num_ctx" and v == DEFAULT_CONTEXT)}


@dataclass(eq=False)
class Resident:
    """A model that is loaded or loading."""

    info: ModelInfo
    duration: float
    ready: asyncio.Future[None]
    inflight: int = 0
    last_used: float = 0.0
    expires: float = math.inf
    timer: asyncio.TimerHandle | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the runner options it was loaded with
    reloaded: bool = False  # its load replaced a runner of the same model with other options

    def expiry(self, at: float) -> float:
        """When it will unload if nothing else happens (loop time)."""
        if self.inflight or not self.ready.done():
            return at + self.duration
        return self.expires


class Residency:
    """The resident set. All methods run on the event loop thread."""

    def __init__(self, notify: Callable[[], None], max_loaded: int) -> None:
        self.max_loaded = max_loaded
        self._notify = notify
        self._residents: dict[str, Resident] = {}

    def reserve(
        self, info: ModelInfo, keep_alive: float | None, load_delay: float, options: dict[str, Any] | None = None
    ) -> tuple[Resident, bool] | None:
        """Claim the model for one request, starting a load if it is cold, or a reload if it
        was loaded with other runner options (as Ollama's `needsReload`; docs/wire.md section 6).

        Returns the resident and whether this call started its load, or None when the
        resident set is full of busy models, or the model is busy under other options (the
        caller waits for a change and retries).
        """
        self.sweep()
        at = now()
        options = runner_defaults_removed(options or {})
        resident = self._residents.get(info.key)
        started = False
        reload = False
        if resident is not None and resident.options != options:
            if resident.inflight or not resident.ready.done():
                return None  # Ollama waits for the runner to be free before reloading it
            self._drop(resident)
            resident, reload = None, True
        if resident is None:
            if len(self._residents) >= max(self.max_loaded, 1) and not self._evict_one():
                return None
            loop = asyncio.get_running_loop()
            resident = Resident(info, DEFAULT_KEEP_ALIVE, loop.create_future(), options=options)
            resident.reloaded = reload
            self._residents[info.key] = resident
            started = True
            if load_delay > 0:
                loop.call_later(load_delay, self._loaded, resident)
            else:
                resident.ready.set_result(None)
        if resident.timer is not None:
            resident.timer.cancel()
            resident.timer = None
        resident.inflight += 1
        resident.last_used = at
        if keep_alive is not None:
            resident.duration = keep_alive
        self._notify()
        return resident, started

    def release(self, resident: Resident) -> None:
        """The request using `resident` is over: start its idle countdown."""
        resident.inflight -= 1
        resident.last_used = now()
        if self._residents.get(resident.info.key) is not resident:
            return  # unloaded meanwhile (simulator stopped)
        if resident.inflight == 0 and resident.ready.done():
            self._go_idle(resident)
        self._notify()

    def expire(self, info: ModelInfo) -> None:
        """`keep_alive: 0` unload request: unload now, or once in-flight requests end."""
        resident = self._residents.get(info.key)
        if resident is None:
            return
        resident.duration = 0.0
        if resident.inflight == 0 and resident.ready.done():
            self._drop(resident)
            self._notify()

    def forget(self, info: ModelInfo) -> None:
        """The model was deleted from the inventory."""
        self.expire(info)

    def sweep(self) -> None:
        """Unload idle models whose keep-alive ran out (timers may fire late)."""
        at = now()
        expired = [r for r in self._residents.values() if not r.inflight and r.ready.done() and r.expires <= at]
        for resident in expired:
            self._drop(resident)
        if expired:
            self._notify()

    def snapshot(self) -> dict[str, float]:
        """Resident (fully loaded) model name -> expiry in loop time."""
        self.sweep()
        at = now()
        return {r.info.name: r.expiry(at) for r in self._residents.values() if r.ready.done()}

    def reloaded(self, info: ModelInfo) -> bool:
        resident = self._residents.get(info.key)
        return resident is not None and resident.reloaded

    def listing(self) -> list[tuple[ModelInfo, float, int]]:
        """(model, expiry, context length) for `/api/ps`, longest remaining first."""
        self.sweep()
        at = now()
        rows = [
            (r.info, r.expiry(at), int(r.options.get("num_ctx", DEFAULT_CONTEXT)))
            for r in self._residents.values()
            if r.ready.done()
        ]
        rows.sort(key=lambda row: -row[1])
        return rows

    def close(self) -> None:
        for resident in list(self._residents.values()):
            self._drop(resident)

    def _loaded(self, resident: Resident) -> None:
        if resident.ready.done():  # dropped while loading
            return
        resident.ready.set_result(None)
        if resident.inflight == 0:
            self._go_idle(resident)
        self._notify()

    def _go_idle(self, resident: Resident) -> None:
        if resident.duration <= 0:
            self._drop(resident)
        elif math.isinf(resident.duration):
            resident.expires = math.inf
        else:
            resident.expires = now() + resident.duration
            resident.timer = asyncio.get_running_loop().call_later(resident.duration, self.sweep)

    def _evict_one(self) -> bool:
        idle = [r for r in self._residents.values() if r.inflight == 0 and r.ready.done()]
        if not idle:
            return False
        # Ollama's victim: an idle runner with the shortest keep_alive, then by name; a model
        # pinned with keep_alive -1 goes only when nothing else is idle.
        self._drop(min(idle, key=lambda r: (r.duration, r.info.key)))
        return True

    def _drop(self, resident: Resident) -> None:
        if self._residents.get(resident.info.key) is resident:
            del self._residents[resident.info.key]
        if resident.timer is not None:
            resident.timer.cancel()
            resident.timer = None
        if not resident.ready.done():
            resident.ready.cancel()
