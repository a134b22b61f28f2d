"""The client for the target Ollama: every byte foreman sends to it goes through here.

Built on aiohttp (docs/adr/0005): pooled keep-alive connections, streamed reads,
and closing a response really closes its socket. There is no total timeout
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

import aiohttp

log = logging.getLogger(__name__)

# RFC 9110 hop-by-hop headers, plus what foreman sets itself or must not leak upstream
# (the client's Host, its browser Origin, and foreman's own bearer token).
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


def response_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The target's response headers, fit to relay to a client."""
    named = {v.strip().lower() for v in headers.get("Connection", "").split(",")}
    return [
        (k, v)
        for k, v in headers.items()
        if k.lower() not in HOP_BY_HOP and k.lower() not in named and k.lower() != "date"
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
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30),
                # No total timeout: the watchdog in Exchange handles first byte and idle.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def reset(self) -> None:
        """Drop pooled connections (the target went away; reusing them would fail)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def close(self) -> None:
        await self.reset()

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
            self._get_session(),
            self.base_url + path,
            method,
            body,
            headers or {},
            first_byte_timeout or self.first_byte_timeout,
            idle_timeout or self.idle_timeout,
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
        session: aiohttp.ClientSession,
        url: str,
        method: str,
        body: bytes | None,
        headers: Mapping[str, str],
        first_byte_timeout: float,
        idle_timeout: float,
    ) -> None:
        self._session = session
        self._url = url
        self._method = method
        self._body = body
        self._headers = headers
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._request: asyncio.Task[aiohttp.ClientResponse] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._stopped: TargetError | None = None  # why foreman closed it, if it did
        self._wait_started: float | None = None  # set while foreman waits on the target
        self._wait_limit = first_byte_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []

    def send(self) -> None:
        """Start the request without waiting for its answer (`async with` then waits for it)."""
        if self._request is not None:
            return
        self._request = asyncio.ensure_future(
            self._session.request(
                self._method,
                self._url,
                data=self._body,
                headers=self._headers,
                allow_redirects=False,
            )
        )
        self._waiting(self._first_byte_timeout)

    async def __aenter__(self) -> Exchange:
        self.send()
        assert self._request is not None
        try:
            self._response = await self._request
        except BaseException as exc:
            self._stop_watchdog()
            raise self._translate(exc) from exc
        self._stop_watchdog()
        self._wait_started = None
        self.status = self._response.status
        self.headers = response_headers(self._response.headers)
        self._waiting(self._idle_timeout)
        self._wait_started = None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop_watchdog()
        if self._response is not None:
            if exc_type is None and self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()  # closes the socket: the target stops generating

    def abort(self, reason: TargetError | None = None) -> None:
        """Close the exchange now (client gone, job cancelled, timeout)."""
        if self._stopped is None:
            self._stopped = reason or TargetAborted("cancelled")
        if self._response is not None:
            self._response.close()
        elif self._request is not None and not self._request.done():
            self._request.cancel()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces the network delivers."""
        assert self._response is not None
        content = self._response.content
        while True:
            self._wait_started = self._loop.time()
            try:
                data = await content.readany()
            except BaseException as exc:
                raise self._translate(exc) from exc
            finally:
                self._wait_started = None
            if not data:
                if self._stopped is not None:
                    raise self._stopped
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
            what = "first byte" if self._response is None else "next chunk"
            self.abort(TargetBroken(f"no {what} from the target within {self._wait_limit:g}s"))
            return
        due = (started if started is not None else current) + self._wait_limit
        self._watchdog = self._loop.call_at(due, self._check)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _translate(self, exc: BaseException) -> BaseException:
        if self._stopped is not None:
            return self._stopped
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return TargetUnreachable(str(exc) or type(exc).__name__)
        if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError):
            return TargetBroken(str(exc) or type(exc).__name__)
        return exc  # CancelledError and bugs pass through untouched


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
