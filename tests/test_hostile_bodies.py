"""Hostile request bodies (issue 9): decoded as Go decodes them, refused with Go's text, never a 500.

Real HTTP against a running foreman on every JSON endpoint it parses; a refused body reaches
nothing: no request at the target, no job row.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from foreman.errors import BadRequest
from foreman.json_body import MAX_DEPTH, decode
from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import StartForeman, read_db

HELLO = [{"role": "user", "content": "hi"}]
# Each endpoint family: a good body, and the Go struct its errors name.
GOOD: dict[str, dict[str, Any]] = {
    "/api/chat": {"model": "llama3.2", "messages": HELLO, "stream": False},
    "/api/generate": {"model": "llama3.2", "prompt": "hi", "stream": False},
    "/v1/chat/completions": {"model": "llama3.2", "messages": HELLO},
    "/jobs": {"model": "llama3.2", "messages": HELLO},
    "/api/embed": {"model": "nomic-embed-text", "input": "hi"},
}
STRUCT = {
    "/api/chat": "ChatRequest",
    "/api/generate": "GenerateRequest",
    "/v1/chat/completions": "ChatCompletionRequest",
    "/jobs": "ChatRequest",
    "/api/embed": "EmbedRequest",
}
PATHS = list(GOOD)
GOOD.update(
    {
        "/v1/completions": {"model": "llama3.2", "prompt": "hi"},
        "/api/embeddings": {"model": "nomic-embed-text", "prompt": "hi"},
        "/v1/embeddings": {"model": "nomic-embed-text", "input": "hi"},
    }
)
NINES = "9" * 5000


def with_member(path: str, member: bytes) -> bytes:
    """The endpoint's good body with one more member, written as raw JSON text."""
    return json.dumps(GOOD[path]).encode()[:-1] + b"," + member + b"}"


async def post(http: aiohttp.ClientSession, url: str, body: bytes | AsyncIterator[bytes]) -> tuple[int, Any]:
    async with http.post(url, data=body) as resp:
        assert resp.headers["Content-Type"].startswith("application/json"), await resp.text()
        return resp.status, await resp.json()


