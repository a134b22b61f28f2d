"""What a serving foreman loads: only what its configuration and its traffic use (issue 13).

A fresh interpreter starts the daemon in front of the simulated target (run in another
process, so the simulator's own imports are not counted), runs a streamed chat through it,
and lists the heavy modules it holds: neither aiohttp (the webhook transport, loaded at the
first delivery) nor prometheus-client (loaded at the first scrape) nor the simulator.
Then a scrape and a job with a webhook load exactly what they need.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

from foreman.simulator import Simulator
from tests.conftest import ROOT

_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, urllib.request
    from foreman.config import load_settings
    from foreman.server import Daemon

    HEAVY = ("aiohttp", "prometheus_client", "foreman.simulator", "httpx")

    def heavy():
        return sorted({m for m in sys.modules for h in HEAVY if m == h or m.startswith(h + ".")} & set(HEAVY))

    def post(url, body):
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.read()

    async def main(target, db, hook):
        settings = load_settings(environ={
            "FOREMAN_OLLAMA_URL": target, "FOREMAN_LISTEN": "127.0.0.1:0", "FOREMAN_DB_PATH": db,
            "FOREMAN_WEBHOOK_ALLOW": "127.0.0.0/8",
        })
        daemon = await Daemon.start(settings)
        try:
            chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
            await asyncio.to_thread(post, daemon.url + "/api/chat", chat)
            out = {"after_chat": heavy()}
            await asyncio.to_thread(urllib.request.urlopen, daemon.url + "/metrics")
            out["after_scrape"] = heavy()
            job = {**chat, "state_webhook_url": hook}
            job_id = json.loads(await asyncio.to_thread(post, daemon.url + "/jobs", job))["job_id"]
            await daemon.jobs.wait_terminal(job_id, 20)
            for _ in range(200):
                if "aiohttp" in heavy():
                    break
                await asyncio.sleep(0.05)
            out["after_webhook"] = heavy()
            print(json.dumps(out))
        finally:
            await daemon.stop()

    asyncio.run(main(*sys.argv[1:4]))
    """
)


async def test_a_serving_foreman_loads_only_what_its_traffic_uses(sim: Simulator, tmp_path: Path) -> None:
    hook = "http://127.0.0.1:9/hook"  # nobody listens: the attempt fails, but it is made
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", _SCRIPT, sim.url, str(tmp_path / "rest.db"), hook),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    loaded = json.loads(out.decode().strip().splitlines()[-1])
    assert loaded["after_chat"] == [], loaded
    assert loaded["after_scrape"] == ["prometheus_client"], loaded
    assert loaded["after_webhook"] == ["aiohttp", "prometheus_client"], loaded
