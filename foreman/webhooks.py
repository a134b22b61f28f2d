"""For webhook receivers: check a delivery foreman signed, and forget deliveries seen before
(docs/contract.md section 5).

Usable from any framework: a delivery is its raw body (bytes) and its headers (any mapping,
names in any case). Stdlib only; the checks are `foreman/signing.py`'s, which the daemon signs
with and `python -m foreman webhook verify` runs too::

    event = verify(body, headers, secret)          # raises InvalidSignature
    if seen.is_new(event["event_id"]):             # seen = Deduplicator()
        handle(event)
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from foreman.signing import verify_delivery

DEFAULT_TOLERANCE = 300.0  # seconds: the Standard Webhooks libraries' five minutes


class InvalidSignature(ValueError):
    """The delivery is not one foreman signed with this secret, or its timestamp is too old."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def verify(
    body: bytes, headers: Mapping[str, str], secret: str, *, tolerance: float | None = DEFAULT_TOLERANCE
) -> dict[str, Any]:
    """The event of a delivery whose signatures hold, else InvalidSignature.

    Both signatures must match: the Standard Webhooks one (`webhook-signature` over
    `id.timestamp.body`) and `X-Foreman-Signature` (over the body). `webhook-timestamp` must be
    within `tolerance` seconds of now (None: any age, for deliveries saved earlier), so a
    recorded delivery cannot be replayed later. `secret` is foreman's `webhook_secret`.
    """
    problems = verify_delivery(secret, headers, body, tolerance)
    if problems:
        raise InvalidSignature(problems)
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise InvalidSignature(["the body is not a JSON object"])
    return event


class Deduplicator:
    """The `event_id`s seen lately (at most `size`, the oldest forgotten first), so that
    at-least-once deliveries reach a handler once. Thread-safe (Flask runs handlers in threads).

    `is_new(event_id)` is True the first time and records it; call `forget(event_id)` when
    handling failed, so that foreman's retry is handled."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def is_new(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._seen:
                self._seen.move_to_end(event_id)
                return False
            self._seen[event_id] = None
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def forget(self, event_id: str) -> None:
        with self._lock:
            self._seen.pop(event_id, None)

    def __contains__(self, event_id: object) -> bool:
        with self._lock:
            return event_id in self._seen

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
