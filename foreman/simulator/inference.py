"""`POST /api/chat` and `POST /api/generate`: validation, load/unload replies, generation.

`GenerationHandler.run` is shared with the OpenAI layer and the foreign faces (`compat.py`):
a subclass only turns its body into a `Job` (model, mode, plan, wire format), most of them
through `chat_job`, which decides what Ollama's `ChatHandler` decides; claiming the model,
faults, token pacing, metrics and the streamed or whole reply are common.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import SimHandler
from .content import Plan, make_plan, num_predict, token_ids
from .faults import Fault
from .formats import ChatFormat, Format, GenerateFormat
from .models import ModelInfo
from .wire import ApiError, FieldTypes, dumps, go_kind

_THINK_LEVELS = ("low", "medium", "high", "max")
_MSGS = "ChatRequest.messages"
_UNMARSHAL = "json: cannot unmarshal"

CHAT_TYPES: FieldTypes = {
    "model": (str, "string"),
    "messages": (list, "[]api.Message"),
    "stream": (bool, "bool"),
    "tools": (list, "api.Tools"),
    "options": (dict, "map[string]interface {}"),
}
GENERATE_TYPES: FieldTypes = {
    "model": (str, "string"),
    "prompt": (str, "string"),
    "suffix": (str, "string"),
    "system": (str, "string"),
    "template": (str, "string"),
    "stream": (bool, "bool"),
    "raw": (bool, "bool"),
    "context": (list, "[]int"),
    "options": (dict, "map[string]interface {}"),
}


@dataclass
class Job:
    """A validated generation request."""

    model: str  # as the client spelled it
    info: ModelInfo
    stream: bool
    keep_alive: float | None
    mode: str  # "generate", "load" or "unload"
    plan: Plan | None
    fmt: Format


def parse_think(value: object) -> bool | str | None:
    """Decode `think` as Ollama's `ThinkValue` does."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _THINK_LEVELS:
        return value
    shown = f'"{value}"' if isinstance(value, str) else dumps(value)
    raise ApiError(400, f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)')


def thinking_enabled(think: bool | str | None, info: ModelInfo, model: str, *, relax: bool = False) -> bool:
    """Unset `think` means on for capable models; asking a plain model to think is a 400,
    or (`relax`, what Ollama does for the Anthropic face) silently ignored."""
    capable = "thinking" in info.capabilities
    if think is None:
        return capable
    if think is not False and not capable:
        if relax:
            return False
        raise ApiError(400, f'"{model}" does not support thinking', refused_model=True)
    return think is not False


class GenerationHandler(SimHandler):
    """Shared flow of every token-generating endpoint; each subclass builds its own Job."""

    build_job: Callable[[], Job]

    async def post(self) -> None:
        await self.run(self.build_job())

    async def run(self, job: Job) -> None:
        record = self.record
        if record is not None:
            record.stream = job.stream
            if job.mode != "generate":
                record.kind = job.mode
        fault = self.take_fault(job.model, load_only=job.mode != "generate")
        if job.mode == "unload":
            self.sim.residency.expire(job.info)
            if not await self.fault_before_body(fault):
                await self.done_reply(job.fmt, "unload")
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        resident = await self.acquire(job.info, job.keep_alive)
        if resident is None:
            return
        load_ns = int((loop.time() - started) * 1e9) if record is not None and record.loaded_model else 0
        try:
            if job.mode == "load" or job.plan is None:
                if not await self.fault_before_body(fault):
                    await self.done_reply(job.fmt, "load")
            elif job.stream:
                await self._stream(job.plan, job.fmt, fault, started, load_ns)
            else:
                await self._whole(job.plan, job.fmt, fault, started, load_ns)
        finally:
            self.sim.residency.release(resident)

    async def done_reply(self, fmt: Format, reason: str) -> None:
        """The answer to a load or unload: one body, or (a foreign stream) events, flushed."""
        if fmt.done_streamed:
            self.start_stream(fmt.done_content_type)
            await self.emit(fmt.done_reply(reason))
        else:
            self.reply(fmt.done_reply(reason), content_type=fmt.done_content_type)

    async def _stream(self, plan: Plan, fmt: Format, fault: Fault | None, started: float, load_ns: int) -> None:
        trigger = min(fault.after_chunks, plan.steps) if fault is not None else -1
        error_line = fmt.error_line(fault.message) if fault is not None else b""
        self.start_stream(fmt.stream_content_type)
        sim = self.sim
        loop = asyncio.get_running_loop()
        gen_start = loop.time()
        index = 0
        steps: list[tuple[Any, Any]] = [(fmt.thinking, token) for token in plan.thinking]
        if plan.tool_calls:
            steps.append((fmt.tools, plan.tool_calls))
        for build, arg in steps:
            if index == trigger and fault is not None and await self.fault_in_stream(fault, error_line):
                return
            if not await self.pause(sim.token_delay) or not await self.emit(build(arg)):
                return
            index += 1
        content = fmt.content
        for token in plan.content:
            if index == trigger and fault is not None and await self.fault_in_stream(fault, error_line):
                return
            if not await self.pause(sim.token_delay) or not await self.emit(content(token)):
                return
            index += 1
        if index == trigger and fault is not None and await self.fault_in_stream(fault, error_line):
            return
        metrics = self.metrics(plan, started, gen_start, load_ns)
        for line in fmt.final(plan, metrics):
            if not await self.emit(line):
                return

    async def _whole(self, plan: Plan, fmt: Format, fault: Fault | None, started: float, load_ns: int) -> None:
        gen_start = asyncio.get_running_loop().time()
        if self.sim.token_delay > 0:
            for _ in range(plan.steps):
                if not await self.pause(self.sim.token_delay):
                    return
        if await self.fault_before_body(fault):
            return
        metrics = self.metrics(plan, started, gen_start, load_ns)
        self.reply(fmt.whole(plan, metrics), content_type=fmt.whole_content_type)

    def chat_job(
        self,
        model: str,
        messages: list[Any],
        fmt: Format,
        *,
        stream: bool,
        think: bool | str | None,
        tools: list[Any] | None = None,
        limit: int | None = None,
        keep_alive: float | None = None,
        relax_thinking: bool = False,
        kind: str = "chat",
    ) -> Job:
        """What Ollama's `ChatHandler` decides, in its order, for a request every chat face
        (native, Anthropic, Responses, transcription) has turned into native messages."""
        if not model.strip():
            raise ApiError(400, "model is required")
        info = self.lookup(model)
        if self.record is not None:
            self.record.kind = kind
        if not messages and keep_alive == 0:
            return Job(model, info, stream, keep_alive, "unload", None, fmt)
        thinking = thinking_enabled(think, info, model, relax=relax_thinking)
        if info.embedding_only:
            raise ApiError(400, f'"{model}" does not support chat', refused_model=True)
        if tools and "tools" not in info.capabilities:
            raise ApiError(400, f"{info.name} does not support tools", refused_model=True)
        if not messages:
            return Job(model, info, stream, keep_alive, "load", None, fmt)
        text, last_user = _message_text(messages)
        plan = make_plan(
            info.key,
            text,
            limit=limit,
            default_tokens=self.sim.default_tokens,
            think=thinking,
            tools=tools,
            last_user=last_user,
        )
        return Job(model, info, stream, keep_alive, "generate", plan, fmt)

    def metrics(self, plan: Plan, started: float, gen_start: float, load_ns: int) -> dict[str, int]:
        """Ollama's timing fields (ns); `load_duration` only when this request loaded the model."""
        end = asyncio.get_running_loop().time()
        eval_ns = max(int((end - gen_start) * 1e9), 1)
        prompt_ns = plan.prompt_tokens * 1000
        total = max(int((end - started) * 1e9), load_ns + prompt_ns + eval_ns)
        out = {"total_duration": total}
        if load_ns > 0:
            out["load_duration"] = load_ns
        out.update(
            prompt_eval_count=plan.prompt_tokens,
            prompt_eval_duration=prompt_ns,
            eval_count=plan.eval_count,
            eval_duration=eval_ns,
        )
        return out


