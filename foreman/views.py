"""How a job looks in the job API (CONTRACT section 3): built from the store and the worker."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any

from foreman.assemble import artifact_refs
from foreman.clock import iso, now
from foreman.jobs import Job
from foreman.services import Services
from statemachine import State


def drain_order(queued: list[tuple[str, str]], resident: str | None) -> list[str]:
    """The order the worker will take queued jobs (ids) in: drain-by-model from `resident`.

    `queued` is (id, model) in arrival order. Jobs waiting out a retry backoff are counted
    where they stand, as if runnable: a position is a forecast, not a promise.
    """
    by_model: dict[str, deque[str]] = defaultdict(deque)
    for job_id, model in queued:
        by_model[model].append(job_id)
    order: list[str] = []
    taken: set[str] = set()
    arrivals = iter(queued)
    current = resident
    while len(order) < len(queued):
        if current is None or not by_model[current]:
            # A swap: the oldest job not yet taken decides the next model.
            current = next(model for job_id, model in arrivals if job_id not in taken)
        while by_model[current]:
            job_id = by_model[current].popleft()
            taken.add(job_id)
            order.append(job_id)
    return order


async def job_view(services: Services, job: Job, *, detail: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "job_id": job.id,
        "state": job.state,
        "model": job.model,
        "endpoint": job.endpoint,
        "attempt": job.attempt,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
    }
    if job.webhook_url:
        view["state_webhook_url"] = job.webhook_url
    running = services.jobs.running
    if job.state == State.QUEUED.value and detail:
        # The model the worker runs now is the one its queue drains next.
        resident = running.job.model if running is not None else services.worker.resident
        order = drain_order(await services.store.queued_models(), resident)
        view["queue_position"] = order.index(job.id) + 1 if job.id in order else None
    if running is not None and running.job.id == job.id and job.state in (State.LOADING.value, State.WORKING.value):
        view["progress"] = {
            "chunks": running.chunks,
            "eval_count": running.chunks,
            "elapsed_s": round(now() - running.started, 3),
        }
    if job.state in (State.FAILED.value, State.CANCELLED.value):
        view["error"] = job.error
    if job.state == State.DONE.value and detail:
        artifacts = await services.store.artifacts(job.id)
        response = next((a for a in artifacts if a.name == "response"), None)
        view["result"] = json.loads(response.data) if response is not None else None
        view["artifacts"] = artifact_refs(job.id, artifacts, services.settings.inline_artifact_max)
    return view
