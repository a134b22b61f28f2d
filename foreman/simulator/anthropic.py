"""`POST /v1/messages`: the Anthropic Messages face (Ollama's `AnthropicMessagesMiddleware`).

The request becomes native messages (`FromMessagesRequest`, `convertMessage`) and runs through
the shared chat flow; `MessagesFormat` is `StreamConverter.Process` and `ToMessagesResponse`.
Streamed data are Go structs, so keys come in struct order; there is no `ping` and no `error`
event. `max_tokens` is required; it becomes `num_predict`, which in the simulator is the reply's
length, so here it only cuts a reply longer than `default_tokens` (with `stop_reason:
"max_tokens"`); otherwise the model "stops by itself", as a real one does well before a limit
such as Claude Code's 32000.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from .compat import ForeignFormat, ForeignHandler, as_int, check_fields, go_literal, sse, unmarshal_error
from .content import Plan
from .inference import Job
from .wire import ApiError, Clock, FieldTypes, go_dumpb, go_dumps, go_kind

_TYPES: FieldTypes = {
    "model": (str, "string"),
    "messages": (list, "[]anthropic.MessageParam"),
    "stream": (bool, "bool"),
    "temperature": ((int, float), "float64"),
    "top_p": ((int, float), "float64"),
    "stop_sequences": (list, "[]string"),
    "tools": (list, "[]anthropic.Tool"),
    "tool_choice": (dict, "anthropic.ToolChoice"),
    "thinking": (dict, "anthropic.ThinkingConfig"),
    "metadata": (dict, "anthropic.Metadata"),
    "output_config": (dict, "anthropic.OutputConfig"),
}
_INTS = frozenset({"max_tokens", "top_k"})
_PARAM_STRUCT = 'struct { Role string "json:\\"role\\""; Content json.RawMessage "json:\\"content\\"" }'
_BLOCK_STRINGS = ("type", "text", "id", "name", "tool_use_id", "thinking", "signature")
_EFFORTS = ("high", "medium", "low", "max")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def generate_id(prefix: str) -> str:
    """`anthropic.generateID`: the prefix and 12 random bytes in hex."""
    return f"{prefix}_{secrets.token_hex(12)}"


def anthropic_error(status: int, message: str) -> bytes:
    """`anthropic.NewError`: the type follows the status; the request id is in the body only."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return go_dumpb({"type": "error", "error": {"type": kind, "message": message}, "request_id": generate_id("req")})


def stop_reason(done_reason: str, tool_calls: bool) -> str:
    """`mapStopReason`."""
    if tool_calls:
        return "tool_use"
    if done_reason == "stop":
        return "end_turn"
    if done_reason == "length":
        return "max_tokens"
    return "stop_sequence" if done_reason else ""


# -- request -------------------------------------------------------------------------------


def _content_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """`MessageParam.UnmarshalJSON`: content is a string (one text block) or blocks."""
    if "content" not in message:
        raise ApiError(400, "unexpected end of JSON input")
    content = message["content"]
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content or ""}]
    if not isinstance(content, list):
        raise unmarshal_error(content, "Go value of type []anthropic.ContentBlock")
    for block in content:
        if not isinstance(block, dict):
            raise unmarshal_error(block, "Go value of type anthropic.ContentBlock")
        for name in _BLOCK_STRINGS:
            value = block.get(name)
            if value is not None and not isinstance(value, str):
                raise unmarshal_error(value, f"Go struct field ContentBlock.{name} of type string")
        if block.get("input") is not None and not isinstance(block["input"], dict):
            target = "Go struct field ContentBlock.input of type api.ToolCallFunctionArguments"
            raise unmarshal_error(block["input"], target)
    return content


