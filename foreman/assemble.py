"""Turn what the target sent for a job into its result and artifacts (docs/contract.md section 6).

A streamed answer is NDJSON; a `stream:false` answer is one JSON object. Either way
the result is the final Ollama response in its non-streamed shape: the last line
with the whole text put back in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from foreman.compact_json import dump as dump_json
from foreman.store import Artifact, ArtifactHead

TEXT_TYPE = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"


@dataclass
class Outcome:
    result: dict[str, Any] | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    error: str | None = None  # an {"error": ...} the target sent inside a 200 answer
    counted: int | None = None  # tokens generated, where the answer has no `eval_count` (usage)

    @property
    def eval_count(self) -> int | None:
        if self.counted is not None:
            return self.counted
        return (self.result or {}).get("eval_count")

    @property
    def load_duration(self) -> int | None:
        return (self.result or {}).get("load_duration")


_BATCH_BYTES = 64 * 1024  # NDJSON parsed per call of the C decoder
_SPACE = b" \t\r\n"


def _objects(raw: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects of an answer, in order: NDJSON lines, SSE `data:` lines, or one object.

    NDJSON as Ollama writes it (one object a line, no blank lines) is parsed about 64 KiB at a
    time as one JSON array, in one call of the C decoder (~3x faster on a long answer than line
    by line; JSON strings hold no raw newline). By the batch, not all at once: the objects of a
    20,000-token answer held together cost ~25 MiB, and each is dropped once folded in. A batch
    that does not parse so goes line by line.
    """
    # The bounds of what `raw.strip()` would keep, without copying a long answer to find them.
    start, size = 0, len(raw)
    while start < size and raw[start] in _SPACE:
        start += 1
    while size > start and raw[size - 1] in _SPACE:
        size -= 1
    if raw.startswith(b"data:", start):
        yield from _lines(raw[start:size])
        return
    while start < size:
        end = raw.find(b"\n", start + _BATCH_BYTES, size)
        end = size if end < 0 else end
        batch = raw[start:end]
        start = end + 1
        try:
            parsed = json.loads(b"[" + batch.replace(b"\n", b",") + b"]")
        except ValueError:
            yield from _lines(batch)
        else:
            yield from (obj for obj in parsed if isinstance(obj, dict))


def _lines(text: bytes) -> Iterator[dict[str, Any]]:
    for line in text.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if not line or line == b"[DONE]":
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def _error(obj: dict[str, Any]) -> str | None:
    error = obj.get("error")
    if isinstance(error, dict):  # the OpenAI layer's shape
        return str(error.get("message") or error)
    return str(error) if error else None


def assemble(endpoint: str, raw: bytes) -> Outcome:
    """Parse a complete answer. Lines that are not JSON objects are skipped, never fatal."""
    fold: _Native | _OpenAI
    if endpoint.startswith("/v1/"):
        fold = _OpenAI(chat=endpoint.endswith("/chat/completions"))
    else:
        fold = _Native(chat=endpoint.endswith("/chat"))
    errors = b'"error"' in raw  # one scan of the bytes spares a look at every object of a long answer
    last: dict[str, Any] | None = None
    for obj in _objects(raw):
        if errors and (error := _error(obj)) is not None:
            return Outcome(error=error)
        fold.add(obj)
        last = obj
    if last is None:
        return Outcome(error="the target sent no response")
    return fold.outcome(last)


class _Native:
    """A native `/api/chat` or `/api/generate` answer: the last object, the whole text put back in."""

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[Any] = []

    def add(self, obj: dict[str, Any]) -> None:
        part = (obj.get("message") or {}) if self._chat else obj
        self._text.append(part.get("content" if self._chat else "response") or "")
        self._thinking.append(part.get("thinking") or "")
        self._tool_calls.extend(part.get("tool_calls") or [])

    def outcome(self, last: dict[str, Any]) -> Outcome:
        result = dict(last)
        completion, thought, tool_calls = "".join(self._text), "".join(self._thinking), self._tool_calls
        if self._chat:
            message = dict(result.get("message") or {"role": "assistant"})
            message["content"] = completion
            if thought:
                message["thinking"] = thought
            if tool_calls:
                message["tool_calls"] = tool_calls
            result["message"] = message
        else:
            result["response"] = completion
            if thought:
                result["thinking"] = thought
            if tool_calls:
                result["tool_calls"] = tool_calls

        artifacts = [Artifact("completion", TEXT_TYPE, completion.encode())]
        if thought:
            artifacts.append(Artifact("thinking", TEXT_TYPE, thought.encode()))
        if tool_calls:
            artifacts.append(Artifact("tool_calls", JSON_TYPE, dump_json(tool_calls)))
        artifacts.append(Artifact("response", JSON_TYPE, dump_json(result)))
        return Outcome(result=result, artifacts=artifacts)


class _OpenAI:
    """An OpenAI-compatible answer (one object, or `chat.completion.chunk`s)."""

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._text: list[str] = []
        self._usage: Any = None

    def add(self, obj: dict[str, Any]) -> None:
        for item in obj.get("choices") or []:
            if self._chat:
                part = item.get("message") or item.get("delta") or {}
                self._text.append(part.get("content") or "")
            else:
                self._text.append(item.get("text") or "")
        if obj.get("usage"):
            self._usage = obj["usage"]

    def outcome(self, last: dict[str, Any]) -> Outcome:
        completion = "".join(self._text)
        result = dict(last)
        if self._usage is not None:
            result["usage"] = self._usage
        final: dict[str, Any] = {"index": 0, "text": completion}
        if self._chat:
            final = {"index": 0, "message": {"role": "assistant", "content": completion}}
        result["choices"] = [final]
        artifacts = [
            Artifact("completion", TEXT_TYPE, completion.encode()),
            Artifact("response", JSON_TYPE, dump_json(result)),
        ]
        return Outcome(result=result, artifacts=artifacts)


def result_fields(job_id: str, response: bytes | None, size: int, inline_max: int) -> dict[str, Any]:
    """How the result appears in the job API and the `done` event: the final response inline
    while its JSON is at most `inline_max` bytes, else null and the URL of its artifact, so
    that no view or event holds a second copy of a large answer."""
    if response is not None and size <= inline_max:
        return {"result": json.loads(response)}
    return {"result": None, "result_url": f"/jobs/{job_id}/artifacts/response"}


def artifact_ref(job_id: str, head: ArtifactHead, inline_max: int) -> dict[str, Any]:
    """How an artifact appears in the job API and webhooks: inline when small, a URL always."""
    ref: dict[str, Any] = {
        "name": head.name,
        "content_type": head.content_type,
        "size": head.size,
        "url": f"/jobs/{job_id}/artifacts/{head.name}",
    }
    if head.data is not None and head.size <= inline_max:
        data = head.data
        ref["content"] = json.loads(data) if head.content_type == JSON_TYPE else data.decode("utf-8", "replace")
    return ref


def artifact_refs(job_id: str, artifacts: list[Artifact], inline_max: int) -> list[dict[str, Any]]:
    """By name, the order the job API reads them in, so that a `done` event built now and one
    completed later from the stored artifacts are the same bytes (docs/adr/0030)."""
    return [
        artifact_ref(job_id, ArtifactHead(a.name, a.content_type, len(a.data), a.data), inline_max)
        for a in sorted(artifacts, key=lambda a: a.name)
    ]
