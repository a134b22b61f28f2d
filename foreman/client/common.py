"""What both clients share: the errors, what a job's view says, and the pauses between
reconnections (docs/contract.md section 8, docs/adr/0032). Where a reader of a job's feed
stands (`FeedCursor`) is `foreman/sse.py`'s, shared with the CLI.

Nothing here does I/O; `sync_client.py` and `async_client.py` do the same requests, one
blocking, one awaited.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
FEED_READ_TIMEOUT = 45.0  # three missed pings (the feed pings every 15 s): the connection is dead
LONG_POLL = 60.0  # seconds per `GET /jobs/{id}?wait=` while waiting
RESUME_FOR = 60.0  # how long a feed or a wait keeps reconnecting to a foreman that does not answer
FIRST_PAUSE, MAX_PAUSE = 0.1, 2.0  # between reconnection attempts, doubling


class ForemanError(Exception):
    """foreman refused a request: `status` is its HTTP status, `error` its `error` text."""

    def __init__(self, status: int | None, error: str) -> None:
        self.status = status
        self.error = error
        super().__init__(f"{status} {error}" if status is not None else error)


class Unauthorized(ForemanError):
    """401: the token is missing or wrong."""


class NotFound(ForemanError):
    """404: no such job (or artifact, or model)."""


class Busy(ForemanError):
    """503: the queue is full, foreman is stopping, or its storage refuses writes; try again later."""


class Unreachable(ForemanError):
    """No answer from foreman at all (refused, reset, timed out); `status` is None."""


_BY_STATUS: dict[int, type[ForemanError]] = {401: Unauthorized, 404: NotFound, 503: Busy}


def error_for(status: int, body: bytes) -> ForemanError:
    """The exception for a refusal, with foreman's `{"error": ...}` text (or the body itself)."""
    try:
        decoded = json.loads(body)
        text = str(decoded["error"]) if isinstance(decoded, dict) and "error" in decoded else body.decode()
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace")
    return _BY_STATUS.get(status, ForemanError)(status, text or f"status {status}")


def job_body(
    body: Mapping[str, Any], webhook_url: str | None, idempotency_key: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON and headers of `POST /jobs`."""
    payload = dict(body)
    if webhook_url is not None:
        payload["state_webhook_url"] = webhook_url
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return payload, headers


def jobs_query(state: str | None, model: str | None, limit: int, before: str | None) -> dict[str, str]:
    query = {"limit": str(limit)}
    for name, value in (("state", state), ("model", model), ("before", before)):
        if value is not None:
            query[name] = value
    return query


def needs(view: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The URLs to fetch for a done job's `result` and `text` when they were too large to inline."""
    if view.get("state") != "done":
        return None, None
    result_url = view.get("result_url") if view.get("result") is None else None
    completion = next((a for a in view.get("artifacts") or [] if a.get("name") == "completion"), None)
    text_url = completion["url"] if completion is not None and "content" not in completion else None
    return result_url, text_url


def inline_text(view: Mapping[str, Any]) -> str | None:
    completion = next((a for a in view.get("artifacts") or [] if a.get("name") == "completion"), None)
    if completion is None or "content" not in completion:
        return None
    return str(completion["content"])


class Backoff:
    """Pauses between reconnections, and when to give up (`RESUME_FOR` of failing in a row)."""

    def __init__(self, resume_for: float) -> None:
        self.resume_for = resume_for
        self._pause = FIRST_PAUSE
        self._failing_since: float | None = None

    def ok(self) -> None:
        self._pause = FIRST_PAUSE
        self._failing_since = None

    def failed(self, now: float, error: Exception) -> float:
        """The pause before the next try; raises Unreachable once failing for `resume_for`."""
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.resume_for:
            raise Unreachable(None, f"foreman did not answer for {self.resume_for:g}s: {error}") from error
        pause, self._pause = self._pause, min(self._pause * 2, MAX_PAUSE)
        return pause
