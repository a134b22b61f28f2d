"""The OpenAI-compatible face (docs/contract.md section 3): Ollama's own `/v1` layer, behind the queue.

Chat and completions are queued exactly like `/api/chat` and passed to the target's `/v1`
endpoints, their SSE lines relayed as they come; models come from the poller's inventory;
embeddings take the embeddings bypass. Errors foreman raises itself use the OpenAI shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from foreman.compact_json import dump
from foreman.error_shapes import OPENAI, RESPONSES, openai_error
from foreman.errors import ForemanError
from foreman.handlers.base import BaseHandler, status_of
from foreman.handlers.embed import EmbedHandler
from foreman.handlers.inventory import ProxyHandler, TagsHandler
from foreman.handlers.ollama import GenerationHandler
from foreman.job import Submission
from foreman.proxy import proxy_request
from foreman.requests import parse_openai, parse_responses, parse_transcription


def write_openai_error(handler: BaseHandler, exc: BaseException | None) -> bool:
    """foreman's own refusal in OpenAI's shape; False for anything else (the base shapes it)."""
    if not isinstance(exc, ForemanError):
        return False
    status = status_of(exc)
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(dump(openai_error(exc.message, status)))
    return True


class OpenAIGenerationHandler(GenerationHandler):
    """POST /v1/chat/completions and /v1/completions: queued jobs, like /api/chat."""

    errors = OPENAI

    def submission(self) -> Submission:
        return parse_openai(self.endpoint, self.body)


class ResponsesHandler(GenerationHandler):
    """POST /v1/responses (OpenAI Responses): a queued job; its events are relayed as they come."""

    errors = RESPONSES

    def submission(self) -> Submission:
        return parse_responses(self.body)


class TranscriptionHandler(GenerationHandler):
    """POST /v1/audio/transcriptions: a multipart body that runs a model, so a queued job."""

    errors = OPENAI

    def submission(self) -> Submission:
        return parse_transcription(self.body, self.request.headers.get("Content-Type", ""))


class OpenAIEmbedHandler(EmbedHandler):
    """POST /v1/embeddings: the embeddings bypass, foreman's refusals in OpenAI's shape."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if not write_openai_error(self, kwargs.get("exc_info", (None, None, None))[1]):
            super().write_error(status_code, **kwargs)


class ModelsHandler(TagsHandler):
    """GET /v1/models: the inventory in OpenAI's shape (`data` is null when empty, as Ollama)."""

    async def get(self) -> None:
        tags = await self._tags()
        data = []
        for model in tags.data.get("models") or []:
            data.append(
                {
                    "id": model.get("model") or model.get("name"),
                    "object": "model",
                    "created": _unix(model.get("modified_at")),
                    "owned_by": "library",
                }
            )
        self.set_header("Content-Type", "application/json")
        self.finish(dump({"object": "list", "data": data or None}))


class ModelHandler(ProxyHandler):
    """GET /v1/models/{model}: one model, asked of the target (Ollama looks it up with show)."""

    async def get(self, model: str) -> None:
        await proxy_request(self, self.target, None)


def _unix(stamp: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp())
    except ValueError:
        return 0
