"""The webhook client against real receivers on loopback: signing, URL policy, redirects, timeouts, caps."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from foreman import webhook_policy
from foreman.webhook_client import DeliveryResult, WebhookClient, WebhookRefused, signature_headers

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHSEC_KEY = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
BODY = json.dumps({"event_id": "01EVENT", "job_id": "01JOB", "state": "queued"}).encode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int


@dataclass
class Receiver:
    """An aiohttp.web receiver; `handler` decides the answer, `seen` records every request."""

    port: int = 0
    handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(Seen(request.path, dict(request.headers), await request.read(), peer[1] if peer else 0))
        if self.handler is None:
            return web.Response(status=204)
        return await self.handler(request)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)  # its log would show query strings
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    yield rec
    await runner.cleanup()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """A bare TCP receiver for misbehaviour aiohttp.web won't do: never answering, endless bodies."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> int:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await serve(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    await writer.wait_closed()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        server.close()
        await server.wait_closed()


ClientFactory = Callable[..., WebhookClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[WebhookClient] = []

    def make(**kwargs: object) -> WebhookClient:
        options: dict[str, object] = {"allow": None, "secret": None, "connect_timeout": 0.5, "total_timeout": 2.0}
        client = WebhookClient(**(options | kwargs))  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def hex_hmac(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


# --- signing --------------------------------------------------------------------------------


async def test_whsec_secret_verifies_with_standardwebhooks(receiver: Receiver, make_client: ClientFactory) -> None:
    result = await make_client(secret=WHSEC).deliver(receiver.url(), "01EVENT", BODY)

    assert result == DeliveryResult(204, None)
    [seen] = receiver.seen
    assert seen.body == BODY
    assert Webhook(WHSEC).verify(seen.body, seen.headers) == json.loads(BODY)
    assert seen.headers["X-Foreman-Signature"] == hex_hmac(WHSEC_KEY, BODY)
    assert seen.headers["webhook-id"] == "01EVENT"
    assert abs(int(seen.headers["webhook-timestamp"]) - time.time()) < 5
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "foreman-webhooks"


async def test_plain_secret_signs_with_its_utf8_bytes(receiver: Receiver, make_client: ClientFactory) -> None:
    secret = "plain-secret-ü"
    await make_client(secret=secret).deliver(receiver.url(), "01EVENT", BODY)

    [seen] = receiver.seen
    assert Webhook(secret.encode()).verify(seen.body, seen.headers) == json.loads(BODY)
    assert seen.headers["X-Foreman-Signature"] == hex_hmac(secret.encode(), BODY)
    # Read as whsec_ base64 the key would differ, and so would the signature.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"other").decode()).verify(seen.body, seen.headers)


async def test_without_secret_id_and_timestamp_but_no_signature(receiver: Receiver, make_client: ClientFactory) -> None:
    await make_client().deliver(receiver.url(), "01EVENT", BODY)

    [seen] = receiver.seen
    assert seen.headers["webhook-id"] == "01EVENT"
    assert seen.headers["webhook-timestamp"].isdigit()
    assert "webhook-signature" not in seen.headers
    assert "X-Foreman-Signature" not in seen.headers


def test_signature_headers_are_deterministic_and_cover_id_timestamp_body() -> None:
    now = int(time.time())
    first = signature_headers(WHSEC, "01EVENT", now, BODY)

    assert first == signature_headers(WHSEC, "01EVENT", now, BODY)
    assert Webhook(WHSEC).verify(BODY, first) is not None
    expected = hmac.new(WHSEC_KEY, f"01EVENT.{now}.".encode() + BODY, hashlib.sha256).digest()
    assert first["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    for other in (
        signature_headers(WHSEC, "01EVENT", now + 1, BODY),
        signature_headers(WHSEC, "01OTHER", now, BODY),
        signature_headers(WHSEC, "01EVENT", now, BODY + b" "),
    ):
        assert other["webhook-signature"] != first["webhook-signature"]


def test_malformed_whsec_secret_fails_at_construction_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        WebhookClient(allow=None, secret="whsec_!!!!")
    assert "!!!!" not in str(caught.value)


async def test_retries_keep_the_id_and_take_a_fresh_timestamp(
    receiver: Receiver, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(secret=WHSEC)
    start = time.time()
    for offset in (0, 2):
        monkeypatch.setattr("foreman.clock.now", lambda offset=offset: start + offset)
        assert (await client.deliver(receiver.url(), "01EVENT", BODY)).delivered

    first, second = receiver.seen
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "01EVENT"
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 2
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    for seen in receiver.seen:
        Webhook(WHSEC).verify(seen.body, seen.headers)
    # One session, one kept-alive connection for both attempts.
    assert first.peer_port == second.peer_port


# --- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "delivered", "gone", "error"),
    [
        (200, True, False, None),
        (202, True, False, None),
        (500, False, False, "status 500"),
        (404, False, False, "status 404"),
        (410, False, True, "status 410"),
    ],
)
async def test_status_decides_the_result(
    receiver: Receiver, make_client: ClientFactory, status: int, delivered: bool, gone: bool, error: str | None
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text="answer")

    receiver.handler = answer
    result = await make_client().deliver(receiver.url(), "01EVENT", BODY)

    assert (result.status, result.delivered, result.gone, result.error) == (status, delivered, gone, error)


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "/landed"])
async def test_redirects_are_not_followed(receiver: Receiver, make_client: ClientFactory, location: str) -> None:
    async def redirect(request: web.Request) -> web.Response:
        if request.path == "/landed":
            return web.Response(status=200)
        return web.Response(status=302, headers={"Location": location})

    receiver.handler = redirect
    result = await make_client().deliver(receiver.url(), "01EVENT", BODY)

    assert result == DeliveryResult(302, "status 302")
    assert not result.delivered
    assert [seen.path for seen in receiver.seen] == ["/hook"]


