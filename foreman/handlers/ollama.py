"""The Ollama face: the paths and answers of an Ollama server (docs/contract.md section 3).

Chat and generate are queued as jobs and block until done; the worker writes the
target's answer into the waiting handler through `HandlerCaller`.
"""

from __future__ import annotations

import logging
from typing import Any

from foreman.caller import HandlerCaller
from foreman.config import Settings
from foreman.error_shapes import NATIVE, ErrorShape
from foreman.errors import ForemanError
from foreman.handlers.base import BaseHandler, BodyHandler, status_of
from foreman.job import CHAT, Submission
from foreman.job_service import JobService
from foreman.poller import Poller
from foreman.requests import parse_submission
from foreman.target import request_headers

log = logging.getLogger(__name__)


class RootHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Ollama is running")

    def head(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Length", "17")
        self.finish()


class GenerationHandler(BodyHandler):
    """POST /api/chat and /api/generate: a queued job with the caller attached. The other
    faces' generation endpoints subclass it with their own parsing and error shape."""

    endpoint = CHAT
    errors: ErrorShape = NATIVE

    def initialize(self, settings: Settings, jobs: JobService, poller: Poller, endpoint: str = CHAT) -> None:  # type: ignore[override]
        super().initialize(settings)
        self.jobs = jobs
        self.poller = poller
        self.endpoint = endpoint
        self._caller: HandlerCaller | None = None
        self._job_id: str | None = None
        self._hung_up = False

    def submission(self) -> Submission:
        return parse_submission(self.endpoint, self.body, keep_alive=self.config.worker_keep_alive)

    async def post(self) -> None:
        sub = self.submission()
        await self.poller.require_model(sub.name)
        caller = HandlerCaller(self, request_headers(self.request.headers.get_all()), self.config.client_stall_timeout)
        caller.gone = self._hung_up  # hung up while the model was being checked
        self._caller = caller
        self._job_id = await self.jobs.submit(sub, caller)
        if caller.gone:
            await self.jobs.cancel(self._job_id, "the client disconnected")
        await caller.done

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._hung_up = True
        caller = self._caller
        if caller is None or caller.done.done():
            return
        caller.gone = True
        if self._job_id is not None:
            log.info("job=%s client disconnected", self._job_id)
            self.jobs.cancel_soon(self._job_id, "the client disconnected")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, ForemanError) or self.errors is NATIVE:
            super().write_error(status_code, **kwargs)
            return
        status = status_of(exc)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(self.errors.body(exc.message, status))