def decode_messages(raw: list[Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The `messages` array as (role, blocks), with Go's decoding errors."""
    out = []
    for message in raw:
        if not isinstance(message, dict):
            raise unmarshal_error(message, f"Go value of type {_PARAM_STRUCT}")
        role = message.get("role")
        if role is not None and not isinstance(role, str):
            raise unmarshal_error(role, "Go struct field .role of type string")
        out.append((role or "", _content_blocks(message)))
    return out


def _image(source: object) -> None:
    """`resolveImageSource`: only base64 data, which must decode."""
    if not isinstance(source, dict):
        raise ApiError(400, "invalid image source")
    kind = source.get("type") if isinstance(source.get("type"), str) else ""
    if kind != "base64":
        raise ApiError(400, f"invalid image source type: {kind}. Only base64 images are supported.")
    try:
        base64.b64decode(str(source.get("data") or ""), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"invalid base64 image data: {err}") from None


def _tool_result_text(content: object) -> str:
    """`convertToolResultContent`: a string, or the text of text blocks (images checked)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    text = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif block.get("type") == "image":
            if not isinstance(block.get("source"), dict):
                raise ApiError(400, "invalid tool_result image source")
            _image(block["source"])
    return "".join(text)


def convert_message(role: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`convertMessage`: one Anthropic message as native messages (tool results first for a user)."""
    role = role.lower()
    text: list[str] = []
    images = 0
    calls: list[dict[str, Any]] = []
    thinking = ""
    results: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "image":
            if block.get("source") is None:
                raise ApiError(400, "invalid image source")
            _image(block["source"])
            images += 1
        elif kind in ("tool_use", "server_tool_use"):
            if kind == "tool_use" and not block.get("id"):
                raise ApiError(400, "tool_use block missing required 'id' field")
            if kind == "tool_use" and not block.get("name"):
                raise ApiError(400, "tool_use block missing required 'name' field")
            function = {"name": block.get("name") or "", "arguments": block.get("input") or {}}
            calls.append({"id": block.get("id") or "", "function": function})
        elif kind in ("tool_result", "web_search_tool_result"):
            content = _tool_result_text(block.get("content"))
            results.append({"role": "tool", "content": content, "tool_call_id": block.get("tool_use_id") or ""})
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking = block["thinking"]
    messages = list(results) if role == "user" else []
    joined = "".join(text)
    if joined or images or calls or thinking:
        message: dict[str, Any] = {"role": role, "content": joined}
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = thinking
        messages.append(message)
    if role != "user":
        messages.extend(results)
    return messages


def _system_text(system: object) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = (b.get("text") for b in system if isinstance(b, dict) and b.get("type") == "text")
        return "".join(t for t in texts if isinstance(t, str))
    return ""


def _native_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """`convertTool`: `{name, description, input_schema}` -> a native function tool."""
    out = []
    builtin = any(isinstance(t, dict) and str(t.get("type") or "").startswith("web_search") for t in tools)
    for tool in tools:
        if not isinstance(tool, dict):
            raise unmarshal_error(tool, "Go value of type anthropic.Tool")
        name = tool.get("name") if isinstance(tool.get("name"), str) else ""
        kind = str(tool.get("type") or "")
        if kind.startswith("web_search"):
            schema: Any = {"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}
            out.append({"type": "function", "function": {"name": "web_search", "parameters": schema}})
            continue
        if builtin and name == "web_search":
            continue
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise ApiError(
                400,
                f'invalid input_schema for tool "{name}": json: cannot unmarshal {go_kind(schema)}'
                " into Go value of type api.ToolFunctionParameters",
            )
        function = {"name": name, "description": tool.get("description") or "", "parameters": schema or {}}
        out.append({"type": "function", "function": function})
    return out


def _think(body: dict[str, Any]) -> bool | str | None:
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        return True
    if kind == "disabled":
        return False
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    effort = effort.strip().lower() if isinstance(effort, str) else ""
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in _EFFORTS else None


def _block_length(block: dict[str, Any]) -> int:
    """`countContentBlock`: text and thinking bytes, and a tool block's whole JSON."""
    total = 0
    for name in ("text", "thinking"):
        if isinstance(block.get(name), str):
            total += len(block[name].encode())
    if block.get("type") in ("tool_use", "tool_result"):
        total += len(go_dumps({k: v for k, v in block.items() if v not in (None, "", False)}).encode())
    return total


def estimate_input_tokens(body: dict[str, Any], messages: list[tuple[str, list[dict[str, Any]]]]) -> int:
    """`EstimateInputTokens`: (bytes of system, roles, text and tools) / 4, at least 1."""
    total = 0
    system = body.get("system")
    if isinstance(system, str):
        total += len(system.encode())
    elif isinstance(system, list):
        total += sum(_block_length(b) for b in system if isinstance(b, dict))
    elif system is not None:
        total += len(go_dumps(system).encode())
    for role, blocks in messages:
        total += len(role.encode()) + sum(_block_length(b) for b in blocks)
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            for name in ("name", "description"):
                total += len(str(tool.get(name) or "").encode())
            if tool.get("input_schema") is not None:
                total += len(go_dumps(tool["input_schema"]).encode())
    tokens = total // 4
    return 1 if tokens == 0 and (messages or system is not None) else tokens


# -- reply ---------------------------------------------------------------------------------


class MessagesFormat(ForeignFormat):
    """`StreamConverter.Process` (streamed) and `ToMessagesResponse` (not)."""

    def __init__(self, model: str, clock: Clock, stream: bool, estimated_tokens: int) -> None:
        super().__init__(model, clock, stream)
        self.id = generate_id("msg")
        self.estimated_tokens = estimated_tokens
        self._started = False
        self._index = 0
        self._thinking_started = False
        self._thinking_done = False
        self._text_started = False
        self._tools_sent = 0

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "usage": {"input_tokens": self.estimated_tokens, "output_tokens": 0},
        }
        return sse("message_start", go_dumpb({"type": "message_start", "message": message}))

    def _block_stop(self) -> bytes:
        return sse("content_block_stop", b'{"type":"content_block_stop","index":%d}' % self._index)

    def _block_start(self, block: bytes) -> bytes:
        return sse(
            "content_block_start",
            b'{"type":"content_block_start","index":%d,"content_block":%s}' % (self._index, block),
        )

    def _delta(self, delta: bytes) -> bytes:
        data = b'{"type":"content_block_delta","index":%d,"delta":%s}' % (self._index, delta)
        return sse("content_block_delta", data)

    def _close_thinking(self) -> bytes:
        if not self._thinking_started or self._thinking_done:
            return b""
        self._thinking_done = True
        out = self._block_stop()
        self._index += 1
        return out

    def thinking(self, token: str) -> bytes:
        out = [self._start()]
        if self._thinking_done:
            return out[0]
        if self._text_started:
            out.append(self._block_stop())
            self._index += 1
            self._text_started = False
        if not self._thinking_started:
            self._thinking_started = True
            out.append(self._block_start(b'{"type":"thinking","thinking":""}'))
        out.append(self._delta(b'{"type":"thinking_delta","thinking":' + go_literal(token) + b"}"))
        return b"".join(out)

    def content(self, token: str) -> bytes:
        out = [self._start(), self._close_thinking()]
        if not self._text_started:
            self._text_started = True
            out.append(self._block_start(b'{"type":"text","text":""}'))
        out.append(self._delta(b'{"type":"text_delta","text":' + go_literal(token) + b"}"))
        return b"".join(out)

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        out = [self._start()]
        for call in calls:
            out.append(self._close_thinking())
            if self._text_started:
                out.append(self._block_stop())
                self._index += 1
                self._text_started = False
            block = {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}
            out.append(self._block_start(go_dumpb(block)))
            partial = {"type": "input_json_delta", "partial_json": go_dumps(call["function"]["arguments"])}
            out.append(self._delta(go_dumpb(partial)))
            out.append(self._block_stop())
            self._index += 1
            self._tools_sent += 1
        return b"".join(out)

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        out = [self._start()]
        if self._text_started or (self._thinking_started and not self._thinking_done):
            out.append(self._block_stop())
        reason = stop_reason(plan.done_reason, self._tools_sent > 0)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason} if reason else {},
            "usage": {
                "input_tokens": metrics.get("prompt_eval_count", 0),
                "output_tokens": metrics.get("eval_count", 0),
            },
        }
        out.append(sse("message_delta", go_dumpb(delta)))
        out.append(sse("message_stop", b'{"type":"message_stop"}'))
        return [b"".join(out)]

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        content: list[dict[str, Any]] = []
        if plan.thinking:
            content.append({"type": "thinking", "thinking": "".join(plan.thinking)})
        if plan.content:
            content.append({"type": "text", "text": "".join(plan.content)})
        for call in plan.tool_calls:
            function = call["function"]
            block = {"type": "tool_use", "id": call["id"], "name": function["name"], "input": function["arguments"]}
            content.append(block)
        body: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content or None,  # a nil Go slice
        }
        reason = stop_reason(plan.done_reason, bool(plan.tool_calls))
        if reason:
            body["stop_reason"] = reason
        body["usage"] = {
            "input_tokens": metrics.get("prompt_eval_count", 0),
            "output_tokens": metrics.get("eval_count", 0),
        }
        return go_dumpb(body) + b"\n"


