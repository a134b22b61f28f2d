"""Every error foreman raises on purpose: plain exceptions, one class per kind of refusal.

Nothing here knows HTTP: the handlers map each class to its status
(`foreman/handlers/base.py`, `STATUS`) and their one `write_error` turns it into
Ollama's shape, `{"error": "..."}` sent as `application/json` (ollama-js only parses
JSON error bodies; the Python client crashes on JSON that is not an object). A class's
docstring is its default message.
"""

from __future__ import annotations


class ForemanError(Exception):
    """internal error"""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class BadRequest(ForemanError):
    """bad request"""


class Unauthorized(ForemanError):
    """unauthorized"""


class Forbidden(ForemanError):
    """forbidden"""


class NotFound(ForemanError):
    """not found"""


class Conflict(ForemanError):
    """conflict"""


class Unprocessable(ForemanError):
    """the request cannot be processed as sent"""


class PayloadTooLarge(ForemanError):
    """request body too large"""


class BadGateway(ForemanError):
    """the target did not answer"""


class Unavailable(ForemanError):
    """foreman is shutting down"""


class QueueFull(Unavailable):
    """server busy, please try again.  maximum pending requests exceeded"""


class StorageUnavailable(Unavailable):
    """storage unavailable"""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"storage unavailable: {problem}")


class ConfigError(ForemanError):
    """invalid configuration"""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")
