"""A job's result from the answers of `/v1/messages` (Anthropic), `/v1/responses` (OpenAI
Responses) and `/v1/audio/transcriptions` (docs/wire.md sections 10.2, 10.3, 10.7).

Each answer is one JSON object, or Server-Sent Events when the client asked for a stream.
The result is the answer in its non-streamed shape: the object as sent, or, from a stream,
the object its events describe (`response.completed` carries it whole; Anthropic's is put
back together from its blocks). A stream that ends without its closing event
(`response.completed`, `message_stop`) failed: Ollama ends such a stream silently after an
error (section 10.5).
"""

from __future__ import annotations

import json
from typing import Any

from foreman.assemble import JSON_TYPE, TEXT_TYPE, Outcome
from foreman.compact_json import dump as dump_json
from foreman.store import Artifact


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """`(event name, data object)` per event of a text/event-stream answer; data that is not a
    JSON object is skipped. The name defaults to the data's `type`, as both APIs set it."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = "", []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if not data:
            continue
        try:
            obj = json.loads(b"\n".join(data))
        except ValueError:
            continue
        if isinstance(obj, dict):
            events.append((name or str(obj.get("type") or ""), obj))
    return events


def _is_stream(raw: bytes) -> bool:
    head = raw.lstrip()[:6]
    return head.startswith(b"event:") or head.startswith(b"data:")


def _outcome(result: dict[str, Any], completion: str, thinking: str, tool_calls: list[Any], count: Any) -> Outcome:
    artifacts = [Artifact("completion", TEXT_TYPE, completion.encode())]
    if thinking:
        artifacts.append(Artifact("thinking", TEXT_TYPE, thinking.encode()))
    if tool_calls:
        artifacts.append(Artifact("tool_calls", JSON_TYPE, dump_json(tool_calls)))
    artifacts.append(Artifact("response", JSON_TYPE, dump_json(result)))
    counted = count if isinstance(count, int) and not isinstance(count, bool) else None
    return Outcome(result=result, artifacts=artifacts, counted=counted)


# --- Anthropic Messages --------------------------------------------------------------------


def assemble_messages(raw: bytes) -> Outcome:
    if not raw.strip():
        return Outcome(error="the target sent no response")
    if not _is_stream(raw):
        try:
            whole = json.loads(raw)
        except ValueError:
            return Outcome(error="the target's answer is not JSON")
        if not isinstance(whole, dict):
            return Outcome(error="the target's answer is not a JSON object")
        if whole.get("type") == "error":
            return Outcome(error=str((whole.get("error") or {}).get("message") or whole))
        return _message_outcome(whole)
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    closed = False
    for name, data in sse_events(raw):
        if name == "message_start":
            message = dict(data.get("message") or {})
        elif name == "content_block_start":
            blocks[int(data.get("index", len(blocks)))] = dict(data.get("content_block") or {})
        elif name == "content_block_delta":
            index, delta = int(data.get("index", 0)), data.get("delta") or {}
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + str(delta.get("text") or "")
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + str(delta.get("thinking") or "")
            elif kind == "input_json_delta":
                partial_json.setdefault(index, []).append(str(delta.get("partial_json") or ""))
        elif name == "message_delta":
            message.update(data.get("delta") or {})
            if data.get("usage"):
                message["usage"] = {**(message.get("usage") or {}), **data["usage"]}
        elif name == "message_stop":
            closed = True
        elif name == "error":
            return Outcome(error=str((data.get("error") or {}).get("message") or data))
    if not closed:
        return Outcome(error="the stream ended without message_stop: the target failed mid-answer")
    for index, parts in partial_json.items():
        try:
            blocks[index]["input"] = json.loads("".join(parts) or "{}")
        except ValueError:
            blocks[index]["input"] = "".join(parts)
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return _message_outcome(message)


def _message_outcome(message: dict[str, Any]) -> Outcome:
    content = message.get("content") or []
    text = "".join(str(b.get("text") or "") for b in content if b.get("type") == "text")
    thinking = "".join(str(b.get("thinking") or "") for b in content if b.get("type") == "thinking")
    tools = [b for b in content if b.get("type") == "tool_use"]
    return _outcome(message, text, thinking, tools, (message.get("usage") or {}).get("output_tokens"))


# --- OpenAI Responses ------------------------------------------------------------------------


def assemble_responses(raw: bytes) -> Outcome:
    if not raw.strip():
        return Outcome(error="the target sent no response")
    if _is_stream(raw):
        response = None
        for name, data in sse_events(raw):
            if name == "response.completed":
                response = data.get("response")
            elif name in ("response.failed", "error"):
                error = (data.get("response") or {}).get("error") or data.get("error") or data
                return Outcome(error=str(error.get("message") if isinstance(error, dict) else error))
        if not isinstance(response, dict):
            return Outcome(error="the stream ended without response.completed: the target failed mid-answer")
    else:
        try:
            response = json.loads(raw)
        except ValueError:
            return Outcome(error="the target's answer is not JSON")
        if not isinstance(response, dict):
            return Outcome(error="the target's answer is not a JSON object")
    error = response.get("error")
    if error:
        return Outcome(error=str(error.get("message") if isinstance(error, dict) else error))
    output = response.get("output") or []
    text = "".join(
        str(part.get("text") or "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )
    thinking = "".join(
        str(part.get("text") or "")
        for item in output
        if item.get("type") == "reasoning"
        for part in item.get("summary") or []
    )
    tools = [item for item in output if item.get("type") == "function_call"]
    return _outcome(response, text, thinking, tools, (response.get("usage") or {}).get("output_tokens"))


# --- transcriptions -------------------------------------------------------------------------


def assemble_transcription(raw: bytes) -> Outcome:
    """`{"text": ...}` (response_format json) or the text itself (response_format text)."""
    body = raw.strip()
    if body.startswith(b"{"):
        try:
            result = json.loads(body)
        except ValueError:
            return Outcome(error="the target's answer is not JSON")
        if not isinstance(result, dict):
            return Outcome(error="the target's answer is not a JSON object")
        if result.get("error"):
            error = result["error"]
            return Outcome(error=str(error.get("message") if isinstance(error, dict) else error))
        return _outcome(result, str(result.get("text") or ""), "", [], None)
    text = raw.decode("utf-8", "replace")
    return _outcome({"text": text}, text, "", [], None)
