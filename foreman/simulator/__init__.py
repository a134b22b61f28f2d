"""A simulated Ollama server for tests, benchmarks and try-outs.

It speaks Ollama's wire protocol (status codes, error texts, headers, NDJSON and SSE
framing; the native API, the OpenAI `/v1` layer, `/v1/responses`, the Anthropic
`/v1/messages` and `/v1/audio/transcriptions`) on a real loopback port, produces deterministic output, models residency
(load delay, eviction, keep_alive) and lets a test inject faults, put the "laptop" to
sleep and inspect a record of every inference request::

    sim = Simulator(token_delay=0.01)
    await sim.start()
    client = ollama.AsyncClient(host=sim.url)
    sim.inject(Fault("reset", after_chunks=3))
    ...
    await sim.wait_for(lambda: sim.requests[-1].ended is not None)
    await sim.stop()

The names are imported on first use, so the benchmarks' fast target (`.fast`) loads
without Tornado.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Fault
    from .records import SimRequest
    from .server import Simulator

__all__ = ["Fault", "SimRequest", "Simulator"]
_WHERE = {"Fault": ".faults", "SimRequest": ".records", "Simulator": ".server"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
