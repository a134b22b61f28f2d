"""The simulated Ollama's newer faces: `/v1/messages` (Anthropic), `/v1/responses` (OpenAI
Responses), `/v1/audio/transcriptions` and `/api/status`, checked on the wire with raw HTTP
(headers, field order, framing, event order, errors) and with the real `anthropic` and `openai`
SDKs. The text they carry must be the simulator's deterministic text: the same as `/api/chat`
answers for the same conversation."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from foreman.simulator import Fault, Simulator
from foreman.simulator.records import GENERATION_PATHS
from foreman.simulator.transcription import transcription_messages

HI = [{"role": "user", "content": "hello there"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
ASK_WEATHER = [{"role": "user", "content": "please call get_weather for Tokyo"}]
MIDDLEWARE = "application/json; charset=utf-8"  # gin c.JSON: no trailing newline
WRITER = "application/json"  # json.NewEncoder: a trailing newline


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def claude(sim: Simulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="unused", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def oai(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0)
    yield client
    await client.close()


async def native(http: aiohttp.ClientSession, sim: Simulator, model: str, messages: list[Any], **extra: Any) -> Any:
    """What `/api/chat` answers for the same conversation (the reference text)."""
    body = {"model": model, "messages": messages, "stream": False, **extra}
    async with http.post(sim.url + "/api/chat", json=body) as resp:
        assert resp.status == 200
        return await resp.json()


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Strict framing: every event is `event: <name>\\ndata: <json>\\n\\n`, nothing else."""
    assert raw.endswith(b"\n\n") or raw == b""
    events = []
    for chunk in raw.decode().split("\n\n")[:-1]:
        lines = chunk.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), chunk
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def pairs(raw: str) -> Any:
    """JSON with every object as its list of (key, value) pairs, to see the order."""
    return json.loads(raw, object_pairs_hook=lambda kv: kv)


