"""The transition table: the lifecycle as data (docs/contract.md section 4)."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from statemachine.states import State


class Trigger(StrEnum):
    LOAD = "load"  # the worker claims the job and makes its model resident
    WORK = "work"  # the model is resident; the request goes to the target
    FINISH = "finish"  # the target answered in full
    REQUEUE = "requeue"  # target unreachable, or the connection broke: try again later
    FAIL = "fail"  # target error, attempts used up, or a caller that can no longer be served
    CANCEL = "cancel"  # the caller went away or asked for it

    def __str__(self) -> str:
        return self.value


class Transition(NamedTuple):
    trigger: Trigger
    sources: tuple[State, ...]
    dest: State


_LIVE = (State.QUEUED, State.LOADING, State.WORKING)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Trigger.LOAD, (State.QUEUED,), State.LOADING),
    Transition(Trigger.WORK, (State.LOADING,), State.WORKING),
    Transition(Trigger.FINISH, (State.WORKING,), State.DONE),
    Transition(Trigger.REQUEUE, (State.LOADING, State.WORKING), State.QUEUED),
    Transition(Trigger.FAIL, _LIVE, State.FAILED),
    Transition(Trigger.CANCEL, _LIVE, State.CANCELLED),
)


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram (`python -m statemachine` writes it for docs/lifecycle.md)."""
    lines = ["stateDiagram-v2", "    [*] --> queued"]
    for t in TRANSITIONS:
        for source in t.sources:
            lines.append(f"    {source.value} --> {t.dest.value}: {t.trigger.value}")
    for state in (State.DONE, State.FAILED, State.CANCELLED):
        lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"
