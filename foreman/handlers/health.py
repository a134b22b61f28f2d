"""GET /healthz (is foreman alive, how does it see the target; open without a token) and GET /metrics."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST

from foreman.clock import iso, now
from foreman.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    open_access = True

    async def get(self) -> None:
        services = self.services
        poller = services.poller
        running = services.jobs.running
        worker = services.worker
        self.write_json(
            {
                "status": "ok",
                "degraded": poller.degraded,
                "target": services.settings.ollama_url,
                "last_poll_at": iso(poller.last_poll_at),
                "last_error": poller.last_error,
                "polls_failed": poller.polls_failed,
                "installed_models": None if poller.tags is None else len(poller.tags.model_keys),
                "resident_model": worker.resident,
                "embed_model": services.settings.embed_model,
                "swaps": worker.swaps,
                "queue": await services.store.count_by_state(),
                "queue_by_model": dict(await services.store.queued_by_model()),
                "running": None
                if running is None
                else {
                    "job_id": running.job.id,
                    "model": running.job.model,
                    "state": running.flow.state,
                    "elapsed_s": round(now() - running.started, 3),
                },
                "uptime_s": round(time.time() - services.started_at, 3),
            }
        )


class MetricsHandler(BaseHandler):
    """GET /metrics: Prometheus text format (guarded by the token like every endpoint but /healthz)."""

    async def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(await self.services.metrics.render(self.services))
