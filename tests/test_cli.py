"""The operator's CLI, run as a real subprocess against a running foreman."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import ROOT, Receiver, StartForeman, free_port

HELLO = [{"role": "user", "content": "hello there"}]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "foreman",
        *args,
        cwd=ROOT,
        env={**environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_healthy_with_the_human_view_and_json(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(foreman.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False}):
        pass
    code, out, _ = await cli("status", "--url", foreman.url)
    assert code == 0, out
    assert out.startswith(f"foreman {foreman.url}  ok")
    assert "llama3.2:latest" in out and "installed  3 models" in out and "last jobs" in out
    assert "by reason: model 1, options 0, evicted 0; time spent loading" in out
    code, out, _ = await cli("status", "--json", FOREMAN_URL=foreman.url)  # the URL from the environment
    report = json.loads(out)
    assert code == 0 and report["health"]["degraded"] is False and report["last_jobs"][0]["state"] == "done"
    assert {m["model"] for m in report["resident"]} >= {"llama3.2:latest"}


async def test_status_degraded_and_unreachable(start_foreman: StartForeman, sim: Simulator) -> None:
    foreman = await start_foreman(token="s3cret")
    await foreman.poller.poll()
    sim.sleep(5.0)
    await foreman.poller.poll()
    code, out, _ = await cli("status", "--url", foreman.url, FOREMAN_TOKEN="s3cret")
    assert code == 1 and "DEGRADED" in out and "unreachable" in out
    code, out, _ = await cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "UNREACHABLE" in out
    code, out, _ = await cli("status", "--json", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and json.loads(out)["reachable"] is False


async def test_status_shows_a_store_that_takes_no_writes(start_foreman: StartForeman, db_path: str) -> None:
    foreman = await start_foreman()
    os.unlink(db_path)
    foreman.store.db.health.check_file()  # what the daemon does every poll_interval
    code, out, _ = await cli("status", "--url", foreman.url)
    assert code == 1, out
    assert out.startswith(f"foreman {foreman.url}  UNHEALTHY")
    assert "storage    refusing work: the database file" in out


async def test_jobs_submit_show_list_cancel(foreman: Daemon, sim: Simulator, tmp_path: Path) -> None:
    payload = tmp_path / "job.json"
    payload.write_text(json.dumps({"model": "llama3.2", "messages": HELLO}))
    code, out, _ = await cli("jobs", "submit", str(payload), "--url", foreman.url, "--wait", "10")
    job = json.loads(out)
    assert code == 0 and job["state"] == "done" and job["result"]["message"]["content"]
    code, out, _ = await cli("jobs", "show", job["job_id"], "--url", foreman.url)
    assert code == 0 and json.loads(out)["job_id"] == job["job_id"]
    code, out, _ = await cli("jobs", "list", "--url", foreman.url)
    assert code == 0 and job["job_id"] in out and "done" in out
    sim.token_delay = 0.05
    payload.write_text(json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 300}}))
    code, out, _ = await cli("jobs", "submit", str(payload), "--url", foreman.url)
    running = out.strip()
    await sim.wait_for(lambda: len([r for r in sim.requests if r.kind == "chat"]) >= 2)
    code, out, _ = await cli("jobs", "cancel", running, "--url", foreman.url)
    assert code == 0 and out.strip() == f"{running}  cancelled"
    code, _, err = await cli("jobs", "cancel", running, "--url", foreman.url)
    assert code == 1 and "409" in err


async def test_webhook_verify_checks_a_saved_delivery(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    foreman = await start_foreman(webhook_secret=SECRET)
    async with http.post(
        foreman.url + "/jobs", json={"model": "llama3.2", "messages": HELLO, "state_webhook_url": receiver.url}
    ):
        pass
    await receiver.wait_for(lambda: len(receiver.deliveries) >= 1)
    delivery = receiver.deliveries[0]
    saved = tmp_path / "delivery.json"
    saved.write_text(json.dumps({"headers": delivery["headers"], "body": delivery["body"].decode()}))
    code, out, _ = await cli("webhook", "verify", str(saved), "--secret", SECRET)
    assert code == 0 and out.startswith("valid")
    code, out, _ = await cli("webhook", "verify", str(saved), FOREMAN_WEBHOOK_SECRET="whsec_" + "A" * 32)
    assert code == 1 and out.count("INVALID") == 2
    tampered = tmp_path / "tampered.json"
    tampered.write_text(
        json.dumps({"headers": delivery["headers"], "body": delivery["body"].decode().replace("queued", "done")})
    )
    code, out, _ = await cli("webhook", "verify", str(tampered), "--secret", SECRET)
    assert code == 1 and "INVALID" in out


async def test_status_against_something_that_is_not_foreman_exits_2(sim: Simulator) -> None:
    code, out, _ = await cli("status", "--url", sim.url)  # answers, but /healthz is a 404 page
    assert code == 2 and "UNREACHABLE" in out


def test_the_operator_cli_imports_neither_tornado_nor_aiohttp() -> None:
    """`python -m foreman status` prints a table: no event loop, no HTTP framework behind it."""
    code = (
        "import sys\n"
        "from foreman.cli import main\n"
        "code = main(['status', '--url', 'http://127.0.0.1:9'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tornado', 'aiohttp'))\n"
        "print('EXIT', code, 'HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "EXIT 2 HEAVY []" in done.stdout, done.stdout + done.stderr
