"""The OpenAI-compatible `/v1` layer: chat and text completions, models, embeddings.

Requests are translated into the same `Job` the native handlers run, so residency, faults
and pacing behave identically; only the framing differs (SSE `data:` events ending with
`[DONE]`, `chat.completion` objects) and errors take OpenAI's shape. `keep_alive` is
ignored here, as in Ollama.
"""

from __future__ import annotations

import base64
import random
import struct
import time
from typing import Any

from .base import SimHandler
from .content import Plan, make_plan, unit_vector
from .embeddings import EmbeddingBase, input_list
from .formats import Format, token_literal
from .inference import GenerationHandler, Job
from .wire import EVENT_STREAM, JSON_UTF8, ApiError, Clock, dumpb, dumps

_DONE = b"data: [DONE]\n\n"


def openai_error(status: int, message: str) -> bytes:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return dumpb({"error": {"message": message, "type": kind, "param": None, "code": None}})


class OpenAIErrors(SimHandler):
    """Errors as `{"error": {"message", "type", "param", "code"}}`."""

    STREAM_DEFAULT = False

    def error_body(self, status: int, message: str) -> bytes:
        return openai_error(status, message)


def _usage(plan: Plan) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.eval_count,
        "total_tokens": plan.prompt_tokens + plan.eval_count,
    }


def _finish_reason(plan: Plan) -> str:
    return "tool_calls" if plan.tool_calls else plan.done_reason


def _openai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Native tool calls -> OpenAI's, whose `arguments` is a JSON string."""
    return [
        {
            "id": call["id"],
            "index": index,
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": dumps(call["function"]["arguments"])},
        }
        for index, call in enumerate(calls)
    ]


class ChatCompletionFormat(Format):
    stream_content_type = EVENT_STREAM

    def __init__(self, model: str, clock: Clock, include_usage: bool) -> None:
        super().__init__(model, clock)
        self.id = f"chatcmpl-{random.randint(0, 998)}"
        self.created = int(time.time())
        self.include_usage = include_usage
        self._prefix = (
            b'data: {"id":"'
            + self.id.encode()
            + b'","object":"chat.completion.chunk","created":'
            + str(self.created).encode()
            + b',"model":'
            + dumpb(model)
            + b',"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{'
        )
        self._role_sent = False

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = b'"role":"assistant"' + (b"," + delta if delta else b"")
        return self._prefix + delta + b'},"finish_reason":' + finish + b"}]}\n\n"

    def thinking(self, token: str) -> bytes:
        return self._chunk(b'"reasoning":' + token_literal(token))

    def content(self, token: str) -> bytes:
        return self._chunk(b'"content":' + token_literal(token))

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        return self._chunk(b'"tool_calls":' + dumpb(_openai_calls(calls)))

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        lines = [self._chunk(b"", dumpb(_finish_reason(plan)))]
        if self.include_usage:
            usage = self._envelope("chat.completion.chunk")
            usage.update(choices=[], usage=_usage(plan))
            lines.append(b"data: " + dumpb(usage) + b"\n\n")
        lines.append(_DONE)
        return lines

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_ollama",
        }

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.content)}
        if plan.thinking:
            message["reasoning"] = "".join(plan.thinking)
        if plan.tool_calls:
            message["tool_calls"] = _openai_calls(plan.tool_calls)
        body = self._envelope("chat.completion")
        body["choices"] = [{"index": 0, "message": message, "finish_reason": _finish_reason(plan)}]
        body["usage"] = _usage(plan)
        return dumpb(body)

    def done_reply(self, reason: str) -> bytes:
        raise AssertionError("the OpenAI layer has no load-only requests")

    def error_line(self, message: str) -> bytes:
        return b"data: " + openai_error(500, message) + b"\n\n"


class CompletionFormat(ChatCompletionFormat):
    def __init__(self, model: str, clock: Clock, include_usage: bool) -> None:
        super().__init__(model, clock, include_usage)
        self.id = f"cmpl-{random.randint(0, 998)}"
        self._prefix = (
            b'data: {"id":"'
            + self.id.encode()
            + b'","object":"text_completion","created":'
            + str(self.created).encode()
            + b',"choices":[{"text":'
        )
        self._suffix = b',"model":' + dumpb(model) + b',"system_fingerprint":"fp_ollama"}\n\n'

    def _text(self, text: bytes, finish: bytes = b"null") -> bytes:
        return self._prefix + text + b',"index":0,"finish_reason":' + finish + b"}]" + self._suffix

    def thinking(self, token: str) -> bytes:
        return self._text(b'""')

    def content(self, token: str) -> bytes:
        return self._text(token_literal(token))

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        lines = [self._text(b'""', dumpb(plan.done_reason))]
        if self.include_usage:
            usage = self._envelope("text_completion")
            usage.update(choices=[], usage=_usage(plan))
            lines.append(b"data: " + dumpb(usage) + b"\n\n")
        lines.append(_DONE)
        return lines

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        body = self._envelope("text_completion")
        body["choices"] = [
            {"text": "".join(plan.content), "index": 0, "logprobs": None, "finish_reason": plan.done_reason}
        ]
        body["usage"] = _usage(plan)
        return dumpb(body)


