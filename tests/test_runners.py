"""Drain by runner, max_wait, and what each job cost (docs/adr/0029): against the simulated
target and a real foreman."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp

from foreman.runner import runner_key, runner_options
from foreman.simulator import Simulator
from tests.conftest import StartForeman

HELLO = [{"role": "user", "content": "hello there"}]


def body(model: str = "llama3.2", num_ctx: int | None = None, **options: Any) -> dict[str, Any]:
    opts: dict[str, Any] = dict(options)
    if num_ctx is not None:
        opts["num_ctx"] = num_ctx
    return {"model": model, "messages": HELLO, "options": opts}


def started_at(j: dict[str, Any]) -> float:
    created = datetime.fromisoformat(j["created_at"].replace("Z", "+00:00")).timestamp()
    return float(created + j["timings"]["queued_s"])


async def submit(http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> str:
    async with http.post(url + "/jobs", json=payload) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def job(http: aiohttp.ClientSession, url: str, job_id: str, wait: float = 15) -> dict[str, Any]:
    async with http.get(f"{url}/jobs/{job_id}?wait={wait}") as resp:
        return dict(await resp.json())


def test_the_runner_key_reads_the_options_ollama_compares() -> None:
    assert runner_key("a:latest", runner_options({"options": {"temperature": 0.1}})) == "a:latest"
    assert runner_options({"options": {"num_ctx": 8192.0, "num_gpu": -1}, "shift": False}) == {
        "num_ctx": 8192,
        "shift": False,
    }
    key = runner_key("a:latest", {"num_ctx": 8192, "num_batch": 512})
    assert key == "a:latest num_batch=512 num_ctx=8192"


async def test_jobs_run_grouped_by_runner_with_one_reload(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    sim.token_delay = 0.01
    first = await submit(http, foreman.url, {**body(), "options": {"num_predict": 60}})
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))  # A (defaults) runs
    ids = [
        await submit(http, foreman.url, payload) for payload in (body(num_ctx=8192), body(), body(num_ctx=8192), body())
    ]
    jobs = [await job(http, foreman.url, i) for i in [first, *ids]]
    assert all(j["state"] == "done" for j in jobs)
    by_start = sorted(jobs[1:], key=lambda j: started_at(j))
    runs = [j["job_id"] for j in by_start]
    assert runs == [ids[1], ids[3], ids[0], ids[2]]  # A, A, A(8192), A(8192)
    swaps = {j["job_id"]: j["swap"] for j in jobs}
    assert swaps[ids[1]] is None and swaps[ids[3]] is None and swaps[ids[2]] is None
    assert swaps[ids[0]] is not None and swaps[ids[0]]["reason"] == "options"
    assert swaps[ids[0]]["from"] == "llama3.2:latest"
    assert jobs[2]["ran_after"] == 0 and jobs[1]["ran_after"] == 2  # A(8192) waited for two A jobs
    chats = [(r.body or {}).get("options", {}).get("num_ctx") for r in sim.requests if r.kind == "chat"]
    assert chats == [None, None, None, 8192, 8192]  # what the target saw, in order
    loads = [r for r in sim.requests if r.kind == "load" and r.body and r.body.get("options")]
    assert [r.body["options"] for r in loads if r.body] == [{"num_ctx": 8192}]  # the one reload, as a load
    async with http.get(foreman.url + "/metrics") as resp:
        assert 'foreman_swaps_total{reason="options"} 1.0' in await resp.text()
    # The simulated target's log agrees: one reload for the options, none for the rest.
    assert [r.load_reason for r in sim.requests if r.load_reason] == ["cold", "options"]
    async with http.get(sim.url + "/api/ps") as resp:
        (loaded,) = (await resp.json())["models"]
    assert loaded["model"] == "llama3.2:latest" and loaded["context_length"] == 8192


async def test_the_simulated_target_reloads_on_other_runner_options_only(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async def chat(**options: Any) -> None:
        payload = {"model": "llama3.2", "messages": HELLO, "stream": False, "options": options}
        async with http.post(sim.url + "/api/chat", json=payload) as resp:
            assert resp.status == 200

    await chat()
    await chat(num_ctx=4096)  # the default, said out loud: no change, as in Ollama
    await chat(temperature=0.2)  # a sampling option: never a reload
    await chat(num_ctx=8192)
    await chat(num_ctx=8192, num_gpu=-1)
    assert [r.load_reason for r in sim.requests] == ["cold", None, None, "options", None]


async def test_a_swap_shows_its_reason_load_time_and_timings_that_add_up(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    sim.load_delay = 0.3
    swapped = await job(http, foreman.url, await submit(http, foreman.url, body("qwen3")))
    again = await job(http, foreman.url, await submit(http, foreman.url, body("qwen3")))
    assert swapped["swap"]["reason"] == "model" and swapped["swap"]["from"] is None
    assert 0.25 < swapped["swap"]["load_duration_s"] < 1.0
    assert again["swap"] is None
    for done in (swapped, again):
        t = done["timings"]
        assert abs(t["queued_s"] + t["loading_s"] + t["working_s"] - t["total_s"]) < 0.005
        assert done["eval_count"] and done["tokens_per_s"] and done["tokens_per_s"] > 0
    assert swapped["timings"]["loading_s"] >= 0.25
    async with http.get(foreman.url + "/healthz") as resp:
        health = await resp.json()
    assert health["swaps_by_reason"]["model"] == 1 and 0 < health["loading_share"] < 1


async def test_max_wait_sends_a_starved_job_ahead_and_says_so(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_wait="1s")
    sim.token_delay = 0.01
    long_a = {**body(), "options": {"num_predict": 30}}  # about 0.3 s each
    await submit(http, foreman.url, long_a)
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    for _ in range(3):
        await submit(http, foreman.url, long_a)
    b = await submit(http, foreman.url, body("qwen3"))
    submitted = time.monotonic()
    stop = asyncio.Event()

    async def keep_a_full() -> None:
        while not stop.is_set():
            await submit(http, foreman.url, long_a)
            await asyncio.sleep(0.2)

    feeder = asyncio.ensure_future(keep_a_full())
    try:
        await sim.wait_for(lambda: any(r.kind == "chat" and r.model == "qwen3" for r in sim.requests), 10)
        waited = time.monotonic() - submitted
    finally:
        stop.set()
        await feeder
    assert waited < 1.0 + 0.3 + 1.0  # max_wait, the running job, some slack
    done = await job(http, foreman.url, b, wait=30)
    assert done["state"] == "done" and done["jumped"] is True


async def test_an_explicit_default_context_runs_on_the_resident_runner(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    first = await job(http, foreman.url, await submit(http, foreman.url, body()))
    assert first["state"] == "done"
    await foreman.poller.poll()  # /api/ps now says the resident runner has 4096 of context
    same = await job(http, foreman.url, await submit(http, foreman.url, body(num_ctx=4096)))
    other = await job(http, foreman.url, await submit(http, foreman.url, body(num_ctx=8192)))
    assert same["swap"] is None  # as Ollama: asking for the context it has is no change
    assert other["swap"] is not None and other["swap"]["reason"] == "options"
    assert [r.load_reason for r in sim.requests if r.load_reason] == ["cold", "options"]
