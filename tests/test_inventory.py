"""The inventory face, model management, the embeddings bypass and the poller's degraded mode."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import ollama
import pytest

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import OllamaFactory, StartForeman

HELLO = [{"role": "user", "content": "hello there"}]


async def test_tags_ps_version_and_show_look_like_the_target(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, ollama_client: OllamaFactory
) -> None:
    for path in ("/api/tags", "/api/version"):
        async with http.get(foreman.url + path) as ours, http.get(sim.url + path) as theirs:
            assert ours.status == theirs.status == 200
            assert await ours.read() == await theirs.read()
            assert ours.headers["Content-Type"] == "application/json; charset=utf-8"
    for path in ("/api/tags", "/api/version"):
        async with http.head(foreman.url + path) as ours, http.head(sim.url + path) as theirs:
            assert ours.status == theirs.status == 200
            assert ours.headers["Content-Length"] == theirs.headers["Content-Length"] != "0"
    client = ollama_client(foreman.url)
    await client.chat(model="llama3.2", messages=HELLO)
    ps = await client.ps()
    assert "llama3.2:latest" in {m.model for m in ps.models}
    shown = await client.show("llama3.2")
    assert shown.modelinfo is not None and "completion" in (shown.capabilities or [])
    with pytest.raises(ollama.ResponseError) as err:
        await client.show("nope")
    assert (err.value.status_code, err.value.error) == (404, "model 'nope' not found")


async def test_model_management_is_refused_by_default(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    for method, path in (
        ("POST", "/api/pull"),
        ("DELETE", "/api/delete"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("POST", "/api/push"),
        ("POST", "/api/blobs/sha256:abc"),
    ):
        async with http.request(method, foreman.url + path, json={"model": "x"}) as resp:
            assert resp.status == 403, path
            assert "allow_model_management" in (await resp.json())["error"]


async def test_model_management_passes_through_and_refreshes_the_inventory(
    start_foreman: StartForeman, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    foreman = await start_foreman(allow_model_management="true")
    client = ollama_client(foreman.url)
    progress = [p.status async for p in await client.pull("phi4:mini", stream=True)]
    assert progress[0] == "pulling manifest" and progress[-1] == "success"
    assert "phi4:mini" in {m.model for m in (await client.list()).models}  # no wait for the next poll
    await client.copy("phi4:mini", "phi4:copy")
    await client.delete("phi4:mini")
    assert {m.model for m in (await client.list()).models} >= {"phi4:copy"} - set()
    assert "phi4:mini" not in {m.model for m in (await client.list()).models}


async def test_a_model_installed_after_start_is_accepted_at_once(
    foreman: Daemon, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    client = ollama_client(foreman.url)
    await client.chat(model="llama3.2", messages=HELLO)  # the inventory is known now
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="mistral", messages=HELLO)
    assert (err.value.status_code, err.value.error) == (404, "model 'mistral' not found")
    sim.add_model("mistral:latest")
    reply = await client.chat(model="Mistral", messages=HELLO)  # case-insensitive, bare name = :latest
    assert reply.message.content


async def test_embeddings_pass_straight_through(
    foreman: Daemon, sim: Simulator, ollama_client: OllamaFactory, http: aiohttp.ClientSession
) -> None:
    client, direct = ollama_client(foreman.url), ollama_client(sim.url)
    ours = await client.embed(model="nomic-embed-text", input=["one", "two"])
    assert ours.embeddings == (await direct.embed(model="nomic-embed-text", input=["one", "two"])).embeddings
    legacy = await client.embeddings(model="nomic-embed-text", prompt="one")
    assert legacy.embedding
    with pytest.raises(ollama.ResponseError) as err:
        await client.embed(model="nope", input="x")
    assert (err.value.status_code, err.value.error) == (404, 'model "nope" not found, try pulling it first')
    async with http.post(foreman.url + "/api/embed", json={"model": "nomic-embed-text", "input": "x"}) as resp:
        assert "X-Foreman-Job-Id" not in resp.headers  # not a job


async def test_embeddings_never_wait_behind_a_generation(
    start_foreman: StartForeman, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    foreman = await start_foreman(embed_model="nomic-embed-text")
    client = ollama_client(foreman.url)
    await client.embed(model="nomic-embed-text", input="warm")
    sim.token_delay = 0.1
    long = asyncio.ensure_future(client.chat(model="llama3.2", messages=HELLO, options={"num_predict": 30}))
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    took = []
    for i in range(5):
        start = time.perf_counter()
        reply = await client.embed(model="nomic-embed-text", input=f"text {i}")
        took.append(time.perf_counter() - start)
        assert reply.embeddings
    generation = next(r for r in sim.requests if r.kind == "chat")
    assert generation.ended is None, f"the generation should still be running; embeds took {took}"
    assert max(took) < 0.25, took
    await long


async def test_the_embedder_stays_resident_across_worker_swaps(
    start_foreman: StartForeman, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    sim.residency.max_loaded = 2  # one slot for the embedder, one for the rotating worker model
    foreman = await start_foreman(embed_model="nomic-embed-text")
    await sim.wait_for(lambda: "nomic-embed-text:latest" in sim.loaded)
    client = ollama_client(foreman.url)
    for i in range(20):
        model = ("llama3.2", "qwen3")[i % 2]
        await client.generate(model=model, prompt=f"turn {i}", think=False)
        assert "nomic-embed-text:latest" in sim.loaded, f"embedder evicted at swap {i}"
        assert model + ":latest" in sim.loaded
    assert foreman.worker.swaps == 20
    ps = await ollama_client(sim.url).ps()
    assert "nomic-embed-text:latest" in {m.model for m in ps.models}
    embed_loads = [r for r in sim.requests if r.kind == "embed" and r.loaded_model]
    assert len(embed_loads) == 1  # warmed once, never reloaded


async def test_sleeping_target_degrades_serves_last_known_and_recovers(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(poll_interval="500ms")
    poller = foreman.poller
    await poller.poll()
    async with http.get(foreman.url + "/api/tags") as resp:
        tags_before = await resp.read()
    sim.sleep(3.0)
    await asyncio.wait_for(poller.wait_down(), 1.0)  # within one poll interval
    async with http.get(foreman.url + "/healthz") as resp:
        health = await resp.json()
    assert health["degraded"] is True and health["last_error"]
    async with http.get(foreman.url + "/api/tags") as resp:
        assert resp.status == 200 and await resp.read() == tags_before
    async with http.get(foreman.url + "/api/ps") as resp:
        assert resp.status == 200 and "models" in await resp.json()
    body = {"model": "llama3.2", "messages": HELLO, "stream": False}
    async with http.post(foreman.url + "/api/chat", json=body) as resp:  # waits for the target
        assert resp.status == 200
        assert (await resp.json())["done"] is True
    assert not poller.degraded
    async with http.get(foreman.url + "/healthz") as resp:
        assert (await resp.json())["degraded"] is False
