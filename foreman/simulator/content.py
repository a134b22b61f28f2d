"""Deterministic model output: tokens, thinking, tool calls and embedding vectors.

Everything here is a pure function of the model and the prompt text, so two runs (or a
request and its retry) produce the same bytes, and a test can predict them.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from dataclasses import dataclass, field
from typing import Any

from .wire import ApiError, dumpb

#: The vocabulary of every simulated model; tokens are `"word "`.
# fmt: off
WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "seven", "small",
    "owls", "watch", "from", "an", "old", "oak", "tree", "near", "river", "banks", "where",
    "silver", "fish", "swim", "under", "bright", "summer", "skies", "and", "gentle", "winds",
    "carry", "soft", "songs", "across", "green", "hills", "toward", "distant", "blue", "mountains",
    "covered", "in", "white", "snow", "every", "morning", "brings", "fresh", "light", "warm",
    "bread", "sweet", "honey", "strong", "tea",
)
# fmt: on
#: Token text -> its JSON string literal, so streaming never re-encodes a token.
TOKEN_JSON: dict[str, bytes] = {w + " ": dumpb(w + " ") for w in WORDS}
EMBED_DIMS = 32

_MASK = (1 << 64) - 1


def _seed(*parts: str) -> int:
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(seed: int, index: int) -> int:
    """splitmix64 of (seed, index): cheap, well spread, reproducible across Pythons."""
    h = (seed + (index + 1) * 0x9E3779B97F4A7C15) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def tokens(model: str, text: str, count: int, salt: str = "") -> list[str]:
    """`count` tokens of the form ``"word "`` for this model and prompt."""
    seed = _seed(model, salt, text)
    n = len(WORDS)
    return [WORDS[_mix(seed, i) % n] + " " for i in range(count)]


def token_ids(model: str, text: str, count: int) -> list[int]:
    seed = _seed(model, "ids", text)
    return [_mix(seed, i) % 128000 + 1 for i in range(count)]


@dataclass
class Plan:
    """What one generation will emit, in order: thinking, tool calls, content."""

    thinking: list[str]
    content: list[str]
    done_reason: str
    prompt_tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def eval_count(self) -> int:
        return len(self.thinking) + len(self.content) + len(self.tool_calls)

    @property
    def steps(self) -> int:
        """Streamed lines before the final one."""
        return len(self.thinking) + (1 if self.tool_calls else 0) + len(self.content)


def num_predict(options: object) -> int | None:
    """`options.num_predict` as Ollama reads it (numbers truncate, other types are a 400)."""
    if not isinstance(options, dict):
        return None
    value = options.get("num_predict")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, 'option "num_predict" must be of type integer')
    return int(value)


def make_plan(
    model: str,
    text: str,
    *,
    limit: int | None,
    default_tokens: int,
    think: bool,
    tools: list[Any] | None = None,
    last_user: str = "",
) -> Plan:
    """Decide the output for a prompt: `limit` (num_predict > 0) cuts it with reason "length"."""
    count, reason = (limit, "length") if limit is not None and limit > 0 else (default_tokens, "stop")
    thinking = tokens(model, text, 2, salt="think") if think else []
    prompt_tokens = len(text.split()) + 1
    call = _tool_call(model, text, tools, last_user) if tools else None
    if call is not None:
        return Plan(thinking, [], "stop", prompt_tokens, [call])
    return Plan(thinking, tokens(model, text, max(count, 0)), reason, prompt_tokens)


def _tool_call(model: str, text: str, tools: list[Any], last_user: str) -> dict[str, Any] | None:
    lowered = last_user.lower()
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name and name.lower() in lowered:
            assert isinstance(function, dict)
            return {
                "id": "call_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8)),
                "function": {"index": 0, "name": name, "arguments": _arguments(model, text, function)},
            }
    return None


def _arguments(model: str, text: str, function: dict[str, Any]) -> dict[str, Any]:
    """Values that satisfy the tool's JSON schema, derived from the prompt."""
    params = function.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(props, dict):
        return {}
    required = params.get("required") if isinstance(params, dict) else None
    names = [n for n in props if not isinstance(required, list) or n in required] or list(props)
    words = tokens(model, text, len(names), salt="args")
    args: dict[str, Any] = {}
    for name, word in zip(names, words, strict=True):
        schema = props[name] if isinstance(props[name], dict) else {}
        enum = schema.get("enum")
        kind = schema.get("type")
        if isinstance(enum, list) and enum:
            args[name] = enum[0]
        elif kind == "integer":
            args[name] = 1
        elif kind == "number":
            args[name] = 1.5
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = word.strip()
    return args


def raw_vector(model: str, text: str, dims: int = EMBED_DIMS) -> list[float]:
    """Unnormalised components in [-1, 1) (the legacy `/api/embeddings` shape)."""
    seed = _seed(model, "embed", text)
    return [round(_mix(seed, i) / 2**63 - 1.0, 9) for i in range(dims)]


def unit_vector(model: str, text: str, dims: int | None = None) -> list[float]:
    """L2-normalised embedding; `dims` cuts it and normalises again, as Ollama does."""
    raw = raw_vector(model, text)
    if dims is not None and 0 < dims < len(raw):
        raw = raw[:dims]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 9) for x in raw]
