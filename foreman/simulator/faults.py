"""Failure injection: the `Fault` description and the queue that hands faults out.

A fault is consumed by the first matching request, in injection order. By default only
requests that generate tokens match; load/unload replies match when `on_load` is set, and
embedding requests only when the fault's `path` names their endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .models import model_key
from .records import GENERATION_PATHS

FAULT_KINDS = frozenset({"reset", "stall", "status", "error_line"})


@dataclass
class Fault:
    """One injected failure.

    * ``reset``: after ``after_chunks`` lines (or before a non-streamed body) abort the TCP
      connection with an RST.
    * ``stall``: after ``after_chunks`` lines send nothing for ``seconds`` (``None``: until
      the client goes away), then carry on.
    * ``status``: answer ``status`` with ``{"error": message}`` before any byte.
    * ``error_line``: after ``after_chunks`` lines send ``{"error": message}`` and end the
      stream; a non-streamed request gets a 500 with that error.
    """

    kind: str
    after_chunks: int = 0
    seconds: float | None = None
    status: int = 500
    message: str = "simulated failure"
    path: str | None = None
    model: str | None = None
    times: int = 1
    on_load: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if self.after_chunks < 0 or self.times < 1:
            raise ValueError("after_chunks must be >= 0 and times >= 1")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build from a control-endpoint body; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class FaultQueue:
    """Injected faults with how many uses each has left."""

    def __init__(self) -> None:
        self._entries: list[list[Any]] = []  # [fault, remaining uses]

    def add(self, fault: Fault) -> None:
        self._entries.append([fault, fault.times])

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def pending(self) -> list[Fault]:
        return [entry[0] for entry in self._entries]

    def take(self, path: str, model: str | None, *, load_only: bool) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        if not self._entries:
            return None
        key = model_key(model) if model else None
        for entry in self._entries:
            fault: Fault = entry[0]
            if fault.path is not None:
                if fault.path != path:
                    continue
            elif path not in GENERATION_PATHS:
                continue
            if fault.model is not None and model_key(fault.model) != key:
                continue
            if load_only and not fault.on_load:
                continue
            entry[1] -= 1
            if entry[1] <= 0:
                self._entries.remove(entry)
            return fault
        return None
