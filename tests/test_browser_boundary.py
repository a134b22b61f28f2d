"""The browser boundary (foreman/browser.py, docs/adr/0024): Ollama's Host check and CORS, in front
of every route, against a running foreman, its simulated target seen through a recording relay,
and its SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from tornado.web import RequestHandler

from foreman.browser import ALLOW_HEADERS, host_allowed, origin_allowed, parse_origins
from foreman.config import load_settings
from foreman.errors import ConfigError
from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import StartForeman, read_db

HELLO = [{"role": "user", "content": "hello there"}]
CHAT = {"model": "llama3.2", "messages": HELLO, "stream": False}
JOB = "01J0000000000000000000000A"
# One concrete path per route of foreman/app.py (plus an unknown one), with every method its
# handler serves; `test_the_sweep_covers_every_route` fails when a route is missing here.
ROUTES: list[tuple[str, tuple[str, ...]]] = [
    ("/", ("GET", "HEAD")),
    ("/api/chat", ("POST",)),
    ("/api/generate", ("POST",)),
    ("/api/tags", ("GET", "HEAD")),
    ("/api/ps", ("GET",)),
    ("/api/version", ("GET", "HEAD")),
    ("/api/show", ("POST",)),
    ("/api/embed", ("POST",)),
    ("/api/embeddings", ("POST",)),
    ("/api/pull", ("POST", "DELETE", "HEAD")),
    ("/api/delete", ("POST", "DELETE", "HEAD")),
    ("/api/blobs/sha256:abc", ("POST", "DELETE", "HEAD")),
    ("/v1/chat/completions", ("POST",)),
    ("/v1/completions", ("POST",)),
    ("/v1/models", ("GET", "HEAD")),
    ("/v1/models/llama3.2", ("GET",)),
    ("/v1/embeddings", ("POST",)),
    ("/v1/messages", ("POST",)),
    ("/v1/responses", ("POST",)),
    ("/v1/audio/transcriptions", ("POST",)),
    ("/api/push", ("POST", "DELETE", "HEAD")),
    ("/api/create", ("POST", "DELETE", "HEAD")),
    ("/api/copy", ("POST", "DELETE", "HEAD")),
    ("/api/status", ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
    ("/api/me", ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
    ("/api/signout", ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
    ("/api/user/keys/abc", ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
    ("/api/experimental/web_search", ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
    ("/api/embeddings", ("POST",)),
    ("/healthz", ("GET",)),
    ("/metrics", ("GET",)),
    ("/jobs", ("GET", "POST")),
    (f"/jobs/{JOB}", ("GET", "DELETE")),
    (f"/jobs/{JOB}/artifacts/completion", ("GET",)),
    (f"/jobs/{JOB}/events", ("GET",)),
    ("/events", ("GET",)),
    ("/no/such/path", ("GET", "POST")),
]
# Methods nobody serves, sent everywhere too: the boundary stands before the method check.
EXTRA_METHODS = ("OPTIONS", "PUT", "PATCH", "BREW")
BODIES = {"POST": CHAT, "PUT": CHAT, "PATCH": CHAT}


class RecordingRelay:
    """A TCP relay in front of the simulated target that writes down every request line passing
    it: what foreman sent the target, whatever the path (the simulator records only some)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.sent = bytearray()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> RecordingRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)  # a relay whose connection was just accepted starts, and is listed
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def requests(self) -> list[str]:
        return [m.decode() for m in re.findall(rb"(?m)^([A-Z]+ \S+) HTTP/1\.1\r$", bytes(self.sent))]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except BaseException:
            writer.close()
            raise

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if record:
                        self.sent += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()


@pytest.fixture
async def relay(sim: Simulator) -> AsyncIterator[RecordingRelay]:
    async with RecordingRelay(sim.port) as recording:
        yield recording


async def _send(http: aiohttp.ClientSession, url: str, method: str, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    body = BODIES.get(method)
    async with http.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers


def _methods_served(handler: type[RequestHandler]) -> set[str]:
    return {
        m
        for m in RequestHandler.SUPPORTED_METHODS
        if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())
    }


async def test_the_sweep_covers_every_route(foreman: Daemon) -> None:
    rules = foreman.server.request_callback.wildcard_router.rules
    for rule in rules:
        served = [(path, methods) for path, methods in ROUTES if rule.matcher.regex.fullmatch(path)]
        assert served, f"no path in ROUTES for {rule.matcher.regex.pattern}"
        assert {m for _, methods in served for m in methods} == _methods_served(rule.target)
    unrouted = [path for path, _ in ROUTES if not any(rule.matcher.regex.fullmatch(path) for rule in rules)]
    assert unrouted == ["/no/such/path"]


