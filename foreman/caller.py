"""The client waiting on its job over HTTP, as the worker sees it: `Caller`, its Tornado
implementation `HandlerCaller`, and `Callers`, the callers by job id.

The worker writes the target's bytes straight into the Tornado handler: `write`
then `flush()` per piece, so nothing is held back; it waits for the flush only when
the client's socket did not take it all (back-pressure), which spares two turns of
the loop per token otherwise (docs/adr/0003). A closed client stream
(StreamClosedError, or the connection-close callback) becomes `CallerGone`, which
cancels the job. A client that keeps its socket open but stops reading would hold the
only worker: a flush that does not complete within `client_stall_timeout` drops the
client (`CallerStalled`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import RequestHandler

from foreman.error_shapes import NATIVE, ErrorShape


class CallerGone(Exception):
    """The synchronous client closed its connection."""


class CallerStalled(CallerGone):
    """The synchronous client accepted no bytes for `client_stall_timeout`: dropped."""


class Caller(Protocol):
    """A client waiting on its job over HTTP."""

    upstream_headers: dict[str, str]
    job_id: str | None
    gone: bool

    @property
    def started(self) -> bool:
        """True once any byte of the answer went to the client."""
        ...

    async def begin(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    async def send(self, data: bytes) -> None:
        """Write and flush one piece of the answer; raises CallerGone."""
        ...

    def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """The whole answer at once (non-streamed, or an error before any byte)."""
        ...

    def end(self, last: bytes = b"") -> None:
        """Finish a started answer, optionally with one last line."""
        ...

    @property
    def answered(self) -> bool:
        """True once the caller's response is over (or it is gone)."""
        ...

    def abandon(self, message: str, status: int = 499) -> None:
        """End the caller's response with an error: its job ended without an answer."""
        ...


class Callers:
    """The callers waiting on their synchronous jobs, by job id.

    `JobService.submit` adds one before its job exists anywhere else, so the worker never
    sees a synchronous job without its caller; whoever ends the job takes it out.
    """

    def __init__(self) -> None:
        self._by_job: dict[str, Caller] = {}

    def add(self, job_id: str, caller: Caller) -> None:
        caller.job_id = job_id
        self._by_job[job_id] = caller

    def get(self, job_id: str) -> Caller | None:
        return self._by_job.get(job_id)

    def pop(self, job_id: str) -> Caller | None:
        return self._by_job.pop(job_id, None)


class HandlerCaller:
    """`Caller` over a Tornado RequestHandler; `done` resolves when the answer ends."""

    def __init__(
        self,
        handler: RequestHandler,
        upstream_headers: dict[str, str],
        stall_timeout: float,
        errors: ErrorShape = NATIVE,
    ) -> None:
        self._handler = handler
        self._errors = errors  # the face's own error shape (foreman/error_shapes.py)
        self._stall_timeout = stall_timeout
        self.upstream_headers = upstream_headers
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone = False
        self.job_id: str | None = None  # set by JobService.submit before the job exists
        self._started = False
        self._connection: HTTP1Connection | None = None  # the client's connection, once the answer begins
        self._stream: IOStream | None = None  # ... and its stream

    @property
    def started(self) -> bool:
        return self._started

    def _head(self, status: int, headers: list[tuple[str, str]]) -> None:
        handler = self._handler
        handler.set_status(status)
        handler.clear_header("Content-Type")
        if self.job_id is not None:
            handler.set_header("X-Foreman-Job-Id", self.job_id)
        for name, value in headers:
            handler.add_header(name, value)

    async def begin(self, status: int, headers: list[tuple[str, str]]) -> None:
        if self.gone:
            raise CallerGone
        # Each piece goes out as it is written: Tornado leaves Nagle's algorithm on during a
        # response, and with delayed ACKs a token can wait ~40 ms for the one before it.
        connection = self._handler.request.connection
        if isinstance(connection, HTTP1Connection):
            self._connection = connection
            self._stream = connection.stream
            self._stream.set_nodelay(True)
        self._head(status, headers)

    async def send(self, data: bytes) -> None:
        if self.gone:
            raise CallerGone
        try:
            if self._started and self._connection is not None:
                # The head is out: each later piece goes straight to the connection, which frames
                # it as a chunk. RequestHandler.write and flush would only buffer it, join the
                # buffer, and run the output transforms, of which there are none
                # (compress_response is off: Ollama never compresses).
                flushed = self._connection.write(data)
            else:
                self._started = True
                self._handler.write(data)
                flushed = self._handler.flush()  # written to the socket now, as far as it takes it
            if self._stream is None or self._stream.writing():
                # The client reads slower than the target writes: wait for it, but not for ever.
                await asyncio.wait_for(flushed, self._stall_timeout)
        except StreamClosedError:
            self.gone = True
            raise CallerGone from None
        except TimeoutError:
            self.gone = True
            if self._stream is not None:
                self._stream.close()  # the client's connection: its unread answer goes with it
            raise CallerStalled(
                f"the client stopped reading: no bytes accepted for {self._stall_timeout:g}s (client_stall_timeout)"
            ) from None

    def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if not self.gone and not self._handler._finished:
            self._head(status, headers)
            self._started = True
            self._finish(body)
        self._resolve()

    def end(self, last: bytes = b"") -> None:
        if not self.gone and not self._handler._finished:
            self._finish(last)
        self._resolve()

    @property
    def answered(self) -> bool:
        return self.done.done()

    def abandon(self, message: str, status: int = 499) -> None:
        """The job ended without an answer for this caller: tell it so, as Ollama would
        (an error status before any byte; after some, what ends a failed stream of its API)."""
        if self._started:
            self.end(self._errors.last_words(message))
        else:
            body = self._errors.body(message, status)
            self.reply(status, [("Content-Type", "application/json; charset=utf-8")], body)

    def _finish(self, body: bytes) -> None:
        try:
            if body:
                self._handler.write(body)
            self._handler.finish()
        except StreamClosedError:
            self.gone = True

    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
