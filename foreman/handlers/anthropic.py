"""The Anthropic face: `POST /v1/messages`, as Ollama serves it since v0.14 (docs/wire.md section 10).

A queued job exactly like `/api/chat` (drained by model, cancelled when the client leaves);
its answer, one JSON object or Server-Sent Events, passes through as the target sends it.
foreman's own refusals (unknown model, queue full, cancelled, target unreachable) come in
Anthropic's error shape, so an Anthropic SDK reports their reason.
"""

from __future__ import annotations

from foreman.error_shapes import ANTHROPIC
from foreman.handlers.ollama import GenerationHandler
from foreman.job import Submission
from foreman.requests import parse_anthropic


class MessagesHandler(GenerationHandler):
    errors = ANTHROPIC

    def submission(self) -> Submission:
        return parse_anthropic(self.body)
