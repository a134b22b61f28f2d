"""The read side of jobs: what the job API, the event feeds, /healthz and /metrics show
(docs/contract.md section 3).

Handlers read jobs only through `JobViews`, built from the store (the jobs table and the
outbox's history) and a look at the worker (`WorkerState`: the running job and the
resident model), never from either directly.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any, Protocol

from foreman.accounting import cost
from foreman.assemble import artifact_ref, result_fields
from foreman.clock import iso, now
from foreman.events import Event, completed_body
from foreman.job import Job
from foreman.store import Artifact, JobsTable, Outbox
from foreman.store.health import StorageHealth
from statemachine import State


class RunningJob(Protocol):
    job: Job
    chunks: int
    started: float

    @property
    def state(self) -> str: ...


class WorkerState(Protocol):
    @property
    def running(self) -> RunningJob | None: ...

    @property
    def resident(self) -> str | None: ...

    @property
    def resident_runner(self) -> str | None: ...

    @property
    def swaps(self) -> int: ...

    @property
    def swaps_by_reason(self) -> dict[str, int]: ...

    @property
    def loading_share(self) -> float | None: ...


def drain_order(queued: list[tuple[str, str]], resident: str | None) -> list[str]:
    """The order the worker will take queued jobs (ids) in: drain-by-runner from `resident`
    (docs/adr/0029; `max_wait` jumps are not foreseen).

    `queued` is (id, runner) in arrival order. Jobs waiting out a retry backoff are counted
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


class JobViews:
    def __init__(self, store: JobsTable, outbox: Outbox, worker: WorkerState, inline_artifact_max: int) -> None:
        self._store = store
        self._outbox = outbox
        self._worker = worker
        self._inline_max = inline_artifact_max

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get_job(job_id)

    async def page(self, *, state: str | None, model: str | None, before: str | None, limit: int) -> list[Job]:
        """Newest first; `before` is a job id (the `next` of the previous page)."""
        return await self._store.list_jobs(state=state, model=model, before=before, limit=limit)

    async def artifact(self, job_id: str, name: str) -> Artifact | None:
        return await self._store.artifact(job_id, name)

    async def counts(self) -> dict[str, int]:
        """Unfinished jobs by state."""
        return await self._store.count_by_state()

    async def queued_by_model(self) -> list[tuple[str, int]]:
        return await self._store.queued_by_model()

    @property
    def resident(self) -> str | None:
        return self._worker.resident

    @property
    def swaps(self) -> int:
        return self._worker.swaps

    @property
    def swaps_by_reason(self) -> dict[str, int]:
        return self._worker.swaps_by_reason

    @property
    def loading_share(self) -> float | None:
        return self._worker.loading_share

    @property
    def storage(self) -> StorageHealth:
        return self._store.health

    def running(self) -> dict[str, Any] | None:
        """The job the worker runs now, for /healthz."""
        running = self._worker.running
        if running is None:
            return None
        return {
            "job_id": running.job.id,
            "model": running.job.model,
            "state": running.state,
            "elapsed_s": round(now() - running.started, 3),
        }

    async def events(self, job_id: str) -> list[Event]:
        """The job's events so far, in order, each with the body its webhook gets: a history-only
        `done` event gets its result and artifacts back from the artifacts (docs/adr/0030)."""
        events = []
        for payload, webhook_url in await self._outbox.history(job_id):
            body = json.loads(payload)
            if body["state"] == State.DONE.value and not webhook_url:
                result, artifacts = await self._result(job_id)
                events.append(Event(completed_body(body, result, artifacts)))
            else:
                events.append(Event(body, payload))
        return events

    async def _result(self, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A done job's `result` (or `result_url`) and `artifacts`, as its view and its events show them."""
        heads = await self._store.artifact_heads(job_id, self._inline_max)
        response = next((h for h in heads if h.name == "response"), None)
        if response is None:
            result = result_fields(job_id, None, 0, self._inline_max)
        else:
            result = result_fields(job_id, response.data, response.size, self._inline_max)
        return result, [artifact_ref(job_id, head, self._inline_max) for head in heads]

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """`{"chunks", "eval_count", "elapsed_s"}` so far while the worker runs `job_id`, else None."""
        running = self._worker.running
        if running is None or running.job.id != job_id:
            return None
        return {
            "chunks": running.chunks,
            "eval_count": running.chunks,
            "elapsed_s": round(now() - running.started, 3),
        }

    def working(self) -> tuple[Job, dict[str, Any]] | None:
        """The job the worker runs while it is `working`, and its progress."""
        running = self._worker.running
        if running is None or running.state != State.WORKING.value:
            return None
        progress = self.progress(running.job.id)
        return None if progress is None else (running.job, progress)

    async def queue_position(self, job_id: str) -> int | None:
        """Where a queued job stands (1 runs next; a forecast by drain order), None if not queued."""
        running = self._worker.running
        # The model the worker runs now is the one its queue drains next.
        resident = running.job.runner if running is not None else self._worker.resident_runner
        order = drain_order(await self._store.queued_runners(), resident)
        return order.index(job_id) + 1 if job_id in order else None

    async def view(self, job: Job, *, detail: bool = True) -> dict[str, Any]:
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
        view.update(cost(job))  # timings, swap, ran_after, jumped; eval_count and tokens_per_s when done
        if job.state == State.QUEUED.value and detail:
            view["queue_position"] = await self.queue_position(job.id)
        if job.state in (State.LOADING.value, State.WORKING.value):
            progress = self.progress(job.id)
            if progress is not None:
                view["progress"] = progress
        if job.state in (State.FAILED.value, State.CANCELLED.value):
            view["error"] = job.error
        if job.state == State.DONE.value and detail:
            result, artifacts = await self._result(job.id)
            if "result_url" in result and not any(a["name"] == "response" for a in artifacts):
                result = {"result": None}  # no response artifact at all: nothing to point at
            view.update(result)
            view["artifacts"] = artifacts
        return view
