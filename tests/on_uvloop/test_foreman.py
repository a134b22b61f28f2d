"""A real foreman daemon and the simulated target, both on a uvloop event loop."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import uvloop

from foreman.simulator import Simulator
from tests.conftest import StartForeman, read_db

HELLO = [{"role": "user", "content": "hello there"}]


async def test_a_streamed_chat_through_foreman_on_uvloop(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    daemon = await start_foreman()
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 40}}

    async def lines(url: str) -> tuple[list[dict[str, object]], str]:
        async with http.post(url + "/api/chat", json=body) as resp:
            assert resp.status == 200
            return [json.loads(line) async for line in resp.content], resp.headers.get("X-Foreman-Job-Id", "")

    direct, _ = await lines(sim.url)
    relayed, job_id = await lines(daemon.url)  # loads the model first, then streams
    again, _ = await lines(daemon.url)  # on a kept-alive connection to the target
    for answer in (relayed, again):
        assert [line["message"] for line in answer] == [line["message"] for line in direct]
        assert answer[-1]["done"] and answer[-1]["done_reason"] == "length" and answer[-1]["eval_count"] == 40
    assert read_db(db_path, "SELECT state FROM jobs WHERE id = ?", (job_id,)) == [("done",)]
