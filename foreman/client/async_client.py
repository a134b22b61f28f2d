"""`AsyncForeman` and its `AsyncJob`: the job API from asyncio code, over httpx (docs/adr/0032).

The same methods as `sync_client.py`, awaited; `jobs()` and `events()` are async iterators.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from foreman.client.common import (
    DEFAULT_URL,
    FEED_READ_TIMEOUT,
    LONG_POLL,
    RESUME_FOR,
    Backoff,
    Unreachable,
    error_for,
    inline_text,
    job_body,
    jobs_query,
    needs,
)
from foreman.sse import TERMINAL_STATES, FeedCursor, FeedEvent, Parser


class AsyncForeman:
    """A foreman daemon at `url`. `async with AsyncForeman(url) as fm:` closes its connections at the end."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncForeman:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """One request; a refusal raises its ForemanError, no answer at all Unreachable."""
        try:
            response = await self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(None, f"foreman at {self.url} did not answer: {exc!r}") from exc
        if response.status_code >= 400:
            raise error_for(response.status_code, response.content)
        return response

    async def submit(
        self, body: Mapping[str, Any], *, webhook_url: str | None = None, idempotency_key: str | None = None
    ) -> AsyncJob:
        """Queue a job (`POST /jobs`): a native /api/chat or /api/generate body."""
        payload, headers = job_body(body, webhook_url, idempotency_key)
        job_id = (await self.request("POST", "/jobs", json=payload, headers=headers)).json()["job_id"]
        return AsyncJob(self, {"job_id": job_id, "state": "queued"})

    async def job(self, job_id: str) -> AsyncJob:
        """The job as it is now; NotFound for an unknown id."""
        return await AsyncJob(self, {"job_id": job_id}).refresh()

    async def jobs(
        self, state: str | None = None, model: str | None = None, limit: int = 50
    ) -> AsyncIterator[AsyncJob]:
        """Every job, newest first, `limit` a page, fetching the next page as it goes (short views:
        `refresh()` one for its result)."""
        before = None
        while True:
            page = (await self.request("GET", "/jobs", params=jobs_query(state, model, limit, before))).json()
            for view in page["jobs"]:
                yield AsyncJob(self, view)
            before = page["next"]
            if before is None:
                return


class AsyncJob:
    """One job, as last fetched. `text` and `result` are there once it is done and fetched whole
    (by `refresh` or `wait`); the parts too large to inline are fetched then."""

    def __init__(self, client: AsyncForeman, view: dict[str, Any]) -> None:
        self._client = client
        self.view = view
        self.result: dict[str, Any] | None = view.get("result")
        self.text: str | None = inline_text(view)

    @property
    def id(self) -> str:
        return str(self.view["job_id"])

    @property
    def state(self) -> str:
        return str(self.view.get("state"))

    @property
    def error(self) -> str | None:
        return self.view.get("error")

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id} {self.state}>"

    async def refresh(self) -> AsyncJob:
        return await self._take((await self._client.request("GET", f"/jobs/{self.id}")).json())

    async def _take(self, view: dict[str, Any]) -> AsyncJob:
        self.view = view
        self.result, self.text = view.get("result"), inline_text(view)
        result_url, text_url = needs(view)
        if result_url is not None:
            self.result = (await self._client.request("GET", result_url)).json()
        if text_url is not None:
            self.text = (await self._client.request("GET", text_url)).content.decode("utf-8", "replace")
        return self

    async def wait(self, timeout: float | None = None, *, resume_for: float = RESUME_FOR) -> AsyncJob:
        """Until the job is done, failed or cancelled (TimeoutError past `timeout` seconds). A
        foreman that stops answering is waited for up to `resume_for` seconds (a restart)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff(resume_for)
        while not self.finished:
            left = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"job {self.id} is still {self.state} after {timeout:g}s")
            try:
                answer = await self._client.request(
                    "GET", f"/jobs/{self.id}", params={"wait": f"{left:.3f}"}, timeout=left + self._client.timeout
                )
            except Unreachable as exc:
                await asyncio.sleep(backoff.failed(time.monotonic(), exc))
                continue
            backoff.ok()
            await self._take(answer.json())
        return self

    async def events(self, *, resume_for: float = RESUME_FOR) -> AsyncIterator[FeedEvent]:
        """The job's feed: its transitions so far, then live ones and progress, until its terminal
        one. A dropped connection is resumed after the last transition (`Last-Event-ID`): nothing
        is lost or repeated; a foreman that does not answer is retried for `resume_for` seconds."""
        cursor = FeedCursor()
        backoff = Backoff(resume_for)
        timeout = httpx.Timeout(self._client.timeout, read=FEED_READ_TIMEOUT)
        while not cursor.ended:
            try:
                async with self._client._http.stream(
                    "GET", f"/jobs/{self.id}/events", headers=cursor.headers(), timeout=timeout
                ) as response:
                    if response.status_code == 204:
                        return  # nothing after the last transition we had: the job has ended
                    if response.status_code >= 400:
                        raise error_for(response.status_code, await response.aread())
                    backoff.ok()
                    parser = Parser()
                    async for line in response.aiter_lines():
                        message = parser.feed(line)
                        event = cursor.take(message) if message is not None else None
                        if event is not None:
                            yield event
                            if cursor.ended:
                                return
            except httpx.TransportError as exc:
                await asyncio.sleep(backoff.failed(time.monotonic(), exc))
                continue
            await asyncio.sleep(backoff.failed(time.monotonic(), ConnectionError("the feed ended before the job")))

    async def cancel(self) -> AsyncJob:
        """Cancel the queued or running job (ForemanError 409 when it had ended)."""
        return await self._take((await self._client.request("DELETE", f"/jobs/{self.id}")).json())

    async def artifact(self, name: str) -> bytes:
        """An artifact's bytes (`completion`, `thinking`, `tool_calls`, `response`)."""
        return (await self._client.request("GET", f"/jobs/{self.id}/artifacts/{name}")).content
