"""Server-Sent Events on the wire: the frames foreman's event feeds write, and the parser their
readers use (docs/adr/0031; the WHATWG "server-sent events" framing).

Stdlib only: the daemon's feed handlers, the Python client (`foreman.client`) and the
operator CLI share it. A transition is an unnamed event (type `message`) whose `id` is its
`event_id` and whose `data` is its webhook body; `progress` and `dropped` are named events
without an id, so a reader's last event id is always a transition's (resuming after it
loses and repeats nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PING = b": ping\n\n"
PROGRESS = "progress"
DROPPED = "dropped"
TRANSITION = "message"  # the SSE type of an event without an `event:` field
TERMINAL_STATES = frozenset({"done", "failed", "cancelled"})


def frame(data: bytes, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One event: `event:` and `id:` when given, one `data:` line per line of `data`."""
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"


def retry(milliseconds: int) -> bytes:
    """How long a reader (a browser's EventSource) waits before reconnecting."""
    return f"retry: {milliseconds}\n\n".encode()


@dataclass(frozen=True)
class Message:
    """One event as read: its type, its data, and its own `id` field (None for progress)."""

    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_transition(self) -> bool:
        return self.event == TRANSITION

    @property
    def terminal(self) -> bool:
        """A transition into done, failed or cancelled: a job's feed ends after it."""
        return self.is_transition and self.json().get("state") in TERMINAL_STATES


class Parser:
    """Lines in (without their line ending), whole messages out, as the SSE standard reads them."""

    def __init__(self) -> None:
        self.last_id: str | None = None  # the last `id` seen: what Last-Event-ID resumes after
        self.retry: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> Message | None:
        """The message that `line` completes (a blank line ends one), else None."""
        line = line.rstrip("\r\n")
        if not line:
            message = None
            if self._data:
                message = Message(self._event or TRANSITION, "\n".join(self._data), self._id)
            self._reset()
            return message
        if line.startswith(":"):
            return None  # a comment: `: ping`
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


@dataclass(frozen=True)
class FeedEvent:
    """One event of a job's feed. `kind`: "transition" (its `id` is the `event_id` and `data` the
    webhook body) or "progress" (`data`: chunks, eval_count, elapsed_s; or a queued job's
    queue_position), without an id."""

    kind: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def state(self) -> str | None:
        return self.data.get("state")

    @property
    def terminal(self) -> bool:
        return self.kind == "transition" and self.state in TERMINAL_STATES


class FeedCursor:
    """Where a reader of one job's feed stands: the last transition it got (what
    `Last-Event-ID` resumes after) and whether the job has ended."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.ended = False
        self._seen: set[str] = set()

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def take(self, message: Message) -> FeedEvent | None:
        """The event of a message, None for one to skip (a transition seen already)."""
        if message.event == DROPPED:
            return None  # the reader fell behind: it reconnects and resumes after last_id
        if message.event == PROGRESS:
            return FeedEvent("progress", message.json())
        if not message.is_transition or message.id is None or message.id in self._seen:
            return None
        self._seen.add(message.id)
        self.last_id = message.id
        event = FeedEvent("transition", message.json(), message.id)
        self.ended = event.terminal
        return event