# --- URL policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "url", "reason"),
    [
        (None, "ftp://127.0.0.1/x", "webhook URL must be http or https"),
        (None, "file:///etc/passwd", "webhook URL must be http or https"),
        (None, "http:///nohost", "webhook URL has no host"),
        (None, "http://169.254.169.254/x", "link-local"),
        (None, "http://[fe80::1]/x", "link-local"),
        (None, "http://[::ffff:169.254.169.254]/x", "link-local"),
        (None, "http://0.0.0.0/x", "unspecified"),
        (None, "http://224.0.0.1/x", "multicast"),
        (None, "http://foreman-webhook-test.invalid/x", "does not resolve"),
        (("10.0.0.0/8",), "http://127.0.0.1:9/x", "outside webhook_allow"),
        (("10.0.0.0/8",), "http://localhost:9/x", "outside webhook_allow"),
        (("0.0.0.0/0",), "http://169.254.169.254/x", "link-local"),
        (("*.example.org",), "http://localhost:9/x", "outside webhook_allow"),
    ],
)
async def test_check_url_refuses(
    make_client: ClientFactory, allow: tuple[str, ...] | None, url: str, reason: str
) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        await make_client(allow=allow).check_url(url)


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        (None, "http://127.0.0.1:9/x"),
        (None, "https://localhost/x"),
        (None, "http://192.168.1.5/x"),
        (None, "http://[::1]:9/x"),
        (("localhost",), "http://localhost:9/x"),
        (("LOCALHOST.",), "http://localhost./x"),
        (("127.0.0.0/8",), "http://localhost:9/x"),
        (("10.0.0.0/8", "127.0.0.1/32"), "http://127.0.0.1:9/x"),
        (("169.254.169.254/32",), "http://169.254.169.254/x"),
        (("::1/128",), "http://[::1]/x"),
    ],
)
async def test_check_url_allows(make_client: ClientFactory, allow: tuple[str, ...] | None, url: str) -> None:
    await make_client(allow=allow).check_url(url)


def test_wildcard_names_match_subdomains_only() -> None:
    policy = webhook_policy.Policy(("*.example.org", "hooks.example.com"))
    assert policy.name_listed("a.example.org")
    assert policy.name_listed("a.b.example.org")
    assert policy.name_listed("Hooks.Example.com.")
    assert not policy.name_listed("example.org")
    assert not policy.name_listed("badexample.org")
    assert not policy.name_listed("hooks.example.com.evil.net")


async def test_connect_time_check_refuses_a_name_resolving_outside_the_allow_list(
    receiver: Receiver, make_client: ClientFactory
) -> None:
    # deliver never calls check_url: only the resolver inside the session can refuse this.
    client = make_client(allow=("10.0.0.0/8",))
    result = await client.deliver(f"http://localhost:{receiver.port}/hook", "01EVENT", BODY)

    assert result.status is None
    assert result.error is not None and result.error.startswith("refused address: localhost")
    assert "127.0.0.1" in result.error
    assert receiver.seen == []


