"""GET /healthz (is foreman alive, how does it see the target; open without a token) and GET /metrics."""

from __future__ import annotations

import time

from foreman.clock import iso
from foreman.config import Settings, redacted
from foreman.handlers.base import BaseHandler
from foreman.job_views import JobViews
from foreman.metrics import CONTENT_TYPE, Metrics
from foreman.poller import Poller


class HealthHandler(BaseHandler):
    open_access = True

    def initialize(self, settings: Settings, views: JobViews, poller: Poller, started_at: float) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.views = views
        self.poller = poller
        self.started_at = started_at

    async def get(self) -> None:
        """200 while foreman can take work; 503 `unhealthy` while its database takes no writes
        (full, locked, lost: `storage` says why; docs/adr/0026)."""
        poller, views = self.poller, self.views
        storage = views.storage
        self.write_json(
            {
                "status": "ok" if storage.ok else "unhealthy",
                "storage": {"ok": storage.ok, "problem": storage.reason, "since": iso(storage.since)},
                "degraded": poller.degraded,
                "target": redacted(self.config.ollama_url),
                "last_poll_at": iso(poller.last_poll_at),
                "last_error": poller.last_error,
                "polls_failed": poller.polls_failed,
                "installed_models": None if poller.tags is None else len(poller.tags.model_keys),
                "resident_model": views.resident,
                "embed_model": self.config.embed_model,
                "swaps": views.swaps,
                "swaps_by_reason": views.swaps_by_reason,
                "loading_share": views.loading_share,
                "queue": await views.counts(),
                "max_queue": self.config.max_queue,
                "queue_by_model": dict(await views.queued_by_model()),
                "running": views.running(),
                "uptime_s": round(time.time() - self.started_at, 3),
            },
            status=200 if storage.ok else 503,
        )


class MetricsHandler(BaseHandler):
    """GET /metrics: Prometheus text format (guarded by the token like every endpoint but /healthz)."""

    def initialize(self, settings: Settings, views: JobViews, metrics: Metrics) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.views = views
        self.metrics = metrics

    async def get(self) -> None:
        counts, by_model = await self.views.counts(), await self.views.queued_by_model()
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.render(counts, by_model))
