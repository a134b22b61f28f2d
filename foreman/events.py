"""The outbox event of a transition: the JSON a webhook receiver gets (docs/contract.md section 5)."""

from __future__ import annotations

from typing import Any, NamedTuple

from foreman.accounting import cost
from foreman.clock import iso
from statemachine import Change, State


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
    """Built inside the transition's transaction. Without a webhook URL the event is history
    only, so a `done` event does not repeat the result and artifacts stored beside it."""
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
    if job.state == State.DONE.value and job.webhook_url:
        event["result"] = extra.get("result")
        if extra.get("result_url"):  # the result was too large to inline (inline_artifact_max)
            event["result_url"] = extra["result_url"]
        event["artifacts"] = extra.get("artifact_refs", [])
    elif job.state in (State.FAILED.value, State.CANCELLED.value):
        event["error"] = job.error
    return event
