"""Smaller holes of issue 9, each against real parts: a running foreman and its simulated target,
real receivers and raw servers on loopback, a real SQLite file, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest

from foreman.config import load_settings
from foreman.errors import ConfigError
from foreman.server import Daemon
from foreman.simulator import Simulator
from foreman.store.schema import MIGRATIONS, SCHEMA_VERSION
from foreman.target import TargetBroken
from foreman.webhook_client import WebhookClient
from tests.conftest import Receiver, StartForeman, free_port, read_db
from tests.test_cli import cli
from tests.test_target_client import CHAT, RawServer, client

HELLO = [{"role": "user", "content": "hello there"}]
MAX_HEAD = 64 * 1024  # the cap on the target's answer head (foreman/http1.py)
JOB_BODY = {"model": "llama3.2", "messages": HELLO}


async def _post_job(http: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    async with http.post(url + "/jobs", json=body, headers=headers) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        return resp.status, await resp.json()


# --- webhooks never reach foreman itself or its target ---------------------------------------------


async def test_a_webhook_to_foreman_or_its_target_is_refused_at_submit(
    start_foreman: StartForeman, sim: Simulator, receiver: Receiver, http: aiohttp.ClientSession, db_path: str
) -> None:
    foreman = await start_foreman(webhook_allow="127.0.0.0/8, ::1/128, localhost")  # allowed, and still refused
    for url, why in (
        (foreman.url + "/jobs", "foreman's own address"),
        (f"http://localhost:{foreman.port}/api/pull", "foreman's own address"),
        (sim.url + "/api/chat", "the target's address"),
        (f"http://localhost:{sim.port}/api/pull", "the target's address"),
    ):
        status, body = await _post_job(http, foreman.url, {**JOB_BODY, "state_webhook_url": url})
        assert status == 400 and body["error"].startswith("state_webhook_url refused") and why in body["error"], url
    assert read_db(db_path, "SELECT count(*) FROM jobs") == [(0,)]
    status, _ = await _post_job(http, foreman.url, {**JOB_BODY, "state_webhook_url": receiver.url})
    assert status == 202  # another port of the same machine is fine
    # Only foreman's own port is refused: 127.0.0.2 is not where a 127.0.0.1 foreman listens.
    status, _ = await _post_job(
        http, foreman.url, {**JOB_BODY, "state_webhook_url": f"http://127.0.0.2:{foreman.port}/hook"}
    )
    assert status == 202


async def test_listening_on_every_address_every_local_address_is_foreman(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(listen="0.0.0.0:0")
    url = f"http://127.0.0.1:{foreman.port}"
    status, body = await _post_job(
        http, url, {**JOB_BODY, "state_webhook_url": f"http://127.0.0.2:{foreman.port}/hook"}
    )
    assert status == 400 and "foreman's own address" in body["error"]


async def test_delivery_refuses_foreman_and_its_target_too(receiver: Receiver) -> None:
    """At delivery as well (an event stored before a move of foreman or of the target), for an
    IP literal and for a name that resolves there; nothing reaches the receiver."""
    body = json.dumps({"event_id": "01EVENT"}).encode()
    here = [("127.0.0.1", receiver.port), ("::1", receiver.port)]  # listening on localhost
    refusing = [
        (WebhookClient(allow=None, secret=None, own=here), "foreman's own address"),
        (WebhookClient(allow=None, secret=None, target_url=f"http://localhost:{receiver.port}"), "target's address"),
    ]
    try:
        for hooks, why in refusing:
            for url in (receiver.url, f"http://localhost:{receiver.port}/hook"):
                result = await hooks.deliver(url, "01EVENT", body)
                assert not result.delivered and result.error is not None and why in result.error, (url, result)
        assert receiver.deliveries == []
        other = WebhookClient(allow=None, secret=None, own=[("127.0.0.1", free_port())], target_url="http://x.invalid")
        refusing.append((other, ""))
        assert (await other.deliver(receiver.url, "01EVENT", body)).delivered
    finally:
        for hooks, _ in refusing:
            await hooks.close()


async def test_a_stored_webhook_that_now_points_at_foreman_is_not_delivered(
    start_foreman: StartForeman, http: aiohttp.ClientSession, db_path: str
) -> None:
    port = free_port()
    # Enough attempts that the event is still pending when the second foreman starts.
    first = await start_foreman(webhook_backoff="50ms", webhook_backoff_max="50ms", webhook_max_attempts=100)
    status, body = await _post_job(http, first.url, {**JOB_BODY, "state_webhook_url": f"http://127.0.0.1:{port}/hook"})
    assert status == 202
    await first.jobs.wait_terminal(body["job_id"], 10)
    await first.stop()
    second = await start_foreman(
        listen=f"127.0.0.1:{port}", webhook_backoff="50ms", webhook_backoff_max="50ms", webhook_max_attempts=100
    )
    deadline = time.monotonic() + 10
    while not read_db(db_path, "SELECT 1 FROM events WHERE last_error LIKE '%foreman''s own address%'"):
        assert time.monotonic() < deadline, read_db(
            db_path, "SELECT last_error, attempts, next_attempt_at, given_up_at, delivered_at, webhook_url FROM events"
        )
        await asyncio.sleep(0.05)
    async with http.get(second.url + "/metrics") as resp:
        assert 'handler="PassThroughHandler",method="POST"' not in await resp.text()  # no POST /hook arrived


# --- the method label of request metrics -----------------------------------------------------------


async def test_invented_methods_do_not_grow_the_metrics(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async def scrape() -> str:
        async with http.get(foreman.url + "/metrics") as resp:
            return await resp.text()

    async with http.request("BREWA", foreman.url + "/api/tags") as resp:
        assert resp.status == 405
    await scrape()  # the first scrape adds its own series
    baseline = (await scrape()).splitlines()
    for i in range(49):
        async with http.request(f"BREW{i}X", foreman.url + "/api/tags") as resp:
            assert resp.status == 405
    after = await scrape()
    assert len(after.splitlines()) == len(baseline)
    assert "BREW" not in after and 'handler="TagsHandler",method="other",status="405"' in after


# --- credentials in ollama_url -----------------------------------------------------------------------


async def test_credentials_in_the_target_url_are_never_shown(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    shown = f"http://***@127.0.0.1:{sim.port}"
    with caplog.at_level(logging.INFO, logger="foreman"):
        foreman = await start_foreman(ollama_url=f"http://alice:s3cr3t-pw@127.0.0.1:{sim.port}")
    assert f"target {shown}" in caplog.text and "s3cr3t" not in caplog.text and "alice" not in caplog.text
    async with http.get(foreman.url + "/healthz") as resp:
        health = await resp.json()
    assert health["target"] == shown
    for args in (("status", "--url", foreman.url), ("status", "--json", "--url", foreman.url)):
        code, out, err = await cli(*args)
        assert code == 0 and shown in out and "s3cr3t" not in out + err and "alice" not in out + err
    with pytest.raises(ConfigError) as refused:
        load_settings({"ollama_url": "http://alice:s3cr3t-pw@mac.tail:99999"}, environ={})
    assert "s3cr3t" not in str(refused.value) and "***@mac.tail" in str(refused.value)


# --- Idempotency-Key and the body it came with -------------------------------------------------------


async def test_an_idempotency_key_with_another_body_is_422(
    foreman: Daemon, http: aiohttp.ClientSession, db_path: str
) -> None:
    status, first = await _post_job(http, foreman.url, JOB_BODY, **{"Idempotency-Key": "order-7"})
    status_again, again = await _post_job(http, foreman.url, JOB_BODY, **{"Idempotency-Key": "order-7"})
    assert status == status_again == 202 and first == again
    other = {**JOB_BODY, "messages": [{"role": "user", "content": "something else"}]}
    status, body = await _post_job(http, foreman.url, other, **{"Idempotency-Key": "order-7"})
    assert status == 422
    assert "Idempotency-Key 'order-7'" in body["error"] and "different body" in body["error"]
    assert read_db(db_path, "SELECT count(*) FROM jobs") == [(1,)]
    status, _ = await _post_job(http, foreman.url, other, **{"Idempotency-Key": "order-8"})
    assert status == 202


async def test_a_database_of_schema_1_migrates_and_keeps_its_keys(
    start_foreman: StartForeman, http: aiohttp.ClientSession, db_path: str
) -> None:
    conn = sqlite3.connect(db_path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (id, state, model, model_name, endpoint, kind, sync, stream, body, idempotency_key,"
        " created_at, updated_at, finished_at) VALUES"
        " ('01OLDJOB0000000000000000AA', 'done', 'llama3.2:latest', 'llama3.2', '/api/chat', 'generate', 0, 1,"
        " x'7b7d', 'old-key', 1.0, 2.0, 2.0)"
    )
    conn.commit()
    conn.close()
    foreman = await start_foreman()
    assert read_db(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 2
    columns = {row[1] for row in read_db(db_path, "PRAGMA table_info(jobs)")}
    assert {"body_sha256", "runner", "ran_after"} <= columns
    assert read_db(db_path, "SELECT runner FROM jobs") == [("llama3.2:latest",)]  # filled from the model
    # A key stored before the digest existed keeps returning its job, whatever the body.
    status, body = await _post_job(http, foreman.url, JOB_BODY, **{"Idempotency-Key": "old-key"})
    assert (status, body) == (202, {"job_id": "01OLDJOB0000000000000000AA"})


# --- numbers in query strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["wait=nan", "wait=NaN", "wait=inf", "wait=-Infinity", "wait=1e999", "wait=1_0", "wait=", "wait=ten"]
)
async def test_wait_must_be_a_finite_number(foreman: Daemon, http: aiohttp.ClientSession, query: str) -> None:
    _, job = await _post_job(http, foreman.url, JOB_BODY)
    async with http.get(f"{foreman.url}/jobs/{job['job_id']}?{query}") as resp:
        assert resp.status == 400 and resp.headers["Content-Type"].startswith("application/json")
        assert "wait must be a finite number of seconds" in (await resp.json())["error"]


@pytest.mark.parametrize("query", ["limit=nan", "limit=1e999", "limit=inf", "limit=1_0", "limit=\u0661\u0660"])
async def test_limit_must_be_a_whole_number(foreman: Daemon, http: aiohttp.ClientSession, query: str) -> None:
    async with http.get(f"{foreman.url}/jobs?{query}") as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "limit must be a whole number"


async def test_finite_numbers_still_work(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    _, job = await _post_job(http, foreman.url, JOB_BODY)
    for query in ("wait=10", "wait=2.5e0", "wait=-1"):
        async with http.get(f"{foreman.url}/jobs/{job['job_id']}?{query}") as resp:
            assert resp.status == 200
    async with http.get(f"{foreman.url}/jobs?limit=+3") as resp:
        assert resp.status == 200


# --- the target's answer head is capped --------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD + 1) + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%05d: %s\r\n" % (i, b"v" * 40) for i in range(2000)) + b"\r\n{}",
    ],
    ids=["one-long-header", "many-headers"],
)
async def test_an_answer_head_over_64_kib_is_broken(head: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(head)
        await writer.drain()
        await reader.read()

    async with RawServer(serve) as server:
        c = client(server.url)
        with pytest.raises(TargetBroken, match="exceed 64 KiB"):
            await c.fetch("POST", "/api/chat", CHAT)
        await c.close()


async def test_a_head_that_never_ends_is_broken_at_the_cap_not_at_the_timeout() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"a" * 4096)
                await writer.drain()
                await asyncio.sleep(0.001)
        await reader.read()

    async with RawServer(serve) as server:
        c = client(server.url, first_byte=30.0)
        started = time.monotonic()
        with pytest.raises(TargetBroken, match="exceed 64 KiB"):
            await c.fetch("POST", "/api/chat", CHAT)
        assert time.monotonic() - started < 5
        async with asyncio.timeout(2):
            await server.closed.wait()  # the connection is closed, not kept
        await c.close()


async def test_a_head_under_the_cap_is_fine() -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD - 1024) + b"\r\nContent-Length: 2\r\n\r\n{}"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(head)
        await writer.drain()
        await reader.read()

    async with RawServer(serve) as server:
        c = client(server.url)
        status, _, body = await c.fetch("POST", "/api/chat", CHAT)
        assert (status, body) == (200, b"{}")
        await c.close()


# --- the CLI keeps its token at home -----------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers as the server's `answer` says and records each request's Authorization header."""

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.seen.append((self.path, self.headers.get("Authorization")))
        status, headers, body = server.answer(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that answers each path with `answer` and records what it saw."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.answer = answer
        self.seen: list[tuple[str, str | None]] = []


HEALTH = json.dumps({"status": "ok", "degraded": False, "target": "http://127.0.0.1:11434", "queue": {}}).encode()


@contextlib.contextmanager
def _http_server(answer: Answer) -> Iterator[_Server]:
    server = _Server(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_the_cli_sends_its_token_along_a_redirect_only_to_the_same_origin() -> None:
    with _http_server(lambda path: (200, {"Content-Type": "application/json"}, HEALTH)) as elsewhere:
        port = elsewhere.server_address[1]
        moved = {"Location": f"http://127.0.0.1:{port}/healthz"}
        with _http_server(lambda path: (302, moved, b"")) as here:
            code, out, _ = await cli("status", "--url", f"http://127.0.0.1:{here.server_address[1]}", "--token", "T0K")
            assert code == 0 and "ok" in out
            assert here.seen and all(auth == "Bearer T0K" for _, auth in here.seen)
            assert elsewhere.seen and all(auth is None for _, auth in elsewhere.seen), elsewhere.seen

    def same_origin(path: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/healthz":
            return 307, {"Location": "/real/healthz"}, b""
        return 200, {"Content-Type": "application/json"}, HEALTH

    with _http_server(same_origin) as here:
        code, _, _ = await cli("status", "--url", f"http://127.0.0.1:{here.server_address[1]}", "--token", "T0K")
        assert code == 0 and ("/real/healthz", "Bearer T0K") in here.seen
