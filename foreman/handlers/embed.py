"""Embeddings: straight to the target, concurrently, never queued (ADR 0013).

They use a connection pool of their own, so they never wait behind the worker's
generation, and their bytes pass unchanged both ways. A body Ollama would refuse while
decoding it is refused here first, with Ollama's text (docs/adr/0023).
"""

from __future__ import annotations

from foreman.handlers.base import BodyHandler
from foreman.handlers.inventory import ProxyHandler
from foreman.proxy import proxy_request
from foreman.requests import check_embedding


class EmbedHandler(BodyHandler, ProxyHandler):
    """Routed with `target` = the embeddings' own pool."""

    async def post(self) -> None:
        body = self.body
        check_embedding(self.request.path, body)
        await proxy_request(self, self.target, body)
