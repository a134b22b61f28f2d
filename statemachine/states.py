"""The states a job can be in."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED})
ACTIVE = frozenset({State.LOADING, State.WORKING})
