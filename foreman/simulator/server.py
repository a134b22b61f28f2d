"""`Simulator`: a fake Ollama on a real loopback port, and the knobs tests turn.

It owns the listening sockets, the set of open connections (so `sleep` and `stop` can cut
them), the inventory, the resident set, the fault queue and the request records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets

from .base import reset_stream
from .control import make_app
from .faults import Fault, FaultQueue
from .models import DEFAULT_MODELS, Inventory
from .records import Changes, SimRequest, now
from .residency import Residency
from .wire import Clock

if TYPE_CHECKING:
    from tornado.httputil import HTTPServerRequest

    from .state import Abortable

log = logging.getLogger(__name__)


class _Server(HTTPServer):
    """An HTTPServer that remembers every connection it accepted."""

    streams: weakref.WeakSet[IOStream]

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self.streams.add(stream)
        super().handle_stream(stream, address)


class Simulator:
    """A simulated Ollama server. See the package docstring for the full API."""

    def __init__(
        self,
        models: list[str] | None = None,
        load_delay: float = 0.0,
        token_delay: float = 0.0,
        default_tokens: int = 8,
        max_loaded: int = 3,
        version: str = "0.12.3",
    ) -> None:
        self.load_delay = load_delay
        self.token_delay = token_delay
        self.default_tokens = default_tokens
        self.version = version
        self.requests: list[SimRequest] = []
        self.inventory = Inventory(list(DEFAULT_MODELS if models is None else models))
        self.clock = Clock()
        self._changes = Changes()
        self.residency = Residency(self._changed, max_loaded)
        self._faults = FaultQueue()
        self._blobs: set[str] = set()
        self._ids = itertools.count(1)
        self._app = make_app(self)
        self._servers: list[_Server] = []
        self._streams: weakref.WeakSet[IOStream] = weakref.WeakSet()
        self._active: set[Abortable] = set()
        self._host = "127.0.0.1"
        self._port = 0
        self._loopback = True
        self._wake: asyncio.TimerHandle | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and serve; returns the port (useful with port 0)."""
        if self._started:
            raise RuntimeError("simulator already started")
        self._host = host
        sockets = bind_sockets(port, host)
        self._port = sockets[0].getsockname()[1]
        try:
            self._loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self._loopback = host == "localhost"
        self._listen(sockets)
        self._started = True
        return self._port

    async def stop(self) -> None:
        """Stop listening, cut every connection, end in-flight requests. Idempotent."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        servers, self._servers = self._servers, []
        for server in servers:
            server.stop()
        self._cut_connections(outcome="reset")
        for server in servers:
            await server.close_all_connections()
        try:
            await self.wait_for(lambda: not self._active, timeout=5.0)
        except TimeoutError:
            log.warning("simulator stopped with %d requests still running", len(self._active))
        self.residency.close()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    # -- knobs -----------------------------------------------------------------------------

    @property
    def max_loaded(self) -> int:
        return self.residency.max_loaded

    @max_loaded.setter
    def max_loaded(self, value: int) -> None:
        self.residency.max_loaded = value

    @property
    def loaded(self) -> dict[str, float]:
        """Resident model name -> expiry in loop time (`math.inf`: forever)."""
        return self.residency.snapshot()

    @property
    def asleep(self) -> bool:
        return self._wake is not None

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next matching request."""
        self._faults.add(fault)

    def add_model(self, name: str) -> None:
        self.inventory.add(name)
        self._changed()

    def remove_model(self, name: str) -> None:
        info = self.inventory.remove(name)
        if info is not None:
            self.residency.forget(info)
        self._changed()

    def sleep(self, seconds: float) -> None:
        """Put the "laptop" to sleep: refuse connections for `seconds`, cutting every open one now."""
        self._sleep(seconds, spare=None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once `predicate()` holds, re-checking after every state change."""
        await self._changes.wait_for(predicate, timeout)

    # -- internals used by the handlers ----------------------------------------------------

    def _changed(self) -> None:
        self._changes.notify()

    def _open_record(self, request: HTTPServerRequest, stream: bool) -> SimRequest:
        record = SimRequest(
            id=next(self._ids),
            method=request.method or "",
            path=request.path,
            model=None,
            stream=stream,
            body=None,
            started=now(),
            headers=dict(request.headers),
        )
        self.requests.append(record)
        self._changed()
        return record

    def _track(self, handler: Abortable) -> None:
        self._active.add(handler)

    def _untrack(self, handler: Abortable) -> None:
        self._active.discard(handler)

    def _listen(self, sockets: list[Any]) -> None:
        server = _Server(self._app, xheaders=False)
        server.streams = self._streams
        server.add_sockets(sockets)
        self._servers.append(server)

    def _cut_connections(self, outcome: str, spare: IOStream | None = None) -> None:
        for handler in list(self._active):
            handler.abort(outcome)
        for stream in list(self._streams):
            if stream is spare or stream.closed():
                continue
            reset_stream(stream)
        if spare is not None and not spare.closed():
            spare.close()

    def _sleep(self, seconds: float, spare: IOStream | None) -> None:
        if self._stopped or not self._started:
            return
        for server in self._servers:
            server.stop()
        self._servers = []
        self._cut_connections(outcome="reset", spare=spare)
        if self._wake is not None:
            self._wake.cancel()
        self._wake = asyncio.get_running_loop().call_later(seconds, self._wake_up)
        self._changed()

    def _wake_up(self) -> None:
        if self._stopped:
            return
        try:
            sockets = bind_sockets(self._port, self._host)
        except OSError as err:
            log.warning("simulator could not listen again on port %d: %s; retrying", self._port, err)
            self._wake = asyncio.get_running_loop().call_later(0.05, self._wake_up)
            return
        self._wake = None
        self._listen(sockets)
        self._changed()
