"""The route table and the Tornado application (`make_app`): each handler gets what it uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tornado.log import access_log
from tornado.web import Application, RequestHandler

from foreman.config import Settings
from foreman.handlers.base import NotFoundHandler
from foreman.handlers.embed import EmbedHandler
from foreman.handlers.health import HealthHandler, MetricsHandler
from foreman.handlers.inventory import ManagementHandler, PsHandler, ShowHandler, TagsHandler, VersionHandler
from foreman.handlers.job_api import ArtifactHandler, JobHandler, JobsHandler
from foreman.handlers.ollama import GenerationHandler, RootHandler
from foreman.handlers.openai import ModelHandler, ModelsHandler, OpenAIEmbedHandler, OpenAIGenerationHandler
from foreman.job import CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS
from foreman.job_service import JobService
from foreman.job_views import JobViews
from foreman.metrics import Metrics
from foreman.poller import Poller
from foreman.target import TargetClient
from foreman.webhook_client import WebhookClient


@dataclass(frozen=True)
class Face:
    """The parts of a daemon its HTTP face reaches, handed out per route by `make_app`."""

    settings: Settings
    jobs: JobService
    views: JobViews
    poller: Poller
    target: TargetClient  # the worker's and the face's pool
    embed_target: TargetClient  # the embeddings' own pool: never behind a generation
    webhooks: WebhookClient
    metrics: Metrics
    started_at: float


def make_app(face: Face) -> Application:
    base: dict[str, Any] = {"settings": face.settings}
    proxy = {**base, "target": face.target}
    snapshot = {**base, "poller": face.poller}
    live = {**snapshot, "target": face.target}
    generation = {**base, "jobs": face.jobs, "poller": face.poller}
    job_api = {**base, "jobs": face.jobs, "views": face.views}
    routes: list[Any] = [
        (r"/", RootHandler, base),
        (r"/api/chat", GenerationHandler, {**generation, "endpoint": CHAT}),
        (r"/api/generate", GenerationHandler, {**generation, "endpoint": GENERATE}),
        (r"/api/tags", TagsHandler, snapshot),
        (r"/api/ps", PsHandler, live),
        (r"/api/version", VersionHandler, live),
        (r"/api/show", ShowHandler, proxy),
        (r"/api/(?:embed|embeddings)", EmbedHandler, {**base, "target": face.embed_target}),
        (r"/api/(?:pull|push|create|copy|delete)", ManagementHandler, {**proxy, "poller": face.poller}),
        (r"/api/blobs/([^/]+)", ManagementHandler, {**proxy, "poller": face.poller}),
        (r"/v1/chat/completions", OpenAIGenerationHandler, {**generation, "endpoint": V1_CHAT}),
        (r"/v1/completions", OpenAIGenerationHandler, {**generation, "endpoint": V1_COMPLETIONS}),
        (r"/v1/models", ModelsHandler, snapshot),
        (r"/v1/models/(.+)", ModelHandler, proxy),
        (r"/v1/embeddings", OpenAIEmbedHandler, {**base, "target": face.embed_target}),
        (
            r"/healthz",
            HealthHandler,
            {**base, "views": face.views, "poller": face.poller, "started_at": face.started_at},
        ),
        (r"/metrics", MetricsHandler, {**base, "views": face.views, "metrics": face.metrics}),
        (r"/jobs", JobsHandler, {**job_api, "poller": face.poller, "webhooks": face.webhooks}),
        (r"/jobs/([0-9A-Za-z]+)", JobHandler, job_api),
        (r"/jobs/([0-9A-Za-z]+)/artifacts/([\w.-]+)", ArtifactHandler, job_api),
    ]
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=base,
        compress_response=False,  # Ollama never compresses
        serve_traceback=False,
        log_function=lambda handler: log_request(handler, face.metrics),
    )


def log_request(handler: RequestHandler, metrics: Metrics) -> None:
    """The access log line, with the job id (formatted only when the level is enabled); and
    the request's duration for /metrics."""
    status = handler.get_status()
    metrics.request_duration.labels(type(handler).__name__, handler.request.method or "", str(status)).observe(
        handler.request.request_time()
    )
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        job = handler._headers.get("X-Foreman-Job-Id", "-")
        access_log.log(
            level,
            "job=%s %d %s %.2fms",
            job,
            status,
            handler._request_summary(),
            1000.0 * handler.request.request_time(),
        )
