"""`POST /v1/responses`: the OpenAI Responses face (Ollama's `ResponsesMiddleware`).

The request becomes native messages (`FromResponsesRequest`) and runs through the shared chat
flow; `ResponsesFormat` is `ResponsesStreamConverter.Process` and `ToResponse`. Streamed data
are Go maps, so every object's keys come out sorted (a `json_schema` schema excepted: Go copies
that `json.RawMessage` as it came); the non-streamed body is a struct, in field order. There is
no `[DONE]`. A request with no input is a load, answered like any completed response.
`max_output_tokens` is `num_predict`, which in the simulator is the reply's exact length.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from dataclasses import dataclass
from typing import Any

from .compat import ForeignFormat, ForeignHandler, as_int, check_fields, go_literal, sse, unmarshal_error
from .content import Plan
from .inference import Job
from .wire import ApiError, Clock, FieldTypes, Verbatim, decode_body, go_dumpb, go_dumps, go_map

_TYPES: FieldTypes = {
    "model": (str, "string"),
    "background": (bool, "bool"),
    "include": (list, "[]string"),
    "instructions": (str, "string"),
    "reasoning": (dict, "openai.ResponsesReasoning"),
    "temperature": ((int, float), "float64"),
    "text": (dict, "openai.ResponsesText"),
    "top_p": ((int, float), "float64"),
    "truncation": (str, "string"),
    "tools": (list, "[]openai.ResponsesTool"),
    "stream": (bool, "bool"),
}
_INTS = frozenset({"max_output_tokens"})
_ITEM_STRUCT = 'struct { Type string "json:\\"type\\""; Role string "json:\\"role\\"" }'
_PART_STRUCT = 'struct { Type string "json:\\"type\\"" }'
_PART_TYPES = ("input_text", "input_image", "output_text", "input_file")
_RAW_ARRAY = "Go value of type []json.RawMessage"
_IMAGE_PREFIXES = tuple(f"data:image/{t};base64," for t in ("jpeg", "jpg", "png", "webp"))
_EFFORTS: dict[str, bool | str] = {"none": False, "minimal": "low", "xhigh": "max", "ultra": "max"}
_EFFORTS |= {level: level for level in ("low", "medium", "high", "max")}
_SEARCH_SCHEMA = {"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}
_EFFORT_ERROR = (
    'invalid reasoning value: "{}" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'
)


def openai_error(status: int, message: str) -> bytes:
    """`openai.NewError`, encoded as Go does."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return go_dumpb({"error": {"message": message, "type": kind, "param": None, "code": None}})


def think_from_effort(effort: str) -> bool | str | None:
    """`thinkFromReasoningEffort`."""
    if not effort:
        return None
    if effort not in _EFFORTS:
        raise ApiError(400, _EFFORT_ERROR.format(effort))
    return _EFFORTS[effort]


# -- request -------------------------------------------------------------------------------


def _string_field(data: dict[str, Any], name: str, struct: str = "") -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise unmarshal_error(value, f"Go struct field {struct}.{name} of type string")
    return value


