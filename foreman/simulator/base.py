"""The handler base class: Ollama-looking headers and errors, request records, streaming.

Every route inherits from `SimHandler`. It removes Tornado's own fingerprints (Server
header, ETags, HTML error pages), keeps the request's `SimRequest` up to date, and offers
the few primitives the routes are built from: `emit` one line, `pause`, wait for a future
unless the client leaves, claim a model, apply a fault, abort the TCP connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import struct
from typing import TYPE_CHECKING, Any

from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import RequestHandler

from foreman.runner import runner_options

from .faults import Fault
from .models import ModelInfo
from .records import RECORDED_PATHS, SimRequest, now
from .residency import Resident, parse_keep_alive
from .wire import JSON_UTF8, ApiError, FieldTypes, check_types, decode_body, dumpb

if TYPE_CHECKING:
    from .state import SimulatorState

_ALLOWED_ORIGIN = re.compile(
    r"^(?:https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0)(?::\d+)?"
    r"|(?:app|file|tauri|vscode-webview|vscode-file|chrome-extension|safari-extension"
    r"|moz-extension|ms-browser-extension)://.*)$"
)
# Yield to the loop every so many zero-delay tokens so one fast stream cannot starve others.
_YIELD_EVERY = 32
# Seconds between the last line sent and a "reset" fault's RST (see `fault_before_body`).
_RESET_GRACE = 0.05


def reset_stream(stream: IOStream) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN, like a crashed peer."""
    sock = stream.socket
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    stream.close()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class SimHandler(RequestHandler):
    """Base of every simulator route."""

    #: What a request without a boolean `stream` gets (native: stream; OpenAI: not).
    STREAM_DEFAULT = True

    sim: SimulatorState
    record: SimRequest | None
    gone: bool

    def initialize(self, sim: SimulatorState) -> None:
        self.sim = sim
        self.record = None
        self.gone = False
        self._aborting = False
        self._waker: asyncio.Future[None] | None = None
        self._ticks = 0

    # -- Tornado hooks ---------------------------------------------------------------------

    def set_default_headers(self) -> None:
        # Ollama (Go net/http) sends no Server header and no default Content-Type.
        self.clear_header("Server")
        self.clear_header("Content-Type")

    def compute_etag(self) -> str | None:
        return None

    def prepare(self) -> None:
        self.sim._track(self)
        if self.request.path in RECORDED_PATHS and self.request.method == "POST":
            self.record = self.sim._open_record(self.request, self.STREAM_DEFAULT)
        self._guard_host_and_origin()

    def on_connection_close(self) -> None:
        if self.gone:
            return
        self.gone = True
        if self.record is not None and not self._aborting and self.record.ended is None:
            self.record.client_closed_at = now()
        if self._waker is not None:
            _resolve(self._waker)
        self.sim._changed()

    def on_finish(self) -> None:
        record = self.record
        if record is not None and record.ended is None:
            record.ended = now()
            if record.status is None:
                record.status = self.get_status()
            if record.outcome is None:
                if record.client_closed_at is not None:
                    record.outcome = "client_closed"
                else:
                    record.outcome = "done" if record.status < 400 else "error"
        self.sim._untrack(self)
        self.sim._changed()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        record = self.record
        if isinstance(exc, ApiError):
            if record is not None:
                record.status = status_code
                record.outcome = "refused_model" if exc.refused_model else "error"
            if exc.empty:
                self.finish()
                return
            content_type, tail = self.error_framing()
            self.set_header("Content-Type", content_type)
            self.finish(self.error_body(status_code, exc.message) + tail)
        elif status_code in (404, 405):
            # gin's built-in replies: plain text, not JSON.
            self.set_header("Content-Type", "text/plain")
            self.finish(f"{status_code} page not found" if status_code == 404 else "405 method not allowed")
        else:
            self.set_header("Content-Type", JSON_UTF8)
            self.finish(self.error_body(status_code, self._reason.lower()))

    def options(self, *args: str) -> None:
        self.set_status(204)

    # -- parsing ---------------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> bytes:
        """The error shape of this endpoint family (overridden by the OpenAI layer)."""
        return dumpb({"error": message})

    def error_framing(self) -> tuple[str, bytes]:
        """Content type and trailing bytes of an error body: gin's `c.JSON` by default."""
        return JSON_UTF8, b""

    def parse_json(self, go_type: str, types: FieldTypes | None = None) -> dict[str, Any]:
        body = decode_body(self.request.body, go_type)
        self.note_body(body)
        if types:
            check_types(body, go_type.rsplit(".", 1)[-1], types)
        return body

    def note_body(self, body: dict[str, Any]) -> None:
        """Copy what the record shows of a decoded request body."""
        if self.record is not None:
            self.record.body = body
            model = body.get("model")
            self.record.model = model if isinstance(model, str) else None
            self.record.keep_alive = body.get("keep_alive")
            stream = body.get("stream")
            self.record.stream = stream if isinstance(stream, bool) else self.STREAM_DEFAULT

    def keep_alive(self, body: dict[str, Any]) -> float | None:
        try:
            return parse_keep_alive(body.get("keep_alive"))
        except ValueError as err:
            raise ApiError(400, str(err)) from None

    def lookup(self, model: str) -> ModelInfo:
        info = self.sim.inventory.get(model)
        if info is None:
            raise ApiError(404, f"model '{model}' not found", refused_model=True)
        return info

    def _guard_host_and_origin(self) -> None:
        """Ollama on loopback refuses foreign Host headers and unknown browser Origins (empty 403)."""
        origin = self.request.headers.get("Origin")
        if origin is not None and not _ALLOWED_ORIGIN.match(origin):
            raise ApiError(403, "", empty=True)
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        if not self.sim._loopback:
            return
        host = self.request.host.lower()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            if host in ("", "localhost", socket.gethostname().lower()) or host.endswith(
                (".localhost", ".local", ".internal")
            ):
                return
            raise ApiError(403, "", empty=True) from None
        if not (addr.is_loopback or addr.is_private or addr.is_unspecified):
            raise ApiError(403, "", empty=True)

    # -- responding ------------------------------------------------------------------------

    def reply(self, body: bytes, status: int = 200, content_type: str | None = JSON_UTF8) -> None:
        """Send one whole body and finish."""
        self.set_status(status)
        if content_type:
            self.set_header("Content-Type", content_type)
        if self.record is not None:
            self.record.status = status
            self.record.chunks_sent += 1
        self.finish(body)

    def start_stream(self, content_type: str) -> None:
        # Go's net/http sets TCP_NODELAY on every connection; Tornado turns Nagle back on after
        # each response, which would hold a token back until the previous one is acknowledged.
        if isinstance(self.request.connection, HTTP1Connection):
            self.request.connection.stream.set_nodelay(True)
        self.set_header("Content-Type", content_type)
        if self.record is not None:
            self.record.status = self.get_status()

    async def emit(self, data: bytes) -> bool:
        """Write and flush one line; False once the client has gone."""
        if self.gone:
            return False
        self.write(data)
        try:
            await self.flush()
        except StreamClosedError:
            self.on_connection_close()
            return False
        record = self.record
        if record is not None:
            record.chunks_sent += 1
        self.sim._changed()
        return True

    async def pause(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: forever) unless the client leaves first; False if it left."""
        if self.gone:
            return False
        if seconds is not None and seconds <= 0:
            self._ticks += 1
            if self._ticks >= _YIELD_EVERY:
                self._ticks = 0
                await asyncio.sleep(0)
            return not self.gone
        loop = asyncio.get_running_loop()
        waker: asyncio.Future[None] = loop.create_future()
        self._waker = waker
        handle = loop.call_later(seconds, _resolve, waker) if seconds is not None else None
        try:
            await waker
        finally:
            if handle is not None:
                handle.cancel()
            self._waker = None
        return not self.gone

    async def wait_future(self, future: asyncio.Future[Any]) -> bool:
        """Wait for `future` unless the client leaves first; False if it left."""
        if future.done():
            return not self.gone
        if self.gone:
            return False
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waker = waker

        def wake(_: asyncio.Future[Any]) -> None:
            _resolve(waker)

        future.add_done_callback(wake)
        try:
            await waker
        finally:
            future.remove_done_callback(wake)
            self._waker = None
        return not self.gone

    def abort(self, outcome: str) -> None:
        """Drop the connection with an RST; the record keeps `outcome` (not client_closed)."""
        self._aborting = True
        if self.record is not None and self.record.outcome is None:
            self.record.outcome = outcome
        stream = getattr(self.request.connection, "stream", None)
        if isinstance(stream, IOStream) and not stream.closed():
            reset_stream(stream)
        self.gone = True
        if self._waker is not None:
            _resolve(self._waker)
        self.sim._changed()

    async def acquire(self, info: ModelInfo, keep_alive: float | None) -> Resident | None:
        """Make `info` resident for this request (loading/evicting as needed); None if the client left."""
        residency = self.sim.residency
        body = self.record.body if self.record is not None else None
        options = runner_options(body) if isinstance(body, dict) else {}
        while True:
            claimed = residency.reserve(info, keep_alive, self.sim.load_delay, options)
            if claimed is not None:
                break
            if not await self.wait_future(self.sim._changes.next_change()):
                return None
        resident, started = claimed
        if started and self.record is not None:
            self.record.loaded_model = True
            self.record.load_reason = "options" if residency.reloaded(info) else "cold"
        if not await self.wait_future(resident.ready) or resident.ready.cancelled():
            residency.release(resident)
            if not self.gone:
                raise ApiError(500, "model was unloaded while loading")
            return None
        return resident

    # -- faults ----------------------------------------------------------------------------

    def take_fault(self, model: str, *, load_only: bool) -> Fault | None:
        fault = self.sim._faults.take(self.request.path, model, load_only=load_only)
        if fault is not None:
            if self.record is not None:
                self.record.fault = fault.kind
            if fault.kind == "status":
                raise ApiError(fault.status, fault.message)
        return fault

    async def fault_before_body(self, fault: Fault | None) -> bool:
        """Apply a fault to a single-body reply; True when the reply must not be sent."""
        if fault is None:
            return False
        if fault.kind == "reset":
            if self.record is not None and self.record.chunks_sent:
                # Let the peer read what was sent first: aiohttp (and asyncio streams) drop
                # already-received but unread data once the connection errors, which would
                # make "reset after N lines" look like "reset after fewer".
                await self.pause(_RESET_GRACE)
            self.abort("reset")
            return True
        if fault.kind == "stall":
            if not await self.pause(fault.seconds):
                if self.record is not None and self.record.outcome is None:
                    self.record.outcome = "stalled"
                return True
            return False
        if fault.kind == "error_line":
            raise ApiError(500, fault.message)
        return False

    async def fault_in_stream(self, fault: Fault, error_line: bytes) -> bool:
        """Apply a fault between streamed lines; True when the stream must end here."""
        if fault.kind == "error_line":
            if not error_line:
                # A format that has no words for a mid-stream error (the Anthropic and Responses
                # writers): before the first chunk the error still gets its status; after it the
                # stream just ends.
                if self.record is None or not self.record.chunks_sent:
                    raise ApiError(500, fault.message)
            else:
                await self.emit(error_line)
            if self.record is not None and self.record.outcome is None:
                self.record.outcome = "error"
            return True
        return await self.fault_before_body(fault)