def error_of(path: str, text: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """foreman's refusal in the endpoint's shape (OpenAI's on /v1, where `kind` follows the status)."""
    if path.startswith("/v1/"):
        return {"error": {"message": text, "type": kind, "param": None, "code": None}}
    return {"error": text}


async def assert_refused(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str, body: bytes, text: str
) -> None:
    status, payload = await post(http, foreman.url + path, body)
    assert (status, payload) == (400, error_of(path, text))
    assert sim.requests == []
    assert read_db(foreman.settings.db_path, "SELECT count(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("member", "text"),
    [
        pytest.param(b'"x":' + b"[" * 100_000, "invalid character '[' exceeded max depth", id="100000-deep"),
        pytest.param(b'"x":' + b'{"a":' * (MAX_DEPTH + 1), "invalid character '{' exceeded max depth", id="10001-deep"),
        pytest.param(b'"x":NaN', "invalid character 'N' looking for beginning of value", id="NaN"),
        pytest.param(b'"x":Infinity', "invalid character 'I' looking for beginning of value", id="Infinity"),
        pytest.param(b'"x":[-Infinity]', "invalid character 'I' in numeric literal", id="-Infinity"),
        pytest.param(b'"x":"caf\xe9"', "invalid UTF-8 in string literal", id="invalid-utf8"),
        pytest.param(b'"x":"\\ud800"', "invalid surrogate escape '\\ud800' in string literal", id="lone-surrogate"),
        pytest.param(b'"x":{"\\udfff":1}', "invalid surrogate escape '\\udfff' in string literal", id="surrogate-key"),
    ],
)
async def test_hostile_json_is_refused_with_gos_text(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str, member: bytes, text: str
) -> None:
    await assert_refused(foreman, sim, http, path, with_member(path, member), text)


@pytest.mark.parametrize("path", PATHS)
async def test_a_number_no_go_number_holds_is_refused_where_go_decodes_it(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str
) -> None:
    field = "temperature" if path.startswith("/v1/") else "options"
    member = f'"{field}":{NINES}' if field == "temperature" else f'"options":{{"seed":{NINES}}}'
    text = go(f"number {NINES}", f"{STRUCT[path]}.{field}", "float64")
    await assert_refused(foreman, sim, http, path, with_member(path, member.encode()), text)


async def test_a_huge_number_where_go_does_not_decode_it_passes_unchanged(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = with_member("/api/chat", b'"format":{"type":"object","maximum":1e400},"x":' + b"9" * 400)
    status, payload = await post(http, foreman.url + "/api/chat", body)
    assert status == 200 and payload["done"] is True  # json.RawMessage and unknown fields: Go keeps no number
    chat = next(r for r in sim.requests if r.kind == "chat")
    assert chat.body is not None and chat.body["format"]["maximum"] == float("inf")


def go(value: str, field: str, go_type: str) -> str:
    """Go's *json.UnmarshalTypeError text."""
    return f"json: cannot unmarshal {value} into Go struct field {field} of type {go_type}"


THINK = '"high", "medium", "low", "max", true, or false'
# (path, member, Go's text): the fields Ollama types, each of the wrong JSON kind.
WRONG_TYPES = [
    ("/api/chat", '"messages":"hi"', go("string", "ChatRequest.messages", "[]api.Message")),
    ("/api/chat", '"stream":"yes"', go("string", "ChatRequest.stream", "bool")),
    ("/api/chat", '"model":5', go("number", "ChatRequest.model", "string")),
    ("/api/chat", '"messages":[{"role":5}]', go("number", "ChatRequest.messages.role", "string")),
    ("/api/chat", '"messages":[{"content":["a"]}]', go("array", "ChatRequest.messages.content", "string")),
    ("/api/chat", '"messages":["hi"]', go("string", "ChatRequest.messages", "api.Alias")),
    ("/api/chat", '"options":"fast"', go("string", "ChatRequest.options", "map[string]interface {}")),
    ("/api/chat", '"tools":{}', go("object", "ChatRequest.tools", "api.Tools")),
    ("/api/chat", '"keep_alive":true', "Unsupported type: 'bool'"),
    ("/api/chat", '"keep_alive":"300"', 'time: missing unit in duration "300"'),
    ("/api/chat", '"think":"hard"', f'invalid think value: "hard" (must be {THINK})'),
    ("/api/chat", '"think":1', f"think must be a boolean or string ({THINK})"),
    ("/api/chat", '"top_logprobs":1.5', go("number 1.5", "ChatRequest.top_logprobs", "int")),
    ("/api/generate", '"prompt":5', go("number", "GenerateRequest.prompt", "string")),
    ("/api/generate", '"images":[1]', go("number", "GenerateRequest.images", "api.ImageData")),
    ("/api/generate", f'"context":[{2**64}]', go(f"number {2**64}", "GenerateRequest.context", "int")),
    ("/v1/chat/completions", '"messages":"hi"', go("string", "ChatCompletionRequest.messages", "[]openai.Message")),
    ("/v1/chat/completions", '"stream":"yes"', go("string", "ChatCompletionRequest.stream", "bool")),
    ("/jobs", '"messages":"hi"', go("string", "ChatRequest.messages", "[]api.Message")),
    ("/jobs", '"Stream":"yes"', go("string", "ChatRequest.stream", "bool")),  # keys match as in Go
    ("/api/embed", '"truncate":"no"', go("string", "EmbedRequest.truncate", "bool")),
    ("/api/embed", '"keep_alive":[]', "Unsupported type: '[]interface {}'"),
    ("/v1/completions", '"prompt":5', go("number", "CompletionRequest.prompt", "string")),
    ("/v1/completions", '"temperature":3.5e+38', go("number 3.5e+38", "CompletionRequest.temperature", "float32")),
    ("/api/embeddings", '"prompt":5', go("number", "EmbeddingRequest.prompt", "string")),
    ("/v1/embeddings", '"dimensions":"all"', go("string", "EmbedRequest.dimensions", "int")),
]


@pytest.mark.parametrize(("path", "member", "text"), WRONG_TYPES)
async def test_a_field_of_the_wrong_type_is_refused_with_gos_text(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str, member: str, text: str
) -> None:
    await assert_refused(foreman, sim, http, path, with_member(path, member.encode()), text)


@pytest.mark.parametrize(
    ("path", "text"),
    [("/api/chat", "missing request body"), ("/api/embed", "missing request body"), ("/v1/chat/completions", "EOF"),
     ("/v1/embeddings", "EOF"), ("/jobs", "missing request body")],
)  # fmt: skip
async def test_an_empty_body_gets_the_text_of_its_api(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str, text: str
) -> None:
    await assert_refused(foreman, sim, http, path, b" \r\n", text)


async def chunks(size: int, piece: int = 16 * 1024) -> AsyncIterator[bytes]:
    """A JSON body of `size` bytes sent chunked (no Content-Length)."""
    yield b'{"model":"llama3.2","x":"'
    sent = 25
    while sent < size - 2:
        part = b"a" * min(piece, size - 2 - sent)
        sent += len(part)
        yield part
    yield b'"}'


@pytest.mark.parametrize("path", PATHS)
async def test_a_chunked_body_over_max_body_gets_413_json(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, path: str
) -> None:
    foreman = await start_foreman(max_body="64KiB")
    status, payload = await post(http, foreman.url + path, chunks(200 * 1024))
    assert (status, payload) == (413, error_of(path, "request body too large: max_body is 65536", "api_error"))
    assert sim.requests == []
    assert read_db(foreman.settings.db_path, "SELECT count(*) FROM jobs") == [(0,)]
    # The same connection pool goes on: a body under the limit, chunked too, is taken.
    async with http.post(foreman.url + path, data=chunks(32 * 1024)) as resp:
        assert resp.status != 413, await resp.text()


async def test_a_chunked_body_far_over_max_body_is_cut_without_a_500(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_body="16KiB")
    try:
        async with http.post(foreman.url + "/api/chat", data=chunks(1024 * 1024)) as resp:
            status = resp.status
    except aiohttp.ClientError:
        status = None  # read on up to 4 x max_body, then the connection is cut
    assert status in (None, 400)
    assert sim.requests == []


async def test_a_body_nested_to_gos_limit_is_accepted(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    deep = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)  # with the body's own object: 10,000 levels
    async with http.post(foreman.url + "/jobs", data=with_member("/jobs", b'"x":' + deep)) as resp:
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
    (stored,) = read_db(foreman.settings.db_path, "SELECT body FROM jobs WHERE id = ?", (job_id,))[0]
    assert deep in stored  # kept as sent


async def test_a_job_body_is_rewritten_member_by_member(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    body = (
        b'{"model": "llama3.2", "Stream": false, "messages": [{"role": "user", "content": "caf\\u00e9"}],'
        b' "format": {"maximum": 1e400}, "state_webhook_url": null}'
    )
    async with http.post(foreman.url + "/jobs", data=body) as resp:
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
    (stored,) = read_db(foreman.settings.db_path, "SELECT body FROM jobs WHERE id = ?", (job_id,))[0]
    assert stored == (
        b'{"stream":true,"keep_alive":1800,"model": "llama3.2",'
        b'"messages": [{"role": "user", "content": "caf\\u00e9"}],"format": {"maximum": 1e400}}'
    )


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, None),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "invalid character '[' exceeded max depth"),
        (b"[" * (MAX_DEPTH - 1) + b"{}" + b"]" * (MAX_DEPTH - 1), None),
        (b"[" * MAX_DEPTH + b"{}" + b"]" * MAX_DEPTH, "invalid character '{' exceeded max depth"),
        (b"[" * MAX_DEPTH + b"-1.5e3" + b"]" * MAX_DEPTH, None),
        (b"[" * MAX_DEPTH + b"NaN" + b"]" * MAX_DEPTH, "invalid character 'N' looking for beginning of value"),
        (b"[" * MAX_DEPTH + NINES.encode() + b"]" * MAX_DEPTH, None),
        (b"[" * 5000 + b"1 2" + b"]" * 5000, "invalid character '2' after array element"),
        (b'{"a":' * 5000 + b"1 2" + b"}" * 5000, "invalid character '2' after object key:value pair"),
        (b"[" * 5000 + b'"\\udc00"' + b"]" * 5000, "invalid surrogate escape '\\udc00' in string literal"),
    ],
    ids=["10000", "10001", "9999+object", "10000+object", "number-at-10000", "NaN-at-10000", "digits-at-10000",
         "deep-array-syntax", "deep-object-syntax", "deep-surrogate"],
)  # fmt: skip
def test_the_depth_limit_is_gos_exactly(body: bytes, text: str | None) -> None:
    if text is None:
        decode(body)
    else:
        with pytest.raises(BadRequest) as err:
            decode(body)
        assert err.value.message == text


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"not json", "invalid character 'o' in literal null (expecting 'u')"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1,]", "invalid character ']' looking for beginning of value"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 2}', "invalid character '2' after object key:value pair"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"[1.]", "invalid character ']' after decimal point in numeric literal"),
        (b"[1e+]", "invalid character ']' in exponent of numeric literal"),
        (b"[-]", "invalid character ']' in numeric literal"),
        (b"[01]", "invalid character '1' after array element"),
        (b'"a\\x"', "invalid character 'x' in string escape code"),
        (b'"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape"),
        (b'"a\nb"', "invalid character '\\n' in string literal"),
        (b'{"a":"b', "unexpected EOF"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b"{\xff}", "invalid character '\u00ff' looking for beginning of object key string"),
        (b"1x", "invalid character 'x' after top-level value"),
    ],
)
def test_syntax_errors_get_gos_scanner_text(body: bytes, text: str) -> None:
    with pytest.raises(BadRequest) as err:
        decode(body)
    assert err.value.message == text


def test_what_follows_the_value_is_ignored_as_go_does() -> None:
    assert decode(b' {"a": 1} trailing \xff garbage') == ({"a": 1}, False)
    assert decode(b'{"a": "\\ud83d\\ude00"}') == ({"a": "\U0001f600"}, False)  # a pair is fine
