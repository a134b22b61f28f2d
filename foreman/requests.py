"""Request parsing: a request body becomes a `Submission`, with Ollama's own error texts.

Bodies are decoded as Go decodes them (`foreman/json_body.py`) and checked against the
struct Ollama fills (`foreman/ollama_structs.py`, `foreman/go_unmarshal.py`), so a body Ollama would refuse is refused
here, before anything is queued, with Go's text (docs/adr/0023). Parsing then reads only
what foreman needs (`model`, `stream`, `keep_alive`, `messages`, `prompt`) and keeps the body
bytes as they came (docs/adr/0003). Other errors copy Ollama's status codes and texts
(docs/wire.md sections 0 and 5).
"""

from __future__ import annotations

import re
from typing import Any

from foreman import json_body
from foreman.errors import BadRequest, NotFound
from foreman.go_unmarshal import Struct, check
from foreman.job import CHAT, GENERATE, KIND_GENERATE, KIND_LOAD, KIND_UNLOAD, V1_CHAT, Submission, model_key
from foreman.ollama_structs import (
    CHAT_REQUEST,
    EMBED_REQUEST,
    EMBEDDING_REQUEST,
    GENERATE_REQUEST,
    OPENAI_CHAT_REQUEST,
    OPENAI_COMPLETION_REQUEST,
    OPENAI_EMBED_REQUEST,
)

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


def parse_job(body: bytes, *, keep_alive: float, idempotency_key: str | None = None) -> Submission:
    """A `POST /jobs` body: a chat payload, or a generate one (`prompt` without `messages`),
    plus `state_webhook_url` (docs/adr/0014).

    Nobody reads a job's answer as it streams, so foreman rewrites this body: without its own
    field, with `stream: true` (progress is counted as lines arrive; the whole result is
    collected either way) and with `keep_alive` when the body names none. Every other member
    keeps the bytes it was sent with.
    """
    data, big = decode_object(body, CHAT_REQUEST)
    prompt = any(GENERATE_REQUEST.field(key) == "prompt" for key in data)
    endpoint = GENERATE if prompt and not any(CHAT_REQUEST.field(key) == "messages" for key in data) else CHAT
    webhook = data.get("state_webhook_url")
    if webhook is not None and not isinstance(webhook, str):
        raise BadRequest("state_webhook_url must be a string")
    fields = check(data, CHAT_REQUEST if endpoint == CHAT else GENERATE_REQUEST, big)
    if not fields.get("model"):
        raise BadRequest("model is required")  # foreman's own API: a bad body is a 400 (docs/contract.md section 3)
    model, kind = _model_and_kind(endpoint, fields)
    head = ['"stream":true']
    if "keep_alive" not in fields:
        head.append(f'"keep_alive":{keep_alive_value(keep_alive)}')
    kept = [
        text
        for key, text in json_body.members(body)
        if key != "state_webhook_url" and GENERATE_REQUEST.field(key) != "stream"
    ]
    return Submission(
        endpoint=endpoint,
        model=model_key(model),
        name=model,
        kind=kind,
        stream=True,
        body=("{" + ",".join(head + kept) + "}").encode(),
        sync=False,
        webhook_url=webhook or None,
        idempotency_key=idempotency_key,
    )


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