@pytest.mark.parametrize(
    ("headers", "preflight"),
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),  # a sandboxed frame or a redirected request
        ({"Host": "evil.example"}, 403),
        ({"Host": "evil.example", "Origin": "http://evil.example"}, 403),  # DNS rebinding: same origin
        # An allowed origin's preflight is answered before the Host check, as in Ollama: 204, and
        # nothing runs; every other request from it still meets the Host check.
        ({"Host": "evil.example:8080", "Origin": "http://localhost:3000"}, 204),
    ],
    ids=["origin", "null-origin", "host", "rebinding", "host-with-allowed-origin"],
)
async def test_no_route_answers_a_foreign_page(
    start_foreman: StartForeman,
    sim: Simulator,
    relay: RecordingRelay,
    http: aiohttp.ClientSession,
    db_path: str,
    headers: dict[str, str],
    preflight: int,
) -> None:
    foreman = await start_foreman(
        ollama_url=relay.url, poll_interval="1h", token="s3cret", allow_model_management="true"
    )
    await foreman.poller.poll()  # the start-up polls are done: from here on the target hears nothing
    before = list(relay.requests)
    assert "GET /api/tags" in before  # the relay sees what foreman sends
    auth = {"Authorization": "Bearer s3cret", **headers}  # even with the right token
    for path, methods in ROUTES:
        for method in (*methods, *EXTRA_METHODS):
            status, body, answer = await _send(http, foreman.url + path, method, auth)
            expected = preflight if method == "OPTIONS" else 403
            assert (status, body) == (expected, b""), (method, path, status, body)
            assert "Content-Type" not in answer and "Server" not in answer
    await asyncio.sleep(0.1)
    assert relay.requests == before
    assert not sim.requests
    assert read_db(db_path, "SELECT count(*) FROM jobs") == [(0,)]


async def test_a_text_plain_post_from_a_web_page_runs_nothing(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    """The CSRF that text/plain made possible: a "simple" request, no preflight, JSON body."""
    page = {"Origin": "https://evil.example", "Content-Type": "text/plain;charset=UTF-8"}
    for path in ("/api/chat", "/jobs", "/api/pull"):
        async with http.post(foreman.url + path, data=b'{"model":"llama3.2","prompt":"hi"}', headers=page) as resp:
            assert resp.status == 403 and await resp.read() == b""
    assert not sim.requests
    assert read_db(db_path, "SELECT count(*) FROM jobs") == [(0,)]
    # The same body without a browser's Origin is an ordinary client, as with Ollama.
    body = b'{"model":"llama3.2","prompt":"hi","stream":false}'
    async with http.post(foreman.url + "/api/generate", data=body, headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 200


async def test_a_preflight_is_answered_as_ollama_does_before_the_token(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(token="s3cret")
    origin = "http://localhost:5173"
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization",
    }
    for path in ("/api/chat", "/jobs", "/healthz", "/metrics", "/no/such/path"):
        async with http.options(foreman.url + path, headers=preflight) as resp:
            assert resp.status == 204 and await resp.read() == b""
            assert resp.headers["Access-Control-Allow-Origin"] == origin
            assert resp.headers["Access-Control-Allow-Methods"] == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
            assert resp.headers["Access-Control-Allow-Headers"] == ALLOW_HEADERS
            assert resp.headers["Access-Control-Max-Age"] == "43200"
            assert resp.headers.getall("Vary") == [
                "Origin",
                "Access-Control-Request-Method",
                "Access-Control-Request-Headers",
            ]
            assert "Content-Type" not in resp.headers and "Server" not in resp.headers
    assert ALLOW_HEADERS.startswith("Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,")
    assert not sim.requests
    # A preflight from a refused origin is refused like anything else from it.
    async with http.options(foreman.url + "/api/chat", headers={**preflight, "Origin": "http://evil.example"}) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


async def test_allowed_cross_origin_answers_carry_cors_headers(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    for origin in ("http://localhost:3000", "https://127.0.0.1", "app://obsidian.md", "vscode-webview://abc"):
        async with http.post(foreman.url + "/api/chat", json=CHAT, headers={**auth, "Origin": origin}) as resp:
            assert resp.status == 200, origin
            assert resp.headers["Access-Control-Allow-Origin"] == origin and resp.headers["Vary"] == "Origin"
    # foreman's own refusals carry them too (the browser may then read the error).
    async with http.get(foreman.url + "/jobs", headers={"Origin": "http://localhost:3000"}) as resp:
        assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    nope = {**auth, "Origin": "http://localhost:3000"}  # passed through: the target's own 404
    async with http.get(foreman.url + "/nope", headers=nope) as resp:
        assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    # No Origin, or the request's own origin: not a CORS request, no CORS headers.
    for headers in ({}, {"Origin": foreman.url}):
        async with http.get(foreman.url + "/healthz", headers=headers) as resp:
            assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_the_origins_setting_adds_to_ollamas_defaults(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(origins="https://chat.example.org, http://*.tail.example")
    for origin, status in (
        ("https://chat.example.org", 200),
        ("http://box.tail.example", 200),
        ("http://localhost:8000", 200),  # the defaults stay
        ("https://chat.example.org.evil.example", 403),
        ("http://tail.example", 403),
    ):
        async with http.get(foreman.url + "/api/tags", headers={"Origin": origin}) as resp:
            assert resp.status == status, origin


async def test_origins_star_allows_every_page(start_foreman: StartForeman, http: aiohttp.ClientSession) -> None:
    foreman = await start_foreman(origins="*")
    async with http.get(foreman.url + "/api/tags", headers={"Origin": "http://anything.example"}) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in resp.headers


def test_origins_are_read_like_ollama_origins() -> None:
    environ = {"FOREMAN_OLLAMA_URL": "http://127.0.0.1:11434", "FOREMAN_ORIGINS": "'https://a.example,app://*'"}
    assert load_settings(environ=environ).origins == ("https://a.example", "app://*")
    assert load_settings(environ={"FOREMAN_OLLAMA_URL": "http://x:1"}).origins == ()
    for bad in ("a.example", "http://*.a.*", "ftp://a.example"):
        with pytest.raises(ConfigError, match="origins"):
            load_settings(environ={"FOREMAN_OLLAMA_URL": "http://x:1", "FOREMAN_ORIGINS": bad})
    assert parse_origins(["https://a.example", " "]) == ("https://a.example",)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("localhost:8080", True),
        ("LOCALHOST", True),
        ("[::1]:8080", True),
        ("::1", True),  # no brackets: Go cannot split it, and the whole value is an IP
        ("10.1.2.3:80", True),
        ("172.20.0.5", True),
        ("192.168.1.10:11434", True),
        ("[fd00::1]:80", True),
        ("0.0.0.0:8080", True),
        ("app.localhost:3000", True),
        ("printer.local", True),
        ("db.internal:5432", True),
        (socket.gethostname(), True),
        ("", True),
        ("evil.example", False),
        ("evil.example:8080", False),
        ("8.8.8.8:80", False),
        ("172.32.0.1", False),  # just outside 172.16.0.0/12
        ("localhost.evil.example", False),
        ("evil.example.", False),
        ("[::1]", False),  # Go's SplitHostPort refuses it and "[::1]" is no IP: Ollama refuses it too
        ("localhost:8080:9090", False),
    ],
)
def test_the_host_check(host: str, allowed: bool) -> None:
    assert host_allowed(host, "127.0.0.1") is allowed
    assert host_allowed(host, "0.0.0.0") is True  # not on loopback: no Host check, as in Ollama
    assert host_allowed(host, "192.168.1.10") is True


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost", True),
        ("https://localhost:8443", True),
        ("http://127.0.0.1:3000", True),
        ("http://0.0.0.0:1", True),
        ("app://anything", True),
        ("file://", True),
        ("tauri://localhost", True),
        ("vscode-file://vscode-app", True),
        ("http://localhost.evil.example", False),
        ("http://127.0.0.1.nip.io", False),
        ("https://evil.example", False),
        ("null", False),
        ("chrome-extension://abcdef", False),  # extensions only when listed in origins
        ("HTTP://LOCALHOST", False),  # compared as sent, as gin-contrib/cors does
    ],
)
def test_ollamas_default_origins(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin) is allowed
    assert origin_allowed(origin, ("chrome-extension://*",)) is (allowed or origin.startswith("chrome-extension://"))