def _message_text(messages: list[Any]) -> tuple[str, str]:
    """The prompt text of a conversation and the last user message (Go type errors on bad shapes)."""
    parts: list[str] = []
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(400, f"{_UNMARSHAL} {go_kind(message)} into Go struct field {_MSGS} of type api.Message")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ApiError(400, f"{_UNMARSHAL} {go_kind(content)} into Go struct field {_MSGS}.content of type string")
        role = str(message.get("role") or "").lower()
        parts.append(f"{role}: {content or ''}")
        if role == "user":
            last_user = content or ""
    return "\n".join(parts), last_user


class ChatHandler(GenerationHandler):
    """`POST /api/chat`."""

    def build_job(self) -> Job:
        body = self.parse_json("api.ChatRequest", CHAT_TYPES)
        keep_alive = self.keep_alive(body)
        think = parse_think(body.get("think"))
        model = body.get("model") or ""
        return self.chat_job(
            model,
            body.get("messages") or [],
            ChatFormat(model, self.sim.clock),
            stream=body.get("stream") is not False,
            think=think,
            tools=body.get("tools") or [],
            limit=num_predict(body.get("options")),
            keep_alive=keep_alive,
        )


class GenerateHandler(GenerationHandler):
    """`POST /api/generate`."""

    def build_job(self) -> Job:
        body = self.parse_json("api.GenerateRequest", GENERATE_TYPES)
        keep_alive = self.keep_alive(body)
        think = parse_think(body.get("think"))
        model = body.get("model") or ""
        if not model.strip():
            raise ApiError(404, f"model '{model}' not found")
        info = self.lookup(model)
        stream = body.get("stream") is not False
        prompt = body.get("prompt") or ""
        if self.record is not None:
            self.record.kind = "generate"
        if not prompt and keep_alive == 0:
            return Job(model, info, stream, keep_alive, "unload", None, GenerateFormat(model, self.sim.clock, None))
        if info.embedding_only:
            raise ApiError(400, f'"{model}" does not support generate', refused_model=True)
        if body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
            raise ApiError(400, "raw mode does not support template, system, or context")
        if body.get("suffix") and "insert" not in info.capabilities:
            raise ApiError(400, f"{info.name} does not support insert", refused_model=True)
        thinking = thinking_enabled(think, info, model)
        if not prompt:
            return Job(model, info, stream, keep_alive, "load", None, GenerateFormat(model, self.sim.clock, None))
        plan = make_plan(
            info.key,
            prompt,
            limit=num_predict(body.get("options")),
            default_tokens=self.sim.default_tokens,
            think=thinking,
        )
        context = None if body.get("raw") else token_ids(info.key, prompt, plan.prompt_tokens + len(plan.content))
        return Job(model, info, stream, keep_alive, "generate", plan, GenerateFormat(model, self.sim.clock, context))
