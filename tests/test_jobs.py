"""The job API: submit, inspect, list, cancel, artifacts, idempotency, TTL, one foreman per database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from typing import Any

import aiohttp

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import ROOT, Receiver, StartForeman, free_port, read_db

HELLO = [{"role": "user", "content": "hello there"}]


async def submit(http: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str) -> str:
    async with http.post(url + "/jobs", json=body, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def get_job(http: aiohttp.ClientSession, url: str, job_id: str, wait: float | None = None) -> dict[str, Any]:
    suffix = "" if wait is None else f"?wait={wait}"
    async with http.get(f"{url}/jobs/{job_id}{suffix}") as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def test_a_job_runs_and_keeps_its_result_and_artifacts(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO, "stream": False})
    job = await get_job(http, foreman.url, job_id, wait=10)
    assert job["state"] == "done" and job["attempt"] == 1 and job["model"] == "llama3.2:latest"
    assert job["endpoint"] == "/api/chat"
    direct = await (
        await http.post(sim.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False})
    ).json()
    assert job["result"]["message"]["content"] == direct["message"]["content"]
    artifacts = {a["name"]: a for a in job["artifacts"]}
    assert artifacts["completion"]["content"] == direct["message"]["content"]
    assert artifacts["response"]["content"]["done"] is True
    async with http.get(foreman.url + artifacts["completion"]["url"]) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert (await resp.text()) == direct["message"]["content"]


async def test_generate_payloads_and_thinking(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    job_id = await submit(http, foreman.url, {"model": "qwen3", "prompt": "think about it", "think": True})
    job = await get_job(http, foreman.url, job_id, wait=10)
    assert job["endpoint"] == "/api/generate" and job["state"] == "done"
    names = {a["name"] for a in job["artifacts"]}
    assert {"completion", "thinking", "response"} <= names


async def test_large_artifacts_come_as_urls_with_the_exact_bytes(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(inline_artifact_max="16")
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 40}}
    job = await get_job(http, foreman.url, await submit(http, foreman.url, body), wait=10)
    completion = next(a for a in job["artifacts"] if a["name"] == "completion")
    assert "content" not in completion and completion["size"] > 16
    assert job["result"] is None  # held once: a large result is not copied into the view
    async with http.get(foreman.url + job["result_url"]) as resp:
        result = await resp.json()
    async with http.get(foreman.url + completion["url"]) as resp:
        data = await resp.read()
    assert data.decode() == result["message"]["content"] and len(data) == completion["size"]


async def test_a_large_result_is_a_url_in_the_done_event_too(
    start_foreman: StartForeman, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(inline_artifact_max="1000")
    small = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 2}, "state_webhook_url": receiver.url}
    large = {**small, "options": {"num_predict": 400}}
    small_id, large_id = await submit(http, foreman.url, small), await submit(http, foreman.url, large)
    await receiver.wait_for(lambda: sum(e["state"] == "done" for e in receiver.accepted()) == 2)
    done = {e["job_id"]: e for e in receiver.accepted() if e["state"] == "done"}
    assert done[small_id]["result"]["done"] is True and "result_url" not in done[small_id]
    assert done[large_id]["result"] is None
    assert done[large_id]["result_url"] == f"/jobs/{large_id}/artifacts/response"
    async with http.get(foreman.url + done[large_id]["result_url"]) as resp:
        assert (await resp.json())["eval_count"] == 400
    small_job = await get_job(http, foreman.url, small_id)
    assert small_job["result"]["done"] is True and "result_url" not in small_job


async def test_submit_validation(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    cases = [
        (b"nope", 400, None),
        (b'{"messages": []}', 400, "model is required"),
        (json.dumps({"model": "ghost", "messages": HELLO}).encode(), 404, "model 'ghost' not found"),
        (json.dumps({"model": "llama3.2", "state_webhook_url": "ftp://x/"}).encode(), 400, None),
        (json.dumps({"model": "llama3.2", "state_webhook_url": "http://169.254.169.254/x"}).encode(), 400, None),
    ]
    for body, status, error in cases:
        async with http.post(foreman.url + "/jobs", data=body) as resp:
            assert resp.status == status, body
            payload = await resp.json()
            assert payload["error"] and (error is None or payload["error"] == error)
    assert read_db(foreman.settings.db_path, "SELECT COUNT(*) FROM jobs") == [(0,)]


async def test_idempotency_key_returns_the_same_job(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    body = {"model": "llama3.2", "messages": HELLO}
    first = await submit(http, foreman.url, body, **{"Idempotency-Key": "order-42"})
    second = await submit(http, foreman.url, body, **{"Idempotency-Key": "order-42"})
    third = await submit(http, foreman.url, body, **{"Idempotency-Key": "order-43"})
    assert first == second != third
    assert read_db(foreman.settings.db_path, "SELECT COUNT(*) FROM jobs") == [(2,)]


async def test_queue_positions_progress_listing_and_paging(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.05
    running = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 40}})
    await sim.wait_for(lambda: any(r.kind == "chat" and r.chunks_sent > 2 for r in sim.requests))
    later = [await submit(http, foreman.url, {"model": m, "messages": HELLO}) for m in ("qwen3", "llama3.2", "qwen3")]
    job = await get_job(http, foreman.url, running)
    assert job["state"] == "working" and job["progress"]["chunks"] >= 2 and job["progress"]["elapsed_s"] > 0
    positions = [(await get_job(http, foreman.url, j))["queue_position"] for j in later]
    assert positions == [2, 1, 3]  # the resident model's job runs first
    async with http.get(foreman.url + "/jobs?limit=2") as resp:
        page = await resp.json()
    assert [j["job_id"] for j in page["jobs"]] == [later[2], later[1]] and page["next"] == later[1]
    async with http.get(f"{foreman.url}/jobs?limit=2&before={page['next']}") as resp:
        rest = await resp.json()
    assert [j["job_id"] for j in rest["jobs"]] == [later[0], running] and rest["next"] is None
    async with http.get(foreman.url + "/jobs?model=qwen3&state=queued") as resp:
        assert {j["job_id"] for j in (await resp.json())["jobs"]} == {later[0], later[2]}
    for job_id in later:
        assert (await get_job(http, foreman.url, job_id, wait=10))["state"] == "done"
    async with http.get(foreman.url + "/jobs/01NOSUCHJOB") as resp:
        assert resp.status == 404 and "not found" in (await resp.json())["error"]


async def test_delete_cancels_queued_and_running_jobs(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.05
    running = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 200}})
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    queued = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    following = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    async with http.delete(f"{foreman.url}/jobs/{queued}") as resp:
        assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    loop = asyncio.get_running_loop()
    asked = loop.time()
    async with http.delete(f"{foreman.url}/jobs/{running}") as resp:
        assert resp.status == 200
        cancelled = await resp.json()
    assert cancelled["state"] == "cancelled" and cancelled["error"]
    first = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: first.client_closed_at is not None, timeout=1.0)  # upstream closed
    assert first.client_closed_at is not None and first.client_closed_at - asked < 1.0
    # The next job starts at once (the cancelled queued one is skipped).
    await sim.wait_for(lambda: len([r for r in sim.requests if r.kind == "chat"]) == 2, timeout=1.0)
    assert (await get_job(http, foreman.url, following, wait=10))["state"] == "done"
    async with http.delete(f"{foreman.url}/jobs/{following}") as resp:
        assert resp.status == 409


async def test_finished_jobs_are_swept_after_their_ttl(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(job_ttl="1s")
    job_id = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    assert (await get_job(http, foreman.url, job_id, wait=10))["state"] == "done"
    db = foreman.settings.db_path
    assert read_db(db, "SELECT COUNT(*) FROM artifacts WHERE job_id = ?", (job_id,))[0][0] > 0
    await asyncio.sleep(1.1)  # let the job age past its TTL
    assert await foreman.sweeper.sweep() == 1
    async with http.get(f"{foreman.url}/jobs/{job_id}") as resp:
        assert resp.status == 404
    for table in ("jobs", "artifacts", "events"):
        column = "id" if table == "jobs" else "job_id"
        assert read_db(db, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (job_id,)) == [(0,)]


async def test_a_second_foreman_on_the_same_database_refuses_to_start(foreman: Daemon, sim: Simulator) -> None:
    args = [
        "--ollama-url",
        sim.url,
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--db-path",
        foreman.settings.db_path,
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "foreman", "serve", *args, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"another foreman" in stderr and b"already using this database" in stderr


async def test_stopping_refuses_new_work_and_requeues_the_running_job(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman()
    sim.token_delay = 0.05
    job_id = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 400}})
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    foreman.jobs.accepting = False  # what stop() does first
    async with http.post(foreman.url + "/jobs", json={"model": "llama3.2", "messages": HELLO}) as resp:
        assert resp.status == 503 and "shutting down" in (await resp.json())["error"]
    await foreman.worker.stop(grace=0.2)  # the job cannot finish in time
    rows = read_db(foreman.settings.db_path, "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,))
    assert rows == [("queued", 1)]
    first = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: first.client_closed_at is not None)


async def test_restart_recovery_keeps_the_poison_job_guard(start_foreman: StartForeman, db_path: str) -> None:
    """An async job found working at start is re-queued with attempt + 1, unless attempts are used up."""
    foreman = await start_foreman()
    await foreman.stop()
    conn = sqlite3.connect(db_path)
    for job_id, attempt in (("01KEEPGOING", 1), ("01POISONJOB", 5)):
        conn.execute(
            "INSERT INTO jobs (id, state, model, model_name, endpoint, kind, sync, stream, body, attempt,"
            " created_at, updated_at) VALUES (?, 'working', 'llama3.2:latest', 'llama3.2', '/api/chat',"
            " 'generate', 0, 1, x'7b7d', ?, 0, 0)",
            (job_id, attempt),
        )
    conn.commit()
    conn.close()
    restarted = await Daemon.start(foreman.settings, run_worker=False)  # the restart
    try:
        rows = dict((r[0], (r[1], r[2])) for r in read_db(db_path, "SELECT id, state, attempt FROM jobs"))
        assert rows["01KEEPGOING"] == ("queued", 2)
        assert rows["01POISONJOB"] == ("failed", 5)
    finally:
        await restarted.stop()
