"""The route table and the Tornado application (`make_app`): each handler gets what it uses.

The browser boundary (`foreman/browser.py`) stands in front of the routes: a request it
stops is answered before a route is even looked up, so it holds for every path and
method, the token check and every handler included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tornado.httputil import HTTPServerRequest
from tornado.log import access_log
from tornado.web import Application, RequestHandler

from foreman.browser import Boundary
from foreman.config import Settings
from foreman.feed import Feed
from foreman.handlers.anthropic import MessagesHandler
from foreman.handlers.base import BoundaryHandler, first_origin
from foreman.handlers.embed import EmbedHandler
from foreman.handlers.event_stream import EventsHandler, JobEventsHandler
from foreman.handlers.health import HealthHandler, MetricsHandler
from foreman.handlers.inventory import (
    ManagementHandler,
    PassThroughHandler,
    PsHandler,
    ShowHandler,
    TagsHandler,
    VersionHandler,
)
from foreman.handlers.job_api import ArtifactHandler, JobHandler, JobsHandler
from foreman.handlers.ollama import GenerationHandler, RootHandler
from foreman.handlers.openai import (
    ModelHandler,
    ModelsHandler,
    OpenAIEmbedHandler,
    OpenAIGenerationHandler,
    ResponsesHandler,
    TranscriptionHandler,
)
from foreman.job import CHAT, GENERATE, V1_CHAT, V1_COMPLETIONS, V1_MESSAGES, V1_RESPONSES, V1_TRANSCRIPTIONS
from foreman.job_service import JobService
from foreman.job_views import JobViews
from foreman.metrics import Metrics
from foreman.poller import Poller
from foreman.routes import OLLAMA_ROUTES, Route, tornado_pattern
from foreman.target import TargetClient
from foreman.webhook_client import WebhookClient

if TYPE_CHECKING:
    from tornado.web import _HandlerDelegate


@dataclass(frozen=True)
class Face:
    """The parts of a daemon its HTTP face reaches, handed out per route by `make_app`."""

    settings: Settings
    jobs: JobService
    views: JobViews
    feed: Feed
    poller: Poller
    target: TargetClient  # the worker's and the face's pool
    embed_target: TargetClient  # the embeddings' own pool: never behind a generation
    webhooks: WebhookClient
    metrics: Metrics
    started_at: float
    listen_host: str  # the address the server is bound to (the Host check applies on loopback)


class ForemanApplication(Application):
    """Tornado's application with the browser boundary in front of its routes."""

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> _HandlerDelegate:
        boundary: Boundary = self.settings["boundary"]
        verdict = boundary.judge(request.method or "", request.host, first_origin(request))
        if verdict.status is not None:
            return self.get_handler_delegate(request, BoundaryHandler, {"verdict": verdict})
        return super().find_handler(request, **kwargs)


def make_app(face: Face) -> Application:
    base: dict[str, Any] = {"settings": face.settings}
    proxy = {**base, "target": face.target}
    snapshot = {**base, "poller": face.poller}
    live = {**snapshot, "target": face.target}
    generation = {**base, "jobs": face.jobs, "poller": face.poller}
    job_api = {**base, "jobs": face.jobs, "views": face.views}
    feeds = {**base, "feed": face.feed, "views": face.views}
    generation_handlers: dict[str, type[GenerationHandler]] = {
        CHAT: GenerationHandler,
        GENERATE: GenerationHandler,
        V1_CHAT: OpenAIGenerationHandler,
        V1_COMPLETIONS: OpenAIGenerationHandler,
        V1_MESSAGES: MessagesHandler,
        V1_RESPONSES: ResponsesHandler,
        V1_TRANSCRIPTIONS: TranscriptionHandler,
    }
    management = {**proxy, "poller": face.poller}
    # Pass-through paths answered with something of foreman's own on top (foreman/routes.py).
    own: dict[str, tuple[type[RequestHandler], dict[str, Any]]] = {
        "/": (RootHandler, base),
        "/api/tags": (TagsHandler, snapshot),
        "/api/ps": (PsHandler, live),
        "/api/version": (VersionHandler, live),
        "/api/show": (ShowHandler, proxy),
        "/v1/models": (ModelsHandler, snapshot),
        "/v1/models/:model": (ModelHandler, proxy),
    }
    routes: list[Any] = []
    for path, route in OLLAMA_ROUTES.items():
        pattern = tornado_pattern(path)
        if route is Route.JOB:
            routes.append((pattern, generation_handlers[path], {**generation, "endpoint": path}))
        elif route is Route.EMBEDDING:
            embed = OpenAIEmbedHandler if path.startswith("/v1/") else EmbedHandler
            routes.append((pattern, embed, {**base, "target": face.embed_target}))
        elif route is Route.MANAGEMENT:
            routes.append((pattern, ManagementHandler, management))
        else:
            handler, args = own.get(path, (PassThroughHandler, proxy))
            routes.append((pattern, handler, args))
    routes += [
        (
            r"/healthz",
            HealthHandler,
            {**base, "views": face.views, "poller": face.poller, "started_at": face.started_at},
        ),
        (r"/metrics", MetricsHandler, {**base, "views": face.views, "metrics": face.metrics}),
        (r"/jobs", JobsHandler, {**job_api, "poller": face.poller, "webhooks": face.webhooks}),
        (r"/jobs/([0-9A-Za-z]+)", JobHandler, job_api),
        (r"/jobs/([0-9A-Za-z]+)/artifacts/([\w.-]+)", ArtifactHandler, job_api),
        (r"/jobs/([0-9A-Za-z]+)/events", JobEventsHandler, feeds),
        (r"/events", EventsHandler, feeds),
    ]
    return ForemanApplication(
        routes,
        boundary=Boundary(face.settings.origins, face.listen_host),
        default_handler_class=PassThroughHandler,  # unknown paths: the target's answer (docs/adr/0027)
        default_handler_args=proxy,
        compress_response=False,  # Ollama never compresses
        serve_traceback=False,
        log_function=lambda handler: log_request(handler, face.metrics),
    )


def log_request(handler: RequestHandler, metrics: Metrics) -> None:
    """The access log line, with the job id (formatted only when the level is enabled); and
    the request's duration for /metrics."""
    status = handler.get_status()
    metrics.observe_request(
        type(handler).__name__, handler.request.method or "", status, handler.request.request_time()
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
