"""`POST /api/embed` and the legacy `POST /api/embeddings`.

Embedding requests run concurrently and take no token delay, but they go through residency
like any request: a cold model costs `load_delay`, may evict another, and `keep_alive`
(``-1`` pins) is honoured.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from .base import SimHandler
from .content import raw_vector, unit_vector
from .models import ModelInfo
from .wire import ApiError, FieldTypes, dumpb

EMBED_TYPES: FieldTypes = {
    "model": (str, "string"),
    "truncate": (bool, "bool"),
    "dimensions": (int, "int"),
    "options": (dict, "map[string]interface {}"),
}
EMBEDDINGS_TYPES: FieldTypes = {
    "model": (str, "string"),
    "prompt": (str, "string"),
    "options": (dict, "map[string]interface {}"),
}


def not_pulled(model: str) -> ApiError:
    """The embed endpoints' unknown-model error: Go `%q` quoting and a hint."""
    quoted = json.dumps(model, ensure_ascii=False)
    return ApiError(404, f"model {quoted} not found, try pulling it first", refused_model=True)


def input_list(value: object) -> list[str]:
    """`input` as a list of strings; empty means "just load the model"."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ApiError(400, "invalid input type")


class EmbeddingBase(SimHandler):
    """Claim the model, honour faults, then compute: shared by the three embedding routes."""

    STREAM_DEFAULT = False

    async def embed(
        self,
        model: str,
        info: ModelInfo,
        keep_alive: float | None,
        compute: Callable[[], tuple[dict[str, Any], int | None]],
    ) -> None:
        """`compute` returns the body and its prompt token count (None: a body without metrics)."""
        record = self.record
        if record is not None:
            record.kind = "embed"
            record.stream = False
        fault = self.take_fault(model, load_only=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        resident = await self.acquire(info, keep_alive)
        if resident is None:
            return
        try:
            load_ns = int((loop.time() - started) * 1e9) if record is not None and record.loaded_model else 0
            if await self.fault_before_body(fault):
                return
            body, prompt_count = compute()
            if prompt_count is not None:
                body["total_duration"] = max(int((loop.time() - started) * 1e9), 1)
                if load_ns:
                    body["load_duration"] = load_ns
                body["prompt_eval_count"] = prompt_count
            self.reply(dumpb(body))
        finally:
            self.sim.residency.release(resident)


class EmbedHandler(EmbeddingBase):
    """`POST /api/embed`: normalised vectors for a string or a list of strings."""

    async def post(self) -> None:
        body = self.parse_json("api.EmbedRequest", EMBED_TYPES)
        keep_alive = self.keep_alive(body)
        model = body.get("model") or ""
        if not model.strip():
            raise ApiError(404, f"model '{model}' not found")
        info = self.sim.inventory.get(model)
        if info is None:
            raise not_pulled(model)
        inputs = input_list(body.get("input"))
        dims = body.get("dimensions")

        def compute() -> tuple[dict[str, Any], int | None]:
            if not inputs:
                return {"model": model, "embeddings": []}, None
            vectors = [unit_vector(info.key, text, dims) for text in inputs]
            return {"model": model, "embeddings": vectors}, sum(len(text.split()) + 1 for text in inputs)

        await self.embed(model, info, keep_alive, compute)


class EmbeddingsHandler(EmbeddingBase):
    """`POST /api/embeddings` (legacy): one unnormalised vector under `embedding`."""

    async def post(self) -> None:
        body = self.parse_json("api.EmbeddingRequest", EMBEDDINGS_TYPES)
        keep_alive = self.keep_alive(body)
        model = body.get("model") or ""
        if not model.strip():
            raise ApiError(400, "model is required")
        info = self.sim.inventory.get(model)
        if info is None:
            raise not_pulled(model)
        prompt = body.get("prompt") or ""

        def compute() -> tuple[dict[str, Any], int | None]:
            return {"embedding": raw_vector(info.key, prompt) if prompt else []}, None

        await self.embed(model, info, keep_alive, compute)
