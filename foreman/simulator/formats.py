"""How a generation is written on the wire: native `/api/chat` and `/api/generate` shapes.

A `Format` turns the steps of a `Plan` into bytes. Streaming lines are assembled from
prebuilt pieces (the model prefix, token literals from `TOKEN_JSON`), so a 20,000-token
stream does no per-token JSON encoding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .content import TOKEN_JSON, Plan
from .wire import JSON_UTF8, NDJSON, Clock, dumpb


def token_literal(token: str) -> bytes:
    literal = TOKEN_JSON.get(token)
    return literal if literal is not None else dumpb(token)


class Format(ABC):
    """Native NDJSON lines; subclasses choose the chat or generate field names."""

    stream_content_type = NDJSON
    #: Content type of a non-streamed reply and of a load/unload reply.
    whole_content_type = JSON_UTF8
    done_content_type = JSON_UTF8
    #: Whether a load/unload reply is written as a (one-write) stream rather than one body.
    done_streamed = False

    def __init__(self, model: str, clock: Clock) -> None:
        self.model = model
        self.clock = clock
        self._head = b'{"model":' + dumpb(model) + b',"created_at":"'

    def _line(self, middle: bytes) -> bytes:
        return b"".join((self._head, self.clock.created_at().encode(), middle))

    @abstractmethod
    def thinking(self, token: str) -> bytes: ...

    @abstractmethod
    def content(self, token: str) -> bytes: ...

    @abstractmethod
    def tools(self, calls: list[dict[str, Any]]) -> bytes: ...

    @abstractmethod
    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        """The closing line(s) of a stream."""
        ...

    @abstractmethod
    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        """The single body of a non-streamed reply."""
        ...

    @abstractmethod
    def done_reply(self, reason: str) -> bytes:
        """The one-object answer to a load or unload request."""
        ...

    def error_line(self, message: str) -> bytes:
        return dumpb({"error": message}) + b"\n"


class ChatFormat(Format):
    def thinking(self, token: str) -> bytes:
        return self._line(
            b'","message":{"role":"assistant","content":"","thinking":' + token_literal(token) + b'},"done":false}\n'
        )

    def content(self, token: str) -> bytes:
        return self._line(b'","message":{"role":"assistant","content":' + token_literal(token) + b'},"done":false}\n')

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        return self._line(
            b'","message":{"role":"assistant","content":"","tool_calls":' + dumpb(calls) + b'},"done":false}\n'
        )

    def _message(self, plan: Plan | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.content) if plan else ""}
        if plan is not None and plan.thinking:
            message["thinking"] = "".join(plan.thinking)
        if plan is not None and plan.tool_calls:
            message["tool_calls"] = plan.tool_calls
        return message

    def _done(self, message: dict[str, Any], reason: str, metrics: dict[str, int]) -> dict[str, Any]:
        return {
            "model": self.model,
            "created_at": self.clock.created_at(),
            "message": message,
            "done": True,
            "done_reason": reason,
            **metrics,
        }

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        empty = {"role": "assistant", "content": ""}
        return [dumpb(self._done(empty, plan.done_reason, metrics)) + b"\n"]

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        return dumpb(self._done(self._message(plan), plan.done_reason, metrics))

    def done_reply(self, reason: str) -> bytes:
        return dumpb(self._done(self._message(None), reason, {}))


class GenerateFormat(Format):
    def __init__(self, model: str, clock: Clock, context: list[int] | None) -> None:
        super().__init__(model, clock)
        self.context = context

    def thinking(self, token: str) -> bytes:
        return self._line(b'","response":"","thinking":' + token_literal(token) + b',"done":false}\n')

    def content(self, token: str) -> bytes:
        return self._line(b'","response":' + token_literal(token) + b',"done":false}\n')

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        return self._line(b'","response":"","done":false,"tool_calls":' + dumpb(calls) + b"}\n")

    def _done(self, plan: Plan | None, reason: str, metrics: dict[str, int], whole: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "created_at": self.clock.created_at(),
            "response": "".join(plan.content) if plan is not None and whole else "",
        }
        if plan is not None and whole and plan.thinking:
            body["thinking"] = "".join(plan.thinking)
        body["done"] = True
        body["done_reason"] = reason
        if plan is not None and self.context is not None:
            body["context"] = self.context
        body.update(metrics)
        return body

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        return [dumpb(self._done(plan, plan.done_reason, metrics, whole=False)) + b"\n"]

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        return dumpb(self._done(plan, plan.done_reason, metrics, whole=True))

    def done_reply(self, reason: str) -> bytes:
        return dumpb(self._done(None, reason, {}, whole=True))
