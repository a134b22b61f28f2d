"""Turn what the target sent for a job into its result and artifacts (CONTRACT section 6).

A streamed answer is NDJSON; a `stream:false` answer is one JSON object. Either way
the result is the final Ollama response in its non-streamed shape: the last line
with the whole text put back in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from foreman.store import Artifact

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


@dataclass
class Outcome:
    result: dict[str, Any] | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    error: str | None = None  # an {"error": ...} the target sent inside a 200 answer

    @property
    def eval_count(self) -> int | None:
        return (self.result or {}).get("eval_count")

    @property
    def load_duration(self) -> int | None:
        return (self.result or {}).get("load_duration")


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def assemble(endpoint: str, raw: bytes) -> Outcome:
    """Parse a complete answer. Lines that are not JSON objects are skipped, never fatal."""
    objects = []
    for line in raw.split(b"\n"):
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                objects.append(obj)
    if not objects:
        return Outcome(error="the target sent no response")
    for obj in objects:
        if obj.get("error"):
            return Outcome(error=str(obj["error"]))

    chat = endpoint.endswith("/chat")
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[Any] = []
    for obj in objects:
        part = (obj.get("message") or {}) if chat else obj
        text.append(part.get("content" if chat else "response") or "")
        thinking.append(part.get("thinking") or "")
        tool_calls.extend(part.get("tool_calls") or [])

    result = dict(objects[-1])
    completion, thought = "".join(text), "".join(thinking)
    if chat:
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

    artifacts = [Artifact("completion", _TEXT, completion.encode())]
    if thought:
        artifacts.append(Artifact("thinking", _TEXT, thought.encode()))
    if tool_calls:
        artifacts.append(Artifact("tool_calls", _JSON, _dump(tool_calls)))
    artifacts.append(Artifact("response", _JSON, _dump(result)))
    return Outcome(result=result, artifacts=artifacts)


def artifact_refs(job_id: str, artifacts: list[Artifact], inline_max: int) -> list[dict[str, Any]]:
    """How artifacts appear in the job API and webhooks: inline when small, a URL always."""
    refs = []
    for a in artifacts:
        ref: dict[str, Any] = {
            "name": a.name,
            "content_type": a.content_type,
            "size": len(a.data),
            "url": f"/jobs/{job_id}/artifacts/{a.name}",
        }
        if len(a.data) <= inline_max:
            ref["content"] = json.loads(a.data) if a.content_type == _JSON else a.data.decode("utf-8", "replace")
        refs.append(ref)
    return refs
