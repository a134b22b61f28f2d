"""The base handler: Ollama's habits where Tornado's differ, auth, and the error shape.

Ollama sends no Server header, no ETags, JSON error objects, and plain-text 404/405
pages from its router (docs/wire.md section 0). The browser boundary runs before any
handler (`foreman/app.py`); a request it stops is answered by `BoundaryHandler`, and an
allowed cross-origin one gets its CORS headers here, errors included. Bodies of POST handlers are streamed
in so an oversized one gets 413 before it is read (`max_body`). foreman's errors
(`foreman/errors.py`) get their status here (`STATUS`). Each handler receives what
it uses through `initialize` (the route table is `foreman/app.py`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError, RequestHandler, stream_request_body

from foreman.browser import Boundary, Verdict
from foreman.compact_json import dump
from foreman.config import Settings
from foreman.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    ForemanError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unprocessable,
)

_JSON = "application/json; charset=utf-8"
# A chunked body refused past max_body is read on (and dropped) up to this many times
# max_body, so that a client still sending gets its 413; beyond, the connection is cut.
_DISCARD_FACTOR = 4

# The HTTP status of each of foreman's errors (any other ForemanError: 500).
STATUS: dict[type[ForemanError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    Unprocessable: 422,
    BadGateway: 502,
    Unavailable: 503,
}


def status_of(exc: ForemanError) -> int:
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), 500)


class BaseHandler(RequestHandler):
    open_access = False  # /healthz: no token needed

    def initialize(self, settings: Settings) -> None:
        self.config = settings  # not `settings`: RequestHandler has one (the Application's)
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._closers: list[Callable[[], None]] = []
        self._refused: ForemanError | None = None

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.clear_header("Content-Type")
        boundary = self.settings.get("boundary")
        if isinstance(boundary, Boundary):
            for name, value in boundary.answer_headers(self.request.host, first_origin(self.request)):
                self.add_header(name, value)

    def compute_etag(self) -> None:
        return None

    def prepare(self) -> None:
        self.check_token()
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.config.max_body:
            raise PayloadTooLarge(f"request body too large: {length} bytes, max_body is {self.config.max_body}")

    def check_token(self) -> None:
        """Bearer token, compared as bytes in constant time (no token configured: open)."""
        token = self.config.token
        if token and not self.open_access:
            given = self.request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise Unauthorized("unauthorized")

    def data_received(self, chunk: bytes) -> None:
        """Collect a streamed body; past `max_body` (a chunked one: no Content-Length to refuse
        it by), drop it and read the rest only to discard it, so the 413 comes as an answer
        when the handler method runs. Raising here would make Tornado send a bare 400."""
        self._body_size += len(chunk)
        if self._body_size > self.config.max_body and not isinstance(self._refused, PayloadTooLarge):
            self._body_parts.clear()
            if self._refused is None:
                self._refused = PayloadTooLarge(f"request body too large: max_body is {self.config.max_body}")
        if self._refused is None:
            self._body_parts.append(chunk)

    def check_access(self) -> None:
        """Raise the refusal of a request whose token was refused before its body arrived."""
        if self._refused is not None:
            raise self._refused

    @property
    def body(self) -> bytes:
        """The request body (after `check_access`)."""
        self.check_access()
        if self._body_parts:
            return b"".join(self._body_parts)
        return self.request.body or b""

    def when_closed(self, closer: Callable[[], None]) -> None:
        """Call `closer` if the client hangs up before the answer is complete."""
        self._closers.append(closer)

    def on_connection_close(self) -> None:
        super().on_connection_close()  # fails a streamed body still being read, or the handler waits for ever
        for closer in self._closers:
            closer()

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", _JSON)
        self.finish(dump(value))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """foreman's own errors are answers, not failures: nothing to log (the access log has them)."""
        if not isinstance(value, ForemanError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ForemanError):
            self.set_status(status_of(exc))
        elif status_code in (404, 405):
            # gin's router answers unknown paths and wrong methods in plain text.
            text = "404 page not found" if status_code == 404 else "405 method not allowed"
            self.set_header("Content-Type", "text/plain")
            self.finish(text)
            return
        if isinstance(exc, ForemanError):
            message = exc.message
        elif isinstance(exc, HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason.lower()
        self.set_header("Content-Type", _JSON)
        self.finish(dump({"error": message}))


def first_origin(request: HTTPServerRequest) -> str:
    """The request's `Origin` as Go's `Header.Get` reads it: the first one, or empty."""
    origins = request.headers.get_list("Origin")
    return origins[0] if origins else ""


class _EveryMethod(tuple[str, ...]):
    """SUPPORTED_METHODS that holds every method, invented ones too."""

    def __contains__(self, method: object) -> bool:
        return True


class BoundaryHandler(RequestHandler):
    """Answers what the browser boundary stops (403) or answers itself (a preflight, 204),
    whatever the path and the method: no route, no token check, no other handler runs.

    Not a streamed-body handler: its short answer goes out once the body is read, so a
    client still writing one sees the 403, not a reset.
    """

    SUPPORTED_METHODS = _EveryMethod()

    def initialize(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.clear_header("Content-Type")

    def prepare(self) -> None:
        self._answer()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self._answer()  # a form body Tornado could not parse, before prepare: still the verdict

    def _answer(self) -> None:
        assert self.verdict.status is not None
        self.set_status(self.verdict.status)
        for name, value in self.verdict.headers:
            self.add_header(name, value)
        self.finish()


@stream_request_body
class BodyHandler(BaseHandler):
    """A handler whose request body streams in, so `max_body` is enforced before it is read.

    A request refused for its token, or a chunked body that outgrows `max_body` (413), is
    answered when its handler method runs (reading `body`, or calling `check_access` first
    thing), not in `prepare` or `data_received`: Tornado answers a streamed-body request
    refused in `prepare` and then closes the connection, under a client still writing its
    body or about to reuse the connection, which clients report as a reset instead of the
    401, and turns an exception in `data_received` into a bare 400. A body too large by its
    Content-Length is refused at once, without reading it. Every method of a BodyHandler must reach
    `check_access` before answering (tests/test_packaging.py checks every operation).
    """

    def prepare(self) -> None:
        super().prepare()
        connection = self.request.connection
        if "Content-Length" not in self.request.headers and isinstance(connection, HTTP1Connection):
            # Tornado cuts a chunked body past its own limit with a bare 400: let `data_received`
            # see max_body passed, and a client still sending get its 413.
            connection.set_max_body_size(self.config.max_body * _DISCARD_FACTOR)

    def check_token(self) -> None:
        try:
            super().check_token()
        except ForemanError as exc:
            self._refused = exc
