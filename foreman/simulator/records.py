"""What the simulator remembers about each request, and the change signal tests wait on.

`SimRequest` is the per-request record tests assert against; `Changes` is the single
"something happened" signal that `Simulator.wait_for` sleeps on, so tests never poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Paths whose requests generate tokens; the rest of the recorded paths are embeddings.
GENERATION_PATHS = frozenset(
    {
        "/api/chat",
        "/api/generate",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/messages",
        "/v1/responses",
        "/v1/audio/transcriptions",
    }
)
#: Paths that get a `SimRequest` record.
RECORDED_PATHS = GENERATION_PATHS | {"/api/embed", "/api/embeddings", "/v1/embeddings"}

#: Terminal outcomes of a recorded request.
OUTCOMES = frozenset({"done", "error", "client_closed", "reset", "stalled", "refused_model"})


def now() -> float:
    """The event loop's clock (monotonic), also usable outside a running loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


@dataclass(eq=False)
class SimRequest:
    """One request to an inference-ish endpoint, from arrival to its last byte.

    `kind` says what the request turned out to be: chat, generate, load, unload, embed,
    transcription.
    `fault` names the injected fault it consumed, if any. `headers` are as received.
    """

    id: int
    method: str
    path: str
    model: str | None
    stream: bool
    body: dict[str, Any] | None
    started: float
    ended: float | None = None
    outcome: str | None = None
    status: int | None = None
    chunks_sent: int = 0
    loaded_model: bool = False
    keep_alive: object = None
    client_closed_at: float | None = None
    kind: str = ""
    fault: str | None = None
    load_reason: str | None = None  # when it loaded its model: "cold", or "options" (a reload)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_generation(self) -> bool:
        """True for the paths that run a model (load and unload replies included)."""
        return self.path in GENERATION_PATHS

    def overlaps(self, other: SimRequest) -> bool:
        """Whether the two requests were in flight at the same moment."""
        a_end = self.ended if self.ended is not None else float("inf")
        b_end = other.ended if other.ended is not None else float("inf")
        return self.started < b_end and other.started < a_end

    def to_json(self) -> dict[str, Any]:
        """The record as a plain dict (what `GET /_sim/requests` returns)."""
        return asdict(self)


class Changes:
    """A broadcast "state changed" signal.

    `notify()` is cheap when nobody waits, so it can be called for every streamed chunk.
    """

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def next_change(self) -> asyncio.Future[None]:
        """A future resolved by the next `notify()`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            waiter = self.next_change()
            handle = loop.call_later(remaining, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
