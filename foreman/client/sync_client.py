"""`Foreman` and its `Job`: the job API from blocking code, over httpx (docs/adr/0032)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
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


class Foreman:
    """A foreman daemon at `url`. `with Foreman(url) as fm:` closes its connections at the end."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Foreman:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """One request; a refusal raises its ForemanError, no answer at all Unreachable."""
        try:
            response = self._http.request(method, path, timeout=timeout or self.timeout, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(None, f"foreman at {self.url} did not answer: {exc!r}") from exc
        if response.status_code >= 400:
            raise error_for(response.status_code, response.content)
        return response

    def submit(
        self, body: Mapping[str, Any], *, webhook_url: str | None = None, idempotency_key: str | None = None
    ) -> Job:
        """Queue a job (`POST /jobs`): a native /api/chat or /api/generate body."""
        payload, headers = job_body(body, webhook_url, idempotency_key)
        job_id = self.request("POST", "/jobs", json=payload, headers=headers).json()["job_id"]
        return Job(self, {"job_id": job_id, "state": "queued"})

    def job(self, job_id: str) -> Job:
        """The job as it is now; NotFound for an unknown id."""
        return Job(self, {"job_id": job_id}).refresh()

    def jobs(self, state: str | None = None, model: str | None = None, limit: int = 50) -> Iterator[Job]:
        """Every job, newest first, `limit` a page, fetching the next page as it goes (short views:
        `refresh()` one for its result)."""
        before = None
        while True:
            page = self.request("GET", "/jobs", params=jobs_query(state, model, limit, before)).json()
            for view in page["jobs"]:
                yield Job(self, view)
            before = page["next"]
            if before is None:
                return


class Job:
    """One job, as last fetched. `text` and `result` are there once it is done and fetched whole
    (by `refresh` or `wait`); the parts too large to inline are fetched then."""

    def __init__(self, client: Foreman, view: dict[str, Any]) -> None:
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
        return f"<Job {self.id} {self.state}>"

    def refresh(self) -> Job:
        return self._take(self._client.request("GET", f"/jobs/{self.id}").json())

    def _take(self, view: dict[str, Any]) -> Job:
        self.view = view
        self.result, self.text = view.get("result"), inline_text(view)
        result_url, text_url = needs(view)
        if result_url is not None:
            self.result = self._client.request("GET", result_url).json()
        if text_url is not None:
            self.text = self._client.request("GET", text_url).content.decode("utf-8", "replace")
        return self

    def wait(self, timeout: float | None = None, *, resume_for: float = RESUME_FOR) -> Job:
        """Until the job is done, failed or cancelled (TimeoutError past `timeout` seconds). A
        foreman that stops answering is waited for up to `resume_for` seconds (a restart)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff(resume_for)
        while not self.finished:
            left = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"job {self.id} is still {self.state} after {timeout:g}s")
            try:
                view = self._client.request(
                    "GET", f"/jobs/{self.id}", params={"wait": f"{left:.3f}"}, timeout=left + self._client.timeout
                ).json()
            except Unreachable as exc:
                time.sleep(backoff.failed(time.monotonic(), exc))
                continue
            backoff.ok()
            self._take(view)
        return self

    def events(self, *, resume_for: float = RESUME_FOR) -> Iterator[FeedEvent]:
        """The job's feed: its transitions so far, then live ones and progress, until its terminal
        one. A dropped connection is resumed after the last transition (`Last-Event-ID`): nothing
        is lost or repeated; a foreman that does not answer is retried for `resume_for` seconds."""
        cursor = FeedCursor()
        backoff = Backoff(resume_for)
        timeout = httpx.Timeout(self._client.timeout, read=FEED_READ_TIMEOUT)
        while not cursor.ended:
            try:
                with self._client._http.stream(
                    "GET", f"/jobs/{self.id}/events", headers=cursor.headers(), timeout=timeout
                ) as response:
                    if response.status_code == 204:
                        return  # nothing after the last transition we had: the job has ended
                    if response.status_code >= 400:
                        raise error_for(response.status_code, response.read())
                    backoff.ok()
                    parser = Parser()
                    for line in response.iter_lines():
                        message = parser.feed(line)
                        event = cursor.take(message) if message is not None else None
                        if event is not None:
                            yield event
                            if cursor.ended:
                                return
            except httpx.TransportError as exc:
                time.sleep(backoff.failed(time.monotonic(), exc))
                continue
            time.sleep(backoff.failed(time.monotonic(), ConnectionError("the feed ended before the job")))

    def cancel(self) -> Job:
        """Cancel the queued or running job (ForemanError 409 when it had ended)."""
        return self._take(self._client.request("DELETE", f"/jobs/{self.id}").json())

    def artifact(self, name: str) -> bytes:
        """An artifact's bytes (`completion`, `thinking`, `tool_calls`, `response`)."""
        return self._client.request("GET", f"/jobs/{self.id}/artifacts/{name}").content
