"""How each API Ollama serves shapes an error, for foreman's own refusals too (docs/wire.md
sections 5, 8 and 10.5). A client of the Anthropic API must get an Anthropic error from
foreman (unknown model, queue full, cancelled, target unreachable), or its SDK reports
a parse failure instead of the reason.

`body` is a whole error answer (nothing was sent yet); `last_words` ends an answer already
under way: a native stream gets one more `{"error": ...}` line, an OpenAI chat stream one
more `data:` event, while Ollama's Anthropic and Responses writers just end the stream.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from foreman.compact_json import dump

_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error"}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class ErrorShape(Protocol):
    def body(self, message: str, status: int) -> bytes: ...

    def last_words(self, message: str) -> bytes: ...


class Native:
    """`{"error": "..."}`: the native API's, and foreman's own job API's."""

    def body(self, message: str, status: int) -> bytes:
        return dump({"error": message})

    def last_words(self, message: str) -> bytes:
        return dump({"error": message}) + b"\n"


def openai_error(message: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"), "param": None, "code": None}}


class OpenAI:
    """Ollama's OpenAI layer: `{"error": {"message", "type", "param", "code"}}`."""

    def body(self, message: str, status: int) -> bytes:
        return dump(openai_error(message, status))

    def last_words(self, message: str) -> bytes:
        return b"data: " + dump(openai_error(message, 500)) + b"\n\n"


class Responses(OpenAI):
    """`/v1/responses`: the OpenAI shape; a stream that fails just ends (no `response.completed`)."""

    def last_words(self, message: str) -> bytes:
        return b""


class Anthropic:
    """`/v1/messages`: `{"type": "error", "error": {"type", "message"}, "request_id": "req_..."}`;
    a stream that fails just ends (no `message_stop`)."""

    def body(self, message: str, status: int) -> bytes:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return dump(
            {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_" + secrets.token_hex(12)}
        )

    def last_words(self, message: str) -> bytes:
        return b""


NATIVE = Native()
OPENAI = OpenAI()
RESPONSES = Responses()
ANTHROPIC = Anthropic()
