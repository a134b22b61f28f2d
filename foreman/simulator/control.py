"""The `/_sim/*` control routes and the application's route table.

The control routes let a simulator running in another process be driven like the
in-process API: inject faults, put it to sleep, read its request records, change the
inventory and its delays. They are not part of Ollama; the prefix keeps them apart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream
from tornado.web import Application

from .anthropic import MessagesHandler
from .base import SimHandler
from .embeddings import EmbeddingsHandler, EmbedHandler
from .faults import Fault
from .handlers import (
    BlobHandler,
    CopyHandler,
    CreateHandler,
    DeleteHandler,
    PsHandler,
    PullHandler,
    PushHandler,
    RootHandler,
    ShowHandler,
    StatusHandler,
    TagsHandler,
    VersionHandler,
)
from .inference import ChatHandler, GenerateHandler
from .openai import ChatCompletionsHandler, CompletionsHandler, ModelsHandler, V1EmbeddingsHandler
from .responses import ResponsesHandler
from .transcription import TranscriptionHandler
from .wire import ApiError, decode_body, dumpb

if TYPE_CHECKING:
    from .state import SimulatorState

_CONFIG_KEYS = {"token_delay": float, "load_delay": float, "default_tokens": int, "max_loaded": int}


class ControlHandler(SimHandler):
    """Base of `/_sim/*`: plain JSON in and out."""

    def body(self) -> dict[str, Any]:
        return decode_body(self.request.body or b"{}", "object")


class FaultControl(ControlHandler):
    def post(self) -> None:
        try:
            fault = Fault.from_json(self.body())
        except (TypeError, ValueError) as err:
            raise ApiError(400, str(err)) from None
        self.sim.inject(fault)
        self.reply(dumpb({"queued": len(self.sim._faults)}))

    def delete(self) -> None:
        self.sim._faults.clear()
        self.reply(dumpb({"queued": 0}))


class SleepControl(ControlHandler):
    async def post(self) -> None:
        seconds = self.body().get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise ApiError(400, "seconds must be a number >= 0")
        stream = getattr(self.request.connection, "stream", None)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        # Answer first, then sleep: this connection is closed politely so the reply arrives.
        await self.finish(dumpb({"asleep": seconds}))
        self.sim._sleep(float(seconds), spare=stream if isinstance(stream, IOStream) else None)


class RequestsControl(ControlHandler):
    def get(self) -> None:
        self.reply(dumpb({"requests": [r.to_json() for r in self.sim.requests]}))

    def delete(self) -> None:
        self.sim.requests.clear()
        self.reply(dumpb({"requests": []}))


class ModelsControl(ControlHandler):
    def post(self) -> None:
        body = self.body()
        for name in body.get("add") or []:
            self.sim.add_model(str(name))
        for name in body.get("remove") or []:
            self.sim.remove_model(str(name))
        self.reply(dumpb({"models": self.sim.inventory.names()}))


class ConfigControl(ControlHandler):
    def post(self) -> None:
        for key, value in self.body().items():
            cast = _CONFIG_KEYS.get(key)
            if cast is None or isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(400, f"bad config key or value: {key}={value!r}")
            setattr(self.sim, key, cast(value))
        self.get()

    def get(self) -> None:
        self.reply(dumpb({key: getattr(self.sim, key) for key in _CONFIG_KEYS}))


class LoadedControl(ControlHandler):
    def get(self) -> None:
        loaded = {name: (None if math.isinf(exp) else exp) for name, exp in self.sim.loaded.items()}
        self.reply(dumpb({"loaded": loaded, "asleep": self.sim.asleep}))


class NotFoundHandler(SimHandler):
    """Anything unrouted: gin's plain-text 404, whatever the method."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "text/plain")
        self.finish("404 page not found")


def make_app(sim: SimulatorState) -> Application:
    """The route table: one handler class per path, the simulator injected into each."""
    args = {"sim": sim}
    routes: list[tuple[str, type[SimHandler]]] = [
        (r"/", RootHandler),
        (r"/api/version", VersionHandler),
        (r"/api/status", StatusHandler),
        (r"/api/tags", TagsHandler),
        (r"/api/ps", PsHandler),
        (r"/api/show", ShowHandler),
        (r"/api/chat", ChatHandler),
        (r"/api/generate", GenerateHandler),
        (r"/api/embed", EmbedHandler),
        (r"/api/embeddings", EmbeddingsHandler),
        (r"/api/pull", PullHandler),
        (r"/api/push", PushHandler),
        (r"/api/create", CreateHandler),
        (r"/api/delete", DeleteHandler),
        (r"/api/copy", CopyHandler),
        (r"/api/blobs/([^/]+)", BlobHandler),
        (r"/v1/chat/completions", ChatCompletionsHandler),
        (r"/v1/completions", CompletionsHandler),
        (r"/v1/embeddings", V1EmbeddingsHandler),
        (r"/v1/models", ModelsHandler),
        (r"/v1/models/(.+)", ModelsHandler),
        (r"/v1/responses", ResponsesHandler),
        (r"/v1/messages", MessagesHandler),
        (r"/v1/audio/transcriptions", TranscriptionHandler),
        (r"/_sim/fault", FaultControl),
        (r"/_sim/sleep", SleepControl),
        (r"/_sim/requests", RequestsControl),
        (r"/_sim/models", ModelsControl),
        (r"/_sim/config", ConfigControl),
        (r"/_sim/loaded", LoadedControl),
    ]
    return Application(
        [(pattern, handler, args) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        compress_response=False,
        log_function=lambda handler: None,  # no access log: tests fail on unexpected log lines
    )
