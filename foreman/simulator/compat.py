"""What the foreign faces share: `/v1/messages`, `/v1/responses` and `/v1/audio/transcriptions`.

Ollama runs each of them as a gin middleware in front of its one `ChatHandler`: the middleware
decodes its own request type and turns it into a chat request, then wraps the response writer
so that every NDJSON chunk `ChatHandler` writes comes out in the foreign format. The simulator
does the same: a handler here decodes the foreign body into native messages and hands them to
`GenerationHandler.chat_job`, and a `ForeignFormat` writes each of the shared token loop's
chunks as the foreign format's events. Two details of that layering show on the wire and are kept:

* An error from the middleware (a decode error, a missing field) is gin's `c.JSON`:
  `application/json; charset=utf-8`, no trailing newline. An error from `ChatHandler` (unknown
  model, capabilities, scheduler, runner, an injected fault) goes through the writer's
  `json.NewEncoder`: `application/json`, a trailing newline. `enter_chat_handler` marks the
  moment one becomes the other.
* A streamed request gets `Cache-Control: no-cache` and `Connection: keep-alive` from the
  middleware, so they are on its errors too; after the first chunk an error has no words in
  these formats and the stream just ends (`error_line` returns nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .content import TOKEN_JSON, Plan
from .formats import Format
from .inference import GenerationHandler
from .wire import EVENT_STREAM, JSON_UTF8, ApiError, Clock, FieldTypes, check_types, decode_body, go_dumpb, go_kind

if TYPE_CHECKING:
    from .state import SimulatorState

#: What `json.NewEncoder` replies carry (no charset).
JSON_PLAIN = "application/json"


def sse(event: str, data: bytes) -> bytes:
    """One Server-Sent Event as Ollama's writers frame it."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def go_literal(token: str) -> bytes:
    """A token as a Go JSON string (the vocabulary's literals are prebuilt)."""
    literal = TOKEN_JSON.get(token)
    return literal if literal is not None else go_dumpb(token)


def unmarshal_error(value: object, target: str) -> ApiError:
    """Go's type error: `json: cannot unmarshal <kind> into <target>`."""
    return ApiError(400, f"json: cannot unmarshal {go_kind(value)} into {target}")


def check_fields(body: dict[str, Any], struct: str, spec: FieldTypes, ints: frozenset[str] = frozenset()) -> None:
    """Go's type errors for the fields of `body`, in the body's order (Go reports the first one);
    the names in `ints` are Go `int`s, which also refuse a number written with a point or exponent."""
    for name, value in body.items():
        if name in ints and value is not None:
            target = f"Go struct field {struct}.{name} of type int"
            if isinstance(value, float):  # Go's ParseInt refuses "5.0" and "5e0" too
                raise ApiError(400, f"json: cannot unmarshal number {value!r} into {target}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise unmarshal_error(value, target)
        elif name in spec:
            check_types({name: value}, struct, {name: spec[name]})


def as_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ForeignFormat(Format):
    """A foreign writer: SSE when streamed, one `json.NewEncoder` body when not."""

    stream_content_type = EVENT_STREAM
    whole_content_type = JSON_PLAIN

    def __init__(self, model: str, clock: Clock, stream: bool) -> None:
        super().__init__(model, clock)
        self.stream = stream
        # A load reply goes through the same writer: events when streamed, one object when not.
        self.done_content_type = EVENT_STREAM if stream else JSON_PLAIN
        self.done_streamed = stream

    def done_reply(self, reason: str) -> bytes:
        empty = Plan([], [], reason, 0)
        return b"".join(self.final(empty, {})) if self.stream else self.whole(empty, {})

    def error_line(self, message: str) -> bytes:
        return b""  # the writer decodes `{"error":…}` as an empty chat chunk and writes nothing


class ForeignHandler(GenerationHandler):
    """A middleware in front of the shared chat flow; subclasses give `error_body` its shape."""

    STREAM_DEFAULT = False

    def initialize(self, sim: SimulatorState) -> None:
        super().initialize(sim)
        self.in_chat_handler = False
        self.sse_requested = False

    def enter_chat_handler(self, stream: bool) -> None:
        """The middleware is done: from here on errors come through the writer."""
        self.in_chat_handler = True
        self.sse_requested = stream
        if stream:
            self._sse_headers()

    def _sse_headers(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Connection", "keep-alive")

    def error_framing(self) -> tuple[str, bytes]:
        if not self.in_chat_handler:
            return JSON_UTF8, b""
        if self.sse_requested:
            self._sse_headers()  # set by the middleware before ChatHandler failed
        return JSON_PLAIN, b"\n"

    def decode(self, go_type: str) -> dict[str, Any]:
        """gin's `ShouldBindJSON` into a struct: an empty body is Go's `EOF`."""
        raw = self.request.body
        if not raw.strip(b" \t\r\n"):
            raise ApiError(400, "EOF")
        body = decode_body(raw, go_type)
        self.note_body(body)
        return body
