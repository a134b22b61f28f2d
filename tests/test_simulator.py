"""The simulated Ollama: wire fidelity (checked with the official client and raw HTTP),
residency, faults, sleep, records and the control endpoints."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import httpx
import ollama
import pytest

from foreman.simulator import Fault, SimRequest, Simulator
from foreman.simulator.cli import main as cli_main

HI = [{"role": "user", "content": "hello there"}]
MakeSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    started: list[Simulator] = []

    async def make(**kwargs: Any) -> Simulator:
        sim = Simulator(**kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: MakeSim) -> Simulator:
    return await make_sim()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama.AsyncClient(host=sim.url) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def chats(sim: Simulator, kind: str = "chat") -> list[SimRequest]:
    return [r for r in sim.requests if r.kind == kind]


# -- transport and headers ------------------------------------------------------------------


async def test_root_version_and_no_tornado_fingerprints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.url + "/") as resp:
        assert resp.status == 200 and await resp.text() == "Ollama is running"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "Server" not in resp.headers and "Etag" not in resp.headers
    async with http.head(sim.url + "/") as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == "17" and await resp.read() == b""
    async with http.get(sim.url + "/api/version") as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await resp.read() == b'{"version":"0.12.3"}'
    async with http.head(sim.url + "/api/version") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/nope", 404, "404 page not found"),
        ("POST", "/api/nope", 404, "404 page not found"),
        ("GET", "/api/chat", 405, "405 method not allowed"),
        ("POST", "/api/tags", 405, "405 method not allowed"),
        ("GET", "/api/show", 405, "405 method not allowed"),
    ],
)
async def test_gin_style_404_and_405(
    sim: Simulator, http: aiohttp.ClientSession, method: str, path: str, status: int, text: str
) -> None:
    async with http.request(method, sim.url + path) as resp:
        assert (resp.status, await resp.text()) == (status, text)
        assert resp.headers["Content-Type"] == "text/plain" and "Server" not in resp.headers


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/generate", b"  \n", 400, "missing request body"),
        ("/api/chat", b"not json", 400, "invalid character 'o' in literal null (expecting 'u')"),
        ("/api/chat", b"{x", 400, "invalid character 'x' looking for beginning of object key string"),
        ("/api/chat", b'{"model":', 400, "unexpected EOF"),
        ("/api/chat", b"{}", 400, "model is required"),
        ("/api/chat", b"null", 400, "model is required"),
        ("/api/generate", b"{}", 404, "model '' not found"),
        ("/api/embed", b"{}", 404, "model '' not found"),
        ("/api/embeddings", b"{}", 400, "model is required"),
        ("/api/show", b"{}", 400, "model is required"),
        ("/api/chat", b"[1]", 400, "json: cannot unmarshal array into Go value of type api.ChatRequest"),
        (
            "/api/chat",
            b'{"model":"llama3.2","messages":"hi"}',
            400,
            "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message",
        ),
        ("/api/chat", b'{"model":"llama3.2","keep_alive":"300"}', 400, 'time: missing unit in duration "300"'),
        ("/api/chat", b'{"model":"llama3.2","keep_alive":true}', 400, "Unsupported type: 'bool'"),
    ],
)
async def test_bad_bodies_get_ollamas_errors(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: bytes, status: int, error: str
) -> None:
    async with http.post(sim.url + path, data=body) as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert json.loads(await resp.read()) == {"error": error}


async def test_body_is_json_whatever_the_content_type(sim: Simulator, http: aiohttp.ClientSession) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    body = json.dumps({"model": "llama3.2", "messages": HI, "stream": False})
    async with http.post(sim.url + "/api/chat", data=body, headers=form) as resp:
        assert resp.status == 200 and (await resp.json())["done"] is True


async def test_streaming_wire_format(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + "/api/chat", json={"model": "llama3.2", "messages": HI}) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        assert resp.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in resp.headers
        raw = await resp.read()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1]), "every line ends with \\n and none is blank"
    first, last = json.loads(lines[0]), json.loads(lines[-2])
    assert list(first) == ["model", "created_at", "message", "done"]
    assert first["model"] == "llama3.2" and first["message"]["role"] == "assistant" and first["done"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", first["created_at"])
    assert last["done"] is True and last["done_reason"] == "stop" and last["message"]["content"] == ""
    assert len(lines) - 2 == last["eval_count"] == 8
    for key in ("total_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"):
        assert isinstance(last[key], int) and last[key] > 0


async def test_non_streamed_reply_is_one_compact_object(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "prompt": "why is the sky blue", "stream": False}
    async with http.post(sim.url + "/api/generate", json=body) as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        raw = await resp.read()
    assert b"\n" not in raw and b": " not in raw
    reply = json.loads(raw)
    assert reply["done"] is True and reply["response"] and reply["context"]


# -- generation through the official client -------------------------------------------------


async def test_chat_streamed_and_not_agree_and_are_deterministic(client: ollama.AsyncClient) -> None:
    whole = await client.chat(model="llama3.2", messages=HI)
    again = await client.chat(model="llama3.2", messages=HI)
    parts = [p async for p in await client.chat(model="llama3.2", messages=HI, stream=True)]
    other = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "something else"}])
    assert whole.message.content and whole.message.content == again.message.content
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert other.message.content != whole.message.content
    assert whole.done_reason == "stop" and whole.eval_count == 8
    assert all(re.fullmatch(r"[a-z]+ ", p.message.content or "") for p in parts[:-1])


async def test_generate_streamed_and_not(client: ollama.AsyncClient) -> None:
    whole = await client.generate(model="llama3.2", prompt="why is the sky blue")
    parts = [p async for p in await client.generate(model="llama3.2", prompt="why is the sky blue", stream=True)]
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].done and parts[-1].context and whole.context == parts[-1].context


async def test_num_predict_sets_length_and_reason(make_sim: MakeSim) -> None:
    sim = await make_sim(default_tokens=5)
    async with ollama.AsyncClient(host=sim.url) as client:
        default = await client.chat(model="llama3.2", messages=HI)
        cut = await client.chat(model="llama3.2", messages=HI, options={"num_predict": 3})
        sim.default_tokens = 2
        changed = await client.generate(model="llama3.2", prompt="x")
    assert (default.eval_count, default.done_reason) == (5, "stop")
    assert (cut.eval_count, cut.done_reason) == (3, "length")
    assert (changed.eval_count, len((changed.response or "").split())) == (2, 2)


async def test_model_names_bare_means_latest_and_case_is_ignored(client: ollama.AsyncClient) -> None:
    bare = await client.chat(model="llama3.2", messages=HI)
    upper = await client.chat(model="LLAMA3.2:Latest", messages=HI)
    assert upper.model == "LLAMA3.2:Latest" and bare.model == "llama3.2"
    assert upper.message.content == bare.message.content


async def test_unknown_and_unsuitable_models(sim: Simulator, client: ollama.AsyncClient) -> None:
    cases: list[tuple[Awaitable[Any], int, str]] = [
        (client.chat(model="no-such-model", messages=HI), 404, "model 'no-such-model' not found"),
        (client.generate(model="Nope:7b", prompt="x"), 404, "model 'Nope:7b' not found"),
        (client.embed(model="nope", input="x"), 404, 'model "nope" not found, try pulling it first'),
        (client.show("nope"), 404, "model 'nope' not found"),
        (client.chat(model="nomic-embed-text", messages=HI), 400, '"nomic-embed-text" does not support chat'),
        (client.generate(model="nomic-embed-text", prompt="x"), 400, '"nomic-embed-text" does not support generate'),
        (client.chat(model="llama3.2", messages=HI, think=True), 400, '"llama3.2" does not support thinking'),
    ]
    for call, status, text in cases:
        with pytest.raises(ollama.ResponseError) as err:
            await call
        assert (err.value.status_code, err.value.error) == (status, text)
    assert [r.outcome for r in sim.requests] == ["refused_model"] * 6  # show is not recorded
    assert sim.loaded == {}


async def test_thinking_model_thinks_first(client: ollama.AsyncClient) -> None:
    parts = [p async for p in await client.chat(model="qwen3", messages=HI, think=True, stream=True)]
    assert parts[0].message.thinking and not parts[0].message.content
    whole = await client.chat(model="qwen3", messages=HI, think=True)
    assert whole.message.thinking == "".join(p.message.thinking or "" for p in parts)
    plain = await client.chat(model="qwen3", messages=HI, think=False)
    assert plain.message.thinking is None and plain.message.content == whole.message.content
    gen = await client.generate(model="qwen3", prompt="hi", think=True)
    assert gen.thinking and gen.response


async def test_tool_call_when_the_user_names_a_tool(client: ollama.AsyncClient) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
    ask = [{"role": "user", "content": "please call get_weather for Tokyo"}]
    reply = await client.chat(model="llama3.2", messages=ask, tools=[tool])
    calls = reply.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments, dict) and set(calls[0].function.arguments) == {"city"}
    parts = [p async for p in await client.chat(model="llama3.2", messages=ask, tools=[tool], stream=True)]
    assert sum(1 for p in parts if p.message.tool_calls) == 1
    no_call = await client.chat(model="llama3.2", messages=HI, tools=[tool])
    assert not no_call.message.tool_calls and no_call.message.content


async def test_tool_call_ids_on_the_wire(sim: Simulator, http: aiohttp.ClientSession) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "lookup it"}], "tools": [tool]}
    async with http.post(sim.url + "/api/chat", json={**body, "stream": False}) as resp:
        call = (await resp.json())["message"]["tool_calls"][0]
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"]) and call["function"] == {
        "index": 0,
        "name": "lookup",
        "arguments": {},
    }


# -- load, unload, residency ----------------------------------------------------------------


async def test_load_and_unload_requests(sim: Simulator, client: ollama.AsyncClient) -> None:
    loaded = await client.chat(model="llama3.2", messages=[])
    assert loaded.done_reason == "load" and loaded.message.content == "" and loaded.done
    assert "llama3.2:latest" in sim.loaded
    gen_load = await client.generate(model="qwen3")
    assert gen_load.done_reason == "load" and gen_load.response == ""
    unloaded = await client.generate(model="llama3.2", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert list(sim.loaded) == ["qwen3:latest"]
    for zero in (0.0, "0", "0s"):
        reply = await client.chat(model="qwen3", messages=[], keep_alive=zero)
        assert reply.done_reason == "unload"
    assert sim.loaded == {}
    kinds = [(r.kind, r.loaded_model) for r in sim.requests]
    assert kinds == [
        ("load", True),
        ("load", True),
        ("unload", False),
        ("unload", False),
        ("unload", False),
        ("unload", False),
    ]


async def test_load_reply_is_one_object_even_when_streaming(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + "/api/chat", json={"model": "llama3.2"}) as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        reply = json.loads(await resp.read())
    assert reply["message"] == {"role": "assistant", "content": ""} and reply["done_reason"] == "load"
    assert sim.requests[-1].stream is True


async def test_cold_load_costs_load_delay_and_is_shared(make_sim: MakeSim) -> None:
    sim = await make_sim(load_delay=0.2)
    async with ollama.AsyncClient(host=sim.url) as client:
        first, second = await asyncio.gather(
            client.chat(model="llama3.2", messages=HI), client.chat(model="llama3.2", messages=HI)
        )
        warm = await client.chat(model="llama3.2", messages=HI)
    assert sorted(r.loaded_model for r in sim.requests[:2]) == [False, True]
    cold = first if sim.requests[0].loaded_model else second
    assert (cold.load_duration or 0) >= 200_000_000
    assert warm.load_duration is None and not sim.requests[2].loaded_model


async def test_keep_alive_pins_expires_and_replaces(make_sim: MakeSim) -> None:
    sim = await make_sim()
    async with ollama.AsyncClient(host=sim.url) as client:
        await client.embed(model="nomic-embed-text", input=[], keep_alive=-1)
        await client.chat(model="llama3.2", messages=HI, keep_alive="0.2s")
        assert sim.loaded["nomic-embed-text:latest"] == math.inf
        ps = await client.ps()
        assert [m.model for m in ps.models] == ["nomic-embed-text:latest", "llama3.2:latest"]
        assert ps.models[0].expires_at is not None and ps.models[0].expires_at.year > 2200
        await sim.wait_for(lambda: "llama3.2:latest" not in sim.loaded, timeout=2)
        # No keep_alive: a loaded model keeps its duration; the latest explicit one replaces it.
        await client.embed(model="nomic-embed-text", input="x")
        assert sim.loaded["nomic-embed-text:latest"] == math.inf
        await client.embed(model="nomic-embed-text", input="x", keep_alive="1h")
        assert 3500 < sim.loaded["nomic-embed-text:latest"] - asyncio.get_running_loop().time() <= 3600


async def test_eviction_takes_the_idle_model_with_the_shortest_keep_alive(make_sim: MakeSim) -> None:
    sim = await make_sim(models=["a", "b", "c"], max_loaded=2)
    async with ollama.AsyncClient(host=sim.url) as client:
        await client.generate(model="b", prompt="x", keep_alive=-1)  # pinned
        await client.generate(model="a", prompt="x", keep_alive="10m")
        await client.generate(model="c", prompt="x", keep_alive="10m")
        assert set(sim.loaded) == {"b:latest", "c:latest"}  # a went, though b was used less recently
        ps = await client.ps()
        assert {m.model for m in ps.models} == {"b:latest", "c:latest"}
        await client.generate(model="a", prompt="y", keep_alive="10m")  # equal keep_alive: by name
        assert set(sim.loaded) == {"a:latest", "b:latest"}


async def test_a_busy_model_is_not_evicted_the_newcomer_waits(make_sim: MakeSim) -> None:
    sim = await make_sim(models=["a", "b"], max_loaded=1, token_delay=0.02)
    async with ollama.AsyncClient(host=sim.url) as client:
        busy = asyncio.ensure_future(client.generate(model="a", prompt="x", options={"num_predict": 10}))
        await sim.wait_for(lambda: "a:latest" in sim.loaded)
        await client.generate(model="b", prompt="x", options={"num_predict": 1})
        await busy
    first, second = sim.requests
    assert first.outcome == second.outcome == "done"
    assert first.ended is not None and second.ended is not None and second.ended > first.ended
    assert list(sim.loaded) == ["b:latest"]


# -- embeddings -----------------------------------------------------------------------------


async def test_embed_vectors(sim: Simulator, client: ollama.AsyncClient) -> None:
    one = await client.embed(model="nomic-embed-text", input="hello")
    two = await client.embed(model="nomic-embed-text", input=["hello", "world"])
    assert one.embeddings[0] == two.embeddings[0] and two.embeddings[0] != two.embeddings[1]
    assert all(abs(math.fsum(x * x for x in v) - 1) < 1e-6 for v in two.embeddings)
    cut = await client.embed(model="nomic-embed-text", input="hello", dimensions=8)
    assert len(cut.embeddings[0]) == 8 and abs(math.fsum(x * x for x in cut.embeddings[0]) - 1) < 1e-6
    empty = await client.embed(model="nomic-embed-text", input=[])
    assert empty.embeddings == []
    legacy = await client.embeddings(model="nomic-embed-text", prompt="hello")
    assert len(legacy.embedding) == len(one.embeddings[0])
    assert all(r.kind == "embed" and not r.stream for r in sim.requests)
    assert [r.loaded_model for r in sim.requests] == [True, False, False, False, False]


async def test_embeddings_run_concurrently_without_token_delay(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=1.0)
    async with ollama.AsyncClient(host=sim.url) as client:
        await asyncio.wait_for(
            asyncio.gather(*(client.embed(model="nomic-embed-text", input=f"t{i}") for i in range(20))), 2
        )
    assert len(sim.requests) == 20


# -- model management -----------------------------------------------------------------------


async def test_tags_show_and_management(sim: Simulator, client: ollama.AsyncClient) -> None:
    tags = await client.list()
    assert {m.model for m in tags.models} == {"llama3.2:latest", "qwen3:latest", "nomic-embed-text:latest"}
    assert all(m.digest and m.size and m.details and m.details.family for m in tags.models)
    show = await client.show("qwen3")
    assert show.modelinfo and show.modelinfo["general.architecture"] == "qwen3"
    assert show.capabilities == ["completion", "tools", "thinking"] and show.modified_at is not None
    assert (await client.show("nomic-embed-text")).capabilities == ["embedding"]

    assert (await client.pull("mistral")).status == "success"
    steps = [p.status async for p in await client.pull("phi3:mini", stream=True)]
    assert steps[0] == "pulling manifest" and steps[-1] == "success"
    await client.copy("mistral", "mistral-copy")
    assert (await client.create(model="custom", from_="llama3.2")).status == "success"
    await client.delete("mistral")
    names = {m.model for m in (await client.list()).models}
    assert {"phi3:mini", "mistral-copy:latest", "custom:latest"} <= names and "mistral:latest" not in names
    with pytest.raises(ollama.ResponseError) as err:
        await client.delete("mistral")
    assert (err.value.status_code, err.value.error) == (404, "model 'mistral' not found")
    with pytest.raises(ollama.ResponseError) as err:
        await client.copy("ghost", "x")
    assert (err.value.status_code, err.value.error) == (404, 'model "ghost" not found')
    assert sim.requests == []  # none of this is inference


async def test_add_and_remove_model_at_run_time(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.add_model("gemma3:1b")
    assert (await client.generate(model="gemma3:1b", prompt="x")).done
    sim.remove_model("gemma3:1b")
    assert "gemma3:1b" not in sim.loaded
    with pytest.raises(ollama.ResponseError):
        await client.generate(model="gemma3:1b", prompt="x")


async def test_blobs(sim: Simulator, http: aiohttp.ClientSession) -> None:
    digest = "sha256:" + "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"  # sha256("foo")
    async with http.head(f"{sim.url}/api/blobs/{digest}") as resp:
        assert resp.status == 404
    async with http.post(f"{sim.url}/api/blobs/{digest}", data=b"foo") as resp:
        assert resp.status == 201
    async with http.head(f"{sim.url}/api/blobs/{digest}") as resp:
        assert resp.status == 200


# -- faults ---------------------------------------------------------------------------------


async def test_reset_mid_stream(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("reset", after_chunks=3))
    seen = []
    with pytest.raises(httpx.TransportError):
        async for part in await client.chat(model="llama3.2", messages=HI, stream=True):
            seen.append(part)
    assert len(seen) == 3 and not any(p.done for p in seen)
    record = sim.requests[0]
    assert (record.outcome, record.chunks_sent, record.fault, record.client_closed_at) == ("reset", 3, "reset", None)
    assert (await client.chat(model="llama3.2", messages=HI)).done  # consumed: the next one is fine


async def test_reset_leaves_a_late_reader_time_to_read_what_was_sent(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.inject(Fault("reset", after_chunks=3))
    lines = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(sim.url + "/api/chat", json={"model": "llama3.2", "messages": HI}) as resp:
            await asyncio.sleep(0.02)  # aiohttp drops buffered lines once the connection errors
            async for line in resp.content:
                lines.append(line)
    assert len(lines) == 3


async def test_reset_before_a_non_streamed_body(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("reset"))
    with pytest.raises(httpx.TransportError):
        await client.generate(model="llama3.2", prompt="x")
    assert sim.requests[0].outcome == "reset" and sim.requests[0].chunks_sent == 0


async def test_reset_is_an_incomplete_chunked_body(sim: Simulator) -> None:
    sim.inject(Fault("reset", after_chunks=2))
    body = json.dumps({"model": "llama3.2", "messages": HI}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    with pytest.raises(ConnectionResetError):
        while chunk := await reader.read(65536):
            received += chunk
    writer.close()
    assert received.count(b'"done":false') == 2 and b"0\r\n\r\n" not in received


async def test_stall_until_the_client_gives_up(sim: Simulator) -> None:
    sim.inject(Fault("stall", after_chunks=2))
    async with ollama.AsyncClient(host=sim.url, timeout=0.3) as impatient:
        seen = []
        with pytest.raises(httpx.ReadTimeout):
            async for part in await impatient.chat(model="llama3.2", messages=HI, stream=True):
                seen.append(part)
    record = sim.requests[0]
    await sim.wait_for(lambda: record.ended is not None, timeout=1)
    assert len(seen) == 2 and record.outcome == "stalled" and record.client_closed_at is not None


async def test_finite_stall_then_carries_on(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("stall", after_chunks=1, seconds=0.2))
    reply = await client.chat(model="llama3.2", messages=HI)
    record = sim.requests[0]
    assert reply.done and record.outcome == "done" and record.ended is not None
    assert record.ended - record.started >= 0.2


async def test_status_fault_and_matching_rules(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("status", status=503, message="busy", model="qwen3", times=2))
    sim.inject(Fault("status", status=429, message="slow down", path="/api/generate"))
    assert (await client.chat(model="llama3.2", messages=HI)).done  # other model
    assert (await client.chat(model="qwen3", messages=[])).done_reason == "load"  # loads don't consume
    for call in (client.chat(model="qwen3", messages=HI), client.generate(model="qwen3:latest", prompt="x")):
        with pytest.raises(ollama.ResponseError) as err:
            await call
        assert (err.value.status_code, err.value.error) == (503, "busy")
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="llama3.2", prompt="x")
    assert (err.value.status_code, err.value.error) == (429, "slow down")
    assert (await client.generate(model="qwen3", prompt="x")).done
    assert [r.outcome for r in sim.requests] == ["done", "done", "error", "error", "error", "done"]
    assert sim.requests[2].status == 503 and not sim.requests[2].loaded_model


async def test_fault_on_load_and_embedding_paths_only_when_asked(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("status", status=500, message="load failed", on_load=True))
    with pytest.raises(ollama.ResponseError):
        await client.generate(model="llama3.2")
    sim.inject(Fault("status", status=500, message="embed failed", path="/api/embed"))
    assert (await client.embeddings(model="nomic-embed-text", prompt="x")).embedding
    with pytest.raises(ollama.ResponseError) as err:
        await client.embed(model="nomic-embed-text", input="x")
    assert err.value.error == "embed failed"


async def test_error_line_mid_stream_and_non_streamed(sim: Simulator, client: ollama.AsyncClient) -> None:
    sim.inject(Fault("error_line", after_chunks=2, message="runner crashed"))
    seen = []
    with pytest.raises(ollama.ResponseError) as err:
        async for part in await client.chat(model="llama3.2", messages=HI, stream=True):
            seen.append(part)
    assert (err.value.status_code, err.value.error, len(seen)) == (-1, "runner crashed", 2)
    sim.inject(Fault("error_line", message="runner crashed"))
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="llama3.2", messages=HI)
    assert (err.value.status_code, err.value.error) == (500, "runner crashed")
    assert [(r.outcome, r.status, r.chunks_sent) for r in sim.requests] == [("error", 200, 3), ("error", 500, 0)]


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault.from_json({"kind": "reset", "color": "red"})


# -- sleep, disconnects, records ------------------------------------------------------------


async def test_sleep_refuses_connections_then_listens_again(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=0.02)
    port = sim.port
    async with ollama.AsyncClient(host=sim.url) as client:
        stream = await client.chat(model="llama3.2", messages=HI, stream=True, options={"num_predict": 100})
        await anext(stream)
        sim.sleep(0.3)
        assert sim.asleep
        with pytest.raises(httpx.TransportError):
            async for _ in stream:
                pass
        with pytest.raises(ConnectionError):
            await client.chat(model="llama3.2", messages=HI)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await sim.wait_for(lambda: not sim.asleep, timeout=2)
        assert (await client.chat(model="llama3.2", messages=HI)).done
    assert sim.port == port and sim.requests[0].outcome == "reset"


async def test_client_disconnect_is_recorded_and_stops_generation(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=0.02)
    async with aiohttp.ClientSession() as http:
        body = {"model": "llama3.2", "messages": HI, "options": {"num_predict": 500}}
        resp = await http.post(sim.url + "/api/chat", json=body)
        await resp.content.readline()
        closed_at = asyncio.get_running_loop().time()
        resp.close()
    record = sim.requests[0]
    await sim.wait_for(lambda: record.ended is not None, timeout=1)
    assert record.outcome == "client_closed" and record.client_closed_at is not None
    assert record.client_closed_at - closed_at < 0.5 and record.chunks_sent < 10


async def test_client_disconnect_during_a_non_streamed_generation(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=0.05)
    async with ollama.AsyncClient(host=sim.url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.chat(model="llama3.2", messages=HI, options={"num_predict": 100})
    record = sim.requests[0]
    await sim.wait_for(lambda: record.ended is not None, timeout=1)
    assert record.outcome == "client_closed" and record.ended is not None and record.ended - record.started < 1


async def test_records_show_overlap_and_details(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=0.01)
    async with ollama.AsyncClient(host=sim.url) as client:
        await asyncio.gather(*(client.chat(model="llama3.2", messages=HI, keep_alive="7m") for _ in range(2)))
        _ = [p async for p in await client.chat(model="llama3.2", messages=HI, stream=True, keep_alive=2700)]
    first, second, third = sim.requests
    assert first.overlaps(second) and not third.overlaps(first)
    assert [r.id for r in sim.requests] == [1, 2, 3]
    assert [r.keep_alive for r in sim.requests] == ["7m", "7m", 2700]
    assert [r.stream for r in sim.requests] == [False, False, True]
    assert third.model == "llama3.2" and third.method == "POST" and third.path == "/api/chat"
    assert third.status == 200 and third.chunks_sent == 9 and third.body is not None
    assert third.headers["Content-Type"] == "application/json" and third.is_generation
    for a, b in itertools.pairwise(sim.requests):
        assert a.started <= b.started


async def test_wait_for_wakes_on_change_and_times_out(sim: Simulator, client: ollama.AsyncClient) -> None:
    waiter = asyncio.ensure_future(sim.wait_for(lambda: "qwen3:latest" in sim.loaded, timeout=2))
    await asyncio.sleep(0)
    assert not waiter.done()
    await client.chat(model="qwen3", messages=[])
    await asyncio.wait_for(waiter, 0.5)
    with pytest.raises(asyncio.TimeoutError):
        await sim.wait_for(lambda: False, timeout=0.05)


async def test_stop_cuts_in_flight_requests_and_is_idempotent(make_sim: MakeSim) -> None:
    sim = await make_sim(token_delay=0.05)
    async with ollama.AsyncClient(host=sim.url) as client:
        pending = asyncio.ensure_future(client.chat(model="llama3.2", messages=HI))
        await sim.wait_for(lambda: bool(sim.requests))
        await sim.stop()
        await sim.stop()
        with pytest.raises(httpx.TransportError):
            await pending
    assert sim.requests[0].outcome == "reset" and sim.requests[0].ended is not None


async def test_host_and_origin_guard(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.url + "/api/tags", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 403 and await resp.read() == b""
    async with http.get(sim.url + "/api/tags", headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
    async with http.get(
        sim.url + "/api/tags", headers={"Host": "localhost:11434", "Origin": "http://localhost:3000"}
    ) as resp:
        assert resp.status == 200


# -- OpenAI layer ---------------------------------------------------------------------------


async def test_openai_chat_completions(sim: Simulator, http: aiohttp.ClientSession, client: ollama.AsyncClient) -> None:
    native = await client.chat(model="llama3.2", messages=HI)
    async with http.post(sim.url + "/v1/chat/completions", json={"model": "llama3.2", "messages": HI}) as resp:
        whole = await resp.json()
    assert whole["object"] == "chat.completion" and re.fullmatch(r"chatcmpl-\d+", whole["id"])
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": native.message.content}
    assert whole["choices"][0]["finish_reason"] == "stop" and whole["usage"]["completion_tokens"] == 8

    body = {"model": "llama3.2", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(sim.url + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        raw = (await resp.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == native.message.content
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 8
    assert len({c["created"] for c in chunks}) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "message"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": HI}, 404, "not_found_error", "model 'nope' not found"),
        (
            "/v1/chat/completions",
            {"model": "llama3.2", "messages": []},
            400,
            "invalid_request_error",
            "[] is too short - 'messages'",
        ),
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "not_found_error", "model 'nope' not found"),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "not_found_error", "model 'nope' not found"),
    ],
)
async def test_openai_errors(
    sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, Any], status: int, kind: str, message: str
) -> None:
    async with http.post(sim.url + path, json=body) as resp:
        assert resp.status == status
        assert await resp.json() == {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def test_openai_completions_models_embeddings(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(sim.url + "/v1/completions", json={"model": "llama3.2", "prompt": "hi", "max_tokens": 3}) as r:
        done = await r.json()
    assert done["object"] == "text_completion" and len(done["choices"][0]["text"].split()) == 3
    assert done["choices"][0]["finish_reason"] == "length"
    body = {"model": "llama3.2", "prompt": "hi", "stream": True}
    async with http.post(sim.url + "/v1/completions", json=body) as r:
        events = [e for e in (await r.read()).decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and len(events) == 8 + 2
    async with http.get(sim.url + "/v1/models") as r:
        models = await r.json()
    assert models["object"] == "list" and {m["id"] for m in models["data"]} >= {"llama3.2:latest"}
    assert models["data"][0]["owned_by"] == "library"
    async with http.get(sim.url + "/v1/models/qwen3") as r:
        assert (await r.json())["id"] == "qwen3:latest"
    async with http.post(sim.url + "/v1/embeddings", json={"model": "nomic-embed-text", "input": ["a", "b"]}) as r:
        emb = await r.json()
    assert emb["object"] == "list" and [d["index"] for d in emb["data"]] == [0, 1]
    assert [r.kind for r in sim.requests] == ["generate", "generate", "embed"]
    assert [r.is_generation for r in sim.requests] == [True, True, False]


# -- control endpoints and CLI --------------------------------------------------------------


async def test_control_endpoints(sim: Simulator, http: aiohttp.ClientSession, client: ollama.AsyncClient) -> None:
    async with http.post(sim.url + "/_sim/config", json={"default_tokens": 2, "token_delay": 0}) as r:
        assert (await r.json())["default_tokens"] == 2
    async with http.post(sim.url + "/_sim/models", json={"add": ["gemma3"], "remove": ["qwen3"]}) as r:
        assert set((await r.json())["models"]) == {"gemma3:latest", "llama3.2:latest", "nomic-embed-text:latest"}
    async with http.post(sim.url + "/_sim/fault", json={"kind": "status", "status": 502, "message": "bad"}) as r:
        assert r.status == 200
    async with http.post(sim.url + "/_sim/fault", json={"kind": "nope"}) as r:
        assert r.status == 400
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="gemma3", messages=HI)
    assert err.value.status_code == 502
    assert (await client.chat(model="gemma3", messages=HI)).eval_count == 2
    async with http.get(sim.url + "/_sim/requests") as r:
        records = (await r.json())["requests"]
    assert [(x["model"], x["outcome"], x["status"]) for x in records] == [
        ("gemma3", "error", 502),
        ("gemma3", "done", 200),
    ]
    async with http.get(sim.url + "/_sim/loaded") as r:
        assert list((await r.json())["loaded"]) == ["gemma3:latest"]
    async with http.post(sim.url + "/_sim/sleep", json={"seconds": 0.2}) as r:
        assert (await r.json()) == {"asleep": 0.2}
    assert sim.asleep
    await sim.wait_for(lambda: not sim.asleep, timeout=2)


async def test_cli_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "foreman.simulator",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        "3",
        "--models",
        "tiny",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    match = re.fullmatch(r"simulated ollama listening on (http://127\.0\.0\.1:\d+)\n", line)
    assert match
    async with ollama.AsyncClient(host=match.group(1)) as client:
        assert (await client.generate(model="tiny", prompt="x")).eval_count == 3
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 5) == 0


def test_cli_rejects_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["--listen", "nonsense"])
    assert "HOST:PORT" in capsys.readouterr().err


async def test_long_stream_is_fast_and_complete(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "prompt": "go", "options": {"num_predict": 5000}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    count = 0
    async with http.post(sim.url + "/api/generate", json=body) as resp:
        async for _ in resp.content:
            count += 1
    assert count == 5001 and sim.requests[0].chunks_sent == 5001
    assert loop.time() - started < 5


def test_expires_at_is_local_time_with_offset() -> None:
    from foreman.simulator.wire import local_time

    stamp = local_time(1_700_000_000.5)
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() == 1_700_000_000.5
    assert re.search(r"(Z|[+-]\d\d:\d\d)$", stamp)
