"""foreman's Python client: submit jobs, wait for them, follow their events, collect results
(docs/contract.md section 8; README "Python client").

`Foreman` blocks, `AsyncForeman` is awaited; both have the same methods, over httpx
(`pip install 'foreman-ollama[client]'`; docs/adr/0032). Neither needs Tornado or aiohttp::

    with Foreman("http://127.0.0.1:8080") as fm:
        job = fm.submit({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).wait(60)
        print(job.text)
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
except ImportError as exc:  # pragma: no cover: the message is the point
    raise ImportError("foreman.client needs httpx: pip install 'foreman-ollama[client]'") from exc

from foreman.client.async_client import AsyncForeman, AsyncJob
from foreman.client.common import Busy, ForemanError, NotFound, Unauthorized, Unreachable
from foreman.client.sync_client import Foreman, Job
from foreman.sse import FeedEvent

__all__ = [
    "AsyncForeman",
    "AsyncJob",
    "Busy",
    "FeedEvent",
    "Foreman",
    "ForemanError",
    "Job",
    "NotFound",
    "Unauthorized",
    "Unreachable",
]
