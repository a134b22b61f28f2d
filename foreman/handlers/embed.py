"""Embeddings: straight to the target, concurrently, never queued (ADR 0013).

They use a connection pool of their own, so they never wait behind the worker's
generation, and their bytes pass unchanged both ways.
"""

from __future__ import annotations

from foreman.handlers.base import BodyHandler
from foreman.passthrough import relay


class EmbedHandler(BodyHandler):
    async def post(self) -> None:
        await relay(self, self.services.embed_target, self.body)
