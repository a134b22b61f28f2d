"""Request parsing: a request body becomes a `Submission`, with Ollama's own error texts.

Parsing reads only what foreman needs (`model`, `stream`, `keep_alive`, `messages`,
`prompt`) and keeps the body bytes as they came (docs/adr/0003). Errors copy
Ollama's status codes and texts (docs/wire.md sections 0 and 5).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from tornado.httputil import HTTPFile, HTTPInputError, parse_body_arguments

from foreman.errors import BadRequest, NotFound
from foreman.job import (
    CHAT,
    GENERATE,
    JOB_API_ENDPOINTS,
    KIND_GENERATE,
    KIND_LOAD,
    KIND_UNLOAD,
    V1_CHAT,
    V1_COMPLETIONS,
    V1_MESSAGES,
    V1_RESPONSES,
    V1_TRANSCRIPTIONS,
    Submission,
    model_key,
)
from foreman.runner import runner_key, runner_options

_GO_DURATION = re.compile(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


def decode_body(body: bytes, go_type: str) -> dict[str, Any]:
    """Decode a JSON request body the way Ollama's handlers do, with their error texts."""
    if not body:
        raise BadRequest("missing request body")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("invalid character looking for beginning of value") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(_go_json_error(body, exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(data), "number")
        raise BadRequest(f"json: cannot unmarshal {kind} into Go value of type {go_type}")
    return data


def _go_json_error(body: bytes, exc: json.JSONDecodeError) -> str:
    if exc.pos >= len(exc.doc.rstrip()):
        return "unexpected EOF"
    return f"invalid character {exc.doc[exc.pos]!r} looking for beginning of value"


def is_zero_keep_alive(value: Any) -> bool:
    """keep_alive 0, 0.0, "0" or "0s" (any zero Go duration) asks for an unload."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return True
        if _GO_DURATION.fullmatch(text):
            return not any(ch in "123456789" for ch in text)
    return False


def parse_submission(endpoint: str, body: bytes, *, keep_alive: float | None = None, sync: bool = True) -> Submission:
    """Validate a chat or generate body; raises BadRequest/NotFound with Ollama's texts.

    `keep_alive` (seconds) is added to a body that names none (the worker model's pin).
    """
    data = decode_body(body, _go_type(endpoint))
    model, kind = _model_and_kind(endpoint, data)
    if keep_alive is not None and "keep_alive" not in data:
        body = with_keep_alive(body, keep_alive)
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=kind,
        stream=data.get("stream") is not False,
        body=body,
        sync=sync,
        runner=runner_key(model_key(model), runner_options(data)),
    )


def parse_openai(endpoint: str, body: bytes) -> Submission:
    """An OpenAI-compatible request (`/v1/chat/completions`, `/v1/completions`), queued like
    `/api/chat`. Its `stream` defaults to false, as in Ollama's OpenAI layer, which ignores
    `keep_alive`: the body goes as it came."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid JSON in request body") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=KIND_GENERATE,
        stream=data.get("stream") is True,
        body=body,
    )


def parse_anthropic(body: bytes) -> Submission:
    """`POST /v1/messages` (Anthropic Messages), queued like `/api/chat`, with the checks
    Ollama's middleware makes before anything runs (docs/wire.md section 10.5). Streaming is
    off unless `"stream": true`."""
    data = _foreign_body(body, "anthropic.MessagesRequest")
    model = _required_model(data, "MessagesRequest")
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not data.get("messages"):
        raise BadRequest("messages is required")
    return _foreign_submission(V1_MESSAGES, model, KIND_GENERATE, data, body)


def parse_responses(body: bytes) -> Submission:
    """`POST /v1/responses` (OpenAI Responses), queued like `/api/chat`. No `input` and no
    `instructions` is a load, as in Ollama (docs/wire.md section 10.1)."""
    data = _foreign_body(body, "openai.ResponsesRequest")
    model = _required_model(data, "ResponsesRequest")
    kind = KIND_GENERATE if data.get("input") or data.get("instructions") else KIND_LOAD
    return _foreign_submission(V1_RESPONSES, model, kind, data, body)


def parse_transcription(body: bytes, content_type: str) -> Submission:
    """`POST /v1/audio/transcriptions`: a multipart form whose `model` field names the model;
    it runs a model through the chat path, so it is a job (never streamed to the caller)."""
    fields: dict[str, list[bytes]] = {}
    files: dict[str, list[HTTPFile]] = {}
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("request Content-Type isn't multipart/form-data")
    try:
        parse_body_arguments(content_type, body, fields, files)
    except HTTPInputError as exc:
        raise BadRequest(f"invalid multipart form: {exc}") from None
    model = (fields.get("model") or [b""])[0].decode("utf-8", "replace").strip()
    if not model:
        raise BadRequest("model is required")
    if "file" not in files:
        raise BadRequest("file is required")
    return Submission(
        endpoint=V1_TRANSCRIPTIONS, model=model_key(model), name=model, kind=KIND_GENERATE, stream=False, body=body
    )


