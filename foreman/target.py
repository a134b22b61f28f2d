"""The client for the target Ollama: every byte foreman sends to it goes through here.

Built on foreman.http1 (docs/adr/0021): pooled keep-alive connections, streamed
reads, and aborting an exchange really closes its socket. There is no total timeout
(generations last many minutes); instead a watchdog enforces a first-byte timeout
and an inter-chunk idle timeout, counting only time spent waiting on the target.

Failures come out as two kinds, because the worker treats them differently:
`TargetUnreachable` (the target never accepted the request: no attempt used) and
`TargetBroken` (it broke after the target accepted it: attempt + 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType

from foreman.http1 import ConnectFailed, Connection, ConnectionBroke, Pool

log = logging.getLogger(__name__)

# RFC 9110 hop-by-hop headers, plus what foreman sets itself or must not leak upstream
# (the client's Host, its browser Origin, and foreman's own bearer token). Host and Origin were
# judged by foreman's own browser boundary (foreman/browser.py) as the target would judge them;
# the target on loopback would refuse the client's values (docs/adr/0024).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_NOT_UPSTREAM = HOP_BY_HOP | {"host", "origin", "authorization", "accept-encoding", "expect"}


class TargetError(Exception):
    """The target could not give an answer."""


class TargetUnreachable(TargetError):
    """The target did not accept the request (refused, no route, asleep)."""


class TargetBroken(TargetError):
    """The exchange broke after the target accepted the request (reset, timeout)."""


class TargetAborted(TargetError):
    """foreman closed the exchange itself (the job was cancelled)."""


def request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A client's headers, fit to send upstream: no hop-by-hop, Host, Origin or credentials."""
    headers = list(headers)  # read twice below; callers pass Tornado's get_all(), a generator
    named = {n.strip().lower() for k, v in headers if k.lower() == "connection" for n in v.split(",")}
    return {k: v for k, v in headers if k.lower() not in _NOT_UPSTREAM and k.lower() not in named}


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The target's response headers, fit to relay to a client."""
    headers = list(headers)
    named = {n.strip().lower() for k, v in headers if k.lower() == "connection" for n in v.split(",")}
    return [
        (k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in named and k.lower() != "date"
    ]


class TargetClient:
    """One target, one connection pool. `close()` when done."""

    def __init__(
        self,
        base_url: str,
        *,
        first_byte_timeout: float,
        idle_timeout: float,
        connect_timeout: float = 10.0,
        pool_size: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self._pool = Pool(self.base_url, pool_size, connect_timeout)

    async def reset(self) -> None:
        """Drop pooled connections (the target went away; reusing them would fail)."""
        self._pool.close_idle()

    async def close(self) -> None:
        self._pool.close()

    def exchange(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> Exchange:
        """One request whose response is read as it arrives: `async with client.exchange(...) as x`."""
        return Exchange(
            self._pool,
            method,
            path,
            body,
            dict(headers or {}),
            self.first_byte_timeout if first_byte_timeout is None else first_byte_timeout,
            self.idle_timeout if idle_timeout is None else idle_timeout,
        )

    async def fetch(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """A small buffered request (listings, passthroughs): status, headers, body."""
        async with self.exchange(method, path, body, headers, first_byte_timeout=timeout, idle_timeout=timeout) as x:
            return x.status, x.headers, await x.read()


class Exchange:
    """A request in flight. `abort()` from anywhere closes it; reads then raise TargetAborted."""

    def __init__(
        self,
        pool: Pool,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        first_byte_timeout: float,
        idle_timeout: float,
    ) -> None:
        self._pool = pool
        self._method = method
        self._path = path
        self._body = body
        self._headers = headers
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._request: asyncio.Task[None] | None = None  # connecting first
        self._conn: Connection | None = None  # while it holds a connection of the pool
        self._answered = False  # the status line and headers have arrived
        self._stopped: TargetError | None = None  # why foreman closed it, if it did
        self._wait_started: float | None = None  # set while foreman waits on the target
        self._wait_limit = first_byte_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []

    def send(self) -> bool:
        """Send the request: at once on a kept connection if one is free (True), else from a task
        that connects first (False). `async with` then waits for the answer."""
        if self._request is None and self._conn is None and self._stopped is None:
            self._waiting(self._first_byte_timeout)
            data = self._pool.request_bytes(self._method, self._path, self._headers, self._body)
            conn = self._pool.take_idle()
            if conn is None:
                self._request = asyncio.ensure_future(self._connect_and_send(data))
                self._request.add_done_callback(_retrieve)
            else:
                self._conn = conn
                conn.send(data, head_only=self._method == "HEAD")
        return self._request is None

    async def _connect_and_send(self, data: bytes) -> None:
        conn = self._conn = await self._pool.acquire()
        conn.send(data, head_only=self._method == "HEAD")

    async def __aenter__(self) -> Exchange:
        self.send()
        try:
            if self._request is not None:
                await self._request
            conn = self._conn
            if conn is None:  # aborted
                raise self._stopped or TargetAborted("closed")
            # A connection the target closed while idle is seen closed before reuse. If one is
            # closed in the same instant, the request counts as broken, like any other reset.
            await conn.head()
            if self._stopped is not None:
                raise self._stopped
        except BaseException as exc:
            self._stop_watchdog()
            self._release(reuse=False)
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        self._stop_watchdog()
        self._wait_started = None
        self._answered = True
        self.status = conn.status
        self.headers = response_headers(conn.headers)
        self._waiting(self._idle_timeout)
        self._wait_started = None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop_watchdog()
        # A connection is reused only after a whole answer; otherwise closing it is what
        # tells the target to stop generating.
        self._release(reuse=exc_type is None and self._stopped is None)

    def abort(self, reason: TargetError | None = None) -> None:
        """Close the exchange now (client gone, job cancelled, timeout)."""
        if self._stopped is None:
            self._stopped = reason or TargetAborted("cancelled")
        if self._conn is not None:
            self._release(reuse=False)  # closes it: a read in progress fails, then raises the reason
        elif self._request is not None and not self._request.done():
            self._request.cancel()

    def _release(self, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, reuse)
        elif self._request is not None and self._request.done() and not self._request.cancelled():
            self._request.exception()  # retrieved: it was raised to the caller

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces the network delivers."""
        conn = self._conn
        if conn is None:
            raise self._stopped or TargetAborted("closed")
        while True:
            self._wait_started = self._loop.time()
            try:
                data = await conn.read_some()
            except BaseException as exc:
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
            finally:
                self._wait_started = None
            if self._stopped is not None:
                raise self._stopped
            if not data:
                return
            yield data

    async def read(self) -> bytes:
        parts = [data async for data in self.chunks()]
        return b"".join(parts)

    # --- timeouts ---------------------------------------------------------------------------

    def _waiting(self, limit: float) -> None:
        self._wait_started = self._loop.time()
        self._wait_limit = limit
        self._watchdog = self._loop.call_later(limit, self._check)

    def _check(self) -> None:
        """Fires now and then; aborts only when one wait on the target has lasted too long."""
        started = self._wait_started
        current = self._loop.time()
        if started is not None and current - started >= self._wait_limit:
            what = "next chunk" if self._answered else "first byte"
            self.abort(TargetBroken(f"no {what} from the target within {self._wait_limit:g}s"))
            return
        due = (started if started is not None else current) + self._wait_limit
        self._watchdog = self._loop.call_at(due, self._check)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                return exc  # the caller is being cancelled: that wins over any reason of ours
        if self._stopped is not None:
            return self._stopped
        if isinstance(exc, ConnectFailed):
            return TargetUnreachable(str(exc))
        if isinstance(exc, ConnectionBroke | OSError):
            return TargetBroken(str(exc) or type(exc).__name__)
        return exc  # CancelledError and bugs pass through untouched


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a connect task's failure as seen: it is raised to whoever enters the exchange,
    and an exchange aborted before that never asks."""
    if not task.cancelled():
        task.exception()


__all__ = [
    "Exchange",
    "TargetAborted",
    "TargetBroken",
    "TargetClient",
    "TargetError",
    "TargetUnreachable",
    "request_headers",
    "response_headers",
]
