"""A job's events: the JSON a webhook receiver gets (docs/contract.md section 5), which the event
feeds send as it is (`GET /jobs/{id}/events`, `GET /events`; docs/adr/0030).

`build_event` makes the whole body, inside the transition's transaction. What is stored
of it depends on the job: with a webhook URL, the body itself (it is sent from the outbox);
without one, the history only (`stored_body`): a `done` event does not repeat the result
and artifacts stored beside it. A feed that replays such an event puts them back from the
artifacts (`completed_body`), so it sends the body a webhook would have got.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from foreman.accounting import cost
from foreman.clock import iso
from foreman.compact_json import dump
from statemachine import TERMINAL, Change, State

# The keys of a `done` event that are not stored for a job without a webhook URL.
_DONE_ONLY = ("result", "result_url", "artifacts")


class EventSource(NamedTuple):
    """The columns of a job an event is built from, as the transition left them."""

    id: str
    state: str
    model: str
    attempt: int
    error: str | None
    webhook_url: str | None
    runner: str
    created_at: float
    started_at: float | None
    working_at: float | None
    finished_at: float | None
    swap_reason: str | None
    swap_from: str | None
    load_duration: int | None
    ran_after: int
    jumped: int
    eval_count: int | None
    eval_duration: int | None


def build_event(
    job: EventSource, event_id: str, previous: State | None, change: Change | None, ts: float
) -> dict[str, Any]:
    """The whole body of the event, as a webhook receiver gets it."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "job_id": job.id,
        "state": job.state,
        "previous_state": previous.value if previous else None,
        "timestamp": iso(ts),
        "model": job.model,
        "attempt": job.attempt,
    }
    extra = change.extra if change else {}
    if job.state in (State.DONE.value, State.FAILED.value, State.CANCELLED.value):
        event.update(cost(job, ts))
    if job.state == State.DONE.value:
        event["result"] = extra.get("result")
        if extra.get("result_url"):  # the result was too large to inline (inline_artifact_max)
            event["result_url"] = extra["result_url"]
        event["artifacts"] = extra.get("artifact_refs", [])
    elif job.state in (State.FAILED.value, State.CANCELLED.value):
        event["error"] = job.error
    return event


def stored_body(event: Mapping[str, Any], webhook_url: str | None) -> dict[str, Any]:
    """What the outbox keeps of an event: all of it for a job with a webhook (it is sent from
    there), the history only for the others (docs/adr/0010, 0030)."""
    if webhook_url or event["state"] != State.DONE.value:
        return dict(event)
    return {k: v for k, v in event.items() if k not in _DONE_ONLY}


def completed_body(stored: Mapping[str, Any], result: Mapping[str, Any], artifacts: list[Any]) -> dict[str, Any]:
    """A stored history-only `done` event with its result and artifacts put back, in the order
    `build_event` writes them (`result` and maybe `result_url` from `assemble.result_fields`)."""
    body = {k: v for k, v in stored.items() if k not in _DONE_ONLY}
    body.update(result)
    body["artifacts"] = artifacts
    return body


class Event:
    """One committed event, as the feeds send it: its id, job, state, model and whole body.

    `data` is the body's JSON, made once and only when someone sends it (or given: the
    bytes the outbox holds, when they are the whole body)."""

    __slots__ = ("_data", "body", "id", "job_id", "model", "state")

    def __init__(self, body: dict[str, Any], data: bytes | None = None) -> None:
        self.body = body
        self.id: str = body["event_id"]
        self.job_id: str = body["job_id"]
        self.state: str = body["state"]
        self.model: str = body["model"]
        self._data = data

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = dump(self.body)
        return self._data

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def __repr__(self) -> str:
        return f"Event({self.id} job={self.job_id} {self.state})"
