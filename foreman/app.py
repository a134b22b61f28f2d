"""The route table and the Tornado application (`make_app`)."""

from __future__ import annotations

import logging
from typing import Any

from tornado.log import access_log
from tornado.web import Application, RequestHandler

from foreman.handlers.base import NotFoundHandler
from foreman.handlers.embed import EmbedHandler
from foreman.handlers.health import HealthHandler, MetricsHandler
from foreman.handlers.inventory import ManagementHandler, PsHandler, ShowHandler, TagsHandler, VersionHandler
from foreman.handlers.jobs import ArtifactHandler, JobHandler, JobsHandler
from foreman.handlers.ollama import GenerationHandler, RootHandler
from foreman.handlers.openai import ModelHandler, ModelsHandler, OpenAIGenerationHandler
from foreman.jobs import CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS
from foreman.services import Services


def make_app(services: Services) -> Application:
    deps: dict[str, Any] = {"services": services}
    routes: list[Any] = [
        (r"/", RootHandler, deps),
        (r"/api/chat", GenerationHandler, {**deps, "endpoint": CHAT}),
        (r"/api/generate", GenerationHandler, {**deps, "endpoint": GENERATE}),
        (r"/api/tags", TagsHandler, deps),
        (r"/api/ps", PsHandler, deps),
        (r"/api/version", VersionHandler, deps),
        (r"/api/show", ShowHandler, deps),
        (r"/api/(?:embed|embeddings)", EmbedHandler, deps),
        (r"/api/(?:pull|push|create|copy|delete)", ManagementHandler, deps),
        (r"/api/blobs/([^/]+)", ManagementHandler, deps),
        (r"/v1/chat/completions", OpenAIGenerationHandler, {**deps, "endpoint": V1_CHAT}),
        (r"/v1/completions", OpenAIGenerationHandler, {**deps, "endpoint": V1_COMPLETIONS}),
        (r"/v1/models", ModelsHandler, deps),
        (r"/v1/models/(.+)", ModelHandler, deps),
        (r"/v1/embeddings", EmbedHandler, deps),
        (r"/healthz", HealthHandler, deps),
        (r"/metrics", MetricsHandler, deps),
        (r"/jobs", JobsHandler, deps),
        (r"/jobs/([0-9A-Za-z]+)", JobHandler, deps),
        (r"/jobs/([0-9A-Za-z]+)/artifacts/([\w.-]+)", ArtifactHandler, deps),
    ]
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        compress_response=False,  # Ollama never compresses
        serve_traceback=False,
        log_function=lambda handler: log_request(handler, services),
    )


def log_request(handler: RequestHandler, services: Services) -> None:
    """The access log line, with the job id (formatted only when the level is enabled); and
    the request's duration for /metrics."""
    status = handler.get_status()
    services.metrics.request_duration.labels(type(handler).__name__, handler.request.method or "", str(status)).observe(
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
