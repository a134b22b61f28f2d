"""The resident embedder: pinned with keep_alive -1 beside the rotating worker model (ADR 0013).

After every good poll, if `embed_model` is set and the target came back, started, or
no longer lists it as loaded, it is loaded again with an `/api/embed` call of empty
input (an embedding-only model refuses a load through `/api/generate`). A number
keep_alive means seconds; -1 means forever.
"""

from __future__ import annotations

import asyncio
import json
import logging

from foreman.job import model_key
from foreman.poller import Poller
from foreman.target import TargetClient, TargetError

log = logging.getLogger(__name__)


class Embedder:
    def __init__(self, model: str | None, client: TargetClient, poller: Poller) -> None:
        self.model = model
        self.client = client
        self.poller = poller
        self.warmed = 0  # how many times foreman (re)loaded it
        self._warming: asyncio.Task[None] | None = None
        if model:
            poller.on_poll(self._after_poll)

    def _after_poll(self, back: bool) -> None:
        assert self.model is not None
        resident = self.poller.resident()
        if back or resident is None or model_key(self.model) not in resident:
            self.warm_soon()

    def warm_soon(self) -> None:
        if self._warming is None or self._warming.done():
            self._warming = asyncio.ensure_future(self.warm())

    async def warm(self) -> None:
        body = json.dumps({"model": self.model, "input": [], "keep_alive": -1}).encode()
        try:
            status, _, answer = await self.client.fetch(
                "POST", "/api/embed", body, {"Content-Type": "application/json"}, timeout=self.client.first_byte_timeout
            )
        except TargetError as exc:
            log.warning("embedder %s not loaded: %s", self.model, exc)
            return
        if status != 200:
            log.error(
                "embedder %s refused by the target: %d %s", self.model, status, answer[:200].decode("utf-8", "replace")
            )
            return
        self.warmed += 1
        log.info("embedder %s loaded and pinned (keep_alive -1)", self.model)

    async def stop(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            try:
                await self._warming
            except asyncio.CancelledError:
                pass
