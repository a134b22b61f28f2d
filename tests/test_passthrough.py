"""The route table (foreman/routes.py) and every path foreman does not serve itself:
passed through to the target as if foreman were not there (docs/adr/0027)."""

from __future__ import annotations

import re

import aiohttp
import pytest
from tornado.routing import PathMatches

from foreman.app import make_app
from foreman.handlers.embed import EmbedHandler
from foreman.handlers.inventory import ManagementHandler, PassThroughHandler
from foreman.handlers.ollama import GenerationHandler
from foreman.routes import OLLAMA_ROUTES, Route, classify
from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import ROOT, StartForeman

_KIND = {"runs a model": Route.JOB, "embedding": Route.EMBEDDING, "model management": Route.MANAGEMENT}


def wire_routes() -> dict[str, Route]:
    """Every path of docs/wire.md section 10.8, with the class its `Kind` column gives."""
    text = (ROOT / "docs" / "wire.md").read_text()
    section = text[text.index("### 10.8") : text.index("### Where section 10")]
    found: dict[str, Route] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith(("`", "POST", "DELETE")):
            continue
        kind = next((route for label, route in _KIND.items() if label in cells[3]), Route.PASS_THROUGH)
        for path in re.findall(r"`(/[^`]*)`", cells[1]):
            found[path] = kind
    return found


def test_the_table_knows_every_route_ollama_has_with_its_class() -> None:
    wire = wire_routes()
    assert len(wire) >= 25 and wire["/v1/messages"] is Route.JOB  # the parse itself works
    for path, kind in wire.items():
        pattern = "/api/experimental/*" if path.startswith("/api/experimental/") else path
        assert OLLAMA_ROUTES.get(pattern) is kind, path


def test_classify_sends_unknown_paths_through() -> None:
    assert classify("/api/chat") is Route.JOB
    assert classify("/api/blobs/sha256:abc") is Route.MANAGEMENT
    assert classify("/api/experimental/web_fetch") is Route.PASS_THROUGH
    assert classify("/api/something-new") is Route.PASS_THROUGH


async def test_the_app_routes_each_class_to_its_handler(foreman: Daemon) -> None:
    app = make_app(foreman.face)
    examples = {"/api/blobs/:digest": "/api/blobs/sha256:1", "/v1/models/:model": "/v1/models/llama3.2"}

    def handler_for(path: str) -> type:
        for rule in app.wildcard_router.rules:
            matcher = rule.matcher
            if isinstance(matcher, PathMatches) and matcher.regex.fullmatch(path):
                return rule.target  # type: ignore[no-any-return]
        return PassThroughHandler

    expected = {
        Route.JOB: GenerationHandler,
        Route.EMBEDDING: EmbedHandler,
        Route.MANAGEMENT: ManagementHandler,
    }
    for pattern, route in OLLAMA_ROUTES.items():
        path = examples.get(pattern, pattern.replace("*", "web_search"))
        handler = handler_for(path)
        if route in expected:
            assert issubclass(handler, expected[route]), (path, handler)
        else:
            assert not issubclass(handler, (GenerationHandler, EmbedHandler, ManagementHandler)), (path, handler)
    assert handler_for("/api/whatever-ollama-adds-next") is PassThroughHandler


async def _answer(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> tuple[int, str, bytes]:
    async with http.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/status"),
        ("GET", "/api/whatever-comes-next"),
        ("POST", "/api/experimental/web_fetch"),
        ("PUT", "/api/chat/nested"),
        ("DELETE", "/v1/messages/count_tokens"),
        ("PATCH", "/nothing/here"),
    ],
)
async def test_a_path_foreman_does_not_serve_gets_exactly_the_targets_answer(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    kw = {"data": b'{"url":"https://example.com"}'} if method in ("POST", "PUT", "PATCH") else {}
    direct = await _answer(http, method, sim.url + path, **kw)
    through = await _answer(http, method, foreman.url + path, **kw)
    assert through == direct


async def test_head_of_tags_answers_as_ollama_does(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(foreman.url + "/api/tags") as resp:
        whole = await resp.read()
    async with http.head(foreman.url + "/api/tags") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert int(resp.headers["Content-Length"]) == len(whole)
        assert await resp.read() == b""


async def test_passed_through_paths_need_the_token_like_every_other(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(token="s3cret")
    for path in ("/api/status", "/api/whatever-comes-next"):
        async with http.get(foreman.url + path) as resp:
            assert resp.status == 401
            assert (await resp.json()) == {"error": "unauthorized"}
        direct = await _answer(http, "GET", sim.url + path)
        through = await _answer(http, "GET", foreman.url + path, headers={"Authorization": "Bearer s3cret"})
        assert through == direct
