"""Drain-by-model: the resident model's queue empties before a swap is paid."""

from __future__ import annotations

import asyncio

import ollama

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import OllamaFactory, StartForeman, read_db


async def until_queued(foreman: Daemon, count: int) -> None:
    """Rows in the database have no event to wait on: look every 10 ms, for up to 5 s."""
    for _ in range(500):
        if (await foreman.store.jobs.count_by_state())["queued"] == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} queued jobs")


async def test_queued_jobs_for_the_resident_model_run_first(
    foreman: Daemon, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    a, b = "llama3.2", "qwen3"
    client = ollama_client(foreman.url)
    await client.generate(model=a, prompt="warm up")  # A is resident
    swaps_before = foreman.worker.swaps
    sim.token_delay = 0.02
    running = asyncio.ensure_future(client.generate(model=a, prompt="A0", options={"num_predict": 40}))
    await sim.wait_for(lambda: any(r.body and r.body.get("prompt") == "A0" for r in sim.requests))
    waiting = []
    for n, (model, prompt) in enumerate([(b, "B1"), (a, "A2"), (b, "B3"), (a, "A4")], start=1):
        waiting.append(asyncio.ensure_future(client.generate(model=model, prompt=prompt, think=False)))
        await until_queued(foreman, n)  # queued in this order
    await running
    await asyncio.gather(*waiting)
    order = [r.body["prompt"] for r in sim.requests if r.kind == "generate" and r.body]
    assert order[-4:] == ["A2", "A4", "B1", "B3"], order
    assert foreman.worker.swaps - swaps_before == 1
    loads = [r.model for r in sim.requests if r.loaded_model and r.model and "embed" not in r.model]
    assert loads == [a, b]  # the warm-up's load of A, then B once


async def test_a_model_evicted_behind_foremans_back_is_not_drained_first(
    start_foreman: StartForeman, sim: Simulator, ollama_client: OllamaFactory
) -> None:
    foreman = await start_foreman(poll_interval="200ms")
    client = ollama_client(foreman.url)
    await client.generate(model="llama3.2", prompt="x")
    assert foreman.worker.resident == "llama3.2:latest"
    direct = ollama_client(sim.url)
    await direct.generate(model="llama3.2", keep_alive=0)  # someone unloads it
    await direct.generate(model="qwen3", prompt="y", think=False)  # and loads another
    await sim.wait_for(lambda: "llama3.2:latest" not in sim.loaded)
    poller = foreman.poller
    await poller.poll()
    assert foreman.worker.residency.check() == "qwen3:latest"


async def test_an_unknown_model_is_refused_before_it_is_queued(foreman: Daemon, ollama_client: OllamaFactory) -> None:
    client = ollama_client(foreman.url)
    for call in (
        client.generate(model="ghost", prompt="x"),
        client.chat(model="ghost:7b", messages=[{"role": "user", "content": "x"}]),
    ):
        try:
            await call
        except ollama.ResponseError as exc:
            assert exc.status_code == 404 and "not found" in exc.error
        else:
            raise AssertionError("an unknown model was accepted")
    assert read_db(foreman.settings.db_path, "SELECT COUNT(*) FROM jobs") == [(0,)]
