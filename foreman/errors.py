"""Every error foreman raises on purpose, with the HTTP status each one maps to.

A handler never builds an error body itself: it raises one of these, and the
shared `write_error` turns it into Ollama's shape, `{"error": "..."}` sent as
`application/json` (ollama-js only parses JSON error bodies; the Python client
crashes on JSON that is not an object).
"""

from __future__ import annotations

from tornado.web import HTTPError


class ForemanError(HTTPError):
    """internal error"""

    status: int = 500

    def __init__(self, message: str | None = None) -> None:
        # An HTTPError without log_message: Tornado sends it through write_error, logs nothing.
        super().__init__(self.status)
        self.message = message or (self.__doc__ or "").strip()

    def __str__(self) -> str:
        return self.message


class BadRequest(ForemanError):
    """bad request"""

    status = 400


class Unauthorized(ForemanError):
    """unauthorized"""

    status = 401


class Forbidden(ForemanError):
    """forbidden"""

    status = 403


class NotFound(ForemanError):
    """not found"""

    status = 404


class Conflict(ForemanError):
    """conflict"""

    status = 409


class PayloadTooLarge(ForemanError):
    """request body too large"""

    status = 413


class BadGateway(ForemanError):
    """the target did not answer"""

    status = 502


class Unavailable(ForemanError):
    """foreman is shutting down"""

    status = 503


class ConfigError(ForemanError):
    """invalid configuration"""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")