def _flatten(content: object) -> str:
    """OpenAI content: a string or a list of parts; the text parts are what counts here."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _limit(body: dict[str, Any]) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _think(body: dict[str, Any]) -> bool | None:
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if effort is None:
        return None
    return bool(effort != "none")


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class ChatCompletionsHandler(OpenAIErrors, GenerationHandler):
    """`POST /v1/chat/completions`."""

    def build_job(self) -> Job:
        body = self.parse_json("openai.ChatCompletionRequest", {"model": (str, "string"), "stream": (bool, "bool")})
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "[] is too short - 'messages'")
        model = body.get("model") or ""
        if not model.strip():
            raise ApiError(400, "model is required")
        info = self.lookup(model)
        if self.record is not None:
            self.record.kind = "chat"
        if info.embedding_only:
            raise ApiError(400, f'"{model}" does not support chat', refused_model=True)
        think = _think(body)
        if think and "thinking" not in info.capabilities:
            raise ApiError(400, f'"{model}" does not support thinking', refused_model=True)
        thinking = "thinking" in info.capabilities if think is None else think
        parts, last_user = [], ""
        for message in messages:
            message = message if isinstance(message, dict) else {}
            text = _flatten(message.get("content"))
            role = str(message.get("role") or "").lower()
            parts.append(f"{role}: {text}")
            last_user = text if role == "user" else last_user
        tools = body.get("tools") if isinstance(body.get("tools"), list) else None
        plan = make_plan(
            info.key,
            "\n".join(parts),
            limit=_limit(body),
            default_tokens=self.sim.default_tokens,
            think=thinking,
            tools=tools,
            last_user=last_user,
        )
        fmt = ChatCompletionFormat(model, self.sim.clock, _include_usage(body))
        return Job(model, info, body.get("stream") is True, None, "generate", plan, fmt)


class CompletionsHandler(OpenAIErrors, GenerationHandler):
    """`POST /v1/completions`."""

    def build_job(self) -> Job:
        body = self.parse_json("openai.CompletionRequest", {"model": (str, "string"), "stream": (bool, "bool")})
        model = body.get("model") or ""
        if not model.strip():
            raise ApiError(400, "model is required")
        prompt = body.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "invalid type for 'prompt' field")
        info = self.lookup(model)
        if self.record is not None:
            self.record.kind = "generate"
        if info.embedding_only:
            raise ApiError(400, f'"{model}" does not support generate', refused_model=True)
        plan = make_plan(info.key, prompt, limit=_limit(body), default_tokens=self.sim.default_tokens, think=False)
        fmt = CompletionFormat(model, self.sim.clock, _include_usage(body))
        return Job(model, info, body.get("stream") is True, None, "generate", plan, fmt)


class ModelsHandler(OpenAIErrors):
    """`GET /v1/models` and `GET /v1/models/{model}`."""

    def get(self, model: str | None = None) -> None:
        def entry(name: str, modified: float) -> dict[str, Any]:
            owner = name.split("/")[-2] if name.count("/") >= 1 else "library"
            return {"id": name, "object": "model", "created": int(modified), "owned_by": owner}

        if model is not None:
            info = self.lookup(model)
            self.reply(dumpb(entry(info.name, info.modified)), content_type=JSON_UTF8)
            return
        data = [entry(m.name, m.modified) for m in self.sim.inventory.all()]
        self.reply(dumpb({"object": "list", "data": data or None}))


class V1EmbeddingsHandler(OpenAIErrors, EmbeddingBase):
    """`POST /v1/embeddings`."""

    async def post(self) -> None:
        body = self.parse_json("openai.EmbedRequest", {"model": (str, "string")})
        model = body.get("model") or ""
        if "input" not in body or body.get("input") is None:
            raise ApiError(400, "invalid input")
        if not model.strip():
            raise ApiError(400, "model is required")
        inputs = input_list(body.get("input"))
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"invalid encoding format: {encoding!r}")
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else None
        info = self.lookup(model)

        def compute() -> tuple[dict[str, Any], int | None]:
            data = []
            for index, text in enumerate(inputs):
                vector: Any = unit_vector(info.key, text, dims)
                if encoding == "base64":
                    vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data.append({"object": "embedding", "embedding": vector, "index": index})
            tokens = sum(len(text.split()) + 1 for text in inputs)
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return {"object": "list", "data": data, "model": model, "usage": usage}, None

        await self.embed(model, info, None, compute)