def keys_sorted(value: Any, skip: tuple[str, ...] = ()) -> bool:
    """Whether every object inside `value` (as `pairs` gives it) has its keys sorted."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        names = [k for k, _ in value]
        return names == sorted(names) and all(k in skip or keys_sorted(v, skip) for k, v in value)
    if isinstance(value, list):
        return all(keys_sorted(v, skip) for v in value)
    return True


async def post_raw(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data) as resp:
        return resp.status, resp.headers, await resp.read()


# -- /v1/messages ---------------------------------------------------------------------------


async def test_messages_non_streamed_shape(sim: Simulator, http: aiohttp.ClientSession) -> None:
    system = [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]
    body = {"model": "llama3.2", "max_tokens": 1024, "system": system, "messages": HI}
    status, headers, raw = await post_raw(http, sim.url + "/v1/messages", body)
    assert status == 200 and headers["Content-Type"] == "application/json" and raw.endswith(b"}\n")
    assert "Cache-Control" not in headers and "Server" not in headers
    reply = json.loads(raw)
    assert [k for k, _ in pairs(raw.decode())] == ["id", "type", "role", "model", "content", "stop_reason", "usage"]
    assert re.fullmatch(r"msg_[0-9a-f]{24}", reply["id"])
    expected = await native(http, sim, "llama3.2", [{"role": "system", "content": "be brief"}, *HI])
    assert reply["content"] == [{"type": "text", "text": expected["message"]["content"]}]
    assert (reply["type"], reply["role"], reply["model"], reply["stop_reason"]) == (
        "message",
        "assistant",
        "llama3.2",
        "end_turn",
    )
    assert reply["usage"] == {"input_tokens": expected["prompt_eval_count"], "output_tokens": expected["eval_count"]}
    record = sim.requests[0]
    assert (record.path, record.kind, record.model, record.stream, record.outcome) == (
        "/v1/messages",
        "chat",
        "llama3.2",
        False,
        "done",
    )


async def test_messages_streamed_events(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "qwen3", "max_tokens": 500, "stream": True, "messages": HI}
    status, headers, raw = await post_raw(http, sim.url + "/v1/messages?beta=true", body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache" and headers["Connection"] == "keep-alive"
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert all(data["type"] == name for name, data in events) and "ping" not in names
    expected = await native(http, sim, "qwen3", HI)
    thinking = expected["message"]["thinking"]
    content = expected["message"]["content"]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 2,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * len(content.split()),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert list(start) == ["id", "type", "role", "model", "content", "usage"]  # no stop_reason key
    assert start["content"] == [] and start["usage"] == {"input_tokens": 3, "output_tokens": 0}  # (4 + 11) / 4
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": ""},
    }
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == thinking
    assert "".join(d.get("text", "") for d in deltas) == content
    assert {d["index"] for n, d in events if n == "content_block_delta" and d["delta"]["type"] == "text_delta"} == {1}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"input_tokens": expected["prompt_eval_count"], "output_tokens": expected["eval_count"]},
    }
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert sim.requests[0].stream is True and sim.requests[0].outcome == "done"


async def test_messages_max_tokens_cuts_a_longer_reply(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "max_tokens": 3, "messages": HI}
    _, _, raw = await post_raw(http, sim.url + "/v1/messages", body)
    reply = json.loads(raw)
    full = (await native(http, sim, "llama3.2", HI))["message"]["content"]
    assert reply["stop_reason"] == "max_tokens" and reply["usage"]["output_tokens"] == 3
    assert reply["content"][0]["text"] == " ".join(full.split()[:3]) + " "


async def test_messages_tool_use(sim: Simulator, http: aiohttp.ClientSession) -> None:
    tool = {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_PARAMS}
    body = {"model": "llama3.2", "max_tokens": 100, "tools": [tool], "messages": ASK_WEATHER}
    _, _, raw = await post_raw(http, sim.url + "/v1/messages", body)
    reply = json.loads(raw)
    (block,) = reply["content"]
    assert reply["stop_reason"] == "tool_use" and list(block) == ["type", "id", "name", "input"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and set(block["input"]) == {"city"}
    assert re.fullmatch(r"call_[a-z0-9]{8}", block["id"])
    _, _, raw = await post_raw(http, sim.url + "/v1/messages", {**body, "stream": True})
    events = parse_sse(raw)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    started = events[1][1]["content_block"]
    assert started["type"] == "tool_use" and started["name"] == "get_weather" and started["input"] == {}
    delta = events[2][1]["delta"]
    assert delta["type"] == "input_json_delta" and set(json.loads(delta["partial_json"])) == {"city"}
    assert events[4][1]["delta"] == {"stop_reason": "tool_use"}


async def test_messages_decoding_blocks_results_and_thinking(sim: Simulator, http: aiohttp.ClientSession) -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "42"}]},
        {"role": "user", "content": ""},  # nothing left: dropped
    ]
    body = {"model": "llama3.2", "max_tokens": 100, "messages": messages, "thinking": {"type": "enabled"}}
    status, _, raw = await post_raw(http, sim.url + "/v1/messages", body)
    assert status == 200  # thinking on a model without it is relaxed, not refused
    reply = json.loads(raw)
    expected = await native(
        http,
        sim,
        "llama3.2",
        [
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": ""},
            {"role": "tool", "content": "42"},
        ],
    )
    assert reply["content"] == [{"type": "text", "text": expected["message"]["content"]}]
    qwen = {**body, "model": "qwen3", "messages": HI, "thinking": {"type": "disabled"}}
    assert [b["type"] for b in json.loads((await post_raw(http, sim.url + "/v1/messages", qwen))[2])["content"]] == [
        "text"
    ]
    effort = {**qwen, "thinking": None, "output_config": {"effort": "xhigh"}}
    blocks = json.loads((await post_raw(http, sim.url + "/v1/messages", effort))[2])["content"]
    assert [b["type"] for b in blocks] == ["thinking", "text"] and list(blocks[0]) == ["type", "thinking"]


async def test_messages_that_leave_nothing_are_a_load(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "max_tokens": 10, "messages": [{"role": "user", "content": ""}]}
    status, _, raw = await post_raw(http, sim.url + "/v1/messages", body)
    reply = json.loads(raw)
    assert (
        status == 200 and reply["content"] is None and reply["stop_reason"] == "stop_sequence"
    )  # mapStopReason("load")
    assert reply["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert sim.requests[0].kind == "load" and "llama3.2:latest" in sim.loaded


ANTHROPIC_ERRORS: list[tuple[bytes | dict[str, Any], int, str, str, str]] = [
    (b"", 400, "invalid_request_error", "EOF", MIDDLEWARE),
    (
        b"{x",
        400,
        "invalid_request_error",
        "invalid character 'x' looking for beginning of object key string",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "max_tokens": "5", "messages": HI},
        400,
        "invalid_request_error",
        "json: cannot unmarshal string into Go struct field MessagesRequest.max_tokens of type int",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "max_tokens": 1.5, "messages": HI},
        400,
        "invalid_request_error",
        "json: cannot unmarshal number 1.5 into Go struct field MessagesRequest.max_tokens of type int",
        MIDDLEWARE,
    ),
    ({}, 400, "invalid_request_error", "model is required", MIDDLEWARE),
    (
        {"model": "llama3.2", "messages": HI},
        400,
        "invalid_request_error",
        "max_tokens is required and must be positive",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "max_tokens": 0, "messages": HI},
        400,
        "invalid_request_error",
        "max_tokens is required and must be positive",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "max_tokens": 5, "messages": []},
        400,
        "invalid_request_error",
        "messages is required",
        MIDDLEWARE,
    ),
    (
        {
            "model": "llama3.2",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}
            ],
        },
        400,
        "invalid_request_error",
        "invalid image source type: url. Only base64 images are supported.",
        MIDDLEWARE,
    ),
    (
        {
            "model": "llama3.2",
            "max_tokens": 5,
            "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}],
        },
        400,
        "invalid_request_error",
        "tool_use block missing required 'id' field",
        MIDDLEWARE,
    ),
    ({"model": "nope", "max_tokens": 5, "messages": HI}, 404, "not_found_error", "model 'nope' not found", WRITER),
    (
        {"model": "nomic-embed-text", "max_tokens": 5, "messages": HI},
        400,
        "invalid_request_error",
        '"nomic-embed-text" does not support chat',
        WRITER,
    ),
]


@pytest.mark.parametrize(("body", "status", "kind", "message", "content_type"), ANTHROPIC_ERRORS)
async def test_messages_errors(
    sim: Simulator,
    http: aiohttp.ClientSession,
    body: bytes | dict[str, Any],
    status: int,
    kind: str,
    message: str,
    content_type: str,
) -> None:
    got_status, headers, raw = await post_raw(http, sim.url + "/v1/messages", body)
    assert (got_status, headers["Content-Type"]) == (status, content_type)
    assert raw.endswith(b"\n") == (content_type == WRITER)
    reply = json.loads(raw)
    assert [k for k, _ in pairs(raw.decode())] == ["type", "error", "request_id"]
    assert reply["type"] == "error" and reply["error"] == {"type": kind, "message": message}
    assert re.fullmatch(r"req_[0-9a-f]{24}", reply["request_id"]) and "request-id" not in headers
    assert "Cache-Control" not in headers


async def test_messages_stream_errors_keep_the_stream_headers_and_queue_full_is_overloaded(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": "nope", "max_tokens": 5, "stream": True, "messages": HI}
    status, headers, raw = await post_raw(http, sim.url + "/v1/messages", body)
    assert (status, headers["Content-Type"], headers["Cache-Control"]) == (404, WRITER, "no-cache")
    busy = "server busy, please try again.  maximum pending requests exceeded"
    sim.inject(Fault("status", status=503, message=busy, path="/v1/messages"))
    status, headers, raw = await post_raw(http, sim.url + "/v1/messages", {**body, "model": "llama3.2"})
    assert (status, headers["Content-Type"]) == (503, WRITER)
    assert json.loads(raw)["error"] == {"type": "overloaded_error", "message": busy}


async def test_messages_other_methods_and_paths(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.url + "/v1/messages") as resp:
        assert (resp.status, await resp.text(), resp.headers["Content-Type"]) == (
            405,
            "405 method not allowed",
            "text/plain",
        )
    async with http.post(sim.url + "/v1/messages/count_tokens", json={}) as resp:
        assert (resp.status, await resp.text()) == (404, "404 page not found")


# -- /v1/responses --------------------------------------------------------------------------

RESPONSE_FIELDS = [
    "id",
    "object",
    "created_at",
    "completed_at",
    "status",
    "incomplete_details",
    "model",
    "previous_response_id",
    "instructions",
    "output",
    "error",
    "tools",
    "tool_choice",
    "truncation",
    "parallel_tool_calls",
    "text",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
    "temperature",
    "reasoning",
    "usage",
    "max_output_tokens",
    "max_tool_calls",
    "store",
    "background",
    "service_tier",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
]


async def test_responses_non_streamed_shape(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "input": "hello there", "instructions": "be <brief>"}
    status, headers, raw = await post_raw(http, sim.url + "/v1/responses", body)
    assert status == 200 and headers["Content-Type"] == "application/json" and raw.endswith(b"}\n")
    assert b'"be \\u003cbrief\\u003e"' in raw  # Go escapes <, > and &
    assert [k for k, _ in pairs(raw.decode())] == RESPONSE_FIELDS
    reply = json.loads(raw)
    expected = await native(http, sim, "llama3.2", [{"role": "system", "content": "be <brief>"}, *HI])
    assert re.fullmatch(r"resp_\d{1,6}", reply["id"]) and reply["object"] == "response"
    (item,) = reply["output"]
    assert re.fullmatch(r"msg_\d{1,6}", item["id"]) and list(item) == ["id", "type", "status", "role", "content"]
    assert item["content"] == [
        {"type": "output_text", "text": expected["message"]["content"], "annotations": [], "logprobs": []}
    ]
    assert (reply["status"], reply["incomplete_details"], reply["instructions"]) == ("completed", None, "be <brief>")
    assert b'"top_p":1,' in raw and b'"temperature":1,' in raw  # Go writes float64 1.0 as 1
    assert reply["usage"] == {
        "input_tokens": expected["prompt_eval_count"],
        "output_tokens": expected["eval_count"],
        "total_tokens": expected["prompt_eval_count"] + expected["eval_count"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert reply["completed_at"] >= reply["created_at"] and reply["text"] == {"format": {"type": "text"}}
    assert sim.requests[0].kind == "chat" and sim.requests[0].stream is False


async def test_responses_echo_the_request(sim: Simulator, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}}}
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    body = {
        "model": "llama3.2",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 3,
        "truncation": "auto",
        "tools": [tool],
        "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}},
        "reasoning": {"summary": "auto"},
        "background": False,
    }
    _, _, raw = await post_raw(http, sim.url + "/v1/responses", body)
    reply = json.loads(raw)
    assert (reply["temperature"], reply["top_p"], reply["max_output_tokens"], reply["truncation"]) == (
        0.5,
        0.9,
        3,
        "auto",
    )
    assert reply["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": None,
            "strict": None,
            "parameters": tool["parameters"],
        }
    ]
    assert reply["text"] == {"format": {"type": "json_schema", "name": "x", "schema": schema}}
    assert reply["reasoning"] == {"summary": "auto"} and reply["usage"]["output_tokens"] == 3
    assert b'"schema":{"type":"object","properties":{"b":' in raw  # a json.RawMessage keeps its order
    _, _, raw = await post_raw(http, sim.url + "/v1/responses", {**body, "stream": True})
    completed = pairs(raw.decode().split("\n\n")[-2].split("\n")[1][6:])
    assert keys_sorted(completed, skip=("schema",))
    response = parse_sse(raw)[-1][1]["response"]
    assert response["reasoning"] == {"effort": None, "summary": "auto"}
    assert response["tools"] == [
        {
            "description": None,
            "name": "get_weather",
            "parameters": tool["parameters"],
            "strict": None,
            "type": "function",
        }
    ]
    assert b'"schema":{"type":"object","properties":{"b":' in raw


async def test_responses_streamed_events(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "input": "hello there", "stream": True}
    status, headers, raw = await post_raw(http, sim.url + "/v1/responses", body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache" and headers["Transfer-Encoding"] == "chunked"
    assert b"[DONE]" not in raw
    events = parse_sse(raw)
    for index, (name, data) in enumerate(events):
        assert data["type"] == name and data["sequence_number"] == index
    for chunk in raw.decode().split("\n\n")[:-1]:
        assert keys_sorted(pairs(chunk.split("\n")[1][6:]))
    content = (await native(http, sim, "llama3.2", HI))["message"]["content"]
    words = len(content.split())
    assert [n for n, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * words,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0][1]["response"]
    assert (created["status"], created["output"], created["usage"], created["completed_at"]) == (
        "in_progress",
        [],
        None,
        None,
    )
    item_id = events[2][1]["item"]["id"]
    assert events[2][1]["item"] == {
        "content": [],
        "id": item_id,
        "role": "assistant",
        "status": "in_progress",
        "type": "message",
    }
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == content
    assert events[-4][1]["text"] == content
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == content
    assert done["usage"]["output_tokens"] == words and done["completed_at"] is not None


async def test_responses_reasoning(sim: Simulator, http: aiohttp.ClientSession) -> None:
    expected = (await native(http, sim, "qwen3", HI))["message"]
    status, _, raw = await post_raw(http, sim.url + "/v1/responses", {"model": "qwen3", "input": "hello there"})
    reply = json.loads(raw)
    reasoning, message = reply["output"]
    assert reasoning == {
        "id": f"rs_{reply['id']}",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": expected["thinking"]}],
        "encrypted_content": expected["thinking"],
    }
    assert message["content"][0]["text"] == expected["content"]
    _, _, raw = await post_raw(
        http, sim.url + "/v1/responses", {"model": "qwen3", "input": "hello there", "stream": True}
    )
    events = parse_sse(raw)
    names = [n for n, _ in events]
    assert names[2:6] == [
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
    ]
    assert events[2][1]["item"]["type"] == "reasoning" and re.fullmatch(r"rs_\d{1,6}", events[2][1]["item"]["id"])
    assert names[6] == "response.output_item.done" and events[6][1]["output_index"] == 0
    assert events[7][1]["output_index"] == 1 and events[7][1]["item"]["type"] == "message"
    off = {"model": "qwen3", "input": "hello there", "reasoning": {"effort": "none"}}
    assert [o["type"] for o in json.loads((await post_raw(http, sim.url + "/v1/responses", off))[2])["output"]] == [
        "message"
    ]
    plain = {"model": "llama3.2", "input": "x", "reasoning": {"effort": "high"}}
    status, headers, raw = await post_raw(http, sim.url + "/v1/responses", plain)
    assert (status, headers["Content-Type"]) == (400, WRITER)
    assert json.loads(raw)["error"]["message"] == '"llama3.2" does not support thinking'


async def test_responses_function_calls(sim: Simulator, http: aiohttp.ClientSession) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMS}
    body = {"model": "llama3.2", "input": ASK_WEATHER, "tools": [tool]}
    reply = json.loads((await post_raw(http, sim.url + "/v1/responses", body))[2])
    (call,) = reply["output"]  # a reply with tool calls has no message item
    assert call["id"] == f"fc_{reply['id']}_0" and list(call) == [
        "id",
        "type",
        "status",
        "call_id",
        "name",
        "arguments",
    ]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert set(json.loads(call["arguments"])) == {"city"} and re.fullmatch(r"call_[a-z0-9]{8}", call["call_id"])
    events = parse_sse((await post_raw(http, sim.url + "/v1/responses", {**body, "stream": True}))[2])
    assert [n for n, _ in events][2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert (added["status"], added["arguments"]) == ("in_progress", "")
    assert events[3][1]["delta"] == events[4][1]["arguments"] == events[5][1]["item"]["arguments"]
    assert [o["type"] for o in events[-1][1]["response"]["output"]] == ["function_call"]


async def test_responses_input_items(sim: Simulator, http: aiohttp.ClientSession) -> None:
    items = [
        {"type": "message", "role": "user", "content": "hello there"},
        {"type": "reasoning", "encrypted_content": "hmm", "summary": []},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "42"}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"role": "user", "content": [{"type": "input_text", "text": "more"}]},
    ]
    reply = json.loads((await post_raw(http, sim.url + "/v1/responses", {"model": "llama3.2", "input": items}))[2])
    expected = await native(
        http,
        sim,
        "llama3.2",
        [
            *HI,
            {"role": "assistant", "content": ""},
            {"role": "tool", "content": "42"},
            {"role": "user", "content": "more"},
        ],
    )
    assert reply["output"][0]["content"][0]["text"] == expected["message"]["content"]


async def test_responses_without_input_are_a_load(sim: Simulator, http: aiohttp.ClientSession) -> None:
    for body in ({"model": "llama3.2"}, {"model": "llama3.2", "input": ""}, {"model": "llama3.2", "input": None}):
        status, headers, raw = await post_raw(http, sim.url + "/v1/responses", body)
        reply = json.loads(raw)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert reply["status"] == "completed" and reply["output"][0]["content"][0]["text"] == ""
        assert (reply["usage"]["input_tokens"], reply["usage"]["output_tokens"]) == (0, 0)
    status, headers, raw = await post_raw(http, sim.url + "/v1/responses", {"model": "qwen3", "stream": True})
    events = parse_sse(raw)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert [n for n, _ in events] == ["response.created", "response.in_progress", "response.completed"]
    done = events[-1][1]["response"]
    # Ollama's converter builds the final output with `append([]any(nil), none...)`, which is nil: null.
    assert done["output"] is None and done["usage"]["total_tokens"] == 0
    assert [(r.kind, r.loaded_model) for r in sim.requests] == [
        ("load", True),
        ("load", False),
        ("load", False),
        ("load", True),
    ]
    assert set(sim.loaded) == {"llama3.2:latest", "qwen3:latest"}


RESPONSES_ERRORS: list[tuple[bytes | dict[str, Any], int, str, str, str]] = [
    (b"", 400, "invalid_request_error", "EOF", MIDDLEWARE),
    (
        b"[1]",
        400,
        "invalid_request_error",
        "json: cannot unmarshal array into Go value of type openai.ResponsesRequest",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "input": [{"type": "x"}]},
        400,
        "invalid_request_error",
        'input[0]: unknown input item type: "x"',
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        400,
        "invalid_request_error",
        "file inputs are not currently supported",
        MIDDLEWARE,
    ),
    (
        {"model": "llama3.2", "input": "x", "reasoning": {"effort": "huge"}},
        400,
        "invalid_request_error",
        'invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")',  # noqa: E501
        MIDDLEWARE,
    ),
    ({"input": "x"}, 400, "invalid_request_error", "model is required", WRITER),
    ({"model": "nope", "input": "x"}, 404, "not_found_error", "model 'nope' not found", WRITER),
    (
        {"model": "nomic-embed-text", "input": "x"},
        400,
        "invalid_request_error",
        '"nomic-embed-text" does not support chat',
        WRITER,
    ),
]


@pytest.mark.parametrize(("body", "status", "kind", "message", "content_type"), RESPONSES_ERRORS)
async def test_responses_errors(
    sim: Simulator,
    http: aiohttp.ClientSession,
    body: bytes | dict[str, Any],
    status: int,
    kind: str,
    message: str,
    content_type: str,
) -> None:
    got_status, headers, raw = await post_raw(http, sim.url + "/v1/responses", body)
    assert (got_status, headers["Content-Type"]) == (status, content_type)
    assert raw.endswith(b"\n") == (content_type == WRITER)
    assert json.loads(raw) == {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def test_responses_queue_full_is_an_api_error(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.inject(Fault("status", status=503, message="server busy", path="/v1/responses"))
    status, headers, raw = await post_raw(
        http, sim.url + "/v1/responses", {"model": "llama3.2", "input": "x", "stream": True}
    )
    assert (status, headers["Content-Type"], headers["Cache-Control"]) == (503, WRITER, "no-cache")
    assert json.loads(raw)["error"] == {"message": "server busy", "type": "api_error", "param": None, "code": None}


# -- the shared machinery: load delay, faults, disconnects ---------------------------------

STREAMS = [
    ("/v1/messages", {"model": "llama3.2", "max_tokens": 50, "messages": HI, "stream": True}, "message_stop"),
    ("/v1/responses", {"model": "llama3.2", "input": "hello there", "stream": True}, "response.completed"),
]


@pytest.mark.parametrize(("path", "body", "closing"), STREAMS)
async def test_nothing_not_even_headers_before_the_first_token(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], closing: str
) -> None:
    sim.load_delay = 0.3
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.post(sim.url + path, json=body) as resp:
        headers_at = loop.time()
        raw = await resp.read()
    assert headers_at - started >= 0.3 and parse_sse(raw)[-1][0] == closing
    assert sim.requests[0].loaded_model


@pytest.mark.parametrize(("path", "body", "closing"), STREAMS)
async def test_error_line_after_streaming_began_just_ends_the_stream(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], closing: str
) -> None:
    sim.inject(Fault("error_line", after_chunks=3, message="runner crashed"))
    status, _, raw = await post_raw(http, sim.url + path, body)  # a complete chunked body: no payload error
    events = parse_sse(raw)
    assert status == 200 and events and closing not in [n for n, _ in events]
    assert "message_delta" not in [n for n, _ in events] and b"runner crashed" not in raw
    record = sim.requests[0]
    assert (record.outcome, record.status, record.chunks_sent, record.fault) == ("error", 200, 3, "error_line")


@pytest.mark.parametrize(("path", "body", "closing"), STREAMS)
async def test_error_before_the_first_chunk_gets_its_status(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], closing: str
) -> None:
    for stream in (True, False):
        sim.inject(Fault("error_line", message="runner crashed"))
        status, headers, raw = await post_raw(http, sim.url + path, {**body, "stream": stream})
        assert (status, headers["Content-Type"]) == (500, WRITER) and raw.endswith(b"\n")
        error = json.loads(raw)["error"]
        assert (error["type"], error["message"]) == ("api_error", "runner crashed")
    assert [(r.outcome, r.status) for r in sim.requests] == [("error", 500)] * 2


@pytest.mark.parametrize(("path", "body", "closing"), STREAMS)
async def test_reset_mid_stream(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], closing: str
) -> None:
    sim.inject(Fault("reset", after_chunks=2))
    with pytest.raises(aiohttp.ClientPayloadError):
        await post_raw(http, sim.url + path, body)
    assert (sim.requests[0].outcome, sim.requests[0].chunks_sent) == ("reset", 2)


@pytest.mark.parametrize(("path", "body", "closing"), STREAMS)
async def test_client_disconnect_is_recorded(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], closing: str
) -> None:
    sim.token_delay = 0.02
    sim.default_tokens = 500
    body = {**body, "max_tokens": 1000} if "max_tokens" in body else body
    resp = await http.post(sim.url + path, json=body)
    await resp.content.readuntil(b"\n\n")
    resp.close()
    record = sim.requests[0]
    await sim.wait_for(lambda: record.ended is not None, timeout=2)
    assert record.outcome == "client_closed" and record.client_closed_at is not None and record.chunks_sent < 20


async def test_token_delay_paces_every_face(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.token_delay = 0.03
    for path, body, _ in STREAMS:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await post_raw(http, sim.url + path, {**body, "stream": False})
        assert loop.time() - started >= 8 * 0.03


def test_new_faces_are_generation_paths() -> None:
    assert {"/v1/messages", "/v1/responses", "/v1/audio/transcriptions"} <= GENERATION_PATHS


# -- /v1/audio/transcriptions ---------------------------------------------------------------


def audio_form(audio: bytes = b"RIFF fake wave", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in {"model": "llama3.2", **fields}.items():
        form.add_field(name, value)
    form.add_field("file", audio, filename="speech.wav", content_type="audio/wav")
    return form


async def test_transcription_json_and_text(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + "/v1/audio/transcriptions", data=audio_form(language="en")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        raw = await resp.read()
    assert raw.endswith(b"\n") and list(json.loads(raw)) == ["text"]
    text = json.loads(raw)["text"]
    expected = await native(http, sim, "llama3.2", transcription_messages(b"RIFF fake wave", "en"))
    assert text == expected["message"]["content"].strip() and text
    async with http.post(
        sim.url + "/v1/audio/transcriptions", data=audio_form(language="en", response_format="text")
    ) as resp:
        assert resp.headers["Content-Type"] == "text/plain" and await resp.text() == text
    async with http.post(sim.url + "/v1/audio/transcriptions", data=audio_form(b"other audio", language="en")) as resp:
        assert (await resp.json(content_type=None))["text"] != text
    record = sim.requests[0]
    assert (record.kind, record.model, record.stream, record.outcome, record.loaded_model) == (
        "transcription",
        "llama3.2",
        False,
        "done",
        True,
    )
    assert record.body is not None and record.body["file"] == {"filename": "speech.wav", "size": 14}


async def test_transcription_runs_a_model(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.load_delay = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.post(sim.url + "/v1/audio/transcriptions", data=audio_form(model="qwen3")) as resp:
        assert resp.status == 200
    assert loop.time() - started >= 0.2 and "qwen3:latest" in sim.loaded
    sim.inject(Fault("error_line", message="runner crashed", path="/v1/audio/transcriptions"))
    async with http.post(sim.url + "/v1/audio/transcriptions", data=audio_form()) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (500, WRITER)
        assert (await resp.json(content_type=None))["error"]["message"] == "runner crashed"


async def test_transcription_errors(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = sim.url + "/v1/audio/transcriptions"
    no_model = aiohttp.FormData()
    no_model.add_field("file", b"x", filename="a.wav")
    no_file = aiohttp.FormData(default_to_multipart=True)
    no_file.add_field("model", "llama3.2")
    no_file.add_field("file", "not a file")
    cases: list[tuple[Any, int, str, str]] = [
        (no_model, 400, "model is required", MIDDLEWARE),
        (no_file, 400, "file is required: http: no such file", MIDDLEWARE),
        (audio_form(b""), 400, "audio file is empty", MIDDLEWARE),
        (
            json.dumps({"model": "llama3.2"}),
            400,
            "failed to parse multipart form: request Content-Type isn't multipart/form-data",
            MIDDLEWARE,
        ),
        (audio_form(model="nope"), 404, "model 'nope' not found", WRITER),
    ]
    for data, status, message, content_type in cases:
        async with http.post(url, data=data) as resp:
            assert (resp.status, resp.headers["Content-Type"]) == (status, content_type)
            error = (await resp.json(content_type=None))["error"]
            assert error["message"] == message
    broken = b"--b\r\nContent-Disposition: form-data; name=model\r\n\r\nllama3.2\r\n"  # no final boundary
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    async with http.post(url, data=broken, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json(content_type=None))["error"][
            "message"
        ] == "failed to parse multipart form: multipart: NextPart: EOF"


# -- metadata -------------------------------------------------------------------------------


async def test_status_and_head_routes(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.url + "/api/status") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == MIDDLEWARE
        assert await resp.read() == b'{"cloud":{"disabled":false,"source":"none"}}'
    async with http.head(sim.url + "/api/status") as resp:
        assert resp.status == 405
    for path in ("/api/tags", "/api/version"):
        async with http.get(sim.url + path) as resp:
            length = len(await resp.read())
        async with http.head(sim.url + path) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == MIDDLEWARE
            assert int(resp.headers["Content-Length"]) == length and await resp.read() == b""
    assert sim.requests == []  # metadata is not recorded


# -- the real SDKs --------------------------------------------------------------------------


async def test_anthropic_sdk(sim: Simulator, http: aiohttp.ClientSession, claude: anthropic.AsyncAnthropic) -> None:
    expected = (await native(http, sim, "qwen3", HI))["message"]
    message = await claude.messages.create(
        model="qwen3", max_tokens=1024, messages=[{"role": "user", "content": "hello there"}]
    )
    thinking, text = message.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock) and thinking.thinking == expected["thinking"]
    assert isinstance(text, anthropic.types.TextBlock) and text.text == expected["content"]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 10
    async with claude.messages.stream(
        model="qwen3", max_tokens=1024, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        streamed = "".join([chunk async for chunk in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == expected["content"] and final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["thinking", "text"]
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_PARAMS}
    async with claude.messages.stream(
        model="llama3.2",
        max_tokens=100,
        tools=[tool],
        messages=[{"role": "user", "content": ASK_WEATHER[0]["content"]}],
    ) as stream:
        called = await stream.get_final_message()
    (use,) = called.content
    assert isinstance(use, anthropic.types.ToolUseBlock) and use.name == "get_weather" and set(use.input) == {"city"}
    with pytest.raises(anthropic.NotFoundError) as err:
        await claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404 and "model 'nope' not found" in str(err.value)


async def test_openai_sdk_responses(sim: Simulator, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI) -> None:
    expected = (await native(http, sim, "qwen3", HI))["message"]
    response = await oai.responses.create(model="qwen3", input="hello there")
    assert response.output_text == expected["content"] and response.status == "completed"
    assert response.output[0].type == "reasoning" and response.usage is not None
    stream = await oai.responses.create(model="qwen3", input="hello there", stream=True)
    events = [event async for event in stream]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == expected["content"]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == expected["content"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    async with oai.responses.stream(model="llama3.2", input="hello there") as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_response()
    assert final.output_text == (await native(http, sim, "llama3.2", HI))["message"]["content"]
    with pytest.raises(openai.NotFoundError):
        await oai.responses.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as err:
        await oai.responses.create(model="qwen3", input="x", reasoning={"effort": "huge"})
    assert "invalid reasoning value" in str(err.value)


async def test_openai_sdk_transcription(sim: Simulator, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI) -> None:
    result = await oai.audio.transcriptions.create(model="llama3.2", file=("speech.wav", b"RIFF fake wave"))
    expected = await native(http, sim, "llama3.2", transcription_messages(b"RIFF fake wave"))
    assert result.text == expected["message"]["content"].strip()
