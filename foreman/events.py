"""The outbox event of a transition: the JSON a webhook receiver gets (CONTRACT section 5)."""

from __future__ import annotations

from typing import Any

from foreman.clock import iso
from foreman.jobs import Job
from statemachine import Change, State


def build_event(job: Job, event_id: str, previous: State | None, change: Change | None, ts: float) -> dict[str, Any]:
    """Built inside the transition's transaction, from the job as the transition left it."""
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
    if job.state == State.DONE.value:
        event["result"] = extra.get("result")
        event["artifacts"] = extra.get("artifact_refs", [])
    elif job.state in (State.FAILED.value, State.CANCELLED.value):
        event["error"] = job.error
    return event
