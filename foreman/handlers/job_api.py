"""foreman's own job API (docs/contract.md section 3): submit now, be told as it moves, collect later."""

from __future__ import annotations

import math
import re

from foreman.config import Settings
from foreman.errors import BadRequest, Conflict, NotFound
from foreman.handlers.base import BaseHandler, BodyHandler
from foreman.job import Job, model_key
from foreman.job_service import JobService
from foreman.job_views import JobViews
from foreman.poller import Poller
from foreman.requests import parse_job
from foreman.webhook_client import WebhookClient, WebhookRefused
from statemachine import TERMINAL, State

_MAX_LIMIT = 500
_MAX_WAIT = 300.0
# Numbers in query strings, ASCII only (Python's int() and float() also take "1_000", other
# scripts' digits, "nan" and "inf").
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class JobAPIHandler(BaseHandler):
    def initialize(self, settings: Settings, jobs: JobService, views: JobViews) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.jobs = jobs
        self.views = views


class JobsHandler(BodyHandler, JobAPIHandler):
    def initialize(  # type: ignore[override]
        self, settings: Settings, jobs: JobService, views: JobViews, poller: Poller, webhooks: WebhookClient
    ) -> None:
        super().initialize(settings, jobs, views)
        self.poller = poller
        self.webhooks = webhooks

    async def post(self) -> None:
        """202 {"job_id"}: validated (body, model, webhook URL), durable, queued."""
        key = self.request.headers.get("Idempotency-Key") or None
        sub = parse_job(self.body, keep_alive=self.config.worker_keep_alive, idempotency_key=key)
        await self.poller.require_model(sub.name)
        if sub.webhook_url is not None:
            try:
                await self.webhooks.check_url(sub.webhook_url)
            except WebhookRefused as exc:
                raise BadRequest(f"state_webhook_url refused: {exc}") from None
        job_id = await self.jobs.submit(sub)
        self.set_header("X-Foreman-Job-Id", job_id)
        self.write_json({"job_id": job_id}, status=202)

    async def get(self) -> None:
        """{"jobs": [...], "next": id | null}, newest first."""
        self.check_access()
        state = self.get_query_argument("state", None)
        if state is not None and state not in {s.value for s in State}:
            raise BadRequest(f"unknown state {state!r}")
        model = self.get_query_argument("model", None)
        limit = _int_argument(self, "limit", 50)
        if not 1 <= limit <= _MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {_MAX_LIMIT}")
        jobs = await self.views.page(
            state=state,
            model=model_key(model) if model else None,
            before=self.get_query_argument("before", None),
            limit=limit + 1,
        )
        page = jobs[:limit]
        views = [await self.views.view(job, detail=False) for job in page]
        self.write_json({"jobs": views, "next": page[-1].id if len(jobs) > limit else None})


class JobHandler(JobAPIHandler):
    async def get(self, job_id: str) -> None:
        wait = _number_argument(self, "wait")
        if wait is not None:
            await self.jobs.wait_terminal(job_id, min(max(wait, 0.0), _MAX_WAIT))
        self.write_json(await self.views.view(await _job(self, job_id)))

    async def delete(self, job_id: str) -> None:
        """Cancel a queued or running job (running: its upstream request is closed)."""
        job = await _job(self, job_id)
        if State(job.state) in TERMINAL:
            raise Conflict(f"job {job_id} is already {job.state}")
        await self.jobs.cancel(job_id, "cancelled through the job API")
        await self.jobs.wait_terminal(job_id, 10.0)  # a running job ends at the worker's hand
        self.write_json(await self.views.view(await _job(self, job_id)))


class ArtifactHandler(JobAPIHandler):
    async def get(self, job_id: str, name: str) -> None:
        await _job(self, job_id)
        artifact = await self.views.artifact(job_id, name)
        if artifact is None:
            raise NotFound(f"job {job_id} has no artifact {name!r}")
        self.set_header("Content-Type", artifact.content_type)
        self.finish(artifact.data)


async def _job(handler: JobAPIHandler, job_id: str) -> Job:
    job = await handler.views.get(job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def _int_argument(handler: BaseHandler, name: str, default: int) -> int:
    value = handler.get_query_argument(name, None)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value.strip()):
        raise BadRequest(f"{name} must be a whole number")
    try:
        return int(value)
    except ValueError:  # more digits than Python converts
        raise BadRequest(f"{name} must be a whole number") from None


def _number_argument(handler: BaseHandler, name: str) -> float | None:
    """A number of seconds written in decimal: not `nan`, `inf` or one too large to be finite."""
    value = handler.get_query_argument(name, None)
    if value is None:
        return None
    number = float(value) if _DECIMAL.fullmatch(value.strip()) else math.nan
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number of seconds, not {value!r}")
    return number
