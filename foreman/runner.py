"""The runner key: what Ollama's scheduler compares before it reuses a loaded model
(`server/sched.go`, `needsReload`; docs/wire.md section 6, docs/adr/0029).

A loaded model is reloaded, paying its whole load again, when a request's runner options
differ from those it was loaded with: `num_ctx`, `num_batch`, `num_gpu`, `main_gpu`,
`use_mmap`, `num_thread`, and the context-shift setting `shift`. So the worker drains by
runner, not just by model. A key is the model plus the options the request sets, sorted:
`llama3.2:latest` or `llama3.2:latest num_ctx=8192`. An option left out means "the target's
default"; `num_gpu: -1` (as many layers as fit) never reloads, so it is not part of a key.
"""

from __future__ import annotations

import json
from typing import Any

RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")


def runner_options(data: dict[str, Any]) -> dict[str, Any]:
    """The runner options a decoded chat/generate body sets (from `options`, and `shift`)."""
    options = data.get("options")
    found: dict[str, Any] = {}
    if isinstance(options, dict):
        for name in RUNNER_OPTIONS:
            value = options.get(name)
            if value is None or isinstance(value, dict | list):
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if name == "num_gpu" and value == -1:
                continue
            found[name] = value
    if isinstance(data.get("shift"), bool):
        found["shift"] = data["shift"]
    return found


def runner_key(model: str, options: dict[str, Any]) -> str:
    if not options:
        return model
    return model + " " + " ".join(f"{name}={json.dumps(options[name])}" for name in sorted(options))


def options_of_body(body: bytes) -> dict[str, Any]:
    """The runner options of a stored job body (empty for bodies that set none or do not parse)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return runner_options(data) if isinstance(data, dict) else {}
