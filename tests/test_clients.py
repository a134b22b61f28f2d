"""Real clients of every API Ollama serves, against a real foreman and the simulated target:
each gets the text it would get from the target directly, streamed and not, and each of
its requests is a job (docs/adr/0027)."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from langchain_ollama import ChatOllama, OllamaEmbeddings

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import ROOT, OllamaFactory

HELLO = "hello there"
JS_DIR = ROOT / "tests" / "js"


async def newest_job(http: aiohttp.ClientSession, foreman: Daemon) -> dict[str, Any]:
    async with http.get(foreman.url + "/jobs?limit=1") as resp:
        (row,) = (await resp.json())["jobs"]
    async with http.get(f"{foreman.url}/jobs/{row['job_id']}?wait=5") as resp:
        job: dict[str, Any] = await resp.json()
    return job


def completion(job: dict[str, Any]) -> str:
    ref = next(a for a in job["artifacts"] if a["name"] == "completion")
    return str(ref["content"])


async def jobs_count(http: aiohttp.ClientSession, foreman: Daemon) -> int:
    async with http.get(foreman.url + "/jobs?limit=500") as resp:
        return len((await resp.json())["jobs"])


# --- Anthropic ---------------------------------------------------------------------------------


def anthropic_client(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="not-needed", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_messages_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, stream: bool
) -> None:
    async def text_from(url: str) -> str:
        messages: Any = [{"role": "user", "content": HELLO}]
        async with anthropic_client(url) as client:
            if stream:
                async with client.messages.stream(model="llama3.2", max_tokens=32, messages=messages) as events:
                    return await events.get_final_text()
            reply = await client.messages.create(model="llama3.2", max_tokens=32, messages=messages)
            return "".join(block.text for block in reply.content if block.type == "text")

    direct = await text_from(sim.url)
    assert direct
    assert await text_from(foreman.url) == direct
    job = await newest_job(http, foreman)
    assert job["endpoint"] == "/v1/messages" and job["state"] == "done"
    assert completion(job) == direct


async def test_an_anthropic_client_gets_anthropic_errors_from_foreman(foreman: Daemon) -> None:
    async with anthropic_client(foreman.url) as client:
        with pytest.raises(anthropic.NotFoundError) as raised:
            await client.messages.create(
                model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
    assert raised.value.status_code == 404
    assert raised.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "no-such-model" in raised.value.body["error"]["message"]  # type: ignore[index]


# --- OpenAI ---------------------------------------------------------------------------------------


def openai_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="not-needed", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_responses_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, stream: bool
) -> None:
    async def text_from(url: str) -> str:
        async with openai_client(url) as client:
            if not stream:
                return (await client.responses.create(model="llama3.2", input=HELLO)).output_text
            parts = []
            async for event in await client.responses.create(model="llama3.2", input=HELLO, stream=True):
                if event.type == "response.output_text.delta":
                    parts.append(event.delta)
            return "".join(parts)

    direct = await text_from(sim.url)
    assert direct
    assert await text_from(foreman.url) == direct
    job = await newest_job(http, foreman)
    assert job["endpoint"] == "/v1/responses" and job["state"] == "done"
    assert completion(job) == direct


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_chat_completions_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, stream: bool
) -> None:
    async def text_from(url: str) -> str:
        messages: Any = [{"role": "user", "content": HELLO}]
        async with openai_client(url) as client:
            if not stream:
                reply = await client.chat.completions.create(model="llama3.2", messages=messages)
                return reply.choices[0].message.content or ""
            parts = []
            async for chunk in await client.chat.completions.create(model="llama3.2", messages=messages, stream=True):
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
            return "".join(parts)

    direct = await text_from(sim.url)
    assert await text_from(foreman.url) == direct
    job = await newest_job(http, foreman)
    assert job["endpoint"] == "/v1/chat/completions" and completion(job) == direct


# --- Ollama (Python) and LangChain ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_the_ollama_python_client_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, ollama_client: OllamaFactory, stream: bool
) -> None:
    async def text_from(url: str) -> str:
        messages = [{"role": "user", "content": HELLO}]
        client = ollama_client(url)
        if not stream:
            return (await client.chat(model="llama3.2", messages=messages)).message.content or ""
        parts = await client.chat("llama3.2", messages, stream=True)
        return "".join([part.message.content or "" async for part in parts])

    direct = await text_from(sim.url)
    assert await text_from(foreman.url) == direct
    job = await newest_job(http, foreman)
    assert job["endpoint"] == "/api/chat" and completion(job) == direct


# langchain-ollama keeps its ollama clients open (it has no close): their sockets are
# collected after the test, which is langchain's habit, not a leak of foreman's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_langchain_ollama_chat_and_embeddings_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    direct_chat, chat = (ChatOllama(model="llama3.2", base_url=url) for url in (sim.url, foreman.url))
    direct = (await direct_chat.ainvoke(HELLO)).content
    assert (await chat.ainvoke(HELLO)).content == direct
    assert completion(await newest_job(http, foreman)) == direct
    streamed = "".join([str(part.content) async for part in chat.astream(HELLO)])
    assert streamed == direct
    before = await jobs_count(http, foreman)
    direct_embed, embed = (OllamaEmbeddings(model="nomic-embed-text", base_url=url) for url in (sim.url, foreman.url))
    assert await embed.aembed_query(HELLO) == await direct_embed.aembed_query(HELLO)
    assert await jobs_count(http, foreman) == before  # embeddings are never jobs
    del direct_chat, chat, direct_embed, embed
    gc.collect()  # their sockets' warnings come here, under this test's filter, not in the next test


# --- Ollama (JavaScript, run by Node) -------------------------------------------------------------

_JS = """
import { Ollama } from 'ollama'
const [host, stream] = [process.argv[2], process.argv[3] === 'stream']
const client = new Ollama({ host })
const messages = [{ role: 'user', content: %s }]
let text = ''
if (stream) {
  const parts = await client.chat({ model: 'llama3.2', messages, stream: true })
  for await (const part of parts) text += part.message.content
} else {
  text = (await client.chat({ model: 'llama3.2', messages })).message.content
}
console.log(JSON.stringify({ text }))
"""


async def _node_chat(url: str, stream: bool) -> str:
    script = JS_DIR / "chat.mjs"
    script.write_text(_JS % json.dumps(HELLO))
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), url, "stream" if stream else "whole", cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return str(json.loads(out)["text"])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("stream", [False, True])
async def test_the_ollama_javascript_client_through_foreman(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, stream: bool
) -> None:
    assert (JS_DIR / "node_modules" / "ollama").is_dir(), "run `make js-deps` (npm ci in tests/js)"
    direct = await _node_chat(sim.url, stream)
    assert direct
    assert await _node_chat(foreman.url, stream) == direct
    job = await newest_job(http, foreman)
    assert job["endpoint"] == "/api/chat" and completion(job) == direct