def _parts(content: object, what: str) -> list[dict[str, Any]]:
    """Message content (or a function output): a string, or typed parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        err = unmarshal_error(content, _RAW_ARRAY)
        raise ApiError(400, f"{what} must be a string or array: {err.message}")
    parts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            err = unmarshal_error(part, f"Go value of type {_PART_STRUCT}")
            raise ApiError(400, f"{what}[{index}]: {err.message}")
        kind = _string_field(part, "type")
        if kind not in _PART_TYPES:
            raise ApiError(400, f"{what}[{index}]: unknown content type: {kind}")
        parts.append(part)
    return parts


def _item(index: int, raw: object) -> dict[str, Any] | None:
    """`unmarshalResponsesInputItem`, normalised; None for a skipped `web_search_call`."""
    try:
        if not isinstance(raw, dict):
            raise unmarshal_error(raw, f"Go value of type {_ITEM_STRUCT}")
        kind = _string_field(raw, "type")
        role = _string_field(raw, "role")
        kind = kind or ("message" if role else "")
        if kind == "message":
            return {"type": "message", "role": role, "content": _parts(raw.get("content"), "content")}
        if kind == "function_call":
            return {
                "type": "function_call",
                "call_id": _string_field(raw, "call_id", "ResponsesFunctionCall"),
                "name": _string_field(raw, "name", "ResponsesFunctionCall"),
                "arguments": _string_field(raw, "arguments", "ResponsesFunctionCall"),
            }
        if kind == "function_call_output":
            output = raw.get("output")
            parts = _parts(output, "output") if not isinstance(output, str) else []
            text = output if isinstance(output, str) else "".join(_text(parts))
            return {"type": kind, "call_id": _string_field(raw, "call_id"), "output": text, "parts": parts}
        if kind == "reasoning":
            return {"type": kind, "thinking": _string_field(raw, "encrypted_content", "ResponsesReasoningInput")}
        if kind == "web_search_call":
            return None
        if not kind:
            raise ApiError(400, "input item missing required 'type' field")
        raise ApiError(400, f"unknown input item type: {go_dumps(kind)}")
    except ApiError as err:
        raise ApiError(400, f"input[{index}]: {err.message}") from None


def decode_input(value: object) -> tuple[str, list[dict[str, Any]]]:
    """`ResponsesInput.UnmarshalJSON`: a string, or an array of items."""
    if value is None or isinstance(value, str):
        return value or "", []
    if not isinstance(value, list):
        err = unmarshal_error(value, _RAW_ARRAY)
        raise ApiError(400, f"input must be a string or array: {err.message}")
    items = [_item(index, raw) for index, raw in enumerate(value)]
    return "", [item for item in items if item is not None]


def _text(parts: list[dict[str, Any]]) -> list[str]:
    return [str(p.get("text") or "") for p in parts if p.get("type") in ("input_text", "output_text")]


def _content(parts: list[dict[str, Any]]) -> str:
    """`convertResponsesContent`: the text; images must be data URLs; files are refused."""
    for part in parts:
        if part.get("type") == "input_file":
            raise ApiError(400, "file inputs are not currently supported")
        url = part.get("image_url") if part.get("type") == "input_image" else None
        if isinstance(url, str) and url:
            if url.startswith(("http://", "https://")):
                raise ApiError(400, "image URLs are not currently supported, please use base64 encoded data instead")
            prefix = (
                "data:;base64,"
                if url.startswith("data:;base64,")
                else next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
            )
            if prefix is None:
                raise ApiError(400, "invalid image input")
            try:
                base64.b64decode(url[len(prefix) :], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "invalid image input") from None
    return "".join(_text(parts))


def to_messages(instructions: str, text: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`FromResponsesRequest`'s messages."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    if text:
        messages.append({"role": "user", "content": text})
    pending = ""
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "reasoning":
            pending = item["thinking"]
        elif kind == "message":
            message: dict[str, Any] = {"role": item["role"], "content": _content(item["content"])}
            if message["role"] == "assistant" and pending:
                message["thinking"], pending = pending, ""
            following = items[index + 1] if index + 1 < len(items) else None
            answered = following["call_id"] if following and following["type"] == "function_call_output" else ""
            last = messages[-1] if messages else None
            if (
                message["role"] == "assistant"
                and answered
                and last is not None
                and last["role"] == "assistant"
                and any(call["id"] == answered for call in last.get("tool_calls", []))
            ):
                # A replayed assistant message between a call and its output joins the call's message.
                if last["content"] and message["content"]:
                    last["content"] += "\n"
                last["content"] += message["content"]
                if message.get("thinking"):
                    last["thinking"] = message["thinking"]
                continue
            messages.append(message)
        elif kind == "function_call":
            arguments: Any = {}
            if item["arguments"]:
                try:
                    arguments = decode_body(item["arguments"].encode(), "api.ToolCallFunctionArguments")
                except ApiError as err:
                    raise ApiError(400, f"failed to parse function call arguments: {err.message}") from None
            call = {"id": item["call_id"], "function": {"name": item["name"], "arguments": arguments}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
                if pending:
                    messages[-1]["thinking"], pending = pending, ""
            else:
                message = {"role": "assistant", "content": "", "tool_calls": [call]}
                if pending:
                    message["thinking"], pending = pending, ""
                messages.append(message)
        elif kind == "function_call_output":
            content = _content(item["parts"]) if item["parts"] else item["output"]
            messages.append({"role": "tool", "content": content, "tool_call_id": item["call_id"]})
    if pending:
        messages.append({"role": "assistant", "content": "", "thinking": pending})
    return messages


def _native_tools(tools: list[Any], prefix: str = "") -> list[dict[str, Any]]:
    """`convertTools`: flat function tools (namespaces expanded to `ns.member`) -> native ones."""
    out = []
    builtin = prefix == "" and any(isinstance(t, dict) and t.get("type") == "web_search" for t in tools)
    for tool in tools:
        if not isinstance(tool, dict):
            raise unmarshal_error(tool, "Go value of type openai.ResponsesTool")
        name = str(tool.get("name") or "")
        if tool.get("type") == "web_search" and not prefix:
            out.append({"type": "function", "function": {"name": "web_search", "parameters": _SEARCH_SCHEMA}})
            continue
        if tool.get("type") == "namespace":
            members = tool.get("tools")
            out.extend(_native_tools(members if isinstance(members, list) else [], f"{name}." if name else prefix))
            continue
        full = name if not prefix or name.startswith(prefix) else prefix + name
        if builtin and full == "web_search":
            continue
        description, parameters = tool.get("description") or "", tool.get("parameters") or {}
        function: dict[str, Any] = {"name": full, "description": description, "parameters": parameters}
        out.append({"type": str(tool.get("type") or ""), "function": function})
    return out


def _tool_struct(tool: dict[str, Any]) -> dict[str, Any]:
    """A `ResponsesTool` as the non-streamed reply echoes it (struct order; `parameters` is a map)."""
    out: dict[str, Any] = {
        "type": tool.get("type") or "",
        "name": tool.get("name") or "",
        "description": tool.get("description"),
        "strict": tool.get("strict"),
        "parameters": go_map(tool.get("parameters")),
    }
    members = tool.get("tools")
    if isinstance(members, list) and members:
        out["tools"] = [_tool_struct(m) for m in members if isinstance(m, dict)]
    return out


@dataclass
class Echo:
    """What a response object repeats of its request, in both the struct and the map form."""

    instructions: str | None
    truncation: str
    tools: list[dict[str, Any]]
    text_struct: dict[str, Any]
    text_map: dict[str, Any]
    reasoning_struct: dict[str, Any] | None
    reasoning_map: dict[str, Any] | None
    top_p: float
    temperature: float
    max_output_tokens: int | None
    background: bool

    @classmethod
    def of(cls, body: dict[str, Any]) -> Echo:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        text_struct: dict[str, Any] = {"type": "text"}
        text_map: dict[str, Any] = {"type": "text"}
        if isinstance(fmt, dict):
            text_struct = {"type": fmt.get("type") or ""}
            text_map = {"type": fmt.get("type") or ""}
            if fmt.get("name"):
                text_struct["name"] = text_map["name"] = fmt["name"]
            if "schema" in fmt:
                schema = fmt["schema"]
                text_struct["schema"] = text_map["schema"] = Verbatim(schema) if isinstance(schema, dict) else schema
            if fmt.get("strict") is not None:
                text_struct["strict"] = text_map["strict"] = fmt["strict"]
        reasoning = body.get("reasoning")
        reasoning = reasoning if isinstance(reasoning, dict) else {}
        effort, summary = reasoning.get("effort") or None, reasoning.get("summary") or None
        reasoning_struct: dict[str, Any] | None = None
        reasoning_map: dict[str, Any] | None = None
        if effort or summary:
            reasoning_struct = {k: v for k, v in (("effort", effort), ("summary", summary)) if v}
            reasoning_map = {"effort": effort, "summary": summary}
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]

        def number(name: str) -> float:
            value = body.get(name)
            return float(value) if isinstance(value, int | float) else 1.0

        return cls(
            instructions=body.get("instructions") or None,
            truncation=str(body.get("truncation") or "disabled"),
            tools=tools,
            text_struct=text_struct,
            text_map=text_map,
            reasoning_struct=reasoning_struct,
            reasoning_map=reasoning_map,
            top_p=number("top_p"),
            temperature=number("temperature"),
            max_output_tokens=as_int(body.get("max_output_tokens")),
            background=body.get("background") is True,
        )


def _usage(metrics: dict[str, int]) -> dict[str, Any]:
    prompt, evals = metrics.get("prompt_eval_count", 0), metrics.get("eval_count", 0)
    return {
        "input_tokens": prompt,
        "output_tokens": evals,
        "total_tokens": prompt + evals,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _rand_id(prefix: str) -> str:
    return f"{prefix}_{random.randrange(999999)}"  # Go's rand.Intn(999999)


# -- reply ---------------------------------------------------------------------------------


class ResponsesFormat(ForeignFormat):
    """`ResponsesStreamConverter` (streamed) and `ToResponse` (not)."""

    def __init__(self, model: str, clock: Clock, stream: bool, echo: Echo) -> None:
        super().__init__(model, clock, stream)
        self.echo = echo
        self.response_id = _rand_id("resp")
        self.item_id = _rand_id("msg")
        self._item_json = go_dumpb(self.item_id)
        self._first = True
        self._output_index = 0
        self._content_started = False
        self._tool_calls_sent = False
        self._text: list[str] = []
        self._seq = 0
        self._thinking: list[str] = []
        self._reasoning_id = ""
        self._completed: list[dict[str, Any]] = []

    # -- streamed --------------------------------------------------------------------------

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        data["type"] = name
        data["sequence_number"] = self._seq
        self._seq += 1
        return sse(name, go_dumpb(data, sort_keys=True))

    def _response_map(self, status: str, output: list[Any] | None, usage: dict[str, Any] | None) -> dict[str, Any]:
        echo = self.echo
        tools = [
            {
                "type": t.get("type") or "",
                "name": t.get("name") or "",
                "description": t.get("description"),
                "strict": t.get("strict"),
                "parameters": t.get("parameters"),
            }
            for t in echo.tools
        ]
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "completed_at": None,
            "status": status,
            "incomplete_details": None,
            "model": self.model,
            "previous_response_id": None,
            "instructions": echo.instructions,
            "output": output,
            "error": None,
            "tools": tools,
            "tool_choice": "auto",
            "truncation": echo.truncation,
            "parallel_tool_calls": True,
            "text": {"format": echo.text_map},
            "top_p": echo.top_p,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": echo.temperature,
            "reasoning": echo.reasoning_map,
            "usage": usage,
            "max_output_tokens": echo.max_output_tokens,
            "max_tool_calls": None,
            "store": False,
            "background": echo.background,
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }

    def _open(self) -> list[bytes]:
        if not self._first:
            return []
        self._first = False
        return [
            self._event("response.created", {"response": self._response_map("in_progress", [], None)}),
            self._event("response.in_progress", {"response": self._response_map("in_progress", [], None)}),
        ]

    def _finish_reasoning(self) -> list[bytes]:
        if not self._reasoning_id:
            return []
        item_id, thinking, index = self._reasoning_id, "".join(self._thinking), self._output_index
        item = {
            "id": item_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": thinking}],
            "encrypted_content": thinking,
        }
        self._completed.append(item)
        self._thinking, self._reasoning_id = [], ""
        self._output_index += 1
        done = {"item_id": item_id, "output_index": index, "summary_index": 0, "text": thinking}
        return [
            self._event("response.reasoning_summary_text.done", done),
            self._event("response.output_item.done", {"output_index": index, "item": item}),
        ]

    def thinking(self, token: str) -> bytes:
        out = self._open()
        if not self._reasoning_id:
            self._reasoning_id = _rand_id("rs")
            item = {"id": self._reasoning_id, "type": "reasoning", "summary": []}
            out.append(self._event("response.output_item.added", {"output_index": self._output_index, "item": item}))
        self._thinking.append(token)
        delta = {"item_id": self._reasoning_id, "output_index": self._output_index, "summary_index": 0, "delta": token}
        out.append(self._event("response.reasoning_summary_text.delta", delta))
        return b"".join(out)

    def tools(self, calls: list[dict[str, Any]]) -> bytes:
        out = self._open() + self._finish_reasoning()
        for offset, call in enumerate(calls):
            index = self._output_index + offset
            item_id = f"fc_{random.randrange(999999)}_{offset}"
            arguments = go_dumps(call["function"]["arguments"])
            item = {
                "id": item_id,
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": arguments,
            }
            self._completed.append(item)
            added = {**item, "status": "in_progress", "arguments": ""}
            out.append(self._event("response.output_item.added", {"output_index": index, "item": added}))
            delta = {"item_id": item_id, "output_index": index, "delta": arguments}
            out.append(self._event("response.function_call_arguments.delta", delta))
            done = {"item_id": item_id, "output_index": index, "arguments": arguments}
            out.append(self._event("response.function_call_arguments.done", done))
            out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))
        self._output_index += len(calls)
        self._tool_calls_sent = True
        return b"".join(out)

    def content(self, token: str) -> bytes:
        out = self._open()
        if self._tool_calls_sent:
            return b"".join(out)  # text after a tool call is dropped
        out += self._finish_reasoning()
        index = self._output_index
        if not self._content_started:
            self._content_started = True
            item = {"id": self.item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            out.append(self._event("response.output_item.added", {"output_index": index, "item": item}))
            part = {"item_id": self.item_id, "output_index": index, "content_index": 0, "part": _text_part("")}
            out.append(self._event("response.content_part.added", part))
        self._text.append(token)
        # The per-token event, its keys already in Go's sorted order.
        out.append(
            b'event: response.output_text.delta\ndata: {"content_index":0,"delta":'
            + go_literal(token)
            + b',"item_id":'
            + self._item_json
            + b',"logprobs":[],"output_index":%d,"sequence_number":%d,"type":"response.output_text.delta"}\n\n'
            % (index, self._seq)
        )
        self._seq += 1
        return b"".join(out)

    def final(self, plan: Plan, metrics: dict[str, int]) -> list[bytes]:
        out = self._open() + self._finish_reasoning()
        output: list[Any] = list(self._completed)
        if self._content_started and not self._tool_calls_sent:
            text, index = "".join(self._text), self._output_index
            base = {"item_id": self.item_id, "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", {**base, "text": text, "logprobs": []}))
            out.append(self._event("response.content_part.done", {**base, "part": _text_part(text)}))
            item: dict[str, Any] = {"id": self.item_id, "type": "message", "status": "completed", "role": "assistant"}
            item["content"] = [_text_part(text)]
            out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))
        if self._content_started:
            output.append(
                {
                    "id": self.item_id,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [_text_part("".join(self._text))],
                }
            )
        # `append([]any(nil), nothing...)` is nil in Go: a streamed load completes with "output":null.
        response = self._response_map("completed", output or None, _usage(metrics))
        response["completed_at"] = int(time.time())
        out.append(self._event("response.completed", {"response": response}))
        return [b"".join(out)]

    # -- whole -----------------------------------------------------------------------------

    def whole(self, plan: Plan, metrics: dict[str, int]) -> bytes:
        echo = self.echo
        output: list[dict[str, Any]] = []
        if plan.thinking:
            thinking = "".join(plan.thinking)
            output.append(
                {
                    "id": f"rs_{self.response_id}",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": thinking}],
                    "encrypted_content": thinking,
                }
            )
        for index, call in enumerate(plan.tool_calls):
            output.append(
                {
                    "id": f"fc_{self.response_id}_{index}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": go_dumps(call["function"]["arguments"]),
                }
            )
        if not plan.tool_calls:
            output.append(
                {
                    "id": self.item_id,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [_text_part("".join(plan.content))],
                }
            )
        now = int(time.time())
        body = {
            "id": self.response_id,
            "object": "response",
            "created_at": now,
            "completed_at": now,
            "status": "completed",
            "incomplete_details": None,
            "model": self.model,
            "previous_response_id": None,
            "instructions": echo.instructions,
            "output": output,
            "error": None,
            "tools": [_tool_struct(t) for t in echo.tools],
            "tool_choice": "auto",
            "truncation": echo.truncation,
            "parallel_tool_calls": True,
            "text": {"format": echo.text_struct},
            "top_p": echo.top_p,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": echo.temperature,
            "reasoning": echo.reasoning_struct,
            "usage": _usage(metrics),
            "max_output_tokens": echo.max_output_tokens,
            "max_tool_calls": None,
            "store": False,
            "background": echo.background,
            "service_tier": "default",
            "metadata": {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }
        return go_dumpb(body) + b"\n"


class ResponsesHandler(ForeignHandler):
    """`POST /v1/responses`."""

    def error_body(self, status: int, message: str) -> bytes:
        return openai_error(status, message)

    def build_job(self) -> Job:
        body = self.decode("openai.ResponsesRequest")
        text, items = "", list[dict[str, Any]]()
        for name, value in body.items():  # Go reports the first bad field, in the body's order
            if name == "input":
                text, items = decode_input(value)
            else:
                check_fields({name: value}, "ResponsesRequest", _TYPES, _INTS)
        reasoning = body.get("reasoning") or {}
        effort = _string_field(reasoning, "effort", "ResponsesReasoning")
        _string_field(reasoning, "summary", "ResponsesReasoning")
        instructions = body.get("instructions") or ""
        messages = to_messages(instructions, text, items)
        think = think_from_effort(effort)
        tools = _native_tools(body.get("tools") or [])
        stream = body.get("stream") is True
        self.enter_chat_handler(stream)
        model = body.get("model") or ""
        fmt = ResponsesFormat(model, self.sim.clock, stream, Echo.of(body))
        return self.chat_job(
            model,
            messages,
            fmt,
            stream=stream,
            think=think,
            tools=tools,
            limit=as_int(body.get("max_output_tokens")),
        )