async def test_the_host_check_on_a_running_foreman(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    port = foreman.port
    for host, status in (
        (f"localhost:{port}", 200),
        (f"foreman.localhost:{port}", 200),
        (f"gpu-box.local:{port}", 200),
        (f"192.168.0.7:{port}", 200),
        (f"[::1]:{port}", 200),
        (f"evil.example:{port}", 403),
        (f"1.2.3.4:{port}", 403),
    ):
        async with http.get(foreman.url + "/api/tags", headers={"Host": host}) as resp:
            assert resp.status == status, host
            assert status == 200 or await resp.read() == b""


async def test_options_without_an_origin_as_ollama(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    """The Host check answers OPTIONS itself for a host that passes by name; by IP, the router does."""
    async with http.options(foreman.url + "/api/chat", headers={"Host": f"localhost:{foreman.port}"}) as resp:
        assert resp.status == 204 and await resp.read() == b""
    async with http.options(foreman.url + "/api/chat") as resp:  # Host 127.0.0.1:port
        assert resp.status == 405 and await resp.text() == "405 method not allowed"
    async with http.options(foreman.url + "/no/such/path") as resp:
        assert resp.status == 404 and await resp.text() == "404 page not found"


async def test_not_on_loopback_only_the_origin_is_checked(
    start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(listen="0.0.0.0:0")  # the Docker image's listen address
    url = f"http://127.0.0.1:{foreman.port}"
    async with http.get(url + "/api/tags", headers={"Host": "mac.example.org"}) as resp:
        assert resp.status == 200
    async with http.get(url + "/api/tags", headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403


async def test_host_and_origin_still_do_not_go_upstream(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    headers = {"Origin": "http://localhost:3000", "Host": f"localhost:{foreman.port}"}
    async with http.post(foreman.url + "/api/chat", json=CHAT, headers=headers) as resp:
        assert resp.status == 200
    seen = {k.lower(): v for k, v in sim.requests[-1].headers.items()}
    assert "origin" not in seen and seen["host"] == sim.url.split("//")[1]


async def test_refusals_are_counted_and_logged_like_any_answer(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.get(foreman.url + "/api/tags", headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
    async with http.get(foreman.url + "/metrics") as resp:
        text = await resp.text()
    assert 'handler="BoundaryHandler",method="GET",status="403"' in text