def _foreign_body(body: bytes, go_type: str) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest("EOF")  # gin's ShouldBindJSON on an empty body
    return decode_body(body, go_type)


def _required_model(data: dict[str, Any], struct: str) -> str:
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(
            f"json: cannot unmarshal {type(model).__name__} into Go struct field {struct}.model of type string"
        )
    if not model:
        raise BadRequest("model is required")
    return model


def _foreign_submission(endpoint: str, model: str, kind: str, data: dict[str, Any], body: bytes) -> Submission:
    return Submission(
        endpoint=endpoint, model=model_key(model), name=model, kind=kind, stream=data.get("stream") is True, body=body
    )


def parse_job(body: bytes, *, keep_alive: float, idempotency_key: str | None = None) -> Submission:
    """A `POST /jobs` body: a chat payload, or a generate one (`prompt` without `messages`),
    plus `state_webhook_url` and, optionally, `endpoint`: any queued endpoint with a JSON
    body, whose shape the rest of the body then takes (docs/adr/0014, 0027).

    Nobody reads a job's answer as it streams, so foreman re-encodes this body: without its
    own fields, with `stream: true` (progress is counted as lines arrive; the whole result is
    collected either way) and, for the native endpoints, with `keep_alive` when it names none.
    """
    data = decode_body(body, _go_type(CHAT))
    webhook = data.pop("state_webhook_url", None)
    if webhook is not None and not isinstance(webhook, str):
        raise BadRequest("state_webhook_url must be a string")
    endpoint = data.pop("endpoint", None)
    if endpoint is None:
        endpoint = GENERATE if "prompt" in data and "messages" not in data else CHAT
    elif endpoint not in JOB_API_ENDPOINTS:
        raise BadRequest(f"endpoint must be one of {', '.join(JOB_API_ENDPOINTS)}")
    if not data.get("model"):
        raise BadRequest("model is required")  # foreman's own API: a bad body is a 400 (docs/contract.md section 3)
    data["stream"] = True
    if endpoint in (CHAT, GENERATE):
        model, kind = _model_and_kind(endpoint, data)
        data.setdefault("keep_alive", keep_alive_value(keep_alive))
    encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    if endpoint not in (CHAT, GENERATE):
        parsed = _FOREIGN_PARSERS[endpoint](encoded)
        model, kind = parsed.name, parsed.kind
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=kind,
        stream=True,
        body=encoded,
        sync=False,
        webhook_url=webhook or None,
        idempotency_key=idempotency_key,
        runner=runner_key(model_key(model), runner_options(data) if endpoint in (CHAT, GENERATE) else {}),
        body_sha256=hashlib.sha256(body).hexdigest() if idempotency_key is not None else None,
    )


_FOREIGN_PARSERS: dict[str, Callable[[bytes], Submission]] = {
    V1_CHAT: lambda body: parse_openai(V1_CHAT, body),
    V1_COMPLETIONS: lambda body: parse_openai(V1_COMPLETIONS, body),
    V1_MESSAGES: parse_anthropic,
    V1_RESPONSES: parse_responses,
}


def _go_type(endpoint: str) -> str:
    return "api.ChatRequest" if endpoint == CHAT else "api.GenerateRequest"


def _model_and_kind(endpoint: str, data: dict[str, Any]) -> tuple[str, str]:
    """The model (as spelled) and the job kind, with Ollama's errors for a missing model."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest(
            f"json: cannot unmarshal {type(model).__name__} into Go struct field "
            f"{_go_type(endpoint).split('.')[-1]}.model of type string"
        )
    if not model:
        if endpoint == CHAT:
            raise BadRequest("model is required")
        raise NotFound("model '' not found")
    empty = not data.get("messages") if endpoint == CHAT else not data.get("prompt")
    kind = KIND_GENERATE
    if empty:
        kind = KIND_UNLOAD if is_zero_keep_alive(data.get("keep_alive")) else KIND_LOAD
    return model, kind


def with_keep_alive(body: bytes, seconds: float) -> bytes:
    """Splice `"keep_alive":N` in after the opening brace, leaving every other byte as sent."""
    start = body.find(b"{")
    if start < 0:
        return body
    value = keep_alive_value(seconds)
    rest = body[start + 1 :]
    sep = b"" if rest.lstrip().startswith(b"}") else b","
    return body[: start + 1] + b'"keep_alive":' + str(value).encode() + sep + rest


def keep_alive_value(seconds: float) -> int | float:
    """Seconds as Ollama reads a keep_alive number; any negative means forever."""
    if seconds < 0:
        return -1
    return int(seconds) if float(seconds).is_integer() else seconds
