"""The OpenAI face, driven by the official `openai` client."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import openai
import pytest

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import read_db

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def openai_client() -> AsyncIterator[Callable[[str], openai.AsyncOpenAI]]:
    clients: list[openai.AsyncOpenAI] = []

    def make(url: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_chat_streamed_and_not_and_completions(
    foreman: Daemon, sim: Simulator, openai_client: Callable[[str], openai.AsyncOpenAI]
) -> None:
    ours, direct = openai_client(foreman.url), openai_client(sim.url)
    reply = await ours.chat.completions.create(model="llama3.2", messages=HELLO)  # type: ignore[arg-type]
    expected = await direct.chat.completions.create(model="llama3.2", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == expected.choices[0].message.content
    assert reply.choices[0].message.content
    stream = await ours.chat.completions.create(model="llama3.2", messages=HELLO, stream=True)  # type: ignore[arg-type]
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(parts) == expected.choices[0].message.content and len(parts) > 2
    completion = await ours.completions.create(model="llama3.2", prompt="why is the sky blue")
    assert completion.choices[0].text
    rows = read_db(foreman.settings.db_path, "SELECT endpoint, state FROM jobs ORDER BY seq")
    assert rows == [("/v1/chat/completions", "done")] * 2 + [("/v1/completions", "done")]


async def test_models_embeddings_and_errors(
    foreman: Daemon, sim: Simulator, openai_client: Callable[[str], openai.AsyncOpenAI]
) -> None:
    client = openai_client(foreman.url)
    models = await client.models.list()
    assert {"llama3.2:latest", "nomic-embed-text:latest"} <= {m.id for m in models.data}
    model = await client.models.retrieve("llama3.2")
    assert model == await openai_client(sim.url).models.retrieve("llama3.2")  # the target's own answer
    assert (model.id, model.object) == ("llama3.2:latest", "model")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("ghost")
    embedded = await client.embeddings.create(model="nomic-embed-text", input=["one", "two"])
    assert len(embedded.data) == 2 and embedded.data[0].embedding
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="ghost", messages=HELLO)  # type: ignore[arg-type]
    assert err.value.status_code == 404 and "model 'ghost' not found" in str(err.value)


async def test_two_concurrent_openai_chats_never_overlap_at_the_target(
    foreman: Daemon, sim: Simulator, openai_client: Callable[[str], openai.AsyncOpenAI]
) -> None:
    sim.token_delay = 0.02
    client = openai_client(foreman.url)
    replies = await asyncio.gather(
        *(
            client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": f"q{i}"}])
            for i in range(2)
        )
    )
    assert all(r.choices[0].message.content for r in replies)
    chats = sorted((r for r in sim.requests if r.path == "/v1/chat/completions"), key=lambda r: r.started)
    assert len(chats) == 2
    for before, after in itertools.pairwise(chats):
        assert before.ended is not None and after.started >= before.ended


async def test_a_client_that_hangs_up_on_a_stream_cancels_its_job(
    foreman: Daemon, sim: Simulator, openai_client: Callable[[str], openai.AsyncOpenAI]
) -> None:
    sim.token_delay = 0.05
    client = openai_client(foreman.url)
    stream = await client.chat.completions.create(
        model="llama3.2",
        messages=HELLO,
        stream=True,
        max_tokens=200,  # type: ignore[arg-type]
    )
    async for _ in stream:
        break
    await stream.close()
    chat = next(r for r in sim.requests if r.path == "/v1/chat/completions")
    await sim.wait_for(lambda: chat.client_closed_at is not None, timeout=2.0)
    job_id = read_db(foreman.settings.db_path, "SELECT id FROM jobs")[0][0]
    await foreman.jobs.wait_terminal(job_id, 5)
    assert read_db(foreman.settings.db_path, "SELECT state FROM jobs") == [("cancelled",)]