async def test_connect_time_check_lets_a_listed_name_through(receiver: Receiver, make_client: ClientFactory) -> None:
    client = make_client(allow=("10.0.0.0/8", "localhost"))
    assert (await client.deliver(f"http://localhost:{receiver.port}/hook", "01EVENT", BODY)).delivered


async def test_refused_ip_literal_is_not_even_connected_to(make_client: ClientFactory) -> None:
    # aiohttp hands IP literals straight to connect(), past any resolver.
    started = time.monotonic()
    result = await make_client(connect_timeout=5.0).deliver("http://169.254.169.254/hook", "01EVENT", BODY)

    assert result.status is None
    assert result.error == "refused address: webhook address 169.254.169.254 is a link-local address"
    assert time.monotonic() - started < 0.5


# --- failures -------------------------------------------------------------------------------


async def test_connection_refused_is_a_result(make_client: ClientFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await make_client().deliver(f"http://127.0.0.1:{port}/hook", "01EVENT", BODY)

    assert result.status is None
    assert result.error == f"cannot connect to 127.0.0.1:{port}: Connection refused"


async def test_a_receiver_that_never_answers_times_out(
    raw_server: Callable[..., Awaitable[int]], make_client: ClientFactory
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.Event().wait()

    port = await raw_server(silent)
    started = time.monotonic()
    result = await make_client(total_timeout=0.5).deliver(f"http://127.0.0.1:{port}/hook", "01EVENT", BODY)

    assert result == DeliveryResult(None, "timed out after 0.5s")
    assert time.monotonic() - started < 1.5


async def test_a_huge_answer_is_read_only_up_to_the_cap(
    raw_server: Callable[..., Awaitable[int]], make_client: ClientFactory
) -> None:
    size = 50 * 1024 * 1024
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 65536
        while sent < size:  # 50 MB at ~6 MB/s: about 8 s to send in full
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0.01)

    port = await raw_server(endless)
    started = time.monotonic()
    client = make_client(total_timeout=5.0, max_response=1024)
    result = await client.deliver(f"http://127.0.0.1:{port}/hook", "01EVENT", BODY)

    assert result == DeliveryResult(200, None)
    assert time.monotonic() - started < 1.0
    assert sent < size


async def test_a_big_fast_answer_returns_promptly(receiver: Receiver, make_client: ClientFactory) -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"x" * (5 * 1024 * 1024))

    receiver.handler = big
    started = time.monotonic()
    result = await make_client(max_response=1024).deliver(receiver.url(), "01EVENT", BODY)

    assert result.delivered
    assert time.monotonic() - started < 1.0


async def test_closed_client_reports_instead_of_reopening(receiver: Receiver, make_client: ClientFactory) -> None:
    client = make_client()
    assert (await client.deliver(receiver.url(), "01EVENT", BODY)).delivered
    await client.close()
    await client.close()

    assert await client.deliver(receiver.url(), "01EVENT", BODY) == DeliveryResult(None, "webhook client closed")
    assert len(receiver.seen) == 1


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_signatures_and_query_tokens_stay_out_of_errors_and_logs(
    receiver: Receiver,
    raw_server: Callable[..., Awaitable[int]],
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text=request.headers.get("webhook-signature", ""))

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    receiver.handler = fail
    hang_port = await raw_server(hang)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    client = make_client(secret=WHSEC, allow=("127.0.0.1/32",), total_timeout=0.3)
    token = "tok-5ecret-query"
    results = [
        await client.deliver(f"{receiver.url()}?token={token}", "01EVENT", BODY),
        await client.deliver(f"http://127.0.0.1:{hang_port}/h?token={token}", "01EVENT", BODY),
        await client.deliver(f"http://127.0.0.1:{closed_port}/h?token={token}", "01EVENT", BODY),
        await client.deliver(f"http://u:{token}@localhost:{receiver.port}/h?token={token}", "01EVENT", BODY),
        await client.deliver(f"http://169.254.169.254/h?token={token}", "01EVENT", BODY),
    ]
    with pytest.raises(WebhookRefused) as refused:
        await client.check_url(f"http://10.0.0.1/h?token={token}")

    signature = receiver.seen[0].headers["webhook-signature"]
    forbidden = [WHSEC, WHSEC.removeprefix("whsec_"), signature, signature.removeprefix("v1,"), token]
    texts = [r.error or "" for r in results] + [str(refused.value)] + [r.getMessage() for r in caplog.records]
    assert all(not r.delivered for r in results)
    assert len(caplog.records) >= len(results)
    for text in texts:
        for secret in forbidden:
            assert secret not in text
