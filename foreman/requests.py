"""Request parsing: a request body becomes a `Submission`, with Ollama's own error texts.

Bodies are decoded as Go decodes them (`foreman/json_body.py`) and checked against the
struct Ollama fills (`foreman/ollama_structs.py`, `foreman/go_unmarshal.py`), so a body Ollama would refuse is refused
here, before anything is queued, with Go's text (docs/adr/0023). Parsing then reads only
what foreman needs (`model`, `stream`, `keep_alive`, `messages`, `prompt`) and keeps the body
bytes as they came (docs/adr/0003). Other errors copy Ollama's status codes and texts
(docs/wire.md sections 0 and 5).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from tornado.httputil import HTTPFile, HTTPInputError, parse_body_arguments

from foreman import json_body
from foreman.errors import BadRequest, NotFound
from foreman.go_unmarshal import Struct, check
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
from foreman.ollama_structs import (
    CHAT_REQUEST,
    EMBED_REQUEST,
    EMBEDDING_REQUEST,
    GENERATE_REQUEST,
    OPENAI_CHAT_REQUEST,
    OPENAI_COMPLETION_REQUEST,
    OPENAI_EMBED_REQUEST,
)
from foreman.runner import runner_key, runner_options

_GO_DURATION = re.compile(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_NATIVE_EMPTY = "missing request body"  # Ollama's handlers; its OpenAI layer says "EOF"
_EMBEDDINGS = {
    "/api/embed": (EMBED_REQUEST, _NATIVE_EMPTY),
    "/api/embeddings": (EMBEDDING_REQUEST, _NATIVE_EMPTY),
    "/v1/embeddings": (OPENAI_EMBED_REQUEST, "EOF"),
}


def decode_body(body: bytes, struct: Struct, empty: str = _NATIVE_EMPTY) -> dict[str, Any]:
    """Decode a JSON request body the way Ollama's handlers do: the struct's fields, by JSON name."""
    data, big = decode_object(body, struct, empty)
    return check(data, struct, big)


def decode_object(body: bytes, struct: Struct, empty: str = _NATIVE_EMPTY) -> tuple[dict[str, Any], bool]:
    """The body's object as sent (every key) and whether it may hold numbers beyond float64."""
    try:
        data, big = json_body.decode(body)
    except json_body.EmptyBody:
        raise BadRequest(empty) from None
    if data is None:
        return {}, big
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(data), "number")
        raise BadRequest(f"json: cannot unmarshal {kind} into Go value of type {struct.type_name}")
    return data, big


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
    fields = decode_body(body, CHAT_REQUEST if endpoint == CHAT else GENERATE_REQUEST)
    model, kind = _model_and_kind(endpoint, fields)
    if keep_alive is not None and "keep_alive" not in fields:
        body = with_keep_alive(body, keep_alive)
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=kind,
        stream=fields.get("stream") is not False,
        body=body,
        sync=sync,
        runner=runner_key(model_key(model), runner_options(fields)),
    )


def parse_openai(endpoint: str, body: bytes) -> Submission:
    """An OpenAI-compatible request (`/v1/chat/completions`, `/v1/completions`), queued like
    `/api/chat`. Its `stream` defaults to false, as in Ollama's OpenAI layer, which ignores
    `keep_alive`: the body goes as it came."""
    fields = decode_body(body, OPENAI_CHAT_REQUEST if endpoint == V1_CHAT else OPENAI_COMPLETION_REQUEST, "EOF")
    model = fields.get("model")
    if not model:
        raise BadRequest("model is required")
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=KIND_GENERATE,
        stream=fields.get("stream") is True,
        body=body,
    )


def check_embedding(endpoint: str, body: bytes) -> None:
    """An embedding body (`/api/embed`, `/api/embeddings`, `/v1/embeddings`), refused as Ollama
    would refuse it while decoding; the rest (the model, the input) is the target's to judge."""
    struct, empty = _EMBEDDINGS[endpoint]
    decode_body(body, struct, empty)


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
    """Decoded as Go would (json_body); an empty body is gin's `EOF`."""
    try:
        data, _ = json_body.decode(body)
    except json_body.EmptyBody:
        raise BadRequest("EOF") from None
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(data), "number")
        raise BadRequest(f"json: cannot unmarshal {kind} into Go value of type {go_type}")
    return data


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

    Nobody reads a job's answer as it streams, so foreman rewrites this body: without its own
    fields, with `stream: true` (progress is counted as lines arrive; the whole result is
    collected either way) and, on the native endpoints, with `keep_alive` when the body names
    none. Every other member keeps the bytes it was sent with. With an idempotency key, the
    digest of the body as sent goes with it: a retry must send the same bytes.
    """
    data, big = decode_object(body, CHAT_REQUEST)
    webhook = data.get("state_webhook_url")
    if webhook is not None and not isinstance(webhook, str):
        raise BadRequest("state_webhook_url must be a string")
    named = data.get("endpoint")
    if named is not None and named not in JOB_API_ENDPOINTS:
        raise BadRequest(f"endpoint must be one of {', '.join(JOB_API_ENDPOINTS)}")
    if named is None:
        prompt = any(GENERATE_REQUEST.field(key) == "prompt" for key in data)
        named = GENERATE if prompt and not any(CHAT_REQUEST.field(key) == "messages" for key in data) else CHAT
    endpoint: str = named
    kept = [
        text
        for key, text in json_body.members(body)
        if key not in ("state_webhook_url", "endpoint") and GENERATE_REQUEST.field(key) != "stream"
    ]
    head = ['"stream":true']
    if endpoint in (CHAT, GENERATE):
        fields = check(data, CHAT_REQUEST if endpoint == CHAT else GENERATE_REQUEST, big)
        if not fields.get("model"):
            raise BadRequest("model is required")  # foreman's own API: a bad body is a 400 (docs/contract.md section 3)
        model, kind = _model_and_kind(endpoint, fields)
        runner = runner_key(model_key(model), runner_options(fields))
        if "keep_alive" not in fields:
            head.append(f'"keep_alive":{keep_alive_value(keep_alive)}')
        rewritten = ("{" + ",".join(head + kept) + "}").encode()
    else:
        rewritten = ("{" + ",".join(head + kept) + "}").encode()
        parsed = _FOREIGN_PARSERS[endpoint](rewritten)
        model, kind, runner = parsed.name, parsed.kind, parsed.model
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=kind,
        stream=True,
        body=rewritten,
        sync=False,
        webhook_url=webhook or None,
        idempotency_key=idempotency_key,
        runner=runner,
        body_sha256=hashlib.sha256(body).hexdigest() if idempotency_key is not None else None,
    )


_FOREIGN_PARSERS: dict[str, Callable[[bytes], Submission]] = {
    V1_CHAT: lambda body: parse_openai(V1_CHAT, body),
    V1_COMPLETIONS: lambda body: parse_openai(V1_COMPLETIONS, body),
    V1_MESSAGES: parse_anthropic,
    V1_RESPONSES: parse_responses,
}


def _model_and_kind(endpoint: str, fields: dict[str, Any]) -> tuple[str, str]:
    """The model (as spelled) and the job kind, with Ollama's errors for a missing model."""
    model = fields.get("model")
    if not model:
        if endpoint == CHAT:
            raise BadRequest("model is required")
        raise NotFound("model '' not found")
    empty = not fields.get("messages") if endpoint == CHAT else not fields.get("prompt")
    kind = KIND_GENERATE
    if empty:
        kind = KIND_UNLOAD if is_zero_keep_alive(fields.get("keep_alive")) else KIND_LOAD
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
