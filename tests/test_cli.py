"""The operator's CLI, run as a real subprocess against a running foreman."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp

from foreman.server import Daemon
from foreman.simulator import Fault, Simulator
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


async def test_jobs_watch_exits_by_the_jobs_end_and_prints_ndjson_with_json(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.03
    async with http.post(
        foreman.url + "/jobs", json={"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 20}}
    ) as resp:
        job_id = (await resp.json())["job_id"]
    code, out, err = await cli("jobs", "watch", job_id, "--json", "--url", foreman.url)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    transitions = [line for line in lines if line["event"] == "transition"]
    assert [t["data"]["state"] for t in transitions] == ["queued", "loading", "working", "done"]
    history = await foreman.store.outbox.events(job_id)
    assert [t["id"] for t in transitions] == [e["event_id"] for e in history]
    assert all(t["id"] == t["data"]["event_id"] for t in transitions)
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress and all(p["id"] is None and p["data"]["state"] == "working" for p in progress)

    code, out, _ = await cli("jobs", "watch", job_id, "--url", foreman.url)  # ended: its history, exit 0
    assert code == 0
    assert out.splitlines()[0] == f"job {job_id}  llama3.2:latest"
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["queued", "loading", "working", "done"]
    assert re.fullmatch(r"\S+  done       20 tokens  [\d.]+ tokens/s  [\d.]+s", out.splitlines()[-1]), out

    sim.inject(Fault("status", status=500, message="simulated failure"))
    async with http.post(foreman.url + "/jobs", json={"model": "llama3.2", "messages": HELLO}) as resp:
        failed = (await resp.json())["job_id"]
    code, out, _ = await cli("jobs", "watch", failed, "--url", foreman.url)
    assert code == 1 and "failed     simulated failure" in out

    code, _, err = await cli("jobs", "watch", "01NOPE", "--url", foreman.url)
    assert code == 1 and "404 job 01NOPE not found" in err
    code, _, err = await cli("jobs", "watch", job_id, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "did not answer" in err


async def test_jobs_watch_renders_a_queued_jobs_position_and_progress_then_a_cancel_exits_1(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.05
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 400}}
    async with http.post(foreman.url + "/jobs", json=body) as resp:
        running = (await resp.json())["job_id"]
    async with http.post(foreman.url + "/jobs", json={**body, "model": "qwen3"}) as resp:
        queued = (await resp.json())["job_id"]
    watching = [asyncio.ensure_future(cli("jobs", "watch", job, "--url", foreman.url)) for job in (running, queued)]
    await sim.wait_for(lambda: any(r.kind == "chat" and r.chunks_sent > 10 for r in sim.requests))
    for _ in range(100):  # both watchers connected: two readers of job feeds
        if foreman.feed.listeners == 2:
            break
        await asyncio.sleep(0.05)
    for job in (queued, running):
        async with http.delete(f"{foreman.url}/jobs/{job}") as resp:
            assert resp.status == 200
    (code_r, out_r, _), (code_q, out_q, _) = await asyncio.gather(*watching)
    assert code_r == 1 and code_q == 1
    assert "queued     position 1" in out_q and "cancelled  cancelled through the job API" in out_q
    assert re.search(r"\d+ tokens  [\d.]+ tokens/s  [\d.]+s", out_r), out_r


async def test_jobs_submit_wait_follows_the_feed_and_exits_by_the_end(
    foreman: Daemon, sim: Simulator, tmp_path: Path
) -> None:
    payload = tmp_path / "job.json"
    payload.write_text(json.dumps({"model": "llama3.2", "messages": HELLO}))
    code, out, _ = await cli("jobs", "submit", str(payload), "--wait", "--url", foreman.url)  # no limit
    assert code == 0 and json.loads(out)["state"] == "done"
    sim.inject(Fault("status", status=500, message="simulated failure"))
    code, out, _ = await cli("jobs", "submit", str(payload), "--url", foreman.url, "--wait", "10")
    assert code == 1 and json.loads(out)["error"] == "simulated failure"
    sim.token_delay = 0.05
    payload.write_text(json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 400}}))
    code, out, _ = await cli("jobs", "submit", str(payload), "--url", foreman.url, "--wait", "0.5")
    job = json.loads(out)
    assert code == 1 and job["state"] == "working"  # not ended in time: shown as it stands
    async with aiohttp.ClientSession() as http, http.delete(f"{foreman.url}/jobs/{job['job_id']}"):
        pass


async def test_status_against_something_that_is_not_foreman_exits_2(sim: Simulator) -> None:
    code, out, _ = await cli("status", "--url", sim.url)  # answers, but /healthz is a 404 page
    assert code == 2 and "UNREACHABLE" in out


def test_the_operator_cli_imports_neither_tornado_nor_aiohttp() -> None:
    """`python -m foreman status` prints a table: no event loop, no HTTP framework behind it."""
    code = (
        "import sys\n"
        "from foreman.cli import main\n"
        "code = main(['status', '--url', 'http://127.0.0.1:9'])\n"
        "main(['jobs', 'watch', '01NOPE', '--url', 'http://127.0.0.1:9'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tornado', 'aiohttp'))\n"
        "print('EXIT', code, 'HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "EXIT 2 HEAVY []" in done.stdout, done.stdout + done.stderr
