"""The README's promises to a newcomer, run as written (ports moved to free ones)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import aiohttp

from foreman.signing import signature_headers
from tests.conftest import ROOT, StartForeman, free_port

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_the_test_command_is_what_ci_runs() -> None:
    command = next(b for b in blocks("sh") if "pip install -e '.[test]'" in b).strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


async def test_the_try_out_answers_a_chat(tmp_path: Path) -> None:
    """The second "Run it" command and the Python snippet after it, with the ports moved."""
    tryout = next(b for b in blocks("sh") if "foreman simulate" in b).strip()
    simulate = re.search(r"\(python -m foreman simulate ([^&)]*)&\)", tryout)
    serve = re.search(r"&& (foreman serve .*)$", tryout)
    assert simulate and serve, tryout
    sim_port, foreman_port = free_port(), free_port()
    sim_args = simulate.group(1).replace("127.0.0.1:11434", f"127.0.0.1:{sim_port}").split()
    serve_args = serve.group(1).replace("127.0.0.1:11434", f"127.0.0.1:{sim_port}").split()[1:]
    assert serve_args[:1] == ["serve"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")},
        "FOREMAN_LISTEN": f"127.0.0.1:{foreman_port}",
        "FOREMAN_DB_PATH": str(tmp_path / "f.db"),
    }
    bin_dir = Path(sys.executable).parent
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "foreman", "simulate", *sim_args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    foreman = await asyncio.create_subprocess_exec(
        str(bin_dir / "foreman"), *serve_args, cwd=tmp_path, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        snippet = next(b for b in blocks("python") if "ollama.Client" in b and "print(" in b)
        assert 'host="http://127.0.0.1:8080"' in snippet  # the README's default listen address
        snippet = snippet.replace("127.0.0.1:8080", f"127.0.0.1:{foreman_port}")
        wait = textwrap.dedent(f"""
            import socket, time
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", {foreman_port}), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            """)
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            wait + snippet,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, err.decode()
        assert len(out.decode().split()) >= 4  # the simulated model's deterministic answer
    finally:
        for proc in (foreman, sim):
            proc.terminate()
            await proc.wait()


async def test_the_client_snippet_submits_waits_and_reads_the_text(start_foreman: StartForeman) -> None:
    """ "Python client": the three lines, run as written (the URL moved to this test's foreman)."""
    foreman = await start_foreman()
    snippet = next(b for b in blocks("python") if "from foreman.client import Foreman" in b)
    assert 'Foreman("http://127.0.0.1:8080"' in snippet
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        snippet.replace("http://127.0.0.1:8080", foreman.url),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, err.decode()
    state, *words = out.decode().split()
    assert state == "done" and len(words) >= 3


async def test_the_receiver_snippet_verifies_dedupes_and_refuses(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    """ "Webhooks": the aiohttp receiver, run as written (its secret and port moved), receiving a
    real foreman's signed deliveries, a redelivery and a forgery."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    snippet = next(b for b in blocks("python") if "from foreman.webhooks import" in b and "run_app" in b)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 16
    port = free_port()
    code = snippet.replace('"whsec_..."', repr(secret)).replace("port=9000", f"port={port}")
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert receiver.stdout is not None
    stdout = receiver.stdout

    async def handled() -> list[str]:
        """The next event the receiver handled (its print), past aiohttp's own banner."""
        while True:
            words = (await asyncio.wait_for(stdout.readline(), 10)).decode().split()
            if words[:1] != ["========"] and words[:1] != ["(Press"]:
                return words

    try:
        url = f"http://127.0.0.1:{port}/hook"
        for _ in range(200):
            try:
                async with http.post(url, data=b"{}") as resp:
                    assert resp.status == 401  # unsigned
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        foreman = await start_foreman(webhook_secret=secret)
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "state_webhook_url": url}
        async with http.post(foreman.url + "/jobs", json=body) as resp:
            job_id = (await resp.json())["job_id"]
        lines = [await handled() for _ in range(4)]
        assert lines == [[job_id, state] for state in ("queued", "loading", "working", "done")]
        # A redelivery of the `done` event (signed afresh, as foreman's retries are): answered, not handled.
        (payload,) = [e["payload"] for e in await foreman.store.outbox.events(job_id) if e["state"] == "done"]
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signature_headers(secret, payload["event_id"], int(time.time()), raw)
        async with http.post(url, data=raw, headers=headers) as resp:
            assert resp.status == 200
        async with http.post(url, data=raw.replace(b'"done"', b'"failed"'), headers=headers) as resp:
            assert resp.status == 401  # tampered
        marker = {**payload, "event_id": "01MARKER", "state": "marker"}
        raw = json.dumps(marker).encode()
        async with http.post(url, data=raw, headers=signature_headers(secret, "01MARKER", int(time.time()), raw)):
            pass
        assert await handled() == [job_id, "marker"]
    finally:
        receiver.terminate()
        await receiver.wait()
