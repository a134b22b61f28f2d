"""The one way foreman writes JSON: compact, non-ASCII kept, as Go's encoder writes it."""

from __future__ import annotations

import json
from typing import Any


def dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
