"""Proxying the requests foreman does not queue: sent to the target as they came, answered as it answers.

Used for `/api/show`, `/api/version`, `/api/ps`, the embedding endpoints and model
management. Bytes pass unchanged both ways (docs/adr/0003); a streamed answer (pull,
create) is flushed piece by piece; a client that hangs up closes the upstream request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError

from foreman.errors import BadGateway
from foreman.target import TargetAborted, TargetClient, TargetError, request_headers


class ProxiedHandler(Protocol):
    """What of a Tornado handler the proxy uses (foreman/handlers/base.py's BaseHandler)."""

    request: HTTPServerRequest

    def when_closed(self, closer: Callable[[], None]) -> None: ...
    def set_status(self, status_code: int, reason: str | None = None) -> None: ...
    def clear_header(self, name: str) -> None: ...
    def add_header(self, name: str, value: str) -> None: ...
    def write(self, chunk: bytes) -> None: ...
    def flush(self) -> Awaitable[None]: ...
    def finish(self) -> Awaitable[None]: ...


async def proxy_request(
    handler: ProxiedHandler, client: TargetClient, body: bytes | None, *, stream: bool = False, finish: bool = True
) -> int:
    """Send the handler's request to the target and write the answer back; returns its status.

    With `finish=False` the caller ends the response itself. Raises BadGateway when the
    target cannot be reached before anything was written.
    """
    request = handler.request
    exchange = client.exchange(
        request.method or "GET", request.uri or "/", body, request_headers(request.headers.get_all())
    )
    handler.when_closed(exchange.abort)
    written = False
    try:
        async with exchange:
            handler.set_status(exchange.status)
            handler.clear_header("Content-Type")
            for name, value in exchange.headers:
                handler.add_header(name, value)
            if not stream:
                handler.write(await exchange.read())
            else:
                async for data in exchange.chunks():
                    handler.write(data)
                    written = True
                    await handler.flush()
    except TargetAborted:
        return exchange.status
    except StreamClosedError:
        exchange.abort()
        return exchange.status
    except TargetError as exc:
        if written:
            handler.finish()  # the stream just ends, as when Ollama itself goes away
            return exchange.status
        raise BadGateway(str(exc)) from None
    if finish:
        handler.finish()
    return exchange.status