class MessagesHandler(ForeignHandler):
    """`POST /v1/messages`."""

    def error_body(self, status: int, message: str) -> bytes:
        return anthropic_error(status, message)

    def build_job(self) -> Job:
        body = self.decode("anthropic.MessagesRequest")
        check_fields(body, "MessagesRequest", _TYPES, _INTS)
        raw_messages = decode_messages(body.get("messages") or [])
        model = body.get("model") or ""
        if not model:
            raise ApiError(400, "model is required")
        max_tokens = as_int(body.get("max_tokens")) or 0
        if max_tokens <= 0:
            raise ApiError(400, "max_tokens is required and must be positive")
        if not raw_messages:
            raise ApiError(400, "messages is required")
        for value in body.get("stop_sequences") or []:
            if not isinstance(value, str):
                raise unmarshal_error(value, "Go struct field MessagesRequest.stop_sequences of type string")
        messages: list[dict[str, Any]] = []
        system = _system_text(body.get("system"))
        if system:
            messages.append({"role": "system", "content": system})
        for role, blocks in raw_messages:
            messages.extend(convert_message(role, blocks))
        tools = _native_tools(body.get("tools") or [])
        stream = body.get("stream") is True
        self.enter_chat_handler(stream)
        fmt = MessagesFormat(model, self.sim.clock, stream, estimate_input_tokens(body, raw_messages))
        return self.chat_job(
            model,
            messages,
            fmt,
            stream=stream,
            think=_think(body),
            tools=tools,
            limit=max_tokens if max_tokens < self.sim.default_tokens else None,
            relax_thinking=True,
        )
