"""One job's event feed, followed from the command line: `foreman jobs watch ID` and
`jobs submit FILE --wait` (docs/contract.md section 7, docs/adr/0031).

Stdlib only (urllib, read line by line), like the rest of the operator's commands. A dropped
connection is resumed after the last transition (`Last-Event-ID`), so watching survives a
restart of foreman. `render` turns the events into lines for a person: each state with its
time, a queued job's position, and a progress line (tokens, tokens/s), rewritten in place on
a terminal.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, TextIO

from foreman.sse import FeedCursor, FeedEvent, Parser

READ_TIMEOUT = 45.0  # three missed pings: the connection is dead, reconnect
RESUME_FOR = 60.0  # how long a foreman that does not answer is retried
_PIPE_PROGRESS_EVERY = 5.0  # seconds between progress lines when the output is not a terminal


class WatchRefused(Exception):
    """foreman answered the feed's request with an error (`status`, its `error` text)."""

    def __init__(self, status: int, error: str) -> None:
        self.status, self.error = status, error
        super().__init__(f"{status} {error}")


class WatchUnreachable(Exception):
    """foreman did not answer for RESUME_FOR seconds."""


def follow(url: str, token: str | None, job_id: str, deadline: float | None = None) -> Iterator[FeedEvent]:
    """The job's events, until its terminal one; TimeoutError once `deadline` (monotonic) passes."""
    cursor = FeedCursor()
    connected = False  # a foreman that never answered is reported at once, not retried
    failing_since: float | None = None
    pause = 0.1
    while not cursor.ended:
        headers = cursor.headers()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{url.rstrip('/')}/jobs/{job_id}/events", headers=headers)
        timeout = READ_TIMEOUT if deadline is None else max(0.05, min(READ_TIMEOUT, deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status == 204:
                    return  # nothing after the last transition we had: the job has ended
                connected, failing_since, pause = True, None, 0.1
                parser = Parser()
                for raw in response:
                    message = parser.feed(raw.decode("utf-8", "replace"))
                    event = cursor.take(message) if message is not None else None
                    if event is not None:
                        yield event
                        if cursor.ended:
                            return
                    _check(deadline)
        except urllib.error.HTTPError as exc:
            raise WatchRefused(exc.code, _error_text(exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            _check(deadline)
            exc = getattr(exc, "reason", exc)
            now = time.monotonic()
            failing_since = failing_since if failing_since is not None else now
            if not connected or now - failing_since >= RESUME_FOR:
                raise WatchUnreachable(f"foreman at {url} did not answer: {exc}") from None
        _check(deadline)
        time.sleep(pause)  # the stream ended before the job (a restart), or did not open
        pause = min(pause * 2, 2.0)


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")


def as_json(event: FeedEvent) -> str:
    """One NDJSON line: `{"event": "transition"|"progress", "id", "data"}`."""
    return json.dumps({"event": event.kind, "id": event.id, "data": event.data}, ensure_ascii=False)


class Renderer:
    """Lines for a person: one per state, a queued job's position, a progress line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._progress: dict[str, Any] | None = None
        self._progress_shown = False  # a progress line is on screen, not ended (tty)
        self._progress_printed = 0.0  # when the last progress line went out (not a terminal)
        self._header = False

    def show(self, event: FeedEvent) -> None:
        data = event.data
        if not self._header:
            self._header = True
            print(f"job {data.get('job_id')}  {data.get('model', '')}".rstrip(), file=self.out)
        if event.kind == "progress":
            if data.get("state") == "queued":
                self._line(f"{'':8}  {'queued':<9}  position {data.get('queue_position')}")
            else:
                self._progress = data
                self._show_progress()
            return
        stamp = str(data.get("timestamp") or "")[11:19]
        state = str(data.get("state"))
        detail = ""
        if state == "done":
            detail = self._final(data)
        elif state in ("failed", "cancelled"):
            detail = str(data.get("error") or "")
        elif state == "queued" and data.get("previous_state"):
            detail = f"again (attempt {data.get('attempt')})"
        self._line(f"{stamp:<8}  {state:<9}  {detail}".rstrip())

    @staticmethod
    def _tokens(progress: dict[str, Any]) -> str:
        tokens, elapsed = int(progress.get("eval_count") or 0), float(progress.get("elapsed_s") or 0.0)
        rate = tokens / elapsed if elapsed > 0 else 0.0
        return f"{tokens} tokens  {rate:.1f} tokens/s  {elapsed:.1f}s"

    def _final(self, done: dict[str, Any]) -> str:
        """The target's own count and rate from the result (Ollama's `eval_count`, `eval_duration`
        in ns), else the last progress."""
        result = done.get("result") or {}
        tokens, duration = result.get("eval_count"), result.get("eval_duration")
        if isinstance(tokens, int) and isinstance(duration, int) and duration > 0:
            total = result.get("total_duration")
            took = f"  {total / 1e9:.1f}s" if isinstance(total, int) else ""
            return f"{tokens} tokens  {tokens / (duration / 1e9):.1f} tokens/s{took}"
        return self._tokens(self._progress) if self._progress is not None else ""

    def _show_progress(self) -> None:
        assert self._progress is not None
        text = f"{'':8}  {'':9}  {self._tokens(self._progress)}"
        if self.tty:
            self.out.write("\r" + text + "\033[K")
            self.out.flush()
            self._progress_shown = True
        elif time.monotonic() - self._progress_printed >= _PIPE_PROGRESS_EVERY:
            self._line(text)
            self._progress_printed = time.monotonic()

    def _line(self, text: str) -> None:
        if self._progress_shown:
            self.out.write("\n")
            self._progress_shown = False
        print(text, file=self.out, flush=True)


def watch(url: str, token: str | None, job_id: str, *, json_lines: bool, out: TextIO = sys.stdout) -> str | None:
    """Follow the job to its end, printing it; returns its terminal state (None: ended unseen)."""
    renderer = Renderer(out)
    state = None
    for event in follow(url, token, job_id):
        if json_lines:
            print(as_json(event), file=out, flush=True)
        else:
            renderer.show(event)
        if event.kind == "transition":
            state = event.state
    return state
