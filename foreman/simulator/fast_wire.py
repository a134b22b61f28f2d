"""The fast target's wire details: timestamps, request bodies, `keep_alive`, errors.

The Tornado simulator's `wire.py` does the same more faithfully (Go's decoder error texts)
but imports Tornado; the fast target keeps to the standard library.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta
from email.utils import formatdate
from typing import Any

_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)  # Go's MaxInt64 nanoseconds
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class Refused(Exception):
    """An Ollama error answer: `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Clock:
    """`created_at` (RFC 3339, nanoseconds trimmed) and the HTTP `Date`, cached per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._date = b""

    def _tick(self, second: int) -> None:
        self._second = second
        self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._date = formatdate(second, usegmt=True).encode()

    def created_at(self) -> bytes:
        second, frac = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._tick(second)
        if frac:
            return (f"{self._prefix}.{frac:09d}".rstrip("0") + "Z").encode()
        return (self._prefix + "Z").encode()

    def date(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._tick(second)
        return self._date


def local_time(wall: float) -> str:
    """Server-local time with offset, as `/api/tags` and `/api/ps` give it; inf is Go's "forever"."""
    now = datetime.now().astimezone()
    text = (now + _FOREVER if math.isinf(wall) else datetime.fromtimestamp(wall).astimezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def decode(raw: bytes) -> dict[str, Any]:
    """A JSON object request body, or a 400 (Python's error text, not Go's)."""
    if not raw.strip():
        raise Refused(400, "missing request body")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise Refused(400, f"invalid JSON: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(400, "json: cannot unmarshal into Go value of type api.Request")
    return value


def keep_alive(value: object) -> float | None:
    """`keep_alive` in seconds as Ollama decodes it (a number is seconds, a string a Go duration,
    negative is forever); None when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused(400, f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, int | float):
        return math.inf if value < 0 else float(value)
    text = value.strip()
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text.lstrip("+"))
    if body == "0":
        return 0.0
    if body.replace(".", "", 1).isdigit():
        raise Refused(400, f'time: missing unit in duration "{value}"')
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise Refused(400, f'time: invalid duration "{value}"')
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return math.inf if sign < 0 and seconds > 0 else seconds


def num_predict(options: object) -> int | None:
    """`options.num_predict`, numbers truncated; another type is a 400."""
    if not isinstance(options, dict) or options.get("num_predict") is None:
        return None
    value = options["num_predict"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(400, 'option "num_predict" must be of type integer')
    return int(value)
