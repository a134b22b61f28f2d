"""The route table and the Tornado application (`make_app`)."""

from __future__ import annotations

from typing import Any

from tornado.web import Application

from foreman.handlers.base import NotFoundHandler
from foreman.handlers.health import HealthHandler
from foreman.handlers.ollama import GenerationHandler, RootHandler
from foreman.jobs import CHAT, GENERATE
from foreman.services import Services


def make_app(services: Services) -> Application:
    deps: dict[str, Any] = {"services": services}
    routes: list[Any] = [
        (r"/", RootHandler, deps),
        (r"/api/chat", GenerationHandler, {**deps, "endpoint": CHAT}),
        (r"/api/generate", GenerationHandler, {**deps, "endpoint": GENERATE}),
        (r"/healthz", HealthHandler, deps),
    ]
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        compress_response=False,  # Ollama never compresses
        serve_traceback=False,
    )
