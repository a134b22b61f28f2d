"""What the simulator's handlers may use of the simulator: a protocol, so that the handler
modules depend on this leaf and `server.Simulator` (which builds the app from them) is the
one module that knows them all. No import cycle, type-only imports included."""

from __future__ import annotations

from typing import Protocol

from tornado.httputil import HTTPServerRequest
from tornado.iostream import IOStream

from .faults import Fault, FaultQueue
from .models import Inventory
from .records import Changes, SimRequest
from .residency import Residency
from .wire import Clock


class Abortable(Protocol):
    """A running request the simulator can end from outside (sleep, stop)."""

    def abort(self, outcome: str) -> None: ...


class SimulatorState(Protocol):
    """The simulated target as its handlers see it; `server.Simulator` is the one implementation.
    The underscored members are the handlers' private channel, not the test-facing API."""

    load_delay: float
    token_delay: float
    default_tokens: int
    version: str
    requests: list[SimRequest]
    inventory: Inventory
    clock: Clock
    residency: Residency
    _changes: Changes
    _faults: FaultQueue
    _blobs: set[str]
    _loopback: bool

    @property
    def loaded(self) -> dict[str, float]: ...

    @property
    def asleep(self) -> bool: ...

    def inject(self, fault: Fault) -> None: ...

    def add_model(self, name: str) -> None: ...

    def remove_model(self, name: str) -> None: ...

    def _changed(self) -> None: ...

    def _open_record(self, request: HTTPServerRequest, stream: bool) -> SimRequest: ...

    def _track(self, handler: Abortable) -> None: ...

    def _untrack(self, handler: Abortable) -> None: ...

    def _sleep(self, seconds: float, spare: IOStream | None) -> None: ...
